//! Test harness that runs the real `aoe-xdp` binary inside a network namespace.
//!
//! [`TargetDir`] is a temporary directory holding the configuration, one sparse backing file
//! per device and the state directory; it outlives any number of runs, so a test can stop
//! the target and start it again on the same state. [`TargetProcess`] is one run: the binary
//! started as `ip netns exec <ns> aoe-xdp --config <file>` (`ip netns exec` execs in place, so
//! the child's pid is the target's pid), with stdout and stderr going to a log file in the
//! directory. Starting waits until the log says it is serving; dropping it sends SIGTERM to
//! that pid (SIGKILL after [`STOP_TIMEOUT`]) and asserts a clean exit (status 0). On any
//! failure the log is printed.
//!
//! Hazards: the borrow of the namespace and the directory keeps both alive while the target
//! runs (the process must be stopped before its namespace and files go away). Only the
//! process started here is ever signalled.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use netns_rig::Netns;

/// How long the target may take to start serving.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the target may take to stop after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The core the next target's worker is pinned to (modulo the number of cores).
static NEXT_CORE: AtomicUsize = AtomicUsize::new(0);
/// The statistics socket's name in the directory.
const CONTROL_SOCKET: &str = "ctl.sock";
/// The log line that says the dataplane is up.
const SERVING: &str = "serving; SIGINT or SIGTERM stops";

/// One exported device.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    /// AoE shelf.
    pub shelf: u16,
    /// AoE slot.
    pub slot: u8,
    /// Size of the sparse backing file, in 512-byte sectors.
    pub sectors: u64,
    /// More `key = value` lines for this `[[device]]` table.
    pub extra: String,
}

impl DeviceSpec {
    /// A read-write device of `sectors` sectors with every other key at its default.
    pub fn new(shelf: u16, slot: u8, sectors: u64) -> DeviceSpec {
        DeviceSpec {
            shelf,
            slot,
            sectors,
            extra: String::new(),
        }
    }

    /// Adds a `key = value` line to the device's table.
    pub fn with(mut self, line: &str) -> DeviceSpec {
        self.extra.push_str(line);
        self.extra.push('\n');
        self
    }
}

/// A temporary directory with a configuration, backing files and a state directory.
#[derive(Debug)]
pub struct TargetDir {
    dir: tempfile::TempDir,
    config: PathBuf,
    disks: Vec<PathBuf>,
}

impl TargetDir {
    /// Writes the configuration: `interfaces` (none: the default, every interface that is up),
    /// one worker (on the cores in turn, so that parallel tests spread out; the default idle
    /// mode, `poll`, keeps them from each spinning a core) and `target_extra` (more `[target]`
    /// lines, which may override those), then `devices`, each backed by a fresh sparse file.
    pub fn new(interfaces: &[&str], target_extra: &str, devices: &[DeviceSpec]) -> TargetDir {
        let dir = tempfile::Builder::new()
            .prefix("aoe-xdp-dataplane-")
            .tempdir()
            .expect("temporary directory");
        let quoted: Vec<String> = interfaces.iter().map(|name| format!("{name:?}")).collect();
        // No names: no `interfaces` key, so the target serves every Ethernet interface that is up.
        let mut target_keys = if quoted.is_empty() {
            String::new()
        } else {
            format!("interfaces = [{}]\n", quoted.join(", "))
        };
        writeln!(
            target_keys,
            "state-directory = {:?}",
            dir.path().join("state")
        )
        .expect("write to String");
        // Defaults the caller may override (TOML rejects a key twice, so only add missing ones;
        // a comment line naming the key, e.g. `# worker-cores: the target's default`, leaves
        // it out).
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let core = format!("[{}]", NEXT_CORE.fetch_add(1, Ordering::Relaxed) % cores);
        let socket = format!("{:?}", dir.path().join(CONTROL_SOCKET));
        for (key, value) in [
            ("worker-cores", core.as_str()),
            ("control-socket", socket.as_str()),
        ] {
            if !target_extra.lines().any(|line| {
                line.trim_start()
                    .trim_start_matches('#')
                    .trim_start()
                    .starts_with(key)
            }) {
                writeln!(target_keys, "{key} = {value}").expect("write to String");
            }
        }
        let mut text = format!("[target]\n{target_keys}{target_extra}\n");
        let mut disks = Vec::new();
        for device in devices {
            let path = dir
                .path()
                .join(format!("e{}.{}.img", device.shelf, device.slot));
            File::create(&path)
                .and_then(|file| file.set_len(device.sectors * 512))
                .unwrap_or_else(|error| panic!("create {}: {error}", path.display()));
            write!(
                text,
                "\n[[device]]\npath = {:?}\nshelf = {}\nslot = {}\n{}",
                path, device.shelf, device.slot, device.extra
            )
            .expect("write to String");
            disks.push(path);
        }
        let config = dir.path().join("aoe-xdp.toml");
        fs::write(&config, &text)
            .unwrap_or_else(|error| panic!("write {}: {error}", config.display()));
        TargetDir { dir, config, disks }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The target's statistics socket (`control-socket`).
    pub fn control_socket(&self) -> PathBuf {
        self.path().join(CONTROL_SOCKET)
    }

    /// The configuration file.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// The backing file of device `index` (in the order given to [`TargetDir::new`]).
    pub fn disk(&self, index: usize) -> &Path {
        &self.disks[index]
    }

    /// Makes the first device's backing file a link to `file` (on a file system of a test's
    /// own: a full one, a faulty or slow one).
    pub fn back_first_device_with(&self, file: &Path) {
        fs::remove_file(self.disk(0)).expect("remove the default backing file");
        std::os::unix::fs::symlink(file, self.disk(0)).expect("symlink to the test's file");
    }

    /// Starts the target inside `ns`, expecting it to refuse to start: waits for it to exit
    /// and returns its log. Panics if it starts serving or exits with status 0.
    pub fn start_refused(&self, ns: &Netns) -> String {
        self.start_refused_with(ns, &Launch::default())
    }

    /// As [`TargetDir::start_refused`], launched as `launch` says.
    pub fn start_refused_with(&self, ns: &Netns, launch: &Launch) -> String {
        let mut process = self.spawn_with(ns, launch);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = process.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().expect("wait for aoe-xdp") {
                process.child = None;
                let log = process.log();
                assert!(!status.success(), "aoe-xdp exited with {status}:\n{log}");
                return log;
            }
            assert!(
                !process.log().contains(SERVING) && Instant::now() < deadline,
                "aoe-xdp started although it should have refused"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the target inside `ns` and waits until it serves.
    pub fn start<'a>(&'a self, ns: &'a Netns) -> TargetProcess<'a> {
        self.start_with(ns, &Launch::default())
    }

    /// As [`TargetDir::start`], launched as `launch` says (behind a wrapper such as
    /// `setpriv`, with extra environment variables).
    pub fn start_with<'a>(&'a self, ns: &'a Netns, launch: &Launch) -> TargetProcess<'a> {
        let mut process = self.spawn_with(ns, launch);
        process.wait_serving();
        process
    }

    /// Lets every user read the directory and write the disks and the state directory: for a
    /// target that runs as an unprivileged user.
    pub fn open_to_all(&self) {
        use std::os::unix::fs::PermissionsExt as _;
        let state = self.path().join("state");
        fs::create_dir_all(&state).expect("create the state directory");
        fs::set_permissions(&state, fs::Permissions::from_mode(0o777)).expect("chmod state");
        fs::set_permissions(self.path(), fs::Permissions::from_mode(0o777)).expect("chmod dir");
        for path in self.disks.iter().chain([&self.config]) {
            fs::set_permissions(path, fs::Permissions::from_mode(0o666)).expect("chmod");
        }
    }

    fn spawn_with<'a>(&'a self, ns: &'a Netns, launch: &Launch) -> TargetProcess<'a> {
        let run = fs::read_dir(self.path())
            .expect("read temporary directory")
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().starts_with("run-"))
            .count();
        let log_path = self.path().join(format!("run-{run}.log"));
        let log = File::create(&log_path).expect("create log file");
        let binary = env!("CARGO_BIN_EXE_aoe-xdp");
        let mut command = match launch.wrapper.split_first() {
            None => ns.exec(binary),
            Some((program, args)) => {
                let mut command = ns.exec(program);
                command.args(args).arg(binary);
                command
            }
        };
        let child = command
            .arg("--config")
            .arg(&self.config)
            // The configuration's log level (info) decides, not the caller's environment.
            .env_remove("RUST_LOG")
            .envs(launch.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file"))
            .stderr(log)
            .spawn()
            .expect("spawn ip netns exec aoe-xdp");
        TargetProcess {
            child: Some(child),
            log_path,
            _ns: ns,
            _dir: self,
        }
    }
}

/// How to launch the target: behind `wrapper` (a program that execs the rest of its command
/// line, e.g. `setpriv ...`, so the pid stays the target's), with `env` added.
#[derive(Debug, Default)]
pub struct Launch {
    pub wrapper: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// A running `aoe-xdp`; stopped (and checked for a clean exit) on drop.
#[derive(Debug)]
pub struct TargetProcess<'a> {
    child: Option<Child>,
    log_path: PathBuf,
    _ns: &'a Netns,
    _dir: &'a TargetDir,
}

impl TargetProcess<'_> {
    /// Everything the target printed so far (stdout and stderr).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The target's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn wait_serving(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.log().contains(SERVING) {
                return;
            }
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().expect("wait for aoe-xdp") {
                self.child = None;
                // Drop prints the log.
                panic!("aoe-xdp exited with {status} before serving");
            }
            if Instant::now() > deadline {
                // Drop kills it and prints the log.
                panic!("aoe-xdp did not start serving within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM, waits (SIGKILL after [`STOP_TIMEOUT`]); returns how it ended and whether
    /// it had to be killed.
    fn terminate(&mut self) -> Option<(ExitStatus, bool)> {
        let mut child = self.child.take()?;
        let pid = rustix::process::Pid::from_child(&child);
        if let Err(error) = rustix::process::kill_process(pid, rustix::process::Signal::TERM) {
            eprintln!("warning: SIGTERM to aoe-xdp (pid {pid:?}): {error}");
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("wait for aoe-xdp") {
                return Some((status, false));
            }
            if Instant::now() > deadline {
                // Child::kill sends SIGKILL to this child's pid only.
                let _ = child.kill();
                return Some((child.wait().expect("wait for aoe-xdp"), true));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the target with SIGKILL, as a crash would (no clean-up: its XDP program stays
    /// attached, requests in flight go unanswered), waits for it and returns its log. Asserts
    /// that the signal is what ended it. Only this target's own pid is signalled.
    pub fn kill(mut self) -> String {
        use std::os::unix::process::ExitStatusExt as _;
        let mut child = self.child.take().expect("aoe-xdp is running");
        // Child::kill sends SIGKILL to this child's pid (`ip netns exec` exec'd aoe-xdp).
        child.kill().expect("SIGKILL to aoe-xdp");
        let status = child.wait().expect("wait for aoe-xdp");
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "aoe-xdp ended with {status} instead of the SIGKILL"
        );
        self.log()
    }

    /// Stops the target with SIGTERM, asserts it exited with status 0 on its own, and returns
    /// its log.
    pub fn stop(mut self) -> String {
        // On a panic here, Drop prints the log.
        match self.terminate() {
            Some((status, false)) if status.success() => self.log(),
            Some((status, killed)) => panic!(
                "aoe-xdp did not stop cleanly ({status}{})",
                if killed { ", killed after timeout" } else { "" }
            ),
            None => panic!("aoe-xdp was already stopped"),
        }
    }
}

impl Drop for TargetProcess<'_> {
    fn drop(&mut self) {
        let ended = self.terminate();
        if std::thread::panicking() {
            eprintln!("aoe-xdp log ({}):\n{}", self.log_path.display(), self.log());
            return;
        }
        if let Some((status, killed)) = ended {
            assert!(
                status.success() && !killed,
                "aoe-xdp did not stop cleanly ({status}{}); log:\n{}",
                if killed { ", killed after timeout" } else { "" },
                self.log()
            );
        }
    }
}
