//! What an experiment finds on disk for each run: finished (committed by the job, checked
//! against its `SHA256SUMS` and its options against the plan), failed (`runs/NAME.failed`
//! holds the error) or not done yet. An interrupted run's `runs/NAME.in-progress` is not a
//! result: it is where the run continues from.

use super::plan::PlannedRun;
use crate::dis::checkpoint;
use crate::dis::job::{EpochMetrics, JobError};
use crate::dis::output::{self, Machine};
use crate::dis::DisConfig;
use std::path::{Path, PathBuf};

/// The files a report reads; a results tree keeps these and leaves the model out.
pub const KEPT: [&str; 4] = [
    "metrics.jsonl",
    "run.json",
    "confusion.json",
    output::DIGESTS,
];

/// A run's finished outputs, as the report uses them.
#[derive(Debug, Clone)]
pub struct Finished {
    pub epochs: Vec<EpochMetrics>,
    pub machines: Vec<Machine>,
    pub build: String,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Finished(Finished),
    Failed(String),
    NotDone,
}

pub fn run_dir(output: &Path, name: &str) -> PathBuf {
    output.join("runs").join(name)
}

pub fn failed_file(output: &Path, name: &str) -> PathBuf {
    output.join("runs").join(format!("{name}.failed"))
}

fn bad(path: &Path, why: impl std::fmt::Display) -> JobError {
    JobError::BadOption(format!(
        "{}: {why}; move it away (or delete it) to run it again",
        path.display()
    ))
}

fn read_json(path: &Path) -> Result<serde_json::Value, JobError> {
    std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| bad(path, e))
}

/// Reads a finished run's metrics and run.json.
pub fn read_finished(dir: &Path) -> Result<Finished, JobError> {
    let metrics = dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&metrics).map_err(|e| bad(&metrics, e))?;
    let epochs = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<EpochMetrics>(l)
                .map_err(|e| bad(&metrics, format!("line {}: {e}", i + 1)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let run = dir.join("run.json");
    let v = read_json(&run)?;
    let machines = v
        .get("machines")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| bad(&run, e))?
        .unwrap_or_default();
    let build = v
        .get("build")
        .and_then(|b| b.as_str())
        .unwrap_or("unknown")
        .to_string();
    Ok(Finished {
        epochs,
        machines,
        build,
    })
}

/// The finished run of `planned`, if there is one: its digests must hold and its options
/// must be the plan's, else the experiment stops rather than mix in a different run.
pub fn finished(output: &Path, planned: &PlannedRun) -> Result<Option<Finished>, JobError> {
    let dir = run_dir(output, &planned.name);
    if !dir.is_dir() {
        return Ok(None);
    }
    output::verify_digests(&dir, &["model.safetensors"]).map_err(|e| bad(&dir, e))?;
    let run = dir.join("run.json");
    let v = read_json(&run)?;
    let made: DisConfig = v
        .get("options")
        .cloned()
        .ok_or_else(|| bad(&run, "no options"))
        .and_then(|o| serde_json::from_value(o).map_err(|e| bad(&run, e)))?;
    // A finished run's length is part of what it is, whatever the schedule.
    let with_epochs = |c: &DisConfig| {
        let mut v = checkpoint::options(c);
        if let Some(o) = v.as_object_mut() {
            o.insert("epochs".into(), c.epochs.into());
        }
        v
    };
    let (had, want) = (with_epochs(&made), with_epochs(&planned.config));
    if had != want {
        return Err(bad(
            &dir,
            format!(
                "made with other options than planned: {}",
                checkpoint::differences(&had, &want)
            ),
        ));
    }
    read_finished(&dir).map(Some)
}

/// What the report shows for `planned`: reads only, checks nothing beyond parsing (the
/// runner checks before it skips).
pub fn outcome(output: &Path, name: &str) -> Result<Outcome, JobError> {
    let dir = run_dir(output, name);
    if dir.is_dir() {
        return read_finished(&dir).map(Outcome::Finished);
    }
    let failed = failed_file(output, name);
    match std::fs::read_to_string(&failed) {
        Ok(text) => Ok(Outcome::Failed(text.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Outcome::NotDone),
        Err(e) => Err(JobError::Io {
            path: failed,
            source: e,
        }),
    }
}
