//! Guest halt polling for the length of a run: in a KVM guest whose idle loop is the haltpoll
//! cpuidle driver, an idle vCPU polls for `guest_halt_poll_ns` before it halts.
//!
//! Why the bench sets it: a system whose core idles between frames (vblade; aoe-xdp's
//! workers once they sleep) is woken by the other side's send, which on one VM wakes the
//! receiving end's NAPI thread on that core. With this VM's boot setting (0) the woken vCPU
//! has halted: the wake-up is an IPI which the host must deliver to a descheduled vCPU, slow to
//! arrive and paid for in the sender's call. In an A/B on 2026-12-08 (two runs each way,
//! alternating) vblade answered random reads at queue depth 1 at a p50 of 72-78 µs with 0 and
//! 38-40 µs with 200 µs, at 12-13k against 23-24k requests/s, and at depth 16 at 140k against
//! 164-214k; aoe-xdp's polling worker and the AF_PACKET reflector, which do not idle under
//! load, moved within the noise. With polling, an idle vCPU marks itself polling and a
//! wake-up is a flag the waker sets: as on a machine whose idle cores sleep lightly, the
//! strongest case for a target that sleeps. (It does not touch the wake-up of a core that is
//! running: the load generator never idles, so a target's send still wakes its NAPI thread
//! with an IPI.)
//!
//! The value is machine-wide; [`HaltPoll`] puts back what it found when dropped (at the end
//! of the run, on failure or on Ctrl-C).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The haltpoll cpuidle driver's poll time (ns), writable at run time.
pub const GUEST_HALT_POLL_NS: &str = "/sys/module/haltpoll/parameters/guest_halt_poll_ns";

/// The bench's setting, in force until dropped.
#[derive(Debug)]
pub struct HaltPoll {
    path: PathBuf,
    /// What the machine had.
    previous: u64,
    /// What the run has.
    current: u64,
}

impl HaltPoll {
    /// Sets `path` (a `guest_halt_poll_ns` file) to `ns`. `Ok(None)` where there is no such
    /// file (bare metal, or a guest idling otherwise): nothing to set.
    pub fn set(path: &Path, ns: u64) -> Result<Option<HaltPoll>> {
        let previous = match fs::read_to_string(path) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .with_context(|| format!("{}: not a number: {text:?}", path.display()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error).with_context(|| format!("read {}", path.display())),
        };
        fs::write(path, ns.to_string()).with_context(|| format!("write {}", path.display()))?;
        Ok(Some(HaltPoll {
            path: path.to_owned(),
            previous,
            current: ns,
        }))
    }

    /// What the machine had before the run.
    pub fn previous(&self) -> u64 {
        self.previous
    }

    /// What the run has.
    pub fn current(&self) -> u64 {
        self.current
    }
}

impl Drop for HaltPoll {
    fn drop(&mut self) {
        if let Err(error) = fs::write(&self.path, self.previous.to_string()) {
            eprintln!(
                "could not put back {} = {}: {error}",
                self.path.display(),
                self.previous
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("haltpoll-{}-{name}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir.join("guest_halt_poll_ns")
    }

    #[test]
    fn the_setting_holds_while_the_guard_lives_and_the_old_value_comes_back() {
        let path = scratch("restore");
        fs::write(&path, "0\n").unwrap();
        {
            let guard = HaltPoll::set(&path, 200_000).unwrap().unwrap();
            assert_eq!(fs::read_to_string(&path).unwrap(), "200000");
            assert_eq!((guard.previous(), guard.current()), (0, 200_000));
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), "0");
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn no_file_means_nothing_to_set_and_garbage_is_an_error() {
        let path = scratch("absent");
        assert!(HaltPoll::set(&path, 1).unwrap().is_none());
        fs::write(&path, "many").unwrap();
        let error = HaltPoll::set(&path, 1).unwrap_err().to_string();
        assert!(error.contains("not a number"), "{error}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "many");
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
