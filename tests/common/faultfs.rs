//! A disk with bad sectors, or a slow one: a FUSE file system (the `fuser` crate, no libfuse)
//! holding one file, `disk`, in memory, whose reads and writes fail with `EIO` wherever they
//! touch a bad byte range, and whose reads, writes and data syncs (`fsync`, `fdatasync`) take
//! as long as asked.
//! Needs root (`/dev/fuse`, `mount(2)`).
//!
//! A request that overlaps the bad range fails whole: FUSE fills a short read up with zeros,
//! so returning the good part of it would hand out zeros as data. The kernel reads a file
//! through FUSE in whole pages (and reads ahead), so keep the bad range page-aligned and
//! expect whole pages around it to fail.
//!
//! Hazards: unmounted when dropped (the session's own unmount); a process that still has the
//! file open at that point keeps the mount busy, so stop the target first.

use std::ffi::OsStr;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, INodeNo, LockOwner, OpenFlags, ReplyAttr,
    ReplyData, ReplyEmpty, ReplyEntry, ReplyWrite, Request, WriteFlags,
};

/// The file's inode.
const DISK: INodeNo = INodeNo(2);
/// How long the kernel may cache names and attributes.
const TTL: Duration = Duration::from_secs(60);

struct Disk {
    bytes: Arc<Mutex<Vec<u8>>>,
    bad: Range<u64>,
    delays: Delays,
    /// Syncs answered so far.
    syncs: Arc<AtomicU64>,
}

impl Disk {
    fn attr(&self, ino: INodeNo) -> FileAttr {
        let (kind, size, perm) = if ino == INodeNo::ROOT {
            (FileType::Directory, 0, 0o755)
        } else {
            let size = self.bytes.lock().expect("disk lock").len() as u64;
            (FileType::RegularFile, size, 0o644)
        };
        FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind,
            perm,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn touches_bad(&self, offset: u64, len: u64) -> bool {
        offset < self.bad.end && self.bad.start < offset + len
    }
}

impl Filesystem for Disk {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent == INodeNo::ROOT && name == "disk" {
            reply.entry(&TTL, &self.attr(DISK), fuser::Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == INodeNo::ROOT || ino == DISK {
            reply.attr(&TTL, &self.attr(ino));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if ino != DISK {
            return reply.error(Errno::ENOENT);
        }
        if self.touches_bad(offset, u64::from(size)) {
            return reply.error(Errno::EIO);
        }
        std::thread::sleep(self.delays.read);
        let bytes = self.bytes.lock().expect("disk lock");
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let end = start.saturating_add(size as usize).min(bytes.len());
        reply.data(&bytes[start..end]);
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if ino != DISK {
            return reply.error(Errno::ENOENT);
        }
        if self.touches_bad(offset, data.len() as u64) {
            return reply.error(Errno::EIO);
        }
        std::thread::sleep(self.delays.write);
        let mut bytes = self.bytes.lock().expect("disk lock");
        let start = usize::try_from(offset).expect("offset fits");
        if start + data.len() > bytes.len() {
            // The disk does not grow.
            return reply.error(Errno::ENOSPC);
        }
        bytes[start..start + data.len()].copy_from_slice(data);
        reply.written(u32::try_from(data.len()).expect("FUSE writes are small"));
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        std::thread::sleep(self.delays.sync);
        self.syncs.fetch_add(1, Ordering::Relaxed);
        reply.ok();
    }
}

/// How long each kind of request takes (the file system's thread sleeps meanwhile: other
/// requests wait too).
#[derive(Clone, Copy, Default)]
struct Delays {
    read: Duration,
    write: Duration,
    sync: Duration,
}

/// The mounted file system; unmounted on drop.
pub struct FaultFs {
    // Dropped first: unmounts before the directory goes.
    _session: fuser::BackgroundSession,
    bytes: Arc<Mutex<Vec<u8>>>,
    syncs: Arc<AtomicU64>,
    dir: tempfile::TempDir,
}

impl FaultFs {
    /// Mounts a file system whose `disk` has `size` zero bytes and fails in `bad`.
    pub fn mount(size: usize, bad: Range<u64>) -> FaultFs {
        FaultFs::mount_with(size, bad, Delays::default())
    }

    /// Mounts a file system whose `disk` holds `bytes` and takes `read_delay` per read (the
    /// file system's thread sleeps meanwhile: other requests wait too), like a spinning disk.
    pub fn mount_slow_reads(bytes: Vec<u8>, read_delay: Duration) -> FaultFs {
        let delays = Delays {
            read: read_delay,
            ..Delays::default()
        };
        let fs = FaultFs::mount_with(bytes.len(), 0..0, delays);
        *fs.bytes.lock().expect("disk lock") = bytes;
        fs
    }

    /// Mounts a file system whose `disk` has `size` zero bytes and takes `sync_delay` per
    /// data sync (the file system's thread sleeps meanwhile: other requests wait too).
    pub fn mount_slow_syncs(size: usize, sync_delay: Duration) -> FaultFs {
        let delays = Delays {
            sync: sync_delay,
            ..Delays::default()
        };
        FaultFs::mount_with(size, 0..0, delays)
    }

    /// Mounts a file system whose `disk` holds `bytes` and takes `write_delay` per write (the
    /// file system's thread sleeps meanwhile: other requests wait too): a disk that takes
    /// data more slowly than a writer gives it.
    pub fn mount_slow_writes(bytes: Vec<u8>, write_delay: Duration) -> FaultFs {
        let delays = Delays {
            write: write_delay,
            ..Delays::default()
        };
        let fs = FaultFs::mount_with(bytes.len(), 0..0, delays);
        *fs.bytes.lock().expect("disk lock") = bytes;
        fs
    }

    fn mount_with(size: usize, bad: Range<u64>, delays: Delays) -> FaultFs {
        let dir = tempfile::tempdir_in("/var/tmp").expect("temporary directory");
        let bytes = Arc::new(Mutex::new(vec![0u8; size]));
        let syncs = Arc::new(AtomicU64::new(0));
        let disk = Disk {
            bytes: Arc::clone(&bytes),
            bad,
            delays,
            syncs: Arc::clone(&syncs),
        };
        let mut config = fuser::Config::default();
        config
            .mount_options
            .push(fuser::MountOption::FSName("aoe-xdp-faultfs".into()));
        let session = fuser::spawn_mount(disk, dir.path(), &config)
            .unwrap_or_else(|error| panic!("mount the FUSE file system (needs root): {error}"));
        FaultFs {
            _session: session,
            bytes,
            syncs,
            dir,
        }
    }

    /// The file.
    pub fn disk(&self) -> PathBuf {
        self.dir.path().join("disk")
    }

    /// Syncs of the file answered so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// What the file holds now.
    pub fn bytes(&self) -> Vec<u8> {
        self.bytes.lock().expect("disk lock").clone()
    }

    /// Drops `disk` from the page cache: a loop device over it keeps a copy of its own in the
    /// FUSE file's cache (a real disk has no such layer), without which reading a page back
    /// after the loop device's cache lost it is not a trip to the slow disk.
    pub fn drop_page_cache(&self) {
        let disk = std::fs::File::open(self.disk()).expect("open the FUSE file");
        rustix::fs::fadvise(&disk, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
    }
}
