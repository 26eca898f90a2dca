//! The borrowed-record operators on the executor. Each is one of the engine's narrow ops
//! (`exec::narrow`) wrapping the user's op, so it travels as `NodeKind::Narrow` under the
//! wrapper's name and needs nothing new in the plan: it takes its input lent (lending owned or
//! encoded input from its owned values) and lends its output.

use super::{FilterBorrowedFn, FlatMapBorrowedFn, MapBorrowedFn};
use crate::core::error::TaskFailure;
use crate::exec::lent::{self, Lend, LentSource};
use crate::exec::narrow::NarrowOp;
use crate::exec::op::registry::OpRegistration;
use crate::exec::stream::Records;
use crate::exec::task_context::TaskContext;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A user's [`FlatMapBorrowedFn`], as the plan carries it.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct BorrowedFlatMap<F>(pub Arc<F>);

/// A user's [`MapBorrowedFn`], as the plan carries it.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct BorrowedMap<F>(pub Arc<F>);

/// A user's [`FilterBorrowedFn`], as the plan carries it.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct BorrowedFilter<F>(pub Arc<F>);

impl OpRegistration {
    pub const fn flat_map_borrowed<F: FlatMapBorrowedFn>() -> Self {
        Self::narrow::<BorrowedFlatMap<F>>()
    }
    pub const fn map_borrowed<F: MapBorrowedFn>() -> Self {
        Self::narrow::<BorrowedMap<F>>()
    }
    pub const fn filter_borrowed<F: FilterBorrowedFn>() -> Self {
        Self::narrow::<BorrowedFilter<F>>()
    }
}

struct FlatMapSource<F: FlatMapBorrowedFn> {
    input: Box<dyn LentSource<F::In>>,
    f: Arc<F>,
}

impl<F: FlatMapBorrowedFn> LentSource<F::Out> for FlatMapSource<F> {
    fn step(&mut self, out: &mut Lend<'_, F::Out>) -> bool {
        let f = &self.f;
        self.input.step(&mut |x| f.call(x, out))
    }
}

struct MapSource<F: MapBorrowedFn> {
    input: Box<dyn LentSource<F::In>>,
    f: Arc<F>,
}

impl<F: MapBorrowedFn> LentSource<F::Out> for MapSource<F> {
    fn step(&mut self, out: &mut Lend<'_, F::Out>) -> bool {
        let f = &self.f;
        self.input.step(&mut |x| out(f.call(x)))
    }
}

struct FilterSource<F: FilterBorrowedFn> {
    input: Box<dyn LentSource<F::Item>>,
    f: Arc<F>,
}

impl<F: FilterBorrowedFn> LentSource<F::Item> for FilterSource<F> {
    fn step(&mut self, out: &mut Lend<'_, F::Item>) -> bool {
        let f = &self.f;
        self.input.step(&mut |x| {
            if f.call(x) {
                out(x)
            }
        })
    }
}

type PartResult = Result<Records, TaskFailure>;

impl<F: FlatMapBorrowedFn> NarrowOp for BorrowedFlatMap<F> {
    fn compute(&self, _: usize, input: Records, tc: &Arc<TaskContext>) -> PartResult {
        Ok(lent::lent(FlatMapSource {
            input: lent::into_lent::<F::In>(input, tc)?,
            f: self.0.clone(),
        }))
    }
}

impl<F: MapBorrowedFn> NarrowOp for BorrowedMap<F> {
    fn compute(&self, _: usize, input: Records, tc: &Arc<TaskContext>) -> PartResult {
        Ok(lent::lent(MapSource {
            input: lent::into_lent::<F::In>(input, tc)?,
            f: self.0.clone(),
        }))
    }
}

impl<F: FilterBorrowedFn> NarrowOp for BorrowedFilter<F> {
    fn compute(&self, _: usize, input: Records, tc: &Arc<TaskContext>) -> PartResult {
        Ok(lent::lent(FilterSource {
            input: lent::into_lent::<F::Item>(input, tc)?,
            f: self.0.clone(),
        }))
    }
}
