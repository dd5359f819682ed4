//! A device's AoE address (shelf.slot) and name: ranges, syntax, and uniqueness across the
//! devices.

use std::collections::BTreeMap;

use toml::Spanned;

use super::problems::Problems;
use super::raw::RawDevice;
use super::DeviceConfig;

/// Shelf and slot; broadcast values and the shelf the Linux initiator ignores are rejected.
pub(super) fn address(p: &mut Problems, label: &str, raw: &RawDevice) -> (u16, u8) {
    let shelf = match address_part::<u16>(p, label, "shelf", &raw.shelf, 0xFFFF) {
        Some(0x0FFF) => {
            p.push(
                raw.shelf.span(),
                format!(
                    "{label}: shelf 4095 (0x0FFF) is ignored by the Linux initiator (\"check \
                     shelf dip switches\"); use another shelf in 0..=65534"
                ),
            );
            0
        }
        Some(shelf) => shelf,
        None => 0,
    };
    let slot = address_part::<u8>(p, label, "slot", &raw.slot, 0xFF).unwrap_or(0);
    (shelf, slot)
}

/// A shelf or slot (`what`): a `T` below `broadcast`, the largest `T`; anything else is
/// reported.
fn address_part<T: TryFrom<i64>>(
    p: &mut Problems,
    label: &str,
    what: &str,
    raw: &Spanned<i64>,
    broadcast: i64,
) -> Option<T> {
    let value = *raw.get_ref();
    let problem = match T::try_from(value) {
        Ok(_) if value == broadcast => format!("{what} {value} is the broadcast address"),
        Ok(part) => return Some(part),
        Err(_) => format!("{what} {value} is out of range"),
    };
    p.push(
        raw.span(),
        format!("{label}: {problem}; use 0..={}", broadcast - 1),
    );
    None
}

pub(super) fn device_name(p: &mut Problems, label: &str, name: &Spanned<String>) -> String {
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

/// shelf.slot and names must be unique; the message names both devices.
pub(super) fn check_unique(raw: &[Spanned<RawDevice>], devices: &[DeviceConfig], p: &mut Problems) {
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
