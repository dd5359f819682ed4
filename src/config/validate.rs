//! `RawConfig` → `Config`: every semantic rule, every problem reported.
//!
//! Contract: validation never stops at the first problem. Each check that fails pushes a
//! `ConfigError` carrying the span of the offending value (or none, for a default) and a
//! message of the form "<key>: <what is wrong>; <how to fix it>", then carries on with a
//! default so that later, independent checks still run. `Config` is returned only if no
//! problem was found. The only I/O is `System::probe` (online CPUs, host name); the backing
//! files are checked separately (`backing.rs`), so a configuration can be validated on a
//! machine other than the one that serves it, except for its cores.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::{Range, RangeInclusive};
use std::path::PathBuf;
use std::str::FromStr;

use toml::Spanned;

use super::acl::{self, ResolvedAcls};
use super::defaults;
use super::raw::{RawConfig, RawDevice, RawTarget};
use super::types::{
    Advertisement, Durability, IdleMode, InterfacePattern, Interfaces, KeywordError, LogLevel,
    MacList, PacketRing, SocketKind, XdpMode,
};
use super::{Config, ConfigError, DeviceConfig, TargetConfig};

/// Facts about the machine that validation depends on.
#[derive(Debug, Clone)]
pub(crate) struct System {
    /// Online CPU core ids, ascending; empty if they could not be determined.
    pub online_cpus: Vec<usize>,
    /// Host name, for default IDENTIFY serial numbers.
    pub hostname: String,
}

impl System {
    /// Reads /sys/devices/system/cpu/online (falling back to the process's affinity mask)
    /// and the host name.
    pub fn probe() -> System {
        let online_cpus = std::fs::read_to_string("/sys/devices/system/cpu/online")
            .ok()
            .and_then(|text| parse_cpu_list(&text))
            .unwrap_or_else(|| {
                let mut ids: Vec<usize> = core_affinity::get_core_ids()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|core| core.id)
                    .collect();
                ids.sort_unstable();
                ids
            });
        let hostname = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        System {
            online_cpus,
            hostname,
        }
    }
}

/// Parses a kernel CPU list such as "0-3,8,10-11\n" into ascending ids.
pub(crate) fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut ids = Vec::new();
    for part in text.trim().split(',').filter(|part| !part.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last): (usize, usize) = (first.parse().ok()?, last.parse().ok()?);
                if first > last {
                    return None;
                }
                ids.extend(first..=last);
            }
            None => ids.push(part.parse().ok()?),
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Some(ids)
}

/// Formats ascending ids the way the kernel does: "0-3,8".
pub(crate) fn format_cpu_list(ids: &[usize]) -> String {
    let mut text = String::new();
    let mut index = 0;
    while index < ids.len() {
        let first = ids[index];
        let mut last = first;
        while index + 1 < ids.len() && ids[index + 1] == last + 1 {
            index += 1;
            last = ids[index];
        }
        if !text.is_empty() {
            text.push(',');
        }
        if first == last {
            let _ = write!(text, "{first}");
        } else {
            let _ = write!(text, "{first}-{last}");
        }
        index += 1;
    }
    text
}

/// The problems found so far.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    errors: Vec<ConfigError>,
}

impl Problems {
    /// Records a problem at `span` (an empty span means "no location").
    pub fn push(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors
            .push(ConfigError::new(Some(span), message.into()));
    }

    /// Records a problem that has no location (it comes from a default).
    pub fn push_unlocated(&mut self, message: impl Into<String>) {
        self.errors.push(ConfigError::new(None, message.into()));
    }

    /// Records a problem at `span` if there is one, otherwise without location.
    fn push_at(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(span, message.into()));
    }

    /// Adds a reference to another place ("device "a" is at line 7") to the last problem.
    fn see_also(&mut self, label: String, span: Range<usize>) {
        if let Some(last) = self.errors.last_mut() {
            last.see_also = Some((label, span));
        }
    }

    pub fn into_errors(self) -> Vec<ConfigError> {
        self.errors
    }
}

/// Validates `raw` against `system`; returns every problem if there is any.
pub(crate) fn validate(raw: RawConfig, system: &System) -> Result<Config, Vec<ConfigError>> {
    let mut problems = Problems::default();
    let target = target(&raw.target, system, &mut problems);
    let acls = acl::resolve_acls(&raw.acls, &mut problems);
    if raw.devices.is_empty() {
        problems.push_unlocated(
            "no [[device]] table: nothing to export; add one [[device]] with path, shelf and slot",
        );
    }
    let devices: Vec<DeviceConfig> = raw
        .devices
        .iter()
        .map(|device| self::device(device, &target, &acls, system, &mut problems))
        .collect();
    check_unique(&raw.devices, &devices, &mut problems);
    let errors = problems.into_errors();
    if !errors.is_empty() {
        return Err(errors);
    }
    let acls = acls
        .into_iter()
        .map(|(name, macs)| (name, macs.expect("no problems means every ACL resolved")))
        .collect();
    Ok(Config {
        target,
        acls,
        devices,
    })
}

fn target(raw: &RawTarget, system: &System, p: &mut Problems) -> TargetConfig {
    use defaults as d;
    let pow2 = |p: &mut Problems, key: &str, value, default, range| {
        power_of_two(p, &format!("target.{key}"), value, default, range)
    };
    let ring_range = d::RING_SIZE_MIN..=d::RING_SIZE_MAX;
    let config = TargetConfig {
        interfaces: interfaces(p, "target.interfaces", raw.interfaces.as_ref()),
        worker_cores: worker_cores(p, raw.worker_cores.as_ref(), system),
        umem_frames: pow2(
            p,
            "umem-frames",
            raw.umem_frames.as_ref(),
            d::UMEM_FRAMES,
            d::UMEM_FRAMES_MIN..=d::UMEM_FRAMES_MAX,
        ),
        frame_size: frame_size(p, raw.frame_size.as_ref()),
        rx_ring_size: pow2(
            p,
            "rx-ring-size",
            raw.rx_ring_size.as_ref(),
            d::RING_SIZE,
            ring_range.clone(),
        ),
        tx_ring_size: pow2(
            p,
            "tx-ring-size",
            raw.tx_ring_size.as_ref(),
            d::RING_SIZE,
            ring_range.clone(),
        ),
        fill_ring_size: pow2(
            p,
            "fill-ring-size",
            raw.fill_ring_size.as_ref(),
            d::RING_SIZE,
            ring_range.clone(),
        ),
        completion_ring_size: pow2(
            p,
            "completion-ring-size",
            raw.completion_ring_size.as_ref(),
            d::RING_SIZE,
            ring_range,
        ),
        uring_entries: pow2(
            p,
            "uring-entries",
            raw.uring_entries.as_ref(),
            d::URING_ENTRIES,
            1..=d::URING_ENTRIES_MAX,
        ),
        idle: keyword(p, "target.idle", raw.idle.as_ref(), IdleMode::Spin),
        idle_spin_us: int_in(
            p,
            "target.idle-spin-us",
            raw.idle_spin_us.as_ref(),
            d::IDLE_SPIN_US,
            0..=d::IDLE_SPIN_US_MAX,
        ),
        idle_nap_us: int_in(
            p,
            "target.idle-nap-us",
            raw.idle_nap_us.as_ref(),
            d::IDLE_NAP_US,
            0..=d::IDLE_NAP_US_MAX,
        ),
        busy_poll_budget: int_in(
            p,
            "target.busy-poll-budget",
            raw.busy_poll_budget.as_ref(),
            d::BUSY_POLL_BUDGET,
            1..=i64::from(u16::MAX),
        ),
        busy_poll_usecs: int_in(
            p,
            "target.busy-poll-usecs",
            raw.busy_poll_usecs.as_ref(),
            d::BUSY_POLL_USECS,
            0..=d::BUSY_POLL_USECS_MAX,
        ),
        socket: keyword(p, "target.socket", raw.socket.as_ref(), SocketKind::Auto),
        xdp_mode: keyword(p, "target.xdp-mode", raw.xdp_mode.as_ref(), XdpMode::Auto),
        packet_ring: keyword(
            p,
            "target.packet-ring",
            raw.packet_ring.as_ref(),
            PacketRing::V2,
        ),
        state_directory: path(
            p,
            "target.state-directory",
            raw.state_directory.as_ref(),
            defaults::STATE_DIRECTORY,
        ),
        control_socket: control_socket(p, raw.control_socket.as_ref()),
        log_level: keyword(
            p,
            "target.log-level",
            raw.log_level.as_ref(),
            LogLevel::Info,
        ),
        merge_max_segments: int_in(
            p,
            "target.merge-max-segments",
            raw.merge_max_segments.as_ref(),
            d::MERGE_MAX_SEGMENTS,
            1..=d::MERGE_MAX_SEGMENTS_MAX,
        ),
        merge_delay_us: int_in(
            p,
            "target.merge-delay-us",
            raw.merge_delay_us.as_ref(),
            d::MERGE_DELAY_US,
            0..=d::MERGE_DELAY_US_MAX,
        ),
        advertise: raw.advertise.as_ref().is_none_or(|v| *v.get_ref()),
        accept_any_destination: raw
            .accept_any_destination
            .as_ref()
            .is_some_and(|v| *v.get_ref()),
    };
    check_target_relations(raw, &config, p);
    config
}

/// Rules between `[target]` keys.
fn check_target_relations(raw: &RawTarget, config: &TargetConfig, p: &mut Problems) {
    // Frames that can be away from the free pool at the same time:
    //   fill-ring-size   posted to the kernel for RX (and then sitting in the RX ring)
    // + tx-ring-size     queued for transmission until they come back through completion
    // Fewer UMEM frames than that and a full fill ring starves TX (or the reverse).
    let frames_needed = u64::from(config.fill_ring_size) + u64::from(config.tx_ring_size);
    if u64::from(config.umem_frames) < frames_needed {
        let span = first_span(&[
            raw.umem_frames.as_ref().map(Spanned::span),
            raw.fill_ring_size.as_ref().map(Spanned::span),
            raw.tx_ring_size.as_ref().map(Spanned::span),
        ]);
        p.push_at(
            span,
            format!(
                "target.umem-frames = {} is less than fill-ring-size + tx-ring-size = {}; \
                 raise umem-frames to at least {} or shrink those rings",
                config.umem_frames,
                frames_needed,
                frames_needed.next_power_of_two()
            ),
        );
    }
    if config.completion_ring_size < config.tx_ring_size {
        let span = first_span(&[
            raw.completion_ring_size.as_ref().map(Spanned::span),
            raw.tx_ring_size.as_ref().map(Spanned::span),
        ]);
        p.push_at(
            span,
            format!(
                "target.completion-ring-size = {} is smaller than tx-ring-size = {}; every sent \
                 frame comes back through the completion ring, make it at least {}",
                config.completion_ring_size, config.tx_ring_size, config.tx_ring_size
            ),
        );
    }
    if let (SocketKind::Packet, Some(mode)) = (config.socket, raw.xdp_mode.as_ref()) {
        p.push(
            mode.span(),
            format!(
                "target.xdp-mode = \"{}\" has no effect with socket = \"packet\"; remove \
                 xdp-mode or use socket = \"auto\"",
                mode.get_ref()
            ),
        );
    }
}

fn first_span(spans: &[Option<Range<usize>>]) -> Option<Range<usize>> {
    spans.iter().flatten().next().cloned()
}

fn frame_size(p: &mut Problems, raw: Option<&Spanned<i64>>) -> u32 {
    let Some(value) = raw else {
        return defaults::FRAME_SIZE;
    };
    match *value.get_ref() {
        2048 => 2048,
        4096 => 4096,
        other => {
            p.push(
                value.span(),
                format!(
                    "target.frame-size = {other} is not supported; use 2048 or 4096 (AF_XDP \
                     frames are 2048 bytes up to the page size)"
                ),
            );
            defaults::FRAME_SIZE
        }
    }
}

fn control_socket(p: &mut Problems, raw: Option<&Spanned<String>>) -> PathBuf {
    // sun_path is 108 bytes including the terminating NUL.
    const SOCKET_PATH_LEN_MAX: usize = 107;
    let path = path(p, "target.control-socket", raw, defaults::CONTROL_SOCKET);
    let len = path.as_os_str().len();
    if let (Some(raw), true) = (raw, len > SOCKET_PATH_LEN_MAX) {
        p.push(
            raw.span(),
            format!(
                "target.control-socket is {len} bytes long; unix socket paths are limited to \
                 {SOCKET_PATH_LEN_MAX} bytes, use a shorter path"
            ),
        );
    }
    path
}

fn path(p: &mut Problems, key: &str, raw: Option<&Spanned<String>>, default: &str) -> PathBuf {
    let Some(value) = raw else {
        return PathBuf::from(default);
    };
    let text = value.get_ref();
    if text.is_empty() {
        p.push(
            value.span(),
            format!("{key} is empty; give a path such as \"{default}\""),
        );
    } else if text.contains('\0') {
        p.push(
            value.span(),
            format!("{key} contains a NUL byte; remove it"),
        );
    }
    PathBuf::from(text)
}

/// An integer key within `range`, converted to `T`; the default is used when absent.
fn int_in<T>(
    p: &mut Problems,
    key: &str,
    raw: Option<&Spanned<i64>>,
    default: T,
    range: RangeInclusive<i64>,
) -> T
where
    T: TryFrom<i64>,
{
    let Some(value) = raw else {
        return default;
    };
    let v = *value.get_ref();
    if !range.contains(&v) {
        p.push(
            value.span(),
            format!(
                "{key} = {v} is out of range; use {}..={}",
                range.start(),
                range.end()
            ),
        );
        return default;
    }
    T::try_from(v).unwrap_or_else(|_| panic!("{key}: range {range:?} fits the target type"))
}

/// A power of two within `range`; the default is used when absent.
fn power_of_two(
    p: &mut Problems,
    key: &str,
    raw: Option<&Spanned<i64>>,
    default: u32,
    range: RangeInclusive<u32>,
) -> u32 {
    let Some(value) = raw else {
        return default;
    };
    let v = *value.get_ref();
    let in_range = u32::try_from(v).ok().filter(|v| range.contains(v));
    match in_range {
        Some(v) if v.is_power_of_two() => v,
        Some(v) => {
            let above = v.next_power_of_two();
            p.push(
                value.span(),
                format!(
                    "{key} = {v} is not a power of two; use {} or {above}",
                    above / 2
                ),
            );
            default
        }
        None => {
            p.push(
                value.span(),
                format!(
                    "{key} = {v} is out of range; use a power of two in {}..={}",
                    range.start(),
                    range.end()
                ),
            );
            default
        }
    }
}

fn keyword<T>(p: &mut Problems, key: &str, raw: Option<&Spanned<String>>, default: T) -> T
where
    T: FromStr<Err = KeywordError>,
{
    let Some(value) = raw else {
        return default;
    };
    match value.get_ref().parse() {
        Ok(parsed) => parsed,
        Err(err) => {
            p.push(
                value.span(),
                format!("{key} = \"{}\" is not recognized; {err}", value.get_ref()),
            );
            default
        }
    }
}

fn interfaces(
    p: &mut Problems,
    key: &str,
    raw: Option<&Spanned<Vec<Spanned<String>>>>,
) -> Interfaces {
    let Some(list) = raw else {
        return Interfaces::All;
    };
    if list.get_ref().is_empty() {
        p.push(
            list.span(),
            format!("{key} is empty, which selects no interface; list names or globs such as \"eth*\", or remove the key"),
        );
        return Interfaces::All;
    }
    let mut patterns: Vec<InterfacePattern> = Vec::new();
    for entry in list.get_ref() {
        match entry.get_ref().parse::<InterfacePattern>() {
            Ok(pattern) if patterns.contains(&pattern) => p.push(
                entry.span(),
                format!("{key}: \"{pattern}\" is listed twice; remove one"),
            ),
            Ok(pattern) => patterns.push(pattern),
            Err(err) => p.push(
                entry.span(),
                format!(
                    "{key}: interface pattern \"{}\" {err}; write a name such as \"eth0\" or a \
                     glob such as \"eth*\"",
                    entry.get_ref()
                ),
            ),
        }
    }
    if patterns.is_empty() {
        return Interfaces::All;
    }
    Interfaces::Only(patterns)
}

fn worker_cores(
    p: &mut Problems,
    raw: Option<&Spanned<Vec<Spanned<i64>>>>,
    system: &System,
) -> Vec<usize> {
    let online = &system.online_cpus;
    let Some(list) = raw else {
        if online.is_empty() {
            p.push_unlocated(
                "target.worker-cores: cannot read /sys/devices/system/cpu/online; list the \
                 worker cores explicitly",
            );
        }
        return online.clone();
    };
    if list.get_ref().is_empty() {
        p.push(
            list.span(),
            format!(
                "target.worker-cores is empty; list core ids, or remove the key to use every \
                 online core ({})",
                format_cpu_list(online)
            ),
        );
        return online.clone();
    }
    let mut cores: Vec<usize> = Vec::new();
    for entry in list.get_ref() {
        let id = *entry.get_ref();
        let core = usize::try_from(id).ok();
        let exists = core.is_some_and(|core| online.is_empty() || online.contains(&core));
        match core {
            Some(core) if exists && cores.contains(&core) => p.push(
                entry.span(),
                format!("target.worker-cores: core {core} is listed twice; each core runs one worker, remove one"),
            ),
            Some(core) if exists => cores.push(core),
            _ => p.push(
                entry.span(),
                format!(
                    "target.worker-cores: core {id} is not online (online cores: {}); use ids \
                     from /sys/devices/system/cpu/online",
                    format_cpu_list(online)
                ),
            ),
        }
    }
    cores
}

/// The device's label in messages: its name, or the default name from its raw address.
fn device_label(raw: &RawDevice) -> String {
    match &raw.name {
        Some(name) => format!("device \"{}\"", name.get_ref()),
        None => format!("device \"e{}.{}\"", raw.shelf.get_ref(), raw.slot.get_ref()),
    }
}

fn device(
    raw: &Spanned<RawDevice>,
    target: &TargetConfig,
    acls: &ResolvedAcls,
    system: &System,
    p: &mut Problems,
) -> DeviceConfig {
    let raw = raw.get_ref();
    let label = device_label(raw);
    let key = |key: &str| format!("{label}: {key}");
    let (shelf, slot) = address(p, &label, raw);
    let name = match &raw.name {
        Some(name) => device_name(p, &label, name),
        // From the raw numbers, so that invalid addresses do not produce clashing names.
        None => format!("e{}.{}", raw.shelf.get_ref(), raw.slot.get_ref()),
    };
    let path = path(p, &key("path"), Some(&raw.path), "/dev/sdb");
    let (offset_sectors, length_sectors) = extent(p, &label, raw);
    let interfaces = interfaces(p, &key("interfaces"), raw.interfaces.as_ref());
    check_device_interfaces(p, &label, raw, &interfaces, &target.interfaces);
    let (accept, deny) = access(p, &label, raw, acls);
    let broadcast = raw.broadcast.as_ref().is_some_and(|v| *v.get_ref());
    let advertisement = advertisement(p, &label, raw, target.advertise, broadcast, &accept, &deny);
    let model = ata_string(p, &key("model"), raw.model.as_ref(), 40, || {
        format!("aoe-xdp {name}")
    });
    let serial = ata_string(p, &key("serial"), raw.serial.as_ref(), 20, || {
        format!("{shelf}.{slot}:{}", system.hostname)
    });
    DeviceConfig {
        name,
        path,
        shelf,
        slot,
        read_only: raw.read_only.as_ref().is_some_and(|v| *v.get_ref()),
        direct_io: raw.direct_io.as_ref().is_some_and(|v| *v.get_ref()),
        durability: keyword(
            p,
            &key("durability"),
            raw.durability.as_ref(),
            Durability::Sync,
        ),
        resident: resident(p, &label, raw),
        mapped_writes: mapped_writes(p, &label, raw),
        mapped_reads: mapped_reads(p, &label, raw),
        offset_sectors,
        length_sectors,
        interfaces,
        accept,
        deny,
        advertisement,
        queue_length: int_in(
            p,
            &key("queue-length"),
            raw.queue_length.as_ref(),
            defaults::QUEUE_LENGTH,
            1..=i64::from(u16::MAX),
        ),
        model,
        serial,
    }
}

/// `resident`, which keeps the data in the page cache that `direct-io` bypasses.
fn resident(p: &mut Problems, label: &str, raw: &RawDevice) -> bool {
    let Some(resident) = raw.resident.as_ref().filter(|v| *v.get_ref()) else {
        return false;
    };
    if raw.direct_io.as_ref().is_some_and(|v| *v.get_ref()) {
        p.push(
            resident.span(),
            format!(
                "{label}: resident = true keeps the data in the page cache, which direct-io = true \
                 bypasses; choose one"
            ),
        );
    }
    true
}

/// `mapped-writes`, a way of carrying out write-back writes: only with `durability =
/// "writeback"`, and not with `direct-io` or `read-only`.
fn mapped_writes(p: &mut Problems, label: &str, raw: &RawDevice) -> bool {
    let Some(mapped) = raw.mapped_writes.as_ref().filter(|v| *v.get_ref()) else {
        return false;
    };
    let set = |flag: &Option<Spanned<bool>>| flag.as_ref().is_some_and(|v| *v.get_ref());
    let why = if raw.durability.as_ref().map(|d| d.get_ref().as_str()) != Some("writeback") {
        Some("is for durability = \"writeback\" (sync writes go through io_uring)")
    } else if set(&raw.direct_io) {
        Some("copies into the page cache, which direct-io = true bypasses; choose one")
    } else if set(&raw.read_only) {
        Some("has nothing to write on a read-only device")
    } else {
        None
    };
    if let Some(why) = why {
        p.push(
            mapped.span(),
            format!("{label}: mapped-writes = true {why}"),
        );
    }
    true
}

/// `mapped-reads`, a way of carrying out reads: not with `direct-io` (no page cache to map)
/// or `resident` (which reads through its locked mapping already).
fn mapped_reads(p: &mut Problems, label: &str, raw: &RawDevice) -> bool {
    let Some(mapped) = raw.mapped_reads.as_ref().filter(|v| *v.get_ref()) else {
        return false;
    };
    let set = |flag: &Option<Spanned<bool>>| flag.as_ref().is_some_and(|v| *v.get_ref());
    let why = if set(&raw.direct_io) {
        Some("copies out of the page cache, which direct-io = true bypasses; choose one")
    } else if set(&raw.resident) {
        Some("is what resident = true does already (through a locked mapping); choose one")
    } else {
        None
    };
    if let Some(why) = why {
        p.push(mapped.span(), format!("{label}: mapped-reads = true {why}"));
    }
    true
}

/// Shelf and slot; broadcast values and the shelf the Linux initiator ignores are rejected.
fn address(p: &mut Problems, label: &str, raw: &RawDevice) -> (u16, u8) {
    let shelf = *raw.shelf.get_ref();
    let shelf = match u16::try_from(shelf) {
        Ok(0xFFFF) => {
            p.push(
                raw.shelf.span(),
                format!("{label}: shelf 65535 is the broadcast address; use 0..=65534"),
            );
            0
        }
        Ok(0x0FFF) => {
            p.push(
                raw.shelf.span(),
                format!(
                    "{label}: shelf 4095 (0x0FFF) is ignored by the Linux initiator (\"check \
                     shelf dip switches\"); use another shelf in 0..=65534"
                ),
            );
            0
        }
        Ok(shelf) => shelf,
        Err(_) => {
            p.push(
                raw.shelf.span(),
                format!("{label}: shelf {shelf} is out of range; use 0..=65534"),
            );
            0
        }
    };
    let slot = *raw.slot.get_ref();
    let slot = match u8::try_from(slot) {
        Ok(0xFF) => {
            p.push(
                raw.slot.span(),
                format!("{label}: slot 255 is the broadcast address; use 0..=254"),
            );
            0
        }
        Ok(slot) => slot,
        Err(_) => {
            p.push(
                raw.slot.span(),
                format!("{label}: slot {slot} is out of range; use 0..=254"),
            );
            0
        }
    };
    (shelf, slot)
}

fn device_name(p: &mut Problems, label: &str, name: &Spanned<String>) -> String {
    const NAME_LEN_MAX: usize = 32;
    let text = name.get_ref();
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if text.is_empty() || text.len() > NAME_LEN_MAX {
        p.push(
            name.span(),
            format!("{label}: name must be 1..={NAME_LEN_MAX} characters long; shorten it"),
        );
    } else if let Some(c) = text.chars().find(|c| !valid_char(*c)) {
        p.push(
            name.span(),
            format!(
                "{label}: name contains {c:?}; use letters, digits, '.', '_' and '-' (the name \
                 is also a file name in the state directory)"
            ),
        );
    } else if text.starts_with(['.', '-']) {
        p.push(
            name.span(),
            format!(
                "{label}: name starts with {:?}; start it with a letter or digit",
                &text[..1]
            ),
        );
    }
    text.clone()
}

/// The device's shelf and slot if both are valid AoE unit addresses.
fn valid_address(raw: &RawDevice) -> Option<(u16, u8)> {
    let shelf = u16::try_from(*raw.shelf.get_ref())
        .ok()
        .filter(|shelf| *shelf != 0xFFFF && *shelf != 0x0FFF)?;
    let slot = u8::try_from(*raw.slot.get_ref())
        .ok()
        .filter(|slot| *slot != 0xFF)?;
    Some((shelf, slot))
}

/// Offset and optional length, in sectors, within what LBA48 can address.
fn extent(p: &mut Problems, label: &str, raw: &RawDevice) -> (u64, Option<u64>) {
    const LBA48_SECTORS: i64 = 1 << 48;
    let offset: u64 = int_in(
        p,
        &format!("{label}: offset"),
        raw.offset.as_ref(),
        0,
        0..=LBA48_SECTORS - 1,
    );
    let Some(length) = raw.length.as_ref() else {
        return (offset, None);
    };
    if *length.get_ref() == 0 {
        p.push(
            length.span(),
            format!(
                "{label}: length = 0 exports nothing; give a sector count, or remove length to \
                 export everything after offset"
            ),
        );
        return (offset, None);
    }
    let length_sectors: u64 = int_in(
        p,
        &format!("{label}: length"),
        Some(length),
        1,
        1..=LBA48_SECTORS,
    );
    let end = offset.saturating_add(length_sectors);
    if end > LBA48_SECTORS.unsigned_abs() {
        p.push(
            length.span(),
            format!(
                "{label}: offset + length = {end} sectors is beyond what LBA48 addresses \
                 ({LBA48_SECTORS}); shorten length"
            ),
        );
    }
    (offset, Some(length_sectors))
}

/// A device's interfaces must be able to match one of the target's, when that is decidable
/// without the machine (one side literal names).
fn check_device_interfaces(
    p: &mut Problems,
    label: &str,
    raw: &RawDevice,
    device: &Interfaces,
    target: &Interfaces,
) {
    let (Interfaces::Only(device_patterns), Interfaces::Only(target_patterns)) = (device, target)
    else {
        return;
    };
    let Some(raw_list) = raw.interfaces.as_ref() else {
        return;
    };
    for (pattern, entry) in device_patterns.iter().zip(raw_list.get_ref()) {
        let reachable = target_patterns.iter().any(|t| {
            if pattern.is_literal() {
                t.matches(pattern.as_str())
            } else if t.is_literal() {
                pattern.matches(t.as_str())
            } else {
                true
            }
        });
        if !reachable {
            p.push(
                entry.span(),
                format!(
                    "{label}: interfaces: \"{pattern}\" matches none of target.interfaces \
                     ({target}); add it to target.interfaces or fix the name"
                ),
            );
        }
    }
}

fn access(
    p: &mut Problems,
    label: &str,
    raw: &RawDevice,
    acls: &ResolvedAcls,
) -> (MacList, MacList) {
    let resolve = |p: &mut Problems, key: &str, list: Option<&Spanned<Vec<Spanned<String>>>>| {
        list.map(|list| acl::resolve_list(&format!("{label}: {key}"), list, acls, p))
    };
    let accept = resolve(p, "accept", raw.accept.as_ref());
    let deny = resolve(p, "deny", raw.deny.as_ref());
    if let (Some(Some(accept)), Some(list)) = (&accept, raw.accept.as_ref()) {
        if accept.is_empty() && !list.get_ref().is_empty() {
            p.push(
                list.span(),
                format!(
                    "{label}: accept resolves to no MAC at all, which would serve every host; \
                     add MACs to the ACLs it names, or remove accept to serve everyone"
                ),
            );
        }
    }
    if let (Some(Some(accept)), Some(Some(deny)), Some(list)) = (&accept, &deny, &raw.deny) {
        if !accept.is_empty() && accept.as_slice().iter().all(|mac| deny.contains(mac)) {
            p.push(
                list.span(),
                format!(
                    "{label}: deny covers every MAC in accept, so the device would serve no \
                     one; remove them from deny"
                ),
            );
        }
    }
    let accept = accept.flatten().unwrap_or_default();
    let deny = deny.flatten().unwrap_or_default();
    (accept, deny)
}

fn advertisement(
    p: &mut Problems,
    label: &str,
    raw: &RawDevice,
    target_advertise: bool,
    broadcast: bool,
    accept: &MacList,
    deny: &MacList,
) -> Advertisement {
    if !target_advertise {
        if let (true, Some(value)) = (broadcast, raw.broadcast.as_ref()) {
            p.push(
                value.span(),
                format!(
                    "{label}: broadcast = true has no effect with target.advertise = false; \
                     remove one of them"
                ),
            );
        }
        return Advertisement::Off;
    }
    if broadcast || accept.is_empty() {
        return Advertisement::Broadcast;
    }
    let macs = accept
        .as_slice()
        .iter()
        .filter(|mac| !deny.contains(mac))
        .copied()
        .collect();
    Advertisement::Unicast(MacList::new(macs))
}

/// An ATA IDENTIFY string: printable ASCII, at most `len_max` characters.
fn ata_string(
    p: &mut Problems,
    key: &str,
    raw: Option<&Spanned<String>>,
    len_max: usize,
    default: impl FnOnce() -> String,
) -> String {
    let printable = |c: char| (' '..='~').contains(&c);
    let Some(value) = raw else {
        return default()
            .chars()
            .filter(|c| printable(*c))
            .take(len_max)
            .collect();
    };
    let text = value.get_ref();
    if let Some(c) = text.chars().find(|c| !printable(*c)) {
        p.push(
            value.span(),
            format!("{key} contains {c:?}; IDENTIFY strings are printable ASCII, remove it"),
        );
    } else if text.len() > len_max {
        p.push(
            value.span(),
            format!(
                "{key} is {} characters long; IDENTIFY allows at most {len_max}, shorten it",
                text.len()
            ),
        );
    }
    text.clone()
}

/// shelf.slot and names must be unique; the message names both devices.
fn check_unique(raw: &[Spanned<RawDevice>], devices: &[DeviceConfig], p: &mut Problems) {
    let mut addresses: BTreeMap<(u16, u8), usize> = BTreeMap::new();
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, (raw_device, device)) in raw.iter().zip(devices).enumerate() {
        let raw_device = raw_device.get_ref();
        // A device whose shelf or slot is invalid was reported already; its placeholder
        // address must not collide with others.
        let address_valid = valid_address(raw_device).is_some();
        if let (true, Some(&first)) = (address_valid, addresses.get(&(device.shelf, device.slot))) {
            let other = &devices[first];
            p.push(
                raw_device.shelf.span(),
                format!(
                    "device \"{}\": shelf.slot {}.{} is already used by device \"{}\"; give each \
                     device its own shelf.slot",
                    device.name, device.shelf, device.slot, other.name
                ),
            );
            p.see_also(
                format!("device \"{}\"", other.name),
                raw[first].get_ref().shelf.span(),
            );
        } else if address_valid {
            addresses.insert((device.shelf, device.slot), index);
        }
        if let Some(&first) = names.get(device.name.as_str()) {
            let span = raw_device
                .name
                .as_ref()
                .map_or_else(|| raw_device.shelf.span(), Spanned::span);
            p.push(
                span,
                format!(
                    "device \"{}\": the name is already used by the device with shelf.slot \
                     {}.{}; give each device its own name",
                    device.name, devices[first].shelf, devices[first].slot
                ),
            );
            let first_raw = raw[first].get_ref();
            let first_span = first_raw
                .name
                .as_ref()
                .map_or_else(|| first_raw.shelf.span(), Spanned::span);
            p.see_also("that device".to_owned(), first_span);
        } else {
            names.insert(&device.name, index);
        }
    }
}
