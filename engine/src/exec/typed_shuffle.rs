//! Map outputs kept as typed `(K, V)` vectors, for reducers in the same process. A shuffle's
//! records that are still typed when they reach the map side (a cached or freshly computed
//! partition, not a decoded one) are split into one `Vec<(K, V)>` per reduce partition and a
//! reader in the same process sorts, groups or repartitions them as values: nothing is encoded,
//! framed, located or decoded on the way. A bucket is encoded only when it has to leave that
//! form: fetched by another executor, spilled past the shuffle memory budget, or read together
//! with encoded buckets. Either form yields the same records in the same order.
//!
//! Only the process that built the plan knows `K` and `V` (a shuffle's plan names the key type,
//! not the value type), so the driver registers each pair type it shuffles in its executor
//! environment's [`PairTypes`]; local mode runs its tasks there. Executors in other processes
//! never find the type and take the encoded path.

use crate::core::codec::{self, Data, Frames};
use crate::core::error::TaskFailure;
use crate::core::key::Key;
use crate::core::plan::{Partitioning, ShuffleWriterSpec, TypedBuckets};
use crate::exec::radix_sort;
use crate::exec::stream::{self, Records};
use crate::exec::task_context::TaskContext;
use dashmap::DashMap;
use rustc_hash::FxHashMap;
use std::any::{Any, TypeId};
use std::cmp::Ordering;
use std::marker::PhantomData;
use std::sync::Arc;

/// Maps an encoded key to its reduce partition.
pub(crate) type Route<'a> = &'a mut dyn FnMut(&[u8]) -> Result<usize, TaskFailure>;

/// One reduce partition's share of a map task's typed output. The reduce operations take every
/// bucket of the partition (this one's type; a mismatch fails the task) in map order.
pub(crate) trait TypedBucket: Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    fn len(&self) -> usize;
    /// An estimate of the bytes it holds, for the shuffle memory budget and the metrics.
    fn mem_bytes(&self) -> u64;
    /// The framed `(key, value)` pairs the encoded path would have written.
    fn encode(&self) -> Result<Frames, TaskFailure>;
    /// `sort_by_key`'s reduce side: ties keep their map order, as the encoded sort's do. Runs
    /// the map side sorted are merged lazily; others are copied together and sorted.
    fn sort(&self, all: &[Arc<dyn TypedBucket>], ascending: bool) -> Result<Records, TaskFailure>;
    /// `group_by_key`'s reduce side: groups in the order keys first came.
    fn group(&self, all: &[Arc<dyn TypedBucket>]) -> Result<Records, TaskFailure>;
    /// The pairs as they are (`partition_by`).
    fn pairs(&self, all: &[Arc<dyn TypedBucket>]) -> Result<Records, TaskFailure>;
}

struct PairBucket<K, V> {
    pairs: Vec<(K, V)>,
    /// `Some(ascending)` when the map task sorted it by key.
    order: Option<bool>,
    mem_bytes: u64,
}

fn mixed() -> TaskFailure {
    TaskFailure::plan("a shuffle read typed map outputs of different types")
}

/// How many records the memory estimate measures to guess the heap behind each.
const SIZE_SAMPLE: usize = 8;

impl<K: Key, V: Data> PairBucket<K, V> {
    fn new(mut pairs: Vec<(K, V)>, order: Option<bool>) -> Result<Self, TaskFailure> {
        if let Some(ascending) = order {
            radix_sort::sort_pairs_by_key(&mut pairs, ascending);
        }
        // Inline size plus the mean encoded size of a few records (measured, not written): for
        // numbers a little over, for strings and vectors about their heap.
        let sample = &pairs[..pairs.len().min(SIZE_SAMPLE)];
        let mut encoded = 0usize;
        for p in sample {
            encoded +=
                postcard::experimental::serialized_size(p).map_err(|e| TaskFailure::Encode {
                    what: std::any::type_name::<(K, V)>().to_string(),
                    message: e.to_string(),
                })?;
        }
        let per = std::mem::size_of::<(K, V)>() as u64 + (encoded / sample.len().max(1)) as u64;
        Ok(PairBucket {
            mem_bytes: per * pairs.len() as u64,
            pairs,
            order,
        })
    }

    fn slices(all: &[Arc<dyn TypedBucket>]) -> Result<Vec<&[(K, V)]>, TaskFailure> {
        all.iter()
            .map(|b| {
                b.as_any()
                    .downcast_ref::<Self>()
                    .map(|b| b.pairs.as_slice())
                    .ok_or_else(mixed)
            })
            .collect()
    }

    fn concat(all: &[Arc<dyn TypedBucket>]) -> Result<Vec<(K, V)>, TaskFailure> {
        let slices = Self::slices(all)?;
        let mut v = Vec::with_capacity(slices.iter().map(|s| s.len()).sum());
        for s in slices {
            v.extend_from_slice(s);
        }
        Ok(v)
    }
}

impl<K: Key, V: Data> TypedBucket for PairBucket<K, V> {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }

    fn len(&self) -> usize {
        self.pairs.len()
    }

    fn mem_bytes(&self) -> u64 {
        self.mem_bytes
    }

    fn encode(&self) -> Result<Frames, TaskFailure> {
        let mut f = Frames::default();
        let (mut k, mut v) = (Vec::new(), Vec::new());
        for (key, value) in &self.pairs {
            k.clear();
            v.clear();
            codec::encode_into(key, &mut k)?;
            codec::encode_into(value, &mut v)?;
            f.push_pair(&k, &v);
        }
        Ok(f)
    }

    fn sort(&self, all: &[Arc<dyn TypedBucket>], ascending: bool) -> Result<Records, TaskFailure> {
        let runs = all
            .iter()
            .map(|b| b.clone().into_any().downcast::<Self>().map_err(|_| mixed()))
            .collect::<Result<Vec<_>, _>>()?;
        if runs.iter().all(|r| r.order == Some(ascending)) {
            return Ok(stream::typed(Merge::new(runs, ascending)));
        }
        let mut v = Self::concat(all)?;
        radix_sort::sort_pairs_by_key(&mut v, ascending);
        Ok(stream::typed(v.into_iter()))
    }

    fn group(&self, all: &[Arc<dyn TypedBucket>]) -> Result<Records, TaskFailure> {
        let mut index: FxHashMap<&K, usize> = FxHashMap::default();
        let mut groups: Vec<(K, Vec<V>)> = Vec::new();
        for s in Self::slices(all)? {
            for (k, v) in s {
                match index.get(k) {
                    Some(&i) => groups[i].1.push(v.clone()),
                    None => {
                        index.insert(k, groups.len());
                        groups.push((k.clone(), vec![v.clone()]));
                    }
                }
            }
        }
        Ok(stream::typed(groups.into_iter()))
    }

    fn pairs(&self, all: &[Arc<dyn TypedBucket>]) -> Result<Records, TaskFailure> {
        Ok(stream::typed(Self::concat(all)?.into_iter()))
    }
}

/// Splits one partition's typed pairs into typed buckets.
pub(crate) trait PairSplitter: Send + Sync {
    /// `route` places an encoded key; range partitioning is done on the typed keys instead,
    /// with the same result.
    fn split(
        &self,
        records: Records,
        spec: &ShuffleWriterSpec,
        route: Route<'_>,
        tc: &Arc<TaskContext>,
    ) -> Result<Vec<Arc<dyn TypedBucket>>, TaskFailure>;
}

struct Splitter<K, V>(PhantomData<fn() -> (K, V)>);

impl<K: Key, V: Data> PairSplitter for Splitter<K, V> {
    fn split(
        &self,
        records: Records,
        spec: &ShuffleWriterSpec,
        route: Route<'_>,
        tc: &Arc<TaskContext>,
    ) -> Result<Vec<Arc<dyn TypedBucket>>, TaskFailure> {
        let n = spec.num_reduces as usize;
        let order = match spec.typed {
            TypedBuckets::SortedByKey { ascending } => Some(ascending),
            _ => None,
        };
        let range = match &spec.partitioning {
            Partitioning::Range {
                bounds, ascending, ..
            } => Some((
                bounds
                    .iter()
                    .map(|b| codec::decode::<K>(b))
                    .collect::<Result<Vec<K>, _>>()?,
                *ascending,
            )),
            _ => None,
        };
        let pairs = stream::into_typed::<(K, V)>(records, tc)?;
        // Sized for an even split (a little over): growing a bucket copies it into fresh
        // pages, which cost more than the records' moves.
        let even = pairs.size_hint().0 / n.max(1);
        let mut buckets: Vec<Vec<(K, V)>> = (0..n)
            .map(|_| Vec::with_capacity(even + even / 16))
            .collect();
        let mut key = Vec::new();
        for (k, v) in pairs {
            let p = match &range {
                // As `KeyCodec::range_partitioner`: partition i holds keys up to bounds[i].
                Some((bounds, ascending)) => {
                    let p = bounds.partition_point(|b| b < &k);
                    if *ascending {
                        p
                    } else {
                        bounds.len() - p
                    }
                }
                // By the key's encoding, so a map task on the encoded path agrees.
                None => {
                    key.clear();
                    codec::encode_into(&k, &mut key)?;
                    route(&key)?
                }
            };
            buckets
                .get_mut(p)
                .ok_or_else(|| TaskFailure::plan(format!("partition {p} out of range 0..{n}")))?
                .push((k, v));
        }
        tc.check()?;
        buckets
            .into_iter()
            .map(|b| Ok(Arc::new(PairBucket::new(b, order)?) as Arc<dyn TypedBucket>))
            .collect()
    }
}

/// A lazy k-way merge of sorted runs: a binary heap of run indices ordered by each run's next
/// key, ties to the earlier run, so the merge equals a stable sort of the runs concatenated.
struct Merge<K, V> {
    runs: Vec<Arc<PairBucket<K, V>>>,
    next: Vec<usize>,
    heap: Vec<usize>,
    ascending: bool,
    left: usize,
}

impl<K: Key, V: Data> Merge<K, V> {
    fn new(runs: Vec<Arc<PairBucket<K, V>>>, ascending: bool) -> Self {
        let mut m = Merge {
            next: vec![0; runs.len()],
            heap: Vec::with_capacity(runs.len()),
            left: runs.iter().map(|r| r.pairs.len()).sum(),
            runs,
            ascending,
        };
        for r in 0..m.runs.len() {
            if !m.runs[r].pairs.is_empty() {
                m.heap.push(r);
                m.sift_up(m.heap.len() - 1);
            }
        }
        m
    }

    /// Whether run `a`'s next record comes before run `b`'s.
    fn before(&self, a: usize, b: usize) -> bool {
        let (ka, kb) = (
            &self.runs[a].pairs[self.next[a]].0,
            &self.runs[b].pairs[self.next[b]].0,
        );
        let o = if self.ascending {
            ka.cmp(kb)
        } else {
            kb.cmp(ka)
        };
        o.then(a.cmp(&b)) == Ordering::Less
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if !self.before(self.heap[i], self.heap[parent]) {
                break;
            }
            self.heap.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut first = i;
            if l < self.heap.len() && self.before(self.heap[l], self.heap[first]) {
                first = l;
            }
            if r < self.heap.len() && self.before(self.heap[r], self.heap[first]) {
                first = r;
            }
            if first == i {
                return;
            }
            self.heap.swap(i, first);
            i = first;
        }
    }
}

impl<K: Key, V: Data> Iterator for Merge<K, V> {
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        // Two runs left (the common case: as many runs as map tasks): one comparison, no heap.
        let run = match self.heap[..] {
            [a, b] => {
                let (first, second) = if self.before(a, b) { (a, b) } else { (b, a) };
                self.heap[0] = first;
                self.heap[1] = second;
                first
            }
            [] => return None,
            [a, ..] => a,
        };
        let record = self.runs[run].pairs[self.next[run]].clone();
        self.next[run] += 1;
        if self.next[run] == self.runs[run].pairs.len() {
            self.heap.swap_remove(0);
        }
        if self.heap.len() > 2 {
            self.sift_down(0);
        }
        self.left -= 1;
        Some(record)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// The pair types this process's shuffles may keep typed, by record type.
#[derive(Default)]
pub(crate) struct PairTypes(DashMap<TypeId, Arc<dyn PairSplitter>>);

impl PairTypes {
    pub fn register<K: Key, V: Data>(&self) {
        self.0
            .entry(TypeId::of::<(K, V)>())
            .or_insert_with(|| Arc::new(Splitter::<K, V>(PhantomData)));
    }

    pub fn get(&self, record_type: TypeId) -> Option<Arc<dyn PairSplitter>> {
        self.0.get(&record_type).map(|s| s.value().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn buckets(runs: &[Vec<(u8, u16)>], order: Option<bool>) -> Vec<Arc<dyn TypedBucket>> {
        runs.iter()
            .map(|r| Arc::new(PairBucket::new(r.clone(), order).unwrap()) as Arc<dyn TypedBucket>)
            .collect()
    }

    fn records(r: Records) -> Vec<(u8, u16)> {
        match r {
            Records::Typed(t) => match t.into_any().downcast::<stream::TypedIter<(u8, u16)>>() {
                Ok(it) => it.0.collect(),
                Err(_) => panic!("records of another type"),
            },
            _ => panic!("typed buckets gave untyped records"),
        }
    }

    proptest! {
        /// Merging sorted runs, sorting unsorted ones and a stable sort of the runs one after
        /// another all agree, both ways; grouping keeps first-come key and value order.
        #[test]
        fn sorts_and_groups_equal_a_stable_sort_of_the_runs_in_order(
            runs in prop::collection::vec(prop::collection::vec((0u8..6, any::<u16>()), 0..40), 1..6),
        ) {
            let all: Vec<(u8, u16)> = runs.concat();
            for ascending in [true, false] {
                let mut want = all.clone();
                want.sort_by(|a, b| radix_sort::by_key(&a.0, &b.0, ascending));
                let sorted = buckets(&runs, Some(ascending));
                prop_assert_eq!(records(sorted[0].sort(&sorted, ascending).unwrap()), want.clone());
                let unsorted = buckets(&runs, None);
                prop_assert_eq!(records(unsorted[0].sort(&unsorted, ascending).unwrap()), want);
            }
            let b = buckets(&runs, None);
            prop_assert_eq!(records(b[0].pairs(&b).unwrap()), all.clone());
            let mut want: Vec<(u8, Vec<u16>)> = Vec::new();
            for (k, v) in &all {
                match want.iter_mut().find(|g| g.0 == *k) {
                    Some(g) => g.1.push(*v),
                    None => want.push((*k, vec![*v])),
                }
            }
            let got = match b[0].group(&b).unwrap() {
                Records::Typed(t) => t.into_any().downcast::<stream::TypedIter<(u8, Vec<u16>)>>().map(|it| it.0.collect::<Vec<_>>()).ok(),
                _ => None,
            };
            prop_assert_eq!(got, Some(want));
        }
    }

    #[test]
    fn buckets_of_two_types_fail_the_read_rather_than_mix() {
        let a = Arc::new(PairBucket::new(vec![(1u8, 2u16)], None).unwrap()) as Arc<dyn TypedBucket>;
        let b = Arc::new(PairBucket::new(vec![(1u8, 2u32)], None).unwrap()) as Arc<dyn TypedBucket>;
        assert!(a.sort(&[a.clone(), b.clone()], true).is_err());
        assert!(a.group(&[a.clone(), b]).is_err());
    }
}
