//! Key types. The keyed operators (shuffles, joins, sorts) move values as opaque bytes and only
//! need to find, hash and order keys; a registered [`KeyCodec`] does that for one key type, found
//! by name on the executor. Keys hash by their encoding, which postcard makes canonical for the
//! types allowed here (`Eq + Hash + Ord`: no floats, no hash maps).

use crate::core::codec::{self, Data};
use crate::core::error::TaskFailure;
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
