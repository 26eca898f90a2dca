//! Ops used by tests. They live in the library, not in test files, so that the executor
//! binaries a test run builds (which must carry every op a driver may ship) have them too;
//! only with the `testing` feature, which the test builds turn on and release builds do not.

use crate::core::sync::Locked;
use crate::exec::accumulator::{Accumulator, Sum};
use crate::exec::broadcast::Broadcast;
use crate::exec::op::*;
use crate::exec::stream::BoxIter;
use crate::exec::task_context::TaskContext;
use crate::register_op;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Calls counted per name across the process, for tests that prove something ran once.
fn counters() -> &'static Mutex<HashMap<String, u64>> {
    static C: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    C.get_or_init(Default::default)
}

/// How many times ops counted under `name` have run in this process.
pub fn calls(name: &str) -> u64 {
    counters().locked().get(name).copied().unwrap_or(0)
}

fn bump(name: &str) {
    *counters().locked().entry(name.to_string()).or_default() += 1;
}

/// `x + 1`.
#[derive(Clone, Serialize, Deserialize)]
pub struct AddOne;
impl MapFn for AddOne {
    type In = i64;
    type Out = i64;
    fn call(&self, x: i64) -> i64 {
        x.wrapping_add(1)
    }
}
register_op!(map AddOne);

/// `x % m` (Euclidean), a small key space for keyed tests.
#[derive(Clone, Serialize, Deserialize)]
pub struct Modulo(pub i64);
impl MapFn for Modulo {
    type In = i64;
    type Out = i64;
    fn call(&self, x: i64) -> i64 {
        x.rem_euclid(self.0)
    }
}
register_op!(map Modulo);

/// `x * x`.
#[derive(Clone, Serialize, Deserialize)]
pub struct Square;
impl MapFn for Square {
    type In = i64;
    type Out = i64;
    fn call(&self, x: i64) -> i64 {
        x.wrapping_mul(x)
    }
}
register_op!(map Square);

/// `x` as a string.
#[derive(Clone, Serialize, Deserialize)]
pub struct ToStr;
impl MapFn for ToStr {
    type In = i64;
    type Out = String;
    fn call(&self, x: i64) -> String {
        x.to_string()
    }
}
register_op!(map ToStr);

/// Whether `x` is even.
#[derive(Clone, Serialize, Deserialize)]
pub struct IsEven;
impl FilterFn for IsEven {
    type Item = i64;
    fn call(&self, x: &i64) -> bool {
        x % 2 == 0
    }
}
register_op!(filter IsEven);

/// `x` repeated `x mod 3` times.
#[derive(Clone, Serialize, Deserialize)]
pub struct Repeat;
impl FlatMapFn for Repeat {
    type In = i64;
    type Out = i64;
    type Iter = Vec<i64>;
    fn call(&self, x: i64) -> Vec<i64> {
        vec![x; x.rem_euclid(3) as usize]
    }
}
register_op!(flat_map Repeat);

/// `a + b` (wrapping).
#[derive(Clone, Serialize, Deserialize)]
pub struct Add;
impl ReduceFn for Add {
    type Value = i64;
    fn call(&self, a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }
}
register_op!(reduce Add);

/// The larger of `a` and `b`.
#[derive(Clone, Serialize, Deserialize)]
pub struct Max;
impl ReduceFn for Max {
    type Value = i64;
    fn call(&self, a: i64, b: i64) -> i64 {
        a.max(b)
    }
}
register_op!(reduce Max);

/// (sum, count) of the values: a combiner of another type than the values.
#[derive(Clone, Serialize, Deserialize)]
pub struct SumCount;
impl AggregateFn for SumCount {
    type Value = i64;
    type Acc = (i64, u64);
    fn seq(&self, acc: (i64, u64), v: i64) -> (i64, u64) {
        (acc.0.wrapping_add(v), acc.1 + 1)
    }
    fn comb(&self, a: (i64, u64), b: (i64, u64)) -> (i64, u64) {
        (a.0.wrapping_add(b.0), a.1 + b.1)
    }
}
register_op!(aggregate SumCount);

/// Values of a key as a sorted list (so the result does not depend on arrival order).
#[derive(Clone, Serialize, Deserialize)]
pub struct SortedList;
impl CombineFn for SortedList {
    type Value = i64;
    type Combiner = Vec<i64>;
    fn create(&self, v: i64) -> Vec<i64> {
        vec![v]
    }
    fn merge_value(&self, mut c: Vec<i64>, v: i64) -> Vec<i64> {
        let at = c.partition_point(|x| *x < v);
        c.insert(at, v);
        c
    }
    fn merge_combiners(&self, a: Vec<i64>, b: Vec<i64>) -> Vec<i64> {
        let mut c: Vec<i64> = a.into_iter().chain(b).collect();
        c.sort_unstable();
        c
    }
}
register_op!(combine SortedList);

/// Sums of each partition, tagged with the partition index.
#[derive(Clone, Serialize, Deserialize)]
pub struct PartitionSum;
impl PartitionFn for PartitionSum {
    type In = i64;
    type Out = (u64, i64);
    fn call(&self, index: usize, input: BoxIter<i64>) -> BoxIter<(u64, i64)> {
        let s = input.fold(0i64, |a, b| a.wrapping_add(b));
        Box::new(std::iter::once((index as u64, s)))
    }
}
register_op!(partitions PartitionSum);

/// Element-wise sums of two partitions.
#[derive(Clone, Serialize, Deserialize)]
pub struct ZipAdd;
impl ZipFn for ZipAdd {
    type A = i64;
    type B = i64;
    type Out = i64;
    fn call(&self, a: BoxIter<i64>, b: BoxIter<i64>) -> BoxIter<i64> {
        Box::new(a.zip(b).map(|(x, y)| x.wrapping_add(y)))
    }
}
register_op!(zip ZipAdd);

/// Puts key k in partition k mod n.
#[derive(Clone, Serialize, Deserialize)]
pub struct ModPartitioner(pub usize);
impl Partitioner for ModPartitioner {
    type Key = i64;
    fn num_partitions(&self) -> usize {
        self.0
    }
    fn partition(&self, key: &i64) -> usize {
        key.rem_euclid(self.0 as i64) as usize
    }
}
register_op!(partitioner ModPartitioner);

/// Identity that counts its calls under `name` (a side effect tests can observe).
#[derive(Clone, Serialize, Deserialize)]
pub struct Counted(pub String);
impl MapFn for Counted {
    type In = i64;
    type Out = i64;
    fn call(&self, x: i64) -> i64 {
        bump(&self.0);
        x
    }
}
register_op!(map Counted);

/// Identity that panics in the first `failures` attempts of partition `partition`.
#[derive(Clone, Serialize, Deserialize)]
pub struct FailAttempts {
    /// The partition whose attempts fail.
    pub partition: usize,
    /// How many of its attempts fail.
    pub failures: u32,
}
impl MapFn for FailAttempts {
    type In = i64;
    type Out = i64;
    fn call(&self, x: i64) -> i64 {
        if let Some(tc) = TaskContext::get() {
            if tc.partition_id() == self.partition && tc.attempt_number() < self.failures {
                panic!(
                    "injected failure in partition {} attempt {}",
                    self.partition,
                    tc.attempt_number()
                );
            }
        }
        x
    }
}
register_op!(map FailAttempts);

/// Adds each record to an accumulator (and passes it on).
#[derive(Clone, Serialize, Deserialize)]
pub struct Accumulate(pub Accumulator<Sum<i64>>);
impl MapFn for Accumulate {
    type In = i64;
    type Out = i64;
    fn call(&self, x: i64) -> i64 {
        self.0.add(x);
        x
    }
}
register_op!(map Accumulate);

/// Adds each record to an accumulator, as a `foreach` action.
#[derive(Clone, Serialize, Deserialize)]
pub struct AddEach(pub Accumulator<Sum<i64>>);
impl ForeachFn for AddEach {
    type Item = i64;
    fn call(&self, x: i64) {
        self.0.add(x);
    }
}
register_op!(foreach AddEach);

/// `x + table[x mod len]`, the table read from a broadcast.
#[derive(Clone, Serialize, Deserialize)]
pub struct AddFromTable(pub Broadcast<Vec<i64>>);
impl MapFn for AddFromTable {
    type In = i64;
    type Out = i64;
    fn call(&self, x: i64) -> i64 {
        let t = self.0.value();
        x + t[x.rem_euclid(t.len() as i64) as usize]
    }
}
register_op!(map AddFromTable);

/// `x + by` — but `by` is not encoded, so on an executor it is always 0. Local mode must show
/// that (it runs the decoded copy), which is what a test of the encoding path checks.
#[derive(Clone, Serialize, Deserialize)]
pub struct SkippedOffset {
    /// Added to every record; never encoded.
    #[serde(skip)]
    pub by: i64,
}
impl MapFn for SkippedOffset {
    type In = i64;
    type Out = i64;
    fn call(&self, x: i64) -> i64 {
        x + self.by
    }
}
register_op!(map SkippedOffset);

/// An op that is deliberately not registered.
#[derive(Clone, Serialize, Deserialize)]
pub struct Unregistered;
impl MapFn for Unregistered {
    type In = i64;
    type Out = i64;
    fn call(&self, x: i64) -> i64 {
        x
    }
}

/// Sorts strings by themselves (used by `sort_by`).
#[derive(Clone, Serialize, Deserialize)]
pub struct Words2;
impl MapFn for Words2 {
    type In = String;
    type Out = String;
    fn call(&self, s: String) -> String {
        s
    }
}
register_op!(map Words2);

/// A barrier for fault-injection tests: the first task to reach it (attempt 0 of `partition`)
/// writes its process id to `DIR/reached` and then waits (up to 2 minutes) for `DIR/release`,
/// so that a test can kill that process at a known point of a job instead of sleeping. Once
/// `reached` exists, every record passes straight through (a re-run does not block again).
#[derive(Clone, Serialize, Deserialize)]
pub struct BlockOnce {
    /// The directory for `reached` and `release`.
    pub dir: String,
    /// The partition whose first attempt blocks.
    pub partition: usize,
}
impl MapFn for BlockOnce {
    type In = i64;
    type Out = i64;
    fn call(&self, x: i64) -> i64 {
        let Some(tc) = TaskContext::get() else {
            return x;
        };
        let dir = std::path::Path::new(&self.dir);
        let reached = dir.join("reached");
        if tc.partition_id() != self.partition || tc.attempt_number() != 0 || reached.exists() {
            return x;
        }
        let tmp = dir.join(format!("reached.{}", std::process::id()));
        let _ = std::fs::write(&tmp, std::process::id().to_string());
        let _ = std::fs::rename(&tmp, &reached);
        let start = std::time::Instant::now();
        while !dir.join("release").exists() && start.elapsed().as_secs() < 120 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        x
    }
}
register_op!(map BlockOnce);

/// Handles on an executor's block manager and shuffle store, for benchmarks of them under
/// concurrent use (`engine/benches/stores.rs`).
pub mod stores {
    use crate::core::codec::Frames;
    use crate::exec::shuffle::{Bucket, MapOutput};
    use crate::exec::shuffle_store::ShuffleStore;
    use crate::exec::storage::{Block, BlockManager, StorageLevel, VecBlock};
    use std::sync::Arc;

    /// A block manager with `budget` bytes of memory, spilling under the system's temp dir.
    pub struct Blocks(BlockManager);

    impl Blocks {
        /// A block manager with `budget` bytes of memory.
        pub fn new(budget: usize) -> std::io::Result<Self> {
            BlockManager::new_in(budget, &std::env::temp_dir()).map(Blocks)
        }

        /// Caches partition `partition` of rdd `rdd`: `records` numbers, in memory.
        pub fn put(&self, rdd: u64, partition: usize, records: usize) -> bool {
            let block = Block::Typed(Arc::new(VecBlock::new((0..records as i64).collect())));
            self.0
                .put((rdd, partition), block, StorageLevel::MemoryOnly)
                .is_ok_and(|stored| stored.is_some())
        }

        /// Reads a cached partition's first record, as a task starting on it does.
        pub fn read_first(&self, rdd: u64, partition: usize) -> bool {
            matches!(self.0.get((rdd, partition)), Ok(Some(_)))
        }
    }

    /// A shuffle store with `budget` bytes of memory, spilling under the system's temp dir.
    pub struct Shuffles(ShuffleStore);

    impl Shuffles {
        /// A shuffle store with `budget` bytes of memory.
        pub fn new(budget: usize) -> std::io::Result<Self> {
            ShuffleStore::new_in(budget, &std::env::temp_dir()).map(Shuffles)
        }

        /// Keeps map output `map` of `shuffle`: `reducers` buckets of `bytes` bytes each.
        pub fn put(&self, shuffle: u64, map: u32, reducers: usize, bytes: usize) -> bool {
            let bucket = || {
                let mut f = Frames::default();
                f.push(&vec![7u8; bytes]);
                Bucket::Encoded(Arc::new(f))
            };
            let out = MapOutput {
                buckets: (0..reducers).map(|_| bucket()).collect(),
            };
            self.0.put(shuffle, map, out).is_ok()
        }

        /// Reads one bucket, as a reducer does.
        pub fn read(&self, shuffle: u64, map: u32, reduce: u32) -> bool {
            self.0.bucket(shuffle, map, reduce).is_ok()
        }
    }
}

// Borrowed-record ops (`exec::lent`), each with an owned twin in the tests' references.

/// A line's words (split on Unicode whitespace), lent as slices of the line.
#[derive(Clone, Serialize, Deserialize)]
pub struct SplitLent;
impl FlatMapBorrowedFn for SplitLent {
    type In = String;
    type Out = String;
    fn call<'a>(&self, line: &'a str, emit: &mut dyn FnMut(&'a str)) {
        line.split_whitespace().for_each(emit);
    }
}
register_op!(flat_map_borrowed SplitLent);

/// `(word, 1)`, borrowing the word.
#[derive(Clone, Serialize, Deserialize)]
pub struct WithOneLent;
impl MapBorrowedFn for WithOneLent {
    type In = String;
    type Out = (String, u64);
    fn call<'a>(&self, w: &'a str) -> (&'a str, u64)
    where
        Self: 'a,
    {
        (w, 1)
    }
}
register_op!(map_borrowed WithOneLent);

/// `(word, word)`: a lent pair whose value is a string too (not one of the direct value types).
#[derive(Clone, Serialize, Deserialize)]
pub struct WithSelfLent;
impl MapBorrowedFn for WithSelfLent {
    type In = String;
    type Out = (String, String);
    fn call<'a>(&self, w: &'a str) -> (&'a str, &'a str)
    where
        Self: 'a,
    {
        (w, w)
    }
}
register_op!(map_borrowed WithSelfLent);

/// Words longer than `.0` bytes.
#[derive(Clone, Serialize, Deserialize)]
pub struct LongerThan(pub usize);
impl FilterBorrowedFn for LongerThan {
    type Item = String;
    fn call(&self, w: &str) -> bool {
        w.len() > self.0
    }
}
register_op!(filter_borrowed LongerThan);

/// `(x mod m, x)` (Euclidean) from a number lent by value.
#[derive(Clone, Serialize, Deserialize)]
pub struct ModPairLent(pub i64);
impl MapBorrowedFn for ModPairLent {
    type In = i64;
    type Out = (i64, i64);
    fn call<'a>(&self, x: i64) -> (i64, i64)
    where
        Self: 'a,
    {
        (x.rem_euclid(self.0), x)
    }
}
register_op!(map_borrowed ModPairLent);

/// `((x mod m, 0), x)`: a key that is not a fast-path key type.
#[derive(Clone, Serialize, Deserialize)]
pub struct TupleKeyLent(pub i64);
impl MapBorrowedFn for TupleKeyLent {
    type In = i64;
    type Out = ((i64, i64), i64);
    fn call<'a>(&self, x: i64) -> ((i64, i64), i64)
    where
        Self: 'a,
    {
        ((x.rem_euclid(self.0), 0), x)
    }
}
register_op!(map_borrowed TupleKeyLent);

/// `a + b` over counts.
#[derive(Clone, Serialize, Deserialize)]
pub struct AddCounts;
impl ReduceFn for AddCounts {
    type Value = u64;
    fn call(&self, a: u64, b: u64) -> u64 {
        a + b
    }
}
register_op!(reduce AddCounts);

/// The smaller of two strings.
#[derive(Clone, Serialize, Deserialize)]
pub struct MinStr;
impl ReduceFn for MinStr {
    type Value = String;
    fn call(&self, a: String, b: String) -> String {
        a.min(b)
    }
}
register_op!(reduce MinStr);
