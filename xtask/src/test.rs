//! `cargo xtask test`: every check and every test, as CI runs them.
//!
//! 1. installs missing Debian packages (clang, libbpf-dev, vblade, aoetools, ...);
//! 2. checks the committed BPF object matches its source;
//! 3. `cargo fmt --check` and `cargo clippy -D warnings`;
//! 4. `cargo test --workspace` with `AOE_XDP_REQUIRE_PRIV=1`, so a privileged test (netns,
//!    XDP, AF_XDP, loop devices) that cannot run fails instead of skipping;
//! 5. a short fuzzing run of each cargo-fuzz target (`RUSTC_BOOTSTRAP=1` on stable).

use anyhow::Result;

use crate::util::{cargo, run};
use crate::{bpf, deps};

/// Seconds each fuzz target runs in the test command.
const FUZZ_SECONDS: u32 = 20;

/// Options of `cargo xtask test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// Skip the fuzzing run.
    #[arg(long)]
    no_fuzz: bool,
    /// Skip fmt and clippy.
    #[arg(long)]
    no_lint: bool,
}

/// Runs everything; the first failure stops the run with the failing command.
pub fn test(args: &TestArgs) -> Result<()> {
    deps::ensure_packages()?;
    bpf::build_bpf(true)?;
    if !args.no_lint {
        run(cargo().args(["fmt", "--all", "--check"]))?;
        run(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    run(cargo()
        .args(["test", "--workspace", "--all-targets"])
        .env("AOE_XDP_REQUIRE_PRIV", "1"))?;
    // Doc tests run separately: `--all-targets` leaves them out.
    run(cargo().args(["test", "--workspace", "--doc"]))?;
    if !args.no_fuzz {
        fuzz_smoke()?;
    }
    println!("all checks and tests passed");
    Ok(())
}

fn fuzz_smoke() -> Result<()> {
    deps::ensure_cargo_fuzz()?;
    for target in ["frame_parser", "request_path"] {
        let max_time = format!("-max_total_time={FUZZ_SECONDS}");
        run(cargo()
            .args(["fuzz", "run", target, "--", &max_time, "-rss_limit_mb=4096"])
            .env("RUSTC_BOOTSTRAP", "1"))?;
    }
    Ok(())
}
