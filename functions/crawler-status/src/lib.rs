//! Handler of `crawler-status` (skeleton; filled in by its issue).
