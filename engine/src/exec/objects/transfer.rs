//! Whole directories to and from object storage, for jobs that write their outputs locally and
//! publish them (cnn-job's model, metrics and checkpoints): upload, download, delete, and a
//! commit that copies into place from a temporary prefix with `_SUCCESS` last.

use super::{block_on, ObjectUrl};
use futures_util::TryStreamExt;
use std::path::Path;

fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn parse(url: &str) -> std::io::Result<ObjectUrl> {
    ObjectUrl::parse(url.trim_end_matches('/')).map_err(other)
}

/// Every object under `prefix` (the object named `prefix` itself included).
fn objects_under(prefix: &ObjectUrl) -> std::io::Result<Vec<object_store::ObjectMeta>> {
    block_on(prefix.store.list(Some(&prefix.key)).try_collect()).map_err(other)
}

/// Whether anything is stored at `url` or under it.
pub fn exists(url: &str) -> std::io::Result<bool> {
    let o = parse(url)?;
    Ok(o.size().map_err(other)?.is_some() || !objects_under(&o)?.is_empty())
}

/// Uploads the files of `dir` (and of its subdirectories) under `url`, keeping relative names.
pub fn upload_dir(dir: &Path, url: &str) -> std::io::Result<()> {
    let base = parse(url)?;
    upload_under(dir, &base)
}

fn upload_under(dir: &Path, base: &ObjectUrl) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if entry.file_type()?.is_dir() {
            upload_under(&entry.path(), &base.child(&name))?;
        } else {
            base.child(&name)
                .put(std::fs::read(entry.path())?)
                .map_err(other)?;
        }
    }
    Ok(())
}

/// Downloads every object under `url` into `dir` (created), keeping relative names; returns
/// whether there was any.
pub fn download_prefix(url: &str, dir: &Path) -> std::io::Result<bool> {
    let base = parse(url)?;
    let listed = objects_under(&base)?;
    for m in &listed {
        let Some(rel) = m.location.prefix_match(&base.key) else {
            continue;
        };
        let mut path = dir.to_path_buf();
        for part in rel {
            let part = part.as_ref();
            if part == ".." || part.contains('/') {
                return Err(other(format!("{url}: an object name leaves the prefix")));
            }
            path.push(part);
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if m.size == 0 {
            // An empty range is no range to S3.
            std::fs::write(&path, b"")?;
            continue;
        }
        let bytes = base
            .sibling(&m.location)
            .get_range(0, m.size)
            .map_err(other)?;
        std::fs::write(&path, bytes)?;
    }
    Ok(!listed.is_empty())
}

/// Deletes every object under `url`.
pub fn delete_prefix(url: &str) -> std::io::Result<()> {
    let base = parse(url)?;
    for m in objects_under(&base)? {
        base.sibling(&m.location).delete().map_err(other)?;
    }
    Ok(())
}

/// Publishes the finished directory `dir` at `url` as Spark's committers do on object stores:
/// uploaded under a temporary prefix, then copied into place, `_SUCCESS` written last. What was
/// at `url` before (an overwritten run) goes first, `_SUCCESS` before anything else, so no
/// reader ever takes a mix of two runs for a finished one.
pub fn commit_dir(dir: &Path, url: &str) -> std::io::Result<()> {
    let target = parse(url)?;
    let temporary = target.child(&format!(
        "_temporary-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    upload_under(dir, &temporary)?;
    let _ = target.child("_SUCCESS").delete();
    for m in objects_under(&target)? {
        if !m.location.as_ref().starts_with(temporary.key.as_ref()) {
            target.sibling(&m.location).delete().map_err(other)?;
        }
    }
    for m in objects_under(&temporary)? {
        let Some(rel) = m.location.prefix_match(&temporary.key) else {
            continue;
        };
        let mut to = target.clone();
        for part in rel {
            to = to.child(part.as_ref());
        }
        temporary.sibling(&m.location).copy_to(&to).map_err(other)?;
    }
    delete_prefix(&temporary.url)?;
    target.child("_SUCCESS").put(Vec::new()).map_err(other)
}
