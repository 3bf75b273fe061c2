//! Noise-conditional score networks (NCSN: Song & Ermon 2019, "Generative modeling by
//! estimating gradients of the data distribution"; NCSNv2: Song & Ermon 2020, "Improved
//! techniques for training score-based generative models").
//!
//! Notation: sigma_1 > sigma_2 > ... > sigma_L the noise levels, a geometric sequence
//! ([`NoiseLevels`]); s_theta(x, sigma) the score network; z ~ N(0, I).
//!
//! - Training, denoising score matching (NCSN eq. 5-6) with lambda(sigma) = sigma^2:
//!   l(theta; sigma) = 1/2 E || sigma s_theta(x_0 + sigma z, sigma) + z ||^2, summed over
//!   dimensions, averaged over sigma ~ U{sigma_1..sigma_L}. With the network predicting the
//!   noise, s_theta = -f_theta / sigma (NCSNv2's 1 / sigma output scaling, Technique 4), the
//!   loss is 1/2 || f_theta - z ||^2 ([`dsm_loss`]).
//! - Sampling, annealed Langevin dynamics (NCSN Algorithm 1): for i = 1..L, with
//!   alpha_i = eps sigma_i^2 / sigma_L^2, T times
//!   x <- x + alpha_i / 2 s_theta(x, sigma_i) + sqrt(alpha_i) z;
//!   then NCSNv2's denoising step x <- x + sigma_L^2 s_theta(x, sigma_L) (Tweedie's formula:
//!   E[x_0 | x]) ([`annealed_langevin`]).
//! - Settings (NCSNv2): sigma_1 the largest pairwise distance of the data (Technique 1);
//!   the ratio gamma = sigma_{i-1} / sigma_i so that successive levels overlap (Technique 2,
//!   [`technique2_ratio`]); eps for T steps per level so that the last level's samples have
//!   the right variance (Technique 3, [`langevin_step_size`]).

use burn::tensor::Tensor;
use rand::Rng;

use crate::coef::{is_finite, randn};
use crate::error::CoreError;
use crate::gaussian::sum_per_example;

/// The noise levels sigma_1 > ... > sigma_L, geometric (equal ratios).
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseLevels {
    sigmas: Vec<f64>,
}

/// The largest ratio [`NoiseLevels::recommended`] gives. Technique 2 bounds the ratio in high
/// dimensions only (below about 10 dimensions successive levels always overlap); on 2-D point
/// clouds, measured: ratios of 1.35 and 1.17 (20 and 40 levels from 4 to 0.01) left the samples
/// at 1.7-2.1x the data-vs-data sliced Wasserstein distance at 20,000 points, 1.107 (60
/// levels) at 1.36-1.43x, over three seeds each.
pub const MAX_RATIO: f64 = 1.1;

impl NoiseLevels {
    /// `n` levels from `sigma_max` down to `sigma_min`, equally spaced in log sigma.
    pub fn geometric(sigma_max: f64, sigma_min: f64, n: usize) -> Result<Self, CoreError> {
        let bad = |why: &str| {
            Err(CoreError::InvalidSolver(format!(
                "noise levels: {why} (sigma_max {sigma_max}, sigma_min {sigma_min}, {n} levels)"
            )))
        };
        if !(sigma_min > 0.0 && sigma_max.is_finite() && sigma_max > sigma_min) {
            return bad("need 0 < sigma_min < sigma_max, finite");
        }
        if n < 2 {
            return bad("need at least 2 levels");
        }
        let (hi, lo) = (sigma_max.ln(), sigma_min.ln());
        let sigmas = (0..n)
            .map(|i| (hi + (lo - hi) * i as f64 / (n - 1) as f64).exp())
            .collect();
        Ok(Self { sigmas })
    }

    /// NCSNv2's settings for data of `dims` dimensions whose largest pairwise distance is
    /// `max_distance` (Technique 1: sigma_1 = that distance), down to `sigma_min`, with
    /// Technique 2's ratio, or [`MAX_RATIO`] where that is smaller or there is none.
    pub fn recommended(max_distance: f64, dims: usize, sigma_min: f64) -> Result<Self, CoreError> {
        let span = (max_distance / sigma_min).ln();
        let gamma = technique2_ratio(dims).unwrap_or(MAX_RATIO).min(MAX_RATIO);
        let n = (span / gamma.ln()).ceil() as usize + 1;
        Self::geometric(max_distance, sigma_min, n)
    }

    pub fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }

    pub fn len(&self) -> usize {
        self.sigmas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sigmas.is_empty()
    }

    pub fn sigma_max(&self) -> f64 {
        self.sigmas[0]
    }

    pub fn sigma_min(&self) -> f64 {
        self.sigmas[self.sigmas.len() - 1]
    }

    /// gamma = sigma_{i-1} / sigma_i.
    pub fn ratio(&self) -> f64 {
        self.sigmas[0] / self.sigmas[1]
    }

    /// The value a network is conditioned on at `sigma`: 999 (ln sigma - ln sigma_L) /
    /// (ln sigma_1 - ln sigma_L), so the levels spread evenly over [0, 999] (sigma_L at 0,
    /// sigma_1 at 999), where a DDPM chain's timesteps lie and the sinusoidal embedding resolves
    /// them. For the VE SDE on the same range it is 999 t.
    pub fn condition(&self, sigma: f64) -> f64 {
        let (lo, hi) = (self.sigma_min().ln(), self.sigma_max().ln());
        999.0 * (sigma.ln() - lo) / (hi - lo)
    }
}

/// The factor the network's input is scaled by at `sigma` when the data's standard deviation
/// is given: 1 / sqrt(sigma_data^2 + sigma^2), so that x = x_0 + sigma z reaches the network
/// with unit variance at every level (Karras et al. 2022's c_in; NCSN itself passes x as it
/// is, `None`).
pub fn input_scale(sigma: f64, sigma_data: Option<f64>) -> f64 {
    sigma_data.map_or(1.0, |s| 1.0 / (s * s + sigma * sigma).sqrt())
}

/// The standard normal CDF, by erfc (Numerical Recipes' Chebyshev fit, 1.2e-7 relative).
pub fn normal_cdf(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    if x >= 0.0 {
        1.0 - 0.5 * erfc
    } else {
        0.5 * erfc
    }
}

/// Technique 2: the largest ratio gamma = sigma_{i-1} / sigma_i for which
/// Phi(sqrt(2D)(gamma - 1) + 3 gamma) - Phi(sqrt(2D)(gamma - 1) - 3 gamma) is at least 1/2
/// (the shells where samples of two successive levels concentrate overlap). `None` where every
/// ratio keeps the overlap above 1/2 (low dimensions: below about 10).
pub fn technique2_ratio(dims: usize) -> Option<f64> {
    let root = (2.0 * dims as f64).sqrt();
    let overlap =
        |g: f64| normal_cdf(root * (g - 1.0) + 3.0 * g) - normal_cdf(root * (g - 1.0) - 3.0 * g);
    // The overlap falls from ~1 at gamma = 1 when sqrt(2D) > 3; find where it crosses 1/2.
    let (mut lo, mut hi) = (1.0, 1.0);
    while overlap(hi) >= 0.5 {
        hi = 1.0 + 2.0 * (hi - 1.0).max(1e-3);
        if hi > 1e6 {
            return None;
        }
    }
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if overlap(mid) >= 0.5 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(lo)
}

/// Technique 3, in Algorithm 1's convention (x <- x + alpha / 2 s + sqrt(alpha) z): the step
/// size eps for `steps` steps per level that brings samples entering a level with variance
/// (gamma sigma_i)^2 closest to sigma_i^2 when they leave it, for data at a point (the
/// paper's simplified model). One step multiplies x by r = 1 - eps / (2 sigma_L^2) and adds
/// variance alpha_i, so after T steps the variance over sigma_i^2 is
/// r^(2T) (gamma^2 - v) + v, with v = (eps / sigma_L^2) / (1 - r^2) the stationary ratio. v is
/// above 1 for every eps (Langevin's discretization bias), so the ratio cannot reach 1: as the
/// paper says, eps is chosen to bring it as close to 1 as it gets, its minimum over eps.
/// (NCSNv2's CIFAR-10 setting, T = 5 and 232 levels from 50 to 0.01, gives 1.2e-5 here, twice
/// the paper's 6.2e-6, which is for its x <- x + alpha s + sqrt(2 alpha) z.)
pub fn langevin_step_size(levels: &NoiseLevels, steps: usize) -> f64 {
    let (s2, gamma) = (levels.sigma_min().powi(2), levels.ratio());
    let ratio = |eps: f64| {
        let r = 1.0 - eps / (2.0 * s2);
        let v = (eps / s2) / (1.0 - r * r);
        r.powi(2 * steps as i32) * (gamma * gamma - v) + v
    };
    // Unimodal on (0, 2 sigma_L^2), where r runs from 1 to 0: golden-section search.
    let phi = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = (0.0, 2.0 * s2);
    for _ in 0..200 {
        let (c, d) = (b - phi * (b - a), a + phi * (b - a));
        if ratio(c) < ratio(d) {
            b = d;
        } else {
            a = c;
        }
    }
    0.5 * (a + b)
}

/// Denoising score matching per example, with the network predicting the noise:
/// 1/2 sum over dimensions of (f - z)^2 (see the module docs).
pub fn dsm_loss<const D: usize>(predicted_noise: Tensor<D>, z: Tensor<D>) -> Tensor<1> {
    sum_per_example((predicted_noise - z).powi_scalar(2)).mul_scalar(0.5)
}

/// NCSN Algorithm 1, with NCSNv2's final denoising step when `denoise`: from x (at the
/// first level's scale), `steps` Langevin steps at each level. `score(x, i)` is s_theta(x,
/// sigma_i); `observe(i, x)` sees x after each level's steps. Fails naming the level when x
/// stops being finite.
#[allow(clippy::too_many_arguments)]
pub fn annealed_langevin<const D: usize>(
    score: &mut dyn FnMut(Tensor<D>, usize) -> Result<Tensor<D>, CoreError>,
    levels: &NoiseLevels,
    steps: usize,
    eps: f64,
    mut x: Tensor<D>,
    rng: &mut impl Rng,
    denoise: bool,
    observe: &mut dyn FnMut(usize, &Tensor<D>),
) -> Result<Tensor<D>, CoreError> {
    let shape: [usize; D] = x.dims();
    let device = x.device();
    let last = levels.sigma_min();
    for (i, &sigma) in levels.sigmas().iter().enumerate() {
        let alpha = eps * (sigma / last).powi(2);
        for _ in 0..steps {
            let s = score(x.clone(), i)?;
            let z = randn(rng, shape, &device);
            x = x + s.mul_scalar((alpha / 2.0) as f32) + z.mul_scalar(alpha.sqrt() as f32);
        }
        if !is_finite(&x) {
            return Err(CoreError::NonFiniteAtSigma { step: i + 1, sigma });
        }
        observe(i, &x);
    }
    if denoise {
        let i = levels.len() - 1;
        x = x.clone() + score(x, i)?.mul_scalar((last * last) as f32);
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_geometric_and_conditioned_on_0_to_999() {
        let l = NoiseLevels::geometric(50.0, 0.01, 10).unwrap();
        assert_eq!(l.len(), 10);
        assert!((l.sigma_max() - 50.0).abs() < 1e-12 && (l.sigma_min() - 0.01).abs() < 1e-14);
        let r = l.ratio();
        assert!(
            l.sigmas()
                .windows(2)
                .all(|w| (w[0] / w[1] - r).abs() < 1e-9)
        );
        assert!((l.condition(50.0) - 999.0).abs() < 1e-9 && l.condition(0.01).abs() < 1e-9);
        assert!((l.condition(l.sigmas()[3]) - 999.0 * 6.0 / 9.0).abs() < 1e-9);
        assert!(NoiseLevels::geometric(1.0, 2.0, 10).is_err());
        assert!(NoiseLevels::geometric(1.0, 0.1, 1).is_err());
    }

    #[test]
    fn the_normal_cdf_matches_known_values() {
        for (x, p) in [
            (0.0, 0.5),
            (1.0, 0.841_344_746),
            (-1.96, 0.024_997_895),
            (3.0, 0.998_650_102),
        ] {
            assert!((normal_cdf(x) - p).abs() < 1e-7, "{x}");
        }
    }

    /// Technique 2 has no ratio in two dimensions, about 1.08 for MNIST's 784 and 1.04 for
    /// CIFAR-10's 3072, where the overlap is 1/2 (NCSNv2 used 232 levels from 50 to 0.01 for
    /// CIFAR-10, a ratio of 1.0376 whose overlap is 0.57; the rule gives 220).
    #[test]
    fn technique2_ratio_shrinks_with_dimension() {
        assert_eq!(technique2_ratio(2), None);
        let mnist = technique2_ratio(784).unwrap();
        assert!(mnist > 1.05 && mnist < 1.12, "{mnist}");
        let cifar = technique2_ratio(3072).unwrap();
        let root = (2.0f64 * 3072.0).sqrt();
        let overlap = |g: f64| {
            normal_cdf(root * (g - 1.0) + 3.0 * g) - normal_cdf(root * (g - 1.0) - 3.0 * g)
        };
        assert!((overlap(cifar) - 0.5).abs() < 1e-9 && (overlap(1.0376) - 0.57).abs() < 0.01);
        let l = NoiseLevels::recommended(50.0, 3072, 0.01).unwrap();
        assert_eq!(l.len(), 220);
        // Two dimensions: the ratio is capped at 1.1.
        let points = NoiseLevels::recommended(5.0, 2, 0.01).unwrap();
        assert_eq!(points.len(), 67);
        assert!(points.ratio() <= MAX_RATIO);
    }

    /// Technique 3 reproduces NCSNv2's CIFAR-10 step size (6.2e-6 in its convention, twice
    /// that in Algorithm 1's), and is the minimum of the variance ratio it describes, found by
    /// running the recursion.
    #[test]
    fn technique3_step_size_is_ncsnv2s() {
        let cifar = NoiseLevels::geometric(50.0, 0.01, 232).unwrap();
        let eps = langevin_step_size(&cifar, 5);
        assert!((eps / 2.0 / 6.2e-6 - 1.0).abs() < 0.05, "{eps}");
        let l = NoiseLevels::geometric(10.0, 0.01, 50).unwrap();
        let steps = 100;
        let s2 = l.sigma_min().powi(2);
        let ratio_after = |eps: f64| {
            let mut var = (l.ratio() * l.sigma_min()).powi(2);
            for _ in 0..steps {
                // x <- (1 - eps / (2 s2)) x + sqrt(eps) z for the score -x / s2 at the last level.
                var = (1.0 - eps / (2.0 * s2)).powi(2) * var + eps;
            }
            var / s2
        };
        let best = langevin_step_size(&l, steps);
        let at = ratio_after(best);
        assert!(at > 1.0 && at < 1.05, "{at}");
        assert!(ratio_after(best * 0.8) > at && ratio_after(best * 1.25) > at);
    }
}
