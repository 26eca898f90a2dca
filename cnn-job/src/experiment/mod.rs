//! `cnn-experiment {table1|table2|speedup}`: the paper's experiments (section 4), each a set
//! of cnn-job runs on the same engine, summarised in `DIR/report.md` with SVG charts and the
//! paper's figures beside the measured ones. Epochs and seeds are options, so a reduced
//! version runs in minutes; what is reported is what was measured, with its settings.
//!
//! An experiment survives being stopped: every run checkpoints, the same command on the same
//! `--output` skips the finished runs (checked by digest and by their options), continues an
//! interrupted one from its checkpoint and rewrites the report after every run, marked
//! partial until all are done. A failed run is reported, not fatal to the others.

pub mod chart;
pub mod plan;
pub mod record;
pub mod report;

use crate::dis::init::InitMethod;
use crate::dis::job::{self, JobError};
use crate::dis::{checkpoint, output, DisConfig, Recipe};
use crate::layers::Loss;
use discnn_engine::{Config, Context};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Which {
    Table1,
    Table2,
    Speedup,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExperimentConfig {
    pub which: Which,
    pub data: PathBuf,
    pub output: PathBuf,
    pub epochs: usize,
    pub seeds: u64,
    pub loss: Loss,
    pub train_limit: Option<usize>,
    pub partitions: usize,
    pub recipe: Recipe,
    /// Initialisation of the speedup runs (the tables name their own).
    pub init: InitMethod,
    /// The validation slice: the last N of the training images used.
    pub validation: usize,
    /// Speedup: 1..=N executors.
    pub max_executors: usize,
    /// Table 1: the initialisations also run with the paper's squared loss.
    pub squared_inits: Vec<InitMethod>,
    pub checkpoint_every: usize,
    /// The command line that runs (and continues) the experiment, as the report prints it.
    pub command: String,
}

/// The settings file beside the report, from which the report can be rebuilt.
pub const SETTINGS: &str = "experiment.json";

impl ExperimentConfig {
    /// Reads the settings of the experiment in `dir` (its output is taken to be `dir`).
    pub fn load(dir: &std::path::Path) -> Result<ExperimentConfig, JobError> {
        let path = dir.join(SETTINGS);
        let bytes = std::fs::read(&path).map_err(|source| JobError::Io {
            path: path.clone(),
            source,
        })?;
        let mut cfg: ExperimentConfig = serde_json::from_slice(&bytes)
            .map_err(|e| JobError::BadOption(format!("{}: {e}", path.display())))?;
        cfg.output = dir.to_path_buf();
        Ok(cfg)
    }
}

/// An error and its causes on one line, as a failed run's file keeps it.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        source = s.source();
    }
    text
}

fn write(path: &std::path::Path, text: &str) -> Result<(), JobError> {
    std::fs::write(path, text).map_err(|source| JobError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Holds `DIR/.lock` for as long as the returned file lives: two experiments on one output
/// would run the same runs into the same directories. The OS drops the lock with the process,
/// so a killed experiment leaves nothing to clean up.
fn lock(dir: &std::path::Path) -> Result<std::fs::File, JobError> {
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| JobError::Io {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(JobError::BadOption(format!(
            "another cnn-experiment is running on {} (it holds {})",
            dir.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(source)) => Err(JobError::Io { path, source }),
    }
}

/// Runs what is not yet done of the experiment; returns the report's path.
pub fn run(
    ctx: &Context,
    cfg: &ExperimentConfig,
    log: &mut dyn FnMut(String),
) -> Result<PathBuf, JobError> {
    if cfg.seeds == 0 || cfg.epochs == 0 || cfg.checkpoint_every == 0 {
        return Err(JobError::BadOption(
            "--seeds, --epochs and --checkpoint-every must be at least 1".into(),
        ));
    }
    // Bad data and a validation slice that leaves nothing are refused once, not once per run.
    let n_all = crate::cifar::count(&cfg.data, crate::cifar::Split::Train)?;
    let n_used = cfg.train_limit.map_or(n_all, |l| l.min(n_all));
    if cfg.which != Which::Speedup && cfg.validation >= n_used {
        return Err(JobError::BadOption(format!(
            "--validation {} leaves no training images (of {n_used})",
            cfg.validation
        )));
    }
    let runs_dir = cfg.output.join("runs");
    std::fs::create_dir_all(&runs_dir).map_err(|source| JobError::Io {
        path: runs_dir.clone(),
        source,
    })?;
    let _lock = lock(&cfg.output)?;
    let settings =
        serde_json::to_string_pretty(cfg).map_err(|e| JobError::BadOption(e.to_string()))?;
    write(&cfg.output.join(SETTINGS), &(settings + "\n"))?;
    let rows = plan::rows(cfg);
    let planned = plan::runs(&rows);
    // Every finished run is checked before anything runs: one made otherwise stops the
    // experiment rather than be mixed into its tables.
    let mut todo = Vec::new();
    for r in &planned {
        match record::finished(&cfg.output, r)? {
            Some(_) => log(format!("{}: finished, skipped", r.name)),
            None => todo.push(*r),
        }
    }
    let mut report = report::write(cfg)?;
    let mut failed = 0;
    for (i, r) in todo.iter().enumerate() {
        let pending = output::in_progress(&record::run_dir(&cfg.output, &r.name));
        let resume = checkpoint::exists(&pending)?;
        let config = DisConfig {
            resume,
            overwrite: !resume,
            ..r.config.clone()
        };
        log(format!(
            "run {} ({} of {} to do){}",
            r.name,
            i + 1,
            todo.len(),
            if resume {
                ", continuing from its checkpoint"
            } else {
                ""
            }
        ));
        let name = r.name.clone();
        let mut tagged = |l: String| log(format!("  {name}: {l}"));
        let result = match r.executors {
            Some(n) => Context::new(Config {
                master: format!("local-cluster[{n},1]"),
                app_name: "cnn-experiment".into(),
                executor_binary: ctx.config().executor_binary.clone(),
                // Watched as the experiment is (a UI, an event log): an application per run.
                listeners: ctx.config().listeners.clone(),
                ..Config::default()
            })
            .map_err(JobError::from)
            .and_then(|cluster| job::run(&cluster, &config, &mut tagged)),
            None => job::run(ctx, &config, &mut tagged),
        };
        let failed_file = record::failed_file(&cfg.output, &r.name);
        match result {
            Ok(_) => {
                if failed_file.exists() {
                    std::fs::remove_file(&failed_file).map_err(|source| JobError::Io {
                        path: failed_file.clone(),
                        source,
                    })?;
                }
            }
            Err(e) => {
                let text = chain(&e);
                log(format!("{}: failed: {text}", r.name));
                write(&failed_file, &(text + "\n"))?;
                failed += 1;
            }
        }
        report = report::write(cfg)?;
    }
    if failed > 0 {
        return Err(JobError::RunsFailed {
            failed,
            total: planned.len(),
            report,
        });
    }
    Ok(report)
}
