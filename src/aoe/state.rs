//! Per-device AoE state that initiators can change: the config string, the Mac Mask List and
//! the reservation list.
//!
//! The state is shared by every worker serving the device. Writers (Query Config set, mask
//! edits, reserve/release: rare control commands) take a mutex, change the authoritative copy
//! and bump a generation counter. Readers (every ATA request checks the mask and reservation)
//! keep a private copy and only compare the generation, one atomic load of a cache line that
//! does not change on the I/O path, so workers do not bounce cache lines between cores.
//!
//! All lists have fixed capacity: nothing here allocates after construction.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::wire::MacAddr;

/// Largest config string AoE allows (AoEr11 §3.2).
pub const CONFIG_STRING_MAX: usize = 1024;
/// Largest Mac Mask List (the Dir Count field is one byte; ggaoed's limit too).
pub const MASK_LIST_MAX: usize = 255;
/// Largest reservation list (the NMacs field is one byte).
pub const RESERVE_LIST_MAX: usize = 255;

/// A fixed-capacity, sorted, duplicate-free set of MAC addresses. Equality compares the
/// entries only, never the unused tail of the array.
#[derive(Clone)]
pub struct MacList<const N: usize> {
    macs: [MacAddr; N],
    len: usize,
}

impl<const N: usize> Default for MacList<N> {
    fn default() -> Self {
        MacList {
            macs: [MacAddr([0; 6]); N],
            len: 0,
        }
    }
}

impl<const N: usize> PartialEq for MacList<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<const N: usize> Eq for MacList<N> {}

impl<const N: usize> std::fmt::Debug for MacList<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// The list is full; the MAC was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListFull;

impl<const N: usize> MacList<N> {
    /// The entries, sorted.
    pub fn as_slice(&self) -> &[MacAddr] {
        &self.macs[..self.len]
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when `mac` is on the list.
    pub fn contains(&self, mac: MacAddr) -> bool {
        self.as_slice().binary_search(&mac).is_ok()
    }

    /// Adds `mac`; adding a MAC that is already present succeeds and changes nothing.
    pub fn insert(&mut self, mac: MacAddr) -> Result<bool, ListFull> {
        match self.as_slice().binary_search(&mac) {
            Ok(_) => Ok(false),
            Err(_) if self.len == N => Err(ListFull),
            Err(at) => {
                self.macs.copy_within(at..self.len, at + 1);
                self.macs[at] = mac;
                self.len += 1;
                Ok(true)
            }
        }
    }

    /// Removes `mac`; returns whether it was present.
    pub fn remove(&mut self, mac: MacAddr) -> bool {
        match self.as_slice().binary_search(&mac) {
            Ok(at) => {
                self.macs.copy_within(at + 1..self.len, at);
                self.len -= 1;
                true
            }
            Err(_) => false,
        }
    }

    /// Empties the list.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

/// The changeable AoE state of one device. Equality compares the content (the config string,
/// the lists), never bytes left behind by a longer earlier string or list.
#[derive(Clone)]
pub struct DeviceState {
    config: [u8; CONFIG_STRING_MAX],
    config_len: usize,
    /// The AoE Mac Mask List: when non-empty only these initiators are answered.
    pub mask: MacList<MASK_LIST_MAX>,
    /// The reservation: when non-empty only these initiators may issue ATA commands.
    pub reserve: MacList<RESERVE_LIST_MAX>,
}

impl Default for DeviceState {
    fn default() -> Self {
        DeviceState {
            config: [0; CONFIG_STRING_MAX],
            config_len: 0,
            mask: MacList::default(),
            reserve: MacList::default(),
        }
    }
}

impl PartialEq for DeviceState {
    fn eq(&self, other: &Self) -> bool {
        self.config_string() == other.config_string()
            && self.mask == other.mask
            && self.reserve == other.reserve
    }
}

impl Eq for DeviceState {}

impl std::fmt::Debug for DeviceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceState")
            .field("config", &String::from_utf8_lossy(self.config_string()))
            .field("mask", &self.mask)
            .field("reserve", &self.reserve)
            .finish()
    }
}

/// The config string is longer than [`CONFIG_STRING_MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigTooLong;

impl DeviceState {
    /// The current config string (empty when unset).
    pub fn config_string(&self) -> &[u8] {
        &self.config[..self.config_len]
    }

    /// Replaces the config string.
    pub fn set_config_string(&mut self, value: &[u8]) -> Result<(), ConfigTooLong> {
        if value.len() > CONFIG_STRING_MAX {
            return Err(ConfigTooLong);
        }
        self.config[..value.len()].copy_from_slice(value);
        self.config_len = value.len();
        Ok(())
    }

    /// True when `src` may be answered at all under the Mac Mask List.
    pub fn mask_allows(&self, src: MacAddr) -> bool {
        self.mask.is_empty() || self.mask.contains(src)
    }

    /// True when `src` may issue reserved-for-holders ATA commands.
    pub fn reservation_allows(&self, src: MacAddr) -> bool {
        self.reserve.is_empty() || self.reserve.contains(src)
    }
}

/// The authoritative state of one device, shared by all workers.
#[derive(Debug, Default)]
pub struct SharedState {
    /// Bumped (Release) after every change of `state`; readers compare it (Acquire) with the
    /// generation of their private copy. Pairs with the Release store in `update`.
    generation: AtomicU64,
    state: Mutex<DeviceState>,
}

impl SharedState {
    /// Starts from a state loaded from disk (or the default).
    pub fn new(state: DeviceState) -> Self {
        SharedState {
            generation: AtomicU64::new(1),
            state: Mutex::new(state),
        }
    }

    /// The current generation (Acquire: pairs with the Release in [`SharedState::update`]).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A copy of the current state and its generation.
    pub fn snapshot(&self) -> (DeviceState, u64) {
        let guard = self.lock();
        (guard.clone(), self.generation.load(Ordering::Relaxed))
    }

    /// Copies the current state into `into`, returning its generation.
    pub fn copy_into(&self, into: &mut DeviceState) -> u64 {
        let guard = self.lock();
        into.clone_from(&guard);
        self.generation.load(Ordering::Relaxed)
    }

    /// Runs `change` on the authoritative state under the lock. If it reports a change the
    /// generation is bumped. Returns the closure's result and the new state's generation.
    pub fn update<R>(&self, change: impl FnOnce(&mut DeviceState) -> (R, bool)) -> (R, u64) {
        let mut guard = self.lock();
        let (result, changed) = change(&mut guard);
        let generation = if changed {
            // Release: a reader that sees the new generation and then locks sees the change.
            self.generation.fetch_add(1, Ordering::Release) + 1
        } else {
            self.generation.load(Ordering::Relaxed)
        };
        (result, generation)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DeviceState> {
        // A panic while holding the lock cannot leave the state half-written (each change is
        // a plain field update), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(last: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, last])
    }

    #[test]
    fn mac_list_stays_sorted_and_unique() {
        let mut list = MacList::<4>::default();
        assert_eq!(list.insert(mac(3)), Ok(true));
        assert_eq!(list.insert(mac(1)), Ok(true));
        assert_eq!(list.insert(mac(2)), Ok(true));
        assert_eq!(list.insert(mac(2)), Ok(false));
        assert_eq!(list.as_slice(), &[mac(1), mac(2), mac(3)]);
        assert!(list.remove(mac(2)));
        assert!(!list.remove(mac(2)));
        assert_eq!(list.as_slice(), &[mac(1), mac(3)]);
    }

    #[test]
    fn mac_list_full_is_reported() {
        let mut list = MacList::<2>::default();
        list.insert(mac(1)).unwrap();
        list.insert(mac(2)).unwrap();
        assert_eq!(list.insert(mac(3)), Err(ListFull));
        assert_eq!(
            list.insert(mac(1)),
            Ok(false),
            "present MAC is no error when full"
        );
    }

    #[test]
    fn config_string_limit() {
        let mut state = DeviceState::default();
        assert!(state.set_config_string(&[b'x'; CONFIG_STRING_MAX]).is_ok());
        assert_eq!(
            state.set_config_string(&[b'x'; CONFIG_STRING_MAX + 1]),
            Err(ConfigTooLong)
        );
        assert_eq!(state.config_string().len(), CONFIG_STRING_MAX);
    }

    #[test]
    fn equality_ignores_bytes_past_the_content() {
        // A long string replaced by a short one leaves stale bytes in the array; the state is
        // still equal to a fresh one with the short string (as loaded from the state file).
        let mut reused = DeviceState::default();
        reused
            .set_config_string(&[b'x'; CONFIG_STRING_MAX])
            .unwrap();
        reused.set_config_string(b"short").unwrap();
        reused.mask.insert(mac(1)).unwrap();
        reused.mask.insert(mac(2)).unwrap();
        assert!(reused.mask.remove(mac(2)));
        reused.reserve.insert(mac(9)).unwrap();
        reused.reserve.clear();
        let mut fresh = DeviceState::default();
        fresh.set_config_string(b"short").unwrap();
        fresh.mask.insert(mac(1)).unwrap();
        assert_eq!(reused, fresh);
        fresh.mask.insert(mac(3)).unwrap();
        assert_ne!(reused, fresh);
    }

    #[test]
    fn update_bumps_generation_only_on_change() {
        let shared = SharedState::new(DeviceState::default());
        let g0 = shared.generation();
        let ((), g1) = shared.update(|_| ((), false));
        assert_eq!(g0, g1);
        let ((), g2) = shared.update(|s| {
            s.set_config_string(b"hello").unwrap();
            ((), true)
        });
        assert_eq!(g2, g0 + 1);
        assert_eq!(shared.snapshot().0.config_string(), b"hello");
    }
}
