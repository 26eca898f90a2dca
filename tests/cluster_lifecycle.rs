//! An executor's and a job's life on a cluster beyond plain loss: SIGTERM drains an executor,
//! a stalled executor's late result is dropped and it must register anew, executors survive a
//! driver restart, Ctrl-C on `driver submit` cancels the job on the cluster, and a
//! `local-cluster`'s executors exit when the driver that started them is killed.

mod common;

use common::served::{alive, Served};
use discnn_engine::cluster::ExecutorState;
use discnn_engine::testing::*;
use discnn_engine::{Context, EventLog, TaskFailure};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn values() -> Vec<i64> {
    (0..600).map(|i| (i * 7919) % 1009 - 500).collect()
}

/// A shuffled job whose partition 0 blocks at a barrier under `dir` on its first attempt.
fn job(c: &Context, dir: &Path) -> Vec<(i64, i64)> {
    let barrier = BlockOnce {
        dir: dir.to_string_lossy().into_owned(),
        partition: 0,
    };
    let mut v = c
        .parallelize(values(), 4)
        .unwrap()
        .map(barrier)
        .key_by(Modulo(7))
        .reduce_by_key(Add, 2)
        .collect()
        .unwrap();
    v.sort();
    v
}

fn expected() -> Vec<(i64, i64)> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("reached"), "0").unwrap();
    job(&Context::local(2).unwrap(), dir.path())
}

fn state_of(ctx: &Context, pid: u32) -> Vec<ExecutorState> {
    ctx.executors()
        .iter()
        .filter(|e| e.pid == pid)
        .map(|e| e.state)
        .collect()
}

#[test]
fn sigterm_drains_an_executor_its_running_task_finishes_and_it_deregisters() {
    let want = expected();
    let ctx = common::cluster(2, Duration::from_secs(10), Duration::from_secs(30));
    let log = Arc::new(EventLog::default());
    ctx.add_listener(log.clone());
    common::with_logs(&ctx, || {
        let dir = tempfile::tempdir().unwrap();
        let got = std::thread::scope(|s| {
            let h = s.spawn(|| job(&ctx, dir.path()));
            let pid: u32 =
                common::wait_for_file(&dir.path().join("reached"), Duration::from_secs(60))
                    .trim()
                    .parse()
                    .unwrap();
            common::signal(pid, "TERM");
            common::wait_until(Duration::from_secs(10), "the executor drains", || {
                state_of(&ctx, pid) == [ExecutorState::Draining]
            });
            // The blocked task is still running on the draining executor; let it finish.
            std::fs::write(dir.path().join("release"), "").unwrap();
            common::wait_until(Duration::from_secs(20), "the executor deregisters", || {
                state_of(&ctx, pid) == [ExecutorState::Exited]
            });
            h.join().expect("job thread")
        });
        assert_eq!(got, want);
        // Drained, not lost: the task it was running finished there on its first attempt.
        let ends = log.task_ends();
        assert!(
            !ends
                .iter()
                .any(|(_, _, f)| matches!(f, Some(TaskFailure::ExecutorLost { .. }))),
            "{ends:?}"
        );
        assert!(ctx.executor_log_tails(50).contains("deregistered"));
    });
}

#[test]
fn a_stalled_executor_is_declared_lost_its_late_result_dropped_and_it_registers_anew() {
    let want = expected();
    let ctx = common::cluster(3, Duration::from_secs(2), Duration::from_secs(30));
    let cluster = ctx.cluster().expect("cluster mode").clone();
    common::with_logs(&ctx, || {
        let dir = tempfile::tempdir().unwrap();
        let late_before = cluster.late_results_dropped();
        let (got, pid) = std::thread::scope(|s| {
            let h = s.spawn(|| job(&ctx, dir.path()));
            let pid: u32 =
                common::wait_for_file(&dir.path().join("reached"), Duration::from_secs(60))
                    .trim()
                    .parse()
                    .unwrap();
            common::signal(pid, "STOP");
            // Lost after the heartbeat timeout; the task is re-run elsewhere (past the barrier).
            (h.join().expect("job thread"), pid)
        });
        assert_eq!(got, want);
        assert_eq!(state_of(&ctx, pid), [ExecutorState::Lost]);
        // It wakes up, finishes the stale attempt and reports it: dropped. Its next heartbeat is
        // answered "register anew", and it comes back under a new id with empty stores.
        std::fs::write(dir.path().join("release"), "").unwrap();
        common::signal(pid, "CONT");
        common::wait_until(Duration::from_secs(20), "the late result arrives", || {
            cluster.late_results_dropped() > late_before
        });
        common::wait_until(Duration::from_secs(20), "it registers anew", || {
            let states = state_of(&ctx, pid);
            states.len() == 2 && states.contains(&ExecutorState::Alive)
        });
        assert_eq!(job(&ctx, dir.path()), want);
    });
}

#[test]
fn executors_register_with_a_restarted_driver_and_run_its_jobs() {
    let mut s = Served::start(2);
    let before: Vec<String> = s.status()["executors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    s.restart_driver();
    let after = s.wait_for_status(Duration::from_secs(30), "executors re-register", |v| {
        alive(v) == 2
    });
    for e in after["executors"].as_array().unwrap() {
        let id = e["id"].as_str().unwrap();
        assert!(!before.iter().any(|b| b == id), "{id} reused an old id");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "p q p\n").unwrap();
    let o = s.wordcount(dir.path(), "out").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn ctrl_c_on_the_client_cancels_the_job_on_the_cluster() {
    let s = Served::start(2);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "p q p\n").unwrap();
    // Executors that cannot run anything keep the job running until the client gives up.
    let pids = s.executor_pids();
    for &p in &pids {
        common::signal(p, "STOP");
    }
    let client = s
        .wordcount(dir.path(), "out")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let running = |v: &serde_json::Value| v["jobs"][0]["state"] == "running";
    s.wait_for_status(Duration::from_secs(30), "the job starts", running);
    common::signal(client.id(), "INT");
    let o = client.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("cancelled"), "{err}");
    s.wait_for_status(Duration::from_secs(10), "the job is cancelled", |v| {
        v["jobs"][0]["state"] == "cancelled"
    });
    for &p in &pids {
        common::signal(p, "CONT");
    }
    // The cluster takes the next job; the cancelled job's tasks never wrote its output.
    s.wait_for_executors(2);
    let o = s.wordcount(dir.path(), "out2").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(s.status()["jobs"][1]["state"], "succeeded");
}

/// Files under `dir` whose name ends with `.data` (shuffle output), at any depth.
fn shuffle_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                n += shuffle_files(&p);
            } else if p.extension().is_some_and(|x| x == "data") {
                n += 1;
            }
        }
    }
    n
}

/// A long-lived cluster stays clean: when a job of `driver serve` ends, its shuffle output is
/// removed from every executor within 5 s (it once stayed until the executor died).
#[test]
fn a_finished_jobs_shuffle_files_leave_the_executors() {
    let work = tempfile::tempdir().unwrap();
    let s = common::served::Served::start_full(
        2,
        Vec::new(),
        &[
            "--work-dir".as_ref(),
            work.path().as_os_str(),
            "--shuffle-memory".as_ref(),
            "0".as_ref(),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..2000).map(|i| format!("w{} x y\n", i % 97)).collect();
    std::fs::write(dir.path().join("in.txt"), text).unwrap();
    let mut seen = 0;
    for i in 0..3 {
        s.wordcount_json(dir.path(), &format!("out{i}"));
        seen = seen.max(shuffle_files(work.path()));
    }
    let start = std::time::Instant::now();
    while shuffle_files(work.path()) > 0 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "{} shuffle files still on the executors (at most {seen} seen)",
            shuffle_files(work.path())
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn local_cluster_executors_exit_when_their_driver_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    discnn_cnn::cifar::write_synthetic_folder(&data, 40, 10, 3).unwrap();
    let mut driver = std::process::Command::new(env!("CARGO_BIN_EXE_driver"))
        .args(["submit", "--no-progress", "--master", "local-cluster[2,1]"])
        .args(["cnn-job", "--epochs", "100000", "--data"])
        .arg(&data)
        .arg("--output")
        .arg(dir.path().join("out"))
        .env("DISCNN_EXECUTOR_BIN", env!("CARGO_BIN_EXE_executor"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut executors = Vec::new();
    common::wait_until(Duration::from_secs(60), "two executors started", || {
        executors = common::children(driver.id());
        executors.len() == 2
    });
    // Let them register and run tasks, then kill the driver without a chance to clean up.
    std::thread::sleep(Duration::from_millis(500));
    common::kill9(driver.id());
    let _ = driver.wait();
    common::wait_until(
        Duration::from_secs(10),
        "the orphaned executors exit",
        || executors.iter().all(|&p| !common::running(p)),
    );
}
