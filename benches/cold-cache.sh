#!/bin/bash
# The device defaults' path with a page cache the target filled itself: two aoe-xdp binaries
# side by side (an A/B of the storage path, e.g. the build before a change and after it).
#
#   bash benches/cold-cache.sh OLD_BINARY NEW_BINARY [ROUNDS]      (as root; default 3 rounds)
#
# Each round, for each binary in turn: a 256 MiB file written in 1 MiB blocks and dropped from
# the page cache; the target (the device's defaults: durability "sync", no mappings; one
# worker on core 0) serves it on a veth pair between two network namespaces of its own;
# `aoe-bench load` on core 1 reads it through sequentially at queue depth 16 (cold: the
# target's reads fill the cache), writes 1 KiB at random places at queue depth 16 for 8 s,
# and, after the file is dropped again, reads sequentially at queue depth 1 for 8 s, and,
# after it is dropped once more, writes 1 KiB at random places at queue depth 16 for 8 s
# (each write into a page that is not cached: the kernel reads the page first). Plain
# veth (not the two-machine topology of `cargo xtask bench`): what differs here is the disk
# and page-cache path. Prints each measurement and the means.
set -eu
OLD=$1; NEW=$2; ROUNDS=${3:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOAD=$ROOT/target/release/aoe-bench
[ -x "$LOAD" ] || { echo "build aoe-bench first: cargo build --release" >&2; exit 1; }
WORK=$(mktemp -d /var/tmp/aoe-cold-cache.XXXXXX)
NT=cct$$; NI=cci$$
TARGET_PID=
cleanup() {
    [ -n "$TARGET_PID" ] && kill "$TARGET_PID" 2>/dev/null && wait "$TARGET_PID" 2>/dev/null
    ip netns del $NT 2>/dev/null; ip netns del $NI 2>/dev/null; rm -rf "$WORK"
}
trap cleanup EXIT
ip netns add $NT; ip netns add $NI
ip link add cct0 numrxqueues 1 numtxqueues 1 netns $NT type veth \
    peer name cci0 numrxqueues 1 numtxqueues 1 netns $NI
ip -n $NT link set cct0 up; ip -n $NI link set cci0 up
IMG=$WORK/disk.img
drop() { python3 -c "import os,sys; fd=os.open(sys.argv[1],os.O_RDWR); os.fdatasync(fd); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)" "$IMG"; }
load() { ip netns exec $NI taskset -c 1 "$LOAD" load -i cci0 -t 7.1 --no-progress --json "$@"; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(round(d['$1'], 1))"; }
RESULTS=$WORK/results
for round in $(seq 1 "$ROUNDS"); do
    for side in old new; do
        bin=$OLD; [ $side = new ] && bin=$NEW
        python3 -c "
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
block = bytes((i * 31 >> 3) & 0xff | 1 for i in range(1 << 20))
for _ in range(256): os.write(fd, block)
os.close(fd)" "$IMG"
        drop
        printf '[target]\ninterfaces = ["cct0"]\nworker-cores = [0]\nstate-directory = "%s"\ncontrol-socket = "%s"\n\n[[device]]\npath = "%s"\nshelf = 7\nslot = 1\n' \
            "$WORK/state" "$WORK/ctl.sock" "$IMG" > "$WORK/aoe-xdp.toml"
        ip netns exec $NT taskset -c 0 "$bin" --config "$WORK/aoe-xdp.toml" > "$WORK/target-$side.log" 2>&1 &
        TARGET_PID=$!
        sleep 2
        seq16=$(load --op read --pattern sequential --depth 16 --bytes 268435456 | field mb_per_s)
        write16=$(load --op write --pattern random --depth 16 --duration 8 | field iops)
        drop
        seq1=$(load --op read --pattern sequential --depth 1 --duration 8 | field mb_per_s)
        drop
        cold16=$(load --op write --pattern random --depth 16 --duration 8 | field iops)
        kill "$TARGET_PID"; wait "$TARGET_PID" 2>/dev/null || true; TARGET_PID=
        echo "round $round $side: cold sequential reads QD 16 $seq16 MB/s, then random 1 KiB writes QD 16 $write16 IOPS; cold sequential reads QD 1 $seq1 MB/s; cold random 1 KiB writes QD 16 $cold16 IOPS"
        echo "$side $seq16 $write16 $seq1 $cold16" >> "$RESULTS"
    done
done
python3 - "$RESULTS" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
mean = lambda side, i: st.mean(float(r[i]) for r in rows if r[0] == side)
for i, name in [(1, "cold sequential reads QD 16, MB/s"), (2, "random writes QD 16 after them, IOPS"), (3, "cold sequential reads QD 1, MB/s"), (4, "cold random writes QD 16, IOPS")]:
    print(f"{name:40s} old {mean('old', i):9.1f}  new {mean('new', i):9.1f}  new/old {mean('new', i) / mean('old', i):.2f}x")
PY
