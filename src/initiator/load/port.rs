//! One local interface of a load run: its burst socket and the paths that use it.

use super::LoadError;
use crate::sys::packet::burst::BurstSocket;

#[derive(Debug)]
pub(super) struct Port {
    pub interface: String,
    pub socket: BurstSocket,
    /// Paths on this interface (indexes into `State::paths`).
    pub paths: Vec<usize>,
}

impl Port {
    /// Sends what was queued.
    pub(super) fn flush(&mut self) -> Result<(), LoadError> {
        self.socket
            .flush()
            .map(drop)
            .map_err(|source| LoadError::Socket {
                interface: self.interface.clone(),
                source,
            })
    }
}
