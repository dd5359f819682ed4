//! `[target]`: each key's rule, then the rules between keys.

use std::ops::RangeInclusive;
use std::path::PathBuf;

use toml::Spanned;

use super::defaults as d;
use super::problems::Problems;
use super::raw::RawTarget;
use super::system::{format_cpu_list, System};
use super::types::{IdleMode, LogLevel, PacketRing, SocketKind, XdpMode};
use super::values::{first_span, int_in, interfaces, keyword, path, power_of_two};
use super::TargetConfig;

/// A numeric key's default and the values it may take (`defaults` says why).
struct Limits<T, R> {
    default: T,
    range: RangeInclusive<R>,
}

impl<T, R> Limits<T, R> {
    const fn new(default: T, min: R, max: R) -> Limits<T, R> {
        Limits {
            default,
            range: RangeInclusive::new(min, max),
        }
    }
}

const UMEM_FRAMES: Limits<u32, u32> =
    Limits::new(d::UMEM_FRAMES, d::UMEM_FRAMES_MIN, d::UMEM_FRAMES_MAX);
const RING_SIZE: Limits<u32, u32> = Limits::new(d::RING_SIZE, d::RING_SIZE_MIN, d::RING_SIZE_MAX);
const URING_ENTRIES: Limits<u32, u32> = Limits::new(d::URING_ENTRIES, 1, d::URING_ENTRIES_MAX);
const IDLE_SPIN_US: Limits<u32, i64> = Limits::new(d::IDLE_SPIN_US, 0, d::IDLE_SPIN_US_MAX);
const IDLE_NAP_US: Limits<u32, i64> = Limits::new(d::IDLE_NAP_US, 0, d::IDLE_NAP_US_MAX);
const BUSY_POLL_BUDGET: Limits<u16, i64> = Limits::new(d::BUSY_POLL_BUDGET, 1, u16::MAX as i64);
const BUSY_POLL_USECS: Limits<u32, i64> =
    Limits::new(d::BUSY_POLL_USECS, 0, d::BUSY_POLL_USECS_MAX);
const MERGE_SEGMENTS: Limits<u32, i64> =
    Limits::new(d::MERGE_MAX_SEGMENTS, 1, d::MERGE_MAX_SEGMENTS_MAX);
const MERGE_DELAY_US: Limits<u32, i64> = Limits::new(d::MERGE_DELAY_US, 0, d::MERGE_DELAY_US_MAX);

pub(super) fn target(raw: &RawTarget, system: &System, p: &mut Problems) -> TargetConfig {
    let interfaces = interfaces(p, "target.interfaces", raw.interfaces.as_ref());
    let worker_cores = worker_cores(p, raw.worker_cores.as_ref(), system);
    let umem_frames = pow2(p, "umem-frames", &raw.umem_frames, UMEM_FRAMES);
    let frame_size = frame_size(p, raw.frame_size.as_ref());
    // The four AF_XDP rings share one rule.
    let [rx_ring_size, tx_ring_size, fill_ring_size, completion_ring_size] = [
        ("rx-ring-size", &raw.rx_ring_size),
        ("tx-ring-size", &raw.tx_ring_size),
        ("fill-ring-size", &raw.fill_ring_size),
        ("completion-ring-size", &raw.completion_ring_size),
    ]
    .map(|(key, value)| pow2(p, key, value, RING_SIZE));
    let config = TargetConfig {
        interfaces,
        worker_cores,
        umem_frames,
        frame_size,
        rx_ring_size,
        tx_ring_size,
        fill_ring_size,
        completion_ring_size,
        uring_entries: pow2(p, "uring-entries", &raw.uring_entries, URING_ENTRIES),
        idle: keyword(p, "target.idle", raw.idle.as_ref(), IdleMode::Poll),
        idle_spin_us: int(p, "idle-spin-us", &raw.idle_spin_us, IDLE_SPIN_US),
        idle_nap_us: int(p, "idle-nap-us", &raw.idle_nap_us, IDLE_NAP_US),
        idle_spin_adaptive: raw
            .idle_spin_adaptive
            .as_ref()
            .is_some_and(|v| *v.get_ref()),
        idle_yield: raw.idle_yield.as_ref().is_none_or(|v| *v.get_ref()),
        busy_poll_budget: int(
            p,
            "busy-poll-budget",
            &raw.busy_poll_budget,
            BUSY_POLL_BUDGET,
        ),
        busy_poll_usecs: int(p, "busy-poll-usecs", &raw.busy_poll_usecs, BUSY_POLL_USECS),
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
            d::STATE_DIRECTORY,
        ),
        control_socket: control_socket(p, raw.control_socket.as_ref()),
        metrics_listen: metrics_listen(p, raw.metrics_listen.as_ref()),
        log_level: keyword(
            p,
            "target.log-level",
            raw.log_level.as_ref(),
            LogLevel::Info,
        ),
        merge_max_segments: int(
            p,
            "merge-max-segments",
            &raw.merge_max_segments,
            MERGE_SEGMENTS,
        ),
        merge_delay_us: int(p, "merge-delay-us", &raw.merge_delay_us, MERGE_DELAY_US),
        advertise: raw.advertise.as_ref().is_none_or(|v| *v.get_ref()),
        accept_any_destination: raw
            .accept_any_destination
            .as_ref()
            .is_some_and(|v| *v.get_ref()),
    };
    check_target_relations(raw, &config, p);
    config
}

/// `target.<key>`, a power of two within `limits`.
fn pow2(p: &mut Problems, key: &str, raw: &Option<Spanned<i64>>, limits: Limits<u32, u32>) -> u32 {
    power_of_two(
        p,
        &format!("target.{key}"),
        raw.as_ref(),
        limits.default,
        limits.range,
    )
}

/// `target.<key>`, an integer within `limits`.
fn int<T: TryFrom<i64>>(
    p: &mut Problems,
    key: &str,
    raw: &Option<Spanned<i64>>,
    limits: Limits<T, i64>,
) -> T {
    int_in(
        p,
        &format!("target.{key}"),
        raw.as_ref(),
        limits.default,
        limits.range,
    )
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

fn frame_size(p: &mut Problems, raw: Option<&Spanned<i64>>) -> u32 {
    let Some(value) = raw else {
        return d::FRAME_SIZE;
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
            d::FRAME_SIZE
        }
    }
}

fn control_socket(p: &mut Problems, raw: Option<&Spanned<String>>) -> PathBuf {
    // sun_path is 108 bytes including the terminating NUL.
    const SOCKET_PATH_LEN_MAX: usize = 107;
    let path = path(p, "target.control-socket", raw, d::CONTROL_SOCKET);
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

fn metrics_listen(p: &mut Problems, raw: Option<&Spanned<String>>) -> Option<std::net::SocketAddr> {
    let raw = raw?;
    match raw.get_ref().parse() {
        Ok(address) => Some(address),
        Err(_) => {
            p.push(
                raw.span(),
                format!(
                    "target.metrics-listen = {:?} is not an address and port, e.g. \
                     \"127.0.0.1:9469\" or \"[::1]:9469\"",
                    raw.get_ref()
                ),
            );
            None
        }
    }
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
        return system.default_worker_cores();
    };
    if list.get_ref().is_empty() {
        p.push(
            list.span(),
            format!(
                "target.worker-cores is empty; list core ids, or remove the key to use every \
                 online core the process may run on ({})",
                format_cpu_list(&system.default_worker_cores())
            ),
        );
        return system.default_worker_cores();
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
