//! The block manager and the shuffle store under concurrent readers: T threads each read
//! `READS` cached partitions (or shuffle buckets) spread over all of them, while one more thread
//! keeps storing new ones, as tasks starting and map tasks finishing do on one executor.
//! `cargo bench -p discnn-engine --bench stores`; set DISCNN_BENCH_THREADS (default "2", e.g.
//! "2,16") for the thread counts.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use discnn_engine::testing::stores::{Blocks, Shuffles};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const PARTITIONS: usize = 256;
const READS: usize = 20_000;

fn threads() -> Vec<usize> {
    std::env::var("DISCNN_BENCH_THREADS")
        .unwrap_or_else(|_| "2".into())
        .split(',')
        .filter_map(|t| t.trim().parse().ok())
        .filter(|&t| t > 0)
        .collect()
}

/// Runs `read(i)` READS times on each of `n` threads while `write(k)` runs in a loop on one
/// more, and returns when the readers are done.
fn contended(n: usize, read: impl Fn(usize) + Sync, write: impl Fn(usize) + Sync) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                write(k);
                k += 1;
            }
        });
        let readers: Vec<_> = (0..n)
            .map(|t| {
                let read = &read;
                s.spawn(move || {
                    for i in 0..READS {
                        read((i * 31 + t * 7) % PARTITIONS);
                    }
                })
            })
            .collect();
        for r in readers {
            let _ = r.join();
        }
        stop.store(true, Ordering::Relaxed);
    });
}

fn block_manager(c: &mut Criterion) {
    let mut g = c.benchmark_group("block_manager");
    for n in threads() {
        let blocks = Arc::new(Blocks::new(1 << 30).expect("a block manager"));
        for p in 0..PARTITIONS {
            assert!(blocks.put(1, p, 64));
        }
        g.throughput(Throughput::Elements((n * READS) as u64));
        g.bench_with_input(
            BenchmarkId::new("cached reads, one writer", n),
            &n,
            |b, &n| {
                b.iter(|| {
                    contended(
                        n,
                        |p| assert!(blocks.read_first(1, p)),
                        |k| {
                            blocks.put(2, k % PARTITIONS, 64);
                        },
                    )
                })
            },
        );
    }
    g.finish();
}

fn shuffle_store(c: &mut Criterion) {
    let mut g = c.benchmark_group("shuffle_store");
    for n in threads() {
        let store = Arc::new(Shuffles::new(1 << 30).expect("a shuffle store"));
        for m in 0..PARTITIONS {
            assert!(store.put(1, m as u32, 4, 256));
        }
        g.throughput(Throughput::Elements((n * READS) as u64));
        g.bench_with_input(
            BenchmarkId::new("bucket reads, one writer", n),
            &n,
            |b, &n| {
                b.iter(|| {
                    contended(
                        n,
                        |m| assert!(store.read(1, m as u32, (m % 4) as u32)),
                        |k| {
                            store.put(2, (k % PARTITIONS) as u32, 4, 256);
                        },
                    )
                })
            },
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = block_manager, shuffle_store
}
criterion_main!(benches);
