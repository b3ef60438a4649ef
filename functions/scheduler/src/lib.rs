//! Handler of `scheduler` (skeleton; filled in by its issue).
