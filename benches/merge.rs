//! Merge planner cost: sorting and splitting one commit batch into runs.

use aoe_xdp::storage::engine::IoOp;
use aoe_xdp::storage::export::Lane;
use aoe_xdp::storage::merge::{plan, Pending};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};

/// A batch of `count` requests: sequential 1 KiB writes in shuffled order, with a read and a
/// second export mixed in every few requests (a realistic mix for one RX burst).
fn batch(count: usize) -> Vec<Pending> {
    let mut state = 0x9E37_79B9_u32;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let mut batch: Vec<Pending> = (0..count)
        .map(|i| {
            let op = if i % 7 == 3 { IoOp::Read } else { IoOp::Write };
            let export = u16::from(i % 5 == 4);
            let seq = i as u64;
            let slot = u32::try_from(i).expect("small batch");
            Pending {
                export,
                op,
                lane: Lane::Direct,
                sector: 2 * seq,
                len: 1024,
                seq,
                slot,
                alone: false,
            }
        })
        .collect();
    for i in (1..batch.len()).rev() {
        let j = next() as usize % (i + 1);
        batch.swap(i, j);
    }
    batch
}

fn bench_plan(c: &mut Criterion) {
    let mut group = c.benchmark_group("merge_plan");
    for count in [8usize, 32, 256] {
        let template = batch(count);
        let mut work = template.clone();
        group.bench_with_input(BenchmarkId::from_parameter(count), &count, |b, _| {
            b.iter(|| {
                work.copy_from_slice(&template);
                let runs = plan(black_box(&mut work), 32).count();
                black_box(runs)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_plan);
criterion_main!(benches);
