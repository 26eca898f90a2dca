//! The UI of `driver serve` while a cnn-job trains, its event log replayed by `driver history`
//! (whole, and cut mid-way as a killed driver leaves it), and the UI's address rules: basic
//! auth beyond loopback, and the next free port when the asked one is busy.

mod common;

use common::http::{get, get_with};
use common::served::{free_port, Served, SECRET};
use discnn_cnn::cifar;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ENDPOINTS: [&str; 6] = [
    "jobs",
    "stages",
    "executors",
    "storage/rdd",
    "environment",
    "training",
];

fn json(addr: &str, path: &str) -> Value {
    let r = get(addr, path);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json()
}

/// A `driver history` (or other) process whose stderr is kept in a file, killed when dropped.
struct Process {
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Process {
    fn start(args: &[&str]) -> Process {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_driver"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Process {
            child,
            log,
            _dir: dir,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The address of its `UI at http://ADDR/` line.
    fn ui_address(&self) -> String {
        let start = Instant::now();
        loop {
            if let Some(rest) = self.stderr().split("UI at http://").nth(1) {
                return rest.split('/').next().unwrap().to_string();
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no UI line: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `driver history --event-log DIR --ui UI EXTRA…`.
fn history_at(dir: &Path, ui: &str, extra: &[&str]) -> Process {
    let mut args = vec!["history", "--event-log", dir.to_str().unwrap(), "--ui", ui];
    args.extend_from_slice(extra);
    Process::start(&args)
}

fn history(dir: &Path) -> Process {
    history_at(dir, &format!("127.0.0.1:{}", free_port()), &[])
}

#[test]
fn a_served_cnn_job_is_watched_live_and_replayed_by_the_history_server() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("events");
    let ui_port = free_port();
    let ui = format!("127.0.0.1:{ui_port}");
    let served = Served::start_serving(2, &["--ui", &ui, "--event-log", logs.to_str().unwrap()]);
    let data = dir.path().join("cifar");
    cifar::write_synthetic_folder(&data, 40, 30, 3).unwrap();
    let out = dir.path().join("out");
    let o = served
        .submit(dir.path(), &["--no-progress", "cnn-job", "--epochs", "3"])
        .arg("--data")
        .arg(&data)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let apps = json(&ui, "/api/v1/applications");
    let apps = apps.as_array().unwrap();
    assert_eq!(apps.len(), 1, "{apps:?}");
    assert_eq!(apps[0]["name"], "cnn-job");
    let id = apps[0]["id"].as_str().unwrap().to_string();
    let base = format!("/api/v1/applications/{id}");
    let rows: Vec<Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(json(&ui, &format!("{base}/training")), Value::Array(rows));
    let executors = json(&ui, &format!("{base}/executors"));
    assert_eq!(executors.as_array().unwrap().len(), 2, "{executors}");
    let env = json(&ui, &format!("{base}/environment")).to_string();
    assert!(env.contains("job.epochs"), "{env}");
    assert!(!env.contains(SECRET), "the secret is never shown");
    let page = get(&ui, &format!("/applications/{id}/training")).body;
    assert!(page.contains("<svg") && page.contains("id=\"epochs\""));
    assert!(!page.contains(SECRET));

    // The log is complete once the application has ended (it is named without .inprogress).
    common::wait_until(Duration::from_secs(10), "the finished event log", || {
        std::fs::read_dir(&logs)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".jsonl.zst"))
    });
    let file = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let bytes = std::fs::read(&file).unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains(SECRET));
    let events = discnn_ui::eventlog::read(&file).unwrap();
    let text = serde_json::to_string(&events).unwrap();
    assert!(text.contains("EpochEnd") && text.contains("TaskEnd"));
    assert!(!text.contains(SECRET), "the secret is not in the event log");

    let h = history(&logs);
    let hui = h.ui_address();
    assert_eq!(
        json(&hui, "/api/v1/applications"),
        json(&ui, "/api/v1/applications")
    );
    for e in ENDPOINTS {
        let path = format!("{base}/{e}");
        assert_eq!(json(&hui, &path), json(&ui, &path), "{path}");
    }
    assert_eq!(
        get(&hui, &format!("/applications/{id}/training")).status,
        200
    );

    // Cut mid-way, as a driver killed mid-write leaves it.
    let cut_dir = dir.path().join("cut");
    std::fs::create_dir(&cut_dir).unwrap();
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    std::fs::write(
        cut_dir.join(format!("{name}.inprogress")),
        &bytes[..bytes.len() * 2 / 3],
    )
    .unwrap();
    let hc = history(&cut_dir);
    let hcui = hc.ui_address();
    let cut_apps = json(&hcui, "/api/v1/applications");
    assert_eq!(cut_apps[0]["id"], id.as_str());
    assert_eq!(cut_apps[0]["attempts"][0]["completed"], false);
    let all = json(&ui, &format!("{base}/jobs"));
    let some = json(&hcui, &format!("{base}/jobs"));
    let (all, some) = (all.as_array().unwrap(), some.as_array().unwrap());
    assert!(
        !some.is_empty() && some.len() < all.len(),
        "{} of {}",
        some.len(),
        all.len()
    );
    for j in some.iter().filter(|j| j["status"] == "SUCCEEDED") {
        assert!(all.contains(j), "a finished job reads the same: {j}");
    }
}

#[test]
fn beyond_loopback_the_ui_needs_the_secret_and_a_busy_port_moves_it_up() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let open = Command::new(env!("CARGO_BIN_EXE_driver"))
        .args(["history", "--event-log"])
        .arg(dir.path())
        .args(["--ui", &format!("0.0.0.0:{port}")])
        .env_remove("DISCNN_SECRET")
        .output()
        .unwrap();
    assert_eq!(open.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&open.stderr).contains("secret"));

    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let p = history_at(
        dir.path(),
        &format!("0.0.0.0:{port}"),
        &["--secret-file", secret.to_str().unwrap()],
    );
    let addr = format!("127.0.0.1:{}", p.ui_address().rsplit(':').next().unwrap());
    let denied = get(&addr, "/api/v1/applications");
    assert_eq!(denied.status, 401);
    assert!(denied
        .header("www-authenticate")
        .is_some_and(|h| h.starts_with("Basic")));
    use base64::Engine as _;
    let basic = |pw: &str| {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("anyone:{pw}"));
        format!("Basic {token}")
    };
    assert_eq!(
        get_with(&addr, "/api/v1/applications", Some(&basic("wrong"))).status,
        401
    );
    let ok = get_with(&addr, "/api/v1/applications", Some(&basic(SECRET)));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        get_with(&addr, "/metrics", Some(&basic(SECRET))).status,
        200
    );

    // A busy port: the next one up.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let q = history_at(dir.path(), &format!("127.0.0.1:{busy_port}"), &[]);
    let got: u16 = q.ui_address().rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        got > busy_port && got <= busy_port + 16,
        "{got} after {busy_port}"
    );
}
