//! Handler of `query-status` (skeleton; filled in by its issue).
