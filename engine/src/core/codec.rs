//! How records become bytes. Records use postcard (compact, canonical for the types keys may
//! have, and a published wire format: a tuple is its fields back to back, a `Vec` is a varint
//! length then its items, an `Option` is a 0 or 1 byte then the value). The keyed operators rely
//! on that layout to build `(K, Vec<V>)` or `(K, (V, W))` records from byte slices without
//! knowing `V` or `W`.

use crate::core::error::TaskFailure;
use serde::{de::DeserializeOwned, Serialize};

/// A record type: anything serde can encode that can be cloned and sent between threads.
pub trait Data: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Data for T {}

pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, TaskFailure> {
    postcard::to_allocvec(value).map_err(|e| TaskFailure::Encode {
        what: std::any::type_name::<T>().to_string(),
        message: e.to_string(),
    })
}

/// Appends `value`'s encoding to `buf` (no allocation once `buf` has grown).
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<(), TaskFailure> {
    let taken = std::mem::take(buf);
    match postcard::to_extend(value, taken) {
        Ok(v) => {
            *buf = v;
            Ok(())
        }
        Err(e) => Err(TaskFailure::Encode {
            what: std::any::type_name::<T>().to_string(),
            message: e.to_string(),
        }),
    }
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, TaskFailure> {
    postcard::from_bytes(bytes).map_err(|e| TaskFailure::Decode {
        what: std::any::type_name::<T>().to_string(),
        message: e.to_string(),
    })
}

/// Decodes a value from the front of `bytes` and returns the rest.
pub(crate) fn take<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, &[u8]), TaskFailure> {
    postcard::take_from_bytes(bytes).map_err(|e| TaskFailure::Decode {
        what: std::any::type_name::<T>().to_string(),
        message: e.to_string(),
    })
}

/// Writes `n` as postcard writes a sequence length (LEB128).
pub(crate) fn put_varint(buf: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            buf.push(byte);
            return;
        }
        buf.push(byte | 0x80);
    }
}

/// Reads a LEB128 varint, returning it and the number of bytes it took.
pub(crate) fn get_varint(bytes: &[u8]) -> Result<(u64, usize), TaskFailure> {
    let mut n: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((n, i + 1));
        }
    }
    Err(TaskFailure::Decode {
        what: "varint".into(),
        message: "truncated or overlong".into(),
    })
}

/// The bytes a frame of `len` payload bytes takes: its varint length, then the payload.
pub(crate) fn frame_len(len: usize) -> usize {
    let bits = usize::BITS - (len | 1).leading_zeros();
    bits.div_ceil(7) as usize + len
}

/// A list of byte strings, each behind its length as a LEB128 varint (one byte up to 127, so a
/// small record's frame costs one byte, not four), kept in chunks of about
/// 1 MiB: growing never copies what is written, and a frame never straddles two chunks. Used
/// for shuffle buckets, cached blocks and collected results.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct Frames {
    chunks: Vec<Vec<u8>>,
    pub count: usize,
    bytes: usize,
}

const CHUNK: usize = 1 << 20;
/// The first chunk's size: chunks double from here up to [`CHUNK`], so a list of a few records
/// (an empty partition's bucket, a small result) costs bytes, not a mebibyte.
const FIRST_CHUNK: usize = 512;

impl Frames {
    /// One chunk holding an already framed buffer.
    pub fn from_bytes(buf: Vec<u8>, count: usize) -> Self {
        let bytes = buf.len();
        Frames {
            chunks: vec![buf],
            count,
            bytes,
        }
    }

    fn room(&mut self, need: usize) -> &mut Vec<u8> {
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= need);
        if !fits {
            let next = self
                .chunks
                .last()
                .map_or(FIRST_CHUNK, |c| c.capacity().saturating_mul(2).min(CHUNK));
            self.chunks.push(Vec::with_capacity(need.max(next)));
        }
        self.bytes += need;
        let last = self.chunks.len() - 1;
        &mut self.chunks[last]
    }

    pub fn push(&mut self, bytes: &[u8]) {
        let c = self.room(frame_len(bytes.len()));
        put_varint(c, bytes.len() as u64);
        c.extend_from_slice(bytes);
        self.count += 1;
    }

    /// A pair `(key, value)` as two consecutive frames.
    pub fn push_pair(&mut self, key: &[u8], value: &[u8]) {
        let c = self.room(frame_len(key.len()) + frame_len(value.len()));
        put_varint(c, key.len() as u64);
        c.extend_from_slice(key);
        put_varint(c, value.len() as u64);
        c.extend_from_slice(value);
        self.count += 1;
    }

    /// A bucket of `(key, value)` pairs received chunk by chunk from another executor; every
    /// chunk must hold whole pairs (as [`Frames::push_pair`] writes them).
    pub fn from_pair_chunks(chunks: Vec<Vec<u8>>) -> Result<Self, TaskFailure> {
        let mut count = 0;
        for c in &chunks {
            let mut r = FrameReader::new(c);
            while let Some(pair) = r.next_pair() {
                pair?;
                count += 1;
            }
        }
        let bytes = chunks.iter().map(Vec::len).sum();
        Ok(Frames {
            chunks,
            count,
            bytes,
        })
    }

    /// Chunks that each hold whole frames, as [`Frames::chunks`] returned them.
    pub(crate) fn from_chunks(chunks: Vec<Vec<u8>>, count: usize) -> Self {
        let bytes = chunks.iter().map(Vec::len).sum();
        Frames {
            chunks,
            count,
            bytes,
        }
    }

    pub fn chunks(&self) -> &[Vec<u8>] {
        &self.chunks
    }

    pub fn byte_len(&self) -> usize {
        self.bytes
    }

    /// One contiguous buffer (no copy when there is a single chunk).
    pub fn into_bytes(mut self) -> Vec<u8> {
        if self.chunks.len() == 1 {
            return self.chunks.pop().unwrap_or_default();
        }
        self.chunks.concat()
    }
}

/// A key and a value, borrowed from a framed buffer.
pub type BytePair<'a> = (&'a [u8], &'a [u8]);

/// Iterates the frames of a [`Frames`] buffer, failing on a truncated frame.
pub(crate) struct FrameReader<'a> {
    rest: &'a [u8],
}

impl<'a> FrameReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        FrameReader { rest: buf }
    }

    #[inline]
    pub fn next_frame(&mut self) -> Option<Result<&'a [u8], TaskFailure>> {
        let (&first, _) = self.rest.split_first()?;
        let (len, head) = if first < 0x80 {
            (usize::from(first), 1)
        } else {
            match get_varint(self.rest) {
                Ok((len, head)) => (len as usize, head),
                Err(_) => return Some(Err(truncated())),
            }
        };
        let Some(frame) = self.rest.get(head..head.saturating_add(len)) else {
            return Some(Err(truncated()));
        };
        self.rest = &self.rest[head + len..];
        Some(Ok(frame))
    }

    #[inline]
    pub fn next_pair(&mut self) -> Option<Result<BytePair<'a>, TaskFailure>> {
        let key = match self.next_frame()? {
            Ok(k) => k,
            Err(e) => return Some(Err(e)),
        };
        match self.next_frame() {
            Some(Ok(v)) => Some(Ok((key, v))),
            Some(Err(e)) => Some(Err(e)),
            None => Some(Err(truncated())),
        }
    }
}

fn truncated() -> TaskFailure {
    TaskFailure::Decode {
        what: "frame".into(),
        message: "truncated frame".into(),
    }
}

/// Splits a framed buffer into owned records.
pub(crate) fn frames_to_vecs(buf: &[u8]) -> Result<Vec<Vec<u8>>, TaskFailure> {
    let mut reader = FrameReader::new(buf);
    let mut out = Vec::new();
    while let Some(frame) = reader.next_frame() {
        out.push(frame?.to_vec());
    }
    Ok(out)
}

/// FNV-1a, 64 bit: a hash that is the same in every process and every build (the build
/// fingerprint uses it).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The hash of an encoded key for partitioning: eight bytes a step, defined here rather than
/// borrowed from a hasher crate so it can never change under us (every executor of a job must
/// route a key to the same partition).
#[inline]
pub(crate) fn key_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h: u64 = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut tail = [0u8; 8];
        tail[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    }
    // Final avalanche so that `h % n` uses the high bits too.
    h ^= h >> 32;
    h = h.wrapping_mul(K);
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    mod untrusted_frames {
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]
            /// Shuffle chunks as they arrive from another executor: any bytes give pairs or a
            /// decode error, never a panic, and nothing is allocated beyond the input's size.
            #[test]
            fn arbitrary_chunks_never_panic(
                chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..6),
            ) {
                let total: usize = chunks.iter().map(Vec::len).sum();
                if let Ok(f) = super::super::Frames::from_pair_chunks(chunks) {
                    prop_assert_eq!(f.byte_len(), total);
                }
            }

            /// A framed buffer with a byte changed or cut: frames or an error, never a panic.
            #[test]
            fn mutated_frames_never_panic(
                records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..8),
                at in any::<prop::sample::Index>(),
                v in 1u8..,
                cut in any::<prop::sample::Index>(),
            ) {
                let mut f = super::super::Frames::default();
                for r in &records {
                    f.push(r);
                }
                let mut buf = f.into_bytes();
                let i = at.index(buf.len());
                buf[i] ^= v;
                let keep = buf.len() - cut.index(buf.len() / 2 + 1);
                buf.truncate(keep);
                let _ = super::super::frames_to_vecs(&buf);
            }
        }
    }

    #[test]
    fn a_few_frames_cost_bytes_and_many_reach_full_chunks() {
        let mut f = super::Frames::default();
        f.push(b"abc");
        assert!(
            f.chunks()[0].capacity() <= 1024,
            "{}",
            f.chunks()[0].capacity()
        );
        let record = [7u8; 1000];
        for _ in 0..10_000 {
            f.push(&record);
        }
        assert_eq!(f.count, 10_001);
        assert!(f.chunks().iter().any(|c| c.capacity() == super::CHUNK));
        // Doubling: the chunks' capacities stay within twice what they hold.
        let cap: usize = f.chunks().iter().map(Vec::capacity).sum();
        assert!(
            cap <= 2 * f.byte_len() + super::CHUNK,
            "{cap} for {}",
            f.byte_len()
        );
        let mut r = super::FrameReader::new(&f.chunks()[0]);
        assert_eq!(r.next_frame().unwrap().unwrap(), b"abc");
    }

    use super::*;

    #[test]
    fn postcard_layouts_that_keyed_operators_rely_on() {
        let k = encode(&"key".to_string()).unwrap();
        let v1 = encode(&7u64).unwrap();
        let v2 = encode(&300u64).unwrap();
        let mut grouped = k.clone();
        put_varint(&mut grouped, 2);
        grouped.extend_from_slice(&v1);
        grouped.extend_from_slice(&v2);
        assert_eq!(
            encode(&("key".to_string(), vec![7u64, 300])).unwrap(),
            grouped
        );

        let mut joined = k.clone();
        joined.extend_from_slice(&v1);
        joined.push(1);
        joined.extend_from_slice(&v2);
        assert_eq!(
            encode(&("key".to_string(), (7u64, Some(300u64)))).unwrap(),
            joined
        );
        let mut none = k.clone();
        none.push(0);
        none.extend_from_slice(&v2);
        assert_eq!(
            encode(&("key".to_string(), (None::<u64>, 300u64))).unwrap(),
            none
        );
    }

    #[test]
    fn frames_span_chunks_without_splitting_a_frame() {
        let mut f = Frames::default();
        let big = vec![7u8; 700_000];
        for i in 0..5u8 {
            f.push_pair(&[i], &big);
        }
        assert!(f.chunks().len() > 1);
        let mut n = 0;
        for c in f.chunks() {
            let mut r = FrameReader::new(c);
            while let Some(p) = r.next_pair() {
                let (k, v) = p.unwrap();
                assert_eq!((k, v.len()), (&[n][..], big.len()));
                n += 1;
            }
        }
        assert_eq!(n, 5);
        assert_eq!(frames_to_vecs(&f.into_bytes()).unwrap().len(), 10);
    }

    #[test]
    fn varints_round_trip() {
        for n in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, n);
            assert_eq!(get_varint(&b).unwrap(), (n, b.len()));
            assert_eq!(b, encode(&(n as usize)).unwrap_or_else(|_| b.clone()));
        }
    }

    #[test]
    fn truncated_frames_are_errors() {
        let mut f = Frames::default();
        f.push(b"hello");
        let buf = f.into_bytes();
        let cut = &buf[..buf.len() - 1];
        assert!(FrameReader::new(cut).next_frame().unwrap().is_err());
    }
}
