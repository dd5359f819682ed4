//! The statistics socket: what `aoe-xdp --stats` reports adds up, and only root and the
//! target's own user are answered.

use std::process::Command;

use crate::counters::{stats, table_cell, wait_stats};
use crate::fixture::{Setup, Transport, SHELF, SLOT};
use crate::patterns::pattern;

/// `aoe-xdp --stats` asks the running target over its control socket: the device, port and
/// worker counters add up to what the client did; the socket goes away with the target.
pub fn test_stats(transport: Transport) {
    Setup::over(transport, "dp-stats")
        .device_with("durability = \"writeback\"")
        .serve(|net, dir, target| {
            let socket = dir.control_socket();
            let (mut client, device) = net.discover(0);
            for lba in 0..5u64 {
                client
                    .write(&device, 4 * lba, &pattern(4 * lba, 2, 1), true)
                    .expect("write");
            }
            for lba in 0..7u64 {
                client.read(&device, 2 * lba, 2, true).expect("read");
            }
            let report = wait_stats(&socket, |report| {
                let device = &report["devices"][0];
                device["read_cmds"] == 7 && device["write_cmds"] == 5
            });
            let device = &report["devices"][0];
            assert_eq!(device["name"], format!("e{SHELF}.{SLOT}"));
            assert_eq!(device["read_bytes"], 7 * 1024);
            assert_eq!(device["write_bytes"], 5 * 1024);
            assert_eq!(device["ata_errors"], 0);
            let port = &report["ports"][0];
            assert!(
                port["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("vt:0:")),
                "{port}"
            );
            // Discovery plus 12 ATA commands, each answered once.
            assert!(port["rx_frames"].as_u64() >= Some(13), "{port}");
            assert_eq!(port["io_submitted"], 12, "{port}");
            assert_eq!(report["workers"][0]["jobs"], 12, "{report:#}");
            // The kernel's figures for the socket: nothing dropped; an AF_XDP port keeps its shallow
            // fill ring (no burst deepened it), a packet socket has none.
            assert_eq!(port["foreign_dst"], 0, "{port}");
            let kernel = &port["kernel"];
            assert_eq!(kernel["rx_dropped"], 0, "{port}");
            assert_eq!(kernel["fill_empty"], 0, "{port}");
            let fill = match transport {
                Transport::Xdp => u64::from(aoe_xdp::sys::xdp::xsk::FILL_TARGET_START),
                Transport::Packet | Transport::PacketV3 => 0,
            };
            assert_eq!(kernel["fill_depth"], fill, "{port}");
            let table = stats(&socket, false);
            assert!(
                table.contains("DEVICE") && table.contains(&format!("e{SHELF}.{SLOT}")),
                "{table}"
            );
            assert!(
                table.contains("KERN-DROP") && table.contains("FILL"),
                "{table}"
            );
            assert_eq!(
                table_cell(&table, "FOREIGN-DST", "vt:0:").as_deref(),
                Some("0"),
                "{table}"
            );
            target.stop();
            assert!(!socket.exists(), "control socket left behind");
        });
}

/// The statistics socket answers only root and the target's own user, whatever the socket
/// file's mode: a client of another user (`setpriv` to `nobody`, with the socket and its
/// directory opened up to everyone) is refused, root is answered.
#[test]
fn test_stats_socket_refuses_other_users() {
    use std::os::unix::fs::PermissionsExt;
    Setup::new("dp-peercred")
        .target("socket = \"xdp\"")
        .serve(|_net, dir, target| {
            let socket = dir.control_socket();
            let open_up = std::fs::Permissions::from_mode(0o777);
            std::fs::set_permissions(dir.path(), open_up.clone()).expect("chmod the directory");
            std::fs::set_permissions(&socket, open_up).expect("chmod the socket");
            // The binary must be reachable by `nobody`: copy it next to the socket.
            let binary = dir.path().join("aoe-xdp-client");
            std::fs::copy(env!("CARGO_BIN_EXE_aoe-xdp"), &binary).expect("copy the binary");
            let as_nobody = Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&binary)
                .arg("--stats")
                .arg(&socket)
                .output()
                .expect("setpriv (util-linux)");
            let stderr = String::from_utf8_lossy(&as_nobody.stderr);
            assert!(
                !as_nobody.status.success() && stderr.contains("permission denied"),
                "a client of another user must be refused: {as_nobody:?}"
            );
            assert!(stats(&socket, false).contains("WORKER"), "root is answered");
            let log = target.stop();
            assert!(
                log.contains("refused a client"),
                "the refusal is logged:\n{log}"
            );
        });
}
