//! Minibatches from CIFAR-10 images: per-channel normalisation and optional augmentation
//! (random crop from a zero-padded image, horizontal flip), each image's draws from its own
//! keyed stream so a batch is the same whichever thread built it.

use crate::cifar::{self, Images, IMAGE_BYTES};
use crate::rng::{self, Purpose};
use rand::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalization {
    pub fn of(images: &Images) -> Normalization {
        let (mean, std) = cifar::channel_stats(images);
        Normalization { mean, std }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Augment {
    /// Zero padding on each side before a random 32×32 crop (0: no crop).
    pub pad: usize,
    pub flip: bool,
}

impl Augment {
    pub const NONE: Augment = Augment {
        pad: 0,
        flip: false,
    };

    pub fn is_none(&self) -> bool {
        *self == Augment::NONE
    }
}

/// Normalized images `indices` of `images`, with augmentation when `augment` is given;
/// `key` names the augmentation streams (for example `[epoch, partition, iteration]`).
pub fn batch(
    images: &Images,
    indices: &[usize],
    norm: &Normalization,
    augment: Option<(Augment, u64, &[u64])>,
) -> (Vec<f32>, Vec<u8>) {
    let mut x = Vec::new();
    let labels = batch_into(&mut x, images, indices, norm, augment);
    (x, labels)
}

/// [`batch`] into `x`, whose memory is reused: a training step that keeps its buffer neither
/// allocates nor zeroes 3 MB per 256 images. Returns the labels.
pub fn batch_into(
    x: &mut Vec<f32>,
    images: &Images,
    indices: &[usize],
    norm: &Normalization,
    augment: Option<(Augment, u64, &[u64])>,
) -> Vec<u8> {
    // Every element is written below; only growth is zeroed.
    x.resize(indices.len() * IMAGE_BYTES, 0.0);
    let normalizer = cifar::Normalizer::new(&norm.mean, &norm.std);
    x.par_chunks_mut(IMAGE_BYTES)
        .zip(indices.par_iter())
        .enumerate()
        .for_each(|(slot, (out, &i))| {
            normalizer.apply(images.image(i), out);
            if let Some((aug, seed, key)) = augment {
                let mut k = key.to_vec();
                k.push(slot as u64);
                let mut rng = rng::stream(seed, Purpose::Augment, &k);
                let dy = rng.gen_range(0..=2 * aug.pad) as isize - aug.pad as isize;
                let dx = rng.gen_range(0..=2 * aug.pad) as isize - aug.pad as isize;
                let flip = aug.flip && rng.gen::<bool>();
                shift_flip(out, dy, dx, flip);
            }
        });
    indices.iter().map(|&i| images.labels[i]).collect()
}

/// Moves the 32×32 planes by (dy, dx) filling with zeros (a crop of the padded image), then
/// mirrors them if asked.
fn shift_flip(img: &mut [f32], dy: isize, dx: isize, flip: bool) {
    if dy == 0 && dx == 0 && !flip {
        return;
    }
    let src = img.to_vec();
    for (c, plane) in img.chunks_exact_mut(1024).enumerate() {
        for y in 0..32isize {
            for x in 0..32isize {
                let (sy, sx) = (y + dy, x + dx);
                let v = if (0..32).contains(&sy) && (0..32).contains(&sx) {
                    src[c * 1024 + (sy * 32 + sx) as usize]
                } else {
                    0.0
                };
                let tx = if flip { 31 - x } else { x };
                plane[(y * 32 + tx) as usize] = v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_holds_the_normalization_formula_bit_for_bit() {
        // Every pixel value in every channel, in two images.
        let pixels: Vec<u8> = (0..2 * IMAGE_BYTES).map(|i| (i * 7 % 256) as u8).collect();
        let images = Images {
            labels: vec![3, 5],
            pixels,
        };
        let norm = Normalization {
            mean: [0.4914, 0.4822, 0.4465],
            std: [0.2470, 0.2435, 0.2616],
        };
        let (x, labels) = batch(&images, &[1, 0], &norm, None);
        assert_eq!(labels, [5, 3]);
        for (slot, &i) in [1usize, 0].iter().enumerate() {
            for (j, &p) in images.image(i).iter().enumerate() {
                let c = j / 1024;
                let want = (f32::from(p) / 255.0 - norm.mean[c]) / norm.std[c];
                assert_eq!(
                    x[slot * IMAGE_BYTES + j].to_bits(),
                    want.to_bits(),
                    "{i} {j}"
                );
            }
        }
    }

    #[test]
    fn a_reused_buffer_gives_the_batch_a_fresh_one_gives() {
        let pixels: Vec<u8> = (0..3 * IMAGE_BYTES).map(|i| (i * 13 % 251) as u8).collect();
        let images = Images {
            labels: vec![1, 2, 3],
            pixels,
        };
        let norm = Normalization {
            mean: [0.5, 0.4, 0.3],
            std: [0.2, 0.25, 0.3],
        };
        let aug = Augment { pad: 4, flip: true };
        let mut x = vec![f32::NAN; 5 * IMAGE_BYTES];
        for idx in [&[2usize, 0][..], &[0, 1, 2], &[1]] {
            let labels = batch_into(&mut x, &images, idx, &norm, Some((aug, 9, &[1, 2][..])));
            let (want, want_labels) = batch(&images, idx, &norm, Some((aug, 9, &[1, 2][..])));
            assert_eq!(labels, want_labels);
            assert_eq!(x.len(), want.len());
            assert!(x.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }

    #[test]
    fn flip_and_shift_move_pixels() {
        let mut img: Vec<f32> = (0..IMAGE_BYTES).map(|i| i as f32).collect();
        shift_flip(&mut img, 0, 0, true);
        assert_eq!(img[0], 31.0);
        assert_eq!(img[1024 + 32], 1024.0 + 32.0 + 31.0);
        let mut img: Vec<f32> = (0..IMAGE_BYTES).map(|i| i as f32 + 1.0).collect();
        shift_flip(&mut img, 1, -2, false);
        assert_eq!(img[0], 0.0); // came from column −2
        assert_eq!(img[2], 32.0 + 1.0); // (1, 0)
        assert_eq!(img[31 * 32 + 5], 0.0); // came from row 32
    }
}
