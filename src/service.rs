//! The real worker over in-memory ports, driven one frame at a time: the conformance tests and
//! the fuzzer send request frames through [`LocalTarget::process`] and get the replies back.
//! What runs is the dataplane's own [`Worker`] (parse, address, fit, handle, queue, submit to
//! a real [`Engine`], complete, persist, transmit), on [`LoopbackPort`]s instead of sockets:
//! no second implementation of the request path, no network, no root.

use std::sync::Arc;
use std::time::Instant;

use crate::aoe::{PortInfo, Target};
use crate::dataplane::port::{LoopbackPort, NetPort, PortError};
use crate::dataplane::queues::Queues;
use crate::dataplane::worker::{Unit, Worker};
use crate::state_dir::StateDir;
use crate::storage::engine::{Engine, EngineError};
use crate::sys::mem::Arena;

/// Frames of each port.
const FRAME_COUNT: u32 = 64;
/// Jumbo slabs of a port whose MTU needs them.
const SLAB_COUNT: u32 = 8;
/// Requests of each port in flight at most.
const PORT_CAPACITY: usize = 16;

/// Why a frame could not be processed (never a protocol error: those are AoE/ATA replies).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// `process` named a port the target was not built with.
    #[error("no port with index {0}")]
    NoPort(u8),
    /// The frame memory of a port could not be mapped.
    #[error("port memory: {0}")]
    Memory(std::io::Error),
    /// A port failed.
    #[error(transparent)]
    Port(#[from] PortError),
    /// The storage engine failed as a whole.
    #[error("storage engine: {0}")]
    Engine(#[from] EngineError),
}

/// The target core, a worker and its engine over one loopback port per [`PortInfo`].
pub struct LocalTarget {
    target: Target,
    worker: Worker<LoopbackPort>,
}

impl LocalTarget {
    /// Assembles a worker serving every device of `target` on one loopback port per entry of
    /// `ports` (a port whose MTU does not fit a frame gets jumbo slabs). `engine` builds the
    /// storage engine over the ports' frame memory (every arena must be registered with it);
    /// device state is saved in `state_dir`.
    pub fn new(
        target: Target,
        ports: &[PortInfo],
        engine: impl FnOnce(&[Arc<Arena>]) -> Result<Engine, EngineError>,
        state_dir: StateDir,
    ) -> Result<LocalTarget, ServiceError> {
        let state_dir = Arc::new(state_dir);
        let mut units = Vec::with_capacity(ports.len());
        for (id, info) in ports.iter().enumerate() {
            let port = if usize::from(info.mtu) + crate::wire::VLAN_HEADER_LEN
                > crate::sys::layout::FRAME_CAPACITY
            {
                LoopbackPort::with_slabs(FRAME_COUNT, SLAB_COUNT)
            } else {
                LoopbackPort::new(FRAME_COUNT)
            }
            .map_err(ServiceError::Memory)?;
            let id = u16::try_from(id).expect("few ports");
            units.push(Unit::new(
                id,
                port,
                *info,
                PORT_CAPACITY,
                Arc::clone(&state_dir),
            ));
        }
        let arenas: Vec<Arc<Arena>> = units
            .iter()
            .flat_map(|unit| unit.port().io_arenas().cloned())
            .collect();
        let engine = engine(&arenas)?;
        let queues = Arc::new(Queues::new(
            vec![0; target.device_count()],
            &vec![PORT_CAPACITY; units.len()],
        ));
        Ok(LocalTarget {
            target,
            worker: Worker::new(0, engine, units, queues),
        })
    }

    /// The target core.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The storage engine.
    pub fn engine(&self) -> &Engine {
        self.worker.engine()
    }

    /// Receives `frame` on the port `port.index` names and runs the worker until every
    /// request is answered, appending every reply to `replies`.
    pub fn process(
        &mut self,
        frame: &[u8],
        port: &PortInfo,
        replies: &mut Vec<Vec<u8>>,
    ) -> Result<(), ServiceError> {
        let unit = self
            .worker
            .units_mut()
            .iter()
            .position(|unit| unit.info().index == port.index)
            .ok_or(ServiceError::NoPort(port.index))?;
        self.worker.units_mut()[unit].port_mut().push_rx(frame);
        loop {
            let work = self.worker.poll(&mut self.target, Instant::now())?;
            for unit in self.worker.units_mut() {
                while let Some(reply) = unit.port_mut().pop_sent() {
                    replies.push(reply);
                }
            }
            let waiting = self
                .worker
                .units_mut()
                .iter()
                .any(|unit| unit.port().rx_pending() > 0 || unit.port().tx_queued() > 0);
            if !work && !waiting && !self.worker.busy() {
                return Ok(());
            }
            if !work && self.worker.engine().in_flight() > 0 {
                self.worker.engine_mut().wait(1)?;
            }
        }
    }
}
