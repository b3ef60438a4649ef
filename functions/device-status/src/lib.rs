//! Handler of `device-status` (skeleton; filled in by its issue).
