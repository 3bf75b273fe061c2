//! The Fréchet distance between Gaussian fits of two clouds (the formula of FID, Heusel et al.
//! 2017, eq. 6, applied to whatever features are given):
//!
//!   d^2 = |mu_a - mu_b|^2 + tr(C_a) + tr(C_b) - 2 tr((C_a C_b)^(1/2)).
//!
//! pytorch-fid (`calculate_frechet_distance`) takes the last trace from scipy's `sqrtm` of
//! C_a C_b, adding 1e-6 I to both covariances when that square root is not finite. Here it is
//! the sum of the square roots of the eigenvalues of C_a C_b, from symmetric problems only
//! ([`crate::linalg::trace_sqrt_product`]), in f64: the same number where both are well
//! conditioned, and a finite one where a covariance is singular (fewer examples than
//! dimensions), without an offset.

use crate::linalg::{NoConvergence, gemm, trace_sqrt_product};

/// The mean and the (n - 1)-normalized covariance of a cloud of features (numpy's
/// `np.mean(act, axis=0)` and `np.cov(act, rowvar=False)`), in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    pub dim: usize,
    /// How many examples the moments were taken over (0 when read from a statistics file
    /// that does not say).
    pub count: usize,
    pub mu: Vec<f64>,
    /// Row-major dim x dim.
    pub sigma: Vec<f64>,
}

impl Moments {
    /// The moments of row-major `features`, `dim` wide. The covariance is summed in blocks of
    /// rows, each centered in f64 and multiplied by gemm, so 50,000 x 2048 features need no
    /// f64 copy of themselves.
    pub fn of(features: &[f32], dim: usize) -> Self {
        const ROWS: usize = 1024;
        assert!(
            dim > 0 && features.len().is_multiple_of(dim),
            "features must be n x dim"
        );
        let n = features.len() / dim;
        let mut mu = vec![0.0; dim];
        for row in features.chunks_exact(dim) {
            mu.iter_mut().zip(row).for_each(|(m, v)| *m += *v as f64);
        }
        mu.iter_mut().for_each(|m| *m /= n.max(1) as f64);
        let mut sigma = vec![0.0; dim * dim];
        for block in features.chunks(ROWS * dim) {
            let rows = block.len() / dim;
            let centered: Vec<f64> = block
                .chunks_exact(dim)
                .flat_map(|row| row.iter().zip(&mu).map(|(v, m)| *v as f64 - m))
                .collect();
            gemm(
                (dim, dim, rows),
                &mut sigma,
                1.0,
                &centered,
                [1, dim],
                &centered,
                [dim, 1],
                1.0,
            );
        }
        let norm = 1.0 / (n.max(2) - 1) as f64;
        sigma.iter_mut().for_each(|s| *s *= norm);
        Self {
            dim,
            count: n,
            mu,
            sigma,
        }
    }

    fn trace(&self) -> f64 {
        (0..self.dim).map(|i| self.sigma[i * self.dim + i]).sum()
    }
}

/// d^2 between two Gaussian fits of the same width.
pub fn frechet_distance_of(a: &Moments, b: &Moments) -> Result<f64, NoConvergence> {
    assert_eq!(a.dim, b.dim, "the two fits must have the same width");
    let mean_term: f64 = a.mu.iter().zip(&b.mu).map(|(x, y)| (x - y).powi(2)).sum();
    let cross = trace_sqrt_product(&a.sigma, &b.sigma, a.dim)?;
    Ok(mean_term + a.trace() + b.trace() - 2.0 * cross)
}

/// d^2 between the Gaussian fits of two row-major clouds of width `dim`.
pub fn frechet_distance(a: &[f32], b: &[f32], dim: usize) -> f64 {
    frechet_distance_of(&Moments::of(a, dim), &Moments::of(b, dim)).unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two 1-D Gaussians: d^2 = (m1 - m2)^2 + (s1 - s2)^2; and two 2-D Gaussians with
    /// covariances that do not commute, against the closed form of the 2 x 2 square root.
    #[test]
    fn matches_closed_forms() {
        let grid = |m: f32, s: f32| -> Vec<f32> {
            // A deterministic sample with mean m and (n - 1)-std s: +-s sqrt((n - 1) / n).
            let n = 1000;
            let k = s * ((n - 1) as f32 / n as f32).sqrt();
            (0..n)
                .map(|i| if i % 2 == 0 { m + k } else { m - k })
                .collect()
        };
        let d = frechet_distance(&grid(0.0, 1.0), &grid(3.0, 2.0), 1);
        assert!((d - (9.0 + 1.0)).abs() < 1e-4, "{d}");
        // For 2 x 2 P with positive eigenvalues, tr P^(1/2) = sqrt(tr P + 2 sqrt(det P)).
        let fit = |sigma: [f64; 4]| Moments {
            dim: 2,
            count: 0,
            mu: vec![0.0, 0.0],
            sigma: sigma.to_vec(),
        };
        let (a, b): ([f64; 4], [f64; 4]) = ([2.0, 1.0, 1.0, 2.0], [1.0, -0.5, -0.5, 3.0]);
        let p = [
            a[0] * b[0] + a[1] * b[2],
            a[0] * b[1] + a[1] * b[3],
            a[2] * b[0] + a[3] * b[2],
            a[2] * b[1] + a[3] * b[3],
        ];
        let det = p[0] * p[3] - p[1] * p[2];
        let cross = (p[0] + p[3] + 2.0 * det.sqrt()).sqrt();
        let want = 4.0 + 4.0 - 2.0 * cross;
        let got = frechet_distance_of(&fit(a), &fit(b)).unwrap();
        assert!((got - want).abs() < 1e-12, "{got} {want}");
    }
}
