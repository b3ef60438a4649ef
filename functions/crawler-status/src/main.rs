//! Lambda entry point of `crawler-status` (skeleton).

fn main() {}
