//! Each naive program prints the same output as the engine's run of its workload (small sizes):
//! the property `bench/engine.sh` checks at full size, kept true between benchmark runs.

use discnn::bench::engine;
use discnn_engine::Context;
use std::process::Command;

fn naive(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_naive"))
        .args(args)
        .output()
        .expect("run naive");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON line");
    v["detail"]["output"]
        .as_str()
        .expect("an output")
        .to_string()
}

fn engine_output(workload: &str, size: u64) -> String {
    let ctx = Context::local(2).expect("a local context");
    let dir = tempfile::tempdir().unwrap();
    let r = engine::run(&ctx, workload, size, dir.path()).expect("the engine's run");
    r.detail["output"].as_str().expect("an output").to_string()
}

#[test]
fn wordcount_matches_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let words = dir.path().join("words.txt");
    engine::write_words(&words, 20_000, 42).unwrap();
    let out = dir.path().join("counts.txt");
    let got = naive(&["w1", words.to_str().unwrap(), out.to_str().unwrap()]);
    assert_eq!(got, engine_output("w1", 20_000));
    assert!(got.starts_with("lines "), "{got}");
}

#[test]
fn logistic_regression_matches_the_engine() {
    assert_eq!(naive(&["w2", "20000"]), engine_output("w2", 20_000));
}

#[test]
fn group_and_sort_match_the_engine() {
    for w in ["w3-group", "w3-sort"] {
        let got = naive(&[w, "50000"]);
        assert_eq!(got, engine_output(w, 50_000), "{w}");
    }
    assert!(naive(&["w3-sort", "50000"]).contains("sorted true"));
}
