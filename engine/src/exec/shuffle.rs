//! Shuffles. The map side splits each record into key and value bytes, picks a reduce partition,
//! optionally combines values per key, and keeps one framed bucket per reduce partition in the
//! executor's [`ShuffleStore`](crate::exec::shuffle_store::ShuffleStore). The reduce side reads its bucket from every map output and
//! groups, merges, sorts or joins by key bytes.

use crate::core::codec::{self, FrameReader, Frames};
use crate::core::error::TaskFailure;
use crate::core::key::KeyCodec;
use crate::core::plan::{
    JoinMode, KeyMode, Partitioning, ReduceSpec, ShuffleId, ShuffleWriterSpec, TypedBuckets,
};
use crate::exec::op::erased::{CombineTable, ErasedPartitioner, PairSink, TypedCombineTable};
use crate::exec::op::registry;
use crate::exec::stream::{self, Records};
use crate::exec::task_context::TaskContext;
use crate::exec::typed_shuffle::TypedBucket;
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// One map task's output: a bucket of `(key, value)` pairs per reduce partition.
pub(crate) struct MapOutput {
    pub buckets: Vec<Bucket>,
}

impl MapOutput {
    fn framed(buckets: Vec<Frames>) -> Self {
        MapOutput {
            buckets: buckets
                .into_iter()
                .map(|b| Bucket::Encoded(Arc::new(b)))
                .collect(),
        }
    }

    pub fn bytes(&self) -> u64 {
        self.buckets.iter().map(Bucket::byte_len).sum()
    }
}

/// One reduce partition's part of a map output: framed pairs, or typed ones that only a reader
/// in this process can use as they are (`typed_shuffle`).
#[derive(Clone)]
pub(crate) enum Bucket {
    Encoded(Arc<Frames>),
    Typed(Arc<dyn TypedBucket>),
}

impl Bucket {
    /// Framed bytes, or the typed pairs' estimated size in memory.
    pub fn byte_len(&self) -> u64 {
        match self {
            Bucket::Encoded(f) => f.byte_len() as u64,
            Bucket::Typed(t) => t.mem_bytes(),
        }
    }

    pub fn count(&self) -> usize {
        match self {
            Bucket::Encoded(f) => f.count,
            Bucket::Typed(t) => t.len(),
        }
    }

    /// The framed pairs, encoding typed ones.
    pub fn encoded(&self) -> Result<Arc<Frames>, TaskFailure> {
        match self {
            Bucket::Encoded(f) => Ok(f.clone()),
            Bucket::Typed(t) => t.encode().map(Arc::new),
        }
    }
}

/// The typed buckets, when every one is typed and of one type.
fn all_typed(buckets: &[Bucket]) -> Option<Vec<Arc<dyn TypedBucket>>> {
    let mut out = Vec::with_capacity(buckets.len());
    for b in buckets {
        match b {
            Bucket::Typed(t) => out.push(t.clone()),
            Bucket::Encoded(_) => return None,
        }
    }
    let first = out.first()?.as_any().type_id();
    out.iter()
        .all(|t| t.as_any().type_id() == first)
        .then_some(out)
}

fn all_encoded(buckets: Vec<Bucket>) -> Result<Vec<Arc<Frames>>, TaskFailure> {
    buckets.iter().map(Bucket::encoded).collect()
}

enum Router {
    Hash(usize),
    Range(crate::core::key::RangeFn),
    Custom(Arc<dyn ErasedPartitioner>),
    RoundRobin { n: usize, next: usize },
    Fixed(usize),
}

impl Router {
    fn new(p: &Partitioning, map_index: u32) -> Result<Self, TaskFailure> {
        Ok(match p {
            Partitioning::Hash(n) => Router::Hash(*n as usize),
            Partitioning::Range {
                key_type,
                bounds,
                ascending,
            } => {
                let bounds: Vec<Vec<u8>> = bounds.iter().map(|b| b.to_vec()).collect();
                Router::Range(
                    registry::lookup_key(key_type)?.range_partitioner(&bounds, *ascending)?,
                )
            }
            Partitioning::Custom(op) => Router::Custom(registry::decode_partitioner(op)?),
            Partitioning::RoundRobin(n) => {
                let n = (*n as usize).max(1);
                let start = (codec::fnv1a(&map_index.to_le_bytes()) % n as u64) as usize;
                Router::RoundRobin { n, next: start }
            }
            Partitioning::ByMapIndex(n) => Router::Fixed(map_index as usize % (*n as usize).max(1)),
        })
    }

    fn route(&mut self, key: &[u8]) -> Result<usize, TaskFailure> {
        Ok(match self {
            Router::Hash(n) => (codec::key_hash(key) % *n as u64) as usize,
            Router::Range(f) => f(key)?,
            Router::Custom(p) => p.partition(key)?,
            Router::RoundRobin { n, next } => {
                let p = *next;
                *next = (*next + 1) % *n;
                p
            }
            Router::Fixed(p) => *p,
        })
    }
}

/// Runs the map side of a shuffle over one partition's records.
pub(crate) fn write(
    records: Records,
    spec: &ShuffleWriterSpec,
    map_index: u32,
    tc: &Arc<TaskContext>,
) -> Result<MapOutput, TaskFailure> {
    let n = spec.num_reduces as usize;
    let codec: Option<&'static dyn KeyCodec> = match &spec.key {
        KeyMode::Codec(name) => Some(registry::lookup_key(name)?),
        _ => None,
    };
    let mut router = Router::new(&spec.partitioning, map_index)?;
    let agg_op = match &spec.combine {
        Some(agg) => Some((registry::decode_agg(&agg.op)?, agg.zero.as_deref())),
        None => None,
    };
    // Typed or lent records for a fast-path key: combine before encoding, then route each
    // distinct key.
    let fast_table = |key_type: &str, record_type: &str| match &agg_op {
        Some((op, zero)) => Ok(op
            .typed_table(key_type, *zero)?
            .filter(|t| t.accepts(record_type))),
        None => Ok::<_, TaskFailure>(None),
    };
    let records = match (&spec.key, records) {
        (KeyMode::Codec(name), Records::Typed(t)) => match fast_table(name, t.type_name())? {
            Some(mut table) => {
                table.consume(t.into_any())?;
                return drain_typed(table, &mut router, n, tc);
            }
            // A reader of typed buckets and a pair type this process registered.
            None => match tc.env.pair_types.get(t.record_type()) {
                Some(splitter) if agg_op.is_none() && spec.typed != TypedBuckets::Never => {
                    let buckets =
                        splitter.split(Records::Typed(t), spec, &mut |k| router.route(k), tc)?;
                    return Ok(MapOutput {
                        buckets: buckets.into_iter().map(Bucket::Typed).collect(),
                    });
                }
                _ => Records::Typed(t),
            },
        },
        // Borrowed pairs: looked up by the borrowed key, copied only when the key is new.
        (KeyMode::Codec(name), Records::Lent(l)) => match fast_table(name, l.type_name())? {
            Some(mut table) => {
                table.consume_lent(l)?;
                return drain_typed(table, &mut router, n, tc);
            }
            None => Records::Lent(l),
        },
        (_, r) => r,
    };
    let mut buckets: Vec<Frames> = (0..n).map(|_| Frames::default()).collect();
    let mut tables: Option<Vec<Box<dyn CombineTable>>> = match &agg_op {
        Some((op, zero)) => Some(
            (0..n)
                .map(|_| op.table(*zero, false))
                .collect::<Result<_, _>>()?,
        ),
        None => None,
    };
    stream::for_each_encoded(records, &mut |rec: &[u8]| {
        let (key, value) = match (&spec.key, codec) {
            (KeyMode::Codec(_), Some(c)) => rec.split_at(c.key_len(rec)?),
            (KeyMode::WholeRecord, _) => (rec, &[][..]),
            _ => (&[][..], rec),
        };
        let p = router.route(key)?;
        if p >= n {
            return Err(TaskFailure::plan(format!(
                "partition {p} out of range 0..{n}"
            )));
        }
        match &mut tables {
            Some(t) => t[p].insert(key, value),
            None => {
                buckets[p].push_pair(key, value);
                Ok(())
            }
        }
    })?;
    tc.check()?;
    if let Some(tables) = tables {
        for (p, t) in tables.into_iter().enumerate() {
            let bucket = &mut buckets[p];
            t.drain(&mut |k, v| {
                bucket.push_pair(k, v);
                Ok(())
            })?;
        }
    }
    Ok(MapOutput::framed(buckets))
}

/// Encodes a typed combine table's keys and combiners into their reduce partitions' buckets.
fn drain_typed(
    table: Box<dyn TypedCombineTable>,
    router: &mut Router,
    n: usize,
    tc: &Arc<TaskContext>,
) -> Result<MapOutput, TaskFailure> {
    tc.check()?;
    let mut buckets: Vec<Frames> = (0..n).map(|_| Frames::default()).collect();
    table.drain(&mut |k, c| {
        let p = router.route(k)?;
        let bucket = buckets
            .get_mut(p)
            .ok_or_else(|| TaskFailure::plan(format!("partition {p} out of range 0..{n}")))?;
        bucket.push_pair(k, c);
        Ok(())
    })?;
    Ok(MapOutput::framed(buckets))
}

/// The buckets for reduce partition `reduce` from every map output of `shuffle`, local or
/// fetched from the executors holding them.
fn fetch_all(
    tc: &Arc<TaskContext>,
    shuffle: ShuffleId,
    num_maps: u32,
    reduce: usize,
) -> Result<Vec<Bucket>, TaskFailure> {
    (0..num_maps)
        .map(|map| tc.fetch_bucket(shuffle, map, reduce as u32))
        .collect()
}

/// Calls `f` with every `(key, value)` pair of `buckets`, in order.
fn for_each_pair(buckets: Vec<Bucket>, f: PairSink<'_>) -> Result<(), TaskFailure> {
    for bucket in all_encoded(buckets)? {
        for chunk in bucket.chunks() {
            let mut reader = FrameReader::new(chunk);
            while let Some(pair) = reader.next_pair() {
                let (k, v) = pair?;
                f(k, v)?;
            }
        }
    }
    Ok(())
}

/// A frame's place in the fetched buckets in one word: map (20 bits), chunk (12 bits, so 4 GiB
/// per bucket) and offset in the chunk (32 bits). Sorting carries it beside the decoded key, so
/// the sorted gather reads each record with one cache miss instead of two.
fn locators(buckets: &[Arc<Frames>]) -> Result<Vec<u64>, TaskFailure> {
    let mut v = Vec::with_capacity(buckets.iter().map(|b| b.count).sum());
    for (m, bucket) in buckets.iter().enumerate() {
        let chunks = bucket.chunks();
        if m >= 1 << 20 || chunks.len() > 1 << 12 {
            return Err(TaskFailure::plan(
                "a sorted shuffle read exceeds 2^20 maps or 4 GiB per bucket",
            ));
        }
        for (c, buf) in chunks.iter().enumerate() {
            let mut reader = FrameReader::new(buf);
            let mut off = 0usize;
            while let Some(pair) = reader.next_pair() {
                let (k, val) = pair?;
                v.push(((m as u64) << 44) | ((c as u64) << 32) | off as u64);
                off += codec::frame_len(k.len()) + codec::frame_len(val.len());
            }
        }
    }
    Ok(v)
}

fn unpack(l: u64) -> (usize, usize, usize) {
    (
        (l >> 44) as usize,
        ((l >> 32) & 0xfff) as usize,
        (l & 0xffff_ffff) as usize,
    )
}

/// Emits the records at `locs`, in that order, lazily from the fetched buckets: a reduce task
/// holds the map outputs it read once, not a second copy of every record.
fn emit_located(buckets: Vec<Arc<Frames>>, locs: Vec<u64>, with_key: bool) -> Records {
    Records::Encoded(Box::new(locs.into_iter().map(move |l| {
        let (m, c, off) = unpack(l);
        let chunk = &buckets[m].chunks()[c];
        match FrameReader::new(&chunk[off..]).next_pair() {
            Some(Ok((k, v))) => concat(if with_key { k } else { &[] }, v),
            _ => Vec::new(),
        }
    })))
}

/// Emits the records at `locs` in that order after copying them, framed, into one buffer. The
/// copy is a tight loop whose reads do not wait on one another, so the cache misses of a sorted
/// order's random reads overlap; read lazily, one record per `next`, each miss stalled alone.
fn gather_sorted(buckets: &[Arc<Frames>], locs: &[u64]) -> Result<Records, TaskFailure> {
    let lost = || TaskFailure::plan("a sorted shuffle read lost a record");
    let total: usize = buckets.iter().map(|b| b.byte_len()).sum();
    let mut data = Vec::with_capacity(total);
    let at = |l: u64| {
        let (m, c, off) = unpack(l);
        buckets
            .get(m)
            .and_then(|b| b.chunks().get(c))
            .and_then(|c| c.get(off..))
    };
    const AHEAD: usize = 16;
    for (i, &l) in locs.iter().enumerate() {
        if let Some(next) = locs.get(i + AHEAD).and_then(|&n| at(n)) {
            prefetch(next);
        }
        let (m, c, off) = unpack(l);
        let chunk = buckets
            .get(m)
            .and_then(|b| b.chunks().get(c))
            .and_then(|c| c.get(off..))
            .ok_or_else(lost)?;
        let (k, v) = FrameReader::new(chunk).next_pair().ok_or_else(lost)??;
        codec::put_varint(&mut data, (k.len() + v.len()) as u64);
        data.extend_from_slice(k);
        data.extend_from_slice(v);
    }
    Ok(crate::exec::storage::encoded_records(Arc::new(
        Frames::from_bytes(data, locs.len()),
    )))
}

/// Asks the CPU to start loading the cache line at the front of `bytes`.
#[inline(always)]
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing into the program, cannot fault, and the
    // pointer comes from a live slice. SSE, which provides it, is part of every x86_64 CPU.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(bytes.as_ptr().cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

fn concat(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(a.len() + b.len());
    r.extend_from_slice(a);
    r.extend_from_slice(b);
    r
}

/// Runs the reduce side of one shuffle for partition `reduce`.
pub(crate) fn read(
    tc: &Arc<TaskContext>,
    shuffle: ShuffleId,
    num_maps: u32,
    reduce: usize,
    spec: &ReduceSpec,
) -> Result<Records, TaskFailure> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    match spec {
        ReduceSpec::Raw | ReduceSpec::Pairs => {
            let outputs = fetch_all(tc, shuffle, num_maps, reduce)?;
            if let (ReduceSpec::Pairs, Some(t)) = (spec, all_typed(&outputs)) {
                return t[0].pairs(&t);
            }
            let outputs = all_encoded(outputs)?;
            let locs = locators(&outputs)?;
            return Ok(emit_located(outputs, locs, *spec == ReduceSpec::Pairs));
        }
        ReduceSpec::Sort {
            key_type,
            ascending,
        } => {
            let codec = registry::lookup_key(key_type)?;
            let outputs = fetch_all(tc, shuffle, num_maps, reduce)?;
            if let Some(t) = all_typed(&outputs) {
                return t[0].sort(&t, *ascending);
            }
            let outputs = all_encoded(outputs)?;
            let locs = locators(&outputs)?;
            let key_at = |l: u64| {
                let (m, c, off) = unpack(l);
                match FrameReader::new(&outputs[m].chunks()[c][off..]).next_pair() {
                    Some(Ok((k, _))) => k,
                    _ => &[],
                }
            };
            let sorted = codec.sort_locators(&locs, &key_at, *ascending)?;
            drop(locs);
            return gather_sorted(&outputs, &sorted);
        }
        ReduceSpec::Distinct => {
            let mut seen: rustc_hash::FxHashSet<Box<[u8]>> = Default::default();
            for_each_pair(fetch_all(tc, shuffle, num_maps, reduce)?, &mut |k, _| {
                if seen.insert(k.into()) {
                    out.push(k.to_vec());
                }
                Ok(())
            })?;
        }
        ReduceSpec::Group { key_type } => {
            let outputs = fetch_all(tc, shuffle, num_maps, reduce)?;
            if let Some(t) = all_typed(&outputs) {
                return t[0].group(&t);
            }
            let mut grouper = registry::lookup_key(key_type)?.grouper();
            for_each_pair(outputs, &mut |k, v| grouper.insert(k, v))?;
            return Ok(Records::Encoded(grouper.into_records()));
        }
        ReduceSpec::Combine(agg) => {
            let mut table = registry::decode_agg(&agg.op)?.table(agg.zero.as_deref(), true)?;
            for_each_pair(fetch_all(tc, shuffle, num_maps, reduce)?, &mut |k, v| {
                table.insert(k, v)
            })?;
            table.drain(&mut |k, v| {
                out.push(concat(k, v));
                Ok(())
            })?;
        }
    }
    Ok(Records::Encoded(Box::new(out.into_iter())))
}

/// Reads several shuffles partitioned alike and groups or joins them by key.
pub(crate) fn cogroup(
    tc: &Arc<TaskContext>,
    inputs: &[(ShuffleId, u32)],
    reduce: usize,
    mode: JoinMode,
) -> Result<Records, TaskFailure> {
    let sides = inputs.len();
    let mut groups: FxHashMap<Box<[u8]>, Vec<Vec<Vec<u8>>>> = Default::default();
    let mut order: Vec<Box<[u8]>> = Vec::new();
    for (side, &(shuffle, num_maps)) in inputs.iter().enumerate() {
        for_each_pair(fetch_all(tc, shuffle, num_maps, reduce)?, &mut |k, v| {
            if !groups.contains_key(k) {
                order.push(k.into());
                groups.insert(k.into(), vec![Vec::new(); sides]);
            }
            if let Some(g) = groups.get_mut(k) {
                g[side].push(v.to_vec());
            }
            Ok(())
        })?;
    }
    let mut out = Vec::new();
    for k in order {
        let Some(g) = groups.remove(&k) else { continue };
        emit_joined(&k, &g, mode, &mut out)?;
    }
    Ok(Records::Encoded(Box::new(out.into_iter())))
}

/// Builds the postcard encoding of `(K, (Vec<V>, Vec<W>, ..))` for cogroup or of
/// `(K, (V, W))` with `Option`s on the outer sides for the joins.
fn emit_joined(
    key: &[u8],
    g: &[Vec<Vec<u8>>],
    mode: JoinMode,
    out: &mut Vec<Vec<u8>>,
) -> Result<(), TaskFailure> {
    if mode == JoinMode::CoGroup {
        let mut r = key.to_vec();
        for side in g {
            codec::put_varint(&mut r, side.len() as u64);
            for v in side {
                r.extend_from_slice(v);
            }
        }
        out.push(r);
        return Ok(());
    }
    if g.len() != 2 {
        return Err(TaskFailure::plan("a join has exactly two sides"));
    }
    let (left_opt, right_opt) = match mode {
        JoinMode::Inner => (false, false),
        JoinMode::LeftOuter => (false, true),
        JoinMode::RightOuter => (true, false),
        JoinMode::FullOuter => (true, true),
        JoinMode::CoGroup => unreachable!("handled above"),
    };
    let side = |vals: &[Vec<u8>], optional: bool| -> Vec<Option<Vec<u8>>> {
        if vals.is_empty() {
            if optional {
                vec![None]
            } else {
                vec![]
            }
        } else {
            vals.iter().map(|v| Some(v.clone())).collect()
        }
    };
    let put = |r: &mut Vec<u8>, v: &Option<Vec<u8>>, optional: bool| match (v, optional) {
        (Some(v), true) => {
            r.push(1);
            r.extend_from_slice(v);
        }
        (Some(v), false) => r.extend_from_slice(v),
        (None, _) => r.push(0),
    };
    for l in side(&g[0], left_opt) {
        for rv in side(&g[1], right_opt) {
            if l.is_none() && rv.is_none() {
                continue;
            }
            let mut r = key.to_vec();
            put(&mut r, &l, left_opt);
            put(&mut r, &rv, right_opt);
            out.push(r);
        }
    }
    Ok(())
}
