//! The typed sort of `sort_by_key`'s map side: a stable LSD radix sort when the key is a
//! primitive integer (its order is that of one `u64`), std's stable sort otherwise. Spark's
//! sorter does the same for keys whose 8-byte prefix decides their order (`RadixSort` under
//! `UnsafeExternalSorter`): a few passes that each move every record once instead of
//! `n log n` comparisons.

use std::any::{Any, TypeId};
use std::cmp::Ordering;

/// Below this a comparison sort is as fast, and needs no second buffer.
const RADIX_MIN: usize = 1024;

/// Sorts `pairs` by key, ascending or descending; equal keys keep their order.
pub(crate) fn sort_pairs_by_key<K: Ord + 'static, V>(pairs: &mut Vec<(K, V)>, ascending: bool) {
    if pairs.len() >= RADIX_MIN {
        macro_rules! radix_for {
            ($($t:ty => $to_u64:expr),* $(,)?) => {$(
                if TypeId::of::<K>() == TypeId::of::<$t>() {
                    let to_u64: fn($t) -> u64 = $to_u64;
                    // The downcast cannot fail (the type ids are equal) and folds away once
                    // monomorphised; 0 only keeps the closure total.
                    let order = |p: &(K, V)| {
                        let k = (&p.0 as &dyn Any).downcast_ref::<$t>().map_or(0, |k| to_u64(*k));
                        if ascending { k } else { !k }
                    };
                    radix_sort_by(pairs, order);
                    return;
                }
            )*};
        }
        // Signed values flip their sign bit: two's complement then orders as unsigned.
        radix_for!(
            i64 => |k| (k as u64) ^ (1 << 63),
            i32 => |k| (k as i64 as u64) ^ (1 << 63),
            i16 => |k| (k as i64 as u64) ^ (1 << 63),
            i8 => |k| (k as i64 as u64) ^ (1 << 63),
            isize => |k| (k as i64 as u64) ^ (1 << 63),
            u64 => |k| k,
            u32 => |k| k as u64,
            u16 => |k| k as u64,
            u8 => |k| k as u64,
            usize => |k| k as u64,
            char => |k| k as u64,
            bool => |k| k as u64,
        );
    }
    pairs.sort_by(|a, b| by_key(&a.0, &b.0, ascending));
}

/// Key order, ascending or descending.
pub(crate) fn by_key<K: Ord>(a: &K, b: &K, ascending: bool) -> Ordering {
    if ascending {
        a.cmp(b)
    } else {
        b.cmp(a)
    }
}

/// A stable LSD radix sort by `key`, one byte a pass; a byte that every item shares costs no
/// pass. `key` must not panic (it is called while items are between the two buffers).
fn radix_sort_by<T>(items: &mut Vec<T>, key: impl Fn(&T) -> u64) {
    let n = items.len();
    let mut counts = vec![[0usize; 256]; 8];
    for it in items.iter() {
        let k = key(it);
        for (d, c) in counts.iter_mut().enumerate() {
            c[((k >> (8 * d)) & 0xff) as usize] += 1;
        }
    }
    let mut src = std::mem::take(items);
    let mut dst: Vec<T> = Vec::with_capacity(n);
    for (d, c) in counts.iter().enumerate() {
        if c.contains(&n) {
            continue;
        }
        let mut next = [0usize; 256];
        let mut sum = 0;
        for (o, &c) in next.iter_mut().zip(c.iter()) {
            *o = sum;
            sum += c;
        }
        let from = src.as_ptr();
        let to = dst.as_mut_ptr();
        // SAFETY: `src` holds `n` initialised items and `dst` has room for `n`. `next` starts
        // each byte value at the count of smaller byte values among exactly these `n` keys (the
        // counts do not depend on the items' order), so the slots handed out, `next[b]` and
        // on, are `0..n`, each once: every item is moved exactly once, to an in-bounds slot no
        // other item takes, and `dst` is initialised in full when the loop ends. `src`'s length
        // is set to 0 before any move and `dst`'s to `n` only after the last, so a panic in
        // between (`key` is total and the index stays in bounds, but were one to happen) leaks
        // the items instead of dropping one twice. Reading an item by `ptr::read` and writing
        // it with `ptr::write` moves it; the source slot is then treated as uninitialised.
        unsafe {
            src.set_len(0);
            for i in 0..n {
                let item = std::ptr::read(from.add(i));
                let b = ((key(&item) >> (8 * d)) & 0xff) as usize;
                let slot = next[b];
                next[b] += 1;
                debug_assert!(slot < n);
                std::ptr::write(to.add(slot), item);
            }
            dst.set_len(n);
        }
        std::mem::swap(&mut src, &mut dst);
    }
    *items = src;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stable<K: Ord + Clone, V: Clone>(v: &[(K, V)], ascending: bool) -> Vec<(K, V)> {
        let mut s = v.to_vec();
        s.sort_by(|a, b| by_key(&a.0, &b.0, ascending));
        s
    }

    /// Long enough for the radix path; the value is the input position, so ties show order.
    fn check<K: Ord + Clone + std::fmt::Debug + 'static>(keys: Vec<K>, ascending: bool) {
        let mut v: Vec<(K, usize)> = keys.into_iter().enumerate().map(|(i, k)| (k, i)).collect();
        let want = stable(&v, ascending);
        sort_pairs_by_key(&mut v, ascending);
        assert_eq!(v, want);
    }

    proptest! {
        #[test]
        fn radix_sorts_as_a_stable_sort_does(
            keys in prop::collection::vec(any::<i64>(), RADIX_MIN..3000),
            narrow in 0u32..64,
            ascending: bool,
        ) {
            // Keys from a narrow range too, so that most passes are skipped and ties abound.
            let m = 1i64 << narrow.min(20);
            check(keys.iter().map(|k| k % m).collect(), ascending);
            check(keys.clone(), ascending);
            check(keys.iter().map(|&k| k as i32).collect(), ascending);
            check(keys.iter().map(|&k| (k % 7) as i8).collect(), ascending);
            check(keys.iter().map(|&k| k as u64).collect(), ascending);
            check(keys.iter().map(|&k| k as u16).collect(), ascending);
        }
    }

    #[test]
    fn extremes_and_strings_sort() {
        let mut keys = vec![i64::MIN, i64::MAX, 0, -1, 1, i64::MIN + 1, i64::MAX - 1];
        keys = keys.iter().cycle().take(RADIX_MIN * 2).copied().collect();
        check(keys.clone(), true);
        check(keys, false);
        // Not an integer: the comparison sort.
        check(
            (0..RADIX_MIN * 2).map(|i| format!("{}", i % 97)).collect(),
            false,
        );
        let mut drops: Vec<(u32, String)> = (0..5000u32).map(|i| (i % 13, i.to_string())).collect();
        let want = stable(&drops, true);
        sort_pairs_by_key(&mut drops, true);
        assert_eq!(drops, want);
    }
}
