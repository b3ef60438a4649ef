//! Lambda entry point of `reference-change-flag` (skeleton).

fn main() {}
