//! `cargo xtask build-bpf [--check]`: compile the XDP program into the committed object.
//!
//! The object `bpf/aoe_xdp.bpf.o` is committed and embedded with `include_bytes!`, so a plain
//! `cargo build` needs no clang. This command regenerates it; `--check` rebuilds into a temporary
//! file and fails when the committed object differs (CI runs it).
//!
//! Reproducibility: the build runs from the workspace root with relative paths, and
//! `-fdebug-prefix-map=<root>=.` plus `-fdebug-compilation-dir=.` keep the checkout path out of
//! the DWARF/BTF, so two checkouts produce byte-identical objects with the same clang (Debian 12:
//! clang 14). A different clang version may produce a different object; `--check` then reports
//! it as stale and the fix is to rebuild with the project's toolchain.
//!
//! Packages a fresh machine needs (for the installer): `clang` (compiler), `libbpf-dev`
//! (`<bpf/bpf_helpers.h>`, `<bpf/bpf_endian.h>`), `linux-libc-dev` (`<linux/bpf.h>`, normally
//! already present), `gcc` (for `-print-multiarch`; without the multiarch include directory clang
//! fails with `'asm/types.h' file not found`).

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};

use crate::util;

/// Source, relative to the workspace root.
const SOURCE: &str = "bpf/aoe_xdp.bpf.c";
/// Committed object, relative to the workspace root.
const OBJECT: &str = "bpf/aoe_xdp.bpf.o";
/// A header from libbpf-dev that the source includes.
const LIBBPF_HEADER: &str = "/usr/include/bpf/bpf_helpers.h";

/// Builds the object, or with `check` verifies the committed one is up to date.
pub fn build_bpf(check: bool) -> anyhow::Result<()> {
    let root = util::workspace_root();
    preflight()?;
    if check {
        let temp = std::env::temp_dir().join(format!("aoe_xdp.{}.bpf.o", std::process::id()));
        let result = compile(&root, &temp).and_then(|()| compare(&root.join(OBJECT), &temp));
        // Best effort: a leftover temp file is harmless, the check result is what matters.
        let _ = fs::remove_file(&temp);
        result?;
        println!("{OBJECT} is up to date");
    } else {
        compile(&root, Path::new(OBJECT))?;
        println!("wrote {OBJECT}");
    }
    Ok(())
}

fn preflight() -> anyhow::Result<()> {
    let clang = Command::new("clang").arg("--version").output();
    if !clang.is_ok_and(|out| out.status.success()) {
        bail!("clang not found: install it (Debian: apt-get install clang libbpf-dev)");
    }
    if !Path::new(LIBBPF_HEADER).exists() {
        bail!("{LIBBPF_HEADER} not found: install libbpf-dev (Debian: apt-get install libbpf-dev)");
    }
    Ok(())
}

/// Compiles [`SOURCE`] into `out` (relative to `root`, or absolute).
fn compile(root: &Path, out: &Path) -> anyhow::Result<()> {
    let multiarch = util::output(Command::new("gcc").arg("-print-multiarch"))
        .context("need gcc -print-multiarch to locate asm/types.h")?;
    let root_abs = root
        .canonicalize()
        .with_context(|| format!("workspace root {}", root.display()))?;
    let mut cmd = Command::new("clang");
    cmd.current_dir(&root_abs)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .arg(format!("-fdebug-prefix-map={}=.", root_abs.display()))
        .arg("-fdebug-compilation-dir=.")
        .args(["-c", SOURCE, "-o"])
        .arg(out);
    util::run(&mut cmd)
}

fn compare(committed: &Path, fresh: &Path) -> anyhow::Result<()> {
    let old = fs::read(committed).with_context(|| format!("reading {}", committed.display()))?;
    let new = fs::read(fresh).with_context(|| format!("reading {}", fresh.display()))?;
    if old != new {
        bail!("{OBJECT} is stale: run cargo xtask build-bpf");
    }
    Ok(())
}
