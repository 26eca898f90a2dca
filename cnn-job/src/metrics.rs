//! Classification metrics: overall accuracy (the paper's formula 5: correct / total), per-class
//! precision and recall, their mean, and the confusion matrix (rows: true class, columns:
//! predicted class).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confusion {
    pub counts: Vec<Vec<u64>>,
}

impl Confusion {
    pub fn new(classes: usize) -> Confusion {
        Confusion {
            counts: vec![vec![0; classes]; classes],
        }
    }

    pub fn from_predictions(classes: usize, truth: &[u8], predicted: &[u8]) -> Confusion {
        let mut c = Confusion::new(classes);
        for (&t, &p) in truth.iter().zip(predicted) {
            c.add(t as usize, p as usize);
        }
        c
    }

    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.counts[truth][predicted] += 1;
    }

    pub fn merge(&mut self, other: &Confusion) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    pub fn accuracy(&self) -> f64 {
        let correct: u64 = (0..self.counts.len()).map(|i| self.counts[i][i]).sum();
        ratio(correct, self.total())
    }

    /// Recall of each class: correct / images of that class (0 for a class with no images).
    pub fn recall(&self) -> Vec<f64> {
        (0..self.counts.len())
            .map(|i| ratio(self.counts[i][i], self.counts[i].iter().sum()))
            .collect()
    }

    /// Precision of each class: correct / images predicted as that class (0 when none were).
    pub fn precision(&self) -> Vec<f64> {
        (0..self.counts.len())
            .map(|j| ratio(self.counts[j][j], self.counts.iter().map(|r| r[j]).sum()))
            .collect()
    }

    pub fn mean_recall(&self) -> f64 {
        let r = self.recall();
        r.iter().sum::<f64>() / r.len().max(1) as f64
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_a_small_matrix() {
        let c = Confusion::from_predictions(3, &[0, 0, 1, 1, 2, 2], &[0, 1, 1, 1, 0, 2]);
        assert_eq!(c.total(), 6);
        assert!((c.accuracy() - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(c.recall(), vec![0.5, 1.0, 0.5]);
        assert_eq!(c.precision(), vec![0.5, 2.0 / 3.0, 1.0]);
        assert!((c.mean_recall() - 2.0 / 3.0).abs() < 1e-12);
    }
}
