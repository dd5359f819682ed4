//! `cargo xtask demo`: the main job on a built-in default, end to end on this machine.
//!
//! Creates two network namespaces joined by a veth pair, a sparse 64 MiB backing file and a
//! config for it, starts `aoe-xdp` in the target namespace (XDP program, AF_XDP socket,
//! io_uring), then from the other namespace runs Debian's `aoeping` (a client we did not
//! write) and `aoe-bench check` (ours: writes self-describing blocks, reads them back, verifies
//! every byte), stops the target with SIGTERM and shows that it detached and kept its state.
//! Everything it creates is removed at the end, also on failure.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::deps;
use crate::util::{cargo, output, run, workspace_root};

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Result<Netns> {
        run(Command::new("ip").args(["netns", "add", &name]))?;
        Ok(Netns(name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The target process, stopped with SIGTERM on drop.
struct Target {
    child: Child,
    log: PathBuf,
}

impl Target {
    fn stop(&mut self) -> Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        run(Command::new("kill").args(["-TERM", &pid]))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                self.child.kill()?;
                bail!("aoe-xdp did not stop within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.stop();
        }
    }
}

fn wait_for_log(target: &mut Target, needle: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = fs::read_to_string(&target.log).unwrap_or_default();
        if log.contains(needle) {
            return Ok(());
        }
        if let Some(status) = target.child.try_wait()? {
            bail!("aoe-xdp exited with {status} before serving:\n{log}");
        }
        if Instant::now() > deadline {
            bail!("aoe-xdp did not start serving within 15 s:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn in_ns(ns: &Netns, program: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.0]).arg(program).args(args);
    cmd
}

fn banner(text: &str) {
    println!("\n=== {text}");
}

/// Runs the demo.
pub fn demo() -> Result<()> {
    deps::ensure_packages()?;
    run(cargo().args(["build", "--release", "--bins"]))?;
    let root = workspace_root();
    let bin = root.join("target/release");
    let dir = root.join(format!("target/demo/{}", std::process::id()));
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
    run(Command::new("ip").args([
        "link",
        "add",
        "vt",
        "netns",
        &target_ns.0,
        "numrxqueues",
        "1",
        "numtxqueues",
        "1",
        "type",
        "veth",
        "peer",
        "name",
        "vc",
        "netns",
        &client_ns.0,
        "numrxqueues",
        "1",
        "numtxqueues",
        "1",
    ]))?;
    run(Command::new("ip").args(["-n", &target_ns.0, "link", "set", "vt", "up"]))?;
    run(Command::new("ip").args(["-n", &client_ns.0, "link", "set", "vc", "up"]))?;

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
        output(&mut in_ns(
            &target_ns,
            &aoe_xdp,
            &["--config", config_arg, "--check"]
        ))?
    );

    banner("target: aoe-xdp --config aoe-xdp.toml (in the target namespace)");
    let log = dir.join("aoe-xdp.log");
    let child = in_ns(&target_ns, &aoe_xdp, &["--config", config_arg])
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log)?)
        .stderr(fs::File::create(dir.join("aoe-xdp.stderr"))?)
        .env("RUST_LOG", "info")
        .spawn()
        .context("starting aoe-xdp")?;
    let mut target = Target {
        child,
        log: dir.join("aoe-xdp.stderr"),
    };
    wait_for_log(&mut target, "serving")?;
    print!("{}", fs::read_to_string(&target.log)?);

    banner("client 1: aoeping (Debian aoetools) from the client namespace");
    let aoeping = Path::new("aoeping");
    print!(
        "{}",
        output(&mut in_ns(&client_ns, aoeping, &["-v", "1", "0", "vc"]))?
    );
    print!(
        "{}",
        output(&mut in_ns(&client_ns, aoeping, &["-i", "1", "0", "vc"]))?
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
        output(&mut in_ns(
            &client_ns,
            &bench,
            &["check", "-i", "vc", "-t", "1.0", "--sectors", "8192"]
        ))?
    );

    banner("stopping the target (SIGTERM)");
    let status = target.stop()?;
    let stderr = fs::read_to_string(&target.log)?;
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
    let link = output(Command::new("ip").args(["-n", &target_ns.0, "-d", "link", "show", "vt"]))?;
    if link.contains("prog/xdp") || link.contains(" xdp") {
        bail!("an XDP program is still attached to vt:\n{link}");
    }
    println!("vt has no XDP program attached; exit status {status}");
    let state = fs::read_to_string(dir.join("state/e1.0.state")).unwrap_or_default();
    println!("persistent state kept in state/e1.0.state:\n{state}");
    banner("demo passed; namespaces and files removed");
    Ok(())
}
