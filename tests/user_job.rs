//! The template of a user's own job (examples/user-job), built as its README builds it — its own
//! crate, its own target directory — and run as its README runs it: on `local-cluster[2,1]`, and
//! on its own `my-driver serve` with two `my-executor`s, against the sum computed here. A stock
//! executor, which lacks the template's ops, is refused by that driver.

mod common;

use common::served::Served;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the template (dev profile) and returns its binaries' directory. Its own target
/// directory: `cargo test` holds the lock on this one while the tests run. CI builds it
/// beforehand with the same command into the workspace's target directory, where it reuses the
/// workspace's dependencies, and says where with `DISCNN_USER_JOB_TARGET`.
fn build_template() -> PathBuf {
    if let Some(dir) = std::env::var_os("DISCNN_USER_JOB_TARGET") {
        let bins = PathBuf::from(dir).join("debug");
        assert!(
            bins.join("my-driver").is_file() && bins.join("my-executor").is_file(),
            "DISCNN_USER_JOB_TARGET names no build of examples/user-job: {}",
            bins.display()
        );
        return bins;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = root.join("target").join("user-job");
    let o = Command::new(env!("CARGO"))
        .args(["build", "--locked", "--offline", "--manifest-path"])
        .arg(root.join("examples/user-job/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .output()
        .expect("run cargo");
    assert!(
        o.status.success(),
        "building examples/user-job failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    target.join("debug")
}

/// What `squares --n n` must print: per last digit of k², the sum of those squares.
fn expected(n: i64) -> (Vec<(i64, i64)>, i64) {
    let mut by_digit = std::collections::BTreeMap::new();
    for k in 1..=n {
        *by_digit.entry(k * k % 10).or_insert(0) += k * k;
    }
    let total = by_digit.values().sum();
    (by_digit.into_iter().collect(), total)
}

fn check(stdout: &[u8], n: i64) {
    let v: serde_json::Value = serde_json::from_slice(stdout).expect("one JSON object");
    let (by_digit, total) = expected(n);
    let got: Vec<(i64, i64)> = serde_json::from_value(v["by_digit"].clone()).unwrap();
    assert_eq!(got, by_digit);
    assert_eq!(v["total"], total);
}

#[test]
fn a_users_job_runs_on_local_cluster_and_on_its_own_served_cluster() {
    let bin = build_template();
    let (driver, executor) = (bin.join("my-driver"), bin.join("my-executor"));

    // Its help lists the user's job beside the built-in ones.
    let o = Command::new(&driver)
        .args(["submit", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(
        help.contains("squares") && help.contains("wordcount"),
        "{help}"
    );

    // local-cluster: my-driver starts my-executors (found beside it by name).
    let o = Command::new(&driver)
        .args(["submit", "--master", "local-cluster[2,1]", "--no-progress"])
        .args(["squares", "--n", "1000", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check(&o.stdout, 1000);

    // my-driver serve + two my-executors, a job submitted to them.
    let mut s = Served::start_programs((driver, executor), 2, Vec::new(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let o = s
        .submit(dir.path(), &["squares", "--n", "2000", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check(&o.stdout, 2000);

    // A stock executor cannot run this driver's plans: refused, and told why.
    let mut stock = s.spawn_executor(Path::new(env!("CARGO_BIN_EXE_executor")), &[]);
    let log = s.last_log("executor");
    let status = stock.wait().unwrap();
    assert!(!status.success());
    let err = std::fs::read_to_string(log).unwrap();
    assert!(err.contains("build mismatch"), "{err}");
    assert!(err.contains("built from the same crate"), "{err}");
}
