//! `[[device]]`: each key's rule and the rules between a device's keys (and against
//! `[target]` and `[acls]`).

use toml::Spanned;

use super::acl::{self, ResolvedAcls};
use super::address::{address, device_name};
use super::defaults;
use super::problems::Problems;
use super::raw::RawDevice;
use super::system::System;
use super::types::{Advertisement, Durability, Interfaces, MacList};
use super::values::{int_in, interfaces, keyword, path};
use super::{DeviceConfig, TargetConfig};

/// The device's label in messages: its name, or the default name from its raw address.
fn device_label(raw: &RawDevice) -> String {
    match &raw.name {
        Some(name) => format!("device \"{}\"", name.get_ref()),
        None => format!("device \"e{}.{}\"", raw.shelf.get_ref(), raw.slot.get_ref()),
    }
}

pub(super) fn device(
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
    let broadcast = is_set(&raw.broadcast);
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
        read_only: is_set(&raw.read_only),
        direct_io: is_set(&raw.direct_io),
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

/// True if a boolean key is present and true.
fn is_set(flag: &Option<Spanned<bool>>) -> bool {
    flag.as_ref().is_some_and(|v| *v.get_ref())
}

/// A boolean key that may conflict with others: false if absent or false; if true and `why`
/// names a conflict ("<what the key does>; <fix>"), that is reported at the key.
fn flag(
    p: &mut Problems,
    label: &str,
    key: &str,
    flag: &Option<Spanned<bool>>,
    why: impl FnOnce() -> Option<&'static str>,
) -> bool {
    let Some(value) = flag.as_ref().filter(|v| *v.get_ref()) else {
        return false;
    };
    if let Some(why) = why() {
        p.push(value.span(), format!("{label}: {key} = true {why}"));
    }
    true
}

/// `resident`, which keeps the data in the page cache that `direct-io` bypasses.
fn resident(p: &mut Problems, label: &str, raw: &RawDevice) -> bool {
    flag(p, label, "resident", &raw.resident, || {
        is_set(&raw.direct_io).then_some(
            "keeps the data in the page cache, which direct-io = true bypasses; choose one",
        )
    })
}

/// `mapped-writes`, a way of carrying out write-back writes: only with `durability =
/// "writeback"`, and not with `direct-io` or `read-only`.
fn mapped_writes(p: &mut Problems, label: &str, raw: &RawDevice) -> bool {
    flag(p, label, "mapped-writes", &raw.mapped_writes, || {
        if raw.durability.as_ref().map(|d| d.get_ref().as_str()) != Some("writeback") {
            Some("is for durability = \"writeback\" (sync writes go through io_uring)")
        } else if is_set(&raw.direct_io) {
            Some("copies into the page cache, which direct-io = true bypasses; choose one")
        } else if is_set(&raw.read_only) {
            Some("has nothing to write on a read-only device")
        } else {
            None
        }
    })
}

/// `mapped-reads`, a way of carrying out reads: not with `direct-io` (no page cache to map)
/// or `resident` (which reads through its locked mapping already).
fn mapped_reads(p: &mut Problems, label: &str, raw: &RawDevice) -> bool {
    flag(p, label, "mapped-reads", &raw.mapped_reads, || {
        if is_set(&raw.direct_io) {
            Some("copies out of the page cache, which direct-io = true bypasses; choose one")
        } else if is_set(&raw.resident) {
            Some("is what resident = true does already (through a locked mapping); choose one")
        } else {
            None
        }
    })
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
