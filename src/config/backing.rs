//! Inspection of a device's backing store before it is exported.
//!
//! Contract: `probe` opens and closes the backing file or block device without reading or
//! writing data, and reports every problem it can find for the device (a missing file or a
//! wrong file type stops the checks that need the file). A block device's size is read from
//! sysfs (`/sys/dev/block/MAJOR:MINOR/size`; where that is missing, by seeking to its end);
//! block devices are also opened with O_EXCL, which fails while the device is mounted or
//! claimed, as the dataplane will open them. `export_sectors_now` only looks at the size:
//! what a running target, which holds its block devices with O_EXCL, asks once a second.
//! Neither takes the block device's inode lock (seeking does, exclusively, and so waits for
//! a buffered read or write of the device that holds it shared: one paused by dirty-page
//! throttling holds it for up to 200 ms, and the dataplane's reads queue behind the seek).
//!
//! Hazard: the checks are a snapshot; a file can shrink or vanish after them. The dataplane
//! still range-checks every request against the extent found when it opens the file.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::PathBuf;

use super::DeviceConfig;
use crate::storage::export::{memory_shortfall, MemoryShortfall};

/// Bytes per AoE sector.
pub const SECTOR_SIZE: u64 = 512;

/// What kind of object backs a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackingKind {
    /// A regular file.
    File,
    /// A block device.
    BlockDevice,
}

/// A backing store that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backing {
    /// File or block device.
    pub kind: BackingKind,
    /// Size of the whole file or device in bytes.
    pub size_bytes: u64,
    /// Whole 512-byte sectors in the file or device (a partial last sector is not exported).
    pub total_sectors: u64,
    /// Sectors exported: the device's length, or everything after its offset.
    pub export_sectors: u64,
}

/// A problem with one device's backing store.
#[derive(Debug, thiserror::Error)]
#[error("device \"{device}\": path {}: {problem}", path.display())]
pub struct BackingError {
    /// The device's name.
    pub device: String,
    /// The backing path.
    pub path: PathBuf,
    /// What is wrong.
    pub problem: BackingProblem,
}

/// What is wrong with a backing store, and the fix.
#[derive(Debug, thiserror::Error)]
pub enum BackingProblem {
    /// Nothing exists at the path.
    #[error("does not exist; create it (e.g. truncate -s 1G FILE) or fix the path")]
    Missing,
    /// The path is neither a regular file nor a block device.
    #[error("is a {0}; use a regular file or a block device")]
    WrongKind(&'static str),
    /// stat, open or seek failed for another reason.
    #[error("cannot be inspected ({0}); check the path and its permissions")]
    Inaccessible(io::Error),
    /// The offset leaves no sector to export.
    #[error(
        "has {total_sectors} sectors, and offset = {offset_sectors} leaves nothing to export; \
         lower offset or use a bigger file"
    )]
    NothingLeft {
        /// Whole sectors in the file.
        total_sectors: u64,
        /// The device's offset.
        offset_sectors: u64,
    },
    /// offset + length goes past the end.
    #[error(
        "has {total_sectors} sectors, fewer than offset + length = {end_sectors}; grow the file \
         or shorten length"
    )]
    TooSmall {
        /// Whole sectors in the file.
        total_sectors: u64,
        /// offset + length.
        end_sectors: u64,
    },
    /// A read-write device on a read-only file system.
    #[error("is on a read-only file system; set read-only = true or remount it read-write")]
    ReadOnlyFileSystem,
    /// A read-write device that cannot be opened for writing.
    #[error("cannot be opened for writing ({0}); set read-only = true or fix its permissions")]
    NotWritable(io::Error),
    /// A read-write device backed by a read-only block device.
    #[error(
        "is a read-only block device; set read-only = true or make it writable (blockdev --setrw)"
    )]
    ReadOnlyDevice,
    /// A block device that is mounted or held exclusively by someone else.
    #[error("is in use (mounted, or held by another program); unmount or release it first")]
    InUse,
    /// direct-io = true, but the file system refuses O_DIRECT.
    #[error("does not support O_DIRECT; set direct-io = false")]
    NoDirectIo,
    /// resident = true, but the exported window is larger than the memory available.
    #[error("{0}")]
    ResidentTooLarge(MemoryShortfall),
}

/// Runs every check on `device`'s backing store.
pub(crate) fn probe(device: &DeviceConfig) -> Result<Backing, Vec<BackingError>> {
    let error = |problem| BackingError {
        device: device.name.clone(),
        path: device.path.clone(),
        problem,
    };
    let metadata = std::fs::metadata(&device.path).map_err(|err| {
        let problem = match err.kind() {
            io::ErrorKind::NotFound => BackingProblem::Missing,
            _ => BackingProblem::Inaccessible(err),
        };
        vec![error(problem)]
    })?;
    let kind = kind(&metadata).map_err(|problem| vec![error(problem)])?;
    let size_bytes = size_bytes(device, kind, &metadata)
        .map_err(|err| vec![error(BackingProblem::Inaccessible(err))])?;
    let total_sectors = size_bytes / SECTOR_SIZE;
    let mut problems = Vec::new();
    let export_sectors = extent_problem(device, total_sectors, &mut problems);
    if kind == BackingKind::BlockDevice && !device.read_only && block_device_read_only(&metadata) {
        problems.push(BackingProblem::ReadOnlyDevice);
    }
    problems.extend(open_problems(device, kind));
    // The check start-up makes before `mlock`.
    if device.resident {
        problems.extend(memory_shortfall(export_sectors).map(BackingProblem::ResidentTooLarge));
    }
    if !problems.is_empty() {
        return Err(problems.into_iter().map(error).collect());
    }
    Ok(Backing {
        kind,
        size_bytes,
        total_sectors,
        export_sectors,
    })
}

fn kind(metadata: &Metadata) -> Result<BackingKind, BackingProblem> {
    let file_type = metadata.file_type();
    if file_type.is_file() {
        Ok(BackingKind::File)
    } else if file_type.is_block_device() {
        Ok(BackingKind::BlockDevice)
    } else if file_type.is_dir() {
        Err(BackingProblem::WrongKind("directory"))
    } else if file_type.is_char_device() {
        Err(BackingProblem::WrongKind("character device"))
    } else if file_type.is_fifo() {
        Err(BackingProblem::WrongKind("FIFO"))
    } else if file_type.is_socket() {
        Err(BackingProblem::WrongKind("socket"))
    } else {
        Err(BackingProblem::WrongKind("special file"))
    }
}

/// The sectors `device` exports as its backing store is now, without opening it; `None`
/// where the store cannot be looked at, the device's extent no longer fits in it, or a
/// `resident` window would no longer fit in memory (see [`probe`] for why).
pub(crate) fn export_sectors_now(device: &DeviceConfig) -> Option<u64> {
    let metadata = std::fs::metadata(&device.path).ok()?;
    let kind = kind(&metadata).ok()?;
    let total_sectors = size_bytes(device, kind, &metadata).ok()? / SECTOR_SIZE;
    let mut problems = Vec::new();
    let export_sectors = extent_problem(device, total_sectors, &mut problems);
    let fits = !device.resident || memory_shortfall(export_sectors).is_none();
    (problems.is_empty() && fits).then_some(export_sectors)
}

/// The size of the file or block device in bytes.
fn size_bytes(device: &DeviceConfig, kind: BackingKind, metadata: &Metadata) -> io::Result<u64> {
    match kind {
        BackingKind::File => Ok(metadata.len()),
        BackingKind::BlockDevice => match block_device_sysfs_size(metadata) {
            Some(bytes) => Ok(bytes),
            None => block_device_seek_size(device),
        },
    }
}

/// A block device's size from sysfs, which counts it in 512-byte units whatever the
/// device's block size; no lock taken.
fn block_device_sysfs_size(metadata: &Metadata) -> Option<u64> {
    let path = format!("{}/size", block_device_sysfs_dir(metadata));
    let units: u64 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    units.checked_mul(512)
}

/// st_size of a block device is 0; its size is also where seeking to the end lands (which
/// takes the device's inode lock).
fn block_device_seek_size(device: &DeviceConfig) -> io::Result<u64> {
    let mut file = File::open(&device.path)?;
    file.seek(SeekFrom::End(0))
}

/// Whether this process has the block device at `path` open (the dataplane opens block
/// devices with O_EXCL only, so such a device is claimed by this process, not by a mount or
/// another program).
fn claimed_by_this_process(path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(wanted) = std::fs::metadata(path) else {
        return false;
    };
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::metadata(fd.path())
            .is_ok_and(|open| open.file_type().is_block_device() && open.rdev() == wanted.rdev())
    })
}

/// `/sys/dev/block/MAJOR:MINOR` of a block device.
fn block_device_sysfs_dir(metadata: &Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    let rdev = metadata.rdev();
    let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    format!("/sys/dev/block/{major}:{minor}")
}

/// True if sysfs says the block device is read-only. Opening such a device for writing
/// succeeds on current kernels (only the writes fail), so the open test cannot tell.
fn block_device_read_only(metadata: &Metadata) -> bool {
    std::fs::read_to_string(format!("{}/ro", block_device_sysfs_dir(metadata)))
        .is_ok_and(|text| text.trim() == "1")
}

/// Checks offset and length against the size; returns the exported sector count.
fn extent_problem(
    device: &DeviceConfig,
    total_sectors: u64,
    problems: &mut Vec<BackingProblem>,
) -> u64 {
    let offset_sectors = device.offset_sectors;
    match device.length_sectors {
        None if offset_sectors >= total_sectors => {
            problems.push(BackingProblem::NothingLeft {
                total_sectors,
                offset_sectors,
            });
            0
        }
        None => total_sectors - offset_sectors,
        Some(length) => {
            let end_sectors = offset_sectors.saturating_add(length);
            if end_sectors > total_sectors {
                problems.push(BackingProblem::TooSmall {
                    total_sectors,
                    end_sectors,
                });
            }
            length
        }
    }
}

/// Opens the store the way the dataplane will (read-write unless read-only, O_EXCL for block
/// devices, O_DIRECT if asked) and classifies failures.
fn open_problems(device: &DeviceConfig, kind: BackingKind) -> Vec<BackingProblem> {
    let mut problems = Vec::new();
    let mut options = OpenOptions::new();
    options.read(true).write(!device.read_only);
    if kind == BackingKind::BlockDevice {
        options.custom_flags(libc::O_EXCL);
    }
    let mut opened = options.open(&device.path);
    if kind == BackingKind::BlockDevice
        && opened
            .as_ref()
            .is_err_and(|err| err.kind() == io::ErrorKind::ResourceBusy)
        && claimed_by_this_process(&device.path)
    {
        // This process serves the device (a running target checking a configuration to
        // reload): the claim is its own. The rest of the check, without O_EXCL.
        opened = OpenOptions::new()
            .read(true)
            .write(!device.read_only)
            .open(&device.path);
    }
    match opened {
        Ok(_) => {}
        Err(err) => problems.push(match err.kind() {
            io::ErrorKind::ReadOnlyFilesystem => BackingProblem::ReadOnlyFileSystem,
            io::ErrorKind::ResourceBusy => BackingProblem::InUse,
            _ if device.read_only => BackingProblem::Inaccessible(err),
            _ => BackingProblem::NotWritable(err),
        }),
    }
    if device.direct_io {
        match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(&device.path)
        {
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::InvalidInput => {
                problems.push(BackingProblem::NoDirectIo);
            }
            // Any other failure was reported by the first open.
            Err(_) => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::config::{Config, Interfaces};

    /// A validated device backed by `path`, with extra `[[device]]` lines.
    fn device(path: &std::path::Path, extra: &str) -> DeviceConfig {
        let text = format!(
            "[[device]]\nname = \"d\"\npath = \"{}\"\nshelf = 1\nslot = 0\n{extra}\n",
            path.display()
        );
        let config = Config::from_toml(&text, "test.toml").unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(config.devices[0].interfaces, Interfaces::All);
        config.devices[0].clone()
    }

    fn sized_file(dir: &tempfile::TempDir, name: &str, len: u64) -> PathBuf {
        let path = dir.path().join(name);
        File::create(&path).unwrap().set_len(len).unwrap();
        path
    }

    fn problems(device: &DeviceConfig) -> Vec<BackingProblem> {
        device
            .probe()
            .expect_err("backing should be rejected")
            .into_iter()
            .map(|err| {
                assert_eq!(err.device, "d");
                assert_eq!(err.path, device.path);
                err.problem
            })
            .collect()
    }

    #[test]
    fn test_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        // A partial last sector is not exported.
        let path = sized_file(&dir, "disk.img", 1024 * 1024 + 100);
        let backing = device(&path, "").probe().unwrap();
        assert_eq!(
            backing,
            Backing {
                kind: BackingKind::File,
                size_bytes: 1024 * 1024 + 100,
                total_sectors: 2048,
                export_sectors: 2048,
            }
        );
        let backing = device(&path, "offset = 48").probe().unwrap();
        assert_eq!(backing.export_sectors, 2000);
        let backing = device(&path, "offset = 48\nlength = 2000").probe().unwrap();
        assert_eq!(backing.export_sectors, 2000);
        assert_eq!(
            device(&path, "offset = 48\nlength = 2000").export_sectors_now(),
            Some(2000)
        );
        assert_eq!(
            device(&path, "offset = 48\nlength = 2001").export_sectors_now(),
            None,
            "the window no longer fits"
        );
        let backing = device(&path, "read-only = true\ndirect-io = true")
            .probe()
            .unwrap();
        assert_eq!(backing.export_sectors, 2048);
    }

    #[test]
    fn test_resident_window_must_fit_in_memory() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let path = sized_file(&dir, "small.img", 1024 * 1024);
        let backing = device(&path, "resident = true").probe().unwrap();
        assert_eq!(backing.export_sectors, 2048);
        // A sparse 8 TiB file: more than this machine's memory.
        let path = sized_file(&dir, "big.img", 1 << 43);
        let found = problems(&device(&path, "resident = true"));
        assert!(
            matches!(
                found[..],
                [BackingProblem::ResidentTooLarge(MemoryShortfall {
                    needed_mib: 8_388_608,
                    ..
                })]
            ),
            "{found:?}"
        );
        // Without resident, the same file is fine; with a short length, too.
        device(&path, "").probe().unwrap();
        device(&path, "resident = true\nlength = 2048")
            .probe()
            .unwrap();
    }

    #[test]
    fn test_rejects_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let device = device(&dir.path().join("absent.img"), "");
        let errors = device.probe().unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(matches!(errors[0].problem, BackingProblem::Missing));
        let shown = errors[0].to_string();
        assert!(shown.starts_with("device \"d\": path "), "{shown}");
        assert!(
            shown.ends_with(
                "absent.img: does not exist; create it (e.g. truncate -s 1G FILE) or fix the path"
            ),
            "{shown}"
        );
    }

    #[test]
    fn test_rejects_directory() {
        let dir = tempfile::tempdir().unwrap();
        let found = problems(&device(dir.path(), ""));
        assert!(
            matches!(found[..], [BackingProblem::WrongKind("directory")]),
            "{found:?}"
        );
    }

    #[test]
    fn test_rejects_character_device() {
        let found = problems(&device(std::path::Path::new("/dev/null"), ""));
        assert!(
            matches!(found[..], [BackingProblem::WrongKind("character device")]),
            "{found:?}"
        );
    }

    #[test]
    fn test_rejects_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let found = problems(&device(&sized_file(&dir, "empty.img", 0), ""));
        assert!(
            matches!(
                found[..],
                [BackingProblem::NothingLeft {
                    total_sectors: 0,
                    offset_sectors: 0
                }]
            ),
            "{found:?}"
        );
    }

    #[test]
    fn test_rejects_offset_at_end() {
        let dir = tempfile::tempdir().unwrap();
        let found = problems(&device(&sized_file(&dir, "d.img", 8 * 512), "offset = 8"));
        assert!(
            matches!(
                found[..],
                [BackingProblem::NothingLeft {
                    total_sectors: 8,
                    offset_sectors: 8
                }]
            ),
            "{found:?}"
        );
    }

    #[test]
    fn test_rejects_too_small() {
        let dir = tempfile::tempdir().unwrap();
        let path = sized_file(&dir, "d.img", 8 * 512);
        let found = problems(&device(&path, "offset = 4\nlength = 5"));
        assert!(
            matches!(
                found[..],
                [BackingProblem::TooSmall {
                    total_sectors: 8,
                    end_sectors: 9
                }]
            ),
            "{found:?}"
        );
        assert!(device(&path, "offset = 4\nlength = 4").probe().is_ok());
    }

    /// A read-only sysfs attribute (4096 bytes): not writable even for root, and sysfs
    /// refuses O_DIRECT. Both problems are reported, with the size problem.
    #[test]
    fn test_reports_all_problems_of_a_device() {
        let path = std::path::Path::new("/sys/kernel/uevent_seqnum");
        let found = problems(&device(path, "direct-io = true\nlength = 9"));
        assert!(
            matches!(
                found[..],
                [
                    BackingProblem::TooSmall {
                        total_sectors: 8,
                        end_sectors: 9
                    },
                    BackingProblem::NotWritable(_),
                    BackingProblem::NoDirectIo,
                ]
            ),
            "{found:?}"
        );
        let found = problems(&device(path, "direct-io = true\nread-only = true"));
        assert!(
            matches!(found[..], [BackingProblem::NoDirectIo]),
            "{found:?}"
        );
    }

    #[test]
    fn test_check_backing_collects_every_device() {
        let dir = tempfile::tempdir().unwrap();
        let good = sized_file(&dir, "good.img", 4096);
        let text = format!(
            "[[device]]\npath = \"{}\"\nshelf = 1\nslot = 0\n\
             [[device]]\npath = \"{}\"\nshelf = 1\nslot = 1\n\
             [[device]]\npath = \"{}\"\nshelf = 1\nslot = 2\noffset = 8\n",
            dir.path().join("missing.img").display(),
            dir.path().display(),
            good.display(),
        );
        let config = Config::from_toml(&text, "t.toml").unwrap();
        let errors = config.check_backing();
        let names: Vec<&str> = errors.iter().map(|err| err.device.as_str()).collect();
        assert_eq!(names, ["e1.0", "e1.1", "e1.2"], "{errors:?}");
    }

    /// A loop device over a temporary file, detached on drop.
    struct LoopDevice {
        path: PathBuf,
    }

    impl LoopDevice {
        /// None (after saying why) where loop devices cannot be set up; CI runs as root, and
        /// AOE_XDP_REQUIRE_PRIV=1 turns that skip into a failure.
        fn attach(file: &std::path::Path, read_only: bool) -> Option<LoopDevice> {
            let mut command = Command::new("losetup");
            command.arg("--find").arg("--show");
            if read_only {
                command.arg("--read-only");
            }
            let output = command.arg(file).output();
            match output {
                Ok(output) if output.status.success() => {
                    let path = String::from_utf8(output.stdout).unwrap();
                    Some(LoopDevice {
                        path: PathBuf::from(path.trim()),
                    })
                }
                other => {
                    let reason = format!("skipping: cannot attach a loop device: {other:?}");
                    assert!(
                        std::env::var_os("AOE_XDP_REQUIRE_PRIV").is_none(),
                        "{reason}"
                    );
                    eprintln!("{reason}");
                    None
                }
            }
        }
    }

    impl Drop for LoopDevice {
        fn drop(&mut self) {
            let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
        }
    }

    #[test]
    fn test_block_device() {
        let dir = tempfile::tempdir().unwrap();
        let file = sized_file(&dir, "loop.img", 3 * 1024 * 1024);
        let Some(loop_device) = LoopDevice::attach(&file, false) else {
            return;
        };
        let device = device(&loop_device.path, "offset = 2048");
        let backing = device.probe().unwrap();
        assert_eq!(backing.kind, BackingKind::BlockDevice);
        assert_eq!(backing.size_bytes, 3 * 1024 * 1024);
        assert_eq!(backing.export_sectors, 6144 - 2048);
        // Held exclusively by this process (as a running target holds the devices it serves,
        // and then checks a configuration to reload): not a problem.
        let holder = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_EXCL)
            .open(&loop_device.path)
            .unwrap();
        assert!(device.probe().is_ok());
        // What a running target asks once a second of a device it holds so: the size.
        assert_eq!(device.export_sectors_now(), Some(6144 - 2048));
        drop(holder);
        // Mounted: reported as in use.
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&loop_device.path)
            .status()
            .expect("mkfs.ext4 (e2fsprogs)");
        assert!(mkfs.success());
        let mount = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .arg(&loop_device.path)
            .arg(mount.path())
            .status()
            .expect("mount");
        assert!(mounted.success());
        let found = problems(&device);
        let _ = Command::new("umount").arg(mount.path()).status();
        assert!(matches!(found[..], [BackingProblem::InUse]), "{found:?}");
        // The size, all the same.
        assert_eq!(device.export_sectors_now(), Some(6144 - 2048));
        assert_eq!(
            self::device(&loop_device.path, "offset = 6144").export_sectors_now(),
            None,
            "nothing left after the offset"
        );
    }

    #[test]
    fn test_read_only_block_device() {
        let dir = tempfile::tempdir().unwrap();
        let file = sized_file(&dir, "loop-ro.img", 1024 * 1024);
        let Some(loop_device) = LoopDevice::attach(&file, true) else {
            return;
        };
        let found = problems(&device(&loop_device.path, ""));
        assert!(
            matches!(found[..], [BackingProblem::ReadOnlyDevice]),
            "{found:?}"
        );
        assert!(device(&loop_device.path, "read-only = true")
            .probe()
            .is_ok());
    }
}
