//! The experiment runner on tiny synthetic data: a failed run is reported and the others
//! still run; finished runs are skipped only when their digests and options hold; the report
//! is a function of the files on disk.

use discnn_cnn::cifar;
use discnn_cnn::dis::init::InitMethod;
use discnn_cnn::dis::job::JobError;
use discnn_cnn::dis::Recipe;
use discnn_cnn::experiment::{self, report, ExperimentConfig, Which};
use discnn_cnn::layers::Loss;
use discnn_engine::Context;
use std::path::Path;

fn config(data: &Path, out: &Path) -> ExperimentConfig {
    ExperimentConfig {
        which: Which::Table1,
        data: data.to_path_buf(),
        output: out.to_path_buf(),
        epochs: 2,
        seeds: 1,
        loss: Loss::CrossEntropy,
        train_limit: Some(40),
        partitions: 2,
        recipe: Recipe {
            batch_size: 4,
            ..Recipe::default()
        },
        init: InitMethod::Random,
        validation: 8,
        max_executors: 1,
        squared_inits: vec![],
        checkpoint_every: 1,
        command: "driver submit cnn-experiment table1 (test)".into(),
    }
}

fn run(ctx: &Context, cfg: &ExperimentConfig) -> (Result<std::path::PathBuf, JobError>, String) {
    let mut log = String::new();
    let r = experiment::run(ctx, cfg, &mut |l| {
        log.push_str(&l);
        log.push('\n')
    });
    (r, log)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn a_failed_run_is_reported_and_not_fatal_and_a_rerun_does_only_what_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    cifar::write_synthetic_folder(&data, 10, 10, 3).unwrap();
    let out = dir.path().join("t1");
    let cfg = config(&data, &out);
    let ctx = Context::local(2).unwrap();
    // A file where the kmeans run's work directory must go: that run cannot start.
    std::fs::create_dir_all(out.join("runs")).unwrap();
    let blocker = out.join("runs/table1-kmeans-seed0.in-progress");
    std::fs::write(&blocker, "in the way").unwrap();
    let (r, _) = run(&ctx, &cfg);
    match r {
        Err(JobError::RunsFailed { failed, total, .. }) => assert_eq!((failed, total), (1, 3)),
        other => panic!("expected one failed run, got {other:?}"),
    }
    let text = read(&out.join("report.md"));
    assert!(
        text.contains("**Partial:** 2 of 3 runs finished, 1 failed"),
        "{text}"
    );
    assert!(text.contains("| kmeans | 0 of 1 (1 failed) |"), "{text}");
    assert!(text.contains("| random | 1 of 1 |"), "{text}");
    assert!(text.contains("| table1-kmeans-seed0 | failed: "), "{text}");
    assert!(out.join("runs/table1-kmeans-seed0.failed").exists());

    std::fs::remove_file(&blocker).unwrap();
    let (r, log) = run(&ctx, &cfg);
    r.unwrap();
    assert!(
        log.contains("table1-random-seed0: finished, skipped"),
        "{log}"
    );
    assert!(log.contains("table1-dis-seed0: finished, skipped"), "{log}");
    assert!(
        log.contains("run table1-kmeans-seed0 (1 of 1 to do)"),
        "{log}"
    );
    let text = read(&out.join("report.md"));
    assert!(
        !text.contains("Partial") && !text.contains("failed"),
        "{text}"
    );
    assert!(!out.join("runs/table1-kmeans-seed0.failed").exists());
}

#[test]
fn finished_runs_are_skipped_only_as_they_were_made() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    cifar::write_synthetic_folder(&data, 10, 10, 4).unwrap();
    let out = dir.path().join("t1");
    let cfg = config(&data, &out);
    let ctx = Context::local(2).unwrap();
    run(&ctx, &cfg).0.unwrap();
    let written = read(&out.join("report.md"));

    // A results tree keeps no models: a finished run without one is still finished.
    std::fs::remove_file(out.join("runs/table1-dis-seed0/model.safetensors")).unwrap();
    let (r, log) = run(&ctx, &cfg);
    r.unwrap();
    assert_eq!(log.matches("finished, skipped").count(), 3, "{log}");
    assert_eq!(read(&out.join("report.md")), written);

    // The same directory asked for with other options: refused, naming the run and option.
    let longer = ExperimentConfig {
        epochs: 3,
        ..cfg.clone()
    };
    let err = run(&ctx, &longer).0.unwrap_err().to_string();
    assert!(
        err.contains("table1-random-seed0") && err.contains("epochs was 2, now 3"),
        "{err}"
    );

    // Another experiment running on the same directory: refused while it holds the lock.
    let other = std::fs::File::open(out.join(".lock")).unwrap();
    other.lock().unwrap();
    let err = run(&ctx, &cfg).0.unwrap_err().to_string();
    assert!(err.contains("another cnn-experiment is running"), "{err}");
    other.unlock().unwrap();

    // A metrics file changed after the run: refused by its digest.
    let metrics = out.join("runs/table1-kmeans-seed0/metrics.jsonl");
    let changed = read(&metrics).replacen("\"epoch\":1", "\"epoch\":7", 1);
    std::fs::write(&metrics, changed).unwrap();
    let err = run(&ctx, &cfg).0.unwrap_err().to_string();
    assert!(
        err.contains("metrics.jsonl") && err.contains("SHA-256"),
        "{err}"
    );
}

#[test]
fn the_report_and_charts_are_rebuilt_from_the_files_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    cifar::write_synthetic_folder(&data, 10, 10, 5).unwrap();
    let out = dir.path().join("t2");
    let cfg = ExperimentConfig {
        which: Which::Table2,
        epochs: 2,
        ..config(&data, &out)
    };
    let ctx = Context::local(2).unwrap();
    run(&ctx, &cfg).0.unwrap();
    let text = read(&out.join("report.md"));
    assert_eq!(text.matches("| 1 of 1 |").count(), 10, "{text}");
    assert!(
        text.contains("mean recall equals overall accuracy"),
        "{text}"
    );
    // Rebuilt from experiment.json and the runs (another process, another day).
    let loaded = ExperimentConfig::load(&out).unwrap();
    let again = report::render(&loaded).unwrap();
    assert_eq!(again.report, text);
    for (name, svg) in &again.charts {
        assert_eq!(&read(&out.join(name)), svg, "{name}");
    }
}
