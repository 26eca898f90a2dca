//! `local-cluster[N,C]` (as in Spark): a driver service in this process and N real executor
//! processes of C slots each on loopback, for as long as the context lives. Tests and
//! benchmarks use it to exercise everything that crosses a process boundary.

use super::{ClusterConfig, ClusterDriver, ClusterError, Secret};
use crate::driver::context::Config;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the environment of the executors a `local-cluster` starts: the pid of the process
/// that started them; an executor whose parent is no longer that process exits.
pub const PARENT_PID_ENV: &str = "DISCNN_PARENT_PID";

pub(crate) struct LocalCluster {
    pub driver: ClusterDriver,
    children: Vec<Child>,
    logs: tempfile::TempDir,
}

/// The most executor processes, and cores each, a `local-cluster` starts on one machine: a
/// test cluster, not a way to fork thousands of processes by a typo.
pub const MAX_LOCAL_EXECUTORS: usize = 64;
pub const MAX_LOCAL_CORES: usize = 1024;

/// Parses `local-cluster[N,C]`.
pub(crate) fn parse(master: &str) -> Option<Result<(usize, usize), String>> {
    let inner = master.strip_prefix("local-cluster[")?.strip_suffix(']')?;
    let bad = || {
        format!(
            "bad master `{master}`: expected local-cluster[N,C], N executors (1–{MAX_LOCAL_EXECUTORS}) \
             of C cores (1–{MAX_LOCAL_CORES})"
        )
    };
    let mut it = inner.split(',').map(|s| s.trim().parse::<usize>());
    Some(match (it.next(), it.next(), it.next()) {
        (Some(Ok(n)), Some(Ok(c)), None)
            if (1..=MAX_LOCAL_EXECUTORS).contains(&n) && (1..=MAX_LOCAL_CORES).contains(&c) =>
        {
            Ok((n, c))
        }
        _ => Err(bad()),
    })
}

/// The `executor` program: `Config::executor_binary`, else `$DISCNN_EXECUTOR_BIN`, else next to
/// this program (or one directory up, where cargo puts test binaries) — named as this program
/// with `driver` replaced by `executor` (a user's `my-driver` starts `my-executor`s, which carry
/// the same ops), or plain `executor`.
fn executor_binary(config: &Config) -> Result<PathBuf, ClusterError> {
    if let Some(p) = &config.executor_binary {
        return Ok(p.clone());
    }
    if let Some(p) = std::env::var_os("DISCNN_EXECUTOR_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(ClusterError::Runtime)?;
    let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    let mut names = Vec::new();
    if let Some(own) = exe.file_name().and_then(|n| n.to_str()) {
        if own.contains("driver") {
            names.push(own.replacen("driver", "executor", 1));
        }
    }
    names.push("executor".to_string());
    let candidates = names
        .iter()
        .flat_map(|n| [dir.join(n), dir.join("..").join(n)]);
    for candidate in candidates {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(ClusterError::Executors(format!(
        "cannot find the `executor` program next to {} (set DISCNN_EXECUTOR_BIN)",
        exe.display()
    )))
}

impl LocalCluster {
    pub fn start(n: usize, cores: usize, config: &Config) -> Result<LocalCluster, ClusterError> {
        let binary = executor_binary(config)?;
        let secret = Secret::random();
        let cluster = ClusterConfig {
            listen: "127.0.0.1:0".into(),
            secret: Some(secret.clone()),
            tls: None,
            timings: config.cluster,
        };
        let driver = ClusterDriver::start(cluster, None, config.clone())?;
        let logs = tempfile::Builder::new()
            .prefix("discnn-local-cluster-")
            .tempdir()
            .map_err(ClusterError::Runtime)?;
        let mut me = LocalCluster {
            driver,
            children: Vec::new(),
            logs,
        };
        for i in 0..n {
            let log = me.log_path(i);
            let out = std::fs::File::create(&log).map_err(|source| ClusterError::Io {
                path: log.clone(),
                source,
            })?;
            let err = out.try_clone().map_err(ClusterError::Runtime)?;
            let child = Command::new(&binary)
                .arg("--driver")
                .arg(me.driver.address().to_string())
                .args(["--cores", &cores.to_string()])
                .args(["--memory", &config.memory_budget.to_string()])
                .args([
                    "--shuffle-memory",
                    &config.shuffle_memory_budget.to_string(),
                ])
                .args(["--listen", "127.0.0.1:0"])
                .arg("--work-dir")
                .arg(me.logs.path().join("work"))
                .env("DISCNN_SECRET", secret.as_env_value())
                // Ours for the context's life only: one whose driver process died (a killed
                // test, a crash) must not outlive it.
                .env(PARENT_PID_ENV, std::process::id().to_string())
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .map_err(|e| {
                    ClusterError::Executors(format!("cannot start {}: {e}", binary.display()))
                })?;
            me.children.push(child);
        }
        me.wait_for(n, Duration::from_secs(60))?;
        Ok(me)
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.logs.path().join(format!("executor-{i}.log"))
    }

    fn wait_for(&mut self, n: usize, limit: Duration) -> Result<(), ClusterError> {
        let start = Instant::now();
        while self.driver.backend().alive_executors() < n {
            for (i, c) in self.children.iter_mut().enumerate() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(ClusterError::Executors(format!(
                        "executor {i} exited ({status}) before registering:\n{}",
                        self.log_tails(20)
                    )));
                }
            }
            if start.elapsed() > limit {
                return Err(ClusterError::Executors(format!(
                    "only {} of {n} executors registered within {limit:?}:\n{}",
                    self.driver.backend().alive_executors(),
                    self.log_tails(20)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The last `lines` lines of every executor's log, for failing tests.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for i in 0..self.children.len() {
            let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- executor process {i} ---\n"));
            for l in &all[all.len().saturating_sub(lines)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // The driver first: executors killed under a serving driver would be reported lost.
        self.driver.stop();
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
