//! The dataplane: interfaces → XDP program + one AF_XDP socket per (interface, RX queue) →
//! units (port + io_uring engine) → worker threads pinned to cores.
//!
//! Start-up order: resolve interfaces, open exports and load state, attach the XDP program to
//! each interface (removing a netlink-attached leftover first), bind a socket per RX queue
//! and register it in the program's XSKMAP, build one io_uring engine per port with the port's
//! frame memory registered as a fixed buffer, spread the units over the worker cores, advertise
//! the devices. [`Dataplane::shutdown`] stops the workers (they finish in-flight I/O and send
//! the replies) and detaches the XDP programs; dropping a `Dataplane` does the same.

pub mod counters;
pub mod ctl;
pub mod devices;
pub mod interfaces;
pub mod io;
pub mod links;
pub mod metrics;
pub mod port;
pub mod queues;
pub mod server_thread;
pub mod stats;
pub mod supervisor;
pub mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::aoe::{PortInfo, Target};
use crate::config::{Config, IdleMode, PacketRing, SocketKind, XdpMode as ConfigXdpMode};
use crate::storage::engine::Engine;
use crate::storage::sync_engine::{SyncEngine, SYNC_QUEUE_DEPTH};
use crate::storage::uring_engine::{UringConfig, UringEngine};
use crate::sys::mem::Arena;
use crate::sys::packet::{PacketConfig, PacketPort, RingVersion};
use crate::sys::wake::Alarm;
use crate::sys::xdp::loader::{self, XdpMode, XdpProgram};
use crate::sys::xdp::xsk::{BindPreference, BusyPoll, BusyPollReach, XskConfig, XskPort};
use crate::sys::xdp::DstFilter;

use counters::UnitStats;
use devices::Devices;
use interfaces::Interface;
use port::{NetPort, Port};
use queues::Queues;
use stats::StatsBoard;
use worker::{Idle, SpinBeforeSleep, Unit, Worker};

/// Why the dataplane could not start.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// Interface discovery failed.
    #[error(transparent)]
    Interfaces(#[from] interfaces::InterfaceError),
    /// Exports or state could not be opened.
    #[error(transparent)]
    Devices(#[from] devices::DevicesError),
    /// The XDP program could not be attached.
    #[error("interface {interface}: {source}")]
    Xdp {
        /// Interface name.
        interface: String,
        /// Cause (names the fix).
        source: loader::LoaderError,
    },
    /// An AF_XDP socket could not be bound.
    #[error("interface {interface} queue {queue}: {source}")]
    Socket {
        /// Interface name.
        interface: String,
        /// RX queue.
        queue: u32,
        /// Cause (names the fix).
        source: crate::sys::xdp::xsk::XskError,
    },
    /// The AF_PACKET fallback could not be opened either.
    #[error("interface {interface}: AF_PACKET: {source}")]
    Packet {
        /// Interface name.
        interface: String,
        /// Cause (names the fix).
        source: crate::sys::packet::PacketError,
    },
    /// Too many interfaces for the port mask.
    #[error("at most 64 interfaces can be served, {0} were selected")]
    TooManyInterfaces(usize),
    /// A worker thread could not be started.
    #[error("cannot start worker thread: {0}")]
    Spawn(std::io::Error),
    /// A worker's wake-up (an eventfd) could not be made.
    #[error("cannot create a worker's wake-up eventfd: {0}")]
    Wakeup(std::io::Error),
}

/// A worker thread; it returns its units' counters, its own and its ports, or the port error
/// that stopped it.
type WorkerHandle = JoinHandle<Result<worker::WorkerExit<Port>, port::PortError>>;

/// A running dataplane.
pub struct Dataplane {
    /// Serves statistics until the dataplane is dropped (after the workers stopped).
    ctl_socket: Option<ctl::CtlSocket>,
    /// The metrics endpoint, if configured and listening; held for its `Drop`, which stops it.
    metrics: Option<metrics::MetricsServer>,
    stop: Arc<AtomicBool>,
    /// The workers' queues, whose wake-ups rouse sleeping workers when `stop` is set.
    queues: Arc<Queues>,
    /// Raised by a worker that gave up a failed port and serves its others (it nudges the
    /// supervisor, as a worker that stops does).
    port_lost: Arc<Alarm>,
    workers: Vec<WorkerHandle>,
    /// Per interface (same order as `interfaces`): its XDP program, if it is served over
    /// AF_XDP. Detached on drop, after the workers stopped (field order: workers are joined
    /// first in `shutdown`; on a plain drop `Drop` joins them before these go).
    programs: Vec<Option<XdpProgram>>,
    interfaces: Vec<Interface>,
    /// Per unit (its global index): the interface (index into `interfaces`) and the RX queue
    /// its port serves.
    homes: Vec<(usize, usize)>,
    /// The settings the ports were opened with.
    settings: PortSettings,
    /// `interface:transport` of every port, for logs and tests.
    kinds: Vec<String>,
    /// For a dataplane that took over from another ([`Dataplane::serve_on`]): from the old
    /// workers' stop to the new ones' start, while no request was taken.
    paused: Option<Duration>,
}

/// One (interface, queue) socket before it is given to a worker.
struct PendingPort {
    port: Port,
    info: PortInfo,
    /// The RX queue (0 for an AF_PACKET port, which takes every queue).
    queue: usize,
    /// `interface:queue:transport`, for statistics.
    label: String,
}

/// What the stopped workers handed back.
struct Joined {
    /// Every unit's counters (of the workers that stopped cleanly).
    units: Vec<UnitStats>,
    /// Each port of those workers, with its unit's global index.
    ports: Vec<(u16, Port)>,
    /// The first port error a worker stopped on.
    error: Option<port::PortError>,
}

/// An interface's XDP program (AF_XDP only) and its ports, one per RX queue in queue order.
type Opened = (Option<XdpProgram>, Vec<Port>);

/// The `[target]` settings an interface's sockets are opened with: a dataplane that serves on
/// with a new configuration keeps an interface's sockets only if these did not change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PortSettings {
    socket: SocketKind,
    xdp_mode: ConfigXdpMode,
    packet_ring: PacketRing,
    /// UMEM frames and the four AF_XDP ring sizes.
    rings: [u32; 5],
    busy_poll: (u16, u32),
    accept_any_destination: bool,
}

impl PortSettings {
    fn of(config: &Config) -> PortSettings {
        let target = &config.target;
        PortSettings {
            socket: target.socket,
            xdp_mode: target.xdp_mode,
            packet_ring: target.packet_ring,
            rings: [
                target.umem_frames,
                target.fill_ring_size,
                target.completion_ring_size,
                target.rx_ring_size,
                target.tx_ring_size,
            ],
            busy_poll: (target.busy_poll_budget, target.busy_poll_usecs),
            accept_any_destination: target.accept_any_destination,
        }
    }
}

/// Whether an interface served before can keep its sockets as `now`: the same interface (name
/// and index), with the same MAC (the XDP program filters on it), MTU (sectors per request,
/// jumbo sockets) and RX queues.
fn unchanged(before: &Interface, now: &Interface) -> bool {
    before.name == now.name
        && before.ifindex == now.ifindex
        && before.mac == now.mac
        && before.mtu == now.mtu
        && before.rx_queues == now.rx_queues
}

impl Dataplane {
    /// Starts serving `config`'s devices (the control socket's `reload` has nothing to do).
    pub fn start(config: &Config) -> Result<Dataplane, DataplaneError> {
        Dataplane::start_with(config, &ctl::ReloadHook::default())
    }

    /// Starts serving `config`'s devices; the control socket's `reload` goes to `reload`.
    pub fn start_with(
        config: &Config,
        reload: &ctl::ReloadHook,
    ) -> Result<Dataplane, DataplaneError> {
        let interfaces = resolve(config)?;
        let mut opened = Vec::with_capacity(interfaces.len());
        for interface in &interfaces {
            opened.push(open_interface(config, interface)?);
        }
        Dataplane::assemble(config, reload, interfaces, opened, (None, None))
    }

    /// Serves `config` in place of this dataplane, with as short a pause as it can: the
    /// interfaces that are new (another interface index) get their sockets while the old
    /// workers still serve; then the workers stop (every request in flight answered), every
    /// interface that is still there unchanged (see [`unchanged`]; the port settings the same
    /// too) keeps its sockets and XDP program, a changed one is released and opened again, and
    /// new workers start over them all; only then are the interfaces that went away released.
    /// An interface that cannot be opened (new or changed) is left out with an error in the log
    /// and the others are served; only when none is left is that error returned.
    /// The control socket and the metrics endpoint stay where their address did not change.
    /// Requests that arrive meanwhile wait in the kept sockets' rings.
    pub fn serve_on(
        mut self,
        config: &Config,
        reload: &ctl::ReloadHook,
    ) -> Result<Dataplane, DataplaneError> {
        let same_settings = self.settings == PortSettings::of(config);
        let served = |interface: &Interface| {
            self.interfaces
                .iter()
                .any(|before| before.ifindex == interface.ifindex)
        };
        // An interface that cannot be opened (new, or changed and opened again) is left out
        // (the next link event tries it again); the others are served on.
        let mut refused = None;
        let mut open_or_leave_out = |interface: &Interface| match open_interface(config, interface)
        {
            Ok(opened) => Some(opened),
            Err(error) => {
                tracing::error!(interface = %interface.name, %error, "cannot serve a new interface: serving the others without it");
                refused.get_or_insert(error);
                None
            }
        };
        let (mut interfaces, mut fresh) = (Vec::new(), Vec::new());
        for interface in resolve(config)? {
            if served(&interface) {
                fresh.push(None);
            } else {
                match open_or_leave_out(&interface) {
                    Some(opened) => fresh.push(Some(opened)),
                    None => continue,
                }
            }
            interfaces.push(interface);
        }
        let homes = std::mem::take(&mut self.homes);
        let old_interfaces = std::mem::take(&mut self.interfaces);
        let old_programs = std::mem::take(&mut self.programs);
        // Per old interface, per queue: its port, if its worker handed it back.
        let mut old_ports: Vec<Vec<Option<Port>>> = (0..old_interfaces.len())
            .map(|index| {
                homes
                    .iter()
                    .filter(|home| home.0 == index)
                    .map(|_| None)
                    .collect()
            })
            .collect();
        let stopping = Instant::now();
        for (id, port) in self.stop_workers() {
            let (interface, queue) = homes[usize::from(id)];
            old_ports[interface][queue] = Some(port);
        }
        let mut kept = Vec::new();
        let mut gone = Vec::new();
        for ((before, program), ports) in
            old_interfaces.into_iter().zip(old_programs).zip(old_ports)
        {
            let ports: Option<Vec<Port>> = ports.into_iter().collect();
            let still = interfaces.iter().any(|now| unchanged(&before, now));
            let index_taken = interfaces.iter().any(|now| now.ifindex == before.ifindex);
            match ports {
                Some(ports) if same_settings && still => {
                    tracing::info!(interface = %before.name, "unchanged: its sockets stay");
                    kept.push((before.name, (program, ports)));
                }
                // Opened again below, so released first (one program per interface).
                ports if index_taken => release(&before.name, program, ports),
                ports => gone.push((before.name, program, ports)),
            }
        }
        let (mut serving, mut opened) = (Vec::new(), Vec::new());
        for (interface, fresh) in interfaces.into_iter().zip(fresh) {
            let at = kept.iter().position(|(name, _)| *name == interface.name);
            let ports = match (at, fresh) {
                (Some(at), _) => Some(kept.swap_remove(at).1),
                (None, Some(fresh)) => Some(fresh),
                (None, None) => open_or_leave_out(&interface),
            };
            if let Some(ports) = ports {
                serving.push(interface);
                opened.push(ports);
            }
        }
        if let (true, Some(error)) = (serving.is_empty(), refused) {
            return Err(error);
        }
        let ctl_socket = self.ctl_socket.take();
        let metrics = self.metrics.take();
        let mut dataplane =
            Dataplane::assemble(config, reload, serving, opened, (ctl_socket, metrics))?;
        dataplane.paused = Some(stopping.elapsed());
        for (name, program, ports) in gone {
            release(&name, program, ports);
        }
        Ok(dataplane)
    }

    /// Opens the devices over `interfaces` and their `opened` ports, starts the workers, and
    /// serves the control socket and the metrics endpoint (the `previous` ones where their
    /// address is unchanged).
    fn assemble(
        config: &Config,
        reload: &ctl::ReloadHook,
        interfaces: Vec<Interface>,
        opened: Vec<Opened>,
        previous: (Option<ctl::CtlSocket>, Option<metrics::MetricsServer>),
    ) -> Result<Dataplane, DataplaneError> {
        let devices = devices::open(config, &interfaces)?;
        let mut programs = Vec::with_capacity(opened.len());
        let mut pending = Vec::new();
        let mut homes = Vec::new();
        let mut kinds = Vec::new();
        for (index, (interface, (program, ports))) in interfaces.iter().zip(opened).enumerate() {
            programs.push(program);
            for (queue, port) in ports.into_iter().enumerate() {
                // A request and its reply live in one frame (or slab): never advertise more
                // sectors than the port's frames hold, whatever the MTU.
                let info = PortInfo {
                    index: u8::try_from(index).expect("at most 64 interfaces"),
                    mac: interface.mac,
                    mtu: port.advertised_mtu(interface.mtu),
                };
                tracing::info!(
                    interface = %interface.name,
                    queue,
                    mtu = interface.mtu,
                    sectors = info.max_sectors(),
                    "sectors per request"
                );
                kinds.push(format!("{}:{}", interface.name, port.kind()));
                let label = format!("{}:{queue}:{}", interface.name, port.kind());
                homes.push((index, queue));
                pending.push(PendingPort {
                    port,
                    info,
                    queue,
                    label,
                });
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let port_lost = Arc::new(Alarm::new(reload.nudge.clone()));
        let Spawned {
            workers,
            board,
            queues,
        } = spawn_workers(config, &devices, pending, (&stop, &port_lost))?;
        let (old_ctl, old_metrics) = previous;
        let metrics = serve_metrics(config, &board, old_metrics);
        let ctl_socket = serve_ctl(config, reload, &devices, board, old_ctl);
        Ok(Dataplane {
            ctl_socket,
            metrics,
            stop,
            queues,
            port_lost,
            workers,
            programs,
            interfaces,
            homes,
            settings: PortSettings::of(config),
            kinds,
            paused: None,
        })
    }

    /// How long requests went untaken while this dataplane took over from the one before it
    /// (`None` for one that started afresh).
    pub fn paused(&self) -> Option<Duration> {
        self.paused
    }

    /// The interfaces being served.
    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    /// The control socket's path (`control-socket`), if it could be opened.
    pub fn control_socket(&self) -> Option<&std::path::Path> {
        self.ctl_socket.as_ref().map(|socket| socket.path())
    }

    /// `interface:transport` (`af_xdp` or `af_packet`) of every port.
    pub fn port_kinds(&self) -> &[String] {
        &self.kinds
    }

    /// Stops the workers, waits for them, detaches the XDP programs; returns the counters of
    /// every unit, or the first worker error.
    pub fn shutdown(mut self) -> Result<Vec<UnitStats>, port::PortError> {
        let joined = self.join();
        for program in self.programs.drain(..).flatten() {
            program.detach();
        }
        match joined.error {
            Some(error) => Err(error),
            None => Ok(joined.units),
        }
    }

    /// Stops the workers and returns the ports of those that stopped cleanly, each with its
    /// unit's global index (a worker that stopped on a port error is logged: its ports are
    /// gone, the others' are not).
    fn stop_workers(&mut self) -> Vec<(u16, Port)> {
        let joined = self.join();
        if let Some(error) = joined.error {
            // The worker of a deleted interface: its requests could not be answered.
            tracing::info!(%error, "a worker of the old dataplane had stopped");
        }
        joined.ports
    }

    fn join(&mut self) -> Joined {
        // Release: pairs with the workers' Acquire load of `stop`.
        self.stop.store(true, Ordering::Release);
        // A worker asleep in `poll(2)` sees it now, not when its sleep times out.
        self.queues.wake_all();
        let mut joined = Joined {
            units: Vec::new(),
            ports: Vec::new(),
            error: None,
        };
        for worker in self.workers.drain(..) {
            match worker.join() {
                Ok(Ok(exit)) => {
                    joined.units.extend(exit.units);
                    joined.ports.extend(exit.ports);
                }
                Ok(Err(error)) => {
                    joined.error.get_or_insert(error);
                }
                Err(_) => tracing::error!("a worker panicked"),
            }
        }
        joined
    }

    /// True while every worker is running with every port (a worker stops when its last port
    /// fails, and gives up a failed port while others work).
    pub fn healthy(&self) -> bool {
        !self.port_lost.is_raised() && self.workers.iter().all(|w| !w.is_finished())
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        let _ = self.join();
        // `programs` detach in their own Drop.
    }
}

/// Nudges the supervisor when dropped: at the end of a worker's thread.
struct NudgeOnExit<'a>(&'a Alarm);

impl Drop for NudgeOnExit<'_> {
    fn drop(&mut self) {
        self.0.nudge();
    }
}

/// Closes an interface's sockets, then detaches its XDP program.
fn release(name: &str, program: Option<XdpProgram>, ports: Option<Vec<Port>>) {
    drop(ports);
    if let Some(program) = program {
        program.detach();
    }
    tracing::info!(interface = %name, "released: sockets closed, XDP program detached");
}

/// The configured interfaces that exist (at most 64).
fn resolve(config: &Config) -> Result<Vec<Interface>, DataplaneError> {
    let interfaces = interfaces::resolve(&config.target.interfaces)?;
    if interfaces.len() > 64 {
        return Err(DataplaneError::TooManyInterfaces(interfaces.len()));
    }
    Ok(interfaces)
}

/// Opens `interface`'s sockets as configured: AF_XDP (with its program), AF_PACKET, or AF_XDP
/// with AF_PACKET as the fallback.
fn open_interface(config: &Config, interface: &Interface) -> Result<Opened, DataplaneError> {
    // Whatever the transport: the XDP program of a running aoe-xdp would take every request
    // away from us (and `detach_stale` must not remove a live one's).
    loader::check_not_served(interface.ifindex).map_err(|source| DataplaneError::Xdp {
        interface: interface.name.clone(),
        source,
    })?;
    let packet = |error| Ok((None, vec![open_packet(config, interface, error)?]));
    match config.target.socket {
        SocketKind::Xdp => open_xdp(config, interface),
        SocketKind::Packet => packet(None),
        SocketKind::Auto => match open_xdp(config, interface) {
            Ok(opened) => Ok(opened),
            Err(error) => packet(Some(&error)),
        },
    }
}

/// The metrics endpoint if configured: `old`, serving `board` now, if it listens on the
/// configured address; otherwise a new one.
fn serve_metrics(
    config: &Config,
    board: &Arc<StatsBoard>,
    old: Option<metrics::MetricsServer>,
) -> Option<metrics::MetricsServer> {
    let address = config.target.metrics_listen?;
    if let Some(server) = old.filter(|server| server.configured() == address) {
        server.retarget(Arc::clone(board));
        return Some(server);
    }
    match metrics::MetricsServer::start(address, Arc::clone(board)) {
        Ok(server) => {
            tracing::info!(address = %server.address(), "metrics endpoint ready: GET /metrics");
            Some(server)
        }
        Err(error) => {
            tracing::error!(%error, "no metrics endpoint (storage is served regardless)");
            None
        }
    }
}

/// The control socket: `old`, serving the new board and devices now, if it is at the
/// configured path; otherwise a new one.
fn serve_ctl(
    config: &Config,
    reload: &ctl::ReloadHook,
    devices: &Devices,
    board: Arc<StatsBoard>,
    old: Option<ctl::CtlSocket>,
) -> Option<ctl::CtlSocket> {
    let path = &config.target.control_socket;
    let advertising = devices
        .advertise_to
        .iter()
        .filter(|to| !to.is_empty())
        .count();
    let state = (Arc::clone(&devices.state_dir), advertising);
    if let Some(socket) = old.filter(|socket| socket.path() == path) {
        socket.retarget(board, devices.devices.clone(), state);
        return Some(socket);
    }
    match ctl::CtlSocket::start(path, board, devices.devices.clone(), state, reload.clone()) {
        Ok(socket) => {
            tracing::info!(path = %path.display(), "control socket ready: aoe-xdp ctl");
            Some(socket)
        }
        Err(error) => {
            tracing::warn!(
                %error,
                "no control socket: no aoe-xdp ctl, statistics are logged at exit only"
            );
            None
        }
    }
}

/// Which destination MACs `interface`'s ports serve: its own (which our replies carry) and
/// broadcast, unless `accept-any-destination` is set (then said in the log, per interface).
fn dst_filter(config: &Config, interface: &Interface) -> DstFilter {
    if config.target.accept_any_destination {
        tracing::warn!(
            interface = %interface.name,
            "accept-any-destination = true: serving requests addressed to any MAC, also those \
             meant for other hosts on this segment"
        );
        DstFilter::Any
    } else {
        DstFilter::Own(interface.mac.0)
    }
}

fn xdp_mode(mode: ConfigXdpMode) -> XdpMode {
    match mode {
        ConfigXdpMode::Auto => XdpMode::Auto,
        ConfigXdpMode::Native => XdpMode::Native,
        ConfigXdpMode::Generic => XdpMode::Generic,
    }
}

/// Opens the AF_PACKET fallback on `interface`, saying loudly why.
fn open_packet(
    config: &Config,
    interface: &Interface,
    xdp_failure: Option<&DataplaneError>,
) -> Result<Port, DataplaneError> {
    match xdp_failure {
        Some(error) => tracing::error!(
            interface = %interface.name,
            %error,
            "XDP unavailable: FALLING BACK TO AF_PACKET (one copy each way, slower); \
             fix the cause, or set socket = \"packet\" to choose it"
        ),
        None => tracing::warn!(
            interface = %interface.name,
            "socket = \"packet\": using AF_PACKET, not XDP"
        ),
    }
    // Ring slots (and, above one chunk, slabs) sized for the interface's MTU.
    let defaults = PacketConfig::for_mtu(interface.mtu);
    let packet_config = PacketConfig {
        frame_count: config.target.umem_frames,
        ring: match (config.target.packet_ring, defaults.ring) {
            (PacketRing::V2, ring) => ring,
            // Blocks as small as a frame allows, so they fill (and reach us) sooner.
            (PacketRing::V3, RingVersion::V2 { slot_size, .. }) if slot_size > 4096 => {
                RingVersion::V3 {
                    block_size: slot_size,
                    block_count: 256,
                    retire_timeout_ms: 1,
                }
            }
            (PacketRing::V3, _) => RingVersion::v3_default(),
        },
        ..defaults
    };
    let dst = dst_filter(config, interface);
    let mut port = PacketPort::bind(&interface.name, &packet_config, dst).map_err(|source| {
        DataplaneError::Packet {
            interface: interface.name.clone(),
            source,
        }
    })?;
    // A packet socket is tied to no NAPI (it takes frames from every queue), so busy polling
    // reaches the receive path only through the wait's NAPI.
    if config.target.busy_poll_usecs > 0 {
        port.set_wait_napi(napi_for_wait(interface));
    }
    Ok(Port::Packet(port))
}

/// Attaches the program to `interface` and binds one socket per RX queue. On failure nothing
/// is left attached (the program detaches when dropped).
fn open_xdp(config: &Config, interface: &Interface) -> Result<Opened, DataplaneError> {
    let xdp_error = |source| DataplaneError::Xdp {
        interface: interface.name.clone(),
        source,
    };
    if let Some(id) = loader::detach_stale(interface.ifindex).map_err(xdp_error)? {
        tracing::warn!(interface = %interface.name, id, "removed a stale aoe_xdp program (netlink-attached, by ip link or an earlier version)");
    }
    let dst = dst_filter(config, interface);
    let program = XdpProgram::attach(interface.ifindex, xdp_mode(config.target.xdp_mode), dst)
        .map_err(xdp_error)?;
    tracing::info!(interface = %interface.name, mode = ?program.mode(), "XDP program attached");
    let xsk_config = XskConfig {
        frame_count: config.target.umem_frames,
        fill_ring_size: config.target.fill_ring_size,
        comp_ring_size: config.target.completion_ring_size,
        rx_ring_size: config.target.rx_ring_size,
        tx_ring_size: config.target.tx_ring_size,
        bind: BindPreference::Auto,
    };
    let mut ports = Vec::new();
    for queue in 0..interface.rx_queues {
        let socket_error = |source| DataplaneError::Socket {
            interface: interface.name.clone(),
            queue,
            source,
        };
        let mut port = XskPort::bind(&interface.name, queue, &xsk_config).map_err(socket_error)?;
        tracing::info!(interface = %interface.name, queue, mode = ?port.bind_mode(), "AF_XDP socket ready");
        if config.target.busy_poll_usecs > 0 {
            let options = BusyPoll {
                prefer: true,
                usecs: config.target.busy_poll_usecs,
                budget: u32::from(config.target.busy_poll_budget),
            };
            match port.set_busy_poll(options) {
                Ok(BusyPollReach::Napi(napi)) => {
                    tracing::info!(interface = %interface.name, queue, napi, "busy polling: the worker runs this queue's NAPI (its receive path) itself");
                    crate::sys::xdp::xsk::check_irq_deferral(&interface.name);
                }
                Ok(BusyPollReach::NoNapi) => {
                    port.set_wait_napi(napi_for_wait(interface));
                    if port.wait_napi().is_none() {
                        tracing::info!(interface = %interface.name, queue, "busy polling: the socket is tied to no NAPI yet; looked for again at its first frame (Linux before 6.13 ties it then; veth never does)");
                    }
                }
                Err(error) => {
                    tracing::warn!(interface = %interface.name, queue, %error, "busy-poll options refused");
                }
            }
        }
        program.insert_socket(queue, port.fd()).map_err(xdp_error)?;
        // What the program keeps from this queue (other hosts' requests) shows in the port's
        // statistics.
        port.set_program_counters(program.queue_counters(queue).map_err(xdp_error)?);
        ports.push(Port::Xsk(port));
    }
    Ok((Some(program), ports))
}

/// The NAPI a worker waiting on `interface`'s one queue busy-polls in its wait, for a socket
/// the kernel tied to none (an AF_XDP socket on veth, any packet socket: see
/// [`crate::sys::napi`]); `None`, logged, where the interface's NAPIs cannot be listed (Linux
/// before 6.9), it has none, or it has several queues (which NAPI serves which queue is then
/// not known).
fn napi_for_wait(interface: &Interface) -> Option<u32> {
    let name = &interface.name;
    match crate::sys::napi::interface_napis(interface.ifindex) {
        Ok(ids) if ids.len() == 1 && interface.rx_queues == 1 => {
            tracing::info!(interface = %name, napi = ids[0], "busy polling: the socket is tied to no NAPI (the driver registers none for its queue, or a packet socket), so the worker busy-polls the interface's NAPI through io_uring while it waits for frames: the receive path runs in the worker");
            Some(ids[0])
        }
        Ok(ids) if ids.is_empty() => {
            tracing::info!(interface = %name, "busy polling: the socket is tied to no NAPI and the interface has none; receiving stays in the kernel");
            None
        }
        Ok(ids) => {
            tracing::info!(interface = %name, napis = ?ids, queues = interface.rx_queues, "busy polling: the socket is tied to no NAPI, and which of the interface's NAPIs serves which queue is not known; receiving stays in the kernel's NAPI context");
            None
        }
        Err(error) => {
            tracing::info!(interface = %name, %error, "busy polling: the socket is tied to no NAPI and the interface's NAPIs cannot be listed (Linux 6.9+); receiving stays in the kernel's NAPI context");
            None
        }
    }
}

/// An io_uring engine over every port's frame memory (a worker submits the requests of its
/// devices whatever port they came in on); the synchronous engine if io_uring is unavailable
/// (disabled by sysctl, seccomp...), with a warning.
fn engine_for(config: &Config, devices: &Devices, arenas: &[Arc<Arena>]) -> Engine {
    let uring = UringConfig {
        entries: config.target.uring_entries,
        merge_max_segments: usize::try_from(config.target.merge_max_segments).unwrap_or(32),
        merge_delay: Duration::from_micros(u64::from(config.target.merge_delay_us)),
    };
    match UringEngine::with_arenas(devices.exports.clone(), arenas, uring) {
        Ok(engine) => Engine::Uring(engine),
        Err(error) => {
            tracing::warn!(%error, "io_uring unavailable; using synchronous I/O (slow)");
            let engine = SyncEngine::with_arenas(devices.exports.clone(), arenas, SYNC_QUEUE_DEPTH)
                .expect("the synchronous engine needs no kernel support");
            Engine::Sync(engine)
        }
    }
}

/// What [`spawn_workers`] started: the worker threads, the board they publish to and the
/// queues between them.
struct Spawned {
    workers: Vec<WorkerHandle>,
    board: Arc<StatsBoard>,
    queues: Arc<Queues>,
}

fn spawn_workers(
    config: &Config,
    devices: &Devices,
    ports: Vec<PendingPort>,
    (stop, port_lost): (&Arc<AtomicBool>, &Arc<Alarm>),
) -> Result<Spawned, DataplaneError> {
    let cores = &config.target.worker_cores;
    let worker_count = cores.len().clamp(1, ports.len().max(1));
    let slots = usize::try_from(config.target.uring_entries).unwrap_or(256);
    // Every arena any port lends from: its frames, and its slabs where it carries jumbo frames.
    let arenas: Vec<Arc<Arena>> = ports
        .iter()
        .flat_map(|p| p.port.io_arenas().cloned())
        .collect();
    // Unit (port) `u` is served by worker `u % worker_count`.
    let unit_workers: Vec<usize> = (0..ports.len()).map(|u| u % worker_count).collect();
    // Which worker's ports may serve which device: a device is owned by one of those workers.
    let device_count = devices.devices.len();
    let mut serves = vec![vec![false; device_count]; worker_count];
    for (index, pending) in ports.iter().enumerate() {
        let bit = 1u64 << (pending.info.index & 63);
        for (device, (params, _)) in devices.devices.iter().enumerate() {
            serves[unit_workers[index]][device] |= params.port_mask & bit != 0;
        }
    }
    let owners = queues::owners(&serves, device_count);
    // A worker that sleeps (`idle = "poll"`) is woken by the eventfd of its wake-up when
    // another worker hands it work.
    let queues = Arc::new(
        Queues::new(owners.clone(), &vec![slots; ports.len()])
            .with_wakeups(unit_workers.clone())
            .map_err(DataplaneError::Wakeup)?,
    );
    let board = Arc::new(StatsBoard::new(
        worker_count,
        ports.iter().map(|p| p.label.clone()).collect(),
        devices
            .devices
            .iter()
            .map(|(p, _)| p.name.clone())
            .collect(),
        owners.clone(),
    ));
    // The start-up advertisement goes out once per interface, from its queue-0 unit (an
    // interface's queues all reach the same wire).
    let announcing: Arc<[bool]> = ports.iter().map(|p| p.queue == 0).collect();
    let mut groups: Vec<Vec<Unit>> = (0..worker_count).map(|_| Vec::new()).collect();
    for (index, pending) in ports.into_iter().enumerate() {
        let id = u16::try_from(index).expect("at most 64 interfaces, few queues each");
        let unit = Unit::new(
            id,
            pending.port,
            pending.info,
            slots,
            devices.state_dir.clone(),
        );
        groups[unit_workers[index]].push(unit);
    }
    for (device, (params, _)) in devices.devices.iter().enumerate() {
        tracing::info!(device = %params.name, worker = owners[device], "device queue owner");
    }
    let idle = match config.target.idle {
        IdleMode::Spin => Idle::Spin,
        IdleMode::Poll => {
            let spin = Duration::from_micros(u64::from(config.target.idle_spin_us));
            Idle::Poll {
                spin: if config.target.idle_spin_adaptive {
                    SpinBeforeSleep::adaptive(spin)
                } else {
                    SpinBeforeSleep::fixed(spin)
                },
                nap: Duration::from_micros(u64::from(config.target.idle_nap_us)),
            }
        }
    };
    let idle_yield = config.target.idle_yield;
    let advertise = config.target.advertise;
    // The CPUs this process may run on, read here, before any worker pins itself: a pinned
    // thread's own mask is its one core.
    let process_cpus = crate::config::affinity();
    let mut handles = Vec::new();
    for (index, units) in groups.into_iter().enumerate() {
        let core = cores.get(index).copied();
        let process_cpus = process_cpus.clone();
        let shared = devices.devices.clone();
        let destinations = devices.advertise_to.clone();
        let announcing = Arc::clone(&announcing);
        let stop = stop.clone();
        let port_lost = Arc::clone(port_lost);
        let engine = engine_for(config, devices, &arenas);
        let mut worker = Worker::new(index, engine, units, Arc::clone(&queues));
        worker.set_board(Arc::clone(&board));
        worker.set_announcer(devices.advertise_to.clone(), Arc::clone(&announcing));
        // Jobs can come from another worker when a device this one owns is also served by
        // another worker's ports.
        worker.set_shared(
            worker
                .devices()
                .iter()
                .any(|&d| (0..worker_count).any(|w| w != index && serves[w][usize::from(d)])),
        );
        let handle = std::thread::Builder::new()
            .name(format!("aoe-worker-{index}"))
            .spawn(move || {
                // However the worker ends (a panic too), the supervisor hears of it at once.
                let _exit = NudgeOnExit(&port_lost);
                if let Some(id) = core {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
                        tracing::warn!(core = id, "could not pin worker to its core");
                    }
                }
                // io_uring's blocking-I/O threads inherit our pinning; keep them off the core
                // this worker busy-polls, on the process's other CPUs (with none, they have
                // to share it).
                let others: Vec<usize> = process_cpus
                    .iter()
                    .copied()
                    .filter(|&c| Some(c) != core)
                    .collect();
                let io_cpus = if others.is_empty() {
                    &process_cpus
                } else {
                    &others
                };
                if let Err(error) = worker.engine_mut().set_io_worker_cpus(io_cpus) {
                    tracing::warn!(error = ?error, "io_uring workers keep the worker's core");
                }
                let mut target = Target::new(shared);
                if advertise {
                    for unit in worker.units_mut() {
                        if announcing[usize::from(unit.id())] {
                            unit.advertise(&mut target, &destinations);
                        }
                    }
                }
                tracing::info!(
                    worker = index,
                    core,
                    units = worker.units_mut().len(),
                    devices = worker.devices().len(),
                    "worker running"
                );
                let result = worker::run(target, worker, (idle, idle_yield), (&stop, &port_lost));
                if let Ok(worker::WorkerExit { stats, .. }) = &result {
                    tracing::info!(
                        worker = index,
                        jobs = stats.jobs,
                        remote_jobs = stats.remote_jobs,
                        io_backlogged = stats.io_backlogged,
                        ios = stats.engine.ios,
                        merged = stats.engine.merged,
                        mapped = stats.engine.mapped,
                        inline = stats.engine.inline,
                        bounced = stats.engine.bounced,
                        io_errors = stats.engine.errors,
                        syncs = stats.engine.syncs,
                        sync_covered = stats.engine.sync_covered,
                        sync_failures = stats.engine.sync_failures,
                        readaheads = stats.engine.readaheads,
                        uncached_writes = stats.engine.uncached_writes,
                        seen_resets = stats.engine.seen_resets,
                        seen_sample_misses = stats.engine.seen_sample_misses,
                        inline_stalls = stats.engine.inline_stalls,
                        paused_writes = stats.engine.paused_writes,
                        major_faults = stats.major_faults,
                        "worker stopped"
                    );
                }
                result
            })
            .map_err(DataplaneError::Spawn)?;
        handles.push(handle);
    }
    Ok(Spawned {
        workers: handles,
        board,
        queues,
    })
}
