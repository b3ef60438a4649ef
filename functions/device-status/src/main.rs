//! Lambda entry point of `device-status` (skeleton).

fn main() {}
