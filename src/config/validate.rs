//! `RawConfig` → `Config`: every semantic rule, every problem reported.
//!
//! Contract: validation never stops at the first problem. Each check that fails pushes a
//! `ConfigError` carrying the span of the offending value (or none, for a default) and a
//! message of the form "<key>: <what is wrong>; <how to fix it>", then carries on with a
//! default so that later, independent checks still run. `Config` is returned only if no
//! problem was found. The only I/O is `System::probe` (online CPUs, host name); the backing
//! files are checked separately (`backing.rs`), so a configuration can be validated on a
//! machine other than the one that serves it, except for its cores.
//!
//! The rules live beside what they check: `target.rs` (`[target]`), `acl.rs` (`[acls]`),
//! `device.rs` and `address.rs` (`[[device]]`), `values.rs` (checks any key's value can
//! need); they report into one `Problems` (`problems.rs`).

use super::acl;
use super::address::check_unique;
use super::device::device;
use super::problems::Problems;
use super::raw::RawConfig;
use super::system::System;
use super::target::target;
use super::{Config, ConfigError, DeviceConfig};

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
        .map(|raw_device| device(raw_device, &target, &acls, system, &mut problems))
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
