//! The engine's own narrow transformations — `keys` and `values`, `sample`, `glom` — as values
//! that compute one partition from their parent's. They travel like user ops: the wire plan
//! names one as `NodeKind::Narrow` with an `OpRef` of kind `narrow`, and the executor finds
//! it in the same link-time table. So adding one touches two files: its definition and
//! registration here, and the `Rdd` method that builds it with `Rdd::narrow_op`
//! (`driver/rdd/transform.rs` or `pair.rs`); the plan, the scheduler and `compute` need nothing.

use crate::core::error::TaskFailure;
use crate::core::plan::OpKind;
use crate::exec::op::registry::{Decoder, OpRegistration};
use crate::exec::op::Op;
use crate::exec::stream::{self, Records, Sampler};
use crate::exec::task_context::TaskContext;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

type PartResult = Result<Records, TaskFailure>;

/// A narrow transformation the engine defines: its fields are its parameters on the wire.
pub trait NarrowOp: Op {
    fn compute(&self, split: usize, input: Records, tc: &Arc<TaskContext>) -> PartResult;
}

/// [`NarrowOp`] without its serde bounds, so the registry can hold it behind a pointer.
pub trait ErasedNarrow: Send + Sync {
    fn compute(&self, split: usize, input: Records, tc: &Arc<TaskContext>) -> PartResult;
}

impl<N: NarrowOp> ErasedNarrow for N {
    fn compute(&self, split: usize, input: Records, tc: &Arc<TaskContext>) -> PartResult {
        NarrowOp::compute(self, split, input, tc)
    }
}

fn decode<N: NarrowOp>(bytes: &[u8]) -> Result<Arc<dyn ErasedNarrow>, TaskFailure> {
    Ok(Arc::new(crate::core::codec::decode::<N>(bytes)?))
}

impl OpRegistration {
    pub(crate) const fn narrow<N: NarrowOp>() -> Self {
        OpRegistration {
            name: std::any::type_name::<N>,
            kind: OpKind::Narrow,
            decode: Decoder::Narrow(decode::<N>),
        }
    }
}

/// Puts a [`NarrowOp`] in the op table.
macro_rules! register_narrow {
    ($ty:ty) => {
        inventory::submit! { OpRegistration::narrow::<$ty>() }
    };
}

/// The key (`keys`) or the value of each `(K, V)` record: `Rdd::keys`, `Rdd::values`.
#[derive(Serialize, Deserialize)]
pub(crate) struct PairPart {
    pub key_type: String,
    pub keys: bool,
}
register_narrow!(PairPart);

impl NarrowOp for PairPart {
    fn compute(&self, _: usize, input: Records, tc: &Arc<TaskContext>) -> PartResult {
        let codec = crate::exec::op::registry::lookup_key(&self.key_type)?;
        Ok(split_pairs(input, codec, tc, self.keys))
    }
}

/// Bernoulli (or, with replacement, Poisson) sampling, seeded per partition.
#[derive(Serialize, Deserialize)]
pub(crate) struct Sample {
    pub fraction: f64,
    pub with_replacement: bool,
    pub seed: u64,
}
register_narrow!(Sample);

impl NarrowOp for Sample {
    fn compute(&self, split: usize, input: Records, _: &Arc<TaskContext>) -> PartResult {
        let sampler = Sampler::new(self.seed, split, self.fraction, self.with_replacement);
        Ok(stream::sample(input, sampler))
    }
}

/// A partition as one `Vec` of its records.
#[derive(Serialize, Deserialize)]
pub(crate) struct Glom;
register_narrow!(Glom);

impl NarrowOp for Glom {
    fn compute(&self, _: usize, input: Records, _: &Arc<TaskContext>) -> PartResult {
        Ok(stream::glom(input))
    }
}

/// The key (or value) part of encoded `(K, V)` records.
fn split_pairs(
    records: Records,
    codec: &'static dyn crate::core::key::KeyCodec,
    tc: &Arc<TaskContext>,
    keys: bool,
) -> Records {
    let tc2 = tc.clone();
    Records::Encoded(Box::new(stream::into_encoded(records, tc).map_while(
        move |r| match codec.key_len(&r) {
            Ok(n) => Some(if keys {
                r[..n].to_vec()
            } else {
                r[n..].to_vec()
            }),
            Err(e) => {
                tc2.fail(e);
                None
            }
        },
    )))
}
