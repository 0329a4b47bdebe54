//! The `osbuild` command line: parses arguments, runs the library, prints errors once.

mod cli;

use clap::Parser;

fn main() {
    let _cli = cli::Cli::parse();
}
