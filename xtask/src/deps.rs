//! Installs what the build, the tests and the demo need on a fresh Debian machine.

use std::process::Command;

use anyhow::{bail, Result};

use crate::util::{cargo, have, run};

/// Debian packages: the BPF/libxdp build (clang, m4, libelf, zlib, pkg-config, make, libbpf
/// headers), the real AoE peers and clients (vblade, aoetools), network tooling, and the
/// guest whose kernel `aoe` driver is an initiator (`tests/kernel_initiator.rs`: QEMU,
/// busybox for its init, e2fsprogs copied into it and used on the host; the kernel itself is
/// fetched by the test with `apt-get download`).
pub const PACKAGES: &[&str] = &[
    "clang",
    "llvm",
    "m4",
    "make",
    "pkg-config",
    "libelf-dev",
    "zlib1g-dev",
    "libbpf-dev",
    "iproute2",
    "ethtool",
    "tcpdump",
    "vblade",
    "aoetools",
    "qemu-system-x86",
    "busybox-static",
    "e2fsprogs",
    // setpriv: the service's capability set in tests/dataplane/service.rs.
    "util-linux",
    // systemd-analyze: config/aoe-xdp.service is checked in tests/config_cli.rs; systemd
    // itself runs the unit in the guest of tests/systemd_unit.rs, where useradd makes its user.
    "systemd",
    "passwd",
    // perf: copied into the guest of tests/busy_poll_guest.rs (`perf record -g` there); the
    // bench profiles with it too.
    "linux-perf",
];

/// More for `cargo xtask bench`: `fincore` to check that the backing file is cached (`perf`,
/// which profiles the target, is in [`PACKAGES`]).
pub const BENCH_PACKAGES: &[&str] = &["util-linux-extra"];

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Installs any missing package of [`PACKAGES`] with apt-get (we run as root on Debian).
pub fn ensure_packages() -> Result<()> {
    ensure(PACKAGES)
}

/// Installs any missing package of `packages` with apt-get.
pub fn ensure(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !have("apt-get") {
        bail!("missing packages {missing:?} and no apt-get: install them by hand");
    }
    eprintln!("installing Debian packages: {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Installs cargo-fuzz from crates.io when it is missing.
pub fn ensure_cargo_fuzz() -> Result<()> {
    let present = cargo()
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if present {
        return Ok(());
    }
    run(cargo().args(["install", "cargo-fuzz", "--locked"]))
}
