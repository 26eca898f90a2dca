//! One iteration's gradients: computed per partition from its cached shard, then combined —
//! `mean` on the driver from N messages, or `dis` by the paper's grouped leader aggregation:
//! a custom partitioner sends each gradient to the reduce partition of its error group, each
//! group is summed on its leader's executor (the first map task to finish in the group) in
//! partition order, and the driver receives at most two sums.

use super::shards::{network, Shard, Weights};
use super::{Aggregation, DisDivisor};
use crate::data::{self, Augment};
use crate::layers::{simd, Loss};
use crate::rng::{self, Purpose};
use discnn_engine::{register_op, Broadcast, MapFn, PartitionFn, Partitioner};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Error groups, also the reduce partitions of the leader shuffle.
pub const LOW: u8 = 0;
pub const HIGH: u8 = 1;

/// One partition's mini-batch gradient, or (after the leader shuffle) a group's sum of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GradMsg {
    /// The partitions summed here, in order.
    pub partitions: Vec<u32>,
    pub group: u8,
    pub images: u64,
    /// Σ over images of the loss.
    pub loss_sum: f64,
    pub correct: u64,
    /// Mean squared error E of each partition's mini-batch, in `partitions` order.
    pub errors: Vec<f64>,
    pub grad: Vec<f32>,
}

impl GradMsg {
    /// Adds `other` (a later partition) into `self`.
    fn absorb(&mut self, other: &GradMsg) {
        self.partitions.extend(&other.partitions);
        self.images += other.images;
        self.loss_sum += other.loss_sum;
        self.correct += other.correct;
        self.errors.extend(&other.errors);
        simd::add_row(&mut self.grad, &other.grad);
    }
}

/// Where a partition's batch for (epoch, iteration) comes from: a seeded shuffle of its shard
/// per epoch, taken `batch` at a time, wrapping round when the shard is short.
pub fn batch_indices(
    seed: u64,
    epoch: usize,
    partition: usize,
    iteration: usize,
    batch: usize,
    shard_len: usize,
) -> Vec<usize> {
    if shard_len == 0 {
        return Vec::new();
    }
    let order = epoch_order(seed, epoch, partition, shard_len);
    (0..batch)
        .map(|k| order[(iteration * batch + k) % shard_len])
        .collect()
}

/// A partition's shuffled shard order for an epoch, made once and shared by the epoch's
/// iterations (shuffling the whole shard for each batch was a sequential 0.1–0.2 ms at the
/// start of every gradient task). The most recent orders are kept, a few per partition.
fn epoch_order(seed: u64, epoch: usize, partition: usize, shard_len: usize) -> Arc<Vec<usize>> {
    type Key = (u64, usize, usize, usize);
    const KEEP: usize = 64;
    static ORDERS: Mutex<VecDeque<(Key, Arc<Vec<usize>>)>> = Mutex::new(VecDeque::new());
    let key = (seed, epoch, partition, shard_len);
    let cached = |q: &VecDeque<(Key, Arc<Vec<usize>>)>| {
        q.iter().find(|(k, _)| *k == key).map(|(_, o)| o.clone())
    };
    if let Some(o) = cached(&ORDERS.lock().unwrap_or_else(|p| p.into_inner())) {
        return o;
    }
    let mut order: Vec<usize> = (0..shard_len).collect();
    order.shuffle(&mut rng::stream(
        seed,
        Purpose::Shuffle,
        &[epoch as u64, partition as u64],
    ));
    let order = Arc::new(order);
    let mut q = ORDERS.lock().unwrap_or_else(|p| p.into_inner());
    if cached(&q).is_none() {
        q.push_back((key, order.clone()));
        if q.len() > KEEP {
            q.pop_front();
        }
    }
    order
}

thread_local! {
    /// A gradient task's input batch (3 MB at 256 images), reused by the next task on the same
    /// thread instead of being allocated, zeroed and faulted in anew every iteration.
    static BATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The map side: one mini-batch gradient of the broadcast weights on this partition's shard.
#[derive(Clone, Serialize, Deserialize)]
pub struct Gradient {
    pub weights: Broadcast<Weights>,
    pub epoch: usize,
    pub iteration: usize,
    pub batch: usize,
    pub loss: Loss,
    pub seed: u64,
    /// B: E ≤ B joins the low-error group.
    pub threshold: f64,
    /// Crop and flip drawn per image from streams keyed by (epoch, partition, iteration).
    pub augment: Augment,
}

impl MapFn for Gradient {
    type In = Shard;
    type Out = (u8, GradMsg);
    fn call(&self, s: Shard) -> (u8, GradMsg) {
        let w = self.weights.value();
        let net = network(&w.spec);
        let idx = batch_indices(
            self.seed,
            self.epoch,
            s.partition,
            self.iteration,
            self.batch,
            s.images.len(),
        );
        let mut grad = vec![0f32; net.param_len()];
        let key = [self.epoch as u64, s.partition as u64, self.iteration as u64];
        let augment = (!self.augment.is_none()).then_some((self.augment, self.seed, &key[..]));
        // The slot thread's batch buffer, kept from its last task.
        let mut x = BATCH.with(std::cell::Cell::take);
        let labels = data::batch_into(&mut x, &s.images, &idx, &w.norm, augment);
        let st = net.gradient(
            &w.params, &x, &labels, self.loss, self.seed, &key, &mut grad,
        );
        BATCH.with(|b| b.set(x));
        let group = if st.squared_error <= self.threshold {
            LOW
        } else {
            HIGH
        };
        let msg = GradMsg {
            partitions: vec![s.partition as u32],
            group,
            images: idx.len() as u64,
            loss_sum: st.loss * idx.len() as f64,
            correct: st.correct as u64,
            errors: vec![st.squared_error],
            grad,
        };
        (group, msg)
    }
}
register_op!(map Gradient);

/// The custom partitioner of the leader shuffle: a gradient goes to its group's partition.
#[derive(Clone, Serialize, Deserialize)]
pub struct GroupPartitioner;
impl Partitioner for GroupPartitioner {
    type Key = u8;
    fn num_partitions(&self) -> usize {
        2
    }
    fn partition(&self, group: &u8) -> usize {
        usize::from(*group).min(1)
    }
}
register_op!(partitioner GroupPartitioner);

/// The reduce side, on the group's leader: the group's gradients summed in partition order,
/// so the sum's bits do not depend on where or in what order they arrived.
#[derive(Clone, Serialize, Deserialize)]
pub struct SumGroup;
impl PartitionFn for SumGroup {
    type In = (u8, GradMsg);
    type Out = GradMsg;
    fn call(
        &self,
        _partition: usize,
        input: discnn_engine::BoxIter<(u8, GradMsg)>,
    ) -> discnn_engine::BoxIter<GradMsg> {
        let mut msgs: Vec<GradMsg> = input.map(|(_, m)| m).collect();
        msgs.sort_by_key(|m| m.partitions.first().copied());
        Box::new(sum_in_order(msgs).into_iter())
    }
}
register_op!(partitions SumGroup);

/// The messages summed in the order given (None when there are none).
pub fn sum_in_order(msgs: Vec<GradMsg>) -> Option<GradMsg> {
    let mut it = msgs.into_iter();
    let mut total = it.next()?;
    for m in it {
        total.absorb(&m);
    }
    Some(total)
}

/// What the driver makes of an iteration's messages.
#[derive(Debug, Clone)]
pub struct Update {
    /// The gradient the optimiser steps with.
    pub grad: Vec<f32>,
    pub images: u64,
    pub loss_sum: f64,
    pub correct: u64,
    /// Partitions in the low and high groups.
    pub group_sizes: [u64; 2],
}

/// Combines what reached the driver: per-partition gradients (`mean`) or group sums (`dis`).
/// `n` is the number of partitions. The `dis` divisor needs only the group sizes, which each
/// sum carries as its list of partitions: no message or byte is added for it.
pub fn combine(
    aggregation: Aggregation,
    weights: [f64; 2],
    divisor: DisDivisor,
    n: usize,
    mut msgs: Vec<GradMsg>,
) -> Option<Update> {
    msgs.sort_by_key(|m| (m.group, m.partitions.first().copied()));
    let len = msgs.first()?.grad.len();
    let mut grad = vec![0f32; len];
    let mut u = Update {
        grad: Vec::new(),
        images: 0,
        loss_sum: 0.0,
        correct: 0,
        group_sizes: [0; 2],
    };
    let group = |m: &GradMsg| usize::from(m.group).min(1);
    let d = match (aggregation, divisor) {
        (Aggregation::Mean, _) | (Aggregation::Dis, DisDivisor::N) => n as f64,
        (Aggregation::Dis, DisDivisor::Weights) => msgs
            .iter()
            .map(|m| weights[group(m)] * m.partitions.len() as f64)
            .sum(),
    };
    let inv_d = if d > 0.0 { 1.0 / d } else { 0.0 };
    for m in &msgs {
        let w = match aggregation {
            Aggregation::Mean => inv_d,
            Aggregation::Dis => weights[group(m)] * inv_d,
        } as f32;
        grad.iter_mut().zip(&m.grad).for_each(|(g, &x)| *g += w * x);
        u.images += m.images;
        u.loss_sum += m.loss_sum;
        u.correct += m.correct;
        u.group_sizes[group(m)] += m.partitions.len() as u64;
    }
    u.grad = grad;
    Some(u)
}
