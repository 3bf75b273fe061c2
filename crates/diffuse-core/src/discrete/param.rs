//! Parameterizations: what the network predicts, and the conversions between them, written once.
//!
//! With x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, write a = sqrt(abar_t), s = sqrt(1 - abar_t):
//! - eps prediction (DDPM eq. 11):           x_0 = (x_t - s eps) / a
//! - x_0 prediction (diffusers' "sample"):   eps = (x_t - a x_0) / s
//! - v prediction (Salimans & Ho 2022, section 4): v = a eps - s x_0, so x_0 = a x_t - s v and
//!   eps = s x_t + a v.
//! - mean prediction (DDPM Table 2's baseline): the network outputs mu-tilde_t = c1 x_0 + c2 x_t,
//!   the posterior mean of the full chain (eq. 7), so x_0 = (mu - c2 x_t) / c1.

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::coef::Coef;
use crate::discrete::schedule::NoiseSchedule;

/// What the denoiser outputs. Serialized with diffusers' `prediction_type` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Prediction {
    /// The noise eps (DDPM's choice, section 3.2).
    #[default]
    Epsilon,
    /// The clean sample x_0.
    Sample,
    /// The velocity v = sqrt(abar) eps - sqrt(1 - abar) x_0.
    VPrediction,
    /// The posterior mean mu-tilde_t(x_t, x_0) (DDPM Table 2's "mu-tilde prediction"). Not a
    /// diffusers `prediction_type`: pipelines saved with it load in diffuse only.
    Mean,
}

/// sqrt(abar_t) and sqrt(1 - abar_t), and the full chain's posterior-mean coefficients at t,
/// broadcastable over x_t.
#[derive(Clone, Debug)]
pub struct NoiseLevel<const D: usize> {
    pub signal: Coef<D>,
    pub noise: Coef<D>,
    /// mu-tilde_t = mean_x0 x_0 + mean_xt x_t (DDPM eq. 7).
    pub mean_x0: Coef<D>,
    pub mean_xt: Coef<D>,
}

impl<const D: usize> NoiseLevel<D> {
    /// One level for the whole batch, at timestep `t` of the chain with these alpha-bars.
    pub fn from_chain(alphas_cumprod: &[f64], t: usize) -> Self {
        let abar = alphas_cumprod[t];
        let abar_prev = if t == 0 { 1.0 } else { alphas_cumprod[t - 1] };
        let alpha = abar / abar_prev;
        Self {
            signal: Coef::Scalar(abar.sqrt()),
            noise: Coef::Scalar((1.0 - abar).sqrt()),
            mean_x0: Coef::Scalar(abar_prev.sqrt() * (1.0 - alpha) / (1.0 - abar)),
            mean_xt: Coef::Scalar(alpha.sqrt() * (1.0 - abar_prev) / (1.0 - abar)),
        }
    }

    /// One level per batch item, at timesteps `t`.
    pub fn at(schedule: &NoiseSchedule, t: &[usize], device: &Device) -> Self {
        Self {
            signal: Coef::gather(&schedule.sqrt_alphas_cumprod, t, device),
            noise: Coef::gather(&schedule.sqrt_one_minus_alphas_cumprod, t, device),
            mean_x0: Coef::gather(&schedule.posterior_mean_coef1, t, device),
            mean_xt: Coef::gather(&schedule.posterior_mean_coef2, t, device),
        }
    }

    pub fn x0_from_mean(&self, x_t: Tensor<D>, mean: Tensor<D>) -> Tensor<D> {
        self.mean_x0.div(mean - self.mean_xt.mul(x_t))
    }

    pub fn x0_from_eps(&self, x_t: Tensor<D>, eps: Tensor<D>) -> Tensor<D> {
        self.signal.div(x_t - self.noise.mul(eps))
    }

    pub fn eps_from_x0(&self, x_t: Tensor<D>, x0: Tensor<D>) -> Tensor<D> {
        self.noise.div(x_t - self.signal.mul(x0))
    }

    pub fn v_from(&self, x0: Tensor<D>, eps: Tensor<D>) -> Tensor<D> {
        self.signal.mul(eps) - self.noise.mul(x0)
    }

    pub fn x0_from_v(&self, x_t: Tensor<D>, v: Tensor<D>) -> Tensor<D> {
        self.signal.mul(x_t) - self.noise.mul(v)
    }

    pub fn eps_from_v(&self, x_t: Tensor<D>, v: Tensor<D>) -> Tensor<D> {
        self.noise.mul(x_t) + self.signal.mul(v)
    }
}

impl Prediction {
    /// (x_0, eps) implied by the network output at x_t.
    pub fn split<const D: usize>(
        self,
        output: Tensor<D>,
        x_t: Tensor<D>,
        level: &NoiseLevel<D>,
    ) -> (Tensor<D>, Tensor<D>) {
        match self {
            Prediction::Epsilon => (level.x0_from_eps(x_t, output.clone()), output),
            Prediction::Sample => (output.clone(), level.eps_from_x0(x_t, output)),
            Prediction::VPrediction => (
                level.x0_from_v(x_t.clone(), output.clone()),
                level.eps_from_v(x_t, output),
            ),
            Prediction::Mean => {
                let x0 = level.x0_from_mean(x_t.clone(), output);
                (x0.clone(), level.eps_from_x0(x_t, x0))
            }
        }
    }

    /// The regression target for this parameterization, given the x_0 and eps that made x_t.
    pub fn target<const D: usize>(
        self,
        x0: Tensor<D>,
        eps: Tensor<D>,
        level: &NoiseLevel<D>,
    ) -> Tensor<D> {
        match self {
            Prediction::Epsilon => eps,
            Prediction::Sample => x0,
            Prediction::VPrediction => level.v_from(x0, eps),
            Prediction::Mean => {
                let x_t = level.signal.mul(x0.clone()) + level.noise.mul(eps);
                level.mean_x0.mul(x0) + level.mean_xt.mul(x_t)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coef::randn;
    use crate::discrete::schedule::ScheduleConfig;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn max_abs(a: Tensor<2>, b: Tensor<2>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    /// eps -> x_0 -> eps, and every parameterization's target splits back into (x_0, eps).
    #[test]
    fn conversions_round_trip() {
        let device = Device::default();
        let sched = ScheduleConfig::default().build().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let t = [0usize, 1, 250, 500, 900, 998];
        let x0 = randn(&mut rng, [6, 3], &device);
        let eps = randn(&mut rng, [6, 3], &device);
        let level = NoiseLevel::at(&sched, &t, &device);
        let x_t = crate::discrete::process::q_sample(&sched, x0.clone(), &t, eps.clone());
        let x0_back = level.x0_from_eps(x_t.clone(), eps.clone());
        let eps_back = level.eps_from_x0(x_t.clone(), x0_back);
        assert!(max_abs(eps_back, eps.clone()) < 1e-3);
        for p in [
            Prediction::Epsilon,
            Prediction::Sample,
            Prediction::VPrediction,
            Prediction::Mean,
        ] {
            let target = p.target(x0.clone(), eps.clone(), &level);
            let (x0_hat, eps_hat) = p.split(target, x_t.clone(), &level);
            // Mean prediction recovers x_0 by dividing by c1_t, which is 1.8e-4 at t = 900 (f32
            // error grows 5000x: the reason DDPM found mu prediction hard): compare t <= 500.
            let rows = if p == Prediction::Mean { 4 } else { 6 };
            let (x0_hat, eps_hat) = (x0_hat.narrow(0, 0, rows), eps_hat.narrow(0, 0, rows));
            let (x0_ref, eps_ref) = (
                x0.clone().narrow(0, 0, rows),
                eps.clone().narrow(0, 0, rows),
            );
            // eps_from_x0 divides by sqrt(1 - abar_0) = 0.01 at t = 0: f32 error grows 100x there.
            assert!(max_abs(x0_hat, x0_ref) < 2e-4, "{p:?}");
            assert!(max_abs(eps_hat, eps_ref) < 5e-3, "{p:?}");
        }
    }
}
