//! Executors killed (SIGKILL) at chosen points of a job, timed by a barrier op in the job
//! (`BlockOnce`), never by a sleep: each job still returns exactly what a local run returns,
//! and the events prove the fault landed. Each test has a cluster of its own.

mod common;

use discnn_engine::testing::*;
use discnn_engine::{Context, Event, EventLog, TaskFailure};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);

fn values() -> Vec<i64> {
    (0..600).map(|i| (i * 7919) % 1009 - 500).collect()
}

fn barrier(dir: &Path, partition: usize) -> BlockOnce {
    BlockOnce {
        dir: dir.to_string_lossy().into_owned(),
        partition,
    }
}

/// Waits for the barrier, kills the process that reached it, and returns its pid.
fn kill_at_barrier(dir: &Path) -> u32 {
    let pid: u32 = common::wait_for_file(&dir.join("reached"), Duration::from_secs(60))
        .trim()
        .parse()
        .expect("a pid");
    common::kill9(pid);
    pid
}

fn executor_lost(log: &EventLog) -> bool {
    log.task_ends()
        .iter()
        .any(|(_, _, f)| matches!(f, Some(TaskFailure::ExecutorLost { .. })))
}

fn retried(log: &EventLog) -> bool {
    log.task_ends()
        .iter()
        .any(|(_, a, f)| *a > 0 && f.is_none())
}

/// Runs `job` locally with the barrier disarmed, then on a fresh 3-executor cluster (executors
/// lost after `heartbeat_timeout` of silence) while the executor that reaches the barrier is
/// killed; asserts both give the same output and that the fault landed (an `ExecutorLost`
/// failure and a successful retry). Returns the events and how long the job ran after the kill.
fn killed_at_barrier_matches_local(
    heartbeat_timeout: Duration,
    job: impl Fn(&Context, &Path) -> Vec<(i64, i64)> + Sync,
) -> (Context, Arc<EventLog>, Duration) {
    let disarmed = tempfile::tempdir().unwrap();
    std::fs::write(disarmed.path().join("reached"), "0").unwrap();
    let want = job(&Context::local(2).unwrap(), disarmed.path());

    let ctx = common::cluster(3, heartbeat_timeout, Duration::from_secs(30));
    let log = Arc::new(EventLog::default());
    let after_kill = common::with_logs(&ctx, || {
        ctx.add_listener(log.clone());
        let dir = tempfile::tempdir().unwrap();
        let (got, after_kill) = std::thread::scope(|s| {
            let h = s.spawn(|| job(&ctx, dir.path()));
            kill_at_barrier(dir.path());
            let killed = Instant::now();
            (h.join().expect("job thread"), killed.elapsed())
        });
        assert_eq!(got, want);
        assert!(executor_lost(&log), "an ExecutorLost failure was recorded");
        assert!(retried(&log), "a task attempt > 0 succeeded");
        after_kill
    });
    (ctx, log, after_kill)
}

/// A map stage whose partition 2 waits at the barrier.
fn map_stage_with_barrier(c: &Context, dir: &Path) -> Vec<(i64, i64)> {
    let mut v = c
        .parallelize(values(), 6)
        .unwrap()
        .map(barrier(dir, 2))
        .key_by(Modulo(7))
        .reduce_by_key(Add, 3)
        .collect()
        .unwrap();
    v.sort();
    v
}

#[test]
fn an_executor_killed_during_a_map_stage() {
    let (ctx, _, _) = killed_at_barrier_matches_local(HEARTBEAT_TIMEOUT, map_stage_with_barrier);
    let lost = ctx
        .executors()
        .iter()
        .filter(|e| e.state == discnn_engine::cluster::ExecutorState::Lost)
        .count();
    assert_eq!(lost, 1);
}

/// A dead executor's task channel breaks with its process: the driver declares it lost at once,
/// not after the heartbeat timeout (a minute here), and the job recovers within seconds.
#[test]
fn a_killed_executor_is_lost_when_its_task_channel_breaks() {
    let (_, _, after_kill) =
        killed_at_barrier_matches_local(Duration::from_secs(60), map_stage_with_barrier);
    assert!(
        after_kill < Duration::from_secs(20),
        "the job finished {after_kill:?} after the kill: the loss waited for the heartbeat \
         timeout"
    );
}

/// join(s, t): s's map stage runs first and writes its output on every executor; t's map stage
/// then blocks at the barrier (partition 1) until the test has done its fault.
fn join_after_barrier(c: &Context, dir: &Path) -> Vec<(i64, i64)> {
    let s = c
        .parallelize(values(), 6)
        .unwrap()
        .key_by(Modulo(5))
        .reduce_by_key(Add, 3);
    let t = c
        .parallelize((0..5).collect::<Vec<i64>>(), 3)
        .unwrap()
        .map(barrier(dir, 1))
        .key_by(Modulo(5));
    let mut v: Vec<(i64, i64)> = s
        .join(&t, 3)
        .collect()
        .unwrap()
        .into_iter()
        .map(|(k, (a, b))| (k, a * 10 + b))
        .collect();
    v.sort();
    v
}

#[test]
fn an_executor_killed_after_writing_shuffle_output_before_it_is_read() {
    // t's map stage blocks at the barrier, and that executor — holding s's output — is killed.
    let (_ctx, log, _) = killed_at_barrier_matches_local(HEARTBEAT_TIMEOUT, join_after_barrier);
    {
        // s's lost map outputs were recomputed: some stage ran map tasks of s twice.
        let events = log.events();
        let map_stages: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::StageSubmitted {
                    stage,
                    shuffle_map: true,
                    ..
                } => Some(*stage),
                _ => None,
            })
            .collect();
        let resubmitted = map_stages
            .iter()
            .any(|s| map_stages.iter().filter(|x| *x == s).count() > 1);
        assert!(resubmitted, "a map stage was run again: {map_stages:?}");
    }
}

#[test]
fn an_executor_killed_while_it_holds_cached_partitions() {
    let ctx = common::cluster(3, HEARTBEAT_TIMEOUT, Duration::from_secs(30));
    common::with_logs(&ctx, || {
        let dir = tempfile::tempdir().unwrap();
        let cached = ctx.parallelize(values(), 6).unwrap().map(AddOne);
        cached.cache();
        assert_eq!(cached.count().unwrap(), 600);
        assert_eq!(cached.cached_partitions(), (0..6).collect::<Vec<_>>());
        let log = Arc::new(EventLog::default());
        ctx.add_listener(log.clone());
        let got = std::thread::scope(|s| {
            let h = s.spawn(|| cached.map(barrier(dir.path(), 0)).collect().unwrap());
            kill_at_barrier(dir.path());
            h.join().expect("job thread")
        });
        let want: Vec<i64> = values().iter().map(|x| x + 1).collect();
        assert_eq!(got, want);
        assert!(executor_lost(&log));
        assert!(retried(&log));
        // The lost executor's blocks are no longer counted; partition 0 was recomputed and
        // cached again by its retry.
        let lost = ctx
            .executors()
            .iter()
            .filter(|e| e.state == discnn_engine::cluster::ExecutorState::Lost)
            .count();
        assert_eq!(lost, 1);
        assert!(cached.cached_partitions().contains(&0));
    });
}

#[test]
fn killing_every_executor_fails_the_job_within_the_grace_period() {
    let grace = Duration::from_secs(3);
    let ctx = common::cluster(2, HEARTBEAT_TIMEOUT, grace);
    let dir = tempfile::tempdir().unwrap();
    let pids: Vec<u32> = ctx.executors().iter().map(|e| e.pid).collect();
    let (err, waited) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            ctx.parallelize(values(), 4)
                .unwrap()
                .map(barrier(dir.path(), 0))
                .collect()
        });
        common::wait_for_file(&dir.path().join("reached"), Duration::from_secs(60));
        let t = Instant::now();
        // All frozen first: a process that dies breaks its task channel and is declared lost
        // at once, and the other could run the retried task before its own kill arrived.
        for p in &pids {
            common::signal(*p, "STOP");
        }
        for p in &pids {
            common::kill9(*p);
        }
        let r = h.join().expect("job thread");
        (r.expect_err("no executor is left"), t.elapsed())
    });
    let msg = err.to_string();
    assert!(msg.contains("no executor was alive"), "{msg}");
    let limit = HEARTBEAT_TIMEOUT + grace + Duration::from_secs(5);
    assert!(waited < limit, "failed after {waited:?}, limit {limit:?}");
}

/// An executor stopped (SIGSTOP) while it holds map output that reducers are about to fetch:
/// once the driver declares it lost, fetches in flight from it fail at once and the stage
/// recovers — the job ends within seconds of the loss, not after the 60 s fetch deadline.
#[test]
fn fetches_from_a_stopped_executor_end_when_it_is_declared_lost() {
    let job = join_after_barrier;
    let disarmed = tempfile::tempdir().unwrap();
    std::fs::write(disarmed.path().join("reached"), "0").unwrap();
    let want = job(&Context::local(2).unwrap(), disarmed.path());

    let ctx = common::cluster(3, HEARTBEAT_TIMEOUT, Duration::from_secs(30));
    common::with_logs(&ctx, || {
        let dir = tempfile::tempdir().unwrap();
        let (got, stopped, after_release) = std::thread::scope(|s| {
            let h = s.spawn(|| job(&ctx, dir.path()));
            // t's map task waits at the barrier; s's output is on every executor by now.
            let at_barrier: u32 =
                common::wait_for_file(&dir.path().join("reached"), Duration::from_secs(60))
                    .trim()
                    .parse()
                    .expect("a pid");
            let stopped = ctx
                .executors()
                .iter()
                .map(|e| e.pid)
                .find(|&p| p != at_barrier)
                .expect("another executor");
            common::signal(stopped, "STOP");
            std::fs::write(dir.path().join("release"), "").unwrap();
            let released = Instant::now();
            let got = h.join().expect("job thread");
            (got, stopped, released.elapsed())
        });
        common::signal(stopped, "CONT");
        assert_eq!(got, want);
        // Loss after 2 s without heartbeats, the news with the next heartbeat, the lost map
        // outputs recomputed: seconds. Waiting out the fetch deadline took over 60.
        assert!(
            after_release < Duration::from_secs(30),
            "the job took {after_release:?} after the executor stopped"
        );
    });
}
