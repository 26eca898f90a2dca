//! The output committer (Spark's, in miniature): a run writes into `DIR.in-progress` beside its
//! output directory and swaps it in by rename when it succeeds, so an `--overwrite` run that
//! fails or is killed leaves the previous DIR as it was. The in-progress directory is also where
//! the running job's checkpoints live: `--resume DIR` continues an interrupted run from there,
//! or extends a finished DIR through a copy of it. The last file written before the swap is
//! `SHA256SUMS` (as `sha256sum` writes it) over the run's files, so a finished run can be
//! checked later, by `sha256sum -c` or by an experiment deciding to skip it. Also what a run
//! writes beside its model: `run.json` and `metrics.jsonl`.

use super::job::JobError;
use super::{Aggregation, DisConfig};
use discnn_engine::EngineError;
use std::path::{Path, PathBuf};

/// Where a run in `output` writes until it commits.
pub fn in_progress(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".in-progress");
    output.with_file_name(name)
}

fn failed(path: &Path) -> impl FnOnce(std::io::Error) -> JobError + '_ {
    move |source| JobError::Output {
        path: path.to_path_buf(),
        source,
    }
}

/// Prepares the directory a run writes into and returns it. A new run needs DIR absent (or
/// `overwrite`) and no interrupted run's work in the way (or `overwrite`); a resumed one takes
/// the interrupted run's directory, else a copy of the finished DIR.
pub fn begin(output: &Path, overwrite: bool, resume: bool) -> Result<PathBuf, JobError> {
    let work = in_progress(output);
    super::swap::recover(output).map_err(swap_failed)?;
    if resume {
        if !work.exists() {
            if !output.is_dir() {
                return Err(JobError::BadOption(format!(
                    "--resume {}: no such run (neither it nor {} exists)",
                    output.display(),
                    work.display()
                )));
            }
            copy_dir(output, &work)?;
        }
        return Ok(work);
    }
    if work.exists() {
        if !overwrite {
            return Err(JobError::BadOption(format!(
                "an interrupted run's work is in {}: --resume {} continues it, --overwrite starts again",
                work.display(),
                output.display()
            )));
        }
        std::fs::remove_dir_all(&work).map_err(failed(&work))?;
    }
    if output.exists() && !overwrite {
        return Err(JobError::OutputExists(output.to_path_buf()));
    }
    std::fs::create_dir_all(&work).map_err(failed(&work))?;
    Ok(work)
}

/// The digest list a finished run carries.
pub const DIGESTS: &str = "SHA256SUMS";

/// Writes `DIR/SHA256SUMS` over the run's top-level files (the checkpoint has its own).
fn write_digests(dir: &Path) -> Result<(), JobError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(failed(dir))? {
        let entry = entry.map_err(failed(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().map_err(failed(dir))?.is_file() && name != DIGESTS {
            names.push(name);
        }
    }
    names.sort();
    let mut text = String::new();
    for name in names {
        let p = dir.join(&name);
        let bytes = std::fs::read(&p).map_err(failed(&p))?;
        text.push_str(&format!("{}  {name}\n", super::checkpoint::hex(&bytes)));
    }
    let p = dir.join(DIGESTS);
    std::fs::write(&p, text).map_err(failed(&p))
}

/// Checks a finished run's files against its `SHA256SUMS`. Every listed file must match;
/// those in `optional` may be absent (a results tree keeps no models). Returns why not.
pub fn verify_digests(dir: &Path, optional: &[&str]) -> Result<(), String> {
    let list = dir.join(DIGESTS);
    let text = std::fs::read_to_string(&list)
        .map_err(|e| format!("{}: {e} (not a finished run)", list.display()))?;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (digest, name) = line
            .split_once("  ")
            .ok_or_else(|| format!("{}: malformed line {line:?}", list.display()))?;
        if name.contains('/') || name.contains('\\') {
            return Err(format!(
                "{}: names a path outside it: {name}",
                list.display()
            ));
        }
        let p = dir.join(name);
        match std::fs::read(&p) {
            Ok(bytes) if super::checkpoint::hex(&bytes) == digest => {}
            Ok(_) => {
                return Err(format!(
                    "{}: its SHA-256 does not match {DIGESTS}",
                    p.display()
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && optional.contains(&name) => {}
            Err(e) => return Err(format!("{}: {e}", p.display())),
        }
    }
    Ok(())
}

/// Swaps the finished `work` in as `output`, replacing what was there.
pub fn commit(work: &Path, output: &Path) -> Result<(), JobError> {
    write_digests(work)?;
    super::swap::replace(work, output).map_err(swap_failed)
}

fn swap_failed((path, source): super::swap::Failure) -> JobError {
    JobError::Output { path, source }
}

/// Copies a run directory (files and one level of subdirectories, as a run writes them).
fn copy_dir(from: &Path, to: &Path) -> Result<(), JobError> {
    std::fs::create_dir_all(to).map_err(failed(to))?;
    for entry in std::fs::read_dir(from).map_err(failed(from))? {
        let entry = entry.map_err(failed(from))?;
        let dst = to.join(entry.file_name());
        if entry.file_type().map_err(failed(from))?.is_dir() {
            copy_dir(&entry.path(), &dst)?;
        } else {
            std::fs::copy(entry.path(), &dst).map_err(failed(&dst))?;
        }
    }
    Ok(())
}

/// The machine a run is on: its CPU model (from /proc/cpuinfo where there is one) and cores.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    /// The convolution kernels this machine ran (avx512, avx2, portable): results differ in
    /// the last bits between them.
    #[serde(default)]
    pub kernels: String,
    /// Epochs already done when this machine took the run over.
    pub from_epoch: usize,
}

impl Machine {
    pub fn this(from_epoch: usize) -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            kernels: format!("{:?}", crate::layers::conv_wide::simd()).to_lowercase(),
            from_epoch,
        }
    }
}

/// `DIR/run.json`: every option of the run, the training recipe in words, the build that ran
/// it and the machines it ran on, so a metrics file can always be traced to what produced
/// it. A resumed run (`resumed_at` = epochs done) keeps the machines before it.
pub fn write_run_json(
    cfg: &DisConfig,
    dir: &Path,
    resumed_at: Option<usize>,
) -> Result<(), JobError> {
    let path = dir.join("run.json");
    let mut machines: Vec<Machine> = match resumed_at {
        Some(_) => std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| serde_json::from_value(v.get("machines")?.clone()).ok())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let here = Machine::this(resumed_at.unwrap_or(0));
    let same =
        |m: &Machine| (&m.cpu, m.cores, &m.kernels) == (&here.cpu, here.cores, &here.kernels);
    if !machines.last().is_some_and(same) {
        machines.push(here);
    }
    let mut options = serde_json::to_value(cfg).map_err(|e| JobError::Output {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    if let Some(url) = &cfg.object_output {
        // Staged here, published there: the run's output is the URL.
        options["output"] = serde_json::Value::String(url.clone());
    }
    let v = serde_json::json!({
        "options": options,
        "recipe": recipe(cfg),
        "build": format!("discnn {}", discnn_engine::op::fingerprint()),
        "machines": machines,
    });
    let text = serde_json::to_string_pretty(&v).map_err(|e| EngineError::Codec(e.to_string()))?;
    std::fs::write(&path, text + "\n").map_err(failed(&path))
}

/// The training recipe in one line, as reports print it.
pub fn recipe(cfg: &DisConfig) -> String {
    format!(
        "loss {}, {} × {} partitions, aggregation {}",
        match cfg.loss {
            crate::layers::Loss::CrossEntropy => "cross-entropy",
            crate::layers::Loss::Squared => "squared",
        },
        cfg.recipe.describe(),
        cfg.partitions,
        match (cfg.aggregation, cfg.dis_divisor) {
            (Aggregation::Mean, _) => "mean".to_string(),
            (Aggregation::Dis, d) => format!(
                "dis (B {}, weights {}/{}, divisor {})",
                cfg.group_threshold,
                cfg.group_weights[0],
                cfg.group_weights[1],
                match d {
                    super::DisDivisor::N => "N",
                    super::DisDivisor::Weights => "weights",
                }
            ),
        },
    )
}

/// `metrics.jsonl`, new, or kept up to its first `epochs` lines when a run resumes.
pub fn open_metrics(path: &Path, epochs: usize) -> Result<std::fs::File, JobError> {
    let kept: String = if epochs == 0 {
        String::new()
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| {
                JobError::BadOption(format!(
                    "--resume: cannot read {} ({e}); the run's metrics must be beside its checkpoint",
                    path.display()
                ))
            })?
            .lines()
            .take(epochs)
            .map(|l| format!("{l}\n"))
            .collect()
    };
    std::fs::write(path, kept).map_err(failed(path))?;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(failed(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_overwrite_keeps_the_old_output_and_a_commit_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("model"), "old").unwrap();
        assert!(matches!(
            begin(&out, false, false),
            Err(JobError::OutputExists(_))
        ));
        let work = begin(&out, true, false).unwrap();
        assert_eq!(work, dir.path().join("run.in-progress"));
        std::fs::write(work.join("model"), "new").unwrap();
        // Killed here: the old output is intact, and a new run is told about the work.
        assert_eq!(std::fs::read_to_string(out.join("model")).unwrap(), "old");
        let err = begin(&out, false, false).unwrap_err().to_string();
        assert!(err.contains("--resume"), "{err}");
        // Resumed and finished.
        assert_eq!(begin(&out, false, true).unwrap(), work);
        commit(&work, &out).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("model")).unwrap(), "new");
        assert!(!work.exists() && !dir.path().join("run.old").exists());
        // Extending a finished run works on a copy until it commits.
        let work = begin(&out, false, true).unwrap();
        assert_eq!(std::fs::read_to_string(work.join("model")).unwrap(), "new");
    }
}
