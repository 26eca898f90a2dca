//! The executor's work directory, and the sweep of those dead executors left behind.

use crate::cluster::ClusterError;
use std::path::{Path, PathBuf};

/// This executor's own directory: `executor-<pid>-<random>` under `--work-dir` (or the system
/// temporary directory), marked with a `.discnn-executor` file holding the pid. At start-up,
/// directories marked by executors whose process is gone are swept; nothing unmarked is touched.
pub(super) struct WorkDir {
    pub(super) path: PathBuf,
    _dir: tempfile::TempDir,
}

const MARKER: &str = ".discnn-executor";

impl WorkDir {
    pub(super) fn create(parent: Option<&Path>) -> Result<WorkDir, ClusterError> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let io = |path: &Path, source| ClusterError::Io {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(&parent).map_err(|e| io(&parent, e))?;
        sweep(&parent);
        let dir = tempfile::Builder::new()
            .prefix(&format!("executor-{}-", std::process::id()))
            .tempdir_in(&parent)
            .map_err(|e| io(&parent, e))?;
        // Written whole under another name, then renamed: an executor sweeping at the same
        // moment sees either no marker or a complete one, never an empty file.
        let marker = dir.path().join(MARKER);
        let partial = dir.path().join(".discnn-executor.partial");
        std::fs::write(&partial, std::process::id().to_string()).map_err(|e| io(&partial, e))?;
        std::fs::rename(&partial, &marker).map_err(|e| io(&marker, e))?;
        Ok(WorkDir {
            path: dir.path().to_path_buf(),
            _dir: dir,
        })
    }
}

fn sweep(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let marker = e.path().join(MARKER);
        let Ok(pid) = std::fs::read_to_string(&marker) else {
            continue;
        };
        let Ok(pid) = pid.trim().parse::<u32>() else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!("removing {} left by a dead executor", e.path().display());
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
