//! Facts about the machine that validation depends on: its online CPUs, the CPUs this process
//! may run on, and its host name.
//!
//! Contract: `System::probe` is the only I/O of validation; tests build a `System` by hand,
//! so that a configuration's cores can be checked against any machine.

use std::fmt::Write as _;

/// Facts about the machine that validation depends on.
#[derive(Debug, Clone)]
pub(crate) struct System {
    /// Online CPU core ids, ascending; empty if they could not be determined.
    pub online_cpus: Vec<usize>,
    /// The CPUs this process may run on (its affinity mask, as `taskset` or systemd's
    /// `CPUAffinity=` set it), ascending; empty if it could not be read.
    pub allowed_cpus: Vec<usize>,
    /// Host name, for default IDENTIFY serial numbers.
    pub hostname: String,
}

impl System {
    /// Reads /sys/devices/system/cpu/online (falling back to the affinity mask), the calling
    /// thread's affinity mask (call it from a thread that was not pinned: it stands for the
    /// process's) and the host name.
    pub fn probe() -> System {
        let allowed_cpus = affinity();
        let online_cpus = std::fs::read_to_string("/sys/devices/system/cpu/online")
            .ok()
            .and_then(|text| parse_cpu_list(&text))
            .unwrap_or_else(|| allowed_cpus.clone());
        let hostname = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        System {
            online_cpus,
            allowed_cpus,
            hostname,
        }
    }

    /// The cores that workers run on when the configuration names none: every online core
    /// the process may run on, or every online core if it may run on none of them (or its
    /// mask could not be read).
    pub fn default_worker_cores(&self) -> Vec<usize> {
        let allowed: Vec<usize> = self
            .online_cpus
            .iter()
            .copied()
            .filter(|cpu| self.allowed_cpus.contains(cpu))
            .collect();
        if allowed.is_empty() {
            self.online_cpus.clone()
        } else {
            allowed
        }
    }
}

/// The calling thread's CPU affinity, ascending (empty if it cannot be read).
pub(crate) fn affinity() -> Vec<usize> {
    let mut ids: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|core| core.id)
        .collect();
    ids.sort_unstable();
    ids
}

/// Parses a kernel CPU list such as "0-3,8,10-11\n" into ascending ids.
pub(crate) fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut ids = Vec::new();
    for part in text.trim().split(',').filter(|part| !part.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last): (usize, usize) = (first.parse().ok()?, last.parse().ok()?);
                if first > last {
                    return None;
                }
                ids.extend(first..=last);
            }
            None => ids.push(part.parse().ok()?),
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Some(ids)
}

/// Formats ascending ids the way the kernel does: "0-3,8".
pub(crate) fn format_cpu_list(ids: &[usize]) -> String {
    let mut text = String::new();
    let mut index = 0;
    while index < ids.len() {
        let first = ids[index];
        let mut last = first;
        while index + 1 < ids.len() && ids[index + 1] == last + 1 {
            index += 1;
            last = ids[index];
        }
        if !text.is_empty() {
            text.push(',');
        }
        if first == last {
            let _ = write!(text, "{first}");
        } else {
            let _ = write!(text, "{first}-{last}");
        }
        index += 1;
    }
    text
}
