//! Network namespaces, veth pairs and the processes started in them, for `demo`, `bench` and
//! `soak`. Namespaces and veths are the `netns-rig` crate's (the integration tests build theirs
//! with it too); the processes are [`Daemon`]s.
//!
//! Every resource is a guard: a [`Netns`] is deleted and a [`Daemon`] stopped (SIGTERM, then
//! SIGKILL after a grace period) when dropped, also when the command fails half-way. Only
//! processes started here are ever signalled, by their own PID. Declare namespaces before the
//! processes that run in them, so that processes are dropped (stopped) first.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
pub use netns_rig::{veth_pair, Netns};

use crate::util::run;

/// How long a stopped process may take to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A long-running process with stdout and stderr in a log file, stopped on drop.
pub struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` (stdin closed, stdout and stderr to `log`); `name` is used in messages.
    pub fn spawn(name: &str, cmd: Command, log: &Path) -> Result<Daemon> {
        let out = create(log)?;
        Daemon::spawn_with(name, cmd, out.try_clone()?, out, log)
    }

    /// Starts `cmd` with stdout to `stdout` and stderr to `log` (the log of the other methods).
    pub fn spawn_split(name: &str, cmd: Command, stdout: &Path, log: &Path) -> Result<Daemon> {
        Daemon::spawn_with(name, cmd, create(stdout)?, create(log)?, log)
    }

    fn spawn_with(
        name: &str,
        mut cmd: Command,
        stdout: fs::File,
        stderr: fs::File,
        log: &Path,
    ) -> Result<Daemon> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {name}: {}", crate::util::describe(&cmd)))?;
        Ok(Daemon {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
        })
    }

    /// Stops the process (`SIGSTOP`) until [`Daemon::resume`]: it uses no CPU meanwhile.
    pub fn pause(&mut self) -> Result<()> {
        run(Command::new("kill").args(["-STOP", &self.child.id().to_string()]))
    }

    /// Continues a paused process (`SIGCONT`).
    pub fn resume(&mut self) -> Result<()> {
        run(Command::new("kill").args(["-CONT", &self.child.id().to_string()]))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Waits until the log contains `needle`; fails if the process exits first or `timeout`
    /// passes.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log_text();
            if log.contains(needle) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited with {status} before it was ready:\n{log}",
                    self.name
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} was not ready within {} s:\n{log}",
                    self.name,
                    timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit; kills it if it takes longer than the grace period.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        let pid = self.child.id().to_string();
        run(Command::new("kill").args(["-TERM", &pid]))?;
        // A paused daemon handles SIGTERM only once it runs again.
        run(Command::new("kill").args(["-CONT", &pid]))?;
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                self.child.kill()?;
                let _ = self.child.wait();
                bail!(
                    "{} did not stop within {} s of SIGTERM and was killed",
                    self.name,
                    STOP_GRACE.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn create(path: &Path) -> Result<fs::File> {
    fs::File::create(path).with_context(|| format!("creating {}", path.display()))
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.stop();
        }
    }
}
