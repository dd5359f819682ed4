//! A memory cgroup of its own for a process under test, to make the kernel reclaim that
//! process's page cache (as a `MemoryMax` limit does under memory pressure). cgroup v2 where
//! it has the memory controller (`memory.reclaim`), else v1's memory hierarchy
//! (`memory.force_empty`). Needs root.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How this machine's memory cgroups are mounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// A memory cgroup; its processes moved back to the parent and the cgroup removed on drop.
#[derive(Debug)]
pub struct MemCgroup {
    path: PathBuf,
    version: Version,
}

impl MemCgroup {
    /// Creates `/sys/fs/cgroup/<name>` (v2) or `/sys/fs/cgroup/memory/<name>` (v1), `name`
    /// made unique with this process's pid.
    pub fn new(name: &str) -> MemCgroup {
        let name = format!("{name}-{}", std::process::id());
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers");
        let (root, version) = match fs::read_to_string(v2) {
            Ok(controllers) if controllers.split_whitespace().any(|c| c == "memory") => {
                (PathBuf::from("/sys/fs/cgroup"), Version::V2)
            }
            _ => (PathBuf::from("/sys/fs/cgroup/memory"), Version::V1),
        };
        assert!(
            root.join("cgroup.procs").exists(),
            "no memory cgroup hierarchy at {} (v2 without the memory controller, and no v1)",
            root.display()
        );
        if version == Version::V2 {
            // The children of the root get the memory controller (systemd usually enables it).
            let _ = fs::write(root.join("cgroup.subtree_control"), "+memory");
        }
        let path = root.join(name);
        fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("create the cgroup {}: {e}", path.display()));
        MemCgroup { path, version }
    }

    /// Moves process `pid` (all its threads) into the cgroup: the page cache it brings in from
    /// now on is charged to it.
    pub fn add(&self, pid: u32) {
        fs::write(self.path.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("move {pid} into {}: {e}", self.path.display()));
    }

    /// Makes the kernel reclaim every page it can that is charged to the cgroup (clean page
    /// cache; counted in `/proc/vmstat` as `pgsteal_file`).
    pub fn reclaim(&self) {
        match self.version {
            // EAGAIN when it could not reclaim the whole amount asked for: it reclaimed what it
            // could.
            Version::V2 => drop(fs::write(self.path.join("memory.reclaim"), "1G")),
            Version::V1 => fs::write(self.path.join("memory.force_empty"), "0")
                .unwrap_or_else(|e| panic!("memory.force_empty of {}: {e}", self.path.display())),
        }
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        let parent = self.path.parent().expect("under the hierarchy's root");
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let procs = fs::read_to_string(self.path.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.split_whitespace() {
                let _ = fs::write(parent.join("cgroup.procs"), pid);
            }
            if fs::remove_dir(&self.path).is_ok() || Instant::now() > deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
