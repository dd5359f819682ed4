//! Loading and attaching the XDP program that steers AoE requests into AF_XDP sockets.
//!
//! Contract: [`XdpProgram::attach`] loads the object embedded from `bpf/aoe_xdp.bpf.o` (built by
//! `cargo xtask build-bpf`, see `bpf/aoe_xdp.bpf.c` for what it matches) and attaches it to one
//! interface through a BPF link (`BPF_LINK_CREATE`), native (driver) mode first and generic
//! (skb) mode as the fallback under [`XdpMode::Auto`]; [`XdpProgram::mode`] says which one it
//! got. Sockets are registered
//! per RX queue with [`XdpProgram::insert_socket`]; until then the program passes AoE to the
//! kernel (counted as `passed_no_xsk`). Which destination MACs the program serves
//! ([`DstFilter`]) is written into its `aoe_config` map before it is attached: each attach
//! loads its own copy of the object, so every interface has its own MAC there. Its counters
//! are kept per RX queue; [`XdpProgram::queue_counters`] gives a port its own.
//!
//! Why a link: the attachment lives exactly as long as the link's file descriptor, so a crash,
//! a `kill -9` or an abort detaches the program with the process; nothing is left steering AoE
//! into a socket that no longer exists. A netlink attachment (`bpf_xdp_attach`) outlives its
//! process, and removing it at the next start means finding it by name, which needs
//! `CAP_SYS_ADMIN` (`BPF_PROG_GET_FD_BY_ID`): the systemd unit's capabilities cannot, so a
//! restart after a crash fell back to AF_PACKET. Nobody else can detach or replace a linked
//! program either (`ip link set dev IF xdp off` answers EBUSY while aoe-xdp runs).
//!
//! Hazards:
//! - [`detach_stale`] still removes a netlink-attached `aoe_xdp` (an earlier version's, or one
//!   loaded with `ip link`) at startup, as root; a linked one it cannot remove and need not.
//! - Interface indexes are per network namespace: create an [`XdpProgram`] on a thread in the
//!   interface's namespace (the link then holds the interface, wherever it is dropped).
//! - Native and generic programs cannot coexist on one interface; attaching fails with
//!   EBUSY/EEXIST while another program is attached (a link never replaces one).

use std::cell::RefCell;
use std::ffi::CStr;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Once;

use libbpf_rs::libbpf_sys;
use libbpf_rs::{MapCore, MapFlags, ObjectBuilder};

use super::abi::{
    XdpConfig, XdpCounters, CONFIG_MAP_NAME, COUNTERS_MAP_NAME, PROGRAM_NAME, XSKS_MAP_MAX_ENTRIES,
    XSKS_MAP_NAME,
};
use super::DstFilter;

/// The compiled XDP program, committed in `bpf/` so building needs no clang.
static OBJECT: &[u8] = include_bytes!("../../../bpf/aoe_xdp.bpf.o");

/// Which attach mode to ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// Native first; generic if native fails for any reason.
    Auto,
    /// Driver mode only (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// Generic (skb) mode only (`XDP_FLAGS_SKB_MODE`): works on any interface, always copies.
    Generic,
}

/// The attach mode actually in effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Driver (native) XDP.
    Native,
    /// Generic (skb) XDP.
    Generic,
}

impl AttachMode {
    fn flag(self) -> u32 {
        match self {
            AttachMode::Native => libbpf_sys::XDP_FLAGS_DRV_MODE,
            AttachMode::Generic => libbpf_sys::XDP_FLAGS_SKB_MODE,
        }
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        })
    }
}

/// Errors from loading, attaching, querying or detaching the XDP program.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// The kernel refused the object (verifier, privileges, memory).
    #[error("cannot load the XDP program: {hint}")]
    Load {
        /// Likely cause and fix.
        hint: &'static str,
        /// What libbpf reported.
        #[source]
        source: libbpf_rs::Error,
    },
    /// The embedded object does not match `src/sys/xdp/abi.rs`.
    #[error("embedded BPF object does not match abi.rs ({what}): run cargo xtask build-bpf")]
    Abi {
        /// What differs.
        what: &'static str,
    },
    /// Attaching to the interface failed.
    #[error("cannot attach XDP to ifindex {ifindex} in {mode} mode: {hint}")]
    Attach {
        /// Interface index (in the caller's network namespace).
        ifindex: u32,
        /// The mode that was tried last.
        mode: AttachMode,
        /// Likely cause and fix.
        hint: &'static str,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
    /// Detaching from the interface failed.
    #[error("cannot detach XDP program {prog_id} from ifindex {ifindex}: {hint}")]
    Detach {
        /// Interface index.
        ifindex: u32,
        /// The program we tried to detach.
        prog_id: u32,
        /// Likely cause and fix.
        hint: &'static str,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
    /// Another running aoe-xdp serves the interface: its program is attached and a live
    /// process holds it.
    #[error(
        "ifindex {ifindex} is already served by another aoe-xdp (pid {pid}, XDP program \
         {prog_id}); stop that one first, or serve another interface"
    )]
    InUse {
        /// Interface index.
        ifindex: u32,
        /// The other instance's program.
        prog_id: u32,
        /// A process that holds it.
        pid: u32,
    },
    /// Asking the kernel what is attached failed.
    #[error("cannot query XDP state of ifindex {ifindex}: {hint}")]
    Query {
        /// Interface index.
        ifindex: u32,
        /// Likely cause and fix.
        hint: &'static str,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
    /// Reading or updating one of the program's maps failed.
    #[error("cannot access BPF map {map}")]
    Map {
        /// Map name.
        map: &'static str,
        /// What libbpf reported.
        #[source]
        source: libbpf_rs::Error,
    },
    /// The queue id has no slot in the XSKMAP.
    #[error("queue id {queue_id} is out of range: the XSKMAP has {max} entries")]
    QueueOutOfRange {
        /// The queue id asked for.
        queue_id: u32,
        /// `XSKS_MAP_MAX_ENTRIES`.
        max: u32,
    },
}

/// An XDP program currently attached to an interface (from [`attached_program`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachedProgram {
    /// Kernel program id.
    pub id: u32,
    /// Attach mode.
    pub mode: AttachMode,
    /// Program name as the kernel reports it (at most 15 bytes).
    pub name: String,
}

/// The loaded `aoe_xdp` program, attached to one interface until dropped.
///
/// Field order is drop order: the link (the attachment) goes before `object` (program and map
/// fds).
pub struct XdpProgram {
    ifindex: u32,
    mode: AttachMode,
    prog_id: u32,
    /// The BPF link: closing it detaches the program. `None` once detached.
    link: Option<OwnedFd>,
    object: libbpf_rs::Object,
}

impl fmt::Debug for XdpProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XdpProgram")
            .field("ifindex", &self.ifindex)
            .field("mode", &self.mode)
            .field("prog_id", &self.prog_id)
            .field("attached", &self.link.is_some())
            .finish_non_exhaustive()
    }
}

impl XdpProgram {
    /// Loads the embedded program, tells it which destinations are ours (`dst`: normally
    /// [`DstFilter::Own`] with the interface's MAC) and attaches it to `ifindex` (in the calling
    /// thread's network namespace).
    ///
    /// Fails if any XDP program is already attached; call [`detach_stale`] first to remove a
    /// netlink-attached leftover `aoe_xdp`.
    pub fn attach(ifindex: u32, mode: XdpMode, dst: DstFilter) -> Result<XdpProgram, LoaderError> {
        route_libbpf_logs();
        let object = load_object()?;
        // Before the attach: the program never runs without its interface's MAC.
        write_config(&object, dst.xdp_config())?;
        let prog_id = {
            let prog = find_program(&object)?;
            libbpf_rs::Program::id_from_fd(prog.as_fd()).map_err(|source| LoaderError::Load {
                hint: "cannot read the program id",
                source,
            })?
        };
        let attempts: &[AttachMode] = match mode {
            XdpMode::Auto => &[AttachMode::Native, AttachMode::Generic],
            XdpMode::Native => &[AttachMode::Native],
            XdpMode::Generic => &[AttachMode::Generic],
        };
        let mut last_error = None;
        for &attempt in attempts {
            let result = {
                let prog = find_program(&object)?;
                xdp_link(ifindex, prog.as_fd(), attempt.flag())
            };
            match result {
                Ok(link) => {
                    tracing::info!(ifindex, mode = %attempt, prog_id, "attached XDP program");
                    return Ok(XdpProgram {
                        ifindex,
                        mode: attempt,
                        prog_id,
                        link: Some(link),
                        object,
                    });
                }
                Err(source) => {
                    let hint = attach_hint(&source);
                    if mode == XdpMode::Auto && attempt == AttachMode::Native {
                        let error = &source;
                        tracing::warn!(ifindex, %error, hint, "native XDP failed, trying generic");
                    }
                    last_error = Some(LoaderError::Attach {
                        ifindex,
                        mode: attempt,
                        hint,
                        source,
                    });
                }
            }
        }
        Err(last_error.expect("at least one attach mode was tried"))
    }

    /// The attach mode in effect.
    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    /// The interface the program is attached to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The kernel's id for the loaded program.
    pub fn program_id(&self) -> u32 {
        self.prog_id
    }

    /// Registers the AF_XDP socket `xsk` for RX queue `queue_id`: from now on AoE requests that
    /// arrive on that queue are redirected to it.
    pub fn insert_socket(&self, queue_id: u32, xsk: BorrowedFd<'_>) -> Result<(), LoaderError> {
        check_queue(queue_id)?;
        let map = self.map(XSKS_MAP_NAME)?;
        map.update(
            &queue_id.to_ne_bytes(),
            &xsk.as_raw_fd().to_ne_bytes(),
            MapFlags::ANY,
        )
        .map_err(|source| LoaderError::Map {
            map: XSKS_MAP_NAME,
            source,
        })
    }

    /// Removes the socket of `queue_id` (AoE on that queue passes to the kernel again).
    pub fn remove_socket(&self, queue_id: u32) -> Result<(), LoaderError> {
        check_queue(queue_id)?;
        let map = self.map(XSKS_MAP_NAME)?;
        match map.delete(&queue_id.to_ne_bytes()) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == libbpf_rs::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(LoaderError::Map {
                map: XSKS_MAP_NAME,
                source,
            }),
        }
    }

    /// The program's counters, summed over all CPUs and RX queues.
    pub fn counters(&self) -> Result<XdpCounters, LoaderError> {
        let map = self.map(COUNTERS_MAP_NAME)?;
        let mut total = XdpCounters::default();
        for queue_id in 0..XSKS_MAP_MAX_ENTRIES {
            let per_cpu = map
                .lookup_percpu(&queue_id.to_ne_bytes(), MapFlags::ANY)
                .map_err(|source| LoaderError::Map {
                    map: COUNTERS_MAP_NAME,
                    source,
                })?
                .unwrap_or_default();
            for bytes in &per_cpu {
                let one = XdpCounters::from_ne_bytes(bytes).ok_or(LoaderError::Abi {
                    what: "aoe_counters value size",
                })?;
                total = total.saturating_add(one);
            }
        }
        Ok(total)
    }

    /// The counters of RX queue `queue_id` (a port's), as a handle that reads them without
    /// allocating and stays valid however long the program lives.
    pub fn queue_counters(&self, queue_id: u32) -> Result<XdpQueueCounters, LoaderError> {
        check_queue(queue_id)?;
        let map = self.map(COUNTERS_MAP_NAME)?;
        let map_error = |source| LoaderError::Map {
            map: COUNTERS_MAP_NAME,
            source,
        };
        let fd = map
            .as_fd()
            .try_clone_to_owned()
            .map_err(|error| map_error(libbpf_rs::Error::from(error)))?;
        let cpus = libbpf_rs::num_possible_cpus().map_err(map_error)?;
        Ok(XdpQueueCounters {
            map: fd,
            queue_id,
            buffer: RefCell::new(vec![0u8; cpus * XdpCounters::SIZE].into_boxed_slice()),
        })
    }

    /// Which destinations the program serves now, as [`DstFilter`] (read back from its map).
    pub fn dst_filter(&self) -> Result<DstFilter, LoaderError> {
        let map = self.map(CONFIG_MAP_NAME)?;
        let bytes = map
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(|source| LoaderError::Map {
                map: CONFIG_MAP_NAME,
                source,
            })?
            .ok_or(LoaderError::Abi {
                what: "aoe_config has no entry",
            })?;
        if bytes.get(6).is_some_and(|&any| any != 0) {
            return Ok(DstFilter::Any);
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(bytes.get(..6).ok_or(LoaderError::Abi {
            what: "aoe_config value size",
        })?);
        Ok(DstFilter::Own(mac))
    }

    /// Detaches the program now (closes its link; an interface deleted meanwhile took the
    /// program with it). Dropping does the same.
    pub fn detach(mut self) {
        self.detach_inner();
    }

    fn detach_inner(&mut self) {
        if self.link.take().is_some() {
            tracing::info!(
                ifindex = self.ifindex,
                prog_id = self.prog_id,
                "detached XDP program"
            );
        }
    }

    fn map(&self, name: &'static str) -> Result<libbpf_rs::Map<'_>, LoaderError> {
        find_map(&self.object, name)
    }
}

impl Drop for XdpProgram {
    fn drop(&mut self) {
        self.detach_inner();
    }
}

/// The counters of one RX queue in the program's per-CPU `aoe_counters` map (see
/// [`XdpProgram::queue_counters`]). It holds its own descriptor of the map, so it can be
/// moved to the worker that serves the queue and outlive the [`XdpProgram`].
pub struct XdpQueueCounters {
    map: OwnedFd,
    queue_id: u32,
    /// One value per possible CPU, as the kernel copies a per-CPU entry out (each value
    /// rounded up to 8 bytes; the struct's size already is a multiple of 8).
    buffer: RefCell<Box<[u8]>>,
}

const _: () = assert!(XdpCounters::SIZE % 8 == 0);

impl fmt::Debug for XdpQueueCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XdpQueueCounters")
            .field("queue_id", &self.queue_id)
            .finish_non_exhaustive()
    }
}

impl XdpQueueCounters {
    /// The queue's counters summed over all CPUs: one `bpf` system call, no allocation.
    pub fn read(&self) -> io::Result<XdpCounters> {
        let mut buffer = self.buffer.borrow_mut();
        let key = self.queue_id;
        // SAFETY: the fd is an open per-CPU array map whose key is a u32 and whose value is an
        // `XdpCounters` (checked when the object was loaded); for such a map the kernel writes
        // one value per possible CPU, each rounded up to 8 bytes, which is the buffer's length.
        // Both pointers are valid for the duration of the call and nothing else uses them.
        let ret = unsafe {
            libbpf_sys::bpf_map_lookup_elem(
                self.map.as_raw_fd(),
                std::ptr::from_ref(&key).cast(),
                buffer.as_mut_ptr().cast(),
            )
        };
        if ret < 0 {
            return Err(io::Error::from_raw_os_error(-ret));
        }
        let total = buffer
            .chunks_exact(XdpCounters::SIZE)
            .filter_map(XdpCounters::from_ne_bytes)
            .fold(XdpCounters::default(), XdpCounters::saturating_add);
        Ok(total)
    }

    /// The RX queue these are the counters of.
    pub fn queue_id(&self) -> u32 {
        self.queue_id
    }
}

/// What XDP program, if any, is attached to `ifindex` (in the calling thread's namespace).
pub fn attached_program(ifindex: u32) -> Result<Option<AttachedProgram>, LoaderError> {
    let mut opts = libbpf_sys::bpf_xdp_query_opts {
        sz: size_of_u64::<libbpf_sys::bpf_xdp_query_opts>(),
        ..Default::default()
    };
    let index = ifindex_arg(ifindex).map_err(|source| LoaderError::Query {
        ifindex,
        hint: "interface index out of range",
        source,
    })?;
    // SAFETY: `opts` is a live, correctly sized `bpf_xdp_query_opts` (its `sz` field says so);
    // libbpf writes only inside it and keeps no pointer after returning.
    let ret = unsafe { libbpf_sys::bpf_xdp_query(index, 0, &mut opts) };
    if ret < 0 {
        let source = io::Error::from_raw_os_error(-ret);
        let hint = query_hint(&source);
        return Err(LoaderError::Query {
            ifindex,
            hint,
            source,
        });
    }
    let (id, mode) = if opts.drv_prog_id != 0 {
        (opts.drv_prog_id, AttachMode::Native)
    } else if opts.skb_prog_id != 0 {
        (opts.skb_prog_id, AttachMode::Generic)
    } else {
        return Ok(None);
    };
    Ok(Some(AttachedProgram {
        id,
        mode,
        name: program_name(id).unwrap_or_default(),
    }))
}

/// Detaches a netlink-attached `aoe_xdp` program left on `ifindex` (an earlier version that did
/// not shut down cleanly, or one loaded with `ip link`). Returns the detached program's id, or
/// `None` if there was nothing of ours attached. A program with another name is left alone (and
/// [`XdpProgram::attach`] will then fail with a message naming it as the cause); so is one
/// whose name cannot be read (that needs `CAP_SYS_ADMIN`). A linked program cannot be stale:
/// its link closes with its process.
pub fn detach_stale(ifindex: u32) -> Result<Option<u32>, LoaderError> {
    let Some(found) = attached_program(ifindex)? else {
        return Ok(None);
    };
    if found.name != PROGRAM_NAME {
        return Ok(None);
    }
    if let Some(pid) = program_holder(found.id) {
        return Err(LoaderError::InUse {
            ifindex,
            prog_id: found.id,
            pid,
        });
    }
    let detach_error = |source: io::Error| LoaderError::Detach {
        ifindex,
        prog_id: found.id,
        hint: detach_hint(&source),
        source,
    };
    let fd = libbpf_rs::Program::fd_from_id(found.id)
        .map_err(|error| detach_error(io::Error::other(error.to_string())))?;
    xdp_detach_netlink(ifindex, found.mode.flag(), fd.as_fd()).map_err(detach_error)?;
    tracing::warn!(
        ifindex,
        prog_id = found.id,
        "detached a stale aoe_xdp program"
    );
    Ok(Some(found.id))
}

/// Fails with [`LoaderError::InUse`] when a live aoe-xdp serves `ifindex` (its program is
/// attached and held by a running process other than this one). A program that nobody holds
/// was left by a crash: that is not an error (see [`detach_stale`]).
pub fn check_not_served(ifindex: u32) -> Result<(), LoaderError> {
    let Some(found) = attached_program(ifindex)? else {
        return Ok(());
    };
    match program_holder(found.id) {
        Some(pid) if found.name == PROGRAM_NAME => Err(LoaderError::InUse {
            ifindex,
            prog_id: found.id,
            pid,
        }),
        _ => Ok(()),
    }
}

/// A process other than this one that holds a file descriptor of BPF program `prog_id`
/// (found through `/proc/PID/fdinfo`, whose `prog_id:` line names it). A running aoe-xdp
/// holds its program for as long as it serves; a crashed one holds nothing. Unreadable
/// entries (processes that exit meanwhile) are skipped.
pub fn program_holder(prog_id: u32) -> Option<u32> {
    let own = std::process::id();
    let wanted = format!("prog_id:\t{prog_id}");
    let processes = std::fs::read_dir("/proc").ok()?;
    processes
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != own)
        .find(|pid| {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
                return false;
            };
            fds.filter_map(Result::ok).any(|fd| {
                std::fs::read_to_string(fd.path())
                    .is_ok_and(|info| info.lines().any(|line| line == wanted))
            })
        })
}

/// Attaches `prog` to `ifindex` in mode `flags` through a new BPF link, whose fd is returned:
/// the program stays attached as long as that fd is open.
fn xdp_link(ifindex: u32, prog: BorrowedFd<'_>, flags: u32) -> io::Result<OwnedFd> {
    let index = ifindex_arg(ifindex)?;
    let opts = libbpf_sys::bpf_link_create_opts {
        sz: size_of_u64::<libbpf_sys::bpf_link_create_opts>(),
        flags,
        ..Default::default()
    };
    // SAFETY: `prog` is borrowed for the duration of the call, so it is open; `opts` is a live,
    // correctly sized struct that libbpf only reads.
    let ret =
        unsafe { libbpf_sys::bpf_link_create(prog.as_raw_fd(), index, libbpf_sys::BPF_XDP, &opts) };
    if ret < 0 {
        // libbpf returns -errno (and sets errno).
        return Err(io::Error::from_raw_os_error(-ret));
    }
    // SAFETY: a fresh link fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

/// Detaches the netlink-attached program `expected` from `ifindex` in mode `flags`, only if it
/// is still the one attached (the kernel compares atomically: `XDP_FLAGS_REPLACE`).
fn xdp_detach_netlink(ifindex: u32, flags: u32, expected: BorrowedFd<'_>) -> io::Result<()> {
    let index = ifindex_arg(ifindex)?;
    let opts = libbpf_sys::bpf_xdp_attach_opts {
        sz: size_of_u64::<libbpf_sys::bpf_xdp_attach_opts>(),
        // libbpf adds XDP_FLAGS_REPLACE when this is non-zero.
        old_prog_fd: expected.as_raw_fd(),
        ..Default::default()
    };
    // SAFETY: `expected` is borrowed for the duration of the call, so it is open; `opts` is a
    // live, correctly sized struct that libbpf only reads.
    let ret = unsafe { libbpf_sys::bpf_xdp_attach(index, -1, flags, &opts) };
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret));
    }
    Ok(())
}

/// The kernel's name for program `id`, if it still exists.
fn program_name(id: u32) -> Option<String> {
    let fd = libbpf_rs::Program::fd_from_id(id).ok()?;
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = u32::try_from(std::mem::size_of::<libbpf_sys::bpf_prog_info>()).ok()?;
    // SAFETY: `fd` is an open program fd; `info` is a live `bpf_prog_info` of `len` bytes, and all
    // pointer fields in it are zero, so the kernel writes only the fixed-size fields.
    let ret = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    if ret < 0 {
        return None;
    }
    let bytes: Vec<u8> = info.name.iter().map(|&c| c.to_ne_bytes()[0]).collect();
    let name = CStr::from_bytes_until_nul(&bytes).ok()?;
    Some(name.to_string_lossy().into_owned())
}

fn load_object() -> Result<libbpf_rs::Object, LoaderError> {
    let open = ObjectBuilder::default()
        .open_memory(OBJECT)
        .map_err(|source| LoaderError::Load {
            hint: "the embedded object is not a valid BPF ELF: run cargo xtask build-bpf",
            source,
        })?;
    let object = open.load().map_err(|source| LoaderError::Load {
        hint: load_hint(&source),
        source,
    })?;
    // The ABI checks that need the loaded object: names and value sizes.
    find_program(&object)?;
    find_map(&object, XSKS_MAP_NAME)?;
    let counters = find_map(&object, COUNTERS_MAP_NAME)?;
    if usize::try_from(counters.value_size()).ok() != Some(XdpCounters::SIZE) {
        return Err(LoaderError::Abi {
            what: "aoe_counters value size",
        });
    }
    if counters.max_entries() != XSKS_MAP_MAX_ENTRIES {
        return Err(LoaderError::Abi {
            what: "aoe_counters entries",
        });
    }
    let config = find_map(&object, CONFIG_MAP_NAME)?;
    if usize::try_from(config.value_size()).ok() != Some(XdpConfig::SIZE) {
        return Err(LoaderError::Abi {
            what: "aoe_config value size",
        });
    }
    Ok(object)
}

/// Writes the program's one configuration entry.
fn write_config(object: &libbpf_rs::Object, config: XdpConfig) -> Result<(), LoaderError> {
    find_map(object, CONFIG_MAP_NAME)?
        .update(&0u32.to_ne_bytes(), &config.to_bytes(), MapFlags::ANY)
        .map_err(|source| LoaderError::Map {
            map: CONFIG_MAP_NAME,
            source,
        })
}

fn find_program(object: &libbpf_rs::Object) -> Result<libbpf_rs::Program<'_>, LoaderError> {
    object
        .progs()
        .find(|prog| prog.name() == PROGRAM_NAME)
        .ok_or(LoaderError::Abi {
            what: "program aoe_xdp missing",
        })
}

fn find_map<'obj>(
    object: &'obj libbpf_rs::Object,
    name: &'static str,
) -> Result<libbpf_rs::Map<'obj>, LoaderError> {
    object
        .maps()
        .find(|map| map.name() == name)
        .ok_or(LoaderError::Abi {
            what: "map missing",
        })
}

fn check_queue(queue_id: u32) -> Result<(), LoaderError> {
    if queue_id >= XSKS_MAP_MAX_ENTRIES {
        return Err(LoaderError::QueueOutOfRange {
            queue_id,
            max: XSKS_MAP_MAX_ENTRIES,
        });
    }
    Ok(())
}

fn ifindex_arg(ifindex: u32) -> io::Result<i32> {
    i32::try_from(ifindex).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))
}

fn size_of_u64<T>() -> u64 {
    u64::try_from(std::mem::size_of::<T>()).expect("struct size fits in u64")
}

/// Sends libbpf's own messages (verifier log, warnings) to `tracing` instead of stderr.
fn route_libbpf_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let callback: libbpf_rs::PrintCallback = |level, message| {
            let message = message.trim_end();
            match level {
                libbpf_rs::PrintLevel::Warn => tracing::warn!(target: "libbpf", "{message}"),
                // libbpf's info messages are routine (skipped sections, probes): debug level.
                libbpf_rs::PrintLevel::Info | libbpf_rs::PrintLevel::Debug => {
                    tracing::debug!(target: "libbpf", "{message}");
                }
            }
        };
        libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Info, callback)));
    });
}

const HINT_ROOT: &str = "permission denied: run as root (needs CAP_BPF/CAP_SYS_ADMIN and \
                         CAP_NET_ADMIN; on kernels before 5.11 also raise RLIMIT_MEMLOCK, \
                         e.g. ulimit -l unlimited)";

fn load_hint(error: &libbpf_rs::Error) -> &'static str {
    match error.kind() {
        libbpf_rs::ErrorKind::PermissionDenied => HINT_ROOT,
        libbpf_rs::ErrorKind::OutOfMemory => {
            "out of memory for BPF maps: raise RLIMIT_MEMLOCK (ulimit -l unlimited) or the \
             cgroup memory limit"
        }
        libbpf_rs::ErrorKind::InvalidInput => {
            "the verifier rejected the program (see the libbpf log above); the kernel may be \
             too old for XSKMAP redirect (needs Linux 5.3+)"
        }
        _ => "see the libbpf log for the cause",
    }
}

fn attach_hint(error: &io::Error) -> &'static str {
    errno_hint(error, |errno| match errno {
        libc::ENODEV => {
            Some("no such interface in this network namespace (is it up and named right?)")
        }
        libc::EBUSY | libc::EEXIST => Some(
            "another XDP program is already attached (`ip -d link show dev IFACE` names it): \
             another aoe-xdp serving this interface (its program goes when it stops), or another \
             tool's (`ip link set dev IFACE xdp off` removes one attached through netlink)",
        ),
        libc::EOPNOTSUPP => Some("the driver has no native XDP support: use generic mode"),
        libc::ERANGE => Some(
            "the MTU is too large for native XDP (veth: peer MTU too large): lower the MTU or use \
             generic mode",
        ),
        libc::EINVAL => Some("the driver refused the program or flags (try generic mode)"),
        _ => None,
    })
}

fn detach_hint(error: &io::Error) -> &'static str {
    errno_hint(error, |errno| match errno {
        libc::ENODEV => Some("the interface is gone (its XDP program went with it)"),
        libc::EEXIST => Some("the attached program is no longer ours; left it alone"),
        _ => None,
    })
}

fn query_hint(error: &io::Error) -> &'static str {
    errno_hint(error, |errno| match errno {
        libc::ENODEV => Some("no such interface in this network namespace"),
        _ => None,
    })
}

/// The hint for a failed system call's `error`: [`HINT_ROOT`] for a permission error, else
/// what `hint` says of its errno, else that the kernel's error was unexpected.
fn errno_hint(
    error: &io::Error,
    hint: impl FnOnce(libc::c_int) -> Option<&'static str>,
) -> &'static str {
    match error.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => HINT_ROOT,
        errno => errno
            .and_then(hint)
            .unwrap_or("unexpected error from the kernel"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed object is an ELF for the BPF machine with the sections the loader needs.
    /// (Loading it needs privileges; tests/xdp_reflect.rs does that.)
    #[test]
    fn test_embedded_object_is_bpf_elf() {
        assert_eq!(&OBJECT[..4], b"\x7fELF");
        // e_machine at offset 18, little-endian: EM_BPF = 247.
        assert_eq!(u16::from_le_bytes([OBJECT[18], OBJECT[19]]), 247);
        let contains = |needle: &[u8]| OBJECT.windows(needle.len()).any(|w| w == needle);
        for needle in [
            &b"xdp"[..],
            b".maps",
            b"license",
            b"aoe_xdp",
            b"xsks_map",
            b"aoe_counters",
            b"aoe_config",
        ] {
            assert!(
                contains(needle),
                "{} missing",
                String::from_utf8_lossy(needle)
            );
        }
    }

    #[test]
    fn test_hints_name_the_fix() {
        let hint = |errno| attach_hint(&io::Error::from_raw_os_error(errno));
        assert!(hint(libc::EPERM).contains("run as root"));
        assert!(hint(libc::ENODEV).contains("no such interface"));
        assert!(hint(libc::EBUSY).contains("another aoe-xdp"));
        assert!(hint(libc::ERANGE).contains("MTU"));
    }

    #[test]
    fn test_queue_range() {
        assert!(check_queue(0).is_ok());
        assert!(check_queue(XSKS_MAP_MAX_ENTRIES - 1).is_ok());
        assert!(matches!(
            check_queue(XSKS_MAP_MAX_ENTRIES),
            Err(LoaderError::QueueOutOfRange {
                queue_id: 256,
                max: 256
            })
        ));
    }
}
