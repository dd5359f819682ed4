//! The Prometheus/OpenMetrics endpoint (`target.metrics-listen`, off by default): an HTTP
//! server (`tiny_http`) on its own thread answers `GET /metrics` with the statistics board's
//! report in the text exposition format. Every integer field of the report is exported, named
//! after its place in the report (`aoe_xdp_port_rx_frames_total{port="vt0:0:af_xdp"}`,
//! `aoe_xdp_device_read_bytes_total{device="e1.0"}`,
//! `aoe_xdp_worker_engine_syncs_total{worker="0"}`, ...), so a counter added to the report
//! appears here without more code; the fields that are not counters are gauges. Each device's
//! service time is a histogram `aoe_xdp_device_service_seconds`. Counters are never reset
//! (`aoe-xdp ctl clear-stats` does not touch them), as Prometheus expects.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;

use super::server_thread::ServerThread;
use super::stats::{ServiceTimeReport, StatsBoard};

/// How long the server's thread waits after a failed receive before it tries again.
const RETRY: Duration = Duration::from_millis(100);
/// Report fields that are gauges (a level, not a count of events).
const GAUGES: [&str; 3] = ["owner", "fill_depth", "frames_held"];
/// Upper bounds of the service-time histogram's buckets, in seconds.
const BUCKETS_S: [f64; 19] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2,
    5e-2, 0.1, 0.25, 0.5, 1.0,
];

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("metrics endpoint on {address}: {message}")]
pub struct MetricsError {
    address: SocketAddr,
    message: String,
}

/// The endpoint's server thread; stops on drop.
#[derive(Debug)]
pub struct MetricsServer {
    /// The address asked for (`metrics-listen`).
    configured: SocketAddr,
    address: SocketAddr,
    /// Stops on drop.
    _thread: ServerThread,
    /// The board it serves (replaced by [`MetricsServer::retarget`]).
    board: Arc<Mutex<Arc<StatsBoard>>>,
}

impl MetricsServer {
    /// Listens on `address` and serves `board`'s figures from a thread.
    pub fn start(
        address: SocketAddr,
        board: Arc<StatsBoard>,
    ) -> Result<MetricsServer, MetricsError> {
        let configured = address;
        let error = |message: String| MetricsError { address, message };
        let server = Arc::new(tiny_http::Server::http(address).map_err(|e| error(e.to_string()))?);
        let address = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| error("not an IP address".into()))?;
        let board = Arc::new(Mutex::new(board));
        let served = Arc::clone(&board);
        let unblocked = Arc::clone(&server);
        let thread = ServerThread::spawn(
            "aoe-metrics",
            move |stop| serve(&server, &served, stop),
            move || unblocked.unblock(),
        )
        .map_err(|e| error(e.to_string()))?;
        Ok(MetricsServer {
            configured,
            address,
            _thread: thread,
            board,
        })
    }

    /// Serves a new dataplane's board from now on (its counters start from zero).
    pub fn retarget(&self, board: Arc<StatsBoard>) {
        *self.board.lock().unwrap_or_else(PoisonError::into_inner) = board;
    }

    /// The address it was asked to listen on (`metrics-listen`, port 0 as given).
    pub fn configured(&self) -> SocketAddr {
        self.configured
    }

    /// The address it listens on (with the port the system chose for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

/// Answers requests until `stop` is set; between requests the thread sleeps until one comes
/// or the stop unblocks it (`tiny_http::Server::unblock`).
fn serve(server: &tiny_http::Server, board: &Mutex<Arc<StatsBoard>>, stop: &AtomicBool) {
    loop {
        let received = server.recv();
        // Acquire: pairs with the stop's Release store, made before it unblocks `recv`.
        if stop.load(Ordering::Acquire) {
            return;
        }
        let request = match received {
            Ok(request) => request,
            Err(error) => {
                tracing::warn!(%error, "metrics endpoint");
                std::thread::sleep(RETRY);
                continue;
            }
        };
        let found = request.method() == &tiny_http::Method::Get
            && request.url().split('?').next() == Some("/metrics");
        let response = if found {
            let content_type = tiny_http::Header::from_bytes(
                "Content-Type",
                "text/plain; version=0.0.4; charset=utf-8",
            )
            .expect("a valid header");
            let board = Arc::clone(&board.lock().unwrap_or_else(PoisonError::into_inner));
            tiny_http::Response::from_string(render(&board)).with_header(content_type)
        } else {
            tiny_http::Response::from_string("aoe-xdp: GET /metrics\n").with_status_code(404)
        };
        if let Err(error) = request.respond(response) {
            tracing::debug!(%error, "metrics client");
        }
    }
}

/// The text exposition of `board`'s report.
pub fn render(board: &StatsBoard) -> String {
    let report = board.report();
    let json = serde_json::to_value(&report).unwrap_or(Value::Null);
    let mut out = Exposition::default();
    out.sample("aoe_xdp_uptime_seconds", "gauge", "", report.uptime_s);
    for port in json["ports"].as_array().into_iter().flatten() {
        let label = format!("port=\"{}\"", escape(port["name"].as_str().unwrap_or("")));
        out.fields("aoe_xdp_port", &label, port);
    }
    for (device, values) in report
        .devices
        .iter()
        .zip(json["devices"].as_array().into_iter().flatten())
    {
        let label = format!("device=\"{}\"", escape(&device.name));
        out.fields("aoe_xdp_device", &label, values);
        out.histogram("aoe_xdp_device_service_seconds", &label, &device.service_ns);
    }
    for (index, worker) in json["workers"].as_array().into_iter().flatten().enumerate() {
        out.fields("aoe_xdp_worker", &format!("worker=\"{index}\""), worker);
    }
    out.finish()
}

/// The exposition being collected: per metric family its type and sample lines, written
/// grouped (as the format requires) by [`Exposition::finish`].
#[derive(Default)]
struct Exposition {
    families: std::collections::BTreeMap<String, (String, Vec<String>)>,
}

impl Exposition {
    /// Every integer field of `values` (nested objects joined with `_`), as counters unless
    /// named in [`GAUGES`]; strings and the service-time buckets are skipped.
    fn fields(&mut self, prefix: &str, label: &str, values: &Value) {
        let Some(map) = values.as_object() else {
            return;
        };
        for (key, value) in map {
            let name = format!("{prefix}_{key}");
            match value {
                Value::Number(number) if number.is_u64() => {
                    let number = number.as_u64().unwrap_or(0) as f64;
                    if GAUGES.contains(&key.as_str()) {
                        self.sample(&name, "gauge", label, number);
                    } else {
                        self.sample(&format!("{name}_total"), "counter", label, number);
                    }
                }
                Value::Object(_) if key != "service_ns" => self.fields(&name, label, value),
                _ => {}
            }
        }
    }

    fn sample(&mut self, name: &str, kind: &str, label: &str, value: f64) {
        let family = self
            .families
            .entry(name.to_owned())
            .or_insert_with(|| (kind.to_owned(), Vec::new()));
        let labels = if label.is_empty() {
            String::new()
        } else {
            format!("{{{label}}}")
        };
        family.1.push(format!("{name}{labels} {value}"));
    }

    /// A Prometheus histogram of `service` (seconds; `_sum` from each bucket's upper bound, so
    /// it errs high by at most 1 %).
    fn histogram(&mut self, name: &str, label: &str, service: &ServiceTimeReport) {
        let family = self
            .families
            .entry(name.to_owned())
            .or_insert_with(|| ("histogram".to_owned(), Vec::new()));
        let mut cumulative = 0;
        let mut buckets = service.buckets.iter().peekable();
        for bound in BUCKETS_S {
            while let Some((&ns, &count)) = buckets.peek() {
                if ns as f64 / 1e9 > bound {
                    break;
                }
                cumulative += count;
                buckets.next();
            }
            family.1.push(format!(
                "{name}_bucket{{{label},le=\"{bound}\"}} {cumulative}"
            ));
        }
        let count = service.count();
        let sum: f64 = service
            .buckets
            .iter()
            .map(|(&ns, &requests)| ns as f64 / 1e9 * requests as f64)
            .sum();
        family
            .1
            .push(format!("{name}_bucket{{{label},le=\"+Inf\"}} {count}"));
        family.1.push(format!("{name}_sum{{{label}}} {sum}"));
        family.1.push(format!("{name}_count{{{label}}} {count}"));
    }

    /// The text: each family's TYPE line, then its samples.
    fn finish(self) -> String {
        let mut text = String::new();
        for (name, (kind, lines)) in self.families {
            let _ = writeln!(text, "# TYPE {name} {kind}");
            for line in lines {
                let _ = writeln!(text, "{line}");
            }
        }
        text
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::counters::{ServiceTimes, UnitStats};

    #[test]
    fn test_every_counter_is_exported_in_grouped_families() {
        let board = StatsBoard::new(
            1,
            vec!["vt0:0:af_xdp".into(), "vt1:0:af_xdp".into()],
            vec!["e1.0".into()],
            vec![0],
        );
        board.publish(0, |slot| {
            // Unit 0 received 7 frames, unit 1 received 9.
            let received = |(unit, rx_frames)| {
                let stats = UnitStats {
                    rx_frames,
                    ..UnitStats::default()
                };
                (unit, stats)
            };
            slot.units = [(0, 7), (1, 9)].map(received).into();
            slot.devices = vec![crate::aoe::DeviceCounters {
                read_bytes: 2048,
                ..Default::default()
            }];
            slot.worker.engine.syncs = 3;
            let mut times = ServiceTimes::new(1);
            times.record(0, Duration::from_micros(3));
            times.record(0, Duration::from_millis(2));
            slot.service.copy_from(&times);
        });
        let text = render(&board);
        for line in [
            "aoe_xdp_port_rx_frames_total{port=\"vt0:0:af_xdp\"} 7",
            "aoe_xdp_port_rx_frames_total{port=\"vt1:0:af_xdp\"} 9",
            "aoe_xdp_port_jumbo_bounce_frames_total{port=\"vt0:0:af_xdp\"} 0",
            "aoe_xdp_port_kernel_fill_depth{port=\"vt0:0:af_xdp\"} 0",
            "aoe_xdp_device_read_bytes_total{device=\"e1.0\"} 2048",
            "aoe_xdp_device_owner{device=\"e1.0\"} 0",
            "aoe_xdp_worker_engine_syncs_total{worker=\"0\"} 3",
            "aoe_xdp_device_service_seconds_bucket{device=\"e1.0\",le=\"0.000005\"} 1",
            "aoe_xdp_device_service_seconds_bucket{device=\"e1.0\",le=\"0.0025\"} 2",
            "aoe_xdp_device_service_seconds_count{device=\"e1.0\"} 2",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // Each family's TYPE line once, its samples right after it.
        let mut seen = std::collections::HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap().to_owned();
                assert!(seen.insert(current.clone()), "{current} typed twice");
            } else {
                assert!(
                    line.starts_with(&current),
                    "{line} outside its family {current}"
                );
            }
        }
    }
}
