//! What the naive programs and `driver bench engine` both print as a W3 run's output, so that
//! the two can be compared: digests of the grouped or sorted pairs, built per partition and
//! merged (the engine) or built in one pass (the naive programs).

use std::fmt;

pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A file's bytes (FNV-1a), and its line count: a wordcount's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BytesDigest {
    pub lines: u64,
    pub digest: u64,
}

impl Default for BytesDigest {
    fn default() -> Self {
        BytesDigest {
            lines: 0,
            digest: 0xcbf2_9ce4_8422_2325,
        }
    }
}

impl BytesDigest {
    pub fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.lines += u64::from(b == b'\n');
            self.digest = (self.digest ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl fmt::Display for BytesDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lines {} digest {:016x}", self.lines, self.digest)
    }
}

/// Groups by key: free of the order of groups and of the values inside a group.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GroupDigest {
    pub groups: u64,
    pub values: u64,
    pub digest: u64,
}

impl GroupDigest {
    pub fn add(&mut self, key: i64, values: &[i64]) {
        self.groups += 1;
        self.values += values.len() as u64;
        let sum = values
            .iter()
            .fold(0u64, |s, v| s.wrapping_add(mix(*v as u64)));
        self.digest = self.digest.wrapping_add(mix(mix(key as u64) ^ sum));
    }

    pub fn merge(self, other: GroupDigest) -> GroupDigest {
        GroupDigest {
            groups: self.groups + other.groups,
            values: self.values + other.values,
            digest: self.digest.wrapping_add(other.digest),
        }
    }
}

impl fmt::Display for GroupDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "groups {} values {} digest {:016x}",
            self.groups, self.values, self.digest
        )
    }
}

/// A sort's output in order: whether keys never decrease, and a digest of the pairs free of
/// their order (equal keys may come in any order, as in any distributed sort).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortDigest {
    pub records: u64,
    pub sorted: bool,
    /// The first and last keys, to check the seams when partitions are concatenated.
    pub first: i64,
    pub last: i64,
    pub digest: u64,
}

impl Default for SortDigest {
    fn default() -> Self {
        SortDigest {
            records: 0,
            sorted: true,
            first: i64::MIN,
            last: i64::MIN,
            digest: 0,
        }
    }
}

impl SortDigest {
    pub fn add(&mut self, key: i64, value: i64) {
        if self.records == 0 {
            self.first = key;
        } else {
            self.sorted &= key >= self.last;
        }
        self.last = key;
        self.records += 1;
        self.digest = self
            .digest
            .wrapping_add(mix(mix(key as u64) ^ value as u64));
    }

    /// This output followed by `next`'s.
    pub fn then(self, next: SortDigest) -> SortDigest {
        if next.records == 0 {
            return self;
        }
        if self.records == 0 {
            return next;
        }
        SortDigest {
            records: self.records + next.records,
            sorted: self.sorted && next.sorted && next.first >= self.last,
            first: self.first,
            last: next.last,
            digest: self.digest.wrapping_add(next.digest),
        }
    }
}

impl fmt::Display for SortDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "records {} sorted {} digest {:016x}",
            self.records, self.sorted, self.digest
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_digest_ignores_order_but_not_content() {
        let mut a = GroupDigest::default();
        a.add(1, &[10, 20]);
        a.add(2, &[30]);
        let mut b = GroupDigest::default();
        b.add(2, &[30]);
        b.add(1, &[20, 10]);
        assert_eq!(a, b);
        let mut c = GroupDigest::default();
        c.add(1, &[10]);
        c.add(2, &[30, 20]);
        assert_ne!(a, c);
    }

    #[test]
    fn sort_digest_sees_unsorted_seams() {
        let (mut a, mut b) = (SortDigest::default(), SortDigest::default());
        a.add(1, 0);
        a.add(3, 0);
        b.add(5, 0);
        assert!(a.sorted && b.sorted);
        assert!(a.then(b).sorted);
        assert!(!b.then(a).sorted);
        assert_eq!(a.then(b).digest, b.then(a).digest);
        let mut c = SortDigest::default();
        c.add(2, 0);
        c.add(1, 0);
        assert!(!c.sorted && !a.then(c).sorted);
    }
}
