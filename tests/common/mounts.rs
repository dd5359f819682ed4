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

/// A block device's write-back limit made small and strict (`/sys/class/bdi/*/strict_limit`
/// and `max_bytes`, Linux 6.2+): once that much of its data is dirty, a process writing to it
/// is paused in dirty-page throttling until the disk takes some, as a writer on a slow disk is
/// once the system's dirty limit is reached. The device's old limits come back on drop (a
/// loop device's limits outlive its detach).
pub struct DirtyLimit {
    bdi: PathBuf,
    max_ratio: String,
    strict_limit: String,
}

impl DirtyLimit {
    /// Limits the block device `device` (e.g. `/dev/loop3`) to `bytes` of dirty data.
    pub fn new(device: &Path, bytes: u64) -> DirtyLimit {
        let name = device.file_name().expect("a device name");
        let bdi = Path::new("/sys/block").join(name).join("bdi");
        let read = |file: &str| {
            std::fs::read_to_string(bdi.join(file))
                .unwrap_or_else(|error| panic!("read {file} of {}: {error}", bdi.display()))
        };
        let limit = DirtyLimit {
            max_ratio: read("max_ratio"),
            strict_limit: read("strict_limit"),
            bdi: bdi.clone(),
        };
        limit.set("strict_limit", "1");
        limit.set("max_bytes", &bytes.to_string());
        limit
    }

    fn set(&self, file: &str, value: &str) {
        std::fs::write(self.bdi.join(file), value)
            .unwrap_or_else(|error| panic!("write {value} to {file}: {error}"));
    }
}

impl Drop for DirtyLimit {
    fn drop(&mut self) {
        let _ = std::fs::write(self.bdi.join("max_ratio"), self.max_ratio.trim());
        let _ = std::fs::write(self.bdi.join("strict_limit"), self.strict_limit.trim());
    }
}
