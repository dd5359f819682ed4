//! What an [`XskPort`](super::XskPort) is built from: its geometry ([`XskConfig`]), the bind
//! mode asked for ([`BindPreference`]) and how many frames the fill ring starts with
//! ([`FILL_TARGET_START`]), and the checks they must pass before any syscall.
//!
//! Contract: [`validate`] runs first in `bind`; every ring size it lets through is a power of
//! two, as the kernel requires, and the UMEM has at least one frame.

use super::XskError;

/// Which bind mode to ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindPreference {
    /// Zero-copy first, copy mode if the driver refuses.
    Auto,
    /// Zero-copy only (`XDP_ZEROCOPY`): fail loudly if the driver cannot.
    ZeroCopy,
    /// Copy mode only (`XDP_COPY`).
    Copy,
}

/// Frames a port first keeps on its fill ring for the kernel to receive into
/// ([`XskPort::refill`](super::XskPort::refill)).
///
/// The kernel takes fill-ring frames in order, so every frame on the ring is touched once per
/// trip round it: with 2048 frames that is more than a core's L2 cache, and each reply's
/// lines are fetched from farther away, by the kernel's copy and by ours. 256 frames stay
/// hot: +1-10 % requests/s for the target and +2-18 % for the reflector on veth (copy mode).
/// A burst that leaves the kernel less than a quarter of them doubles the target, up to
/// `fill_ring_size`, for the rest of the port's life; a port about to sleep
/// ([`XskPort::wait_rx`](super::XskPort::wait_rx)) hands over the whole ring, so a burst that
/// wakes it finds room.
pub const FILL_TARGET_START: u32 = 256;

/// Geometry of a port. Ring sizes must be powers of two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XskConfig {
    /// Frames in the UMEM (each [`FRAME_SIZE`](crate::sys::layout::FRAME_SIZE) bytes, locked
    /// memory). The jumbo slabs ([`XskConfig::slab_count`]) come on top.
    pub frame_count: u32,
    /// Fill ring entries; also the most frames `refill` keeps with the kernel for receiving
    /// (it starts with [`FILL_TARGET_START`]).
    pub fill_ring_size: u32,
    /// Completion ring entries.
    pub comp_ring_size: u32,
    /// RX ring entries.
    pub rx_ring_size: u32,
    /// TX ring entries.
    pub tx_ring_size: u32,
    /// Zero-copy or copy mode.
    pub bind: BindPreference,
}

impl XskConfig {
    /// Jumbo slabs set aside behind the frames: one per 16 frames, at least 4 (each
    /// [`SLAB_SIZE`](crate::sys::layout::SLAB_SIZE) bytes of locked memory; 256 slabs = 3 MiB
    /// for the default 4096 frames). A slab is held by one jumbo request from its arrival (or
    /// upgrade) until its reply's TX completion.
    pub fn slab_count(&self) -> u32 {
        (self.frame_count / 16).max(4)
    }
}

impl Default for XskConfig {
    /// 16 MiB of UMEM:
    /// frame_count 4096 = 2048 (fill ring: buffers waiting for RX)
    ///                  + 2048 (held by the application, queued or on the TX ring).
    fn default() -> Self {
        Self {
            frame_count: 4096,
            fill_ring_size: 2048,
            comp_ring_size: 2048,
            rx_ring_size: 2048,
            tx_ring_size: 2048,
            bind: BindPreference::Auto,
        }
    }
}

pub(super) fn validate(config: &XskConfig) -> Result<(), XskError> {
    let rings = [
        config.fill_ring_size,
        config.comp_ring_size,
        config.rx_ring_size,
        config.tx_ring_size,
    ];
    if rings.iter().any(|size| !size.is_power_of_two()) {
        return Err(XskError::Config {
            what: "ring sizes must be powers of two",
        });
    }
    if config.frame_count == 0 {
        return Err(XskError::Config {
            what: "frame_count must be at least 1",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{validate, XskConfig};
    use crate::sys::xdp::xsk::XskError;

    #[test]
    fn test_config_validation() {
        assert!(validate(&XskConfig::default()).is_ok());
        let bad_ring = XskConfig {
            rx_ring_size: 1000,
            ..XskConfig::default()
        };
        assert!(matches!(validate(&bad_ring), Err(XskError::Config { .. })));
        let no_frames = XskConfig {
            frame_count: 0,
            ..XskConfig::default()
        };
        assert!(matches!(validate(&no_frames), Err(XskError::Config { .. })));
    }
}
