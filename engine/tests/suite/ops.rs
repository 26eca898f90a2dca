// Every RDD operation against a plain-Rust reference (std only) on random inputs, with 1, 3
// and 16 partitions. Included by `ops.rs` (local mode) and by the workspace's
// `tests/cluster_ops.rs` (a 3-executor cluster): the same assertions in both modes. The
// including file defines `ctx()` and `CASES`.

use discnn_engine::testing::*;
use discnn_engine::{HashPartitioner, RangePartitioner, Rdd};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};

const PARTS: [usize; 3] = [1, 3, 16];

fn rdd(v: &[i64], parts: usize) -> Rdd<i64> {
    ctx().parallelize(v.to_vec(), parts).unwrap()
}

fn pairs(v: &[(i64, i64)], parts: usize) -> Rdd<(i64, i64)> {
    ctx().parallelize(v.to_vec(), parts).unwrap()
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn values() -> impl Strategy<Value = Vec<i64>> {
    prop::collection::vec(-50i64..50, 0..120)
}

fn kv() -> impl Strategy<Value = Vec<(i64, i64)>> {
    prop::collection::vec((0i64..12, -100i64..100), 0..120)
}

fn by_key(v: &[(i64, i64)]) -> BTreeMap<i64, Vec<i64>> {
    let mut m: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (k, x) in v {
        m.entry(*k).or_default().push(*x);
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn narrow_ops_match_std(v in values()) {
        for p in PARTS {
            let r = rdd(&v, p);
            prop_assert_eq!(r.collect().unwrap(), v.clone());
            prop_assert_eq!(r.map(AddOne).collect().unwrap(), v.iter().map(|x| x + 1).collect::<Vec<_>>());
            prop_assert_eq!(r.filter(IsEven).collect().unwrap(), v.iter().copied().filter(|x| x % 2 == 0).collect::<Vec<_>>());
            let reps: Vec<i64> = v.iter().flat_map(|&x| vec![x; x.rem_euclid(3) as usize]).collect();
            prop_assert_eq!(r.flat_map(Repeat).collect().unwrap(), reps);
            prop_assert_eq!(r.map(AddOne).map(Square).filter(IsEven).collect().unwrap(),
                v.iter().map(|x| (x + 1) * (x + 1)).filter(|x| x % 2 == 0).collect::<Vec<_>>());
            prop_assert_eq!(r.key_by(Modulo(5)).collect().unwrap(), v.iter().map(|&x| (x.rem_euclid(5), x)).collect::<Vec<_>>());
            prop_assert_eq!(r.map(ToStr).collect().unwrap(), v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
            prop_assert_eq!(r.count().unwrap(), v.len() as u64);
        }
    }

    #[test]
    fn partition_shaped_ops_match_std(v in values()) {
        for p in PARTS {
            let r = rdd(&v, p);
            let n = v.len();
            let slices: Vec<Vec<i64>> = (0..p).map(|i| v[i * n / p..(i + 1) * n / p].to_vec()).collect();
            prop_assert_eq!(r.glom().collect().unwrap(), slices.clone());
            let sums: Vec<(u64, i64)> = slices.iter().enumerate().map(|(i, s)| (i as u64, s.iter().sum())).collect();
            prop_assert_eq!(r.map_partitions_with_index(PartitionSum).collect().unwrap(), sums);
            let u = r.union(&r.map(AddOne));
            prop_assert_eq!(u.num_partitions(), 2 * p);
            prop_assert_eq!(u.collect().unwrap(), v.iter().copied().chain(v.iter().map(|x| x + 1)).collect::<Vec<_>>());
            // Typed streams chained without encoding (union and coalesce of mapped partitions).
            let plus = r.map(AddOne);
            let twice: Vec<i64> = v.iter().map(|x| x + 1).chain(v.iter().map(|x| x + 1)).collect();
            prop_assert_eq!(plus.union(&plus).collect().unwrap(), twice);
            prop_assert_eq!(plus.coalesce(1).collect().unwrap(), v.iter().map(|x| x + 1).collect::<Vec<_>>());
            prop_assert_eq!(r.zip_partitions(&r.map(Square), ZipAdd).unwrap().collect().unwrap(),
                v.iter().map(|x| x + x * x).collect::<Vec<_>>());
            for m in [1, 2, p] {
                let c = r.coalesce(m);
                prop_assert_eq!(c.num_partitions(), m.min(p));
                prop_assert_eq!(c.collect().unwrap(), v.clone());
            }
            for m in [1, 5] {
                let c = r.repartition(m);
                prop_assert_eq!(c.num_partitions(), m);
                prop_assert_eq!(sorted(c.collect().unwrap()), sorted(v.clone()));
            }
            prop_assert_eq!(r.sample(false, 1.0, 7).collect().unwrap(), v.clone());
            prop_assert_eq!(r.sample(false, 0.0, 7).count().unwrap(), 0);
            let s = r.sample(true, 0.5, 9).collect().unwrap();
            prop_assert_eq!(r.sample(true, 0.5, 9).collect().unwrap(), s.clone(), "a seeded sample is repeatable");
            let allowed: HashSet<i64> = v.iter().copied().collect();
            prop_assert!(s.iter().all(|x| allowed.contains(x)));
        }
    }

    #[test]
    fn actions_match_std(v in values()) {
        for p in PARTS {
            let r = rdd(&v, p);
            let sum: i64 = v.iter().sum();
            prop_assert_eq!(r.reduce(Add).unwrap(), v.iter().copied().reduce(|a, b| a + b));
            prop_assert_eq!(r.fold(0, Add).unwrap(), sum);
            prop_assert_eq!(r.aggregate((0, 0), SumCount).unwrap(), (sum, v.len() as u64));
            for depth in [1, 2, 3] {
                prop_assert_eq!(r.tree_aggregate((0, 0), SumCount, depth).unwrap(), (sum, v.len() as u64));
            }
            let acc = ctx().accumulator::<discnn_engine::Sum<i64>>();
            r.foreach(AddEach(acc.clone())).unwrap();
            prop_assert_eq!(acc.value(), sum);
            prop_assert_eq!(r.take(5).unwrap(), v.iter().copied().take(5).collect::<Vec<_>>());
            prop_assert_eq!(r.take(1000).unwrap(), v.clone());
            prop_assert_eq!(r.first().unwrap(), v.first().copied());
            prop_assert_eq!(r.take_ordered(7).unwrap(), sorted(v.clone()).into_iter().take(7).collect::<Vec<_>>());
            let mut desc = sorted(v.clone());
            desc.reverse();
            prop_assert_eq!(r.top(4).unwrap(), desc.into_iter().take(4).collect::<Vec<_>>());
            prop_assert_eq!(sorted(r.distinct(4).collect().unwrap()),
                v.iter().copied().collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn keyed_ops_match_std(v in kv()) {
        let groups = by_key(&v);
        for p in PARTS {
            let r = pairs(&v, p);
            let sums: Vec<(i64, i64)> = groups.iter().map(|(k, xs)| (*k, xs.iter().sum())).collect();
            prop_assert_eq!(sorted(r.reduce_by_key(Add, 4).collect().unwrap()), sums.clone());
            prop_assert_eq!(sorted(r.fold_by_key(0, Add, 3).unwrap().collect().unwrap()), sums.clone());
            let maxes: Vec<(i64, i64)> = groups.iter().map(|(k, xs)| (*k, *xs.iter().max().unwrap())).collect();
            prop_assert_eq!(sorted(r.fold_by_key(i64::MIN, Max, 2).unwrap().collect().unwrap()), maxes);
            let sc: Vec<(i64, (i64, u64))> = groups.iter().map(|(k, xs)| (*k, (xs.iter().sum(), xs.len() as u64))).collect();
            prop_assert_eq!(sorted(r.aggregate_by_key((0, 0), SumCount, 5).unwrap().collect().unwrap()), sc);
            let lists: Vec<(i64, Vec<i64>)> = groups.iter().map(|(k, xs)| (*k, sorted(xs.clone()))).collect();
            prop_assert_eq!(sorted(r.combine_by_key(SortedList, 3).collect().unwrap()), lists.clone());
            // Each key's values in the order they came: map order, then each map's order.
            let grouped: Vec<(i64, Vec<i64>)> = r.group_by_key(4).collect().unwrap();
            prop_assert_eq!(sorted(grouped), groups.clone().into_iter().collect::<Vec<_>>());
            let counts: HashMap<i64, u64> = groups.iter().map(|(k, xs)| (*k, xs.len() as u64)).collect();
            prop_assert_eq!(r.count_by_key().unwrap(), counts);
            prop_assert_eq!(r.map_values(AddOne).collect().unwrap(), v.iter().map(|(k, x)| (*k, x + 1)).collect::<Vec<_>>());
            prop_assert_eq!(r.flat_map_values(Repeat).collect().unwrap(),
                v.iter().flat_map(|&(k, x)| vec![(k, x); x.rem_euclid(3) as usize]).collect::<Vec<_>>());
            prop_assert_eq!(r.keys().collect().unwrap(), v.iter().map(|p| p.0).collect::<Vec<_>>());
            prop_assert_eq!(r.values().collect().unwrap(), v.iter().map(|p| p.1).collect::<Vec<_>>());
        }
    }

    #[test]
    fn partitioners_and_sorts_match_std(v in kv()) {
        for p in PARTS {
            let r = pairs(&v, p);
            for out in [1, 4] {
                let h = r.partition_by(HashPartitioner(out)).unwrap();
                prop_assert_eq!(h.num_partitions(), out);
                prop_assert_eq!(sorted(h.collect().unwrap()), sorted(v.clone()));
            }
            let m = r.partition_by(ModPartitioner(5)).unwrap();
            for (i, part) in m.glom().collect().unwrap().into_iter().enumerate() {
                let want: Vec<(i64, i64)> = v.iter().copied().filter(|(k, _)| k.rem_euclid(5) as usize == i).collect();
                prop_assert_eq!(part, want);
            }
            for ascending in [true, false] {
                // Equal keys keep their order in the input (a stable sort's).
                let s = r.sort_by_key(ascending, 3).unwrap().collect().unwrap();
                let mut want = v.clone();
                if ascending { want.sort_by_key(|x| x.0) } else { want.sort_by_key(|x| std::cmp::Reverse(x.0)) }
                prop_assert_eq!(s, want);
                let rp = r.partition_by(RangePartitioner { partitions: 3, ascending }).unwrap();
                let firsts: Vec<Vec<i64>> = rp.glom().collect().unwrap().into_iter().map(|p| p.into_iter().map(|x| x.0).collect()).collect();
                for w in firsts.windows(2) {
                    if let (Some(a), Some(b)) = (w[0].iter().max(), w[1].iter().min()) {
                        if ascending { prop_assert!(a <= b); } else { prop_assert!(w[0].iter().min().unwrap() >= w[1].iter().max().unwrap()); let _ = (a, b); }
                    }
                }
            }
        }
    }

    #[test]
    fn joins_match_std(a in kv(), b in kv()) {
        let (ga, gb) = (by_key(&a), by_key(&b));
        let keys: std::collections::BTreeSet<i64> = ga.keys().chain(gb.keys()).copied().collect();
        let mut inner = Vec::new();
        let mut left = Vec::new();
        let mut right = Vec::new();
        let mut full = Vec::new();
        let mut cog = Vec::new();
        let empty = Vec::new();
        for k in &keys {
            let (xs, ys) = (ga.get(k).unwrap_or(&empty), gb.get(k).unwrap_or(&empty));
            cog.push((*k, (sorted(xs.clone()), sorted(ys.clone()))));
            for x in xs { for y in ys { inner.push((*k, (*x, *y))); } }
            for x in xs {
                if ys.is_empty() { left.push((*k, (*x, None))); }
                for y in ys { left.push((*k, (*x, Some(*y)))); }
            }
            for y in ys {
                if xs.is_empty() { right.push((*k, (None, *y))); }
                for x in xs { right.push((*k, (Some(*x), *y))); }
            }
            if xs.is_empty() { for y in ys { full.push((*k, (None, Some(*y)))); } }
            else if ys.is_empty() { for x in xs { full.push((*k, (Some(*x), None))); } }
            else { for x in xs { for y in ys { full.push((*k, (Some(*x), Some(*y)))); } } }
        }
        for p in PARTS {
            let (ra, rb) = (pairs(&a, p), pairs(&b, p.div_ceil(2)));
            prop_assert_eq!(sorted(ra.join(&rb, 3).collect().unwrap()), sorted(inner.clone()));
            prop_assert_eq!(sorted(ra.left_outer_join(&rb, 2).collect().unwrap()), sorted(left.clone()));
            prop_assert_eq!(sorted(ra.right_outer_join(&rb, 4).collect().unwrap()), sorted(right.clone()));
            prop_assert_eq!(sorted(ra.full_outer_join(&rb, 1).collect().unwrap()), sorted(full.clone()));
            let got: Vec<discnn_engine::rdd::Grouped<i64, i64, i64>> = ra.cogroup(&rb, 3).collect().unwrap().into_iter().map(|(k, (x, y))| (k, (sorted(x), sorted(y)))).collect();
            prop_assert_eq!(sorted(got), cog.clone());
        }
    }

    #[test]
    fn range_matches_std(start in -40i64..40, len in 0i64..90, step in prop::sample::select(vec![-3i64, -1, 1, 2, 7])) {
        let end = start + step.signum() * len;
        let want: Vec<i64> = if step > 0 { (start..end).step_by(step as usize).collect() } else { let mut v = Vec::new(); let mut x = start; while x > end { v.push(x); x += step; } v };
        for p in PARTS {
            prop_assert_eq!(ctx().range(start, end, step, p).unwrap().collect().unwrap(), want.clone());
        }
    }

    #[test]
    fn text_files_split_on_line_boundaries(lines in prop::collection::vec("[a-z \u{a0}é]{0,30}", 0..60), crlf in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        let sep = if crlf { "\r\n" } else { "\n" };
        let mut text = lines.join(sep);
        if !lines.is_empty() { text.push_str(sep); }
        std::fs::write(&path, &text).unwrap();
        for p in PARTS {
            let r = ctx().text_file(&path, p).unwrap();
            prop_assert_eq!(r.collect().unwrap(), lines.clone(), "{} partitions", r.num_partitions());
        }
        let out = dir.path().join("out");
        rdd(&[3, 1, 2], 2).map(ToStr).save_as_text_file(&out).unwrap();
        let back = ctx().text_file(&out, 3).unwrap().collect().unwrap();
        prop_assert_eq!(back, vec!["3".to_string(), "1".into(), "2".into()]);
    }
}

// The borrowed-record ops: from a text file (lines lent from the reader), from owned and from
// encoded (parallelized) records, into each consumer: the combining shuffle's direct path
// ((String, u64), (i64, i64)), its generic path ((String, String)), a key that is not a fast-path
// type, a plain shuffle, the cache, a union and collect.
proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn borrowed_ops_match_std(lines in prop::collection::vec("[a-c ]{0,12}", 0..40), v in values()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&path, &text).unwrap();
        let words: Vec<String> = lines.iter().flat_map(|l| l.split_whitespace().map(String::from)).collect();
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for w in &words {
            *counts.entry(w.clone()).or_default() += 1;
        }
        let counts: Vec<(String, u64)> = counts.into_iter().collect();
        for p in PARTS {
            let from_file = ctx().text_file(&path, p).unwrap().flat_map_borrowed(SplitLent);
            let from_vec = ctx().parallelize(lines.clone(), p).unwrap().flat_map_borrowed(SplitLent);
            let owned_lines = ctx().parallelize(lines.clone(), p).unwrap().map(Words2);
            for (name, w) in [("file", &from_file), ("parallelize", &from_vec), ("owned", &owned_lines.flat_map_borrowed(SplitLent))] {
                prop_assert_eq!(w.collect().unwrap(), words.clone(), "{} {} partitions", name, p);
                prop_assert_eq!(sorted(w.map_borrowed(WithOneLent).reduce_by_key(AddCounts, 3).collect().unwrap()), counts.clone());
            }
            let long: Vec<String> = words.iter().filter(|w| w.len() > 2).cloned().collect();
            prop_assert_eq!(from_file.filter_borrowed(LongerThan(2)).collect().unwrap(), long);
            let same: Vec<(String, String)> = counts.iter().map(|(w, _)| (w.clone(), w.clone())).collect();
            prop_assert_eq!(sorted(from_file.map_borrowed(WithSelfLent).reduce_by_key(MinStr, 2).collect().unwrap()), same);
            let grouped: Vec<(String, usize)> = counts.iter().map(|(w, n)| (w.clone(), *n as usize)).collect();
            let got: Vec<(String, usize)> = from_file.map_borrowed(WithOneLent).group_by_key(2).collect().unwrap()
                .into_iter().map(|(w, ones)| (w, ones.len())).collect();
            prop_assert_eq!(sorted(got), grouped);
            let cached = ctx().text_file(&path, p).unwrap().flat_map_borrowed(SplitLent);
            cached.cache();
            prop_assert_eq!(cached.count().unwrap(), words.len() as u64);
            prop_assert_eq!(cached.collect().unwrap(), words.clone());
            let both: Vec<String> = words.iter().chain(words.iter()).cloned().collect();
            prop_assert_eq!(from_file.union(&from_vec).collect().unwrap(), both);

            let r = rdd(&v, p);
            let mut sums: BTreeMap<i64, i64> = BTreeMap::new();
            for x in &v {
                *sums.entry(x.rem_euclid(5)).or_default() += x;
            }
            let want: Vec<(i64, i64)> = sums.into_iter().collect();
            prop_assert_eq!(sorted(r.map_borrowed(ModPairLent(5)).reduce_by_key(Add, 3).collect().unwrap()), want.clone());
            let tuple_keys: Vec<((i64, i64), i64)> = want.iter().map(|&(k, s)| ((k, 0), s)).collect();
            prop_assert_eq!(sorted(r.map_borrowed(TupleKeyLent(5)).reduce_by_key(Add, 3).collect().unwrap()), tuple_keys);
        }
    }
}

#[test]
fn sort_by_orders_globally() {
    let v: Vec<i64> = (0..200).map(|i| (i * 7919) % 211).collect();
    for p in PARTS {
        let s = rdd(&v, p)
            .map(ToStr)
            .sort_by(Words2, true, 4)
            .unwrap()
            .collect()
            .unwrap();
        let mut want: Vec<String> = v.iter().map(|x| x.to_string()).collect();
        want.sort();
        assert_eq!(s, want);
    }
}

#[test]
fn gzip_text_and_binary_records() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("a.txt.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(b"one\ntwo\nthree\n").unwrap();
    enc.finish().unwrap();
    let r = ctx().text_file(&gz, 4).unwrap();
    assert_eq!(r.num_partitions(), 1, "a .gz file is read whole");
    assert_eq!(r.collect().unwrap(), vec!["one", "two", "three"]);

    let bin = dir.path().join("recs.bin");
    let data: Vec<u8> = (0..70u8).collect();
    std::fs::write(&bin, &data).unwrap();
    for p in PARTS {
        let recs = ctx().binary_records(&bin, 7, p).unwrap().collect().unwrap();
        assert_eq!(recs, data.chunks(7).map(|c| c.to_vec()).collect::<Vec<_>>());
    }
    std::fs::write(&bin, &data[..68]).unwrap();
    let err = ctx()
        .binary_records(&bin, 7, 2)
        .err()
        .expect("a torn record is refused")
        .to_string();
    assert!(
        err.contains("recs.bin") && err.contains("offset 63"),
        "{err}"
    );
}
