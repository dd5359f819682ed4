//! Facts about a network interface, in the calling thread's network namespace (index, MTU) or
//! as sysfs shows them (`/sys/class/net/<name>/...`: MAC, MTU, flags, RX queues). The one
//! place that looks them up.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

/// Where sysfs lists the interfaces.
pub const SYSFS_NET: &str = "/sys/class/net";

/// The index of interface `name` (`if_nametoindex`), or `NotFound` ("no interface NAME").
pub fn index(name: &str) -> io::Result<u32> {
    let c_name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c_name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {name}"),
        ));
    }
    Ok(index)
}

/// The MTU of `interface` (`SIOCGIFMTU`).
pub fn mtu(interface: &str) -> io::Result<u32> {
    // Any socket reaches the device ioctls; an AF_UNIX one (as glibc's if_nametoindex uses)
    // because the systemd unit's RestrictAddressFamilies allows no AF_INET: with one, every
    // interface under the unit looked jumbo (no MTU, so assumed the largest).
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `ifreq` is plain data; all-zero is valid.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = interface.as_bytes();
    if name.len() >= request.ifr_name.len() || name.contains(&0) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (slot, &byte) in request.ifr_name.iter_mut().zip(name) {
        *slot = libc::c_char::from_ne_bytes([byte]);
    }
    // SAFETY: SIOCGIFMTU reads the NUL-terminated name and writes `ifru_mtu` of the live
    // `ifreq` we pass; `fd` is open for the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFMTU, &mut request) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled the `ifru_mtu` member of the union.
    let mtu = unsafe { request.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// The sysfs folder of `interface`.
pub fn sysfs_dir(interface: &str) -> PathBuf {
    PathBuf::from(SYSFS_NET).join(interface)
}

/// One sysfs attribute of `interface` (`address`, `mtu`, `flags`, ...), trimmed.
pub fn attribute(interface: &str, attribute: &str) -> io::Result<String> {
    std::fs::read_to_string(sysfs_dir(interface).join(attribute)).map(|s| s.trim().to_owned())
}

/// How `interface`'s NAPIs defer their interrupts, which preferred busy polling needs:
/// (`napi_defer_hard_irqs`, `gro_flush_timeout` in ns), both 0 by default.
pub fn irq_deferral(interface: &str) -> io::Result<(u32, u64)> {
    let number = |name: &str| -> io::Result<u64> {
        attribute(interface, name)?
            .parse()
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
    };
    let defer = u32::try_from(number("napi_defer_hard_irqs")?)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    Ok((defer, number("gro_flush_timeout")?))
}

/// How many RX queues sysfs lists for `interface` (at least 1).
pub fn rx_queue_count(interface: &str) -> io::Result<u32> {
    let count = std::fs::read_dir(sysfs_dir(interface).join("queues"))?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    Ok(u32::try_from(count.max(1)).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_missing_interface_is_not_found() {
        let error = index("aoex-no-such-if").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(error.to_string().contains("aoex-no-such-if"), "{error}");
        assert!(mtu("aoex-no-such-if").is_err());
        assert!(attribute("aoex-no-such-if", "mtu").is_err());
    }
}
