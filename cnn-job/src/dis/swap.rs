//! Replacing one directory by another with two renames, so that a process killed at any
//! instant leaves a state the next one can finish: `DIR` is moved aside to `DIR.old`, the new
//! directory renamed to `DIR`, and `DIR.old` removed. A rename of a directory onto a
//! non-empty one fails (ENOTEMPTY), so a kill inside that sequence must be undone before the
//! next swap: [`recover`] does it, and every reader and writer calls it first.
//!
//! | killed                              | left behind          | recover            |
//! |-------------------------------------|----------------------|--------------------|
//! | after `DIR` → `DIR.old`             | `DIR.old` only       | renames it back    |
//! | while removing `DIR.old`            | `DIR` and `DIR.old`  | removes `DIR.old`  |

use std::path::{Path, PathBuf};

/// The failing path and its error, for the caller to wrap in its own error type.
pub type Failure = (PathBuf, std::io::Error);

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> Failure + '_ {
    move |e| (path.to_path_buf(), e)
}

/// Where `dir` sits while it is being replaced.
pub fn aside(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_os_string();
    name.push(".old");
    PathBuf::from(name)
}

/// Finishes or undoes a swap that a killed process left half done (see the module's table).
pub fn recover(dir: &Path) -> Result<(), Failure> {
    let old = aside(dir);
    if !old.exists() {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(&old).map_err(at(&old))
    } else {
        std::fs::rename(&old, dir).map_err(at(&old))
    }
}

/// Puts `fresh` in place of `dir` (which may be absent).
pub fn replace(fresh: &Path, dir: &Path) -> Result<(), Failure> {
    recover(dir)?;
    let old = aside(dir);
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(at(dir))?;
    }
    std::fs::rename(fresh, dir).map_err(at(fresh))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(at(&old))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(path: &Path, content: &str) {
        std::fs::create_dir_all(path).unwrap();
        std::fs::write(path.join("f"), content).unwrap();
    }

    fn content(path: &Path) -> String {
        std::fs::read_to_string(path.join("f")).unwrap()
    }

    #[test]
    fn a_swap_killed_after_moving_the_old_aside_is_undone() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("checkpoint");
        dir_with(&aside(&dir), "epoch 2");
        recover(&dir).unwrap();
        assert_eq!(content(&dir), "epoch 2");
        assert!(!aside(&dir).exists());
    }

    #[test]
    fn a_swap_killed_while_removing_the_old_is_finished() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("checkpoint");
        dir_with(&dir, "epoch 3");
        dir_with(&aside(&dir), "epoch 2");
        // Without recovery the next swap's first rename fails: ENOTEMPTY.
        let fresh = t.path().join("checkpoint.new");
        dir_with(&fresh, "epoch 4");
        replace(&fresh, &dir).unwrap();
        assert_eq!(content(&dir), "epoch 4");
        assert!(!aside(&dir).exists() && !fresh.exists());
    }

    #[test]
    fn a_first_swap_needs_no_old_directory() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("out");
        let fresh = t.path().join("out.in-progress");
        dir_with(&fresh, "done");
        replace(&fresh, &dir).unwrap();
        assert_eq!(content(&dir), "done");
    }
}
