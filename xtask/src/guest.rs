//! A Linux guest: Debian's stock kernel booted in QEMU (TCG) from a small busybox initramfs.
//! In one kind its kernel `aoe` driver is the initiator, its virtio-net on a tap bridged to a
//! veth; in another the target itself serves in the guest on that virtio-net
//! (`tests/busy_poll_guest.rs`, with an init of its own); in the last it boots the host's own
//! systemd from the host's root file system, shared read-only ([`GuestSpec::host_root`]), to
//! run the systemd unit.
//!
//! Shared by `tests/kernel_initiator.rs`, `tests/busy_poll_guest.rs` and
//! `tests/systemd_unit.rs` (which include this file with `#[path]`) and `cargo xtask bench
//! --kernel-initiator`; it uses only std, anyhow and netns_rig, which all have.
//!
//! - [`fetch_kernel`]: `vmlinuz` and the modules the guest loads (virtio-net, ext4, `aoe`, 9p,
//!   overlay, veth, and
//!   what they depend on, found in each module's `.modinfo`), from the package that Debian's
//!   `linux-image-amd64` depends on (`apt-get download`, `dpkg -x`), cached under
//!   `target/kernel-initiator/` so that only the first run, or a new kernel version,
//!   downloads (about 70 MB).
//! - [`Initramfs`]: a `newc` cpio archive built here (no `cpio` tool): busybox, host binaries
//!   with their shared libraries (from `ldd`), the modules, the files a caller adds, and an
//!   `/init` made by [`init_script`] from a shell body the caller writes.
//! - [`isolate`] and [`bridge_tap`]: a namespace without IPv6 (so nothing but AoE is ever
//!   sent) and a bridge joining a veth end to a tap for QEMU.
//! - [`Guest`]: QEMU running in a namespace; its serial console is the guest's stdin and
//!   stdout. The guest reports with lines `@@ KEY VALUE…` ([`results`]), the host answers
//!   with lines on the console ([`Guest::send_line`], read in the guest with `read`).
//!
//! Hazards: QEMU is killed (by its own pid, never by name) when a [`Guest`] is dropped or a
//! wait passes the guest's hard deadline, so a guest never outlives its caller; the caller
//! owns the namespaces and deletes them after the guest (the tap and the bridge go with
//! them). While a target is away the guest's `aoe` driver retransmits until `aoe_deadsecs`
//! (minutes) have passed, so a guest waiting for a target that never comes back ends at the
//! hard deadline, not by itself. Nothing here
//! assigns an IP address: the guest boots with `ipv6.disable=1` and the namespaces have
//! IPv6 turned off before their links exist.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// The Debian metapackage whose dependency holds the current kernel.
const KERNEL_METAPACKAGE: &str = "linux-image-amd64";
/// Modules the guest loads, in no particular order: [`fetch_kernel`] adds what they depend on
/// and orders them. `virtio_pci` finds QEMU's virtio devices and `virtio_net` drives the NIC;
/// `crc32c_generic` is what ext4 and jbd2 ask for as `crypto-crc32c` (a soft dependency
/// that `insmod` would not load; without it ext4 refuses checksummed file systems); `aoe`
/// is the initiator under test. `9p`, `9pnet_virtio` and `overlay` let a guest boot from the
/// host's root file system shared read-only ([`GuestSpec::host_root`]) under a RAM overlay;
/// `veth` gives it a pair of its own. Modules built into the kernel are skipped.
const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "crc32c_generic",
    "ext4",
    "aoe",
    "9p",
    "9pnet_virtio",
    "overlay",
    "veth",
];
/// The file inside a cached kernel directory that says it is complete; it holds
/// [`MODULES`], so that a cache made for another list is made again.
const COMPLETE: &str = "complete";
/// The 9p mount tag of the host's root file system (see [`GuestSpec::host_root`]).
pub const HOST_ROOT_TAG: &str = "hostroot";
/// The guest's MAC address (locally administered, QEMU's prefix).
pub const GUEST_MAC: &str = "52:54:00:a0:e0:01";
/// The guest's interface to the AoE network.
pub const GUEST_IF: &str = "eth0";
/// Marker that starts every result line on the console.
pub const RESULT_MARKER: &str = "@@ ";

/// A kernel and its modules, ready to boot.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// `uname -r` of the kernel, e.g. `6.1.0-57-amd64`.
    pub release: String,
    /// The Debian package it came from, with its version.
    pub package: String,
    /// The compressed kernel image.
    pub vmlinuz: PathBuf,
    /// Directory of the guest's modules: `NAME.ko` each.
    pub modules_dir: PathBuf,
    /// Module names in load order (every module after those it depends on).
    pub modules: Vec<String>,
}

/// The kernel of the package `linux-image-amd64` depends on, from `cache` (a directory per
/// package version) or downloaded into it. When that fails (no network, no package lists)
/// the newest complete cached kernel is used, with a warning on stderr.
pub fn fetch_kernel(cache: &Path) -> Result<Kernel> {
    fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    match fetch_current(cache) {
        Ok(kernel) => Ok(kernel),
        Err(error) => match cached_kernels(cache)?.pop() {
            Some(kernel) => {
                eprintln!(
                    "warning: using the cached kernel {}: {error:#}",
                    kernel.package
                );
                Ok(kernel)
            }
            None => {
                Err(error.context(format!("no kernel is cached in {} either", cache.display())))
            }
        },
    }
}

fn fetch_current(cache: &Path) -> Result<Kernel> {
    let (package, version) = kernel_package()?;
    let key = format!("{package}_{version}");
    let dir = cache.join(&key);
    if is_complete(&dir) {
        return load_cached(&dir);
    }
    let staging = cache.join(format!(".{key}.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging)?;
    if let Err(error) = unpack_kernel(&package, &staging) {
        let _ = fs::remove_dir_all(&staging);
        return Err(error);
    }
    // A copy made for another module list goes; one another process finished meanwhile
    // stays.
    if dir.exists() && !is_complete(&dir) {
        let _ = fs::remove_dir_all(&dir);
    }
    if fs::rename(&staging, &dir).is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    // Older kernels are not needed again (each is about 10 MB).
    for entry in fs::read_dir(cache)?.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("linux-image-") && name != key {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    load_cached(&dir)
}

/// (package, version) that the kernel metapackage's candidate depends on, from the package
/// lists; runs `apt-get update` once if the lists do not know the metapackage.
fn kernel_package() -> Result<(String, String)> {
    let show = |package: &str| -> Result<String> {
        let out = Command::new("apt-cache")
            .args(["show", "--no-all-versions", package])
            .output()
            .context("running apt-cache")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            out.status.success() && !text.trim().is_empty(),
            "apt-cache show {package}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(text)
    };
    let meta = match show(KERNEL_METAPACKAGE) {
        Ok(text) => text,
        Err(_) => {
            let status = Command::new("apt-get")
                .args(["update", "-qq"])
                .status()
                .context("running apt-get update")?;
            ensure!(
                status.success(),
                "the package lists know no {KERNEL_METAPACKAGE} and apt-get update failed \
                 ({status})"
            );
            show(KERNEL_METAPACKAGE)?
        }
    };
    let depends = field(&meta, "Depends").context("the metapackage has no Depends field")?;
    let package = depends
        .split([',', '|'])
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .find(|name| name.starts_with("linux-image-"))
        .with_context(|| format!("no linux-image package in Depends: {depends}"))?
        .to_owned();
    let version = field(&show(&package)?, "Version").context("the kernel has no Version")?;
    Ok((package, version))
}

/// The value of `name: value` in an apt stanza.
fn field(stanza: &str, name: &str) -> Option<String> {
    stanza.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim().to_owned())
    })
}

/// Every complete kernel in `cache`, oldest first (by name, which has the version).
fn cached_kernels(cache: &Path) -> Result<Vec<Kernel>> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(cache)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| is_complete(path))
        .collect();
    dirs.sort();
    dirs.iter().map(|dir| load_cached(dir)).collect()
}

fn load_cached(dir: &Path) -> Result<Kernel> {
    let read = |name: &str| -> Result<String> {
        let path = dir.join(name);
        fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let modules_dir = dir.join("modules");
    let modules: Vec<String> = read("modules/order")?.lines().map(str::to_owned).collect();
    Ok(Kernel {
        release: read("release")?.trim().to_owned(),
        package: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        vmlinuz: dir.join("vmlinuz"),
        modules_dir,
        modules,
    })
}

/// Downloads `package` into `staging`, unpacks it and keeps `vmlinuz`, the modules of
/// [`MODULES`] with their dependencies (`modules/NAME.ko`, load order in `modules/order`)
/// and the release name; drops everything else.
fn unpack_kernel(package: &str, staging: &Path) -> Result<()> {
    let out = Command::new("apt-get")
        .args(["download", "-q", package])
        .current_dir(staging)
        .output()
        .context("running apt-get download")?;
    ensure!(
        out.status.success(),
        "apt-get download {package} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let deb = fs::read_dir(staging)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    let root = staging.join("root");
    let status = Command::new("dpkg")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .status()
        .context("running dpkg -x")?;
    ensure!(
        status.success(),
        "dpkg -x {} failed ({status})",
        deb.display()
    );
    let release = package.trim_start_matches("linux-image-").to_owned();
    let vmlinuz = root.join(format!("boot/vmlinuz-{release}"));
    ensure!(vmlinuz.exists(), "{package} has no boot/vmlinuz-{release}");
    let tree = root.join(format!("lib/modules/{release}"));
    let builtin: BTreeSet<String> = fs::read_to_string(tree.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .map(module_name)
        .collect();
    let mut index = HashMap::new();
    index_modules(&tree.join("kernel"), &mut index)?;
    let mut order = Vec::new();
    for name in MODULES {
        add_with_dependencies(name, &index, &builtin, &mut order, &mut Vec::new())?;
    }
    let modules_dir = staging.join("modules");
    fs::create_dir_all(&modules_dir)?;
    for name in &order {
        fs::copy(&index[name], modules_dir.join(format!("{name}.ko")))?;
    }
    fs::write(modules_dir.join("order"), order.join("\n") + "\n")?;
    fs::rename(&vmlinuz, staging.join("vmlinuz"))?;
    fs::write(staging.join("release"), format!("{release}\n"))?;
    fs::remove_dir_all(&root)?;
    fs::remove_file(&deb)?;
    fs::write(staging.join(COMPLETE), complete_marker())?;
    Ok(())
}

fn complete_marker() -> String {
    MODULES.join("\n") + "\n"
}

/// Whether `dir` holds a kernel unpacked completely, with today's [`MODULES`].
fn is_complete(dir: &Path) -> bool {
    fs::read_to_string(dir.join(COMPLETE)).is_ok_and(|text| text == complete_marker())
}

/// For a test (`test` names it): the kernel to boot once the test can run here (root and
/// namespaces, every program of `tools`, given with its Debian package, and the kernel itself,
/// fetched into `target/kernel-initiator/`); otherwise `None` after printing `skipping: WHY`,
/// or a panic under `AOE_XDP_REQUIRE_PRIV=1`.
#[allow(
    dead_code,
    reason = "only the tests that include this file boot a guest this way"
)]
pub fn kernel_for_test(test: &str, tools: &[(&str, &str)]) -> Option<Kernel> {
    if !netns_rig::privileged_or_skip() {
        return None;
    }
    let unavailable = |why: String| {
        let require = netns_rig::REQUIRE_PRIV_ENV;
        if std::env::var(require).is_ok_and(|value| value == "1") {
            panic!("{require}=1 but {test} cannot run: {why}");
        }
        eprintln!("skipping: {why}");
    };
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(program, _)| {
            !Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {program} >/dev/null"))
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(_, package)| *package)
        .collect();
    if !missing.is_empty() {
        unavailable(format!("missing Debian packages {missing:?}"));
        return None;
    }
    // Set by cargo for integration tests: `target/tmp`, beside which the cache lives.
    let Some(tmp) = option_env!("CARGO_TARGET_TMPDIR") else {
        unavailable("not built as a test (no CARGO_TARGET_TMPDIR)".to_owned());
        return None;
    };
    let cache = Path::new(tmp)
        .parent()
        .expect("target directory")
        .join("kernel-initiator");
    fetch_kernel(&cache)
        .map_err(|error| unavailable(format!("cannot get Debian's kernel: {error:#}")))
        .ok()
}

/// `kernel/drivers/net/virtio_net.ko` → `virtio_net` (the kernel treats `-` and `_` alike).
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

fn index_modules(dir: &Path, index: &mut HashMap<String, PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            index_modules(&path, index)?;
        } else if let Some(file) = path.file_name().and_then(|n| n.to_str()) {
            if file.contains(".ko") {
                index.insert(module_name(file), path.clone());
            }
        }
    }
    Ok(())
}

/// Appends `name` to `order` after everything it depends on (depth first); `path` is the
/// chain being resolved, to report a cycle.
fn add_with_dependencies(
    name: &str,
    index: &HashMap<String, PathBuf>,
    builtin: &BTreeSet<String>,
    order: &mut Vec<String>,
    path: &mut Vec<String>,
) -> Result<()> {
    if order.iter().any(|n| n == name) || builtin.contains(name) {
        return Ok(());
    }
    ensure!(
        !path.iter().any(|n| n == name),
        "module dependency cycle: {} -> {name}",
        path.join(" -> ")
    );
    let file = index
        .get(name)
        .with_context(|| format!("the kernel has no module {name}"))?;
    ensure!(
        file.extension().is_some_and(|e| e == "ko"),
        "{} is compressed; the guest's insmod needs plain .ko files",
        file.display()
    );
    let bytes = fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let info = modinfo(&bytes).with_context(|| format!("reading {}", file.display()))?;
    path.push(name.to_owned());
    for dependency in info
        .iter()
        .filter(|(key, _)| key == "depends")
        .flat_map(|(_, value)| value.split(','))
        .filter(|d| !d.is_empty())
    {
        add_with_dependencies(&module_name(dependency), index, builtin, order, path)?;
    }
    path.pop();
    order.push(name.to_owned());
    Ok(())
}

/// The `key=value` strings of a module's `.modinfo` section (64-bit little-endian ELF).
fn modinfo(elf: &[u8]) -> Result<Vec<(String, String)>> {
    let bytes = |at: usize, len: usize| -> Result<&[u8]> {
        at.checked_add(len)
            .and_then(|end| elf.get(at..end))
            .context("truncated ELF file")
    };
    let number = |at: usize, len: usize| -> Result<usize> {
        let mut value = 0u64;
        for (shift, byte) in bytes(at, len)?.iter().enumerate() {
            value |= u64::from(*byte) << (8 * shift);
        }
        usize::try_from(value).context("ELF offset out of range")
    };
    ensure!(
        bytes(0, 6)? == b"\x7fELF\x02\x01",
        "not a 64-bit little-endian ELF file"
    );
    let (section_table, entry_size) = (number(0x28, 8)?, number(0x3A, 2)?);
    let (count, names_index) = (number(0x3C, 2)?, number(0x3E, 2)?);
    // A section header: name (u32 at 0), ..., offset (u64 at 24), size (u64 at 32).
    let section = |index: usize| -> Result<(usize, usize, usize)> {
        let at = section_table + index * entry_size;
        Ok((number(at, 4)?, number(at + 24, 8)?, number(at + 32, 8)?))
    };
    let names_offset = section(names_index)?.1;
    for index in 0..count {
        let (name_at, offset, size) = section(index)?;
        let start = names_offset + name_at;
        let name_end = elf
            .get(start..)
            .and_then(|rest| rest.iter().position(|&b| b == 0))
            .context("unterminated section name")?;
        if bytes(start, name_end)? != b".modinfo" {
            continue;
        }
        return Ok(bytes(offset, size)?
            .split(|&b| b == 0)
            .filter_map(|entry| {
                let text = std::str::from_utf8(entry).ok()?;
                let (key, value) = text.split_once('=')?;
                Some((key.to_owned(), value.to_owned()))
            })
            .collect());
    }
    bail!("no .modinfo section")
}

/// An initramfs under construction: a `newc` cpio archive (what the kernel unpacks).
#[derive(Default)]
pub struct Initramfs {
    dirs: BTreeSet<String>,
    files: Vec<(String, u32, Vec<u8>)>,
}

/// Mode bits of the entries.
const DIR: u32 = 0o040_755;
const FILE: u32 = 0o100_644;
const EXECUTABLE: u32 = 0o100_755;
const CHAR_DEVICE: u32 = 0o020_600;

impl Initramfs {
    /// An archive with busybox (`/bin/busybox`, installed by `busybox-static`), the kernel's
    /// modules under `/modules` and the directories init expects.
    pub fn new(kernel: &Kernel) -> Result<Initramfs> {
        let mut archive = Initramfs::default();
        for dir in ["bin", "sbin", "dev", "proc", "sys", "tmp", "mnt", "etc"] {
            archive.dir(dir);
        }
        archive.host_binary("/bin/busybox")?;
        for name in &kernel.modules {
            let path = kernel.modules_dir.join(format!("{name}.ko"));
            let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            archive.file(&format!("modules/{name}.ko"), FILE, bytes);
        }
        archive.file(
            "modules/order",
            FILE,
            (kernel.modules.join("\n") + "\n").into_bytes(),
        );
        Ok(archive)
    }

    fn dir(&mut self, path: &str) {
        let mut prefix = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            self.dirs.insert(prefix.clone());
        }
    }

    /// Adds a file at `path` (relative to the guest's root) with `mode` (file type included).
    fn file(&mut self, path: &str, mode: u32, bytes: Vec<u8>) {
        let path = path.trim_start_matches('/').to_owned();
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.files.retain(|(p, _, _)| *p != path);
        self.files.push((path, mode, bytes));
    }

    /// Adds a data file.
    #[allow(dead_code, reason = "only the tests that include this file add data")]
    pub fn data(&mut self, path: &str, bytes: Vec<u8>) {
        self.file(path, FILE, bytes);
    }

    /// Copies the host's executable at `path` to the same place in the guest, with the shared
    /// libraries `ldd` names (also at their host paths; none for a static binary).
    pub fn host_binary(&mut self, path: &str) -> Result<()> {
        let bytes = fs::read(path).with_context(|| format!("reading {path}"))?;
        self.file(path, EXECUTABLE, bytes);
        let out = Command::new("ldd")
            .arg(path)
            .output()
            .context("running ldd")?;
        // ldd fails ("not a dynamic executable") for a static binary: nothing to add.
        for library in String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(ldd_path)
        {
            let bytes = fs::read(&library).with_context(|| format!("reading {library}"))?;
            self.file(&library, EXECUTABLE, bytes);
        }
        Ok(())
    }

    /// Sets `/init` to `script` (see [`init_script`]).
    pub fn init(&mut self, script: &str) {
        self.file("init", EXECUTABLE, script.as_bytes().to_vec());
    }

    /// Writes the archive to `out`.
    pub fn write(&self, out: &Path) -> Result<()> {
        let mut cpio = Vec::new();
        let mut inode = 1u32;
        let mut entry = |name: &str, mode: u32, rdev: (u32, u32), data: &[u8]| -> Result<()> {
            write_newc(&mut cpio, inode, name, mode, rdev, data)?;
            inode += 1;
            Ok(())
        };
        // Sorted, so that every directory comes before what it holds.
        for dir in &self.dirs {
            entry(dir, DIR, (0, 0), &[])?;
        }
        // The kernel opens /dev/console for init's stdin and stdout before anything mounts
        // devtmpfs: without this node init would run with neither.
        entry("dev/console", CHAR_DEVICE, (5, 1), &[])?;
        for (path, mode, bytes) in &self.files {
            entry(path, *mode, (0, 0), bytes)?;
        }
        entry("TRAILER!!!", 0, (0, 0), &[])?;
        fs::write(out, &cpio).with_context(|| format!("writing {}", out.display()))
    }
}

/// The library path in a line of `ldd` output: `libc.so.6 => /lib/…/libc.so.6 (0x…)` or
/// `/lib64/ld-linux-x86-64.so.2 (0x…)`; none for `linux-vdso.so.1 (0x…)`.
fn ldd_path(line: &str) -> Option<String> {
    let line = line.trim();
    let path = match line.split_once("=> ") {
        Some((_, rest)) => rest,
        None => line,
    };
    let path = path.split(" (").next()?.trim();
    path.starts_with('/').then(|| path.to_owned())
}

/// One `newc` entry: the 110-byte ASCII header, the name padded to 4 bytes, the data padded
/// to 4 bytes.
fn write_newc(
    out: &mut Vec<u8>,
    inode: u32,
    name: &str,
    mode: u32,
    rdev: (u32, u32),
    data: &[u8],
) -> Result<()> {
    let size = u32::try_from(data.len()).context("initramfs file over 4 GiB")?;
    let name_size = u32::try_from(name.len() + 1).context("name too long")?;
    let nlink = if mode & 0o170_000 == 0o040_000 { 2 } else { 1 };
    let fields = [
        inode, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, name_size, 0,
    ];
    out.extend_from_slice(b"070701");
    for value in fields {
        out.extend_from_slice(format!("{value:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
    Ok(())
}

fn pad4(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}

/// The start of a guest's `/init` (`who` names the guest in its comment): busybox installed,
/// `/proc`, `/sys`, `/dev` and a `/tmp`, `/run` mounted or made, the modules loaded but `aoe`,
/// and [`GUEST_IF`] up. Shell functions for what follows:
/// - `say KEY VALUE…` prints a result line; `fail WHY` prints `@@ fail WHY`, the end of the
///   kernel log, and powers off;
/// - `now` prints the seconds since boot (10 ms resolution).
pub fn init_prologue(who: &str) -> String {
    format!(
        r#"#!/bin/busybox sh
# PID 1 of the {who} guest.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /run
say() {{ echo "{RESULT_MARKER}$*"; }}
fail() {{
    say "fail $*"
    dmesg | tail -n 40 | sed 's/^/dmesg: /'
    poweroff -f
}}
now() {{ cut -d' ' -f1 /proc/uptime; }}
say "booted $(uname -r) $(now)"
for m in $(cat /modules/order); do
    [ "$m" = aoe ] && continue
    insmod "/modules/$m.ko" || fail "insmod $m"
done
i=0
while [ ! -e /sys/class/net/{GUEST_IF} ]; do
    i=$((i + 1))
    [ $i -gt 100 ] && fail "no {GUEST_IF}"
    sleep 0.1
done
ip link set {GUEST_IF} mtu 1500 up || fail "ip link set {GUEST_IF} up"
"#
    )
}

/// The kernel initiator's `/init`: [`init_prologue`], then `aoe` loaded bound to
/// [`GUEST_IF`], then `body`, which may also call
/// - `wait_dev eS.N`, which waits (30 s at most, asking for discovery every second) until
///   `/dev/etherd/eS.N` exists.
///
/// After `body` the guest prints its `aoe` kernel messages (`dmesg: …`), `@@ end` and powers
/// off (QEMU runs with `-no-reboot`, so it exits; so it does on a kernel panic).
pub fn init_script(body: &str) -> String {
    format!(
        r#"{}wait_dev() {{
    i=0
    while [ ! -b "/dev/etherd/$1" ]; do
        i=$((i + 1))
        [ $i -gt 300 ] && fail "no /dev/etherd/$1 after 30 s"
        [ $((i % 10)) -eq 0 ] && echo > /dev/etherd/discover
        sleep 0.1
    done
}}
insmod /modules/aoe.ko aoe_iflist={GUEST_IF} || fail "insmod aoe"
say "aoe-loaded $(now)"
{body}
dmesg | grep -i aoe | sed 's/^/dmesg: /'
say "end $(now)"
poweroff -f
"#,
        init_prologue("kernel-initiator")
    )
}

/// Every `@@ KEY VALUE…` line of a console log, in order. The marker may follow other text
/// on the line (a kernel message can interleave with the guest's output).
pub fn results(console: &str) -> Vec<(String, String)> {
    console
        .lines()
        .filter_map(|line| {
            let at = line.find(RESULT_MARKER)?;
            let rest = line[at + RESULT_MARKER.len()..].trim_end();
            let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
            Some((key.to_owned(), value.to_owned()))
        })
        .collect()
}

/// Turns IPv6 off in namespace `ns` (for links that exist and links created later), so that
/// its interfaces get no link-local address and send no neighbour or multicast traffic.
pub fn isolate(ns: &str) -> Result<()> {
    run_checked(
        Command::new("ip")
            .args(["netns", "exec", ns, "sh", "-c"])
            // A kernel without IPv6 has nothing to turn off.
            .arg(
                "[ ! -d /proc/sys/net/ipv6 ] || { \
                 echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 && \
                 echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; }",
            ),
    )
}

/// In namespace `ns`: a bridge `bridge` (no STP, so ports forward at once) with the existing
/// link `uplink` and a new tap `tap` for QEMU as ports, MTU 1500, all up, no addresses.
pub fn bridge_tap(ns: &str, uplink: &str, bridge: &str, tap: &str) -> Result<()> {
    let ip = |args: &[&str]| run_checked(Command::new("ip").args(["-n", ns]).args(args));
    ip(&["link", "add", bridge, "type", "bridge", "stp_state", "0"])?;
    ip(&["tuntap", "add", "dev", tap, "mode", "tap"])?;
    for port in [uplink, tap] {
        ip(&["link", "set", port, "mtu", "1500", "master", bridge, "up"])?;
    }
    ip(&["link", "set", bridge, "mtu", "1500", "up"])
}

/// The wire between a host side and a guest: IPv6 off in both namespaces ([`isolate`]), a
/// veth pair from `uplink` in `host` to `up0` in `guest`, and there `up0` bridged to the tap
/// `tap0` that [`GuestSpec::tap`] names for QEMU.
#[allow(
    dead_code,
    reason = "only the tests whose guest has a NIC use it (the bench builds its own)"
)]
pub fn tap_wire(host: &netns_rig::Netns, uplink: &str, guest: &netns_rig::Netns) -> Result<()> {
    for ns in [host, guest] {
        isolate(ns.name())?;
    }
    netns_rig::Veth::new(host, uplink, guest, "up0").create()?;
    bridge_tap(guest.name(), "up0", "br0", "tap0")
}

fn run_checked(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// How QEMU runs the guest.
pub struct GuestSpec<'a> {
    /// The network namespace QEMU runs in (where the tap is).
    pub netns: &'a str,
    /// The tap device made by [`bridge_tap`] for the guest's virtio-net, or none: the guest
    /// then has no network device from the host.
    pub tap: Option<&'a str>,
    /// Share the host's root file system with the guest, read-only (QEMU refuses every
    /// write), as 9p tag [`HOST_ROOT_TAG`].
    pub host_root: bool,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Added to the kernel command line.
    pub append: &'a str,
    /// The archive written by [`Initramfs::write`].
    pub initramfs: &'a Path,
    /// Where the console and QEMU's own messages are written (`console.log`, `qemu.log`).
    pub log_dir: &'a Path,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Pin QEMU to this core (`taskset`), or let it float.
    pub core: Option<u32>,
    /// No wait on the guest lasts past this long after the boot, whatever it asks for (QEMU
    /// is killed when [`Guest::wait_exit`] runs out, and on drop).
    pub hard_timeout: Duration,
}

/// What the reader thread saw on the console.
#[derive(Default)]
struct Console {
    text: String,
    closed: bool,
}

/// A running QEMU; killed (by its pid) on drop.
pub struct Guest {
    child: Child,
    stdin: Option<ChildStdin>,
    console: Arc<(Mutex<Console>, Condvar)>,
    reader: Option<JoinHandle<()>>,
    qemu_log: PathBuf,
    deadline: Instant,
}

impl Guest {
    /// Boots `kernel` with `spec.initramfs` in QEMU (TCG) inside `spec.netns`.
    pub fn boot(kernel: &Kernel, spec: &GuestSpec) -> Result<Guest> {
        let qemu_log = spec.log_dir.join("qemu.log");
        let console_path = spec.log_dir.join("console.log");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", spec.netns]);
        if let Some(core) = spec.core {
            // taskset execs QEMU, as `ip netns exec` does: the child's pid is QEMU's.
            cmd.args(["taskset", "-c", &core.to_string()]);
        }
        cmd.arg("qemu-system-x86_64")
            .args(["-accel", "tcg", "-machine", "pc"])
            .args(["-smp", &spec.cpus.to_string()])
            .args(["-m", &spec.memory_mib.to_string()])
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-serial", "stdio", "-no-reboot"])
            .arg("-kernel")
            .arg(&kernel.vmlinuz)
            .arg("-initrd")
            .arg(spec.initramfs)
            // loglevel=1: kernel messages would interleave with the guest's result lines;
            // the guest prints its kernel log itself (see init_script).
            .args([
                "-append",
                &format!(
                    "console=ttyS0 quiet loglevel=1 panic=-1 ipv6.disable=1 rdinit=/init {}",
                    spec.append
                ),
            ]);
        if let Some(tap) = spec.tap {
            cmd.args([
                "-netdev",
                &format!("tap,id=net0,ifname={tap},script=no,downscript=no"),
            ])
            .args([
                "-device",
                &format!("virtio-net-pci,netdev=net0,mac={GUEST_MAC}"),
            ]);
        }
        if spec.host_root {
            // multidevs=remap: the host's mounts below / keep distinct inode numbers.
            cmd.args([
                "-virtfs",
                &format!(
                    "local,path=/,mount_tag={HOST_ROOT_TAG},security_model=none,readonly=on,\
                     multidevs=remap"
                ),
            ]);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&qemu_log)?);
        let mut child = cmd
            .spawn()
            .context("starting qemu-system-x86_64 (package qemu-system-x86)")?;
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().context("QEMU's stdout")?;
        let console = Arc::new((Mutex::new(Console::default()), Condvar::new()));
        let shared = Arc::clone(&console);
        let mut file = fs::File::create(&console_path)?;
        let reader = std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            loop {
                let count = match stdout.read(&mut buffer) {
                    Ok(0) | Err(_) => 0,
                    Ok(count) => count,
                };
                let (lock, changed) = &*shared;
                let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
                if count == 0 {
                    state.closed = true;
                    changed.notify_all();
                    return;
                }
                let _ = file.write_all(&buffer[..count]);
                state
                    .text
                    .push_str(&String::from_utf8_lossy(&buffer[..count]).replace('\r', ""));
                changed.notify_all();
            }
        });
        Ok(Guest {
            child,
            stdin,
            console,
            reader: Some(reader),
            qemu_log,
            deadline: Instant::now() + spec.hard_timeout,
        })
    }

    /// The console output so far.
    pub fn console(&self) -> String {
        let (lock, _) = &*self.console;
        lock.lock().unwrap_or_else(|p| p.into_inner()).text.clone()
    }

    /// The last `count` lines of the console and QEMU's own messages, for error reports.
    pub fn tail(&self, count: usize) -> String {
        let console = self.console();
        let lines: Vec<&str> = console.lines().collect();
        let start = lines.len().saturating_sub(count);
        let qemu = fs::read_to_string(&self.qemu_log).unwrap_or_default();
        format!(
            "--- guest console (last {} lines) ---\n{}\n--- qemu stderr ---\n{}",
            lines.len() - start,
            lines[start..].join("\n"),
            qemu.trim()
        )
    }

    /// Waits for the result line `@@ KEY …` and returns its value. Fails when the guest
    /// reports `@@ fail`, QEMU exits, or `timeout` (or the hard deadline) passes first; the
    /// error carries the end of the console.
    pub fn wait_for(&self, key: &str, timeout: Duration) -> Result<String> {
        let deadline = (Instant::now() + timeout).min(self.deadline);
        let (lock, changed) = &*self.console;
        let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            // Only whole lines: a read may end in the middle of one.
            let complete = state.text.rfind('\n').map_or(0, |end| end + 1);
            let found = results(&state.text[..complete]);
            if let Some((_, value)) = found.iter().find(|(k, _)| k == key) {
                return Ok(value.clone());
            }
            let failed = found.iter().find(|(k, _)| k == "fail");
            let why = if let Some((_, why)) = failed {
                Some(format!("the guest failed: {why}"))
            } else if state.closed {
                Some("QEMU exited".to_owned())
            } else if Instant::now() >= deadline {
                Some(format!("timed out after {timeout:?}"))
            } else {
                None
            };
            if let Some(why) = why {
                drop(state);
                bail!(
                    "waiting for `{RESULT_MARKER}{key}`: {why}\n{}",
                    self.tail(60)
                );
            }
            let left = deadline.saturating_duration_since(Instant::now());
            state = changed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Types `line` and Enter on the guest's console (what a `read` in the guest returns).
    #[allow(
        dead_code,
        reason = "only tests/kernel_initiator.rs and tests/busy_poll_guest.rs answer the guest"
    )]
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("QEMU's stdin is closed")?;
        stdin.write_all(format!("{line}\n").as_bytes())?;
        stdin.flush()?;
        Ok(())
    }

    /// Waits until QEMU exits (the guest powered off), at most `timeout`; kills it after that.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = (Instant::now() + timeout).min(self.deadline);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!(
                    "QEMU did not exit within {timeout:?} and was killed\n{}",
                    self.tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills QEMU (SIGKILL to its own pid) and reaps it.
    fn kill(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.kill();
        self.stdin = None;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines_give_library_paths() {
        assert_eq!(
            ldd_path("\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)"),
            Some("/lib/x86_64-linux-gnu/libc.so.6".to_owned())
        );
        assert_eq!(
            ldd_path("\t/lib64/ld-linux-x86-64.so.2 (0x00007f)"),
            Some("/lib64/ld-linux-x86-64.so.2".to_owned())
        );
        assert_eq!(ldd_path("\tlinux-vdso.so.1 (0x00007ffd)"), None);
        assert_eq!(ldd_path("\tnot a dynamic executable"), None);
    }

    #[test]
    fn module_names_follow_the_kernel() {
        assert_eq!(
            module_name("kernel/drivers/net/virtio_net.ko"),
            "virtio_net"
        );
        assert_eq!(module_name("virtio-rng.ko.xz"), "virtio_rng");
    }

    #[test]
    fn result_lines_are_found_behind_other_text() {
        let console = "boot\n@@ size e1.1 32768\n[ 1.0] aoe: x@@ synced\n@@ end\n";
        assert_eq!(
            results(console),
            [
                ("size".to_owned(), "e1.1 32768".to_owned()),
                ("synced".to_owned(), String::new()),
                ("end".to_owned(), String::new()),
            ]
        );
    }

    #[test]
    fn newc_entries_are_padded_to_four_bytes() {
        let mut out = Vec::new();
        write_newc(&mut out, 7, "init", EXECUTABLE, (0, 0), b"abc").unwrap();
        // 110-byte header, "init\0" padded to 116, 3 bytes of data padded to 120.
        assert_eq!(out.len(), 120);
        assert_eq!(&out[..6], b"070701");
        assert_eq!(&out[6..14], b"00000007");
        assert_eq!(&out[54..62], b"00000003"); // file size
        assert_eq!(&out[110..115], b"init\0");
    }

    #[test]
    fn apt_fields_are_read_from_a_stanza() {
        let stanza = "Package: linux-image-amd64\nVersion: 6.1.1-1\nDepends: linux-image-6.1.0-9-amd64 (= 6.1.1-1)\n";
        assert_eq!(field(stanza, "Version").as_deref(), Some("6.1.1-1"));
        assert!(field(stanza, "Depends")
            .unwrap()
            .starts_with("linux-image-6.1.0-9"));
        assert_eq!(field(stanza, "Missing"), None);
    }
}
