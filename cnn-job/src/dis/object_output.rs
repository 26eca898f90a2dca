//! A run whose `--output` is on object storage (`s3://bucket/prefix`): it trains into a local
//! staging directory exactly as a local run does, uploads each checkpoint (with the metrics so
//! far) to `URL/_in-progress/`, and when it ends publishes the finished directory at `URL`
//! (`objects::commit_dir`: a temporary prefix, copied into place, `_SUCCESS` last). `--resume`
//! downloads the interrupted run's `_in-progress/` (else the finished run) first.

use super::job::{JobError, Summary};
use super::DisConfig;
use discnn_engine::{objects, Context};
use std::path::{Path, PathBuf};

fn failed(url: &str) -> impl FnOnce(std::io::Error) -> JobError + '_ {
    move |source| JobError::Output {
        path: PathBuf::from(url),
        source,
    }
}

/// Where an object-storage run keeps its checkpoints while it runs.
fn in_progress(url: &str) -> String {
    format!("{url}/_in-progress")
}

/// Uploads a running job's work directory (its checkpoint and metrics so far) under the
/// output `url`'s `_in-progress/`.
pub fn mirror(work: &Path, url: &str) -> Result<(), JobError> {
    let to = in_progress(url);
    objects::upload_dir(work, &to).map_err(failed(&to))
}

pub fn run(
    ctx: &Context,
    cfg: &DisConfig,
    log: &mut dyn FnMut(String),
) -> Result<Summary, JobError> {
    let url = cfg
        .output
        .to_string_lossy()
        .trim_end_matches('/')
        .to_string();
    let staging = tempfile::Builder::new()
        .prefix("discnn-output-")
        .tempdir()
        .map_err(failed(&url))?;
    let local = staging.path().join("run");
    if cfg.resume {
        let pending = super::output::in_progress(&local);
        if !objects::download_prefix(&in_progress(&url), &pending).map_err(failed(&url))? {
            if !objects::download_prefix(&url, &local).map_err(failed(&url))? {
                return Err(JobError::BadOption(format!(
                    "--resume {url}: no such run (nothing at it or at {})",
                    in_progress(&url)
                )));
            }
            let _ = std::fs::remove_file(local.join("_SUCCESS"));
        }
    } else if objects::exists(&url).map_err(failed(&url))? {
        if !cfg.overwrite {
            return Err(JobError::OutputExists(cfg.output.clone()));
        }
        // An interrupted run's checkpoints are not this run's.
        objects::delete_prefix(&in_progress(&url)).map_err(failed(&url))?;
    }
    let local_cfg = DisConfig {
        output: local.clone(),
        object_output: Some(url.clone()),
        ..cfg.clone()
    };
    let mut summary = super::job::run_local(ctx, &local_cfg, log)?;
    objects::commit_dir(&local, &url).map_err(failed(&url))?;
    summary.model = PathBuf::from(format!("{url}/model.safetensors"));
    Ok(summary)
}
