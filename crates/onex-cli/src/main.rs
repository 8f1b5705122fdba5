//! The `onex` binary.

mod bench;

fn main() {}
