//! Validation rules: one test per rejection, each asserting the file:line prefix and the key.

use super::system::{format_cpu_list, parse_cpu_list, System};
use super::*;

fn system() -> System {
    System {
        online_cpus: vec![0, 1, 2, 3],
        allowed_cpus: vec![0, 1, 2, 3],
        hostname: "testhost".to_owned(),
    }
}

/// A valid device table, four lines long.
const DEVICE: &str = "[[device]]\npath = \"/dev/null\"\nshelf = 1\nslot = 0\n";

fn load(text: &str) -> Result<Config, Error> {
    Config::from_toml_with(text, "test.toml", &system())
}

fn accept(text: &str) -> Config {
    load(text).unwrap_or_else(|err| panic!("rejected:\n{err}\n---\n{text}"))
}

/// Asserts that `text` is rejected with a problem at `line` whose message contains every
/// needle; returns all the problems.
#[track_caller]
fn reject(text: &str, line: usize, needles: &[&str]) -> Vec<ConfigError> {
    let err = load(text).expect_err("configuration should be rejected");
    let prefix = format!("test.toml:{line}: ");
    let found = err.problems().iter().any(|problem| {
        let shown = problem.to_string();
        shown.starts_with(&prefix) && needles.iter().all(|needle| shown.contains(needle))
    });
    assert!(
        found,
        "no problem at line {line} mentioning {needles:?}; got:\n{err}\n---\n{text}"
    );
    err.problems().to_vec()
}

/// `[target]` with `line` as its only key (line 2), followed by a valid device.
fn target_with(line: &str) -> String {
    format!("[target]\n{line}\n{DEVICE}")
}

/// `reject` of `target_with(line)`, with the problem at that line (2).
#[track_caller]
fn reject_target(line: &str, needles: &[&str]) -> Vec<ConfigError> {
    reject(&target_with(line), 2, needles)
}

/// A valid `[target]` and one device table (starting on line 1) with `extra` lines appended
/// from line 5 on.
fn device_with(extra: &str) -> String {
    format!("{DEVICE}{extra}\n")
}

/// `reject` of `device_with(extra)`, with the problem at the first extra line (5).
#[track_caller]
fn reject_device(extra: &str, needles: &[&str]) -> Vec<ConfigError> {
    reject(&device_with(extra), 5, needles)
}

// ---------------------------------------------------------------- syntax and shape

#[test]
fn test_rejects_unknown_target_key() {
    reject_target(
        "umem-frame = 4096",
        &["unknown field `umem-frame`", "umem-frames"],
    );
}

#[test]
fn test_rejects_unknown_device_key() {
    reject_device(
        "readonly = true",
        &["unknown field `readonly`", "read-only"],
    );
}

#[test]
fn test_rejects_target_key_at_top_level_with_hint() {
    let text = format!("umem-frames = 4096\n{DEVICE}");
    reject(&text, 1, &["unknown field `umem-frames`", "under [target]"]);
}

#[test]
fn test_rejects_device_key_at_top_level_with_hint() {
    reject(
        "path = \"/dev/null\"\n",
        1,
        &["unknown field `path`", "[[device]]"],
    );
}

#[test]
fn test_rejects_wrong_type() {
    reject_target("umem-frames = \"many\"", &["expected an integer"]);
}

#[test]
fn test_rejects_missing_path() {
    let text = format!("{DEVICE}\n[[device]]\nshelf = 2\nslot = 0\n");
    reject(&text, 6, &["missing field `path`", "add it"]);
}

#[test]
fn test_rejects_missing_shelf() {
    reject(
        "[[device]]\npath = \"/dev/null\"\nslot = 0\n",
        1,
        &["missing field `shelf`"],
    );
}

#[test]
fn test_rejects_syntax_error() {
    reject(&format!("{DEVICE}[target\n"), 5, &["invalid table header"]);
}

#[test]
fn test_rejects_no_devices() {
    let err = load("[target]\n").unwrap_err();
    assert_eq!(err.problems().len(), 1);
    let shown = err.problems()[0].to_string();
    assert!(shown.starts_with("test.toml: no [[device]]"), "{shown}");
}

// ---------------------------------------------------------------- [target]

#[test]
fn test_rejects_umem_frames_not_power_of_two() {
    reject_target(
        "umem-frames = 5000",
        &["target.umem-frames = 5000 is not a power of two; use 4096 or 8192"],
    );
}

#[test]
fn test_rejects_umem_frames_out_of_range() {
    reject_target("umem-frames = 32", &["target.umem-frames", "64..=1048576"]);
    reject_target(
        "umem-frames = -4096",
        &["target.umem-frames", "out of range"],
    );
}

#[test]
fn test_rejects_frame_size() {
    reject_target(
        "frame-size = 3000",
        &["target.frame-size", "use 2048 or 4096"],
    );
    reject_target("frame-size = 8192", &["target.frame-size"]);
}

#[test]
fn test_rejects_ring_sizes_not_power_of_two() {
    for key in [
        "rx-ring-size",
        "tx-ring-size",
        "fill-ring-size",
        "completion-ring-size",
    ] {
        reject_target(
            &format!("{key} = 1000"),
            &[&format!(
                "target.{key} = 1000 is not a power of two; use 512 or 1024"
            )],
        );
    }
}

#[test]
fn test_rejects_ring_sizes_out_of_range() {
    for key in [
        "rx-ring-size",
        "tx-ring-size",
        "fill-ring-size",
        "completion-ring-size",
    ] {
        reject_target(
            &format!("{key} = 32"),
            &[&format!("target.{key}"), "64..=65536"],
        );
        reject_target(&format!("{key} = 131072"), &[&format!("target.{key}")]);
    }
}

#[test]
fn test_rejects_uring_entries() {
    reject_target(
        "uring-entries = 100",
        &["target.uring-entries", "64 or 128"],
    );
    reject_target("uring-entries = 0", &["target.uring-entries", "1..=32768"]);
    reject_target(
        "uring-entries = 65536",
        &["target.uring-entries", "1..=32768"],
    );
}

#[test]
fn test_rejects_umem_smaller_than_rings() {
    reject_target(
        "umem-frames = 2048",
        &[
            "target.umem-frames = 2048",
            "fill-ring-size + tx-ring-size = 4096",
            "at least 4096",
        ],
    );
    // Without umem-frames in the file, the problem points at the ring that grew.
    reject_target(
        "fill-ring-size = 4096",
        &["target.umem-frames = 4096", "6144"],
    );
}

#[test]
fn test_rejects_completion_ring_smaller_than_tx() {
    reject_target(
        "completion-ring-size = 1024",
        &[
            "target.completion-ring-size = 1024",
            "tx-ring-size = 2048",
            "at least 2048",
        ],
    );
}

#[test]
fn test_rejects_idle() {
    reject_target(
        "idle = \"sleep\"",
        &["target.idle = \"sleep\"", "\"spin\" or \"poll\""],
    );
}

#[test]
fn test_rejects_idle_spin_us() {
    reject_target(
        "idle-spin-us = 1000001",
        &["target.idle-spin-us", "0..=1000000"],
    );
}

#[test]
fn test_idle_spin_us_is_read() {
    let config = accept(&target_with("idle = \"poll\"\nidle-spin-us = 40"));
    assert_eq!(
        (config.target.idle, config.target.idle_spin_us),
        (IdleMode::Poll, 40)
    );
    let config = accept(&target_with("idle-spin-us = 0"));
    assert_eq!(config.target.idle_spin_us, 0);
}

#[test]
fn test_idle_nap_us() {
    let config = accept(&target_with("idle = \"poll\"\nidle-nap-us = 200"));
    assert_eq!(config.target.idle_nap_us, 200);
    reject_target(
        "idle-nap-us = 100001",
        &["target.idle-nap-us", "0..=100000"],
    );
    reject_target("idle-nap-us = -1", &["target.idle-nap-us", "0..=100000"]);
}

#[test]
fn test_idle_spin_adaptive() {
    assert!(
        accept(&target_with("idle-spin-adaptive = true"))
            .target
            .idle_spin_adaptive
    );
    assert!(
        !accept(&target_with("idle-spin-adaptive = false"))
            .target
            .idle_spin_adaptive
    );
    reject_target("idle-spin-adaptive = \"yes\"", &["expected a boolean"]);
}

#[test]
fn test_idle_yield() {
    assert!(!accept(&target_with("idle-yield = false")).target.idle_yield);
    assert!(accept(&target_with("idle-yield = true")).target.idle_yield);
    reject_target("idle-yield = 1", &["expected a boolean"]);
}

#[test]
fn test_rejects_socket() {
    reject_target(
        "socket = \"dpdk\"",
        &["target.socket", "\"auto\", \"xdp\" or \"packet\""],
    );
}

#[test]
fn test_packet_ring() {
    let config = accept(&target_with("packet-ring = \"v3\""));
    assert_eq!(config.target.packet_ring, PacketRing::V3);
    reject_target(
        "packet-ring = \"v1\"",
        &["target.packet-ring", "\"v2\" or \"v3\""],
    );
}

#[test]
fn test_accept_any_destination() {
    assert!(!accept(DEVICE).target.accept_any_destination, "default");
    let on = accept(&target_with("accept-any-destination = true"));
    assert!(on.target.accept_any_destination);
    let off = accept(&target_with("accept-any-destination = false"));
    assert!(!off.target.accept_any_destination);
}

#[test]
fn test_rejects_accept_any_destination_not_a_boolean() {
    for value in ["\"yes\"", "1", "[\"eth0\"]"] {
        reject_target(
            &format!("accept-any-destination = {value}"),
            &["expected a boolean"],
        );
    }
    // A device key only under [target]: a device table does not take it.
    reject_device(
        "accept-any-destination = true",
        &["unknown field `accept-any-destination`"],
    );
}

#[test]
fn test_rejects_xdp_mode() {
    reject_target(
        "xdp-mode = \"offload\"",
        &["target.xdp-mode", "\"auto\", \"native\" or \"generic\""],
    );
}

#[test]
fn test_rejects_xdp_mode_with_packet_socket() {
    let text = format!("[target]\nsocket = \"packet\"\nxdp-mode = \"native\"\n{DEVICE}");
    reject(
        &text,
        3,
        &["target.xdp-mode", "no effect with socket = \"packet\""],
    );
}

#[test]
fn test_rejects_log_level() {
    reject_target(
        "log-level = \"verbose\"",
        &["target.log-level", "\"trace\""],
    );
}

#[test]
fn test_rejects_busy_poll_budget() {
    reject_target(
        "busy-poll-budget = 0",
        &["target.busy-poll-budget", "1..=65535"],
    );
    reject_target("busy-poll-budget = 65536", &["target.busy-poll-budget"]);
}

#[test]
fn test_rejects_busy_poll_usecs() {
    reject_target(
        "busy-poll-usecs = -1",
        &["target.busy-poll-usecs", "0..=1000000"],
    );
}

#[test]
fn test_rejects_merge_max_segments() {
    reject_target(
        "merge-max-segments = 0",
        &["target.merge-max-segments", "1..=1024"],
    );
    reject_target("merge-max-segments = 2048", &["target.merge-max-segments"]);
}

#[test]
fn test_rejects_merge_delay_us() {
    reject_target(
        "merge-delay-us = 200000",
        &["target.merge-delay-us", "0..=100000"],
    );
}

#[test]
fn test_rejects_empty_state_directory() {
    reject_target(
        "state-directory = \"\"",
        &["target.state-directory is empty"],
    );
}

#[test]
fn test_rejects_long_control_socket() {
    let line = format!("control-socket = \"/run/{}.sock\"", "x".repeat(100));
    reject_target(&line, &["target.control-socket is 110 bytes", "107"]);
}

#[test]
fn test_rejects_empty_interfaces() {
    reject_target("interfaces = []", &["target.interfaces is empty"]);
}

#[test]
fn test_rejects_bad_interface_patterns() {
    let text = target_with("interfaces = [\"eth 0\",\n  \"eth[0\",\n  \"abcdefghijklmnopq\"]");
    reject(&text, 2, &["target.interfaces", "\"eth 0\"", "' '"]);
    reject(&text, 3, &["target.interfaces", "\"eth[0\"", "[...]"]);
    reject(&text, 4, &["target.interfaces", "longer than 15"]);
}

#[test]
fn test_rejects_duplicate_interface() {
    reject_target(
        "interfaces = [\"eth0\", \"eth0\"]",
        &["\"eth0\" is listed twice"],
    );
}

#[test]
fn test_rejects_offline_worker_core() {
    reject_target(
        "worker-cores = [1, 7]",
        &["target.worker-cores: core 7 is not online (online cores: 0-3)"],
    );
    reject_target("worker-cores = [-1]", &["core -1 is not online"]);
}

#[test]
fn test_default_worker_cores_are_the_online_cores_the_process_may_use() {
    let with_mask = |allowed: Vec<usize>| {
        let system = System {
            allowed_cpus: allowed,
            ..system()
        };
        Config::from_toml_with(DEVICE, "t", &system)
            .unwrap()
            .target
            .worker_cores
    };
    // `taskset -c 1,3`: workers on 1 and 3 only.
    assert_eq!(with_mask(vec![1, 3]), vec![1, 3]);
    // A mask naming an offline CPU too: the online ones of it.
    assert_eq!(with_mask(vec![2, 7]), vec![2]);
    // A mask that could not be read, or names no online CPU: every online core.
    assert_eq!(with_mask(vec![]), vec![0, 1, 2, 3]);
    assert_eq!(with_mask(vec![9]), vec![0, 1, 2, 3]);
    // Named cores are taken as named, inside the mask or not.
    let system = System {
        allowed_cpus: vec![1],
        ..system()
    };
    let config = Config::from_toml_with(
        &format!("[target]\nworker-cores = [0, 2]\n{DEVICE}"),
        "t",
        &system,
    )
    .unwrap();
    assert_eq!(config.target.worker_cores, vec![0, 2]);
}

#[test]
fn test_rejects_empty_worker_cores() {
    reject_target(
        "worker-cores = []",
        &["target.worker-cores is empty", "(0-3)"],
    );
}

#[test]
fn test_rejects_duplicate_worker_core() {
    reject_target("worker-cores = [1, 1]", &["core 1 is listed twice"]);
}

#[test]
fn test_worker_cores_given() {
    let config = accept(&target_with("worker-cores = [3, 1]"));
    assert_eq!(config.target.worker_cores, vec![3, 1]);
}

// ---------------------------------------------------------------- [[device]]

fn one_device(shelf: &str, slot: &str) -> String {
    format!("[[device]]\npath = \"/dev/null\"\nshelf = {shelf}\nslot = {slot}\n")
}

#[test]
fn test_rejects_broadcast_shelf() {
    reject(
        &one_device("65535", "0"),
        3,
        &["device \"e65535.0\": shelf 65535 is the broadcast address; use 0..=65534"],
    );
}

#[test]
fn test_rejects_shelf_ignored_by_linux() {
    reject(
        &one_device("4095", "0"),
        3,
        &["device \"e4095.0\": shelf 4095", "Linux initiator"],
    );
}

#[test]
fn test_rejects_shelf_out_of_range() {
    reject(
        &one_device("70000", "0"),
        3,
        &["shelf 70000 is out of range; use 0..=65534"],
    );
    reject(&one_device("-1", "0"), 3, &["shelf -1 is out of range"]);
}

#[test]
fn test_rejects_broadcast_slot() {
    reject(
        &one_device("1", "255"),
        4,
        &["device \"e1.255\": slot 255 is the broadcast address; use 0..=254"],
    );
}

#[test]
fn test_rejects_slot_out_of_range() {
    reject(
        &one_device("1", "256"),
        4,
        &["slot 256 is out of range; use 0..=254"],
    );
}

#[test]
fn test_rejects_duplicate_shelf_slot() {
    let text = format!("{DEVICE}name = \"a\"\n\n[[device]]\nname = \"b\"\npath = \"/dev/null\"\nshelf = 1\nslot = 0\n");
    let problems = reject(
        &text,
        10,
        &[
            "device \"b\": shelf.slot 1.0 is already used by device \"a\"",
            "(device \"a\" is at line 3)",
        ],
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
}

#[test]
fn test_invalid_addresses_do_not_collide() {
    // Both shelves are invalid; their placeholder addresses must not add a duplicate error.
    let text = format!("{}{}", one_device("65535", "0"), one_device("70000", "0"));
    let err = load(&text).unwrap_err();
    assert_eq!(err.problems().len(), 2, "{err}");
}

#[test]
fn test_rejects_duplicate_name() {
    let text = format!(
        "{DEVICE}name = \"disk\"\n\n[[device]]\nname = \"disk\"\npath = \"/dev/null\"\nshelf = 1\nslot = 1\n"
    );
    reject(
        &text,
        8,
        &[
            "device \"disk\": the name is already used",
            "1.0",
            "(that device is at line 5)",
        ],
    );
}

#[test]
fn test_rejects_default_name_clash() {
    // An explicit name equal to another device's default name.
    let text = format!(
        "{DEVICE}\n[[device]]\nname = \"e1.0\"\npath = \"/dev/null\"\nshelf = 2\nslot = 0\n"
    );
    reject(&text, 7, &["device \"e1.0\": the name is already used"]);
}

#[test]
fn test_rejects_bad_names() {
    reject_device(
        "name = \"my disk\"",
        &["device \"my disk\": name contains ' '"],
    );
    reject_device("name = \".hidden\"", &["name starts with \".\""]);
    reject(
        &device_with(&format!("name = \"{}\"", "n".repeat(33))),
        5,
        &["1..=32 characters"],
    );
    reject_device("name = \"\"", &["1..=32 characters"]);
}

#[test]
fn test_rejects_empty_path() {
    reject(
        "[[device]]\npath = \"\"\nshelf = 1\nslot = 0\n",
        2,
        &["device \"e1.0\": path is empty"],
    );
}

#[test]
fn test_rejects_durability() {
    reject_device(
        "durability = \"fast\"",
        &[
            "device \"e1.0\": durability = \"fast\"",
            "\"sync\" or \"writeback\"",
        ],
    );
}

#[test]
fn test_rejects_resident_with_direct_io() {
    reject(
        &device_with("direct-io = true\nresident = true"),
        6,
        &[
            "device \"e1.0\": resident = true",
            "direct-io = true",
            "choose one",
        ],
    );
}

#[test]
fn test_resident() {
    let config = accept(&device_with("resident = true\ndurability = \"writeback\""));
    assert!(config.devices[0].resident);
    assert!(!accept(&device_with("resident = false")).devices[0].resident);
}

#[test]
fn test_mapped_writes() {
    let config = accept(&device_with(
        "durability = \"writeback\"\nmapped-writes = true",
    ));
    assert!(config.devices[0].mapped_writes);
    let config = accept(&device_with("durability = \"writeback\""));
    assert!(!config.devices[0].mapped_writes, "off by default");
    assert!(!accept(&device_with("mapped-writes = false")).devices[0].mapped_writes);
}

#[test]
fn test_rejects_mapped_writes_without_writeback_or_with_direct_io_or_read_only() {
    reject_device(
        "mapped-writes = true",
        &[
            "device \"e1.0\": mapped-writes = true",
            "durability = \"writeback\"",
        ],
    );
    reject(
        &device_with("durability = \"sync\"\nmapped-writes = true"),
        6,
        &["mapped-writes = true is for durability = \"writeback\""],
    );
    reject(
        &device_with("durability = \"writeback\"\nmapped-writes = true\ndirect-io = true"),
        6,
        &["mapped-writes = true", "direct-io = true", "choose one"],
    );
    reject(
        &device_with("durability = \"writeback\"\nmapped-writes = true\nread-only = true"),
        6,
        &["mapped-writes = true has nothing to write on a read-only device"],
    );
}

#[test]
fn test_mapped_reads() {
    assert!(accept(&device_with("mapped-reads = true")).devices[0].mapped_reads);
    // Reads need no write-back; a read-only device may map them too.
    let config = accept(&device_with("read-only = true\nmapped-reads = true"));
    assert!(config.devices[0].mapped_reads && config.devices[0].read_only);
    assert!(!accept(&device_with("durability = \"writeback\"")).devices[0].mapped_reads);
    assert!(!accept(&device_with("mapped-reads = false")).devices[0].mapped_reads);
}

#[test]
fn test_rejects_mapped_reads_with_direct_io_or_resident() {
    reject(
        &device_with("direct-io = true\nmapped-reads = true"),
        6,
        &[
            "device \"e1.0\": mapped-reads = true",
            "direct-io = true",
            "choose one",
        ],
    );
    reject(
        &device_with("resident = true\nmapped-reads = true"),
        6,
        &["mapped-reads = true is what resident = true does already"],
    );
}

#[test]
fn test_rejects_negative_offset() {
    reject_device(
        "offset = -8",
        &["device \"e1.0\": offset = -8 is out of range"],
    );
}

#[test]
fn test_rejects_zero_length() {
    reject_device(
        "length = 0",
        &[
            "device \"e1.0\": length = 0 exports nothing",
            "remove length",
        ],
    );
}

#[test]
fn test_rejects_extent_beyond_lba48() {
    let text = device_with("offset = 281474976710000\nlength = 1000");
    reject(
        &text,
        6,
        &["offset + length = 281474976711000 sectors is beyond what LBA48"],
    );
}

#[test]
fn test_rejects_queue_length() {
    reject_device(
        "queue-length = 0",
        &["device \"e1.0\": queue-length = 0", "1..=65535"],
    );
    reject_device("queue-length = 65536", &["queue-length = 65536"]);
}

#[test]
fn test_rejects_identify_strings() {
    let long_model = format!("model = \"{}\"", "m".repeat(41));
    reject_device(
        &long_model,
        &["device \"e1.0\": model is 41 characters", "at most 40"],
    );
    reject_device(
        "serial = \"123456789012345678901\"",
        &["serial is 21 characters", "at most 20"],
    );
    reject_device(
        "model = \"disk\u{e9}\"",
        &["model contains 'é'", "printable ASCII"],
    );
}

#[test]
fn test_rejects_device_interfaces() {
    reject_device("interfaces = []", &["device \"e1.0\": interfaces is empty"]);
    reject_device(
        "interfaces = [\"a/b\"]",
        &["device \"e1.0\": interfaces", "'/'"],
    );
}

#[test]
fn test_rejects_device_interface_outside_target() {
    let text = format!("[target]\ninterfaces = [\"eth0\", \"veth*\"]\n{DEVICE}interfaces = [\"eth1\", \"veth3\", \"v*\"]\n");
    let problems = reject(
        &text,
        7,
        &["device \"e1.0\": interfaces: \"eth1\" matches none of target.interfaces (eth0,veth*)"],
    );
    // "veth3" matches the glob "veth*"; "v*" may match "veth…" names: both accepted.
    assert_eq!(problems.len(), 1, "{problems:?}");
    let text = format!("[target]\ninterfaces = [\"eth0\"]\n{DEVICE}interfaces = [\"veth*\"]\n");
    reject(&text, 7, &["\"veth*\" matches none of target.interfaces"]);
}

#[test]
fn test_rejects_unknown_accept_entry() {
    reject_device(
        "accept = [\"02:00:00:00:00:01\", \"friends\"]",
        &["device \"e1.0\": accept: \"friends\" is neither a MAC address nor the name of an ACL"],
    );
}

#[test]
fn test_rejects_group_mac() {
    reject_device(
        "deny = [\"ff:ff:ff:ff:ff:ff\"]",
        &["device \"e1.0\": deny", "group (multicast or broadcast)"],
    );
    reject_device("accept = [\"00:00:00:00:00:00\"]", &["accept", "all-zero"]);
}

#[test]
fn test_rejects_accept_resolving_to_nothing() {
    let text = format!("[acls]\nnobody = []\n{DEVICE}accept = [\"nobody\"]\n");
    reject(
        &text,
        7,
        &[
            "device \"e1.0\": accept resolves to no MAC",
            "serve every host",
        ],
    );
}

#[test]
fn test_rejects_deny_covering_accept() {
    let text = device_with(
        "accept = [\"02:00:00:00:00:01\"]\ndeny = [\"0200.0000.0001\", \"02:00:00:00:00:02\"]",
    );
    reject(
        &text,
        6,
        &["device \"e1.0\": deny covers every MAC in accept"],
    );
}

#[test]
fn test_rejects_broadcast_without_advertise() {
    let text = format!("[target]\nadvertise = false\n{DEVICE}broadcast = true\n");
    reject(
        &text,
        7,
        &["device \"e1.0\": broadcast = true has no effect with target.advertise = false"],
    );
}

#[test]
fn test_reports_every_problem() {
    let text = "[target]\numem-frames = 3\nidle = \"nap\"\n\n[[device]]\npath = \"\"\nshelf = 65535\nslot = 255\n";
    let err = load(text).unwrap_err();
    let lines: Vec<Option<usize>> = err.problems().iter().map(ConfigError::line).collect();
    assert_eq!(
        lines,
        vec![Some(2), Some(3), Some(7), Some(8), Some(6)],
        "{err}"
    );
    assert_eq!(err.to_string().lines().count(), 5);
}

// ---------------------------------------------------------------- [acls]

fn macs(list: &MacList) -> Vec<String> {
    list.as_slice().iter().map(MacAddr::to_string).collect()
}

#[test]
fn test_acl_nesting_and_spellings() {
    let text = format!(
        "[acls]\n\
         a = [\"02:00:00:00:00:01\", \"02-00-00-00-00-02\"]\n\
         b = [\"0200.0000.0003\", \"a\"]\n\
         c = [\"b\", \"020000000004\", \"2:0:0:0:0:1\"]\n\
         {DEVICE}accept = [\"c\"]\ndeny = [\"a\"]\n"
    );
    let config = accept(&text);
    assert_eq!(
        macs(&config.acls["c"]),
        [
            "02:00:00:00:00:01",
            "02:00:00:00:00:02",
            "02:00:00:00:00:03",
            "02:00:00:00:00:04"
        ]
    );
    assert_eq!(config.acls["a"].len(), 2);
    let device = &config.devices[0];
    assert_eq!(device.accept, config.acls["c"]);
    assert_eq!(device.deny, config.acls["a"]);
    let mac = |text: &str| parse_mac(text).unwrap();
    assert!(device.allows(&mac("02:00:00:00:00:03")));
    assert!(
        !device.allows(&mac("02:00:00:00:00:01")),
        "denied after accept"
    );
    assert!(!device.allows(&mac("02:00:00:00:00:09")), "not accepted");
    // Unicast advertisements go to accepted MACs that are not denied.
    assert_eq!(
        device.advertisement,
        Advertisement::Unicast(MacList::new(vec![
            mac("02:00:00:00:00:03"),
            mac("02:00:00:00:00:04")
        ]))
    );
}

#[test]
fn test_rejects_acl_cycle() {
    let text = format!("[acls]\na = [\"b\"]\nb = [\"02:00:00:00:00:01\", \"c\"]\nc = [\"a\"]\nd = [\"c\"]\n{DEVICE}accept = [\"d\"]\n");
    let problems = reject(
        &text,
        4,
        &["acls.c: entry \"a\" makes a cycle (a -> b -> c -> a)"],
    );
    // Reported once: not again for d, nor for the device that uses d.
    assert_eq!(problems.len(), 1, "{problems:?}");
}

#[test]
fn test_rejects_acl_self_reference() {
    let text = format!("[acls]\nme = [\"me\"]\n{DEVICE}");
    reject(
        &text,
        2,
        &["acls.me: entry \"me\" makes a cycle (me -> me)"],
    );
}

#[test]
fn test_rejects_unknown_acl_entry() {
    let text = format!("[acls]\nops = [\"02:00:00:00:00:01\",\n  \"lab\"]\n{DEVICE}");
    reject(
        &text,
        3,
        &["acls.ops: \"lab\" is neither a MAC address nor the name of an ACL"],
    );
}

#[test]
fn test_rejects_acl_named_like_mac() {
    let text = format!("[acls]\ndeadbeefcafe = [\"02:00:00:00:00:01\"]\n{DEVICE}");
    reject(
        &text,
        2,
        &["acls.deadbeefcafe: the name reads as a MAC address"],
    );
}

#[test]
fn test_rejects_group_mac_in_acl() {
    let text = format!("[acls]\nx = [\"01:00:5e:00:00:01\"]\n{DEVICE}");
    reject(&text, 2, &["acls.x: \"01:00:5e:00:00:01\" is a group"]);
}

/// `count` distinct unicast MACs starting at 02:00:00:00:<first>.
fn mac_array(first: usize, count: usize) -> String {
    let entries: Vec<String> = (first..first + count)
        .map(|n| format!("\"02:00:00:00:{:02x}:{:02x}\"", n >> 8, n & 0xFF))
        .collect();
    format!("[{}]", entries.join(", "))
}

#[test]
fn test_acl_limit_after_resolution() {
    // 200 + 55 distinct (plus 10 duplicates) = 255: allowed.
    let text = format!(
        "[acls]\nbig = {}\nmore = {}\nall = [\"big\", \"more\"]\n{DEVICE}accept = [\"all\"]\n",
        mac_array(0, 200),
        mac_array(190, 65)
    );
    assert_eq!(accept(&text).acls["all"].len(), 255);
    // One more is too many, reported on the ACL that combines them.
    let text = format!(
        "[acls]\nbig = {}\nmore = {}\nall = [\"big\", \"more\"]\n{DEVICE}",
        mac_array(0, 200),
        mac_array(190, 66)
    );
    reject(
        &text,
        4,
        &["acls.all: resolves to 256 distinct MACs; at most 255"],
    );
}

#[test]
fn test_device_list_limit_after_resolution() {
    let text = format!(
        "[acls]\nbig = {}\nmore = {}\n{DEVICE}accept = [\"big\", \"more\"]\n",
        mac_array(0, 200),
        mac_array(200, 100)
    );
    reject(
        &text,
        8,
        &["device \"e1.0\": accept: resolves to 300 distinct MACs"],
    );
}

// ---------------------------------------------------------------- defaults and examples

#[test]
fn test_defaults() {
    let config = accept(DEVICE);
    let target = &config.target;
    assert_eq!(target.interfaces, Interfaces::All);
    assert_eq!(target.worker_cores, vec![0, 1, 2, 3]);
    assert_eq!(target.umem_frames, 4096);
    assert_eq!(target.frame_size, 4096);
    assert_eq!(
        [
            target.rx_ring_size,
            target.tx_ring_size,
            target.fill_ring_size,
            target.completion_ring_size
        ],
        [2048; 4]
    );
    assert_eq!(target.uring_entries, 256);
    assert_eq!(target.idle, IdleMode::Poll);
    assert_eq!(target.idle_spin_us, 50);
    assert_eq!(target.idle_nap_us, 0);
    assert!(!target.idle_spin_adaptive);
    assert!(target.idle_yield);
    assert_eq!((target.busy_poll_budget, target.busy_poll_usecs), (64, 20));
    assert_eq!(target.socket, SocketKind::Auto);
    assert_eq!(target.xdp_mode, XdpMode::Auto);
    assert_eq!(target.packet_ring, PacketRing::V2);
    assert_eq!(target.state_directory, Path::new("/var/lib/aoe-xdp"));
    assert_eq!(target.control_socket, Path::new("/run/aoe-xdp.sock"));
    assert_eq!(target.log_level, LogLevel::Info);
    assert_eq!((target.merge_max_segments, target.merge_delay_us), (32, 0));
    assert!(target.advertise);
    assert!(!target.accept_any_destination);
    assert!(config.acls.is_empty());

    let device = &config.devices[0];
    assert_eq!(device.name, "e1.0");
    assert_eq!(device.path, Path::new("/dev/null"));
    assert_eq!((device.shelf, device.slot), (1, 0));
    assert!(!device.read_only);
    assert!(!device.direct_io);
    assert!(!device.resident);
    assert_eq!(device.durability, Durability::Sync);
    assert_eq!((device.offset_sectors, device.length_sectors), (0, None));
    assert_eq!(device.interfaces, Interfaces::All);
    assert!(device.accept.is_empty() && device.deny.is_empty());
    assert_eq!(device.advertisement, Advertisement::Broadcast);
    assert_eq!(device.queue_length, 64);
    assert_eq!(device.model, "aoe-xdp e1.0");
    assert_eq!(device.serial, "1.0:testhost");
    assert!(device.allows(&parse_mac("02:00:00:00:00:01").unwrap()));
    assert_eq!(config.device(1, 0), Some(device));
    assert_eq!(config.device(1, 1), None);
}

#[test]
fn test_default_serial_is_truncated() {
    let system = System {
        online_cpus: vec![0],
        allowed_cpus: vec![0],
        hostname: "a-very-long-host-name.example.org".to_owned(),
    };
    let config = Config::from_toml_with(&one_device("65534", "254"), "t", &system).unwrap();
    assert_eq!(config.devices[0].serial, "65534.254:a-very-lon");
    assert_eq!(config.devices[0].serial.len(), 20);
}

#[test]
fn test_advertisement_modes() {
    let with = |target: &str, device: &str| {
        let text = format!("[target]\n{target}\n{DEVICE}{device}\n");
        accept(&text).devices[0].advertisement.clone()
    };
    let mac = parse_mac("02:00:00:00:00:01").unwrap();
    assert_eq!(
        with("", "accept = [\"02:00:00:00:00:01\"]"),
        Advertisement::Unicast(MacList::new(vec![mac]))
    );
    assert_eq!(
        with("", "accept = [\"02:00:00:00:00:01\"]\nbroadcast = true"),
        Advertisement::Broadcast
    );
    assert_eq!(with("", ""), Advertisement::Broadcast);
    assert_eq!(
        with("advertise = false", "accept = [\"02:00:00:00:00:01\"]"),
        Advertisement::Off
    );
}

#[test]
fn test_command_line_origin() {
    let mut raw = RawConfig::default();
    raw.devices
        .push(unspanned(RawDevice::new(65535, 0, "/dev/null".to_owned())));
    let err = Config::from_raw(raw, "command line").unwrap_err();
    assert_eq!(
        err.to_string(),
        "command line: device \"e65535.0\": shelf 65535 is the broadcast address; use 0..=65534"
    );
    assert_eq!(err.problems()[0].line(), None);
}

#[test]
fn test_try_from_raw() {
    let mut raw = RawConfig::default();
    raw.devices
        .push(unspanned(RawDevice::new(3, 4, "/dev/null".to_owned())));
    let config = Config::try_from(raw).unwrap();
    assert_eq!(config.devices[0].name, "e3.4");
    assert!(
        !config.target.worker_cores.is_empty(),
        "defaults to this machine's cores"
    );
}

const EXAMPLE: &str = include_str!("../../config/aoe-xdp.toml");

#[test]
fn test_example_config_is_valid() {
    let config = Config::from_toml_with(EXAMPLE, "config/aoe-xdp.toml", &system())
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.devices.len(), 2);
    let scratch = &config.devices[1];
    assert_eq!(scratch.name, "scratch");
    assert_eq!(
        (scratch.offset_sectors, scratch.length_sectors),
        (2048, Some(8192))
    );
    assert_eq!(scratch.durability, Durability::Writeback);
    assert_eq!(scratch.accept.len(), 3);
    assert_eq!(scratch.deny.len(), 1);
    assert_eq!(
        macs(&config.acls["ops"]),
        [
            "02:00:00:00:aa:01",
            "02:00:00:00:aa:02",
            "02:00:00:00:bb:01"
        ]
    );
}

/// Every key serde knows must appear in the example, set or commented out, so that the
/// example documents all of them.
#[test]
fn test_example_covers_every_key() {
    let mentioned = |key: &str| {
        EXAMPLE.lines().any(|line| {
            let line = line.trim_start_matches('#').trim_start();
            line.starts_with(&format!("{key} ="))
        })
    };
    let target_keys = raw::field_names::<RawTarget>();
    let device_keys = raw::field_names::<RawDevice>();
    assert!(target_keys.contains(&"worker-cores") && device_keys.contains(&"queue-length"));
    let missing: Vec<&str> = target_keys
        .iter()
        .chain(device_keys)
        .copied()
        .filter(|key| !mentioned(key))
        .collect();
    assert!(
        missing.is_empty(),
        "config/aoe-xdp.toml does not document {missing:?}"
    );
    for table in raw::field_names::<RawConfig>() {
        let header = if *table == "device" {
            "[[device]]".to_owned()
        } else {
            format!("[{table}]")
        };
        assert!(EXAMPLE.contains(&header), "example lacks {header}");
    }
}

#[test]
fn test_cpu_list_round_trip() {
    assert_eq!(
        parse_cpu_list("0-3,8,10-11\n"),
        Some(vec![0, 1, 2, 3, 8, 10, 11])
    );
    assert_eq!(parse_cpu_list("0\n"), Some(vec![0]));
    assert_eq!(parse_cpu_list("3-1"), None);
    assert_eq!(parse_cpu_list("x"), None);
    assert_eq!(format_cpu_list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
    assert_eq!(format_cpu_list(&[5]), "5");
}

#[test]
fn test_system_probe_finds_cores() {
    let system = System::probe();
    assert!(!system.online_cpus.is_empty());
    assert!(system.online_cpus.contains(&0));
}

#[test]
fn test_rejects_metrics_listen_without_a_port() {
    reject_target(
        "metrics-listen = \"localhost\"",
        &["target.metrics-listen = \"localhost\" is not an address and port"],
    );
}

#[test]
fn test_metrics_listen_is_off_unless_set() {
    assert_eq!(accept(DEVICE).target.metrics_listen, None);
    let on = accept(&target_with("metrics-listen = \"[::1]:9469\""));
    assert_eq!(
        on.target.metrics_listen,
        Some("[::1]:9469".parse().unwrap())
    );
}
