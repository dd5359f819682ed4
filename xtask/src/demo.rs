//! `cargo xtask demo`: the main job on a built-in default, end to end on this machine.
//!
//! Creates two network namespaces joined by a veth pair, a sparse 64 MiB backing file and a
//! config for it, starts `aoe-xdp` in the target namespace (XDP program, AF_XDP socket,
//! io_uring), then from the other namespace runs Debian's `aoeping` (a client we did not
//! write) and `aoe-bench check` (ours: writes self-describing blocks, reads them back, verifies
//! every byte), prints the target's statistics (`aoe-xdp --stats`), stops the target with
//! SIGTERM and shows that it detached and kept its state.
//! Everything it creates is removed at the end, also on failure.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::deps;
use crate::netns::{veth_pair, Daemon, Netns};
use crate::util::{cargo, output, run, target_dir, workspace_root};

fn banner(text: &str) {
    println!("\n=== {text}");
}

/// Runs the demo.
pub fn demo() -> Result<()> {
    deps::ensure_packages()?;
    run(cargo().args(["build", "--release", "--bins"]))?;
    let bin = target_dir().join("release");
    let dir = workspace_root().join(format!("target/demo/{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let result = run_demo(&bin, &dir);
    let _ = fs::remove_dir_all(&dir);
    result
}

fn run_demo(bin: &Path, dir: &Path) -> Result<()> {
    let id = std::process::id();
    let target_ns = Netns::new(format!("aoedemo-{id}-t"))?;
    let client_ns = Netns::new(format!("aoedemo-{id}-c"))?;
    banner("network: two namespaces joined by a veth pair (vt <-> vc)");
    veth_pair(&target_ns, "vt", &client_ns, "vc", 1500)?;

    banner("backing store: a sparse 64 MiB file, exported as e1.0");
    let disk = dir.join("disk.img");
    fs::File::create(&disk)?.set_len(64 << 20)?;
    let config = dir.join("aoe-xdp.toml");
    fs::write(
        &config,
        format!(
            "[target]\ninterfaces = [\"vt\"]\nworker-cores = [0]\nidle = \"poll\"\n\
             state-directory = \"{state}\"\ncontrol-socket = \"{dir}/ctl.sock\"\n\n\
             [[device]]\nname = \"demo\"\npath = \"{disk}\"\nshelf = 1\nslot = 0\n",
            state = dir.join("state").display(),
            dir = dir.display(),
            disk = disk.display()
        ),
    )?;
    print!("{}", fs::read_to_string(&config)?);
    let aoe_xdp = bin.join("aoe-xdp");
    let config_arg = config.to_str().context("config path is not UTF-8")?;
    print!(
        "{}",
        output(
            target_ns
                .exec(&aoe_xdp)
                .args(["--config", config_arg, "--check"])
        )?
    );

    banner("target: aoe-xdp --config aoe-xdp.toml (in the target namespace)");
    let log = dir.join("aoe-xdp.log");
    let mut cmd = target_ns.exec(&aoe_xdp);
    cmd.args(["--config", config_arg]).env("RUST_LOG", "info");
    let mut target = Daemon::spawn("aoe-xdp", cmd, &log)?;
    target.wait_for_log("serving", Duration::from_secs(15))?;
    print!("{}", target.log_text());

    banner("client 1: aoeping (Debian aoetools) from the client namespace");
    print!(
        "{}",
        output(client_ns.exec("aoeping").args(["-v", "1", "0", "vc"]))?
    );
    print!(
        "{}",
        output(client_ns.exec("aoeping").args(["-i", "1", "0", "vc"]))?
            .lines()
            .take(4)
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!();

    banner("client 2: aoe-bench check (write, flush, read back, verify every byte)");
    let bench = bin.join("aoe-bench");
    print!(
        "{}",
        output(client_ns.exec(&bench).args([
            "check",
            "-i",
            "vc",
            "-t",
            "1.0",
            "--sectors",
            "8192"
        ]))?
    );

    banner("statistics: aoe-xdp --stats (over the control socket)");
    std::thread::sleep(Duration::from_millis(150)); // counters are published every 100 ms
    let socket = dir.join("ctl.sock");
    print!(
        "{}",
        output(Command::new(&aoe_xdp).arg("--stats").arg(&socket))?
    );

    banner("stopping the target (SIGTERM)");
    let status = target.stop()?;
    let stderr = target.log_text();
    print!(
        "{}",
        stderr
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!();
    if !status.success() {
        bail!("aoe-xdp exited with {status}");
    }
    let link = target_ns.ip(&["-d", "link", "show", "vt"])?;
    if link.contains("prog/xdp") || link.contains(" xdp") {
        bail!("an XDP program is still attached to vt:\n{link}");
    }
    println!("vt has no XDP program attached; exit status {status}");
    let state = fs::read_to_string(dir.join("state/e1.0.state")).unwrap_or_default();
    println!("persistent state kept in state/e1.0.state:\n{state}");
    banner("demo passed; namespaces and files removed");
    Ok(())
}
