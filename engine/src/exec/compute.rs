//! Computing a partition from the wire plan, on an executor. Caching happens here: a node with a
//! storage level is looked up in the block manager first, and materialized and stored after it
//! is computed — only if the attempt had no failure, so a partial partition is never cached.

use crate::core::codec::{self, Frames};
use crate::core::error::TaskFailure;
use crate::core::plan::{NodeKind, RddId, ResultSink, WireNode};
use crate::core::sync::Locked;
use crate::core::task::CachedBlock;
use crate::exec::io;
use crate::exec::op::registry;
use crate::exec::shuffle;
use crate::exec::storage::Block;
use crate::exec::stream::{self, into_typed, typed, Records};
use crate::exec::task_context::TaskContext;
use rand::SeedableRng;
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) struct Plan {
    nodes: HashMap<RddId, WireNode>,
}

impl Plan {
    pub fn new(nodes: Vec<WireNode>) -> Self {
        Plan {
            nodes: nodes.into_iter().map(|n| (n.id, n)).collect(),
        }
    }

    pub fn compute(
        &self,
        id: RddId,
        split: usize,
        tc: &Arc<TaskContext>,
    ) -> Result<Records, TaskFailure> {
        let node = self
            .nodes
            .get(&id)
            .ok_or_else(|| TaskFailure::plan(format!("the task does not carry rdd {id}")))?;
        if split >= node.num_partitions as usize {
            return Err(TaskFailure::plan(format!(
                "rdd {id} has {} partitions, not {}",
                node.num_partitions,
                split + 1
            )));
        }
        let Some(level) = node.storage else {
            return self.compute_node(node, split, tc);
        };
        if let Some(r) = tc.env.blocks.get((id, split))? {
            return Ok(r);
        }
        let block = match self.compute_node(node, split, tc)? {
            Records::Typed(t) => Block::Typed(t.materialize()),
            Records::Lent(l) => Block::Typed(l.into_owned().materialize()),
            Records::Encoded(it) => {
                let mut f = Frames::default();
                it.for_each(|r| f.push(&r));
                Block::Encoded(Arc::new(f))
            }
        };
        tc.check()?;
        if let Some((memory_bytes, disk_bytes)) =
            tc.env.blocks.put((id, split), block.clone(), level)?
        {
            tc.cached.locked().push(CachedBlock {
                rdd: id,
                partition: split as u32,
                memory_bytes,
                disk_bytes,
            });
        }
        Ok(block.records())
    }

    fn compute_node(
        &self,
        node: &WireNode,
        split: usize,
        tc: &Arc<TaskContext>,
    ) -> Result<Records, TaskFailure> {
        let key = |name: &str| registry::lookup_key(name);
        Ok(match &node.kind {
            NodeKind::Parallelize { slices } => {
                let slice = slices.get(split).and_then(|s| s.as_ref()).ok_or_else(|| {
                    TaskFailure::plan(format!("parallelize slice {split} not shipped"))
                })?;
                Records::Encoded(Box::new(codec::frames_to_vecs(slice)?.into_iter()))
            }
            NodeKind::Range { start, end, step } => {
                let (start, end, step) = (*start, *end, *step);
                let n = range_len(start, end, step);
                let parts = node.num_partitions as u128;
                let lo = (split as u128 * n as u128 / parts) as u64;
                let hi = ((split as u128 + 1) * n as u128 / parts) as u64;
                typed((lo..hi).map(move |k| start.wrapping_add((k as i64).wrapping_mul(step))))
            }
            NodeKind::TextFile { splits } => io::read_text(split_of(splits, split)?, tc)?,
            NodeKind::BinaryRecords { splits, record_len } => {
                io::read_records(split_of(splits, split)?, *record_len as usize, tc)?
            }
            NodeKind::Map { parent, op } => {
                registry::decode_map(op)?.map(self.compute(*parent, split, tc)?, tc)?
            }
            NodeKind::KeyBy { parent, op } => {
                registry::decode_map(op)?.key_by(self.compute(*parent, split, tc)?, tc)?
            }
            NodeKind::MapValues {
                parent,
                op,
                key_type,
            } => registry::decode_map(op)?.map_values(
                self.compute(*parent, split, tc)?,
                key(key_type)?,
                tc,
            )?,
            NodeKind::FlatMap { parent, op } => {
                registry::decode_flat_map(op)?.flat_map(self.compute(*parent, split, tc)?, tc)?
            }
            NodeKind::FlatMapValues {
                parent,
                op,
                key_type,
            } => registry::decode_flat_map(op)?.flat_map_values(
                self.compute(*parent, split, tc)?,
                key(key_type)?,
                tc,
            )?,
            NodeKind::Filter { parent, op } => {
                registry::decode_filter(op)?.filter(self.compute(*parent, split, tc)?, tc)?
            }
            NodeKind::Partitions { parent, op } => registry::decode_partitions(op)?.call(
                split,
                self.compute(*parent, split, tc)?,
                tc,
            )?,
            NodeKind::Narrow { parent, op } => registry::decode_narrow(op)?.compute(
                split,
                self.compute(*parent, split, tc)?,
                tc,
            )?,
            NodeKind::Union { parents } => {
                let (p, s) = crate::core::plan::union_input(parents, split)
                    .ok_or_else(|| TaskFailure::plan("union partition out of range"))?;
                self.compute(p, s, tc)?
            }
            NodeKind::Coalesce { parent, groups } => {
                let group = groups
                    .get(split)
                    .ok_or_else(|| TaskFailure::plan("coalesce group missing"))?;
                let mut out: Option<Records> = None;
                for &p in group {
                    let r = self.compute(*parent, p as usize, tc)?;
                    out = Some(match out {
                        None => r,
                        Some(prev) => stream::chain(prev, r, tc),
                    });
                }
                out.unwrap_or_else(|| Records::Encoded(Box::new(std::iter::empty())))
            }
            NodeKind::Zip { a, b, op } => registry::decode_zip(op)?.call(
                self.compute(*a, split, tc)?,
                self.compute(*b, split, tc)?,
                tc,
            )?,
            NodeKind::FoldPartitions {
                parent,
                agg,
                combiners,
            } => {
                let mut table =
                    registry::decode_agg(&agg.op)?.table(agg.zero.as_deref(), *combiners)?;
                stream::for_each_encoded(self.compute(*parent, split, tc)?, &mut |r| {
                    table.insert(b"", r)
                })?;
                let mut out = Vec::new();
                table.drain(&mut |_, v| {
                    out.push(v.to_vec());
                    Ok(())
                })?;
                Records::Encoded(Box::new(out.into_iter()))
            }
            NodeKind::Shuffled {
                shuffle,
                num_maps,
                reduce,
            } => shuffle::read(tc, *shuffle, *num_maps, split, reduce)?,
            NodeKind::CoGrouped { inputs, mode } => shuffle::cogroup(tc, inputs, split, *mode)?,
        })
    }

    /// Runs a result task's action over partition `split` of `root`.
    pub fn run_sink(
        &self,
        root: RddId,
        split: usize,
        sink: &ResultSink,
        tc: &Arc<TaskContext>,
    ) -> Result<Vec<u8>, TaskFailure> {
        let records = self.compute(root, split, tc)?;
        let out = match sink {
            ResultSink::Collect => frames(stream::into_encoded(records, tc)),
            ResultSink::Count => codec::encode(&stream::count(records))?,
            ResultSink::Take(n) => {
                frames(stream::into_encoded(stream::take(records, *n as usize), tc))
            }
            ResultSink::Fold(agg) => {
                registry::decode_agg(&agg.op)?.fold_partition(records, agg.zero.as_deref(), tc)?
            }
            ResultSink::TakeOrdered {
                n,
                key_type,
                ascending,
            } => {
                let recs: Vec<Vec<u8>> = stream::into_encoded(records, tc).collect();
                let locs: Vec<u64> = (0..recs.len() as u64).collect();
                let codec = registry::lookup_key(key_type)?;
                let perm = codec.sort_locators(&locs, &|i| &recs[i as usize], *ascending)?;
                let mut f = Frames::default();
                perm.iter()
                    .take(*n as usize)
                    .for_each(|&i| f.push(&recs[i as usize]));
                f.into_bytes()
            }
            ResultSink::CountByKey { key_type } => {
                let codec = registry::lookup_key(key_type)?;
                let mut counts: rustc_hash::FxHashMap<Box<[u8]>, u64> = Default::default();
                stream::for_each_encoded(records, &mut |r| {
                    let k = &r[..codec.key_len(r)?];
                    match counts.get_mut(k) {
                        Some(c) => *c += 1,
                        None => {
                            counts.insert(k.into(), 1);
                        }
                    }
                    Ok(())
                })?;
                let mut f = Frames::default();
                for (k, c) in counts {
                    f.push_pair(&k, &codec::encode(&c)?);
                }
                f.into_bytes()
            }
            ResultSink::Foreach(op) => {
                registry::decode_foreach(op)?.run(split, records, tc)?;
                Vec::new()
            }
            ResultSink::SaveText { dir } => {
                let lines = into_typed::<String>(records, tc)?;
                codec::encode(&io::write_text_part(dir, split, tc.attempt, lines, tc)?)?
            }
            ResultSink::Sample { n, seed } => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(*seed);
                rng.set_stream(split as u64);
                let (seen, chosen) = stream::reservoir(records, *n as usize, &mut rng)?;
                let mut f = Frames::default();
                chosen.iter().for_each(|r| f.push(r));
                codec::encode(&(seen, serde_bytes::ByteBuf::from(f.into_bytes())))?
            }
        };
        tc.check()?;
        Ok(out)
    }
}

fn frames(it: impl Iterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut f = Frames::default();
    it.for_each(|r| f.push(&r));
    f.into_bytes()
}

fn split_of(
    splits: &[crate::core::plan::FileSplit],
    i: usize,
) -> Result<&crate::core::plan::FileSplit, TaskFailure> {
    splits
        .get(i)
        .ok_or_else(|| TaskFailure::plan(format!("file split {i} missing")))
}

pub(crate) fn range_len(start: i64, end: i64, step: i64) -> u64 {
    if step == 0 || (step > 0 && start >= end) || (step < 0 && start <= end) {
        return 0;
    }
    let span = (end as i128 - start as i128).unsigned_abs();
    let step = (step as i128).unsigned_abs();
    span.div_ceil(step) as u64
}
