//! A file that may be local or an object, for jobs that read their own inputs (cnn-job's
//! CIFAR-10 batches): sizes, ranged reads and whole reads, without downloading what is not
//! read. A "directory" on S3 is a prefix that has objects under it.

use super::{ObjectReader, ObjectUrl};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A local path or an `s3://bucket/key` object.
#[derive(Clone)]
pub enum Location {
    /// A file or directory on this host.
    Local(PathBuf),
    /// An object, or a prefix of objects.
    Object(ObjectUrl),
}

fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl Location {
    /// `s3://…` as an object, anything else (`file://` taken off) as a local path.
    pub fn new(p: &Path) -> std::io::Result<Location> {
        if super::is_object_url(p) {
            return ObjectUrl::parse(&p.to_string_lossy())
                .map(Location::Object)
                .map_err(other);
        }
        Ok(Location::Local(
            match p.to_str().and_then(|s| s.strip_prefix("file://")) {
                Some(rest) => PathBuf::from(rest),
                None => p.to_path_buf(),
            },
        ))
    }

    /// The path or URL, for messages.
    pub fn display(&self) -> String {
        match self {
            Location::Local(p) => p.display().to_string(),
            Location::Object(o) => o.url.clone(),
        }
    }

    /// `name` under this directory (or prefix).
    pub fn join(&self, name: &str) -> Location {
        match self {
            Location::Local(p) => Location::Local(p.join(name)),
            Location::Object(o) => Location::Object(o.child(name)),
        }
    }

    /// The last path segment (`cifar-10-binary.tar.gz`).
    pub fn file_name(&self) -> String {
        match self {
            Location::Local(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            Location::Object(o) => o.key.filename().unwrap_or_default().to_string(),
        }
    }

    /// Whether it is a directory (a prefix with objects under it and no object of its own).
    pub fn is_dir(&self) -> std::io::Result<bool> {
        match self {
            Location::Local(p) => Ok(std::fs::metadata(p)?.is_dir()),
            Location::Object(o) => {
                if o.size().map_err(other)?.is_some() {
                    return Ok(false);
                }
                if o.list().map_err(other)?.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no such object or prefix",
                    ));
                }
                Ok(true)
            }
        }
    }

    /// Whether a file (an object) is there.
    pub fn is_file(&self) -> bool {
        match self {
            Location::Local(p) => p.is_file(),
            Location::Object(o) => matches!(o.size(), Ok(Some(_))),
        }
    }

    /// Its size in bytes.
    pub fn size(&self) -> std::io::Result<u64> {
        match self {
            Location::Local(p) => Ok(std::fs::metadata(p)?.len()),
            Location::Object(o) => o
                .size()
                .map_err(other)?
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such object")),
        }
    }

    /// Bytes `start..start + len` (a ranged GET for an object).
    pub fn read_range(&self, start: u64, len: u64) -> std::io::Result<Vec<u8>> {
        match self {
            Location::Local(p) => {
                use std::io::{Seek, SeekFrom};
                let mut f = std::fs::File::open(p)?;
                f.seek(SeekFrom::Start(start))?;
                let mut bytes = vec![0u8; len as usize];
                f.read_exact(&mut bytes)?;
                Ok(bytes)
            }
            Location::Object(o) => {
                let bytes = o.get_range(start, start + len).map_err(other)?;
                if bytes.len() as u64 != len {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("{} of {len} bytes", bytes.len()),
                    ));
                }
                Ok(bytes.to_vec())
            }
        }
    }

    /// A sequential reader from the start.
    pub fn open(&self) -> std::io::Result<Box<dyn Read + Send>> {
        match self {
            Location::Local(p) => Ok(Box::new(std::fs::File::open(p)?)),
            Location::Object(o) => Ok(Box::new(ObjectReader::open(&o.url).map_err(other)?)),
        }
    }
}
