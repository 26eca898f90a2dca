//! Object storage (`s3://bucket/key`) beside local files, for the engine's sources and sinks.
//! Arrow's object_store does the S3 protocol (credentials and endpoint from the standard
//! `AWS_*` variables, as `AmazonS3Builder::from_env` reads them; retries with backoff); the
//! calls are blocking here, run on a small runtime of this module's own, because tasks run on
//! plain slot threads.

mod http;
mod location;
mod reader;
mod transfer;

use crate::core::error::{EngineError, TaskFailure};
use bytes::Bytes;
use futures_util::TryStreamExt;
pub use location::Location;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
pub(crate) use reader::ObjectReader;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
pub use transfer::{commit_dir, delete_prefix, download_prefix, exists, upload_dir};

/// Whether `p` names an object (`s3://…`) rather than a local file.
pub fn is_object_url(p: &Path) -> bool {
    p.to_str().is_some_and(|s| s.starts_with("s3://"))
}

/// An object's store and key, parsed from its `s3://bucket/key` URL.
#[derive(Clone)]
pub struct ObjectUrl {
    pub(crate) url: String,
    store: Arc<dyn ObjectStore>,
    pub(crate) key: ObjectPath,
    bucket_url: String,
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("discnn-objects")
            .enable_all()
            .build()
            .expect("the object storage runtime starts")
    })
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// One store per bucket, built once: its client keeps its connections.
fn store_for(bucket_url: &str) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    let stores = STORES.get_or_init(Default::default);
    let mut stores = stores.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = stores.get(bucket_url) {
        return Ok(s.clone());
    }
    let store: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::from_env()
            .with_url(bucket_url)
            .with_http_connector(http::HyperConnector)
            .build()?,
    );
    stores.insert(bucket_url.to_string(), store.clone());
    Ok(store)
}

/// What an object-store error means for the user: a missing object or bucket and a refused
/// credential are bad input (exit 2), naming the URL; the rest is an I/O failure.
fn input_error(url: &str, e: object_store::Error) -> EngineError {
    match e {
        object_store::Error::NotFound { .. } => EngineError::InputNotFound(PathBuf::from(url)),
        e => EngineError::InputUnreadable {
            path: PathBuf::from(url),
            source: std::io::Error::other(e.to_string()),
        },
    }
}

fn task_error(url: &str, e: object_store::Error) -> TaskFailure {
    TaskFailure::io(url, std::io::Error::other(e.to_string()))
}

impl ObjectUrl {
    /// Parses `s3://bucket/key`.
    pub(crate) fn parse(url: &str) -> Result<ObjectUrl, EngineError> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            EngineError::InvalidArgument(format!("{url}: not an s3://bucket/key URL"))
        })?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(EngineError::InvalidArgument(format!(
                "{url}: no bucket in the URL"
            )));
        }
        let bucket_url = format!("s3://{bucket}");
        let store = store_for(&bucket_url).map_err(|e| {
            EngineError::InvalidArgument(format!("{url}: cannot set up S3 access: {e}"))
        })?;
        Ok(ObjectUrl {
            url: url.to_string(),
            store,
            key: ObjectPath::from(key.trim_end_matches('/')),
            bucket_url,
        })
    }

    /// The URL of `key` in the same bucket.
    fn sibling(&self, key: &ObjectPath) -> ObjectUrl {
        ObjectUrl {
            url: format!("{}/{key}", self.bucket_url),
            store: self.store.clone(),
            key: key.clone(),
            bucket_url: self.bucket_url.clone(),
        }
    }

    /// The URL of `name` under this one (a "directory").
    pub(crate) fn child(&self, name: &str) -> ObjectUrl {
        self.sibling(&self.key.clone().join(name))
    }

    /// The object's size, or `None` if there is no such object.
    pub(crate) fn size(&self) -> Result<Option<u64>, EngineError> {
        match block_on(self.store.head(&self.key)) {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(input_error(&self.url, e)),
        }
    }

    /// The visible objects under this prefix (names not starting with `.` or `_`), sorted, with
    /// their sizes.
    fn list(&self) -> Result<Vec<(ObjectUrl, u64)>, EngineError> {
        let listed: Vec<object_store::ObjectMeta> =
            block_on(self.store.list(Some(&self.key)).try_collect())
                .map_err(|e| input_error(&self.url, e))?;
        let mut v: Vec<(ObjectUrl, u64)> = listed
            .into_iter()
            .filter(|m| {
                let rel = m
                    .location
                    .prefix_match(&self.key)
                    .map(|parts| parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>())
                    .unwrap_or_default();
                !rel.iter().any(|p| p.starts_with('.') || p.starts_with('_'))
            })
            .map(|m| (self.sibling(&m.location), m.size))
            .collect();
        v.sort_by(|a, b| a.0.url.cmp(&b.0.url));
        Ok(v)
    }

    /// Bytes `start..end` of the object.
    pub(crate) fn get_range(&self, start: u64, end: u64) -> Result<Bytes, TaskFailure> {
        block_on(self.store.get_range(&self.key, start..end)).map_err(|e| task_error(&self.url, e))
    }

    /// Writes the object whole (a PUT: readers see all of it or none).
    pub(crate) fn put(&self, bytes: Vec<u8>) -> Result<(), TaskFailure> {
        block_on(self.store.put(&self.key, bytes.into()))
            .map(|_| ())
            .map_err(|e| task_error(&self.url, e))
    }

    fn copy_to(&self, to: &ObjectUrl) -> Result<(), EngineError> {
        block_on(self.store.copy(&self.key, &to.key)).map_err(|e| input_error(&to.url, e))
    }

    fn delete(&self) -> Result<(), EngineError> {
        block_on(self.store.delete(&self.key)).map_err(|e| input_error(&self.url, e))
    }
}

/// The input objects at `url`: the object itself, or the visible objects under it as a prefix.
pub(crate) fn list_inputs(url: &str) -> Result<Vec<(String, u64)>, EngineError> {
    let o = ObjectUrl::parse(url)?;
    if let Some(size) = o.size()? {
        return Ok(vec![(url.to_string(), size)]);
    }
    let listed = o.list()?;
    if listed.is_empty() {
        return Err(EngineError::InputNotFound(PathBuf::from(url)));
    }
    Ok(listed.into_iter().map(|(u, s)| (u.url, s)).collect())
}

/// Output committed as Spark's committers do on object stores: tasks write under a temporary
/// prefix, the driver copies each part into place, then writes `_SUCCESS` last.
pub(crate) struct OutputCommit {
    pub dir: ObjectUrl,
    pub temporary: ObjectUrl,
}

impl OutputCommit {
    /// Refuses an output that already has objects; picks the temporary prefix.
    pub fn begin(url: &str, unique: u64) -> Result<OutputCommit, EngineError> {
        let dir = ObjectUrl::parse(url.trim_end_matches('/'))?;
        let existing = block_on(
            dir.store
                .list_with_delimiter(Some(&dir.key))
                .map(|r| r.map(|l| !l.objects.is_empty() || !l.common_prefixes.is_empty())),
        )
        .map_err(|e| input_error(url, e))?;
        if existing || dir.size()?.is_some() {
            return Err(EngineError::OutputExists(PathBuf::from(url)));
        }
        let temporary = dir.child(&format!("_temporary-{}-{unique}", std::process::id()));
        Ok(OutputCommit { dir, temporary })
    }

    /// Moves every part into place and writes `_SUCCESS`.
    pub fn commit(&self) -> Result<(), EngineError> {
        let parts: Vec<object_store::ObjectMeta> = block_on(
            self.temporary
                .store
                .list(Some(&self.temporary.key))
                .try_collect(),
        )
        .map_err(|e| input_error(&self.temporary.url, e))?;
        for m in &parts {
            let Some(name) = m.location.filename() else {
                continue;
            };
            let from = self.temporary.sibling(&m.location);
            from.copy_to(&self.dir.child(name))?;
        }
        self.abort();
        self.dir
            .child("_SUCCESS")
            .put(Vec::new())
            .map_err(|f| EngineError::InputUnreadable {
                path: PathBuf::from(&self.dir.url),
                source: std::io::Error::other(f.to_string()),
            })
    }

    /// Removes the temporary prefix (after a commit, or a failure).
    pub fn abort(&self) {
        let listed: Result<Vec<object_store::ObjectMeta>, _> = block_on(
            self.temporary
                .store
                .list(Some(&self.temporary.key))
                .try_collect(),
        );
        for m in listed.unwrap_or_default() {
            let _ = self.temporary.sibling(&m.location).delete();
        }
    }
}

use futures_util::FutureExt as _;
