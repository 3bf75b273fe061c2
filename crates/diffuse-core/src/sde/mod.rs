//! The SDEs of Song et al. 2021 ("Score-based generative modeling through stochastic
//! differential equations"), section 3.4 and appendix B, as score_sde's `sde_lib.py` defines
//! them, on continuous time t in [0, 1]:
//!
//! - VP:     dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw,  beta(t) = beta_min + t (beta_max - beta_min)
//! - sub-VP: dx = -1/2 beta(t) x dt + sqrt(beta(t) (1 - exp(-2 int_0^t beta))) dw
//! - VE:     dx = sqrt(d[sigma^2(t)]/dt) dw,  sigma(t) = sigma_min (sigma_max / sigma_min)^t
//!
//! All three have a linear drift f(x, t) = f(t) x, so the perturbation kernel is
//! N(mean(t) x_0, std(t)^2 I) ([`Sde::marginal`]); the reverse SDE is
//! dx = [f(t) x - g(t)^2 score] dt + g(t) dw-bar (eq. 6) and the probability-flow ODE
//! dx = [f(t) x - 1/2 g(t)^2 score] dt (eq. 13) ([`Sde::reverse_drift`]). A discrete DDPM
//! chain is the VP SDE taken in N steps: beta_i = beta(i / (N - 1)) / N ([`Sde::discrete_betas`]).

pub mod ncsn;
pub mod pc;

use burn::tensor::{Device, Tensor};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::coef::randn;
use crate::discrete::schedule::linspace_at;
use crate::error::CoreError;
use crate::level::{Clock, Level, NoiseClock, Sigma, Time};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Sde {
    /// Variance preserving (score_sde's defaults: beta_min 0.1, beta_max 20).
    Vp { beta_min: f64, beta_max: f64 },
    /// Sub-variance preserving (same defaults): its variance stays below the VP one.
    SubVp { beta_min: f64, beta_max: f64 },
    /// Variance exploding (score_sde's defaults: sigma_min 0.01, sigma_max 50).
    Ve { sigma_min: f64, sigma_max: f64 },
}

impl Sde {
    pub fn vp() -> Self {
        Sde::Vp {
            beta_min: 0.1,
            beta_max: 20.0,
        }
    }
    pub fn sub_vp() -> Self {
        Sde::SubVp {
            beta_min: 0.1,
            beta_max: 20.0,
        }
    }
    pub fn ve() -> Self {
        Sde::Ve {
            sigma_min: 0.01,
            sigma_max: 50.0,
        }
    }

    pub fn validate(&self) -> Result<(), CoreError> {
        let ok = match *self {
            Sde::Vp { beta_min, beta_max } | Sde::SubVp { beta_min, beta_max } => {
                beta_min > 0.0 && beta_max >= beta_min && beta_max.is_finite()
            }
            Sde::Ve {
                sigma_min,
                sigma_max,
            } => sigma_min > 0.0 && sigma_max > sigma_min && sigma_max.is_finite(),
        };
        if ok {
            Ok(())
        } else {
            Err(CoreError::InvalidSolver(format!(
                "invalid SDE parameters: {self:?}"
            )))
        }
    }

    fn beta(b0: f64, b1: f64, t: f64) -> f64 {
        b0 + t * (b1 - b0)
    }

    /// log mean(t) = -1/4 t^2 (beta_max - beta_min) - 1/2 t beta_min (VP and sub-VP).
    fn log_mean(b0: f64, b1: f64, t: f64) -> f64 {
        -0.25 * t * t * (b1 - b0) - 0.5 * t * b0
    }

    /// (f(t), g(t)): drift f(t) x and diffusion g(t) of the forward SDE.
    pub fn coefficients(&self, Time(t): Time) -> (f64, f64) {
        match *self {
            Sde::Vp { beta_min, beta_max } => {
                let b = Self::beta(beta_min, beta_max, t);
                (-0.5 * b, b.sqrt())
            }
            Sde::SubVp { beta_min, beta_max } => {
                let b = Self::beta(beta_min, beta_max, t);
                let discount = 1.0 - (-2.0 * beta_min * t - (beta_max - beta_min) * t * t).exp();
                (-0.5 * b, (b * discount).sqrt())
            }
            Sde::Ve {
                sigma_min,
                sigma_max,
            } => {
                let sigma = sigma_min * (sigma_max / sigma_min).powf(t);
                (
                    0.0,
                    sigma * (2.0 * (sigma_max.ln() - sigma_min.ln())).sqrt(),
                )
            }
        }
    }

    /// (mean(t), std(t)) of the perturbation kernel p_0t(x_t | x_0) = N(mean x_0, std^2 I).
    pub fn marginal(&self, Time(t): Time) -> (f64, f64) {
        match *self {
            Sde::Vp { beta_min, beta_max } => {
                let lm = Self::log_mean(beta_min, beta_max, t);
                (lm.exp(), (1.0 - (2.0 * lm).exp()).sqrt())
            }
            Sde::SubVp { beta_min, beta_max } => {
                let lm = Self::log_mean(beta_min, beta_max, t);
                (lm.exp(), 1.0 - (2.0 * lm).exp())
            }
            Sde::Ve {
                sigma_min,
                sigma_max,
            } => (1.0, sigma_min * (sigma_max / sigma_min).powf(t)),
        }
    }

    /// The noise level at t: std / mean, the sigma of y = x / mean(t).
    pub fn sigma(&self, t: Time) -> Sigma {
        let (mean, std) = self.marginal(t);
        Sigma(std / mean)
    }

    /// The prior's standard deviation: N(0, I) for VP and sub-VP, N(0, sigma_max^2 I) for VE.
    pub fn prior_std(&self) -> f64 {
        match *self {
            Sde::Ve { sigma_max, .. } => sigma_max,
            _ => 1.0,
        }
    }

    pub fn prior_sample<const D: usize>(
        &self,
        rng: &mut impl Rng,
        shape: [usize; D],
        device: &Device,
    ) -> Tensor<D> {
        randn(rng, shape, device).mul_scalar(self.prior_std() as f32)
    }

    /// log N(z; 0, prior_std^2 I) per item, summed over all but the first dimension.
    pub fn prior_logp<const D: usize>(&self, z: Tensor<D>) -> Vec<f64> {
        let dims = z.dims();
        let (batch, n) = (dims[0], dims[1..].iter().product::<usize>());
        let var = self.prior_std().powi(2);
        let sq: Vec<f64> = z
            .clone()
            .mul(z)
            .reshape([batch, n])
            .sum_dim(1)
            .into_data()
            .convert::<f64>()
            .try_to_vec()
            .expect("float");
        sq.iter()
            .map(|s| -0.5 * n as f64 * (2.0 * std::f64::consts::PI * var).ln() - s / (2.0 * var))
            .collect()
    }

    /// The reverse-time drift from the score: f(t) x - g(t)^2 score (the reverse SDE, eq. 6) or
    /// f(t) x - 1/2 g(t)^2 score (the probability-flow ODE, eq. 13). The reverse SDE's diffusion
    /// is g(t); the ODE has none.
    pub fn reverse_drift<const D: usize>(
        &self,
        x: Tensor<D>,
        t: Time,
        score: Tensor<D>,
        probability_flow: bool,
    ) -> Tensor<D> {
        let (f, g) = self.coefficients(t);
        let weight = if probability_flow { 0.5 } else { 1.0 };
        x.mul_scalar(f as f32) - score.mul_scalar((weight * g * g) as f32)
    }

    /// The time at which the noise level std / mean is `sigma` (the inverse of [`Sde::sigma`]).
    /// VE: sigma = sigma_min (sigma_max / sigma_min)^t. VP: mean^2 = 1 / (1 + sigma^2).
    /// sub-VP: sigma = (1 - mean^2) / mean, so log mean = -asinh(sigma / 2). VP and sub-VP then
    /// solve 1/4 t^2 (beta_max - beta_min) + 1/2 t beta_min = -log mean for t >= 0.
    pub fn time_of(&self, Sigma(sigma): Sigma) -> Time {
        let (b0, b1, neg_log_mean) = match *self {
            Sde::Ve {
                sigma_min,
                sigma_max,
            } => return Time((sigma / sigma_min).ln() / (sigma_max / sigma_min).ln()),
            Sde::Vp { beta_min, beta_max } => (beta_min, beta_max, 0.5 * (sigma * sigma).ln_1p()),
            Sde::SubVp { beta_min, beta_max } => (beta_min, beta_max, (0.5 * sigma).asinh()),
        };
        // a t^2 + b t = c with a, b, c >= 0; the root in the form that does not cancel.
        let (a, b, c) = (0.25 * (b1 - b0), 0.5 * b0, neg_log_mean);
        Time(2.0 * c / (b + (b * b + 4.0 * a * c).sqrt()))
    }

    /// The factor a network's input is scaled by at time t when the data's standard deviation
    /// is `sigma_data`: 1 / sqrt(mean^2 sigma_data^2 + std^2), so that x_t = mean x_0 + std z
    /// reaches the network with unit variance (Karras et al. 2022's c_in); 1 when unset.
    /// For VE and NCSN's levels this is [`ncsn::input_scale`]; for VP with sigma_data = 1 it is 1.
    pub fn input_scale(&self, t: Time, sigma_data: Option<f64>) -> f64 {
        let Some(sd) = sigma_data else { return 1.0 };
        let (mean, std) = self.marginal(t);
        1.0 / ((mean * sd).powi(2) + std * std).sqrt()
    }

    /// The forward SDE taken in N steps at time t (score_sde's `SDE.discretize`): x_{i+1} =
    /// x_i + f + G z with f = `f_scale` x_i. VP: DDPM's chain, f = (sqrt(1 - beta_i) - 1) x,
    /// G = sqrt(beta_i) with i = floor(t (N - 1)); VE: SMLD's, f = 0, G = sqrt(sigma_i^2 -
    /// sigma_{i-1}^2) over N geometric sigmas (sigma_{-1} = 0); sub-VP: Euler-Maruyama,
    /// f = f(t) x / N, G = g(t) / sqrt(N). Returns (f_scale, G).
    pub fn discretize(&self, t: Time, n: usize) -> (f64, f64) {
        let i = Self::step_index(t, n);
        match *self {
            Sde::Vp { beta_min, beta_max } => {
                let beta = Self::discrete_beta(beta_min, beta_max, n, i);
                ((1.0 - beta).sqrt() - 1.0, beta.sqrt())
            }
            Sde::Ve {
                sigma_min,
                sigma_max,
            } => {
                let sigma = |i| linspace_at(sigma_min.ln(), sigma_max.ln(), n, i).exp();
                let previous = if i == 0 { 0.0 } else { sigma(i - 1) };
                (0.0, (sigma(i) * sigma(i) - previous * previous).sqrt())
            }
            Sde::SubVp { .. } => {
                let (f, g) = self.coefficients(t);
                (f / n as f64, g / (n as f64).sqrt())
            }
        }
    }

    /// The chain step i = floor(t (N - 1)) that score_sde's discrete SDEs read at time t.
    fn step_index(Time(t): Time, n: usize) -> usize {
        ((t * (n - 1) as f64).floor().max(0.0) as usize).min(n - 1)
    }

    /// The i-th of VP's N betas ([`Sde::discrete_betas`]), alone.
    fn discrete_beta(beta_min: f64, beta_max: f64, n: usize, i: usize) -> f64 {
        linspace_at(beta_min / n as f64, beta_max / n as f64, n, i)
    }

    /// An error when N steps cannot discretize this SDE: VP's chain (and the corrector's alphas
    /// of VP and sub-VP) needs beta_i = beta(t) / N below 1, so N > beta_max (score_sde gives
    /// NaN there).
    pub fn check_steps(&self, n: usize) -> Result<(), CoreError> {
        match *self {
            Sde::Vp { beta_max, .. } | Sde::SubVp { beta_max, .. } if n as f64 <= beta_max => {
                Err(CoreError::InvalidSolver(format!(
                    "{n} steps are too few for this SDE: its discrete betas beta_max / N = {:.3} must stay below 1 (take more than {beta_max} steps)",
                    beta_max / n as f64
                )))
            }
            _ => Ok(()),
        }
    }

    /// The Langevin corrector's alpha at time t (score_sde's `LangevinCorrector`): the VP
    /// chain's 1 - beta_i for VP and sub-VP (whose betas are VP's), 1 for VE.
    pub fn corrector_alpha(&self, t: Time, n: usize) -> f64 {
        match *self {
            Sde::Vp { beta_min, beta_max } | Sde::SubVp { beta_min, beta_max } => {
                1.0 - Self::discrete_beta(beta_min, beta_max, n, Self::step_index(t, n))
            }
            Sde::Ve { .. } => 1.0,
        }
    }

    /// The VP SDE in N steps: DDPM's betas, beta_i = (beta_min + i/(N-1) (beta_max - beta_min)) / N
    /// (score_sde's `VPSDE.discrete_betas`; 0.1 and 20 with N = 1000 give DDPM's 1e-4 to 0.02).
    pub fn discrete_betas(&self, n: usize) -> Option<Vec<f64>> {
        match *self {
            Sde::Vp { beta_min, beta_max } => Some(crate::discrete::schedule::linspace(
                beta_min / n as f64,
                beta_max / n as f64,
                n,
            )),
            _ => None,
        }
    }
}

/// A score SDE as solvers see it: the network is told t, with sigma(t) = sigma.
impl NoiseClock for Sde {
    fn level(&self, sigma: Sigma) -> Level {
        Level {
            sigma,
            clock: Clock::Continuous(self.time_of(sigma)),
        }
    }

    fn alpha(&self, sigma: Sigma) -> f64 {
        self.marginal(self.time_of(sigma)).0
    }

    fn prior_std(&self) -> f64 {
        Sde::prior_std(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScheduleConfig;

    #[test]
    fn vp_in_a_thousand_steps_is_ddpm() {
        let betas = Sde::vp().discrete_betas(1000).unwrap();
        let ddpm = ScheduleConfig::default().betas().unwrap();
        for (a, b) in betas.iter().zip(&ddpm) {
            assert!((a - b).abs() < 1e-15);
        }
        // And its marginal matches the chain's alpha-bar at t = (i + 1) / N to first order in 1/N.
        let s = ScheduleConfig::default().build().unwrap();
        let (mean, _) = Sde::vp().marginal(Time(0.5));
        assert!((mean * mean / s.alphas_cumprod[499] - 1.0).abs() < 0.01);
    }

    #[test]
    fn time_of_inverts_sigma() {
        for sde in [Sde::vp(), Sde::sub_vp(), Sde::ve()] {
            for t in [1e-5, 1e-3, 0.1, 0.5, 0.9, 1.0] {
                let back = sde.time_of(sde.sigma(Time(t))).0;
                assert!(
                    (back - t).abs() < 1e-9 * t.max(1e-3),
                    "{sde:?} t={t}: {back}"
                );
            }
        }
    }

    /// An SDE as a clock: the level at sigma(t) tells the network t, alpha is mean(t), and a
    /// solve from the prior starts at prior_std / mean(1) in y; VP's chain needs N > beta_max.
    #[test]
    fn an_sde_is_a_noise_clock() {
        for sde in [Sde::vp(), Sde::sub_vp(), Sde::ve()] {
            let t = Time(0.3);
            let level = NoiseClock::level(&sde, sde.sigma(t));
            let Clock::Continuous(back) = level.clock else {
                panic!("{sde:?}: a discrete clock");
            };
            assert!((back.0 - 0.3).abs() < 1e-12, "{sde:?}: {back:?}");
            assert!((sde.alpha(sde.sigma(t)) - sde.marginal(t).0).abs() < 1e-12);
            let init = sde.init_sigma(sde.sigma(Time(1.0)));
            assert!((init - Sde::prior_std(&sde) / sde.marginal(Time(1.0)).0).abs() < 1e-9);
        }
        assert!(Sde::vp().check_steps(20).is_err() && Sde::vp().check_steps(21).is_ok());
        assert!(Sde::sub_vp().check_steps(10).is_err() && Sde::ve().check_steps(2).is_ok());
    }

    /// d/dt var(t) = 2 f var + g^2 for the kernel's variance (x_0 = 0), by central differences.
    #[test]
    fn marginals_solve_the_variance_ode() {
        for sde in [Sde::vp(), Sde::sub_vp(), Sde::ve()] {
            for t in [0.1, 0.5, 0.9] {
                let var = |t: f64| sde.marginal(Time(t)).1.powi(2);
                let h = 1e-5;
                let dvar = (var(t + h) - var(t - h)) / (2.0 * h);
                let (f, g) = sde.coefficients(Time(t));
                let rhs = 2.0 * f * var(t) + g * g;
                assert!(
                    (dvar - rhs).abs() < 1e-5 * rhs.abs().max(1.0),
                    "{sde:?} t={t}: {dvar} vs {rhs}"
                );
            }
        }
    }
}
