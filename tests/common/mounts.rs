//! Small file systems for fault tests: a tmpfs of a given size mounted on a temporary
//! directory (a full file system gives `ENOSPC`). Needs root (`mount`).
//!
//! Hazard: the unmount on drop is lazy (`umount -l`): a loop device over a file in it, or a
//! process that still has a file open, lets go a moment later.

use std::path::Path;
use std::process::Command;

/// A tmpfs of `kib` KiB mounted on a temporary directory under /var/tmp.
pub struct SmallTmpfs {
    dir: tempfile::TempDir,
}

impl SmallTmpfs {
    /// Mounts it; panics with `mount`'s output if that fails.
    pub fn new(kib: u64) -> SmallTmpfs {
        let dir = tempfile::tempdir_in("/var/tmp").expect("temporary directory");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("mount must be installed");
        assert!(
            out.status.success(),
            "mount -t tmpfs failed (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallTmpfs { dir }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
