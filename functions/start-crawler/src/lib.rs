//! Handler of `start-crawler` (skeleton; filled in by its issue).
