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
            "wordcount of {input_bytes} bytes: the driver received {} RPCs, {} bytes; executors served {} shuffle bytes",
            received.requests,
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
