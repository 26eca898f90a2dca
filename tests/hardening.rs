//! What a careless user or an attacker tries first: servers that would be open to the network
//! without a secret, inputs that must exit 2 with one clear message, and limits on what one
//! command line may ask for.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn driver(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_driver"))
        .args(args)
        .env_remove("DISCNN_SECRET")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn without_a_secret_no_server_listens_beyond_loopback_unless_told_insecure() {
    for args in [
        &["serve", "--listen", "0.0.0.0:0"][..],
        &["serve", "--listen", "[::]:0"],
    ] {
        let o = driver(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("--insecure"), "{}", stderr(&o));
    }
    let o = Command::new(env!("CARGO_BIN_EXE_executor"))
        .args(["--driver", "127.0.0.1:9", "--listen", "0.0.0.0:0"])
        .env_remove("DISCNN_SECRET")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no shared secret"), "{}", stderr(&o));
    // Not an address at all: exit 2 naming it, not 1.
    let o = driver(&["serve", "--listen", "nonsense"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("nonsense"));
    // With --insecure it serves, and says what that means.
    let line = first_line_of_serve(&["serve", "--listen", "0.0.0.0:0", "--insecure"], None);
    assert!(line.contains("--insecure"), "{line}");
}

/// Starts `driver ARGS`, returns its stderr up to the line that says it serves, and stops it.
fn first_line_of_serve(args: &[&str], secret: Option<&Path>) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_driver"));
    cmd.args(args)
        .env_remove("DISCNN_SECRET")
        .stderr(Stdio::piped());
    if let Some(s) = secret {
        cmd.arg("--secret-file").arg(s);
    }
    let mut child = cmd.spawn().unwrap();
    let mut err = child.stderr.take().unwrap();
    let mut text = String::new();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while !text.contains("serving on") && start.elapsed() < Duration::from_secs(20) {
        match err.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    text
}

#[test]
fn a_secret_file_others_can_read_is_named_in_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret-for-this-test\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = first_line_of_serve(&["serve", "--listen", "127.0.0.1:0"], Some(&secret));
    assert!(text.contains("readable by group or others"), "{text}");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = first_line_of_serve(&["serve", "--listen", "127.0.0.1:0"], Some(&secret));
    assert!(!text.contains("readable by group"), "{text}");
}

#[test]
fn bad_paths_exit_2_with_the_os_error_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    discnn_cnn::cifar::write_synthetic_folder(&data, 4, 4, 1).unwrap();
    // An output below a regular file cannot be made, whoever runs the test (root included).
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let cnn = |args: &[&str]| {
        let data = data.to_str().unwrap();
        let common = ["submit", "cnn-job", "--data", data, "--batch-size", "4"];
        driver(&[&common[..], &["--schedule", "constant"], args].concat())
    };
    let out = file.join("out");
    let o = cnn(&["--output", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(out.to_str().unwrap()), "{err}");
    assert_eq!(err.matches("os error").count(), 1, "{err}");
    // --resume of a directory with a checkpoint but no metrics.jsonl.
    let run = dir.path().join("run");
    let o = cnn(&["--output", run.to_str().unwrap(), "--checkpoint-every", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_file(run.join("metrics.jsonl")).unwrap();
    let o = cnn(&["--resume", run.to_str().unwrap(), "--epochs", "2"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("metrics.jsonl"), "{}", stderr(&o));
}

#[test]
fn a_local_cluster_is_bounded() {
    let o = driver(&[
        "submit",
        "--master",
        "local-cluster[100000,1]",
        "wordcount",
        "--input",
        "x",
        "--output",
        "y",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("1–64"), "{}", stderr(&o));
}

/// An `--overwrite` run writes beside DIR and swaps in only when it succeeds: killed, it leaves
/// the previous DIR as it was, and `--resume DIR` continues it from its checkpoint.
#[test]
fn a_killed_overwrite_run_leaves_the_old_output_and_can_be_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    discnn_cnn::cifar::write_synthetic_folder(&data, 200, 10, 2).unwrap();
    let out = dir.path().join("run");
    let args = |epochs: &str| -> Vec<String> {
        [
            "submit",
            "--no-progress",
            "--master",
            "local[2]",
            "cnn-job",
            "--data",
            data.to_str().unwrap(),
            "--batch-size",
            "4",
            "--schedule",
            "constant",
            "--checkpoint-every",
            "1",
            "--epochs",
            epochs,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let first = Command::new(env!("CARGO_BIN_EXE_driver"))
        .args(args("1"))
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    let before = std::fs::read(out.join("model.safetensors")).unwrap();

    let mut killed = Command::new(env!("CARGO_BIN_EXE_driver"))
        .args(args("500"))
        .arg("--output")
        .arg(&out)
        .arg("--overwrite")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state = dir.path().join("run.in-progress/checkpoint/state.json");
    let start = Instant::now();
    while !state.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "no checkpoint");
        std::thread::sleep(Duration::from_millis(5));
    }
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        before,
        "the old output is intact"
    );
    // Resumed from the interrupted run's last checkpoint, one epoch more, then committed.
    let done: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let epochs = done["epoch"].as_u64().unwrap() + 1;
    let o = Command::new(env!("CARGO_BIN_EXE_driver"))
        .args(args(&epochs.to_string()))
        .arg("--resume")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("epoch {epochs}/{epochs}")));
    assert!(!dir.path().join("run.in-progress").exists());
    let lines = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(lines as u64, epochs);
    assert_ne!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        before
    );
}

/// A corrupt gzip input is the user's input: exit 2 at once, naming the file, not 4 retries
/// and exit 1.
#[test]
fn a_corrupt_gzip_input_exits_2_without_retries() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in 0..5000 {
        writeln!(gz, "line {i} of words").unwrap();
    }
    let mut bytes = gz.finish().unwrap();
    let mid = bytes.len() / 2;
    bytes[mid..mid + 16].fill(0xa5);
    let input = dir.path().join("in.txt.gz");
    std::fs::write(&input, &bytes).unwrap();
    let o = driver(&[
        "submit",
        "--no-progress",
        "--master",
        "local[2]",
        "wordcount",
        "--input",
        input.to_str().unwrap(),
        "--output",
        dir.path().join("out").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("in.txt.gz") && err.contains("gzip"), "{err}");
    assert!(err.contains("after 1 attempt"), "{err}");
}
