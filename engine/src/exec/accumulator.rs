//! Accumulators with Spark's guarantee: the driver applies the updates of a result-stage task
//! once per partition, from its first successful attempt; failed attempts' updates are dropped.
//! Updates made inside transformations of shuffle-map stages are applied for every successful
//! attempt, so they may count again when a stage is recomputed (as in Spark).

use crate::core::codec::{self, Data};
use crate::core::error::TaskFailure;
use crate::core::sync::Locked;
use crate::exec::task_context::TaskContext;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

/// How an accumulator adds and merges.
pub trait AccumulatorParam: Send + Sync + 'static {
    /// What a task adds.
    type In;
    /// What the accumulator holds.
    type Value: Data;
    /// The value before anything is added.
    fn zero() -> Self::Value;
    /// Adds one input.
    fn add(acc: &mut Self::Value, x: Self::In);
    /// Merges another task's value in.
    fn merge(acc: &mut Self::Value, other: Self::Value);
}

/// Sums numbers.
pub struct Sum<T>(PhantomData<T>);

impl<T: Data + Default + std::ops::AddAssign> AccumulatorParam for Sum<T> {
    type In = T;
    type Value = T;
    fn zero() -> T {
        T::default()
    }
    fn add(acc: &mut T, x: T) {
        *acc += x;
    }
    fn merge(acc: &mut T, other: T) {
        *acc += other;
    }
}

/// Counts calls to `add(())`.
pub struct Count;

impl AccumulatorParam for Count {
    type In = ();
    type Value = u64;
    fn zero() -> u64 {
        0
    }
    fn add(acc: &mut u64, _: ()) {
        *acc += 1;
    }
    fn merge(acc: &mut u64, other: u64) {
        *acc += other;
    }
}

/// A task's partial value for one accumulator.
pub(crate) trait PartialValue: Send {
    fn encode(&self) -> Result<Vec<u8>, TaskFailure>;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

struct Partial<P: AccumulatorParam>(P::Value);

impl<P: AccumulatorParam> PartialValue for Partial<P> {
    fn encode(&self) -> Result<Vec<u8>, TaskFailure> {
        codec::encode(&self.0)
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// The driver's copy, which task updates are merged into.
pub(crate) trait DriverAccumulator: Send + Sync {
    fn merge_encoded(&self, bytes: &[u8]) -> Result<(), TaskFailure>;
}

pub(crate) struct DriverValue<P: AccumulatorParam>(Mutex<P::Value>);

impl<P: AccumulatorParam> DriverAccumulator for DriverValue<P> {
    fn merge_encoded(&self, bytes: &[u8]) -> Result<(), TaskFailure> {
        let v: P::Value = codec::decode(bytes)?;
        P::merge(&mut self.0.locked(), v);
        Ok(())
    }
}

/// A handle to an accumulator. Captured in an op it travels as its id; `add` inside a task goes
/// to the task's partial value, `add` on the driver goes straight to the driver's value.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Accumulator<P: AccumulatorParam> {
    id: u64,
    #[serde(skip)]
    driver: Option<Arc<DriverValue<P>>>,
}

impl<P: AccumulatorParam> Clone for Accumulator<P> {
    fn clone(&self) -> Self {
        Accumulator {
            id: self.id,
            driver: self.driver.clone(),
        }
    }
}

impl<P: AccumulatorParam> Accumulator<P> {
    pub(crate) fn new(id: u64) -> (Self, Arc<dyn DriverAccumulator>) {
        let d = Arc::new(DriverValue::<P>(Mutex::new(P::zero())));
        (
            Accumulator {
                id,
                driver: Some(d.clone()),
            },
            d,
        )
    }

    /// The accumulator's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Adds `x`: in a task, to the task's copy (merged on success); on the driver, directly.
    pub fn add(&self, x: P::In) {
        if let Some(tc) = TaskContext::get() {
            let mut map = tc.accumulators.locked();
            let entry = map
                .entry(self.id)
                .or_insert_with(|| Box::new(Partial::<P>(P::zero())));
            if let Some(p) = entry.as_any_mut().downcast_mut::<Partial<P>>() {
                P::add(&mut p.0, x);
            }
        } else if let Some(d) = &self.driver {
            P::add(&mut d.0.locked(), x);
        }
    }

    /// The merged value. Only meaningful on the driver; a copy inside a task reads zero.
    pub fn value(&self) -> P::Value {
        match &self.driver {
            Some(d) => d.0.locked().clone(),
            None => P::zero(),
        }
    }
}
