//! Stages, caching, eviction, retries, accumulators, broadcasts, recovery and lifetimes.

use discnn_engine::testing::*;
use discnn_engine::{
    Config, Context, EngineError, Event, EventLog, StorageLevel, Sum, TaskFailure,
};
use std::sync::Arc;

fn ctx_with_log(config: Config) -> (Context, Arc<EventLog>) {
    let ctx = Context::new(config).unwrap();
    let log = Arc::new(EventLog::default());
    ctx.add_listener(log.clone());
    (ctx, log)
}

fn local() -> (Context, Arc<EventLog>) {
    ctx_with_log(Config {
        master: "local[2]".into(),
        ..Config::default()
    })
}

fn data(n: i64) -> Vec<i64> {
    (0..n).map(|i| (i * 37) % 101).collect()
}

#[test]
fn two_shuffles_make_three_stages_and_cache_skips_them() {
    let (ctx, log) = local();
    let counter = "stages-counter";
    let reduced = ctx
        .parallelize(data(500), 4)
        .unwrap()
        .map(Counted(counter.into()))
        .key_by(Modulo(7))
        .values()
        .key_by(Modulo(10))
        .reduce_by_key(Add, 3);
    let twice = reduced.values().key_by(Modulo(3)).group_by_key(2);
    assert_eq!(twice.count().unwrap(), 3);
    assert_eq!(log.stages_run().len(), 3, "map, map, result");
    assert_eq!(calls(counter), 500);

    log.clear();
    assert_eq!(twice.count().unwrap(), 3);
    assert_eq!(
        log.stages_run().len(),
        1,
        "both shuffles' outputs are reused"
    );

    reduced.cache();
    assert_eq!(reduced.count().unwrap(), 10);
    assert_eq!(reduced.cached_partitions(), vec![0, 1, 2]);
    log.clear();
    let other = reduced.values().key_by(Modulo(2)).group_by_key(2);
    assert_eq!(other.count().unwrap(), 2);
    assert_eq!(
        log.stages_run().len(),
        2,
        "the stages behind the cached rdd are skipped"
    );
    assert_eq!(calls(counter), 500, "the source was computed once");

    let lineage = twice.to_debug_string();
    assert!(lineage.starts_with("(2) ShuffledRdd"), "{lineage}");
    assert_eq!(lineage.matches("+-").count(), 2, "{lineage}");
    assert!(reduced
        .to_debug_string()
        .contains("[Memory Deserialized 1x Replicated]"));
}

#[test]
fn a_cached_partition_is_computed_once() {
    let (ctx, _) = local();
    let base = ctx.parallelize(data(300), 6).unwrap();
    let plain = base.map(Counted("uncached".into()));
    plain.count().unwrap();
    plain.count().unwrap();
    assert_eq!(calls("uncached"), 600);

    let cached = base.map(Counted("cached".into()));
    cached.cache();
    let first = cached.collect().unwrap();
    assert_eq!(cached.collect().unwrap(), first);
    assert_eq!(cached.map(AddOne).count().unwrap(), 300);
    assert_eq!(calls("cached"), 300);

    cached.unpersist();
    assert!(cached.cached_partitions().is_empty());
    cached.count().unwrap();
    assert_eq!(calls("cached"), 600);
}

#[test]
fn eviction_under_a_small_budget_recomputes_correctly() {
    // Each 100-record partition is estimated at ~1 KB: one RDD of 4 fits, two do not.
    let budget = 6_000;
    let (ctx, _) = ctx_with_log(Config {
        master: "local[2]".into(),
        memory_budget: budget,
        ..Config::default()
    });
    let v = data(400);
    let a = ctx
        .parallelize(v.clone(), 4)
        .unwrap()
        .map(Counted("evicted-a".into()));
    a.persist(StorageLevel::MemoryOnly).unwrap();
    assert_eq!(a.collect().unwrap(), v);
    assert_eq!(a.cached_partitions().len(), 4);
    let b = ctx
        .parallelize(v.clone(), 4)
        .unwrap()
        .map(Counted("evicted-b".into()));
    b.cache();
    assert_eq!(b.collect().unwrap(), v);
    let stats = ctx.stats().blocks;
    assert!(stats.evictions > 0, "{stats:?}");
    assert!(stats.memory_bytes <= budget, "{stats:?}");
    assert!(a.cached_partitions().len() < 4, "b pushed out some of a");
    assert_eq!(
        a.collect().unwrap(),
        v,
        "evicted partitions come back from lineage"
    );
    assert!(calls("evicted-a") > 400, "and were recomputed to do so");

    let v = data(4000);
    let d = ctx
        .parallelize(v.clone(), 8)
        .unwrap()
        .map(Counted("spilled".into()));
    d.persist(StorageLevel::MemoryAndDisk).unwrap();
    assert_eq!(d.collect().unwrap(), v);
    assert_eq!(d.collect().unwrap(), v);
    assert_eq!(
        calls("spilled"),
        4000,
        "spilled blocks are read back, not recomputed"
    );
    assert!(ctx.stats().blocks.disk_blocks > 0);

    let k = ctx
        .parallelize(v.clone(), 4)
        .unwrap()
        .map(Counted("disk-only".into()));
    k.persist(StorageLevel::DiskOnly).unwrap();
    assert_eq!(k.collect().unwrap(), v);
    assert_eq!(k.collect().unwrap(), v);
    assert_eq!(calls("disk-only"), 4000);
    assert!(
        k.persist(StorageLevel::MemoryOnly).is_err(),
        "changing the level is refused"
    );
}

#[test]
fn map_output_past_the_shuffle_budget_is_spilled_and_read_back() {
    let job = |ctx: &Context| {
        let mut v = ctx
            .parallelize(data(5000), 5)
            .unwrap()
            .key_by(Modulo(13))
            .combine_by_key(SortedList, 3)
            .collect()
            .unwrap();
        v.sort();
        v
    };
    let (in_memory, _) = local();
    let want = job(&in_memory);
    assert_eq!(in_memory.stats().shuffle_spilled_bytes, 0);
    // One map output fits in 2 KiB at most; the others go to disk.
    let (spilling, _) = ctx_with_log(Config {
        master: "local[2]".into(),
        shuffle_memory_budget: 2048,
        ..Config::default()
    });
    assert_eq!(job(&spilling), want);
    let stats = spilling.stats();
    assert!(stats.shuffle_spilled_bytes > 0, "{stats:?}");
    assert!(stats.shuffle_spilled_bytes <= stats.shuffle_bytes);
}

/// Typed map outputs (local mode keeps a shuffle's pairs typed) spill encoded past the budget;
/// the sort, group and repartition read back from disk equal the ones read from memory.
#[test]
fn typed_map_outputs_spill_encoded_and_read_back_the_same() {
    let job = |ctx: &Context| {
        let pairs = ctx.parallelize(data(4000), 5).unwrap().key_by(Modulo(37));
        let sorted = pairs.sort_by_key(false, 3).unwrap().collect().unwrap();
        let grouped = pairs.group_by_key(4).glom().collect().unwrap();
        let placed = pairs
            .partition_by(ModPartitioner(3))
            .unwrap()
            .glom()
            .collect()
            .unwrap();
        (sorted, grouped, placed)
    };
    let (in_memory, _) = local();
    let want = job(&in_memory);
    assert_eq!(in_memory.stats().shuffle_spilled_bytes, 0);
    let mut stable = data(4000)
        .into_iter()
        .map(|x| (x % 37, x))
        .collect::<Vec<_>>();
    stable.sort_by_key(|p| std::cmp::Reverse(p.0));
    assert_eq!(
        want.0, stable,
        "a descending sort keeps equal keys in input order"
    );
    let (spilling, _) = ctx_with_log(Config {
        master: "local[2]".into(),
        shuffle_memory_budget: 2048,
        ..Config::default()
    });
    assert_eq!(job(&spilling), want);
    assert!(spilling.stats().shuffle_spilled_bytes > 0);
}

#[test]
fn a_failed_task_is_retried_and_a_hopeless_one_fails_the_job() {
    let (ctx, log) = local();
    let v = data(100);
    let r = ctx.parallelize(v.clone(), 4).unwrap().map(FailAttempts {
        partition: 1,
        failures: 2,
    });
    assert_eq!(r.collect().unwrap(), v);
    let ends = log.task_ends();
    let p1: Vec<(u32, bool)> = ends
        .iter()
        .filter(|e| e.0 == 1)
        .map(|e| (e.1, e.2.is_some()))
        .collect();
    assert_eq!(p1, vec![(0, true), (1, true), (2, false)]);
    assert!(
        matches!(&ends.iter().find(|e| e.0 == 1).unwrap().2, Some(TaskFailure::UserPanic { message }) if message.contains("injected failure"))
    );

    let hopeless = ctx.parallelize(v, 4).unwrap().map(FailAttempts {
        partition: 2,
        failures: 99,
    });
    match hopeless.count() {
        Err(EngineError::JobFailed {
            partition: 2,
            attempts: 4,
            failure: TaskFailure::UserPanic { message },
            ..
        }) => {
            assert!(message.contains("injected failure"))
        }
        other => panic!("expected a failed job, got {other:?}"),
    }
    assert_eq!(
        ctx.parallelize(vec![1i64, 2], 2).unwrap().count().unwrap(),
        2,
        "the context still works"
    );
}

#[test]
fn accumulators_count_result_tasks_once_under_retries() {
    let (ctx, log) = local();
    let v = data(400);
    let acc = ctx.accumulator::<Sum<i64>>();
    ctx.parallelize(v.clone(), 5)
        .unwrap()
        .map(Accumulate(acc.clone()))
        .map(FailAttempts {
            partition: 3,
            failures: 2,
        })
        .foreach_partition(DropAll)
        .unwrap();
    assert_eq!(
        acc.value(),
        v.iter().sum::<i64>(),
        "failed attempts' partial updates are dropped"
    );
    assert!(
        log.task_ends().iter().any(|e| e.1 > 0),
        "the failure happened"
    );

    // In a shuffle-map stage the updates of every successful attempt count, so a recomputed
    // stage counts again (Spark's documented behaviour for transformations).
    let acc2 = ctx.accumulator::<Sum<i64>>();
    let shuffled = ctx
        .parallelize(v.clone(), 4)
        .unwrap()
        .map(Accumulate(acc2.clone()))
        .key_by(Modulo(3))
        .group_by_key(2);
    shuffled.count().unwrap();
    assert_eq!(acc2.value(), v.iter().sum::<i64>());
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct DropAll;
impl discnn_engine::ForeachPartitionFn for DropAll {
    type Item = i64;
    fn call(&self, _p: usize, items: discnn_engine::BoxIter<i64>) {
        items.for_each(drop);
    }
}
discnn_engine::register_op!(foreach_partition DropAll);

#[test]
fn a_broadcast_is_fetched_once_per_executor() {
    let (ctx, _) = ctx_with_log(Config {
        master: "local[4]".into(),
        ..Config::default()
    });
    let table: Vec<i64> = (0..10).map(|i| i * 100).collect();
    let b = ctx.broadcast(table.clone()).unwrap();
    let v = data(800);
    let want: Vec<i64> = v.iter().map(|x| x + table[(*x % 10) as usize]).collect();
    let r = ctx
        .parallelize(v.clone(), 16)
        .unwrap()
        .map(AddFromTable(b.clone()));
    assert_eq!(r.collect().unwrap(), want);
    assert_eq!(r.collect().unwrap(), want);
    assert_eq!(
        ctx.stats().broadcast_fetches,
        1,
        "16 tasks, two jobs, one executor: one fetch"
    );
    b.unpersist();
    assert_eq!(r.collect().unwrap(), want);
    assert_eq!(
        ctx.stats().broadcast_fetches,
        2,
        "fetched again after unpersist"
    );
    b.destroy();
    let err = r.collect().unwrap_err().to_string();
    assert!(err.contains("destroyed"), "{err}");
}

#[test]
fn lost_shuffle_output_is_recomputed_from_lineage() {
    let (ctx, log) = local();
    let r = ctx
        .parallelize(data(300), 4)
        .unwrap()
        .key_by(Modulo(6))
        .reduce_by_key(Add, 3);
    let first = {
        let mut v = r.collect().unwrap();
        v.sort();
        v
    };
    ctx.simulate_executor_loss();
    log.clear();
    let mut again = r.collect().unwrap();
    again.sort();
    assert_eq!(again, first);
    let fetch_failures = log
        .task_ends()
        .iter()
        .filter(|e| matches!(e.2, Some(TaskFailure::FetchFailed { .. })))
        .count();
    assert!(fetch_failures > 0, "the reduce stage saw the loss");
    assert!(
        log.stages_run().iter().any(|(_, attempt)| *attempt > 0),
        "the reading stage was resubmitted"
    );
}

#[test]
fn an_unknown_op_is_a_clear_error_and_not_retried() {
    let (ctx, log) = local();
    let err = ctx
        .parallelize(vec![1i64], 1)
        .unwrap()
        .map(Unregistered)
        .count()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("register_op!(map discnn_engine::testing::Unregistered)"),
        "{err}"
    );
    assert_eq!(log.task_ends().len(), 1);
}

#[test]
fn local_mode_runs_the_decoded_copy_of_each_op() {
    let (ctx, _) = local();
    let v = data(20);
    let got = ctx
        .parallelize(v.clone(), 2)
        .unwrap()
        .map(SkippedOffset { by: 1000 })
        .collect()
        .unwrap();
    assert_eq!(
        got, v,
        "a #[serde(skip)] field does not reach the task, even in local mode"
    );
}

#[test]
fn a_failed_save_leaves_no_output() {
    let (ctx, _) = local();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let err = ctx
        .parallelize(data(50), 3)
        .unwrap()
        .map(FailAttempts {
            partition: 2,
            failures: 99,
        })
        .map(ToStr)
        .save_as_text_file(&out);
    assert!(err.is_err());
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no temporary directory is left"
    );

    ctx.parallelize(data(50), 3)
        .unwrap()
        .map(ToStr)
        .save_as_text_file(&out)
        .unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["_SUCCESS", "part-00000", "part-00001", "part-00002"]
    );
    let again = ctx
        .parallelize(data(5), 1)
        .unwrap()
        .map(ToStr)
        .save_as_text_file(&out);
    assert!(matches!(again, Err(EngineError::OutputExists(_))));
}

#[test]
fn memory_stays_flat_across_many_small_jobs() {
    let (ctx, _) = local();
    let base = ctx.parallelize(data(64), 4).unwrap();
    for i in 0..300 {
        let b = ctx.broadcast(vec![i as i64; 10]).unwrap();
        let r = base
            .map(AddFromTable(b))
            .key_by(Modulo(4))
            .reduce_by_key(Add, 2);
        r.cache();
        assert_eq!(r.count().unwrap(), 4);
    }
    ctx.clean_up();
    let s = ctx.stats();
    assert_eq!(
        (
            s.shuffle_outputs,
            s.tracked_shuffles,
            s.blocks.memory_blocks
        ),
        (0, 0, 0),
        "{s:?}"
    );
    assert_eq!(
        (s.broadcasts_on_driver, s.broadcasts_on_executor),
        (0, 0),
        "{s:?}"
    );
}

#[test]
fn contexts_are_independent_values() {
    let (a, la) = local();
    let (b, lb) = local();
    assert_eq!(a.parallelize(data(10), 2).unwrap().count().unwrap(), 10);
    assert_eq!(b.range(0, 7, 1, 3).unwrap().count().unwrap(), 7);
    assert_eq!(la.stages_run().len(), 1);
    assert_eq!(lb.stages_run().len(), 1);
    assert!(la
        .events()
        .iter()
        .all(|e| !matches!(e, Event::JobStart { description, .. } if description == "range")));
}

#[test]
fn bad_masters_are_refused() {
    for m in ["local[0]", "local[x]", "spark://host:7077"] {
        let r = Context::new(Config {
            master: m.into(),
            ..Config::default()
        });
        assert!(matches!(r, Err(EngineError::InvalidArgument(_))), "{m}");
    }
}
