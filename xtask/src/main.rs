//! Project automation: `cargo xtask <command>` (see `.cargo/config.toml`).
//!
//! This file only parses the command line and dispatches; each command lives in its own module.

mod bench;
mod bpf;
mod demo;
mod deps;
mod guest;
mod loadgen;
mod netns;
mod soak;
mod test;
mod util;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "aoe-xdp project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure aoe-xdp against vblade and two bare reflectors, as between two machines (run as root, about 40 minutes on a 2-vCPU VM; --quick about 1).
    ///
    /// Two network namespaces, one initiator, one page-cached backing file; prints a table and
    /// writes target/bench/{results.json,qd.svg,summary.md}.
    Bench(bench::BenchArgs),
    /// Compile bpf/aoe_xdp.bpf.c into the committed object bpf/aoe_xdp.bpf.o (needs clang).
    BuildBpf {
        /// Rebuild into a temporary file and fail if it differs from the committed object.
        #[arg(long)]
        check: bool,
    },
    /// Run aoe-xdp on a built-in example in two network namespaces and talk to it with real
    /// clients (installs missing Debian packages; run as root).
    Demo,
    /// Run every check and test (installs missing Debian packages; run as root).
    Test(test::TestArgs),
    /// Run the target for minutes under verified load on two paths and check it for leaks and
    /// lost data (as root; not part of `test`).
    Soak(soak::SoakArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Bench(args) => bench::bench(&args),
        Command::BuildBpf { check } => bpf::build_bpf(check),
        Command::Test(args) => test::test(&args),
        Command::Demo => demo::demo(),
        Command::Soak(args) => soak::soak(&args),
    }
}
