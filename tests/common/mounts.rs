//! Small file systems for fault tests: a tmpfs of a given size mounted on a temporary
//! directory (a full file system gives `ENOSPC`). Needs root (`mount`).
//!
//! Hazard: the unmount on drop is lazy (`umount -l`): a loop device over a file in it, or a
//! process that still has a file open, lets go a moment later.

use std::path::Path;
use std::process::Command;

/// A temporary directory under /var/tmp to mount a file system on; unmounted (lazily) and
/// removed on drop.
pub struct MountPoint {
    dir: tempfile::TempDir,
}

impl MountPoint {
    pub fn new() -> MountPoint {
        MountPoint {
            dir: tempfile::tempdir_in("/var/tmp").expect("temporary directory"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for MountPoint {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A tmpfs of `kib` KiB mounted on a temporary directory under /var/tmp.
pub struct SmallTmpfs {
    mount: MountPoint,
}

impl SmallTmpfs {
    /// Mounts it; panics with `mount`'s output if that fails.
    pub fn new(kib: u64) -> SmallTmpfs {
        let mount = MountPoint::new();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(mount.path())
            .output()
            .expect("mount must be installed");
        assert!(
            out.status.success(),
            "mount -t tmpfs failed (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallTmpfs { mount }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.mount.path()
    }
}
