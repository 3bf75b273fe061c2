//! The forward process and its posterior (DDPM, Ho et al. 2020, section 2).
//!
//! - `q_step`:      x_t ~ q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)            (eq. 2)
//! - `q_sample`:    x_t ~ q(x_t | x_0)     = N(sqrt(abar_t) x_0, (1 - abar_t) I)              (eq. 4)
//! - `q_posterior`: q(x_{t-1} | x_t, x_0)  = N(mu-tilde_t(x_t, x_0), beta-tilde_t I)          (eqs. 6-7)
//!
//! `t` holds one 0-based timestep per batch item. Noise is passed in, never drawn here
//! (ARCHITECTURE.md, invariant 3).

use burn::tensor::Tensor;

use crate::coef::{Coef, per_item};
use crate::discrete::schedule::NoiseSchedule;

/// x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (DDPM eq. 4, reparameterized).
pub fn q_sample<const D: usize>(
    schedule: &NoiseSchedule,
    x0: Tensor<D>,
    t: &[usize],
    eps: Tensor<D>,
) -> Tensor<D> {
    let device = x0.device();
    let signal = Coef::gather(&schedule.sqrt_alphas_cumprod, t, &device);
    let noise = Coef::gather(&schedule.sqrt_one_minus_alphas_cumprod, t, &device);
    signal.mul(x0) + noise.mul(eps)
}

/// One forward step: x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps (DDPM eq. 2).
pub fn q_step<const D: usize>(
    schedule: &NoiseSchedule,
    x_prev: Tensor<D>,
    t: &[usize],
    eps: Tensor<D>,
) -> Tensor<D> {
    let device = x_prev.device();
    let sqrt_alpha: Vec<f64> = schedule.alphas.iter().map(|a| a.sqrt()).collect();
    let sqrt_beta: Vec<f64> = schedule.betas.iter().map(|b| b.sqrt()).collect();
    Coef::gather(&sqrt_alpha, t, &device).mul(x_prev)
        + Coef::gather(&sqrt_beta, t, &device).mul(eps)
}

/// The Gaussian q(x_{t-1} | x_t, x_0).
#[derive(Clone, Debug)]
pub struct Posterior<const D: usize> {
    /// mu-tilde_t = coef1 x_0 + coef2 x_t (DDPM eq. 7).
    pub mean: Tensor<D>,
    /// beta-tilde_t per item, shape [B, 1, ..., 1].
    pub variance: Tensor<D>,
    /// log beta-tilde_t, with t = 0 clipped to log beta-tilde_1 (beta-tilde_0 = 0).
    pub log_variance_clipped: Tensor<D>,
}

/// Mean and variance of the posterior q(x_{t-1} | x_t, x_0) (DDPM eqs. 6-7).
pub fn q_posterior<const D: usize>(
    schedule: &NoiseSchedule,
    x0: Tensor<D>,
    x_t: Tensor<D>,
    t: &[usize],
) -> Posterior<D> {
    let device = x0.device();
    let coef1 = Coef::gather(&schedule.posterior_mean_coef1, t, &device);
    let coef2 = Coef::gather(&schedule.posterior_mean_coef2, t, &device);
    Posterior {
        mean: coef1.mul(x0) + coef2.mul(x_t),
        variance: per_item(t, |ti| schedule.posterior_variance[ti], &device),
        log_variance_clipped: per_item(
            t,
            |ti| schedule.posterior_log_variance_clipped[ti],
            &device,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coef::randn;
    use crate::discrete::schedule::ScheduleConfig;
    use burn::tensor::{Device, TensorData};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn moments(x: Tensor<2>) -> (Vec<f32>, Vec<f32>) {
        let mean = x.clone().mean_dim(0);
        let var = (x - mean.clone()).powi_scalar(2).mean_dim(0);
        (
            mean.into_data().try_to_vec::<f32>().unwrap(),
            var.into_data().try_to_vec::<f32>().unwrap(),
        )
    }

    /// Iterating q(x_t | x_{t-1}) from x_0 gives the closed form q(x_t | x_0) in distribution:
    /// mean sqrt(abar_t) x_0 and variance 1 - abar_t, checked on 40k samples of a 2-D point.
    #[test]
    fn closed_form_matches_iterated_forward_process() {
        let device = Device::default();
        let sched = ScheduleConfig::default().build().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let n = 40_000;
        let x0 = Tensor::<2>::from_data(TensorData::new(vec![1.5f32, -0.7], [1, 2]), &device)
            .repeat_dim(0, n);
        let t_end = 300;
        let mut x = x0.clone();
        for t in 0..=t_end {
            x = q_step(&sched, x, &vec![t; n], randn(&mut rng, [n, 2], &device));
        }
        let closed = q_sample(
            &sched,
            x0,
            &vec![t_end; n],
            randn(&mut rng, [n, 2], &device),
        );
        let abar = sched.alphas_cumprod[t_end];
        let (m_iter, v_iter) = moments(x);
        let (m_closed, v_closed) = moments(closed);
        let se_mean = ((1.0 - abar) / n as f64).sqrt() as f32;
        for d in 0..2 {
            let expect = [1.5f32, -0.7][d] * abar.sqrt() as f32;
            assert!(
                (m_iter[d] - expect).abs() < 5.0 * se_mean,
                "{m_iter:?} vs {expect}"
            );
            assert!((m_closed[d] - expect).abs() < 5.0 * se_mean);
            // var of a sample variance of a Gaussian: 2 sigma^4 / n.
            let se_var = (2.0 / n as f64).sqrt() * (1.0 - abar);
            assert!(
                (v_iter[d] as f64 - (1.0 - abar)).abs() < 5.0 * se_var,
                "{v_iter:?}"
            );
            assert!((v_closed[d] as f64 - (1.0 - abar)).abs() < 5.0 * se_var);
        }
    }

    /// The posterior from Bayes' rule, computed numerically on a 1-D grid for x_{t-1}:
    /// p(x_{t-1} | x_t, x_0) ∝ q(x_t | x_{t-1}) q(x_{t-1} | x_0); its mean and variance must
    /// match mu-tilde and beta-tilde.
    #[test]
    fn posterior_matches_bayes_rule_numerically() {
        let device = Device::default();
        let sched = ScheduleConfig::default().build().unwrap();
        for (t, x0, xt) in [
            (1usize, 0.8f64, 0.5f64),
            (10, -1.2, 0.3),
            (500, 0.4, -1.1),
            (999, 1.0, 2.0),
        ] {
            let (ab_prev, beta) = (sched.alphas_cumprod_prev[t], sched.betas[t]);
            let log_gauss = |x: f64, m: f64, v: f64| -(x - m).powi(2) / (2.0 * v) - 0.5 * v.ln();
            let (lo, hi, n) = (-12.0, 12.0, 400_001);
            let h = (hi - lo) / (n - 1) as f64;
            let (mut z, mut m1, mut m2) = (0.0, 0.0, 0.0);
            for i in 0..n {
                let x = lo + h * i as f64;
                let w = (log_gauss(xt, (1.0 - beta).sqrt() * x, beta)
                    + log_gauss(x, ab_prev.sqrt() * x0, 1.0 - ab_prev))
                .exp();
                z += w;
                m1 += w * x;
                m2 += w * x * x;
            }
            let mean = m1 / z;
            let var = m2 / z - mean * mean;
            let post = q_posterior(
                &sched,
                Tensor::<2>::from_data(TensorData::new(vec![x0 as f32], [1, 1]), &device),
                Tensor::<2>::from_data(TensorData::new(vec![xt as f32], [1, 1]), &device),
                &[t],
            );
            let mu: Vec<f32> = post.mean.into_data().try_to_vec::<f32>().unwrap();
            let v: Vec<f32> = post.variance.into_data().try_to_vec::<f32>().unwrap();
            assert!(
                (mu[0] as f64 - mean).abs() < 1e-5,
                "t={t}: {} vs {mean}",
                mu[0]
            );
            assert!(
                (v[0] as f64 - var).abs() / var < 1e-4,
                "t={t}: {} vs {var}",
                v[0]
            );
        }
    }
}
