//! `cargo xtask test`: every check and every test, as CI runs them.
//!
//! 1. installs missing Debian packages (clang, libbpf-dev, vblade, aoetools, ...);
//! 2. checks the committed BPF object matches its source;
//! 3. `cargo fmt --check` and `cargo clippy -D warnings`;
//! 4. `cargo test --workspace` with `AOE_XDP_REQUIRE_PRIV=1`, so a privileged test (netns,
//!    XDP, AF_XDP, loop devices) that cannot run fails instead of skipping;
//! 5. a short fuzzing run of each cargo-fuzz target (`RUSTC_BOOTSTRAP=1` on stable), from its
//!    committed seeds where it has any.

use anyhow::Result;

use crate::util::{cargo, run, workspace_root};
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

/// Runs each fuzz target for [`FUZZ_SECONDS`] on its corpus (`fuzz/corpus/TARGET`, made if
/// missing) and its committed seeds (`fuzz/seeds/TARGET`, where there are any: valid frames
/// that start `frame_parser` past the header checks it does not get past on its own).
fn fuzz_smoke() -> Result<()> {
    deps::ensure_cargo_fuzz()?;
    let fuzz = workspace_root().join("fuzz");
    for target in ["frame_parser", "request_path"] {
        let corpus = fuzz.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let seeds = fuzz.join("seeds").join(target);
        let max_time = format!("-max_total_time={FUZZ_SECONDS}");
        let mut cmd = cargo();
        cmd.args(["fuzz", "run", target]).arg(&corpus);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        run(cmd
            .args(["--", &max_time, "-rss_limit_mb=4096"])
            .env("RUSTC_BOOTSTRAP", "1"))?;
    }
    Ok(())
}
