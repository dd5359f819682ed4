//! Turns the validated configuration into what the workers share: the open exports, each
//! device's immutable parameters and its shared, persistent AoE state.

use std::sync::Arc;

use crate::aoe::{DeviceParams, SharedState};
use crate::config::{Advertisement, Config, DeviceConfig, Durability as ConfigDurability};
use crate::state_dir::{StateDir, StateDirError};
use crate::storage::export::{Durability, Export, ExportError, ExportSpec};
use crate::wire::MacAddr;

use super::interfaces::Interface;

/// Everything about the exported devices that the workers share.
#[derive(Debug)]
pub struct Devices {
    /// Open exports, indexed by `DeviceParams::export`.
    pub exports: Arc<[Export]>,
    /// Per device: parameters and shared state (same order as the config).
    pub devices: Vec<(Arc<DeviceParams>, Arc<SharedState>)>,
    /// Per device: where to send the start-up advertisement (empty = none).
    pub advertise_to: Vec<Vec<MacAddr>>,
    /// The state directory.
    pub state_dir: Arc<StateDir>,
}

/// Why the devices could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DevicesError {
    /// A backing file or block device could not be opened.
    #[error("device {name}: {source}")]
    Export {
        /// Device name.
        name: String,
        /// Cause.
        source: ExportError,
    },
    /// The state directory failed.
    #[error(transparent)]
    State(#[from] StateDirError),
}

/// The storage spec of a configured device.
pub fn export_spec(device: &DeviceConfig) -> ExportSpec {
    ExportSpec {
        path: device.path.clone(),
        offset_sectors: device.offset_sectors,
        length_sectors: device.length_sectors,
        read_only: device.read_only,
        direct_io: device.direct_io,
        resident: device.resident,
        mapped_writes: device.mapped_writes,
        mapped_reads: device.mapped_reads,
        durability: match device.durability {
            ConfigDurability::Sync => Durability::Sync,
            ConfigDurability::Writeback => Durability::Writeback,
        },
    }
}

/// Opens every export and loads every device's persistent state.
pub fn open(config: &Config, interfaces: &[Interface]) -> Result<Devices, DevicesError> {
    let state_dir = Arc::new(StateDir::open(&config.target.state_directory)?);
    let mut exports = Vec::with_capacity(config.devices.len());
    let mut devices = Vec::with_capacity(config.devices.len());
    let mut advertise_to = Vec::with_capacity(config.devices.len());
    for (index, device) in config.devices.iter().enumerate() {
        let export = Export::open(&export_spec(device)).map_err(|source| DevicesError::Export {
            name: device.name.clone(),
            source,
        })?;
        let port_mask = interfaces
            .iter()
            .enumerate()
            .filter(|(_, i)| device.interfaces.matches(&i.name))
            .fold(0u64, |mask, (bit, _)| mask | 1u64 << (bit & 63));
        let params = DeviceParams {
            name: device.name.clone(),
            shelf: device.shelf,
            slot: device.slot,
            sectors: export.sectors(),
            read_only: device.read_only,
            buffer_count: device.queue_length,
            model: device.model.clone(),
            serial: device.serial.clone(),
            export: u16::try_from(index).expect("config limits the device count"),
            accept: device.accept.as_slice().to_vec(),
            deny: device.deny.as_slice().to_vec(),
            port_mask,
            broadcast: matches!(device.advertisement, Advertisement::Broadcast),
        };
        advertise_to.push(match &device.advertisement {
            Advertisement::Off => Vec::new(),
            Advertisement::Broadcast => vec![MacAddr::BROADCAST],
            Advertisement::Unicast(list) => list.as_slice().to_vec(),
        });
        let state = state_dir.load(device.shelf, device.slot)?;
        tracing::info!(
            device = %device.name,
            shelf = device.shelf,
            slot = device.slot,
            path = %device.path.display(),
            sectors = export.sectors(),
            read_only = device.read_only,
            "exporting"
        );
        exports.push(export);
        devices.push((Arc::new(params), Arc::new(SharedState::new(state))));
    }
    Ok(Devices {
        exports: exports.into(),
        devices,
        advertise_to,
        state_dir,
    })
}
