//! Seeded randomness. Every random draw comes from a stream keyed by the run's seed and the
//! position of the draw (epoch, partition, iteration, chunk …), so results never depend on
//! which thread or executor did the work, nor on the order in which work was scheduled.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What a stream is for, so that two uses with the same numeric key never share draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Purpose {
    Init = 1,
    Shuffle = 2,
    Augment = 3,
    Dropout = 4,
    Sample = 5,
    Data = 6,
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The stream for `(seed, purpose, key…)`, e.g. `stream(seed, Purpose::Dropout, &[epoch,
/// partition, iteration, chunk])`.
pub fn stream(seed: u64, purpose: Purpose, key: &[u64]) -> ChaCha8Rng {
    let mut h = splitmix(seed ^ splitmix(purpose as u64));
    for &k in key {
        h = splitmix(h ^ k);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(h);
    rng.set_stream(purpose as u64);
    rng
}
