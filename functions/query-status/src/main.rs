//! Lambda entry point of `query-status` (skeleton).

fn main() {}
