//! Key types. The keyed operators (shuffles, joins, sorts) move values as opaque bytes — unless
//! a shuffle's pairs stay typed for a reader in the same process (`exec::typed_shuffle`) — and
//! only need to find, hash and order keys; a registered [`KeyCodec`] does that for one key type,
//! found by name on the executor. Keys hash by their encoding, which postcard makes canonical for the
//! types allowed here (`Eq + Hash + Ord`: no floats, no hash maps).

use crate::core::codec::{self, Data};
use crate::core::error::TaskFailure;
use rustc_hash::FxHashMap;
use std::cmp::Ordering;
use std::marker::PhantomData;

/// A key of a pair RDD.
pub trait Key: Data + Eq + std::hash::Hash + Ord {}
impl<T: Data + Eq + std::hash::Hash + Ord> Key for T {}

/// Maps an encoded key to its range partition (built from the sampled bounds).
pub type RangeFn = Box<dyn Fn(&[u8]) -> Result<usize, TaskFailure> + Send + Sync>;

#[doc(hidden)]
pub trait KeyCodec: Send + Sync {
    /// How many leading bytes of an encoded `(K, V)` record are the key.
    fn key_len(&self, record: &[u8]) -> Result<usize, TaskFailure>;
    /// Sorts `(key, locator)` pairs by key and returns the locators in sorted order; ties keep
    /// their input order when `locators` is increasing.
    fn sort_locators<'a>(
        &self,
        locators: &[u64],
        key_at: &dyn Fn(u64) -> &'a [u8],
        ascending: bool,
    ) -> Result<Vec<u64>, TaskFailure>;
    /// Maps a key to its range partition, given the encoded upper bounds of all but the last.
    fn range_partitioner(
        &self,
        bounds: &[Vec<u8>],
        ascending: bool,
    ) -> Result<RangeFn, TaskFailure>;
    /// Groups encoded `(key, value)` pairs by key (`group_by_key`'s reduce side).
    fn grouper(&self) -> Box<dyn Grouper>;
}

/// Collects each key's values, in the order they arrive, and emits one `(K, Vec<V>)` record
/// per key (postcard's layout: the key, the count, the values) in the order keys first came.
#[doc(hidden)]
pub trait Grouper: Send {
    fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<(), TaskFailure>;
    /// The groups' records, built one at a time as they are read (each group's values are
    /// freed as its record is made, so the allocator reuses them).
    fn into_records(self: Box<Self>) -> Box<dyn Iterator<Item = Vec<u8>> + Send>;
}

/// A group's record: the key's bytes, the value count, the values' bytes.
fn group_record(key: &[u8], count: u64, values: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(key.len() + 10 + values.len());
    r.extend_from_slice(key);
    codec::put_varint(&mut r, count);
    r.extend_from_slice(values);
    r
}

/// Groups by decoded key: hashing a decoded integer is cheaper than hashing and comparing its
/// bytes.
struct TypedGrouper<K> {
    index: FxHashMap<K, usize>,
    /// The key's bytes as they came, the value count, the values' bytes.
    groups: Vec<(Box<[u8]>, u64, Vec<u8>)>,
}

impl<K: Key> Grouper for TypedGrouper<K> {
    fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<(), TaskFailure> {
        let k: K = codec::decode(key)?;
        match self.index.get(&k) {
            Some(&i) => {
                let g = &mut self.groups[i];
                g.1 += 1;
                g.2.extend_from_slice(value);
            }
            None => {
                self.index.insert(k, self.groups.len());
                self.groups.push((key.into(), 1, value.to_vec()));
            }
        }
        Ok(())
    }

    fn into_records(self: Box<Self>) -> Box<dyn Iterator<Item = Vec<u8>> + Send> {
        Box::new(
            self.groups
                .into_iter()
                .map(|(k, n, values)| group_record(&k, n, &values)),
        )
    }
}

/// Groups by key bytes: for keys whose decoding allocates (strings).
#[derive(Default)]
struct BytesGrouper {
    index: FxHashMap<Box<[u8]>, usize>,
    groups: Vec<(u64, Vec<u8>)>,
    keys: Vec<Box<[u8]>>,
}

impl Grouper for BytesGrouper {
    fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<(), TaskFailure> {
        match self.index.get(key) {
            Some(&i) => {
                let g = &mut self.groups[i];
                g.0 += 1;
                g.1.extend_from_slice(value);
            }
            None => {
                self.index.insert(key.into(), self.groups.len());
                self.keys.push(key.into());
                self.groups.push((1, value.to_vec()));
            }
        }
        Ok(())
    }

    fn into_records(self: Box<Self>) -> Box<dyn Iterator<Item = Vec<u8>> + Send> {
        Box::new(
            self.keys
                .into_iter()
                .zip(self.groups)
                .map(|(k, (n, values))| group_record(&k, n, &values)),
        )
    }
}

#[doc(hidden)]
pub struct KeyRegistration {
    pub name: fn() -> &'static str,
    pub codec: &'static dyn KeyCodec,
}

inventory::collect!(KeyRegistration);

#[doc(hidden)]
pub struct KeyCodecImpl<K>(pub PhantomData<fn() -> K>);

impl<K: Key> KeyCodec for KeyCodecImpl<K> {
    fn key_len(&self, record: &[u8]) -> Result<usize, TaskFailure> {
        let (_, rest) = codec::take::<K>(record)?;
        Ok(record.len() - rest.len())
    }

    fn sort_locators<'a>(
        &self,
        locators: &[u64],
        key_at: &dyn Fn(u64) -> &'a [u8],
        ascending: bool,
    ) -> Result<Vec<u64>, TaskFailure> {
        let mut decoded: Vec<(K, u64)> = Vec::with_capacity(locators.len());
        for &l in locators {
            decoded.push((codec::decode::<K>(key_at(l))?, l));
        }
        if ascending {
            decoded.sort_unstable();
        } else {
            decoded.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        }
        Ok(decoded.into_iter().map(|(_, l)| l).collect())
    }

    fn range_partitioner(
        &self,
        bounds: &[Vec<u8>],
        ascending: bool,
    ) -> Result<RangeFn, TaskFailure> {
        let bounds: Vec<K> = bounds
            .iter()
            .map(|b| codec::decode::<K>(b))
            .collect::<Result<_, _>>()?;
        Ok(Box::new(move |key: &[u8]| {
            let k: K = codec::decode(key)?;
            // Partition i holds keys up to and including bounds[i].
            let p = bounds.partition_point(|b| b.cmp(&k) == Ordering::Less);
            Ok(if ascending { p } else { bounds.len() - p })
        }))
    }

    fn grouper(&self) -> Box<dyn Grouper> {
        Box::new(TypedGrouper::<K> {
            index: FxHashMap::default(),
            groups: Vec::new(),
        })
    }
}

/// String keys are the common case (word counts); find their length without allocating.
#[doc(hidden)]
pub struct StringKeyCodec;

impl KeyCodec for StringKeyCodec {
    fn key_len(&self, record: &[u8]) -> Result<usize, TaskFailure> {
        let (len, used) = codec::get_varint(record)?;
        let end = used + len as usize;
        if end > record.len() {
            return Err(TaskFailure::Decode {
                what: "String key".into(),
                message: "truncated".into(),
            });
        }
        Ok(end)
    }

    fn sort_locators<'a>(
        &self,
        locators: &[u64],
        key_at: &dyn Fn(u64) -> &'a [u8],
        ascending: bool,
    ) -> Result<Vec<u64>, TaskFailure> {
        KeyCodecImpl::<String>(PhantomData).sort_locators(locators, key_at, ascending)
    }

    fn range_partitioner(
        &self,
        bounds: &[Vec<u8>],
        ascending: bool,
    ) -> Result<RangeFn, TaskFailure> {
        KeyCodecImpl::<String>(PhantomData).range_partitioner(bounds, ascending)
    }

    fn grouper(&self) -> Box<dyn Grouper> {
        Box::<BytesGrouper>::default()
    }
}

/// Registers a key type so executors can shuffle, join and sort by it:
/// `register_key!(MyKey);` at module level. Common types are registered by the engine.
#[macro_export]
macro_rules! register_key {
    ($ty:ty) => {
        $crate::__private::inventory::submit! {
            $crate::__private::KeyRegistration {
                name: ::std::any::type_name::<$ty>,
                codec: &$crate::__private::KeyCodecImpl::<$ty>(::std::marker::PhantomData),
            }
        }
    };
}

inventory::submit! {
    KeyRegistration { name: std::any::type_name::<String>, codec: &StringKeyCodec }
}

macro_rules! builtin_keys {
    ($($ty:ty),* $(,)?) => { $( register_key!($ty); )* };
}

builtin_keys!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    bool,
    char,
    (),
    Vec<u8>,
    Vec<u32>,
    Vec<u64>,
    Vec<i64>,
    Vec<String>,
    (u32, u32),
    (u64, u64),
    (i32, i32),
    (i64, i64),
    (usize, usize),
    (String, String),
    (String, u64),
    (String, i64),
    (u64, String),
    (i64, String),
    (String, u32),
    (u32, String),
    (u64, u64, u64),
    (i64, i64, i64),
    Option<String>,
    Option<u64>,
    Option<i64>,
);

/// The codec for `K`, checked on the driver so a missing registration fails at once.
pub(crate) fn key_type_name<K: Key>() -> &'static str {
    std::any::type_name::<K>()
}
