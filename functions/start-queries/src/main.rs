//! Lambda entry point of `start-queries` (skeleton).

fn main() {}
