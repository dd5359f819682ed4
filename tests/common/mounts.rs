//! Small file systems for fault tests: a tmpfs of a given size mounted on a temporary
//! directory (a full file system gives `ENOSPC`), and loop devices. Needs root (`mount`,
//! `losetup`).
//!
//! Hazard: the unmount on drop is lazy (`umount -l`): a loop device over a file in it, or a
//! process that still has a file open, lets go a moment later.

use std::path::{Path, PathBuf};
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

/// Attaches a loop device of `block_size`-byte blocks over `backing`; returns its path.
pub fn losetup(backing: &Path, block_size: u32) -> PathBuf {
    let out = Command::new("losetup")
        .args(["-b", &block_size.to_string(), "-f", "--show"])
        .arg(backing)
        .output();
    let out = out.expect("losetup must be installed (util-linux)");
    assert!(
        out.status.success(),
        "losetup failed (needs root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Detaches a loop device on drop.
pub struct Detach(pub PathBuf);

impl Drop for Detach {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}
