//! The `osbuild` command line.
fn main() {}
