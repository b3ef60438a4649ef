//! Lambda entry point of `start-crawler` (skeleton).

fn main() {}
