//! The supervisor: keeps a [`Dataplane`] matching the configuration and the interfaces that
//! exist now. It runs on the main thread (never a worker's) and hands over to a new dataplane when
//!
//! - the kernel announces a link change (rtnetlink, [`LinkWatcher`]) after which the set of
//!   configured interfaces that exist is different: one appeared that matches a name or glob,
//!   one was deleted, one was re-created with a new index, or one's MTU changed (sectors per
//!   request follow the MTU, and the Linux initiator re-reads them from the re-announcement);
//! - a reload is asked for (SIGHUP, or `aoe-xdp ctl reload`) and the configuration file checks
//!   out, backing files included ([`Config::load_for_serving`]); a file that does not is
//!   refused with its problems and the running configuration stays;
//! - a port failed (its interface deleted under traffic, say): its worker gave it up and serves
//!   its other ports, or stopped if it had none;
//! - a backing file or block device grew or shrank (looked at every [`SIZE_CHECK`]): IDENTIFY
//!   then reports the new size, the devices are announced again (the Linux initiator takes the
//!   new size from that), and requests beyond a shrunken end get ATA IDNF. A device whose
//!   window has a fixed `length` does not change.
//!
//! On the same beat it reads the kernel's count of page-cache evictions
//! ([`crate::sys::pagecache::evictions`]) and, when that moved, tells the workers' engines
//! to forget which pages they saw cached ([`crate::storage::cached::pages_evicted`]).
//!
//! A restart hands over to a new dataplane ([`Dataplane::serve_on`]): new interfaces get their
//! sockets first, while the old workers serve on; then the old workers stop the way shutdown
//! does (every request in flight answered), the interfaces that are still there unchanged keep
//! their sockets and XDP programs (a changed one is opened again), the new workers start and
//! announce the devices, and only then are the interfaces that went away released. Devices
//! keep their AoE state (it is on disk). For that moment requests wait in the sockets' rings
//! (printed in the log as `pause_ms`: 1-2 ms measured on veth with `idle = "spin"`; a
//! sleeping worker, `idle = "poll"`, is woken by the stop through its eventfd, which
//! `tests/dataplane/runtime.rs` checks).
//! An interface going down and up needs no restart: its sockets stay and it resumes. With no
//! configured interface left, the supervisor waits for one to appear.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ctl::ReloadHook;
use super::interfaces::{self, Interface, InterfaceError};
use super::links::LinkWatcher;
use super::{Dataplane, DataplaneError};
use crate::config::Config;
use crate::storage::cached;
use crate::sys::pagecache;
use crate::sys::wake::Nudge;

/// How often the backing stores' sizes are looked at: with nothing else happening, the
/// supervisor's thread wakes this often.
pub const SIZE_CHECK: Duration = Duration::from_secs(1);

/// How soon a restart that met an interface going away is tried again.
const RETRY_WAIT: Duration = Duration::from_millis(50);

/// What a supervisor round found wrong that it cannot repair.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The dataplane could not be started.
    #[error(transparent)]
    Start(Box<DataplaneError>),
    /// The link-event socket failed.
    #[error("link events: {0}")]
    Links(std::io::Error),
}

impl From<DataplaneError> for SupervisorError {
    fn from(error: DataplaneError) -> Self {
        SupervisorError::Start(Box::new(error))
    }
}

/// The configured interfaces that exist, as far as serving them is concerned.
type Links = Vec<(String, u32, u32)>;

fn links(interfaces: &[Interface]) -> Links {
    let mut links: Links = interfaces
        .iter()
        .map(|i| (i.name.clone(), i.ifindex, i.mtu))
        .collect();
    links.sort();
    links
}

/// Keeps the dataplane in step with the configuration and the interfaces.
pub struct Supervisor {
    config: Config,
    dataplane: Option<Dataplane>,
    /// What the running dataplane serves (empty without one).
    serving: Links,
    watcher: LinkWatcher,
    reload: ReloadHook,
    /// Sectors each device exports, as the running dataplane serves them.
    sizes: Vec<Option<u64>>,
    last_size_check: Instant,
    /// [`pagecache::evictions`] at the last size check (`None`: not readable).
    evictions: Option<u64>,
    /// The last restart met an interface that went away meanwhile: the next round tries again.
    retry: bool,
}

/// The sectors each configured device exports now (`None` where its backing store cannot be
/// looked at: it is served as it was, and its I/O errors say why).
fn export_sizes(config: &Config) -> Vec<Option<u64>> {
    config
        .devices
        .iter()
        .map(|device| device.export_sectors_now())
        .collect()
}

impl Supervisor {
    /// Starts serving `config` (read from `config_path`, if a file) and watching the links; a
    /// reload is asked for through `requested` (SIGHUP's flag) or the control socket. A round
    /// ends early when `nudge` is nudged (by the control socket's reload, a worker that stops
    /// or gives up a port, and whatever else the caller lets nudge it: signals).
    pub fn start(
        config: Config,
        config_path: Option<PathBuf>,
        requested: Arc<AtomicBool>,
        nudge: Arc<Nudge>,
    ) -> Result<Supervisor, SupervisorError> {
        // Subscribed first, so that no change between start-up and the first wait is missed.
        let watcher = LinkWatcher::open().map_err(SupervisorError::Links)?;
        let reload = ReloadHook {
            config_path,
            requested,
            nudge: Some(nudge),
        };
        let sizes = export_sizes(&config);
        let evictions = pagecache::evictions();
        if evictions.is_none() {
            tracing::warn!(
                "/proc/vmstat has no pgsteal_file or drop_pagecache: a write into a page the \
                 kernel evicted after a worker saw it cached may wait for the disk on the worker"
            );
        }
        let dataplane = Dataplane::start_with(&config, &reload)?;
        let serving = links(dataplane.interfaces());
        Ok(Supervisor {
            config,
            dataplane: Some(dataplane),
            serving,
            watcher,
            reload,
            sizes,
            last_size_check: Instant::now(),
            evictions,
            retry: false,
        })
    }

    /// The running dataplane, if any interface is there to serve.
    pub fn dataplane(&self) -> Option<&Dataplane> {
        self.dataplane.as_ref()
    }

    /// One round: waits up to `wait` (less when the next size check, or a retry, is due) for a
    /// link event or a nudge (a signal, a reload, a worker that stopped or gave up a port),
    /// then applies a requested reload and follows the interfaces. `Err` only for what a
    /// restart cannot repair.
    pub fn round(&mut self, wait: Duration) -> Result<(), SupervisorError> {
        let mut wait = wait.min(SIZE_CHECK.saturating_sub(self.last_size_check.elapsed()));
        if self.retry {
            wait = wait.min(RETRY_WAIT);
        }
        let nudge = self.reload.nudge.clone();
        let changed = self
            .watcher
            .wait(wait, nudge.as_deref().map(Nudge::fd))
            .map_err(SupervisorError::Links)?;
        // Before the flags are looked at: whoever nudges sets its flag first, so a nudge
        // consumed here has its flag seen below (and a later one wakes the next round).
        if let Some(nudge) = &nudge {
            nudge.clear();
        }
        // Acquire: pairs with the Release of SIGHUP's handler and of the control socket.
        if self.reload.requested.swap(false, Ordering::AcqRel) {
            self.reload()?;
        }
        if self.last_size_check.elapsed() >= SIZE_CHECK {
            self.last_size_check = Instant::now();
            self.follow_evictions();
            self.follow_sizes()?;
        }
        let failed = self.dataplane.as_ref().is_some_and(|d| !d.healthy());
        if changed || failed || self.retry {
            let now = self.configured_links();
            if now != self.serving {
                tracing::info!(
                    before = ?self.serving,
                    now = ?now,
                    "interfaces changed: restarting the dataplane"
                );
                self.restart(None)?;
            } else if failed {
                // A port failed on an interface that is still there: open it again.
                tracing::warn!(interfaces = ?now, "a port failed: restarting the dataplane");
                self.restart(None)?;
            }
        }
        Ok(())
    }

    /// Stops serving.
    pub fn shutdown(self) -> Result<Vec<super::counters::UnitStats>, super::port::PortError> {
        match self.dataplane {
            Some(dataplane) => dataplane.shutdown(),
            None => Ok(Vec::new()),
        }
    }

    /// Tells the engines when the kernel counted page-cache evictions since the last look.
    fn follow_evictions(&mut self) {
        let now = pagecache::evictions();
        if now.is_some() && now != self.evictions {
            tracing::debug!(
                before = ?self.evictions,
                now = ?now,
                "page-cache evictions counted: the workers forget the pages they saw cached"
            );
            cached::pages_evicted();
        }
        self.evictions = now.or(self.evictions);
    }

    /// Restarts the dataplane if a device's backing store changed size.
    fn follow_sizes(&mut self) -> Result<(), SupervisorError> {
        let now = export_sizes(&self.config);
        let resized: Vec<String> = self
            .config
            .devices
            .iter()
            .zip(self.sizes.iter().zip(&now))
            .filter_map(|(device, (before, now))| match (before, now) {
                (Some(before), Some(now)) if before != now => {
                    Some(format!("{}: {before} -> {now} sectors", device.name))
                }
                _ => None,
            })
            .collect();
        if resized.is_empty() || self.dataplane.is_none() {
            return Ok(());
        }
        tracing::info!(devices = %resized.join(", "), "backing store resized: restarting the dataplane");
        self.restart(None)
    }

    /// The configured interfaces that exist now (none if none matches). One being served stays
    /// in the set while it exists, even down (with the default, every interface that is up, a
    /// down one would otherwise drop out): down and up again, it keeps its sockets and resumes.
    fn configured_links(&self) -> Links {
        let mut now = match interfaces::resolve(&self.config.target.interfaces) {
            Ok(found) => links(&found),
            Err(error) => {
                if !matches!(error, InterfaceError::NoneMatched { .. }) {
                    tracing::warn!(%error, "cannot look at the interfaces");
                }
                Vec::new()
            }
        };
        for served in &self.serving {
            let (name, ifindex, _) = served;
            let still = interfaces::read_interface(name)
                .ok()
                .flatten()
                .filter(|i| i.ifindex == *ifindex);
            if let (Some(interface), false) = (still, now.iter().any(|(n, _, _)| n == name)) {
                now.push((interface.name, interface.ifindex, interface.mtu));
            }
        }
        now.sort();
        now
    }

    /// Reloads the configuration file, if it checks out.
    fn reload(&mut self) -> Result<(), SupervisorError> {
        let Some(path) = self.reload.config_path.clone() else {
            tracing::warn!("reload asked for, but started without --config: nothing to reload");
            return Ok(());
        };
        match Config::load_for_serving(&path) {
            Ok(config) => {
                tracing::info!(path = %path.display(), devices = config.devices.len(), "reloading");
                self.restart(Some(config))
            }
            Err(problems) => {
                for problem in &problems {
                    tracing::error!(%problem, "reload refused");
                }
                tracing::error!(
                    count = problems.len(),
                    "reload refused: the running configuration stays"
                );
                Ok(())
            }
        }
    }

    /// Serves `config` (or the current configuration) in place of the running dataplane,
    /// which keeps the sockets of the interfaces that did not change
    /// ([`Dataplane::serve_on`]); if the new configuration cannot be served, the old one is
    /// started again.
    fn restart(&mut self, config: Option<Config>) -> Result<(), SupervisorError> {
        let started = Instant::now();
        self.retry = false;
        self.serving.clear();
        let previous = config.map(|new| std::mem::replace(&mut self.config, new));
        self.sizes = export_sizes(&self.config);
        let attempt = match self.dataplane.take() {
            Some(old) => old.serve_on(&self.config, &self.reload),
            None => Dataplane::start_with(&self.config, &self.reload),
        };
        let result = match attempt {
            Err(error) if previous.is_some() => {
                tracing::error!(%error, "the new configuration cannot be served; back to the old one");
                self.config = previous.expect("checked");
                self.sizes = export_sizes(&self.config);
                Dataplane::start_with(&self.config, &self.reload)
            }
            result => result,
        };
        match result {
            Ok(dataplane) => {
                self.serving = links(dataplane.interfaces());
                // Taken over: the pause it measured; started afresh: all of this restart.
                let pause = dataplane.paused().unwrap_or_else(|| started.elapsed());
                self.dataplane = Some(dataplane);
                tracing::info!(
                    pause_ms = pause.as_millis(),
                    interfaces = ?self.serving,
                    "serving again"
                );
                Ok(())
            }
            Err(DataplaneError::Interfaces(InterfaceError::NoneMatched { patterns })) => {
                tracing::warn!(%patterns, "no configured interface exists: waiting for one");
                Ok(())
            }
            Err(error) if vanished(&error) => {
                // Deleted while the dataplane started: the next round looks again.
                tracing::warn!(%error, "an interface went away while being attached: looking again");
                self.retry = true;
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// Whether `error` is about an interface that no longer exists (deleted while it was being
/// read or attached), which a later attempt does not meet.
fn vanished(error: &DataplaneError) -> bool {
    let name = match error {
        DataplaneError::Xdp {
            interface: name, ..
        }
        | DataplaneError::Socket {
            interface: name, ..
        }
        | DataplaneError::Packet {
            interface: name, ..
        } => name,
        _ => return false,
    };
    !matches!(interfaces::read_interface(name), Ok(Some(_)))
}
