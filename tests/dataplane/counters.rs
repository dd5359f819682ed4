//! The target's counters: as `aoe-xdp --stats` reports them (JSON and table) and as its log
//! prints them when a worker stops.

use std::process::Command;
use std::time::{Duration, Instant};

/// The numeric value of `name=` in a tracing log line (0 when absent).
pub fn log_field(line: &str, name: &str) -> u64 {
    let key = format!(" {name}=");
    line.find(&key)
        .and_then(|at| {
            line[at + key.len()..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// The cell in column `column` of the row whose first field starts with `row` in a table
/// `aoe-xdp --stats` printed (fields separated by blanks, none containing one).
pub fn table_cell(table: &str, column: &str, row: &str) -> Option<String> {
    let mut lines = table.lines();
    let header = lines.find(|line| line.split_whitespace().any(|field| field == column))?;
    let index = header
        .split_whitespace()
        .position(|field| field == column)?;
    let line = lines.find(|line| line.starts_with(row))?;
    line.split_whitespace().nth(index).map(str::to_owned)
}

/// Runs `aoe-xdp --stats SOCKET [--json]`; returns what it printed.
pub fn stats(socket: &std::path::Path, json: bool) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_aoe-xdp"));
    command.arg("--stats").arg(socket);
    if json {
        command.arg("--json");
    }
    let output = command.output().expect("run aoe-xdp --stats");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// The first statistics report (JSON) that satisfies `done`; workers publish every 100 ms.
pub fn wait_stats(
    socket: &std::path::Path,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let report: serde_json::Value =
            serde_json::from_str(&stats(socket, true)).expect("JSON report");
        if done(&report) {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "counters never caught up: {report:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
