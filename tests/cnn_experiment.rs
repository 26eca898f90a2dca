//! `driver submit cnn-experiment` on tiny synthetic data: each experiment writes report.md with
//! the measured rows and the paper's figures beside them, and its SVG chart.

use discnn_cnn::cifar;
use std::path::Path;
use std::process::Command;

fn experiment(which: &str, data: &Path, out: &Path, extra: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_driver"))
        .args([
            "submit",
            "--master",
            "local[2]",
            "--no-progress",
            "cnn-experiment",
            which,
        ])
        .args([
            "--epochs",
            "2",
            "--seeds",
            "2",
            "--batch-size",
            "4",
            "--train-limit",
            "48",
        ])
        .args(extra)
        .arg("--data")
        .arg(data)
        .arg("--output")
        .arg(out)
        .env("DISCNN_EXECUTOR_BIN", env!("CARGO_BIN_EXE_executor"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let svg = std::fs::read_to_string(out.join(format!("{which}.svg"))).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    std::fs::read_to_string(out.join("report.md")).unwrap()
}

/// The table rows above the Runs section (headers and separators left out).
fn rows(report: &str) -> Vec<Vec<String>> {
    let body = report.split("\n## Runs").next().unwrap_or_default();
    let lines: Vec<&str> = body.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter(|(i, l)| {
            l.starts_with("| ") && !lines.get(i + 1).is_some_and(|n| n.starts_with("|---"))
        })
        .map(|(_, l)| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn the_three_experiments_write_their_reports_and_charts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    cifar::write_synthetic_folder(&data, 12, 10, 13).unwrap();

    let t1 = experiment(
        "table1",
        &data,
        &dir.path().join("t1"),
        &["--validation", "8"],
    );
    let r = rows(&t1);
    // Cross-entropy: random, the PyTorch peer's (not run), kmeans, dis; squared: random, dis.
    assert_eq!(r.len(), 6, "{t1}");
    assert_eq!(r[0][0], "random");
    assert!(r[1][1].starts_with("not run"), "{t1}");
    assert_eq!(
        (r[3][0].as_str(), r[3].last().unwrap().as_str()),
        ("dis", "76.25")
    );
    assert!(t1.contains("loss cross-entropy") && t1.contains("squared, formula 3"));
    assert!(t1.contains("| 2 of 2 |"), "both seeds finished: {t1}");

    let t2 = experiment(
        "table2",
        &data,
        &dir.path().join("t2"),
        &["--validation", "8"],
    );
    let r = rows(&t2);
    assert_eq!(
        r.len(),
        10,
        "six cells, three ablations, the plain CNN: {t2}"
    );
    assert_eq!(r[4][..3], ["dis", "0.25", "0.5"]);
    assert_eq!(r[4].last().unwrap(), "78.8");
    assert_eq!(r[9][..4], ["random", "0", "— (mean)", "the plain CNN"]);

    let sp = experiment(
        "speedup",
        &data,
        &dir.path().join("sp"),
        &["--max-executors", "2"],
    );
    let r = rows(&sp);
    assert_eq!(r.len(), 4, "two sizes × n = 1, 2: {sp}");
    assert_eq!(r[0][3], "1.00", "t1/t1");
    assert_eq!(r[1][1], "2");
}

/// The report with what may differ between two honest runs of it taken out: the command (its
/// --output), wall times (the "wall time (s)" columns) and the Runs section.
fn figures_only(report: &str) -> String {
    let body = report.split("\n## Runs").next().unwrap_or_default();
    let mut out = String::new();
    let mut wall: Option<usize> = None;
    for line in body.lines().filter(|l| !l.starts_with("Command:")) {
        if !line.starts_with('|') {
            wall = None;
            out.push_str(line);
        } else {
            let mut cells: Vec<&str> = line.split('|').collect();
            if let Some(i) = cells.iter().position(|c| c.trim() == "wall time (s)") {
                wall = Some(i);
            } else if let Some(i) = wall.filter(|&i| i < cells.len() && !line.starts_with("|---")) {
                cells[i] = " ";
            }
            out.push_str(&cells.join("|"));
        }
        out.push('\n');
    }
    out
}

/// Metrics lines written so far by all of an experiment's runs, finished or not.
fn lines_written(out: &Path) -> usize {
    let Ok(dirs) = std::fs::read_dir(out.join("runs")) else {
        return 0;
    };
    dirs.flatten()
        .filter_map(|d| std::fs::read_to_string(d.path().join("metrics.jsonl")).ok())
        .map(|t| t.lines().count())
        .sum()
}

#[test]
fn an_experiment_stopped_twice_ends_with_the_figures_of_one_that_was_not() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    cifar::write_synthetic_folder(&data, 100, 10, 21).unwrap();
    let command = |out: &Path, log: &Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_driver"));
        c.args([
            "submit",
            "--master",
            "local[2]",
            "--no-progress",
            "cnn-experiment",
            "table1",
        ])
        .args([
            "--epochs",
            "3",
            "--seeds",
            "1",
            "--squared-inits",
            "--batch-size",
            "4",
        ])
        .args([
            "--train-limit",
            "408",
            "--validation",
            "8",
            "--partitions",
            "2",
        ])
        .arg("--data")
        .arg(&data)
        .arg("--output")
        .arg(out)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
        c
    };
    let whole = dir.path().join("whole");
    let log = dir.path().join("whole.log");
    assert!(
        command(&whole, &log).status().unwrap().success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );

    let stopped = dir.path().join("stopped");
    let logs: Vec<_> = (0..3)
        .map(|i| dir.path().join(format!("stopped{i}.log")))
        .collect();
    for (at, log) in [2, 5].into_iter().zip(&logs) {
        let mut child = command(&stopped, log).spawn().unwrap();
        let start = std::time::Instant::now();
        while lines_written(&stopped) < at {
            assert!(
                child.try_wait().unwrap().is_none(),
                "ended before line {at}"
            );
            assert!(start.elapsed().as_secs() < 120, "no line {at} in 120 s");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            lines_written(&stopped) < 9,
            "stopped after the last line: nothing to resume"
        );
    }
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    assert!(
        command(&stopped, &logs[2]).status().unwrap().success(),
        "{}",
        read(&logs[2])
    );
    let second = read(&logs[1]);
    assert!(
        second.contains("continuing from its checkpoint"),
        "{second}"
    );
    let third = read(&logs[2]);
    assert!(third.contains("finished, skipped"), "{third}");
    let (a, b) = (
        read(&whole.join("report.md")),
        read(&stopped.join("report.md")),
    );
    assert!(!b.contains("Partial"), "{b}");
    assert_eq!(figures_only(&a), figures_only(&b), "{a}\n---\n{b}");
    // Beyond the report: every run's every epoch, timings aside, as if never stopped.
    let epochs = |dir: &Path, run: &str| -> Vec<serde_json::Value> {
        read(&dir.join("runs").join(run).join("metrics.jsonl"))
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                let o = v.as_object_mut().unwrap();
                for k in ["wall_s", "images_per_s", "rss_bytes"] {
                    o.remove(k);
                }
                v
            })
            .collect()
    };
    for run in [
        "table1-random-seed0",
        "table1-kmeans-seed0",
        "table1-dis-seed0",
    ] {
        let (x, y) = (epochs(&whole, run), epochs(&stopped, run));
        assert_eq!(x.len(), 3);
        assert_eq!(x, y, "{run}");
    }
}
