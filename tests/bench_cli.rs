//! `driver bench` as users call it: cnn-train's JSON keys and usage errors, and w0-leader (a
//! Dis-CNN iteration without its compute) on both kinds of master.

use std::process::Command;

fn driver() -> Command {
    Command::new(env!("CARGO_BIN_EXE_driver"))
}

#[test]
fn cnn_train_prints_one_json_object_with_the_named_keys() {
    let out = driver()
        .args(["bench", "cnn-train", "--batch", "16", "--threads", "1"])
        .args(["--reps", "1", "--images", "32", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["train_img_per_s", "infer_img_per_s", "gflops"] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {v}");
    }
    assert_eq!(v["params"], 12_448);
    assert_eq!(v["flop_per_img"], 3_852_480);
}

#[test]
fn cnn_train_usage_errors_exit_2() {
    for args in [vec!["--batch", "0"], vec!["--spec", "conv5x8,warp,dense10"]] {
        let out = driver()
            .args(["bench", "cnn-train"])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
}

#[test]
fn w0_leader_sums_each_jobs_vectors_and_a_local_cluster_stops_without_warnings() {
    for master in ["local[2]", "local-cluster[2,1]"] {
        let out = driver()
            .args(["bench", "engine", "--workload", "w0-leader", "--size", "20"])
            .args(["--master", master, "--json"])
            .env("DISCNN_EXECUTOR_BIN", env!("CARGO_BIN_EXE_executor"))
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The workload checks every job's sum itself and fails the run on a wrong one.
        assert!(out.status.success(), "{master}: {stderr}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["workload"], "w0-leader");
        assert!(v["per_unit_ms"].as_f64().is_some_and(|x| x > 0.0), "{v}");
        // Stopping the executors it started is the end of the run, not a loss to warn about.
        assert!(!stderr.contains("WARN"), "{master}: {stderr}");
    }
}
