//! The `driver` binary as a user runs it: wordcount output against a std-only reference, exit
//! codes, option placement, and JSON on stdout.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

fn driver(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_driver"))
        .args(args)
        .output()
        .expect("run driver")
}

fn reference(text: &str) -> String {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for w in text.split(char::is_whitespace).filter(|w| !w.is_empty()) {
        *counts.entry(w).or_default() += 1;
    }
    let mut v: Vec<(&str, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.iter().map(|(w, c)| format!("{w}\t{c}\n")).collect()
}

fn read_parts(dir: &Path) -> String {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("part-"))
        .collect();
    names.sort();
    assert!(dir.join("_SUCCESS").exists());
    names
        .iter()
        .map(|n| std::fs::read_to_string(dir.join(n)).unwrap())
        .collect()
}

fn input_text() -> String {
    // Unicode White_Space separates words: NBSP, THIN SPACE, IDEOGRAPHIC SPACE, tabs, CRLF.
    let mut t = String::new();
    for i in 0..3000 {
        t.push_str(&format!(
            "w{} b\u{a0}c\u{2009}d\u{3000}é\tZ z w{}\r\n",
            i % 97,
            i % 13
        ));
    }
    t.push_str("last line without newline ünïcode");
    t
}

#[test]
fn wordcount_matches_a_plain_rust_reference_in_global_order() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let text = input_text();
    std::fs::write(&input, &text).unwrap();
    for (i, master) in ["local[1]", "local[2]", "local[3]"].iter().enumerate() {
        let out = dir.path().join(format!("out{i}"));
        let o = driver(&[
            "submit",
            "--master",
            master,
            "wordcount",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--no-progress",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(read_parts(&out), reference(&text), "{master}");
    }
}

#[test]
fn options_go_before_or_after_the_job_and_json_is_one_object() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a b a\n").unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let before = driver(&[
        "submit",
        "--master",
        "local[2]",
        "--json",
        "wordcount",
        "--input",
        input.to_str().unwrap(),
        "--output",
        a.to_str().unwrap(),
    ]);
    let after = driver(&[
        "submit",
        "wordcount",
        "--input",
        input.to_str().unwrap(),
        "--output",
        b.to_str().unwrap(),
        "--master",
        "local[2]",
        "--json",
    ]);
    for o in [&before, &after] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let stdout = String::from_utf8(o.stdout.clone()).unwrap();
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["distinct_words"], 2);
    }
    assert_eq!(read_parts(&a), "a\t2\nb\t1\n");
    assert_eq!(read_parts(&a), read_parts(&b));
}

#[test]
fn bad_input_exits_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "x\n").unwrap();
    let out = dir.path().join("out");

    let missing = driver(&[
        "submit",
        "wordcount",
        "--input",
        "/no/such/file",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/no/such/file"));
    assert!(!out.exists());

    // A path through a regular file cannot be read (ENOTDIR), even by root.
    let through_file = format!("{}/x", input.display());
    let unreadable = driver(&[
        "submit",
        "wordcount",
        "--input",
        &through_file,
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        unreadable.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&unreadable.stderr)
    );
    assert!(String::from_utf8_lossy(&unreadable.stderr).contains("cannot read input"));
    assert!(!out.exists());

    std::fs::create_dir(&out).unwrap();
    let exists = driver(&[
        "submit",
        "wordcount",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(exists.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&exists.stderr).contains("already exists"));
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);

    let bad_master = driver(&[
        "submit",
        "wordcount",
        "--input",
        input.to_str().unwrap(),
        "--output",
        dir.path().join("o2").to_str().unwrap(),
        "--master",
        "local[zero]",
    ]);
    assert_eq!(bad_master.status.code(), Some(2));
    assert_eq!(
        driver(&["submit", "wordcount", "--bogus"]).status.code(),
        Some(2)
    );
    assert!(!dir.path().join("o2").exists());
}

#[test]
fn every_command_has_help_and_version() {
    for args in [
        vec!["--help"],
        vec!["submit", "--help"],
        vec!["submit", "wordcount", "--help"],
        vec!["bench", "engine", "--help"],
    ] {
        let o = driver(&args);
        assert!(o.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Usage"),
            "{args:?}"
        );
    }
    for args in [vec!["--version"], vec!["submit", "--version"]] {
        let o = driver(&args);
        assert!(o.status.success());
        let s = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            s.contains(env!("CARGO_PKG_VERSION")) && s.contains("registry"),
            "{s}"
        );
    }
    let exec = |a: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_executor"))
            .args(a)
            .output()
            .unwrap()
    };
    assert!(exec(&["--help"]).status.success());
    let v = exec(&["--version"]);
    assert!(v.status.success());
    let dv = driver(&["--version"]);
    let tail = |o: &Output| {
        String::from_utf8_lossy(&o.stdout)
            .split_once(' ')
            .map(|x| x.1.to_string())
    };
    assert_eq!(
        tail(&v),
        tail(&dv),
        "driver and executor carry the same fingerprint"
    );
}
