//! A `driver serve` process and its executor processes, as a user starts them: stopped when
//! dropped, their logs (kept in files, so a chatty process never blocks on a full pipe)
//! printed if a test fails while they are alive.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub struct Served {
    pub address: String,
    pub secret_file: PathBuf,
    /// The driver first, then the executors.
    pub children: Vec<Child>,
    dir: tempfile::TempDir,
    started: usize,
    /// Flags every process and client gets (TLS files).
    extra: Vec<std::ffi::OsString>,
    /// The driver and executor programs: the stock ones, or a user's build of them.
    driver_bin: PathBuf,
    executor_bin: PathBuf,
    /// Flags `driver serve` alone gets (`--ui`, `--event-log`).
    serve_extra: Vec<String>,
}

pub const SECRET: &str = "correct horse";

impl Served {
    pub fn start(executors: usize) -> Served {
        Served::start_with(executors, Vec::new())
    }

    /// Every process and client started with `extra` flags as well.
    pub fn start_with(executors: usize, extra: Vec<std::ffi::OsString>) -> Served {
        Served::start_full(executors, extra, &[])
    }

    /// [`Served::start_with`], the executors also given `executor_extra`.
    pub fn start_full(
        executors: usize,
        extra: Vec<std::ffi::OsString>,
        executor_extra: &[&std::ffi::OsStr],
    ) -> Served {
        let programs = (
            PathBuf::from(env!("CARGO_BIN_EXE_driver")),
            PathBuf::from(env!("CARGO_BIN_EXE_executor")),
        );
        Served::start_programs(programs, executors, extra, executor_extra)
    }

    /// A cluster whose `driver serve` also gets `serve_extra`.
    pub fn start_serving(executors: usize, serve_extra: &[&str]) -> Served {
        let programs = (
            PathBuf::from(env!("CARGO_BIN_EXE_driver")),
            PathBuf::from(env!("CARGO_BIN_EXE_executor")),
        );
        Served::start_inner(programs, executors, Vec::new(), &[], serve_extra)
    }

    /// A cluster of other programs than the stock `driver` and `executor` (a user's own).
    pub fn start_programs(
        programs: (PathBuf, PathBuf),
        executors: usize,
        extra: Vec<std::ffi::OsString>,
        executor_extra: &[&std::ffi::OsStr],
    ) -> Served {
        Served::start_inner(programs, executors, extra, executor_extra, &[])
    }

    fn start_inner(
        (driver_bin, executor_bin): (PathBuf, PathBuf),
        executors: usize,
        extra: Vec<std::ffi::OsString>,
        executor_extra: &[&std::ffi::OsStr],
        serve_extra: &[&str],
    ) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            let owner_only = std::fs::Permissions::from_mode(0o600);
            std::fs::set_permissions(&secret_file, owner_only).unwrap();
        }
        let mut s = Served {
            address: format!("127.0.0.1:{}", free_port()),
            secret_file,
            children: Vec::new(),
            dir,
            started: 0,
            extra,
            driver_bin,
            executor_bin,
            serve_extra: serve_extra.iter().map(|a| a.to_string()).collect(),
        };
        let driver = s.spawn_driver();
        s.children.push(driver);
        for _ in 0..executors {
            let bin = s.executor_bin.clone();
            let child = s.spawn_executor(&bin, executor_extra);
            s.children.push(child);
        }
        s.wait_for_executors(executors);
        s
    }

    /// Starts executor program `bin` against this driver (not added to `children`).
    pub fn spawn_executor(&mut self, bin: &Path, extra: &[&std::ffi::OsStr]) -> Child {
        let mut cmd = Command::new(bin);
        cmd.args(["--driver", &self.address, "--cores", "1"])
            .args(["--listen", "127.0.0.1:0"])
            .args(extra);
        self.spawn(cmd, "executor")
    }

    /// The log file (stderr) of the process started last, a `what` (`driver`, `executor`).
    pub fn last_log(&self, what: &str) -> PathBuf {
        self.dir.path().join(format!("{}-{what}.log", self.started))
    }

    fn spawn(&mut self, mut cmd: Command, what: &str) -> Child {
        self.started += 1;
        let log = self.dir.path().join(format!("{}-{what}.log", self.started));
        let file = std::fs::File::create(&log).unwrap();
        cmd.arg("--secret-file")
            .arg(&self.secret_file)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"))
    }

    fn spawn_driver(&mut self) -> Child {
        let mut cmd = Command::new(&self.driver_bin);
        cmd.args([
            "serve",
            "--listen",
            &self.address,
            "--heartbeat-timeout",
            "3",
        ])
        .args(&self.serve_extra);
        self.spawn(cmd, "driver")
    }

    /// Kills the driver (SIGKILL) and starts a new one on the same address.
    pub fn restart_driver(&mut self) {
        let _ = self.children[0].kill();
        let _ = self.children[0].wait();
        self.children[0] = self.spawn_driver();
    }

    pub fn executor_pids(&self) -> Vec<u32> {
        self.children[1..].iter().map(Child::id).collect()
    }

    pub fn status(&self) -> serde_json::Value {
        let o = self.driver(&["status", "--master", &self.address, "--json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).expect("one JSON object")
    }

    /// Polls `driver status --json` until `done` holds of it (at most `limit`).
    pub fn wait_for_status(
        &self,
        limit: Duration,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let o = self.driver(&["status", "--master", &self.address, "--json"]);
            if o.status.success() {
                let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
                if done(&v) {
                    return v;
                }
            }
            assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_for_executors(&self, n: usize) {
        self.wait_for_status(Duration::from_secs(60), "executors registered", |v| {
            alive(v) >= n
        });
    }

    /// `driver ARGS --secret-file …`, run to completion.
    pub fn driver(&self, args: &[&str]) -> Output {
        self.driver_command(args).output().expect("run driver")
    }

    /// `driver submit --master ADDRESS ARGS --secret-file …` in `cwd`, not started yet.
    pub fn submit(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut c = self.driver_command(&["submit", "--master", &self.address]);
        c.current_dir(cwd).args(args);
        c
    }

    /// `driver submit … wordcount --input in.txt --output OUTPUT` in `cwd`, not started yet.
    pub fn wordcount(&self, cwd: &Path, output: &str) -> Command {
        self.submit(cwd, &["wordcount", "--input", "in.txt", "--output", output])
    }

    /// [`Served::wordcount`] with `--json`, run to success: the job's summary object.
    pub fn wordcount_json(&self, cwd: &Path, output: &str) -> serde_json::Value {
        let o = self.wordcount(cwd, output).arg("--json").output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    fn driver_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.driver_bin);
        c.args(args)
            .arg("--secret-file")
            .arg(&self.secret_file)
            .args(&self.extra);
        c
    }
}

/// Executors in state `alive` in a status object.
pub fn alive(status: &serde_json::Value) -> usize {
    status["executors"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|e| e["state"] == "alive").count())
}

impl Drop for Served {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let mut logs: Vec<_> = std::fs::read_dir(self.dir.path())
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .collect();
            logs.sort();
            for p in logs {
                let log = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!("--- {} ---", p.display());
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}
