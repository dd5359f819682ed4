//! The control socket (`target.control-socket`, a Unix stream socket, mode 0600; only root and
//! the target's own user are answered, checked with `SO_PEERCRED`): one command line per
//! connection, one line of JSON back. `aoe-xdp ctl` and `aoe-xdp --stats` are its clients.
//!
//! | command | answer |
//! |---|---|
//! | `stats` | the [`Report`] (counters since start, or since the last `clear-stats`) |
//! | `show DEVICE` | the device's AoE state: config string, Mac Mask List, reservation |
//! | `clear DEVICE config\|mask\|reservation` | `{"ok": ...}`; the change is saved and every worker uses it at once |
//! | `clear-stats` | `{"ok": ...}`; later `stats` count from now |
//! | `reload` | `{"ok": ...}` once the configuration file checks out (the supervisor then applies it), or `{"error": ...}` with every problem, the running configuration kept |
//! | `announce` | `{"ok": ...}`; every worker sends its advertisements within 100 ms (an error when no device advertises) |
//!
//! An error is `{"error": "..."}`. DEVICE is a device's name or its `SHELF.SLOT`. The server
//! runs on its own thread and never touches worker state: it reads the [`StatsBoard`] and
//! changes a device's [`SharedState`] as an initiator's Mac Mask or Reserve command would. A
//! socket file whose server is gone (a crash) is replaced; one that a live process answers on
//! is left alone and this instance runs without one (with a warning): control is not worth
//! refusing to serve storage.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::server_thread::ServerThread;
use super::stats::{Report, StatsBoard};
use crate::aoe::{DeviceParams, SharedState};
use crate::state_dir::StateDir;
use crate::sys::wake::{poll_until, pollin, Nudge};
use crate::wire::MacAddr;

/// How long the server waits for a client's command.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the server's thread waits before it accepts again after an error (out of file
/// descriptors, say), rather than failing in a loop.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// Fields of a report that are not counters: `clear-stats` leaves them alone.
const NOT_COUNTERS: [&str; 3] = ["owner", "fill_depth", "frames_held"];

/// Why the control socket could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Another live process answers on the path.
    #[error("{0} is in use by a running process; set target.control-socket to another path")]
    InUse(PathBuf),
    /// Socket or file system error.
    #[error("{path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The target answered with an error.
    #[error("{0}")]
    Refused(String),
    /// The answer was not what the command returns.
    #[error("{path}: unexpected answer: {answer}")]
    Answer {
        /// The socket path.
        path: PathBuf,
        /// What came back.
        answer: String,
    },
}

/// A device's AoE state, as `show` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStateReport {
    /// The device's name.
    pub name: String,
    /// `SHELF.SLOT`.
    pub address: String,
    /// The config string (lossy UTF-8).
    pub config: String,
    /// The Mac Mask List: when non-empty only these initiators are answered.
    pub mask: Vec<String>,
    /// The reservation: when non-empty only these initiators may issue ATA commands.
    pub reservation: Vec<String>,
}

/// What `clear` empties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clearable {
    /// The config string.
    Config,
    /// The Mac Mask List.
    Mask,
    /// The reservation.
    Reservation,
}

impl Clearable {
    /// The word the command uses.
    pub fn name(self) -> &'static str {
        match self {
            Clearable::Config => "config",
            Clearable::Mask => "mask",
            Clearable::Reservation => "reservation",
        }
    }

    fn parse(word: &str) -> Option<Clearable> {
        [Clearable::Config, Clearable::Mask, Clearable::Reservation]
            .into_iter()
            .find(|what| what.name() == word)
    }
}

/// How the control socket asks for a reload: the configuration file the target was started
/// with, the flag the supervisor watches (SIGHUP sets it too) and the nudge that wakes it.
#[derive(Debug, Clone, Default)]
pub struct ReloadHook {
    /// The `--config` file; `None` for the quick form, which has nothing to reload.
    pub config_path: Option<PathBuf>,
    /// Set to ask the supervisor to reload.
    pub requested: Arc<AtomicBool>,
    /// Wakes the supervisor (`None`: nobody waits on it; it looks at `requested` in its own
    /// time). The dataplane's workers nudge it too when one stops or loses a port.
    pub nudge: Option<Arc<Nudge>>,
}

impl ReloadHook {
    /// Asks the supervisor to reload, and wakes it.
    pub fn request(&self) {
        // Release: the supervisor's Acquire swap sees the request.
        self.requested.store(true, Ordering::Release);
        if let Some(nudge) = &self.nudge {
            nudge.nudge();
        }
    }
}

/// What the server works on: the board, and every device's parameters and shared state.
#[derive(Debug)]
struct Control {
    board: Arc<StatsBoard>,
    devices: Vec<(Arc<DeviceParams>, Arc<SharedState>)>,
    state_dir: Arc<StateDir>,
    /// Devices with somewhere to send an advertisement (`advertise` and their
    /// `advertisement` settings).
    advertising: usize,
    /// The counters at the last `clear-stats`, subtracted from later reports.
    baseline: Option<Value>,
    reload: ReloadHook,
}

/// The control socket's server thread; stops and removes the socket file on drop.
#[derive(Debug)]
pub struct CtlSocket {
    path: PathBuf,
    thread: ServerThread,
    /// What the server thread works on (locked while it answers one client).
    control: Arc<Mutex<Control>>,
}

impl CtlSocket {
    /// Binds `path` (replacing a stale socket file) and serves from a thread: `devices` with
    /// their state saved in `state_dir`, `advertising` of which advertise on `announce`;
    /// `reload` is how `reload` reaches the supervisor.
    pub fn start(
        path: &Path,
        board: Arc<StatsBoard>,
        devices: Vec<(Arc<DeviceParams>, Arc<SharedState>)>,
        (state_dir, advertising): (Arc<StateDir>, usize),
        reload: ReloadHook,
    ) -> Result<CtlSocket, CtlError> {
        let io = |source| CtlError::Io {
            path: path.to_owned(),
            source,
        };
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(CtlError::InUse(path.to_owned()));
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        listener.set_nonblocking(true).map_err(io)?;
        let control = Arc::new(Mutex::new(Control {
            board,
            devices,
            state_dir,
            advertising,
            baseline: None,
            reload,
        }));
        let served = Arc::clone(&control);
        let wake = Arc::new(Nudge::new().map_err(io)?);
        let waker = Arc::clone(&wake);
        let thread = ServerThread::spawn(
            "aoe-control",
            move |stop| {
                serve(&listener, &served, (stop, &wake));
            },
            move || waker.nudge(),
        )
        .map_err(io)?;
        Ok(CtlSocket {
            path: path.to_owned(),
            thread,
            control,
        })
    }

    /// Serves a new dataplane's board and devices from now on (the socket stays; a
    /// `clear-stats` baseline goes, as the new board counts from zero).
    pub fn retarget(
        &self,
        board: Arc<StatsBoard>,
        devices: Vec<(Arc<DeviceParams>, Arc<SharedState>)>,
        (state_dir, advertising): (Arc<StateDir>, usize),
    ) {
        let mut control = self.control.lock().unwrap_or_else(PoisonError::into_inner);
        control.board = board;
        control.devices = devices;
        control.state_dir = state_dir;
        control.advertising = advertising;
        control.baseline = None;
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for CtlSocket {
    fn drop(&mut self) {
        self.thread.stop();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether a client running as `peer` may use the socket of a target running as `own`: root,
/// or the target's own user (in addition to the socket file's mode, `0600`).
fn peer_allowed(peer: rustix::process::Uid, own: rustix::process::Uid) -> bool {
    peer.is_root() || peer == own
}

/// Answers clients one at a time until `stop` is set; between clients the thread sleeps in
/// `poll(2)` until one connects or `wake` is nudged (by the stop).
fn serve(listener: &UnixListener, control: &Mutex<Control>, (stop, wake): (&AtomicBool, &Nudge)) {
    let own = rustix::process::geteuid();
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => match rustix::net::sockopt::socket_peercred(&stream) {
                Ok(peer) if peer_allowed(peer.uid, own) => {
                    let mut control = control.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Err(error) = answer(stream, &mut control) {
                        tracing::debug!(%error, "control socket client");
                    }
                }
                Ok(peer) => {
                    tracing::warn!(
                        uid = peer.uid.as_raw(),
                        pid = peer.pid.as_raw_nonzero().get(),
                        "control socket: refused a client that is neither root nor this \
                         target's user"
                    );
                    let _ = refuse(&stream);
                }
                Err(error) => tracing::warn!(%error, "control socket: no peer credentials"),
            },
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                let mut fds = [pollin(listener.as_fd()), pollin(wake.fd())];
                if let Err(error) = poll_until(&mut fds, None) {
                    tracing::warn!(%error, "control socket: poll failed");
                    std::thread::sleep(ACCEPT_RETRY);
                }
                // The stop sets its flag before it nudges: the loop's test sees it.
                wake.clear();
            }
            Err(error) => {
                tracing::warn!(%error, "control socket accept failed");
                std::thread::sleep(ACCEPT_RETRY);
            }
        }
    }
}

/// Tells a refused client why. What it sent is dropped unparsed, and only what has arrived
/// (no wait: a refused client cannot hold up the others): a socket closed with unread data
/// resets its peer, whose read after the refusal would then fail instead of ending.
fn refuse(stream: &UnixStream) -> std::io::Result<()> {
    discard_arrived(stream);
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut writer = stream;
    writeln!(
        writer,
        "{{\"error\":\"permission denied: only root or the target's own user may ask\"}}"
    )?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    discard_arrived(stream);
    Ok(())
}

/// Reads and drops what `stream` holds now (at most a few KiB), without waiting.
fn discard_arrived(stream: &UnixStream) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let mut scratch = [0u8; 512];
    let mut reader = stream;
    for _ in 0..8 {
        if !matches!(reader.read(&mut scratch), Ok(count) if count > 0) {
            break;
        }
    }
}

fn answer(stream: UnixStream, control: &mut Control) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new((&stream).take(256)).read_line(&mut line)?;
    let reply = control
        .command(line.trim())
        .unwrap_or_else(|error| serde_json::json!({ "error": error }));
    let mut writer = &stream;
    writeln!(writer, "{reply}")
}

impl Control {
    /// Carries out one command line; `Err` is the error message for the client.
    fn command(&mut self, line: &str) -> Result<Value, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["stats"] => Ok(self.stats()),
            ["show", device] => {
                let index = self.device(device)?;
                serde_json::to_value(self.show(index)).map_err(|e| e.to_string())
            }
            ["clear", device, what] => {
                let index = self.device(device)?;
                let what = Clearable::parse(what).ok_or_else(|| {
                    format!("cannot clear {what:?}: say config, mask or reservation")
                })?;
                self.clear(index, what)
            }
            ["clear-stats"] => {
                self.baseline = Some(self.raw_stats());
                Ok(serde_json::json!({ "ok": "statistics cleared" }))
            }
            ["reload"] => self.reload(),
            ["announce"] if self.advertising == 0 => Err("no device advertises (target.advertise \
                 = false, or every device's advertisement is off): nothing to send"
                .to_owned()),
            ["announce"] => {
                self.board.request_announce();
                Ok(serde_json::json!({
                    "ok": format!("advertising {} device(s) on every interface", self.advertising)
                }))
            }
            _ => Err(format!(
                "unknown command {line:?}; try stats, show DEVICE, clear DEVICE \
                 config|mask|reservation, clear-stats or announce"
            )),
        }
    }

    /// Checks the configuration file as at start-up and, if it is sound, asks the supervisor
    /// to apply it; otherwise answers every problem and keeps the running configuration.
    fn reload(&self) -> Result<Value, String> {
        let Some(path) = &self.reload.config_path else {
            return Err("started without --config: there is no file to reload".to_owned());
        };
        let config = crate::config::Config::load_for_serving(path).map_err(|problems| {
            format!(
                "{} problem(s); the running configuration stays: {}",
                problems.len(),
                problems.join("; ")
            )
        })?;
        self.reload.request();
        Ok(serde_json::json!({
            "ok": format!(
                "{} checks out ({} device(s)); reloading",
                path.display(),
                config.devices.len()
            )
        }))
    }

    fn raw_stats(&self) -> Value {
        serde_json::to_value(self.board.report()).unwrap_or(Value::Null)
    }

    fn stats(&self) -> Value {
        let mut report = self.raw_stats();
        if let Some(baseline) = &self.baseline {
            subtract(&mut report, baseline);
        }
        report
    }

    /// The index of the device named `name` (its name or `SHELF.SLOT`).
    fn device(&self, name: &str) -> Result<usize, String> {
        self.devices
            .iter()
            .position(|(params, _)| {
                params.name == name || format!("{}.{}", params.shelf, params.slot) == name
            })
            .ok_or_else(|| {
                let names: Vec<&str> = self.devices.iter().map(|(p, _)| p.name.as_str()).collect();
                format!("no device {name:?}; devices: {}", names.join(", "))
            })
    }

    fn show(&self, index: usize) -> DeviceStateReport {
        let (params, shared) = &self.devices[index];
        let (state, _) = shared.snapshot();
        let macs = |list: &[MacAddr]| list.iter().map(ToString::to_string).collect();
        DeviceStateReport {
            name: params.name.clone(),
            address: format!("{}.{}", params.shelf, params.slot),
            config: String::from_utf8_lossy(state.config_string()).into_owned(),
            mask: macs(state.mask.as_slice()),
            reservation: macs(state.reserve.as_slice()),
        }
    }

    /// Empties one part of a device's state and saves the result, as a worker saves a change
    /// an initiator made.
    fn clear(&mut self, index: usize, what: Clearable) -> Result<Value, String> {
        let (params, shared) = &self.devices[index];
        shared.update(|state| {
            let changed = match what {
                Clearable::Config => {
                    let had = !state.config_string().is_empty();
                    state.set_config_string(b"").expect("an empty string fits");
                    had
                }
                Clearable::Mask => {
                    let had = !state.mask.is_empty();
                    state.mask.clear();
                    had
                }
                Clearable::Reservation => {
                    let had = !state.reserve.is_empty();
                    state.reserve.clear();
                    had
                }
            };
            ((), changed)
        });
        let (state, _) = shared.snapshot();
        self.state_dir
            .save(params.shelf, params.slot, &state)
            .map_err(|error| format!("cleared, but not saved: {error}"))?;
        tracing::info!(device = %params.name, what = what.name(), "cleared by the control socket");
        Ok(serde_json::json!({ "ok": format!("{} of {} cleared", what.name(), params.name) }))
    }
}

/// `now - base` for every counter in a report (matching objects by key, lists by position);
/// the fields of [`NOT_COUNTERS`] and non-integers (names, uptime) are left as they are.
fn subtract(now: &mut Value, base: &Value) {
    match (now, base) {
        (Value::Number(number), Value::Number(old)) => {
            if let (Some(n), Some(o)) = (number.as_u64(), old.as_u64()) {
                *number = n.saturating_sub(o).into();
            }
        }
        (Value::Object(map), Value::Object(old)) => {
            for (key, value) in map.iter_mut() {
                if let (false, Some(o)) = (NOT_COUNTERS.contains(&key.as_str()), old.get(key)) {
                    subtract(value, o);
                }
            }
        }
        (Value::Array(list), Value::Array(old)) => {
            for (value, o) in list.iter_mut().zip(old) {
                subtract(value, o);
            }
        }
        _ => {}
    }
}

/// Sends `command` to the target serving `path` and returns its answer; an `{"error": ...}`
/// answer becomes [`CtlError::Refused`].
pub fn request(path: &Path, command: &str) -> Result<Value, CtlError> {
    let stream = UnixStream::connect(path).map_err(|source| CtlError::Io {
        path: path.to_owned(),
        source,
    })?;
    exchange(stream, path, command)
}

/// [`request`] on a connected `stream`. A target that refuses a client answers without
/// reading and closes: if that happens before the command is written, the write fails
/// (`EPIPE`) but the answer is there to read, so a failed write is reported only when no
/// answer came.
fn exchange(mut stream: UnixStream, path: &Path, command: &str) -> Result<Value, CtlError> {
    let io = |source| CtlError::Io {
        path: path.to_owned(),
        source,
    };
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT * 2))
        .map_err(io)?;
    let sent = writeln!(stream, "{command}");
    let mut line = String::new();
    let read = BufReader::new(&stream).read_line(&mut line);
    if line.is_empty() {
        sent.map_err(io)?;
        read.map_err(io)?;
    }
    let answer: Value = serde_json::from_str(&line).map_err(|_| CtlError::Answer {
        path: path.to_owned(),
        answer: line.trim().to_owned(),
    })?;
    match answer.get("error").and_then(Value::as_str) {
        Some(error) => Err(CtlError::Refused(error.to_owned())),
        None => Ok(answer),
    }
}

/// Asks the target serving `path` for its statistics.
pub fn query(path: &Path) -> Result<Report, CtlError> {
    let answer = request(path, "stats")?;
    serde_json::from_value(answer.clone()).map_err(|_| CtlError::Answer {
        path: path.to_owned(),
        answer: answer.to_string(),
    })
}

/// Asks the target serving `path` for a device's AoE state.
pub fn show(path: &Path, device: &str) -> Result<DeviceStateReport, CtlError> {
    let answer = request(path, &format!("show {device}"))?;
    serde_json::from_value(answer.clone()).map_err(|_| CtlError::Answer {
        path: path.to_owned(),
        answer: answer.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aoe::DeviceState;
    use rustix::process::Uid;

    #[test]
    fn test_only_root_and_the_targets_own_user_may_ask() {
        let (user, other) = (Uid::from_raw(1000), Uid::from_raw(1001));
        assert!(peer_allowed(Uid::ROOT, user));
        assert!(peer_allowed(user, user));
        assert!(!peer_allowed(other, user));
        assert!(peer_allowed(Uid::ROOT, Uid::ROOT));
        assert!(!peer_allowed(user, Uid::ROOT));
    }

    /// A refused client (a plain one, as `socat` is) that wrote its command before the
    /// target looked reads the refusal and then the end of the stream, not a reset: the
    /// target drops what was sent (unparsed) before it closes.
    #[test]
    fn test_a_refused_client_that_wrote_first_reads_the_refusal_and_an_orderly_end() {
        let (mut client, server) = UnixStream::pair().unwrap();
        client.write_all(b"stats\n").unwrap();
        refuse(&server).unwrap();
        drop(server);
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        assert!(answer.contains("permission denied"), "{answer:?}");
    }

    /// A refused client whose command is written after the target answered and closed (a
    /// race a CI run hit: `aoe-xdp --stats` then said "Broken pipe") still gets the refusal.
    #[test]
    fn test_a_refusal_sent_before_the_command_is_what_the_client_reports() {
        let (client, server) = UnixStream::pair().unwrap();
        refuse(&server).unwrap();
        drop(server);
        let error = exchange(client, Path::new("ctl.sock"), "stats").unwrap_err();
        assert!(
            matches!(&error, CtlError::Refused(text) if text.contains("permission denied")),
            "{error:?}"
        );
        // A target that closes without an answer: the failed write is the error.
        let (client, server) = UnixStream::pair().unwrap();
        drop(server);
        let error = exchange(client, Path::new("ctl.sock"), "stats").unwrap_err();
        assert!(
            matches!(&error, CtlError::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe),
            "{error:?}"
        );
    }

    fn board() -> StatsBoard {
        StatsBoard::new(
            2,
            vec!["vt0:0:af_xdp".into(), "vt1:0:af_packet".into()],
            vec!["e1.0".into()],
            vec![1],
        )
    }

    fn mac(last: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, last])
    }

    /// A control socket over `board()` and one device e1.0 whose state has a config string,
    /// a mask and a reservation; the state directory lives in `dir`.
    fn control(dir: &Path) -> (CtlSocket, Arc<StatsBoard>, Arc<SharedState>, PathBuf) {
        let path = dir.join("run").join("ctl.sock");
        let board = Arc::new(board());
        let mut state = DeviceState::default();
        state.set_config_string(b"host=a").unwrap();
        state.mask.insert(mac(1)).unwrap();
        state.reserve.insert(mac(2)).unwrap();
        let shared = Arc::new(SharedState::new(state));
        let params = Arc::new(DeviceParams::new(1, 0, 100, 0));
        let state_dir = Arc::new(StateDir::open(dir.join("state")).unwrap());
        let socket = CtlSocket::start(
            &path,
            Arc::clone(&board),
            vec![(params, Arc::clone(&shared))],
            (state_dir, 1),
            ReloadHook::default(),
        )
        .expect("start");
        (socket, board, shared, path)
    }

    #[test]
    fn test_stats_serves_and_the_socket_cleans_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (socket, board, _, path) = control(dir.path());
        board.publish(0, |slot| slot.worker.remote_jobs = 9);
        let report = query(&path).expect("query");
        assert_eq!(report.workers[0].remote_jobs, 9);
        assert_eq!(report.devices[0].name, "e1.0");

        // A second server on a live socket is refused; an unknown command gets an error.
        assert!(matches!(
            CtlSocket::start(
                &path,
                Arc::clone(&board),
                Vec::new(),
                (
                    Arc::new(StateDir::open(dir.path().join("other")).unwrap()),
                    0
                ),
                ReloadHook::default(),
            ),
            Err(CtlError::InUse(_))
        ));
        let error = request(&path, "reboot").unwrap_err();
        assert!(error.to_string().contains("unknown command"), "{error}");

        drop(socket);
        assert!(!path.exists(), "socket file removed");
        // A stale file (no server) is replaced.
        std::fs::write(&path, b"").expect("stale file");
        let (socket, _, _, _) = control(dir.path());
        assert!(query(socket.path()).is_ok());
    }

    #[test]
    fn test_show_and_clear_change_the_shared_state_and_save_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_socket, _, shared, path) = control(dir.path());
        let shown = show(&path, "1.0").expect("show by address");
        assert_eq!(shown.config, "host=a");
        assert_eq!(shown.mask, [mac(1).to_string()]);
        assert_eq!(shown.reservation, [mac(2).to_string()]);
        assert_eq!(show(&path, "e1.0").unwrap(), shown, "by name too");

        let generation = shared.generation();
        request(&path, "clear e1.0 reservation").expect("clear");
        assert!(shared.generation() > generation, "workers see the change");
        let (state, _) = shared.snapshot();
        assert!(state.reserve.is_empty());
        assert_eq!(state.mask.as_slice(), [mac(1)], "the rest stays");
        let saved = StateDir::open(dir.path().join("state"))
            .unwrap()
            .load(1, 0)
            .unwrap();
        assert_eq!(saved, state, "saved as a worker saves");
        request(&path, "clear 1.0 mask").unwrap();
        request(&path, "clear 1.0 config").unwrap();
        let shown = show(&path, "1.0").unwrap();
        assert!(shown.config.is_empty() && shown.mask.is_empty());

        let error = request(&path, "clear e9.9 mask").unwrap_err();
        assert!(error.to_string().contains("no device \"e9.9\""), "{error}");
        let error = request(&path, "clear e1.0 everything").unwrap_err();
        assert!(error.to_string().contains("cannot clear"), "{error}");
    }

    #[test]
    fn test_clear_stats_counts_from_then_and_announce_reaches_the_board() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_socket, board, _, path) = control(dir.path());
        board.publish(1, |slot| {
            slot.worker.jobs = 10;
            slot.devices = vec![crate::aoe::DeviceCounters {
                read_cmds: 4,
                ..Default::default()
            }];
        });
        request(&path, "clear-stats").unwrap();
        board.publish(1, |slot| {
            slot.worker.jobs = 15;
            slot.devices[0].read_cmds = 7;
        });
        let report = query(&path).unwrap();
        assert_eq!(report.workers[1].jobs, 5);
        assert_eq!(report.devices[0].counters.read_cmds, 3);
        assert_eq!(report.devices[0].owner, 1, "not a counter: kept");

        assert_eq!(board.announce_requests(), 0);
        request(&path, "announce").unwrap();
        assert_eq!(board.announce_requests(), 1);
    }
}
