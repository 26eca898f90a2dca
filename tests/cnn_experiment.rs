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

fn rows(report: &str) -> Vec<Vec<String>> {
    report
        .lines()
        .filter(|l| {
            l.starts_with("| ")
                && !l.starts_with("| init")
                && !l.starts_with("| A ")
                && !l.starts_with("| training")
        })
        .map(|l| {
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
    assert_eq!(r.len(), 3, "{t1}");
    assert_eq!((r[0][0].as_str(), r[2][6].as_str()), ("Random", "76.25"));
    assert!(t1.contains("loss squared"), "the loss is reported");

    let t2 = experiment("table2", &data, &dir.path().join("t2"), &[]);
    let r = rows(&t2);
    assert_eq!(r.len(), 7, "{t2}");
    assert_eq!(r[4][..2], ["0.25", "0.5"]);
    assert_eq!(r[4][4], "78.8");
    assert!(r[6][0].starts_with("0 (plain"));

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
