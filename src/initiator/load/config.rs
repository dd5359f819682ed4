//! What a load run is asked to do: the devices, the paths to them, the workload and when
//! to stop; and the checks that it can be done.

use std::time::Duration;

use super::request::ATA_DATA_OFFSET;
use super::workload::{Op, Pattern};
use super::LoadError;
use crate::wire::{MacAddr, SECTOR_SIZE};

/// Most sectors `verify` can track (4 bytes each: a 512 MiB ledger for 64 GiB).
pub const VERIFY_SECTORS_MAX: u64 = 1 << 27;

/// One path to a device: a local interface and a target MAC that answered on it for the
/// device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathSpec {
    /// The device (an index into [`LoadConfig::devices`]).
    pub device: usize,
    /// Local interface.
    pub interface: String,
    /// Its MAC (requests come from it).
    pub local_mac: MacAddr,
    /// Its MTU (bounds the frame size).
    pub mtu: usize,
    /// The target's MAC on this path.
    pub target_mac: MacAddr,
    /// The target's advertised buffer count on this path.
    pub buffer_count: u16,
    /// Sectors per request on this path (≥ 1, within what the target and the MTU allow).
    pub sectors: u8,
}

/// When the measured phase ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// After this long (after the warmup).
    Duration(Duration),
    /// Once this many bytes were requested (after the warmup).
    Bytes(u64),
}

/// A device the load goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    /// Shelf.
    pub shelf: u16,
    /// Slot.
    pub slot: u8,
    /// Use LBA48 commands.
    pub lba48: bool,
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadConfig {
    /// The devices (at least one). Each has its own request stream over its paths (its own
    /// sequential position, its own random sequence); `--verify` takes one device.
    pub devices: Vec<Device>,
    /// Reads, writes or both.
    pub op: Op,
    /// Sequential or random.
    pub pattern: Pattern,
    /// Requests in flight per path (also capped by the path's buffer count).
    pub depth: usize,
    /// New requests per second over all paths (`None`: as fast as the windows allow). A fixed
    /// offered load, for measuring what a request costs a target that is not saturated.
    pub rate: Option<u64>,
    /// When to stop.
    pub stop: Stop,
    /// Requests stay in sectors `0..range_sectors` (of every device).
    pub range_sectors: u64,
    /// Pre-write the range and verify every read.
    pub verify: bool,
    /// Run this long before measuring.
    pub warmup: Duration,
    /// Retransmit a request not answered within this long.
    pub timeout: Duration,
    /// Transmissions before a request fails.
    pub tries: u32,
    /// Print a progress line on stderr once a second.
    pub progress: bool,
    /// Seed of the random pattern.
    pub seed: u64,
    /// After a round that found nothing, busy-poll the interfaces' NAPIs for up to this long
    /// (zero: do not; see `napi`).
    pub napi_poll: Duration,
}

pub(super) fn validate(paths: &[PathSpec], config: &LoadConfig) -> Result<(), LoadError> {
    let fail = |what: String| Err(LoadError::Config(what));
    if paths.is_empty() {
        return fail("no path to the device".into());
    }
    if config.verify && config.devices.len() != 1 {
        return fail("--verify checks one device at a time: give one --target".into());
    }
    if let Some(path) = paths.iter().find(|p| p.device >= config.devices.len()) {
        return fail(format!(
            "a path on {} names device {} of {}",
            path.interface,
            path.device,
            config.devices.len()
        ));
    }
    if let Some(device) = (0..config.devices.len())
        .find(|&index| !paths.iter().any(|p| p.device == index))
        .map(|index| config.devices[index])
    {
        return fail(format!("no path to e{}.{}", device.shelf, device.slot));
    }
    if config.range_sectors == 0 {
        return fail("the range is empty".into());
    }
    if config.verify && config.range_sectors > VERIFY_SECTORS_MAX {
        return fail(format!(
            "--verify tracks at most {VERIFY_SECTORS_MAX} sectors: give a smaller --range-sectors"
        ));
    }
    for path in paths {
        let frame_sectors = path.mtu.saturating_sub(ATA_DATA_OFFSET) / SECTOR_SIZE;
        if path.sectors == 0 || usize::from(path.sectors) > frame_sectors {
            return fail(format!(
                "{} sectors per request do not fit the MTU {} of {}",
                path.sectors, path.mtu, path.interface
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(device: usize, sectors: u8) -> PathSpec {
        PathSpec {
            device,
            interface: "x".into(),
            local_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            mtu: 1500,
            target_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            buffer_count: 16,
            sectors,
        }
    }

    fn config(devices: u8) -> LoadConfig {
        LoadConfig {
            devices: (0..devices)
                .map(|slot| Device {
                    shelf: 1,
                    slot,
                    lba48: true,
                })
                .collect(),
            op: Op::Read,
            pattern: Pattern::Random,
            depth: 16,
            stop: Stop::Bytes(1),
            range_sectors: 100,
            verify: false,
            warmup: Duration::ZERO,
            timeout: Duration::from_millis(200),
            tries: 8,
            progress: false,
            seed: 1,
            rate: None,
            napi_poll: Duration::ZERO,
        }
    }

    #[test]
    fn test_validate_rejects_oversized_requests() {
        let config = config(1);
        assert!(validate(&[spec(0, 3)], &config).is_err());
        assert!(validate(&[spec(0, 2)], &config).is_ok());
        let big = LoadConfig {
            verify: true,
            range_sectors: VERIFY_SECTORS_MAX + 1,
            ..config
        };
        assert!(validate(&[spec(0, 2)], &big).is_err());
    }

    #[test]
    fn test_validate_wants_a_path_to_every_device_and_verify_of_one() {
        let two = config(2);
        assert!(validate(&[spec(0, 2), spec(1, 2)], &two).is_ok());
        let error = validate(&[spec(0, 2), spec(0, 2)], &two).unwrap_err();
        assert!(error.to_string().contains("no path to e1.1"), "{error}");
        assert!(validate(&[spec(0, 2), spec(2, 2)], &two).is_err());
        let verify = LoadConfig {
            verify: true,
            ..two
        };
        let error = validate(&[spec(0, 2), spec(1, 2)], &verify).unwrap_err();
        assert!(error.to_string().contains("one device"), "{error}");
    }
}
