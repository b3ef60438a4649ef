//! Handler of `reference-change-flag` (skeleton; filled in by its issue).
