//! The RDD operation suite (`engine/tests/suite/ops.rs`) against a cluster of 3 executor
//! processes, with the same assertions as in local mode (fewer random cases), plus proof that
//! the cluster is real: every executor ran tasks and served shuffle bytes to the others, and
//! the driver received a small fraction of a shuffled job's input.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

fn ctx() -> &'static discnn_engine::Context {
    static CTX: OnceLock<discnn_engine::Context> = OnceLock::new();
    CTX.get_or_init(|| common::cluster(3, Duration::from_secs(10), Duration::from_secs(30)))
}

const CASES: u32 = 4;

include!("../engine/tests/suite/ops.rs");

#[test]
fn the_cluster_is_real_and_the_driver_is_not_in_the_data_path() {
    use discnn::jobs::{Wordcount, WordcountArgs};
    use discnn::JobSpec;
    use discnn_engine::EventLog;
    let c = ctx();
    common::with_logs(c, || {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("words.txt");
        discnn::bench::engine::write_words(&input, 60_000, 7).unwrap();
        let input_bytes = std::fs::metadata(&input).unwrap().len();
        let log = std::sync::Arc::new(EventLog::default());
        c.add_listener(log.clone());
        let cluster = c.cluster().expect("cluster mode");
        let before = cluster.traffic();
        let served_before: u64 = cluster
            .executor_stats()
            .iter()
            .map(|(_, s)| s.shuffle_bytes_served)
            .sum();
        let args = WordcountArgs {
            input: input.clone(),
            output: dir.path().join("out"),
        };
        let spec = JobSpec::of::<Wordcount>(args, false).unwrap();
        spec.run(c, &mut |_| {}, &mut |_| {}).unwrap();
        let received = cluster.traffic() - before;

        let ran_on: HashSet<String> = log
            .events()
            .iter()
            .filter_map(|e| match e {
                discnn_engine::Event::TaskEnd {
                    executor,
                    failure: None,
                    ..
                } => Some(executor.clone()),
                _ => None,
            })
            .collect();
        let ids: HashSet<String> = c.executors().iter().map(|e| e.id.clone()).collect();
        assert_eq!(ran_on, ids, "every executor ran tasks");

        let stats = cluster.executor_stats();
        assert_eq!(stats.len(), 3);
        let served: u64 = stats.iter().map(|(_, s)| s.shuffle_bytes_served).sum();
        assert!(
            served > served_before,
            "executors served shuffle bytes to each other"
        );
        assert!(
            stats.iter().all(|(_, s)| s.shuffle_fetches_served > 0),
            "{stats:?}"
        );
        assert!(
            received.bytes * 100 < input_bytes,
            "the driver received {} bytes of a {input_bytes}-byte input",
            received.bytes
        );
        eprintln!(
            "wordcount of {input_bytes} bytes: the driver received {} messages, {} bytes; executors served {} shuffle bytes",
            received.messages,
            received.bytes,
            served - served_before
        );
    });
}

#[test]
fn executors_serve_map_output_they_spilled_to_disk() {
    use discnn_engine::testing::*;
    let c = common::cluster_with(2, Duration::from_secs(10), Duration::from_secs(30), |c| {
        c.shuffle_memory_budget = 0
    });
    common::with_logs(&c, || {
        let data: Vec<i64> = (0..4000).map(|i| (i * 37) % 101).collect();
        let job = |ctx: &discnn_engine::Context| {
            let mut v = ctx
                .parallelize(data.clone(), 6)
                .unwrap()
                .key_by(Modulo(13))
                .combine_by_key(SortedList, 4)
                .collect()
                .unwrap();
            v.sort();
            v
        };
        let want = job(&discnn_engine::Context::local(2).unwrap());
        assert_eq!(job(&c), want);
        let stats = c.cluster().expect("cluster mode").executor_stats();
        assert_eq!(stats.len(), 2);
        for (id, s) in &stats {
            assert!(s.shuffle_bytes_spilled > 0, "{id}: {s:?}");
            assert!(s.shuffle_fetches_served > 0, "{id}: {s:?}");
        }
    });
}

#[test]
fn small_broadcasts_travel_with_tasks_and_large_ones_are_fetched() {
    use discnn_engine::testing::AddFromTable;
    let c = ctx();
    let fetches = || c.stats().broadcast_fetches;
    let run = |table: &Vec<i64>, b: &discnn_engine::Broadcast<Vec<i64>>| {
        let v: Vec<i64> = (0..600).collect();
        let want: Vec<i64> = v
            .iter()
            .map(|x| x + table[(*x as usize) % table.len()])
            .collect();
        let got = c
            .parallelize(v, 6)
            .unwrap()
            .map(AddFromTable(b.clone()))
            .collect()
            .unwrap();
        assert_eq!(got, want);
    };
    // About 10 KB encoded: sent ahead with each executor's next task, never fetched.
    let small_table: Vec<i64> = (0..1000).map(|i| i << 50).collect();
    let small = c.broadcast(small_table.clone()).unwrap();
    let before = fetches();
    run(&small_table, &small);
    run(&small_table, &small);
    assert_eq!(fetches() - before, 0, "a small broadcast was fetched");
    // About 450 KB: over the limit, so each executor that reads it fetches it once.
    let large_table: Vec<i64> = (0..50_000).map(|i| (i + 1) << 55).collect();
    let large = c.broadcast(large_table.clone()).unwrap();
    let before = fetches();
    run(&large_table, &large);
    run(&large_table, &large);
    let fetched = fetches() - before;
    assert!(
        (1..=3).contains(&fetched),
        "a large broadcast fetched {fetched} times by 3 executors"
    );
    small.destroy();
    large.destroy();
}

#[test]
fn reducers_fetch_nothing_from_empty_buckets() {
    use discnn_engine::testing::ModPartitioner;
    let c = common::cluster(2, Duration::from_secs(10), Duration::from_secs(30));
    common::with_logs(&c, || {
        let served = || -> u64 {
            let stats = c.cluster().expect("cluster mode").executor_stats();
            stats.iter().map(|(_, s)| s.shuffle_fetches_served).sum()
        };
        // Every key is a multiple of 4: of 4 reduce partitions only the first gets records.
        let pairs: Vec<(i64, i64)> = (0..1200).map(|i| (i * 4, i)).collect();
        let before = served();
        let mut got = c
            .parallelize(pairs.clone(), 12)
            .unwrap()
            .partition_by(ModPartitioner(4))
            .unwrap()
            .collect()
            .unwrap();
        got.sort();
        assert_eq!(got, pairs);
        // Each reducer would fetch every map output held by the other executor: 2 × 12 for 4
        // reducers on 2 executors. Only the first reducer's fetches remain, one per map at most.
        let fetched = served() - before;
        assert!(fetched <= 12, "{fetched} fetches for 12 maps with records");
    });
}
