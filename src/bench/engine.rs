//! The engine benchmark workloads (BENCHMARKS.md): generated data with a fixed seed, timed
//! inside one process, reported with the process's peak resident memory.

use crate::jobs::wordcount;
use discnn_engine::{
    register_op, AggregateFn, BoxIter, Broadcast, Context, MapFn, PartitionFn, Result,
};
use discnn_naive::{BytesDigest, GroupDigest, SortDigest};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

pub const VOCABULARY: usize = 10_000;

/// Writes `lines` lines of 10 words drawn from a Zipf(1) vocabulary of 10,000 words.
pub fn write_words(path: &Path, lines: usize, seed: u64) -> std::io::Result<()> {
    let mut cdf = Vec::with_capacity(VOCABULARY);
    let mut total = 0.0;
    for rank in 1..=VOCABULARY {
        total += 1.0 / rank as f64;
        cdf.push(total);
    }
    let words: Vec<String> = (0..VOCABULARY).map(|i| format!("w{i}")).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut line = String::new();
    for _ in 0..lines {
        line.clear();
        for j in 0..10 {
            let u = rng.gen::<f64>() * total;
            let w = cdf.partition_point(|&c| c < u).min(VOCABULARY - 1);
            if j > 0 {
                line.push(' ');
            }
            line.push_str(&words[w]);
        }
        line.push('\n');
        out.write_all(line.as_bytes())?;
    }
    out.flush()
}

#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct Point {
    pub x: [f64; 10],
    pub y: f64,
}

/// Point i of the logistic-regression data: features in [-1, 1), label from a fixed plane.
#[derive(Clone, Serialize, Deserialize)]
pub struct MakePoint(pub u64);
impl MapFn for MakePoint {
    type In = i64;
    type Out = Point;
    fn call(&self, i: i64) -> Point {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.0);
        rng.set_stream(i as u64);
        let mut x = [0.0; 10];
        for v in x.iter_mut() {
            *v = rng.gen::<f64>() * 2.0 - 1.0;
        }
        let s: f64 = x
            .iter()
            .enumerate()
            .map(|(j, v)| v * (j as f64 - 4.5))
            .sum();
        Point {
            x,
            y: if s > 0.0 { 1.0 } else { 0.0 },
        }
    }
}
register_op!(map MakePoint);

/// The gradient of the logistic loss at `w`, summed over points (plus the count).
#[derive(Clone, Serialize, Deserialize)]
pub struct LogisticGradient {
    pub w: [f64; 10],
}
impl AggregateFn for LogisticGradient {
    type Value = Point;
    type Acc = ([f64; 10], u64);
    fn seq(&self, (mut g, n): ([f64; 10], u64), p: Point) -> ([f64; 10], u64) {
        let dot: f64 = self.w.iter().zip(p.x.iter()).map(|(a, b)| a * b).sum();
        let err = 1.0 / (1.0 + (-dot).exp()) - p.y;
        for (gj, xj) in g.iter_mut().zip(p.x.iter()) {
            *gj += err * xj;
        }
        (g, n + 1)
    }
    fn comb(&self, (mut a, n): ([f64; 10], u64), (b, m): ([f64; 10], u64)) -> ([f64; 10], u64) {
        for (x, y) in a.iter_mut().zip(b.iter()) {
            *x += y;
        }
        (a, n + m)
    }
}
register_op!(aggregate LogisticGradient);

/// A pseudo-random `(key, value)` pair with keys in `0..keys`.
#[derive(Clone, Serialize, Deserialize)]
pub struct MakePair {
    pub keys: u64,
}
impl MapFn for MakePair {
    type In = i64;
    type Out = (i64, i64);
    fn call(&self, i: i64) -> (i64, i64) {
        let h = (i as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
        ((h % self.keys) as i64, i)
    }
}
register_op!(map MakePair);

/// `x` plus the first weight of a broadcast vector: W0 with a broadcast read by every task.
#[derive(Clone, Serialize, Deserialize)]
pub struct AddFirstWeight(pub Broadcast<Vec<f32>>);
impl MapFn for AddFirstWeight {
    type In = i64;
    type Out = i64;
    fn call(&self, x: i64) -> i64 {
        x + self.0.value().first().copied().unwrap_or(0.0) as i64
    }
}
register_op!(map AddFirstWeight);

/// w0-leader's map side, a Dis-CNN gradient task without its compute: one record per
/// partition, `(group 0, the broadcast's weights plus the partition's record count and index)`.
#[derive(Clone, Serialize, Deserialize)]
pub struct StandInGradient(pub Broadcast<Vec<f32>>);
impl PartitionFn for StandInGradient {
    type In = i64;
    type Out = (u8, Vec<f32>);
    fn call(&self, partition: usize, input: BoxIter<i64>) -> BoxIter<(u8, Vec<f32>)> {
        let shift = (input.count() + partition) as f32;
        let grad = self.0.value().iter().map(|w| w + shift).collect();
        Box::new(std::iter::once((0, grad)))
    }
}
register_op!(partitions StandInGradient);

/// w0-leader's reduce side: a group's vectors summed on its leader.
#[derive(Clone, Serialize, Deserialize)]
pub struct SumVectors;
impl PartitionFn for SumVectors {
    type In = (u8, Vec<f32>);
    type Out = Vec<f32>;
    fn call(&self, _: usize, input: BoxIter<(u8, Vec<f32>)>) -> BoxIter<Vec<f32>> {
        let sum = input.map(|(_, v)| v).reduce(|mut a, b| {
            a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
            a
        });
        Box::new(sum.into_iter())
    }
}
register_op!(partitions SumVectors);

/// One w0-leader job over `r`'s 2 partitions of 1,000 records, with job `i`'s broadcast; fails
/// on a sum other than the one expected.
fn leader_iteration(r: &discnn_engine::Rdd<i64>, w: &Broadcast<Vec<f32>>, i: u64) -> Result<()> {
    let sums = r
        .map_partitions(StandInGradient(w.clone()))
        .partition_by_leader(discnn_engine::HashPartitioner(2))?
        .map_partitions(SumVectors)
        .collect()?;
    // Both partitions' vectors, in group 0: (i + 1000 + 0) + (i + 1000 + 1).
    let expected = 2.0 * i as f32 + 2001.0;
    if sums.len() != 1 || sums[0].first() != Some(&expected) {
        return Err(discnn_engine::EngineError::BadInput(format!(
            "w0-leader job {i} summed to {:?}, expected [{expected}, …]",
            sums.iter().map(|s| s.first()).collect::<Vec<_>>()
        )));
    }
    Ok(())
}

/// A partition of grouped pairs as its [`GroupDigest`] (groups, values, digest).
#[derive(Clone, Serialize, Deserialize)]
pub struct DigestGroups;
impl PartitionFn for DigestGroups {
    type In = (i64, Vec<i64>);
    type Out = (u64, u64, u64);
    fn call(&self, _: usize, input: BoxIter<(i64, Vec<i64>)>) -> BoxIter<(u64, u64, u64)> {
        let mut d = GroupDigest::default();
        for (k, vs) in input {
            d.add(k, &vs);
        }
        Box::new(std::iter::once((d.groups, d.values, d.digest)))
    }
}
register_op!(partitions DigestGroups);

/// A partition of sorted pairs as its [`SortDigest`] (records, sorted, first, last, digest).
#[derive(Clone, Serialize, Deserialize)]
pub struct DigestSorted;
impl PartitionFn for DigestSorted {
    type In = (i64, i64);
    type Out = (u64, bool, i64, i64, u64);
    fn call(&self, _: usize, input: BoxIter<(i64, i64)>) -> BoxIter<(u64, bool, i64, i64, u64)> {
        let mut d = SortDigest::default();
        for (k, v) in input {
            d.add(k, v);
        }
        Box::new(std::iter::once((
            d.records, d.sorted, d.first, d.last, d.digest,
        )))
    }
}
register_op!(partitions DigestSorted);

/// The part files of a text output, concatenated in name order, as a [`BytesDigest`].
fn output_digest(dir: &Path) -> Result<BytesDigest> {
    let io = |source| discnn_engine::EngineError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut parts: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("part-"))
        })
        .collect();
    parts.sort();
    let mut d = BytesDigest::default();
    for p in parts {
        d.add(&std::fs::read(&p).map_err(io)?);
    }
    Ok(d)
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub workload: String,
    pub master: String,
    pub size: u64,
    /// The measured part; setup (data generation, caching) is excluded and reported apart.
    pub wall_s: f64,
    pub setup_s: f64,
    /// Per iteration (W2) or per job (W0); equal to wall_s otherwise.
    pub per_unit_ms: f64,
    pub peak_rss_bytes: u64,
    pub detail: serde_json::Value,
}

/// Runs one workload. `size`: lines for w1, points for w2, pairs for w3, jobs for w0,
/// w0-broadcast and w0-leader.
pub fn run(ctx: &Context, workload: &str, size: u64, work_dir: &Path) -> Result<BenchReport> {
    let t0 = Instant::now();
    let master = ctx.config().master.clone();
    let report = |setup: f64, wall: f64, units: f64, detail| BenchReport {
        workload: workload.into(),
        master: master.clone(),
        size,
        wall_s: wall,
        setup_s: setup,
        per_unit_ms: wall * 1000.0 / units,
        peak_rss_bytes: discnn_engine::process::status_bytes("VmHWM"),
        detail,
    };
    match workload {
        // w0-broadcast is a Dis-CNN iteration's launch without its compute: a fresh broadcast
        // of the paper's net's 12,448 weights, read by 2 tasks, then destroyed. w0-leader is
        // the whole iteration without its compute: each of the 2 tasks sends a 50 KB vector
        // to group 0, whose leader sums them (one fetch from the other executor in a
        // cluster) and returns the sum.
        "w0" | "w0-broadcast" | "w0-leader" => {
            let parts = if workload == "w0" { 8 } else { 2 };
            let r = ctx.range(0, 1000 * parts as i64, 1, parts)?;
            r.cache();
            r.count()?;
            let setup = t0.elapsed().as_secs_f64();
            let t = Instant::now();
            for i in 0..size {
                if workload == "w0" {
                    r.count()?;
                    continue;
                }
                let w = ctx.broadcast(vec![i as f32; 12_448])?;
                let ran = if workload == "w0-leader" {
                    leader_iteration(&r, &w, i)
                } else {
                    r.map(AddFirstWeight(w.clone())).count().map(drop)
                };
                w.destroy();
                ran?;
            }
            Ok(report(
                setup,
                t.elapsed().as_secs_f64(),
                size as f64,
                serde_json::json!({
                    "partitions": parts,
                    "broadcast_fetches": ctx.stats().broadcast_fetches,
                }),
            ))
        }
        "w1" => {
            let input = work_dir.join("words.txt");
            write_words(&input, size as usize, 42)
                .map_err(|e| discnn_engine::EngineError::BadInput(e.to_string()))?;
            let setup = t0.elapsed().as_secs_f64();
            let log = std::sync::Arc::new(discnn_engine::EventLog::default());
            ctx.add_listener(log.clone());
            let traffic = ctx.cluster().map(|c| c.traffic());
            let t = Instant::now();
            let s = wordcount::run(ctx, &input, &work_dir.join("counts"))?;
            let wall = t.elapsed().as_secs_f64();
            let output = output_digest(&work_dir.join("counts"))?;
            let shuffle_write_bytes: u64 = log
                .events()
                .iter()
                .map(|e| match e {
                    discnn_engine::Event::TaskEnd { metrics, .. } => metrics.shuffle_write_bytes,
                    _ => 0,
                })
                .sum();
            // In cluster mode: what reached the driver's server during the job.
            let driver_bytes = match (ctx.cluster(), traffic) {
                (Some(c), Some(before)) => Some((c.traffic() - before).bytes),
                _ => None,
            };
            Ok(report(
                setup,
                wall,
                1.0,
                serde_json::json!({
                    "distinct_words": s.distinct_words,
                    "input_bytes": std::fs::metadata(&input).map(|m| m.len()).unwrap_or(0),
                    "shuffle_write_bytes": shuffle_write_bytes,
                    "driver_bytes": driver_bytes,
                    "output": output.to_string(),
                }),
            ))
        }
        "w2" => {
            let points = ctx.range(0, size as i64, 1, 8)?.map(MakePoint(7));
            points.cache();
            points.count()?;
            let setup = t0.elapsed().as_secs_f64();
            let t = Instant::now();
            let mut w = [0.0f64; 10];
            for _ in 0..10 {
                let (g, n) = points.aggregate(([0.0; 10], 0), LogisticGradient { w })?;
                for (wj, gj) in w.iter_mut().zip(g.iter()) {
                    *wj -= 1.0 * gj / n as f64;
                }
            }
            Ok(report(
                setup,
                t.elapsed().as_secs_f64(),
                10.0,
                serde_json::json!({
                    "w0": w[0],
                    "w9": w[9],
                    "output": format!("w0 {:.12e} w9 {:.12e}", w[0], w[9]),
                }),
            ))
        }
        "w3-group" | "w3-sort" => {
            let parts = ctx.default_parallelism().max(2);
            let pairs = ctx
                .range(0, size as i64, 1, parts)?
                .map(MakePair { keys: 100_000 });
            pairs.cache();
            pairs.count()?;
            let setup = t0.elapsed().as_secs_f64();
            let t = Instant::now();
            // The range bounds' sampling job, part of the sort's wall time.
            let mut sample_s = 0.0;
            let (n, wall, output) = if workload == "w3-group" {
                let groups = pairs.group_by_key(parts);
                let n = groups.count()?;
                let wall = t.elapsed().as_secs_f64();
                // Outside the measured part: the shuffle's map outputs are reused.
                let d = groups
                    .map_partitions(DigestGroups)
                    .collect()?
                    .into_iter()
                    .map(|(groups, values, digest)| GroupDigest {
                        groups,
                        values,
                        digest,
                    })
                    .fold(GroupDigest::default(), GroupDigest::merge);
                (n, wall, d.to_string())
            } else {
                let sorted = pairs.sort_by_key(true, parts)?;
                sample_s = t.elapsed().as_secs_f64();
                let n = sorted.count()?;
                let wall = t.elapsed().as_secs_f64();
                let d = sorted
                    .map_partitions(DigestSorted)
                    .collect()?
                    .into_iter()
                    .map(|(records, sorted, first, last, digest)| SortDigest {
                        records,
                        sorted,
                        first,
                        last,
                        digest,
                    })
                    .fold(SortDigest::default(), SortDigest::then);
                (n, wall, d.to_string())
            };
            Ok(report(
                setup,
                wall,
                1.0,
                serde_json::json!({"records_out": n, "sample_s": sample_s, "output": output}),
            ))
        }
        other => Err(discnn_engine::EngineError::InvalidArgument(format!(
            "unknown workload `{other}` (expected w0, w0-broadcast, w0-leader, w1, w2, w3-group or w3-sort)"
        ))),
    }
}
