//! The COST baselines (McSherry, Isard, Murray: "Scalability! But at what COST?"): each engine
//! workload of `driver bench engine` as the plain single-threaded program a competent engineer
//! writes in a few minutes with std — no threads, no unsafe, std's `HashMap` with its default
//! hasher, and mimalloc, the allocator the engine's binaries use. Each prints the same JSON line
//! as `driver bench engine --json`, and `detail.output` is what the engine's run must equal.
//!
//!   naive w1 WORDS_FILE OUTPUT_FILE   wordcount: `word<TAB>count`, count descending, word ascending
//!   naive w2 POINTS                   10 iterations of logistic-regression gradient descent
//!   naive w3-group PAIRS              group the pairs by key
//!   naive w3-sort PAIRS               sort the pairs by key

use discnn_naive::{BytesDigest, GroupDigest, SortDigest};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str {
        args.get(i).map(String::as_str).unwrap_or_else(|| {
            eprintln!("usage: naive w1 WORDS OUTPUT | w2 POINTS | w3-group PAIRS | w3-sort PAIRS");
            std::process::exit(2)
        })
    };
    let workload = arg(0).to_string();
    let (size, wall, setup, units, output) = match workload.as_str() {
        "w1" => {
            let t = Instant::now();
            let lines = wordcount(arg(1), arg(2)).unwrap_or_else(|e| {
                eprintln!("naive w1: {e}");
                std::process::exit(1)
            });
            let wall = t.elapsed().as_secs_f64();
            let mut digest = BytesDigest::default();
            digest.add(&std::fs::read(arg(2)).unwrap_or_default());
            (lines, wall, 0.0, 1.0, digest.to_string())
        }
        "w2" => {
            let n: u64 = parse(arg(1));
            let t0 = Instant::now();
            let points: Vec<Point> = (0..n).map(|i| make_point(7, i)).collect();
            let setup = t0.elapsed().as_secs_f64();
            let t = Instant::now();
            let w = logistic_regression(&points);
            let wall = t.elapsed().as_secs_f64();
            (
                n,
                wall,
                setup,
                10.0,
                format!("w0 {:.12e} w9 {:.12e}", w[0], w[9]),
            )
        }
        "w3-group" | "w3-sort" => {
            let n: u64 = parse(arg(1));
            let t0 = Instant::now();
            let mut pairs: Vec<(i64, i64)> = (0..n as i64).map(make_pair).collect();
            let setup = t0.elapsed().as_secs_f64();
            if workload == "w3-group" {
                let t = Instant::now();
                let mut groups: HashMap<i64, Vec<i64>> = HashMap::new();
                for &(k, v) in &pairs {
                    groups.entry(k).or_default().push(v);
                }
                let wall = t.elapsed().as_secs_f64();
                let mut digest = GroupDigest::default();
                for (k, vs) in &groups {
                    digest.add(*k, vs);
                }
                (n, wall, setup, 1.0, digest.to_string())
            } else {
                let t = Instant::now();
                pairs.sort_by_key(|p| p.0);
                let wall = t.elapsed().as_secs_f64();
                let mut digest = SortDigest::default();
                for &(k, v) in &pairs {
                    digest.add(k, v);
                }
                (n, wall, setup, 1.0, digest.to_string())
            }
        }
        other => {
            eprintln!("naive: unknown workload {other} (w1, w2, w3-group, w3-sort)");
            std::process::exit(2)
        }
    };
    println!(
        "{{\"workload\":\"{workload}\",\"master\":\"naive\",\"size\":{size},\"wall_s\":{wall},\
         \"setup_s\":{setup},\"per_unit_ms\":{},\"peak_rss_bytes\":{},\"detail\":{{\"output\":\"{output}\"}}}}",
        wall * 1000.0 / units,
        peak_rss_bytes()
    );
}

fn parse(s: &str) -> u64 {
    s.parse().unwrap_or_else(|_| {
        eprintln!("naive: `{s}` is not a count");
        std::process::exit(2)
    })
}

fn wordcount(input: &str, output: &str) -> std::io::Result<u64> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut lines = 0;
    for line in BufReader::new(std::fs::File::open(input)?).lines() {
        lines += 1;
        for word in line?.split_whitespace() {
            match counts.get_mut(word) {
                Some(c) => *c += 1,
                None => {
                    counts.insert(word.to_string(), 1);
                }
            }
        }
    }
    let mut sorted: Vec<(String, u64)> = counts.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut out = BufWriter::new(std::fs::File::create(output)?);
    for (w, c) in &sorted {
        writeln!(out, "{w}\t{c}")?;
    }
    out.flush()?;
    Ok(lines)
}

struct Point {
    x: [f64; 10],
    y: f64,
}

/// The engine's `MakePoint(seed)`: features in [-1, 1), the label from a fixed plane.
fn make_point(seed: u64, i: u64) -> Point {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(i);
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

fn logistic_regression(points: &[Point]) -> [f64; 10] {
    let mut w = [0.0f64; 10];
    for _ in 0..10 {
        let mut g = [0.0f64; 10];
        for p in points {
            let dot: f64 = w.iter().zip(p.x.iter()).map(|(a, b)| a * b).sum();
            let err = 1.0 / (1.0 + (-dot).exp()) - p.y;
            for (gj, xj) in g.iter_mut().zip(p.x.iter()) {
                *gj += err * xj;
            }
        }
        for (wj, gj) in w.iter_mut().zip(g.iter()) {
            *wj -= gj / points.len() as f64;
        }
    }
    w
}

/// The engine's `MakePair { keys: 100_000 }`.
fn make_pair(i: i64) -> (i64, i64) {
    let h = (i as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(29);
    ((h % 100_000) as i64, i)
}

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
