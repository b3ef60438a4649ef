//! Handler of `start-queries` (skeleton; filled in by its issue).
