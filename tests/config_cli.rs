//! The `aoe-xdp` binary's configuration paths: `--config FILE --check`, the quick form, and
//! how problems are reported (all of them, exit status 1).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_aoe-xdp");

fn aoe_xdp(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run aoe-xdp")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Creates (or grows) a sparse file of at least `len` bytes.
fn sparse_file(path: &Path, len: u64) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap();
    if file.metadata().unwrap().len() < len {
        file.set_len(len).unwrap();
    }
}

#[track_caller]
fn assert_status(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// Asserts that `text` contains `part`.
#[track_caller]
fn assert_contains(text: &str, part: &str) {
    assert!(text.contains(part), "no {part:?} in:\n{text}");
}

/// Asserts that `output` ended with exit status `code`; returns its standard error.
#[track_caller]
fn stderr_with_status(output: &Output, code: i32) -> String {
    assert_status(output, code);
    text(&output.stderr)
}

/// Runs `--config FILE --check` on a file `name` holding `contents` (in a temporary directory,
/// returned to keep it); returns the file's path and the run's output.
fn check_config_file(name: &str, contents: &str) -> (tempfile::TempDir, PathBuf, Output) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    fs::write(&path, contents).unwrap();
    let output = aoe_xdp(&["--config", path.to_str().unwrap(), "--check"]);
    (dir, path, output)
}

/// A temporary directory with a sparse 1 MiB `disk.img`, and the quick form's export of it
/// as e1.0 (`1.0=PATH`).
fn one_mib_export() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    sparse_file(&disk, 1 << 20);
    let export = format!("1.0={}", disk.display());
    (dir, export)
}

/// The shipped example passes `--check` once the backing files it documents exist.
#[test]
fn test_example_config_checks() {
    // The sizes the example's comments tell the reader to create.
    sparse_file(Path::new("/var/tmp/aoe-xdp-example/disk0.img"), 64 << 20);
    sparse_file(Path::new("/var/tmp/aoe-xdp-example/scratch.img"), 16 << 20);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/aoe-xdp.toml");
    let output = aoe_xdp(&["--config", example.to_str().unwrap(), "--check"]);
    assert_status(&output, 0);
    let stdout = text(&output.stdout);
    let row = |name: &str| {
        stdout
            .lines()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{stdout}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        row("disk0").starts_with(
            "disk0 1.0 /var/tmp/aoe-xdp-example/disk0.img 131072 64.0 MiB rw sync no all any 64"
        ),
        "{stdout}"
    );
    assert_eq!(
        row("scratch"),
        "scratch 1.1 /var/tmp/aoe-xdp-example/scratch.img 8192 4.0 MiB rw writeback no eth1 \
         accept 3, deny 1 32"
    );
    assert_contains(&stdout, "configuration OK: 2 device(s)");
}

/// Every problem in a file is printed with file:line, and the exit status is 1.
#[test]
fn test_config_with_several_errors() {
    let (_dir, path, output) = check_config_file(
        "bad.toml",
        "[target]\n\
         umem-frames = 3000\n\
         socket = \"dpdk\"\n\
         \n\
         [acls]\n\
         loop = [\"loop\"]\n\
         \n\
         [[device]]\n\
         path = \"/dev/null\"\n\
         shelf = 65535\n\
         slot = 0\n\
         \n\
         [[device]]\n\
         path = \"/dev/null\"\n\
         shelf = 2\n\
         slot = 255\n\
         queue-length = 0\n",
    );
    let stderr = stderr_with_status(&output, 1);
    let file = path.display();
    for expected in [
        format!("error: {file}:2: target.umem-frames = 3000 is not a power of two"),
        format!("error: {file}:3: target.socket = \"dpdk\" is not recognized"),
        format!("error: {file}:6: acls.loop: entry \"loop\" makes a cycle"),
        format!("error: {file}:10: device \"e65535.0\": shelf 65535 is the broadcast address; use 0..=65534"),
        format!("error: {file}:16: device \"e2.255\": slot 255 is the broadcast address"),
        format!("error: {file}:17: device \"e2.255\": queue-length = 0 is out of range"),
        "6 problem(s) in the configuration".to_owned(),
    ] {
        assert!(stderr.contains(&expected), "missing {expected:?} in:\n{stderr}");
    }
    assert!(output.stdout.is_empty(), "nothing is exported");
}

/// A syntax error is reported with its line.
#[test]
fn test_config_with_unknown_key() {
    let (_dir, path, output) = check_config_file(
        "typo.toml",
        "[[device]]\npath = \"/dev/null\"\nshelf = 1\nslot = 0\nreadonly = true\n",
    );
    let stderr = stderr_with_status(&output, 1);
    let expected = format!("error: {}:5: unknown field `readonly`", path.display());
    assert_contains(&stderr, &expected);
}

/// Backing problems of every device are reported; the table still lists the good ones.
#[test]
fn test_backing_problems_all_reported() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.img");
    let small = dir.path().join("small.img");
    sparse_file(&good, 1 << 20);
    sparse_file(&small, 4096);
    let missing = dir.path().join("missing.img");
    let output = aoe_xdp(&[
        "--interface",
        "eth0",
        "--export",
        &format!("1.0={}", good.display()),
        "--export",
        &format!("1.1={}", missing.display()),
        "--export",
        &format!("1.2={}", dir.path().display()),
        "--check",
    ]);
    let stderr = stderr_with_status(&output, 1);
    assert_contains(&stderr, "error: device \"e1.1\": path ");
    assert_contains(&stderr, "missing.img: does not exist");
    assert_contains(&stderr, "error: device \"e1.2\": path ");
    assert_contains(&stderr, "is a directory");
    assert_contains(&stderr, "2 problem(s) with backing stores");
    assert!(
        text(&output.stdout).contains("2048"),
        "the good device's size is shown"
    );
}

/// The vblade-like quick form builds the same configuration as a file would.
#[test]
fn test_quick_form() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    sparse_file(&disk, 3 << 30);
    let output = aoe_xdp(&[
        "--interface",
        "veth-aoe*",
        "--interface",
        "eth1",
        "--export",
        &format!("7.3={}", disk.display()),
        "--read-only",
        "--direct-io",
        "--durability",
        "writeback",
        "--state-dir",
        dir.path().to_str().unwrap(),
        "--check",
    ]);
    assert_status(&output, 0);
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("target: interfaces veth-aoe*,eth1;"),
        "{stdout}"
    );
    let row = stdout
        .lines()
        .find(|line| line.starts_with("e7.3"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let row: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        row,
        [
            "e7.3",
            "7.3",
            disk.to_str().unwrap(),
            "6291456",
            "3.0",
            "GiB",
            "ro",
            "writeback",
            "yes",
            "all",
            "any",
            "64"
        ]
    );
}

/// Quick-form values go through the same validation as files, labelled "command line".
#[test]
fn test_quick_form_validation() {
    let output = aoe_xdp(&["-i", "eth 0", "-e", "1.255=/dev/null", "--check"]);
    let stderr = stderr_with_status(&output, 1);
    assert_contains(
        &stderr,
        "error: command line: target.interfaces: interface pattern \"eth 0\"",
    );
    assert_contains(
        &stderr,
        "error: command line: device \"e1.255\": slot 255 is the broadcast address",
    );
}

#[test]
fn test_usage_errors() {
    // Malformed --export, --config mixed with the quick form, nothing to export.
    for args in [
        &["-i", "eth0", "-e", "1=/dev/sdb"][..],
        &["--config", "x.toml", "--export", "1.0=/dev/sdb"],
        &["--check"],
        &["-i", "eth0", "-e", "1.0=/dev/null", "--log-level", "loud"],
    ] {
        let output = aoe_xdp(args);
        let stderr = stderr_with_status(&output, 2);
        assert!(
            stderr.starts_with("error: ") && stderr.contains("--help"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn test_missing_config_file() {
    let output = aoe_xdp(&["--config", "/nonexistent/aoe-xdp.toml", "--check"]);
    let stderr = stderr_with_status(&output, 1);
    assert_contains(
        &stderr,
        "error: cannot read /nonexistent/aoe-xdp.toml: No such file",
    );
}

/// Without --check the configuration is shown, then serving starts: here it fails (exit 2)
/// because the interface does not exist. (Never name a real interface here: the binary
/// would attach XDP to it and serve on the host's network until killed.)
#[test]
fn test_run_without_interface() {
    let (_dir, export) = one_mib_export();
    let output = aoe_xdp(&["-i", "aoex-absent0", "-e", &export]);
    assert_status(&output, 2);
    assert!(text(&output.stdout).contains("e1.0"));
    let stderr = text(&output.stderr);
    assert_contains(
        &stderr,
        "error: cannot start serving: no Ethernet interface matches aoex-absent0",
    );
}

/// A read-write export on a read-only file system is refused; read-only is fine. Needs a
/// private mount namespace (root, or unprivileged user namespaces).
#[test]
fn test_read_only_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let mount_point: PathBuf = dir.path().join("ro");
    fs::create_dir(&mount_point).unwrap();
    let probe = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .status();
    if !probe.is_ok_and(|status| status.success()) {
        let reason = "skipping: cannot create a mount namespace (unshare --mount)";
        assert!(
            std::env::var_os("AOE_XDP_REQUIRE_PRIV").is_none(),
            "{reason}"
        );
        eprintln!("{reason}");
        return;
    }
    let mount = mount_point.display();
    let script = format!(
        "mount -t tmpfs tmpfs {mount} && truncate -s 1M {mount}/disk.img && \
         mount -o remount,ro {mount} && \
         {BIN} -i eth0 -e 1.0={mount}/disk.img --check; echo rw=$?; \
         {BIN} -i eth0 -e 1.0={mount}/disk.img --read-only --check; echo ro=$?"
    );
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(
        stdout.contains("rw=1") && stdout.contains("ro=0"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("disk.img: is on a read-only file system; set read-only = true"),
        "{stderr}"
    );
}

/// `--log-format json`: every line on standard error is one JSON object; the error that stops
/// the target is a record at level ERROR naming the cause.
#[test]
fn test_json_logs() {
    let (dir, export) = one_mib_export();
    let output = aoe_xdp(&[
        "--interface",
        "aoexnosuchif0",
        "--export",
        &export,
        "--state-dir",
        dir.path().to_str().unwrap(),
        "--log-format",
        "json",
    ]);
    let stderr = stderr_with_status(&output, 2);
    let records: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect();
    let error = records
        .iter()
        .find(|record| record["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no ERROR record in {stderr}"));
    let cause = error["fields"]["error"].as_str().unwrap();
    assert!(
        cause.contains("no Ethernet interface matches aoexnosuchif0"),
        "{cause}"
    );
    assert!(error["timestamp"].is_string(), "{error}");
    // The summary stays on standard output, for people.
    assert!(text(&output.stdout).contains("e1.0"));
}

/// `config/aoe-xdp.service` is a unit systemd accepts as it is: `systemd-analyze verify` finds
/// no unknown key, no bad value and no warning (with ExecStart pointed at this build).
#[test]
fn test_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/aoe-xdp.service"
    ))
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/aoe-xdp "));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aoe-xdp.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/aoe-xdp", BIN)).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze (Debian package systemd)");
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{said}");
    assert!(said.trim().is_empty(), "systemd-analyze verify: {said}");
}
