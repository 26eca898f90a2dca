//! The multi-process test harness: contexts whose executors are real `executor` processes of
//! this build on 127.0.0.1, and their log tails when something fails.

#![allow(dead_code)]

pub mod http;
pub mod s3;
pub mod served;

use discnn_engine::cluster::ClusterTimings;
use discnn_engine::{Config, Context};
use std::time::Duration;

/// A `local-cluster[n,1]` context: a driver service in this process, n executor processes.
pub fn cluster(n: usize, heartbeat_timeout: Duration, grace: Duration) -> Context {
    cluster_with(n, heartbeat_timeout, grace, |_| {})
}

/// [`cluster`], with `adjust` applied to the configuration first.
pub fn cluster_with(
    n: usize,
    heartbeat_timeout: Duration,
    grace: Duration,
    adjust: impl FnOnce(&mut Config),
) -> Context {
    // Executors refuse a driver whose op registry differs from theirs; naming the `discnn`
    // library links every op the binaries carry into this test program too.
    let _ = discnn::cli::version();
    let mut config = Config {
        master: format!("local-cluster[{n},1]"),
        executor_binary: Some(env!("CARGO_BIN_EXE_executor").into()),
        memory_budget: 256 << 20,
        cluster: ClusterTimings {
            heartbeat_interval: Duration::from_millis(200),
            heartbeat_timeout,
            no_executor_grace: grace,
            locality_wait: Duration::from_millis(500),
        },
        ..Config::default()
    };
    adjust(&mut config);
    Context::new(config).unwrap_or_else(|e| panic!("starting local-cluster[{n},1]: {e}"))
}

/// Runs `f`; on a panic, prints the executors' log tails before re-raising it.
pub fn with_logs<R>(ctx: &Context, f: impl FnOnce() -> R) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            eprintln!("executor logs:\n{}", ctx.executor_log_tails(40));
            std::panic::resume_unwind(p)
        }
    }
}

/// Sends `signal` (`KILL`, `TERM`, `INT`, `STOP`, `CONT`) to `pid`.
pub fn signal(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{signal} {pid} failed");
}

pub fn kill9(pid: u32) {
    signal(pid, "KILL");
}

/// Polls `done` every 20 ms until it holds; panics naming `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `path` to exist (a barrier op writes it) and returns its contents.
pub fn wait_for_file(path: &std::path::Path, limit: Duration) -> String {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Ok(s) = std::fs::read_to_string(path) {
            if !s.is_empty() {
                return s;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{} did not appear within {limit:?}", path.display());
}

/// `driver submit --no-progress ARGS --data DATA --output OUTPUT`, run to completion (the
/// executor binary of this build for cluster masters).
pub fn submit_cnn(
    args: &[&str],
    data: &std::path::Path,
    output: &std::path::Path,
) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_driver"))
        .args(["submit", "--no-progress"])
        .args(args)
        .arg("--data")
        .arg(data)
        .arg("--output")
        .arg(output)
        .env("DISCNN_EXECUTOR_BIN", env!("CARGO_BIN_EXE_executor"))
        .output()
        .unwrap()
}

/// The pids of `parent`'s living children (zombies excluded), from /proc.
pub fn children(parent: u32) -> Vec<u32> {
    let mut v = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces, so read after the last ')'.
        let rest: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if rest.first() != Some(&"Z") && rest.get(1) == Some(&parent.to_string().as_str()) {
            v.push(pid);
        }
    }
    v
}

pub fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}
