//! A partition's records while a task runs. The plan that reaches an executor is rebuilt from
//! names, so operators see records type-erased: either a typed iterator (made by code that knows
//! the type, which is the fast path between fused operators) or encoded records (after a shuffle,
//! a cache spill or a parallelize). Whoever knows the type converts: a producer can always encode
//! its records, and a consumer can always decode what it expects.

use crate::core::codec::{self, Data};
use crate::core::error::TaskFailure;
use crate::exec::lent::LentRecords;
use crate::exec::task_context::TaskContext;
use rand::Rng;
use std::any::Any;
use std::sync::Arc;

/// An owned, sendable iterator: a partition's records as ops see them.
pub type BoxIter<T> = Box<dyn Iterator<Item = T> + Send>;
pub(crate) type EncodedIter = BoxIter<Vec<u8>>;

#[doc(hidden)]
pub enum Records {
    Typed(Box<dyn TypedRecords>),
    Encoded(EncodedIter),
    /// Borrowed records (`exec::lent`): lent one at a time, copied only by a consumer that
    /// keeps them.
    Lent(Box<dyn LentRecords>),
}

/// Records that are not lent.
enum Owned {
    Typed(Box<dyn TypedRecords>),
    Encoded(EncodedIter),
}

/// The records as an owned stream: lent ones are copied, others pass as they are.
fn owned(records: Records) -> Owned {
    match records {
        Records::Typed(t) => Owned::Typed(t),
        Records::Encoded(it) => Owned::Encoded(it),
        Records::Lent(l) => Owned::Typed(l.into_owned()),
    }
}

/// The operations on a typed iterator that need its type, done by the iterator itself.
#[doc(hidden)]
pub trait TypedRecords: Send {
    fn type_name(&self) -> &'static str;
    /// The record type's id: what decides that two typed streams can be joined without encoding.
    fn record_type(&self) -> std::any::TypeId;
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
    fn into_encoded(self: Box<Self>, tc: Arc<TaskContext>) -> EncodedIter;
    /// Encodes each record into a reused buffer and hands it to `f`: no allocation per record.
    fn for_each_encoded(
        self: Box<Self>,
        f: &mut dyn FnMut(&[u8]) -> Result<(), TaskFailure>,
    ) -> Result<(), TaskFailure>;
    fn glom(self: Box<Self>) -> Records;
    fn sample(self: Box<Self>, sampler: Sampler) -> Records;
    fn chain(self: Box<Self>, next: Records, tc: Arc<TaskContext>) -> Records;
    fn count(self: Box<Self>) -> u64;
    fn take(self: Box<Self>, n: usize) -> Records;
    /// Up to `n` records chosen uniformly (reservoir sampling), encoded, and the record count.
    /// Only the chosen records are encoded.
    fn reservoir(
        self: Box<Self>,
        n: usize,
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> Result<(u64, Vec<Vec<u8>>), TaskFailure>;
    fn materialize(self: Box<Self>) -> Arc<dyn crate::exec::storage::TypedBlock>;
}

pub(crate) struct TypedIter<T>(pub BoxIter<T>);

/// Wraps a typed iterator.
pub(crate) fn typed<T: Data>(iter: impl Iterator<Item = T> + Send + 'static) -> Records {
    Records::Typed(Box::new(TypedIter::<T>(Box::new(iter))))
}

/// Turns records into a typed iterator, decoding if needed. A decode failure ends the iterator
/// and fails the task (the task runner checks [`TaskContext::failure`] before using results).
pub(crate) fn into_typed<T: Data>(
    records: Records,
    tc: &Arc<TaskContext>,
) -> Result<BoxIter<T>, TaskFailure> {
    match owned(records) {
        Owned::Typed(t) => {
            let found = t.type_name();
            match t.into_any().downcast::<TypedIter<T>>() {
                Ok(it) => Ok(it.0),
                Err(_) => Err(TaskFailure::plan(format!(
                    "record type mismatch: an operator expects {} but its input holds {found}",
                    std::any::type_name::<T>()
                ))),
            }
        }
        Owned::Encoded(it) => {
            let tc = tc.clone();
            Ok(Box::new(it.map_while(move |bytes| {
                match codec::decode::<T>(&bytes) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        tc.fail(e);
                        None
                    }
                }
            })))
        }
    }
}

pub(crate) fn into_encoded(records: Records, tc: &Arc<TaskContext>) -> EncodedIter {
    match owned(records) {
        Owned::Typed(t) => t.into_encoded(tc.clone()),
        Owned::Encoded(it) => it,
    }
}

pub(crate) fn for_each_encoded(
    records: Records,
    f: &mut dyn FnMut(&[u8]) -> Result<(), TaskFailure>,
) -> Result<(), TaskFailure> {
    match records {
        Records::Typed(t) => t.for_each_encoded(f),
        Records::Lent(l) => l.for_each_encoded(f),
        Records::Encoded(it) => {
            for r in it {
                f(&r)?;
            }
            Ok(())
        }
    }
}

pub(crate) fn count(records: Records) -> u64 {
    match records {
        Records::Typed(t) => t.count(),
        Records::Lent(l) => l.count(),
        Records::Encoded(it) => it.count() as u64,
    }
}

pub(crate) fn chain(first: Records, next: Records, tc: &Arc<TaskContext>) -> Records {
    match owned(first) {
        Owned::Typed(t) => t.chain(next, tc.clone()),
        Owned::Encoded(it) => Records::Encoded(Box::new(it.chain(into_encoded(next, tc)))),
    }
}

pub(crate) fn take(records: Records, n: usize) -> Records {
    match owned(records) {
        Owned::Typed(t) => t.take(n),
        Owned::Encoded(it) => Records::Encoded(Box::new(it.take(n))),
    }
}

pub(crate) fn sample(records: Records, sampler: Sampler) -> Records {
    match owned(records) {
        Owned::Typed(t) => t.sample(sampler),
        Owned::Encoded(it) => {
            let mut s = sampler;
            Records::Encoded(Box::new(
                it.flat_map(move |r| std::iter::repeat_n(r, s.copies())),
            ))
        }
    }
}

/// `glom` on encoded records: a `Vec<T>` is a varint count followed by the items.
pub(crate) fn glom(records: Records) -> Records {
    match owned(records) {
        Owned::Typed(t) => t.glom(),
        Owned::Encoded(it) => {
            let items: Vec<Vec<u8>> = it.collect();
            let mut out = Vec::with_capacity(items.iter().map(Vec::len).sum::<usize>() + 10);
            codec::put_varint(&mut out, items.len() as u64);
            for i in &items {
                out.extend_from_slice(i);
            }
            Records::Encoded(Box::new(std::iter::once(out)))
        }
    }
}

/// Li's Algorithm L: each of the `seen` records ends up chosen with probability n / seen, as
/// with a draw per record (Algorithm R), but random numbers are drawn only for the records kept
/// and the gaps between them: O(n log(seen / n)) draws instead of `seen`, which made sampling
/// a sort's keys cost more than reading them.
pub(crate) fn reservoir_sample<T>(
    mut it: impl Iterator<Item = T>,
    n: usize,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> (u64, Vec<T>) {
    let mut chosen = Vec::with_capacity(n);
    if n == 0 {
        return (it.count() as u64, chosen);
    }
    let mut seen = 0u64;
    for r in it.by_ref() {
        seen += 1;
        chosen.push(r);
        if chosen.len() == n {
            break;
        }
    }
    if chosen.len() < n {
        return (seen, chosen);
    }
    // In (0, 1], so its logarithm is finite.
    let uniform = |rng: &mut rand_chacha::ChaCha8Rng| 1.0 - rng.gen::<f64>();
    let mut w = (uniform(rng).ln() / n as f64).exp();
    loop {
        // Records to pass over before the next one kept; `as` saturates a huge or infinite gap.
        let mut skip = (uniform(rng).ln() / (1.0 - w).ln()).floor() as u64;
        let next = loop {
            match it.next() {
                None => return (seen, chosen),
                Some(r) => {
                    seen += 1;
                    if skip == 0 {
                        break r;
                    }
                    skip -= 1;
                }
            }
        };
        chosen[rng.gen_range(0..n)] = next;
        w *= (uniform(rng).ln() / n as f64).exp();
    }
}

pub(crate) fn reservoir(
    records: Records,
    n: usize,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Result<(u64, Vec<Vec<u8>>), TaskFailure> {
    match owned(records) {
        Owned::Typed(t) => t.reservoir(n, rng),
        Owned::Encoded(it) => Ok(reservoir_sample(it, n, rng)),
    }
}

/// Decides how many copies of each record a sample keeps: Bernoulli without replacement,
/// Poisson with replacement (Spark's samplers).
#[doc(hidden)]
pub struct Sampler {
    rng: rand_chacha::ChaCha8Rng,
    fraction: f64,
    with_replacement: bool,
}

impl Sampler {
    pub fn new(seed: u64, partition: usize, fraction: f64, with_replacement: bool) -> Self {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(partition as u64);
        Sampler {
            rng,
            fraction,
            with_replacement,
        }
    }

    pub fn copies(&mut self) -> usize {
        if self.with_replacement {
            if self.fraction <= 0.0 {
                return 0;
            }
            match rand_distr::Poisson::new(self.fraction) {
                Ok(p) => rand_distr::Distribution::<f64>::sample(&p, &mut self.rng) as usize,
                Err(_) => 0,
            }
        } else {
            usize::from(self.rng.gen::<f64>() < self.fraction)
        }
    }
}

impl<T: Data> TypedRecords for TypedIter<T> {
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }

    fn record_type(&self) -> std::any::TypeId {
        std::any::TypeId::of::<T>()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }

    fn into_encoded(self: Box<Self>, tc: Arc<TaskContext>) -> EncodedIter {
        Box::new(self.0.map_while(move |v| match codec::encode(&v) {
            Ok(b) => Some(b),
            Err(e) => {
                tc.fail(e);
                None
            }
        }))
    }

    fn for_each_encoded(
        self: Box<Self>,
        f: &mut dyn FnMut(&[u8]) -> Result<(), TaskFailure>,
    ) -> Result<(), TaskFailure> {
        let mut buf = Vec::new();
        for v in self.0 {
            buf.clear();
            codec::encode_into(&v, &mut buf)?;
            f(&buf)?;
        }
        Ok(())
    }

    fn glom(self: Box<Self>) -> Records {
        // Encoded, not typed: a typed `Vec<T>` stream would make the compiler instantiate
        // `Vec<Vec<T>>` and so on without end.
        let all: Vec<T> = self.0.collect();
        match codec::encode(&all) {
            Ok(b) => Records::Encoded(Box::new(std::iter::once(b))),
            Err(e) => Records::Encoded(Box::new(std::iter::once_with(move || panic!("{e}")))),
        }
    }

    fn sample(self: Box<Self>, sampler: Sampler) -> Records {
        let mut s = sampler;
        typed(self.0.flat_map(move |r| std::iter::repeat_n(r, s.copies())))
    }

    fn chain(self: Box<Self>, next: Records, tc: Arc<TaskContext>) -> Records {
        match next {
            Records::Typed(n) if n.record_type() == std::any::TypeId::of::<T>() => {
                // Same TypeId, so the downcast cannot fail; were it to, fail the task rather
                // than drop the records.
                match n.into_any().downcast::<TypedIter<T>>() {
                    Ok(n) => typed(self.0.chain(n.0)),
                    Err(_) => {
                        tc.fail(TaskFailure::plan(
                            "typed stream changed type while chaining",
                        ));
                        Records::Encoded(Box::new(std::iter::empty()))
                    }
                }
            }
            other => {
                let rest = into_encoded(other, &tc);
                Records::Encoded(Box::new(self.into_encoded(tc).chain(rest)))
            }
        }
    }

    fn count(self: Box<Self>) -> u64 {
        self.0.count() as u64
    }

    fn take(self: Box<Self>, n: usize) -> Records {
        typed(self.0.take(n))
    }

    fn reservoir(
        self: Box<Self>,
        n: usize,
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> Result<(u64, Vec<Vec<u8>>), TaskFailure> {
        let (seen, chosen) = reservoir_sample(self.0, n, rng);
        Ok((
            seen,
            chosen.iter().map(codec::encode).collect::<Result<_, _>>()?,
        ))
    }

    fn materialize(self: Box<Self>) -> Arc<dyn crate::exec::storage::TypedBlock> {
        Arc::new(crate::exec::storage::VecBlock::<T>::new(self.0.collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::reservoir_sample;
    use rand::SeedableRng;

    /// Over many seeds each record is chosen about n / seen of the time, early and late ones
    /// alike, and every sample has n distinct records.
    #[test]
    fn reservoir_samples_every_record_alike() {
        let (total, n, trials) = (200usize, 10usize, 4000u64);
        let mut hits = vec![0u32; total];
        for seed in 0..trials {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let (seen, chosen) = reservoir_sample(0..total, n, &mut rng);
            assert_eq!(seen, total as u64);
            let mut distinct = chosen.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), n);
            chosen.into_iter().for_each(|r| hits[r] += 1);
        }
        // Expected 200 hits each (sd about 14); a bias toward either end shows in the halves.
        let expect = trials as f64 * n as f64 / total as f64;
        for (r, &h) in hits.iter().enumerate() {
            assert!(
                (h as f64 - expect).abs() < 6.0 * expect.sqrt(),
                "record {r}: {h}"
            );
        }
        let first: u32 = hits[..total / 2].iter().sum();
        let second: u32 = hits[total / 2..].iter().sum();
        assert!((first as f64 - second as f64).abs() < 0.05 * (first + second) as f64);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        assert_eq!(
            reservoir_sample(0..5, 10, &mut rng),
            (5, vec![0, 1, 2, 3, 4])
        );
        assert_eq!(reservoir_sample(0..5, 0, &mut rng), (5, vec![]));
    }
}
