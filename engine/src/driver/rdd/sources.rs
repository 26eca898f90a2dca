//! Where RDDs come from.

use super::{callsite, NodeSpec, Rdd};
use crate::core::codec::{self, Data, Frames};
use crate::core::error::{EngineError, Result};
use crate::core::plan::NodeKind;
use crate::driver::context::Context;
use crate::exec::io;
use std::path::Path;

/// Paths travel to executors, which may have another working directory.
/// A local path made absolute (`file://` taken off); an `s3://` URL as it is.
fn absolute(path: &Path) -> Result<std::path::PathBuf> {
    if crate::exec::objects::is_object_url(path) {
        return Ok(path.to_path_buf());
    }
    let path = match path.to_str().and_then(|s| s.strip_prefix("file://")) {
        Some(local) => Path::new(local),
        None => path,
    };
    std::path::absolute(path).map_err(|e| EngineError::io(path, e))
}

impl Context {
    /// Distributes `values` over `slices` partitions (Spark's slicing: partition i holds
    /// positions `i*n/slices .. (i+1)*n/slices`).
    #[track_caller]
    pub fn parallelize<T: Data>(&self, values: Vec<T>, slices: usize) -> Result<Rdd<T>> {
        let slices = slices.max(1);
        let n = values.len();
        let mut out = Vec::with_capacity(slices);
        let mut buf = Vec::new();
        for i in 0..slices {
            let mut f = Frames::default();
            for v in &values[i * n / slices..(i + 1) * n / slices] {
                buf.clear();
                codec::encode_into(v, &mut buf)?;
                f.push(&buf);
            }
            out.push(Some(serde_bytes::ByteBuf::from(f.into_bytes())));
        }
        Ok(self.make_rdd(NodeSpec {
            name: "ParallelCollectionRdd",
            callsite: callsite("parallelize"),
            num_partitions: slices,
            kind: NodeKind::Parallelize { slices: out },
            parents: vec![],
            shuffles: vec![],
            ops: vec![],
        }))
    }

    /// The numbers `start, start+step, ...` below `end` (above it for a negative step).
    #[track_caller]
    pub fn range(&self, start: i64, end: i64, step: i64, slices: usize) -> Result<Rdd<i64>> {
        if step == 0 {
            return Err(EngineError::InvalidArgument(
                "range step must not be 0".into(),
            ));
        }
        Ok(self.make_rdd(NodeSpec {
            name: "RangeRdd",
            callsite: callsite("range"),
            num_partitions: slices.max(1),
            kind: NodeKind::Range { start, end, step },
            parents: vec![],
            shuffles: vec![],
            ops: vec![],
        }))
    }

    /// The lines of a file, or of every visible file in a directory (names starting with `.` or
    /// `_` are skipped). Large files are split by byte ranges on line boundaries; `.gz` files
    /// are read whole. Invalid UTF-8 becomes U+FFFD, as in Spark.
    #[track_caller]
    pub fn text_file(&self, path: impl AsRef<Path>, min_partitions: usize) -> Result<Rdd<String>> {
        let path = absolute(path.as_ref())?;
        let splits = io::text_splits(&path, min_partitions)?;
        Ok(self.make_rdd(NodeSpec {
            name: "TextFileRdd",
            callsite: callsite("text_file"),
            num_partitions: splits.len(),
            kind: NodeKind::TextFile { splits },
            parents: vec![],
            shuffles: vec![],
            ops: vec![],
        }))
    }

    /// Fixed-length binary records (CIFAR-10 is 3,073-byte records). A file whose size is not a
    /// multiple of `record_len` is refused, naming the file and the offset of the torn record.
    #[track_caller]
    pub fn binary_records(
        &self,
        path: impl AsRef<Path>,
        record_len: usize,
        min_partitions: usize,
    ) -> Result<Rdd<Vec<u8>>> {
        let path = absolute(path.as_ref())?;
        let splits = io::binary_splits(&path, record_len, min_partitions)?;
        Ok(self.make_rdd(NodeSpec {
            name: "BinaryRecordsRdd",
            callsite: callsite("binary_records"),
            num_partitions: splits.len(),
            kind: NodeKind::BinaryRecords {
                splits,
                record_len: record_len as u32,
            },
            parents: vec![],
            shuffles: vec![],
            ops: vec![],
        }))
    }

    /// The partitions of all `rdds`, in order.
    #[track_caller]
    pub fn union<T: Data>(&self, rdds: &[Rdd<T>]) -> Rdd<T> {
        self.make_rdd(NodeSpec {
            name: "UnionRdd",
            callsite: callsite("union"),
            num_partitions: rdds.iter().map(|r| r.num_partitions()).sum(),
            kind: NodeKind::Union {
                parents: rdds
                    .iter()
                    .map(|r| (r.id(), r.num_partitions() as u32))
                    .collect(),
            },
            parents: rdds.iter().map(|r| r.node.clone()).collect(),
            shuffles: vec![],
            ops: vec![],
        })
    }
}
