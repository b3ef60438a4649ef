//! Lambda entry point of `scheduler` (skeleton).

fn main() {}
