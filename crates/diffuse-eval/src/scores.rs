//! The Inception Score and the Kernel Inception Distance, from an Inception network's outputs.
//!
//! - IS (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))), p(y|x) the softmax of an image's
//!   logits and p(y) their mean over a split; the images in `splits` contiguous parts, the mean
//!   and (population) standard deviation of the parts' scores, as the original code.
//! - KID (Bińkowski et al. 2018): the unbiased estimate of the squared MMD with the polynomial
//!   kernel k(x, y) = (x . y / d + 1)^3, averaged over random subsets of both sets (torch-
//!   fidelity's defaults: 100 subsets of 1000). Unlike FID it has no bias in the number of
//!   images, so small sets can be compared.

use rand::Rng;
use rand::seq::index::sample;

use crate::linalg::gemm;

/// (mean, standard deviation) of the Inception Score of row-major `logits`, `classes` wide, in
/// `splits` parts. Computed in f64, the softmax from the largest logit.
pub fn inception_score(logits: &[f32], classes: usize, splits: usize) -> (f64, f64) {
    let n = logits.len() / classes;
    assert!(splits >= 1 && splits <= n, "1 <= splits <= images");
    let probs: Vec<Vec<f64>> = logits
        .chunks_exact(classes)
        .map(|row| {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
            let e: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            e.into_iter().map(|v| v / sum).collect()
        })
        .collect();
    let scores: Vec<f64> = (0..splits)
        .map(|k| {
            let part = &probs[k * n / splits..(k + 1) * n / splits];
            let mut marginal = vec![0.0; classes];
            for p in part {
                marginal
                    .iter_mut()
                    .zip(p)
                    .for_each(|(m, v)| *m += v / part.len() as f64);
            }
            let kl: f64 = part
                .iter()
                .map(|p| {
                    p.iter()
                        .zip(&marginal)
                        .filter(|(v, _)| **v > 0.0)
                        .map(|(v, m)| v * (v.ln() - m.ln()))
                        .sum::<f64>()
                })
                .sum::<f64>()
                / part.len() as f64;
            kl.exp()
        })
        .collect();
    mean_std(&scores)
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
    (mean, var.sqrt())
}

/// The unbiased squared MMD between row-major `x` (m rows) and `y` (n rows), `dim` wide, with
/// the polynomial kernel (x . y / dim + 1)^3: the within-set sums without their diagonals over
/// m (m - 1) and n (n - 1), less twice the cross sum over m n.
pub fn polynomial_mmd(x: &[f64], y: &[f64], dim: usize) -> f64 {
    let (m, n) = (x.len() / dim, y.len() / dim);
    let kernel_sum = |a: &[f64], b: &[f64], skip_diagonal: bool| {
        let (ra, rb) = (a.len() / dim, b.len() / dim);
        let mut k = vec![0.0; ra * rb];
        gemm(
            (ra, rb, dim),
            &mut k,
            0.0,
            a,
            [dim, 1],
            b,
            [1, dim],
            1.0 / dim as f64,
        );
        let mut sum = 0.0;
        for (idx, v) in k.iter().enumerate() {
            if !(skip_diagonal && idx / rb == idx % rb) {
                sum += (v + 1.0).powi(3);
            }
        }
        sum
    };
    kernel_sum(x, x, true) / (m * (m - 1)) as f64 + kernel_sum(y, y, true) / (n * (n - 1)) as f64
        - 2.0 * kernel_sum(x, y, false) / (m * n) as f64
}

/// (mean, standard deviation) of [`polynomial_mmd`] over `subsets` random subsets of
/// `subset_size` rows of each set (rows drawn without replacement within a subset).
pub fn kid(
    a: &[f32],
    b: &[f32],
    dim: usize,
    subsets: usize,
    subset_size: usize,
    rng: &mut impl Rng,
) -> (f64, f64) {
    let (na, nb) = (a.len() / dim, b.len() / dim);
    assert!(
        subset_size >= 2 && subset_size <= na.min(nb),
        "2 <= subset size <= images"
    );
    let rows = |set: &[f32], idx: Vec<usize>| -> Vec<f64> {
        idx.into_iter()
            .flat_map(|i| set[i * dim..(i + 1) * dim].iter().map(|&v| v as f64))
            .collect()
    };
    let values: Vec<f64> = (0..subsets)
        .map(|_| {
            let x = rows(a, sample(rng, na, subset_size).into_vec());
            let y = rows(b, sample(rng, nb, subset_size).into_vec());
            polynomial_mmd(&x, &y, dim)
        })
        .collect();
    mean_std(&values)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uniform predictions score 1; n images each sure of its own class out of n score n.
    #[test]
    fn inception_score_extremes() {
        let (mean, std) = inception_score(&[0.0; 40], 10, 1);
        assert!((mean - 1.0).abs() < 1e-12 && std == 0.0);
        let n = 8;
        let logits: Vec<f32> = (0..n * n)
            .map(|k| if k / n == k % n { 50.0 } else { 0.0 })
            .collect();
        let (mean, _) = inception_score(&logits, n, 1);
        assert!((mean - n as f64).abs() < 1e-6, "{mean}");
    }

    /// Two draws of one distribution: the unbiased estimate averages to about zero (it is
    /// negative as often as positive); a shift makes it clearly positive.
    #[test]
    fn mmd_is_unbiased_at_zero_and_grows_with_a_shift() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let dim = 4;
        let mut draw = |shift: f32, n: usize| -> Vec<f32> {
            (0..n * dim)
                .map(|_| rng.random_range(-1.0f32..1.0) + shift)
                .collect()
        };
        let (a, b, c) = (draw(0.0, 400), draw(0.0, 400), draw(0.5, 400));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let (same, same_std) = kid(&a, &b, dim, 50, 100, &mut rng);
        let (shifted, _) = kid(&a, &c, dim, 50, 100, &mut rng);
        assert!(
            same.abs() < 3.0 * same_std / 50f64.sqrt() + 1e-3,
            "{same} {same_std}"
        );
        assert!(shifted > 10.0 * same_std, "{shifted} {same_std}");
    }
}
