//! Actions: they run a job and bring a result back to the driver.

use super::transform::op_ref;
use super::{callsite, NodeSpec, Rdd};
use crate::core::codec::{self, Data, FrameReader};
use crate::core::error::{EngineError, Result};
use crate::core::key::{key_type_name, Key};
use crate::core::plan::{
    AggSpec, KeyMode, NodeKind, Partitioning, ReduceSpec, ResultSink, ShuffleWriterSpec,
    TypedBuckets,
};
use crate::exec::op::{AggregateFn, ForeachFn, ForeachPartitionFn, OpKind, ReduceFn};
use std::path::Path;

fn decode_frames<T: Data>(buf: &[u8], out: &mut Vec<T>) -> Result<()> {
    let mut r = FrameReader::new(buf);
    while let Some(f) = r.next_frame() {
        out.push(codec::decode(f?)?);
    }
    Ok(())
}

impl<T: Data> Rdd<T> {
    fn all_partitions(&self) -> Vec<usize> {
        (0..self.num_partitions()).collect()
    }

    fn run(&self, sink: ResultSink, what: &str) -> Result<Vec<Vec<u8>>> {
        self.ctx
            .run_job(&self.node, &self.all_partitions(), sink, what)
    }

    /// Every record, in partition order.
    pub fn collect(&self) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for p in self.run(ResultSink::Collect, "collect")? {
            decode_frames(&p, &mut out)?;
        }
        Ok(out)
    }

    /// How many records there are.
    pub fn count(&self) -> Result<u64> {
        let mut n = 0;
        for p in self.run(ResultSink::Count, "count")? {
            n += codec::decode::<u64>(&p)?;
        }
        Ok(n)
    }

    /// The first `n` records, scanning one partition first and then four times more partitions
    /// each round, as Spark does.
    pub fn take(&self, n: usize) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let total = self.num_partitions();
        let mut scanned = 0;
        let mut batch = 1;
        while out.len() < n && scanned < total {
            let parts: Vec<usize> = (scanned..(scanned + batch).min(total)).collect();
            let want = (n - out.len()) as u32;
            for p in self
                .ctx
                .run_job(&self.node, &parts, ResultSink::Take(want), "take")?
            {
                decode_frames(&p, &mut out)?;
            }
            scanned += parts.len();
            batch *= 4;
        }
        out.truncate(n);
        Ok(out)
    }

    /// The first record, if there is one (computes as few partitions as it can).
    pub fn first(&self) -> Result<Option<T>> {
        Ok(self.take(1)?.into_iter().next())
    }

    /// `None` for an empty RDD.
    pub fn reduce<F: ReduceFn<Value = T>>(&self, f: F) -> Result<Option<T>> {
        let sink = ResultSink::Fold(AggSpec {
            op: op_ref(OpKind::Reduce, &f),
            zero: None,
        });
        let mut acc: Option<T> = None;
        for p in self.run(sink, "reduce")? {
            if let Some(v) = codec::decode::<Option<T>>(&p)? {
                acc = Some(match acc {
                    Some(a) => f.call(a, v),
                    None => v,
                });
            }
        }
        Ok(acc)
    }

    /// Folds every partition from `zero`, then the partial results from `zero` (Spark's fold).
    pub fn fold<F: ReduceFn<Value = T>>(&self, zero: T, f: F) -> Result<T> {
        let sink = ResultSink::Fold(AggSpec {
            op: op_ref(OpKind::Reduce, &f),
            zero: Some(codec::encode(&zero)?),
        });
        let mut acc = zero;
        for p in self.run(sink, "fold")? {
            if let Some(v) = codec::decode::<Option<T>>(&p)? {
                acc = f.call(acc, v);
            }
        }
        Ok(acc)
    }

    /// Folds every record into `zero` with `f.seq` per partition, then merges the partitions'
    /// accumulators with `f.comb`.
    pub fn aggregate<F: AggregateFn<Value = T>>(&self, zero: F::Acc, f: F) -> Result<F::Acc> {
        let sink = ResultSink::Fold(AggSpec {
            op: op_ref(OpKind::Aggregate, &f),
            zero: Some(codec::encode(&zero)?),
        });
        let mut acc = zero;
        for p in self.run(sink, "aggregate")? {
            if let Some(v) = codec::decode::<Option<F::Acc>>(&p)? {
                acc = f.comb(acc, v);
            }
        }
        Ok(acc)
    }

    /// `aggregate` whose partial results are combined on the executors in a tree of the given
    /// depth, so the driver receives few of them (Spark's treeAggregate).
    pub fn tree_aggregate<F: AggregateFn<Value = T>>(
        &self,
        zero: F::Acc,
        f: F,
        depth: usize,
    ) -> Result<F::Acc> {
        if depth < 1 {
            return Err(EngineError::InvalidArgument(
                "tree_aggregate depth must be at least 1".into(),
            ));
        }
        let spec = AggSpec {
            op: op_ref(OpKind::Aggregate, &f),
            zero: Some(codec::encode(&zero)?),
        };
        let mut level: Rdd<F::Acc> = self.ctx.make_rdd(NodeSpec {
            name: "MapPartitionsRdd",
            callsite: callsite("tree_aggregate"),
            num_partitions: self.num_partitions(),
            kind: NodeKind::FoldPartitions {
                parent: self.id(),
                agg: spec.clone(),
                combiners: false,
            },
            parents: vec![self.node.clone()],
            shuffles: vec![],
            ops: vec![],
        });
        let mut n = self.num_partitions();
        let scale = ((n as f64).powf(1.0 / depth as f64).ceil() as usize).max(2);
        while n > scale + n.div_ceil(scale) {
            n /= scale;
            let writer = ShuffleWriterSpec {
                key: KeyMode::None,
                partitioning: Partitioning::ByMapIndex(n as u32),
                num_reduces: n as u32,
                combine: None,
                typed: TypedBuckets::Never,
            };
            let shuffled: Rdd<F::Acc> = level.shuffled(
                "ShuffledRdd",
                "tree_aggregate",
                writer,
                ReduceSpec::Raw,
                vec![],
            );
            level = shuffled.ctx.make_rdd(NodeSpec {
                name: "MapPartitionsRdd",
                callsite: callsite("tree_aggregate"),
                num_partitions: n,
                kind: NodeKind::FoldPartitions {
                    parent: shuffled.id(),
                    agg: spec.clone(),
                    combiners: true,
                },
                parents: vec![shuffled.node.clone()],
                shuffles: vec![],
                ops: vec![],
            });
        }
        Ok(level.collect()?.into_iter().fold(zero, |a, b| f.comb(a, b)))
    }

    /// Runs `f` on every record, on the executors.
    pub fn foreach<F: ForeachFn<Item = T>>(&self, f: F) -> Result<()> {
        self.run(ResultSink::Foreach(op_ref(OpKind::Foreach, &f)), "foreach")
            .map(|_| ())
    }

    /// Runs `f` on every partition, on the executors.
    pub fn foreach_partition<F: ForeachPartitionFn<Item = T>>(&self, f: F) -> Result<()> {
        self.run(
            ResultSink::Foreach(op_ref(OpKind::ForeachPartition, &f)),
            "foreach_partition",
        )
        .map(|_| ())
    }
}

impl<T: Key> Rdd<T> {
    /// The `n` smallest records, in order.
    pub fn take_ordered(&self, n: usize) -> Result<Vec<T>> {
        self.ordered(n, true)
    }

    /// The `n` largest records, largest first.
    pub fn top(&self, n: usize) -> Result<Vec<T>> {
        self.ordered(n, false)
    }

    fn ordered(&self, n: usize, ascending: bool) -> Result<Vec<T>> {
        let sink = ResultSink::TakeOrdered {
            n: n as u32,
            key_type: key_type_name::<T>().into(),
            ascending,
        };
        let mut all: Vec<T> = Vec::new();
        for p in self.run(sink, if ascending { "take_ordered" } else { "top" })? {
            decode_frames(&p, &mut all)?;
        }
        if ascending {
            all.sort();
        } else {
            all.sort_by(|a, b| b.cmp(a));
        }
        all.truncate(n);
        Ok(all)
    }
}

impl Rdd<String> {
    /// Writes one `part-NNNNN` file per partition and `_SUCCESS` into `dir`. Parts are written
    /// into a hidden sibling directory that is renamed to `dir` only when the job succeeded, so a
    /// failed job leaves nothing at `dir`. An existing `dir` is refused.
    pub fn save_as_text_file(&self, dir: impl AsRef<Path>) -> Result<()> {
        if crate::exec::objects::is_object_url(dir.as_ref()) {
            return self.save_as_text_objects(&dir.as_ref().to_string_lossy());
        }
        let dir = match dir
            .as_ref()
            .to_str()
            .and_then(|s| s.strip_prefix("file://"))
        {
            Some(local) => Path::new(local),
            None => dir.as_ref(),
        };
        let dir = std::path::absolute(dir).map_err(|e| EngineError::io(dir, e))?;
        if dir.exists() {
            return Err(EngineError::OutputExists(dir));
        }
        let parent = dir.parent().ok_or_else(|| {
            EngineError::InvalidArgument(format!("{} has no parent", dir.display()))
        })?;
        std::fs::create_dir_all(parent).map_err(|e| EngineError::io(parent, e))?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let tmp = parent.join(format!(
            ".{name}.tmp-{}-{}",
            std::process::id(),
            self.ctx.inner.next_id()
        ));
        std::fs::create_dir(&tmp).map_err(|e| EngineError::io(&tmp, e))?;
        let outcome = self
            .run(
                ResultSink::SaveText {
                    dir: tmp.to_string_lossy().to_string(),
                },
                "save_as_text_file",
            )
            .and_then(|_| {
                // Files of failed attempts that died before cleaning up after themselves.
                for entry in std::fs::read_dir(&tmp)
                    .map_err(|e| EngineError::io(&tmp, e))?
                    .flatten()
                {
                    if entry.file_name().to_string_lossy().starts_with(".part-") {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
                std::fs::write(tmp.join("_SUCCESS"), b"")
                    .map_err(|e| EngineError::io(tmp.join("_SUCCESS"), e))?;
                if dir.exists() {
                    return Err(EngineError::OutputExists(dir.clone()));
                }
                std::fs::rename(&tmp, &dir).map_err(|e| EngineError::io(&dir, e))
            });
        if outcome.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        outcome
    }

    /// `save_as_text_file` to `s3://bucket/prefix`: parts under a temporary prefix, copied
    /// into place when every task has succeeded, `_SUCCESS` last.
    fn save_as_text_objects(&self, url: &str) -> Result<()> {
        let commit = crate::exec::objects::OutputCommit::begin(url, self.ctx.inner.next_id())?;
        let outcome = self
            .run(
                ResultSink::SaveText {
                    dir: commit.temporary.url.clone(),
                },
                "save_as_text_file",
            )
            .and_then(|_| commit.commit());
        if outcome.is_err() {
            commit.abort();
        }
        outcome
    }
}
