//! Noise levels: the currency every solver trades in.
//!
//! A Gaussian perturbation x = alpha x_0 + sigma_vp eps is described by (alpha, sigma_vp), by its
//! log signal-to-noise ratio lambda = log(alpha^2 / sigma_vp^2), or, after dividing x by alpha
//! (the "variance-exploding" coordinates y = x / alpha of Karras et al. 2022, section 2), by one
//! number: [`Sigma`] = sigma_vp / alpha, with y = x_0 + sigma eps. Solvers step in sigma; a network
//! is told its own clock, which is a [`Timestep`] (a possibly fractional index into a discrete
//! chain, as diffusers' Euler and Heun schedulers pass) or a continuous SDE [`Time`] in [0, 1].
//! These are distinct types so that one cannot silently stand in for another.

use serde::{Deserialize, Serialize};

/// Karras et al.'s sigma: the noise-to-signal ratio sigma_vp / alpha. 0 is clean data.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct Sigma(pub f64);

/// A position on a discrete chain of T steps, in 0..=T-1; fractional between its steps.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct Timestep(pub f64);

/// Continuous time of an SDE (Song et al. 2021), in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct Time(pub f64);

/// What a network is told about the noise level of its input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Clock {
    Discrete(Timestep),
    Continuous(Time),
}

impl Clock {
    /// The number written into the network's time input.
    pub fn value(self) -> f64 {
        match self {
            Clock::Discrete(Timestep(t)) => t,
            Clock::Continuous(Time(t)) => t,
        }
    }
}

/// One point of a solver's grid: a noise level and the network's clock there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    pub sigma: Sigma,
    pub clock: Clock,
}

impl Sigma {
    /// The variance-preserving pair (alpha, sigma_vp) with alpha^2 + sigma_vp^2 = 1.
    pub fn alpha_sigma_vp(self) -> (f64, f64) {
        let alpha = 1.0 / (1.0 + self.0 * self.0).sqrt();
        (alpha, self.0 * alpha)
    }

    /// lambda = log(alpha^2 / sigma_vp^2) = -2 log sigma (Kingma et al. 2021's log-SNR).
    pub fn log_snr(self) -> f64 {
        -2.0 * self.0.ln()
    }

    pub fn from_log_snr(lambda: f64) -> Self {
        Sigma((-0.5 * lambda).exp())
    }

    /// sigma of a discrete chain's step with this alpha-bar: sqrt((1 - abar) / abar).
    pub fn from_alpha_cumprod(abar: f64) -> Self {
        Sigma(((1.0 - abar) / abar).sqrt())
    }
}

/// The sigmas of a discrete chain, one per timestep, increasing, and the two maps between a
/// sigma and a fractional timestep that diffusers' sigma schedulers use.
#[derive(Debug, Clone)]
pub struct SigmaTable {
    pub sigmas: Vec<f64>,
    log_sigmas: Vec<f64>,
}

impl SigmaTable {
    pub fn new(alphas_cumprod: &[f64]) -> Self {
        let sigmas: Vec<f64> = alphas_cumprod
            .iter()
            .map(|&a| Sigma::from_alpha_cumprod(a).0)
            .collect();
        let log_sigmas = sigmas.iter().map(|s| s.ln()).collect();
        Self { sigmas, log_sigmas }
    }

    /// The table diffusers' sigma schedulers build: betas rounded to float32, alpha-bars
    /// multiplied up in float32, sigma = ((1 - abar) / abar)^(1/2) and its log in float32.
    /// Its rounding is not negligible: 1 - abar cancels near t = 0 (sigma_0 is 8e-5 too large
    /// for DDPM's linear betas), which moves a Karras grid's sigmas by 3e-5 and its timesteps by
    /// up to 0.005. diffuse reproduces diffusers' schedulers with it; everything else uses the
    /// float64 table ([`Self::new`]).
    pub fn diffusers_f32(betas: &[f64]) -> Self {
        let mut abar = 1.0f32;
        let mut sigmas = Vec::with_capacity(betas.len());
        let mut log_sigmas = Vec::with_capacity(betas.len());
        for &b in betas {
            abar *= 1.0 - b as f32;
            let s = ((1.0 - abar) / abar).sqrt();
            sigmas.push(s as f64);
            log_sigmas.push(s.ln() as f64);
        }
        Self { sigmas, log_sigmas }
    }

    pub fn sigma_min(&self) -> Sigma {
        Sigma(self.sigmas[0])
    }

    pub fn sigma_max(&self) -> Sigma {
        Sigma(*self.sigmas.last().expect("a chain has at least one step"))
    }

    /// sigma at a fractional timestep, interpolated linearly in sigma (numpy's `interp`, as
    /// diffusers' `set_timesteps` does).
    pub fn sigma_at(&self, t: Timestep) -> Sigma {
        let last = self.sigmas.len() - 1;
        let t = t.0.clamp(0.0, last as f64);
        let low = (t.floor() as usize).min(last);
        let high = (low + 1).min(last);
        let w = t - low as f64;
        Sigma(self.sigmas[low] + w * (self.sigmas[high] - self.sigmas[low]))
    }

    /// The fractional timestep of a sigma, interpolated linearly in log sigma and clamped to the
    /// chain (diffusers' `_sigma_to_t`; k-diffusion's `DiscreteSchedule.sigma_to_t`).
    pub fn timestep_of(&self, sigma: Sigma) -> Timestep {
        let n = self.log_sigmas.len();
        if n == 1 {
            return Timestep(0.0);
        }
        let log_sigma = sigma.0.max(1e-10).ln();
        // The last index whose log sigma is at most this one, kept below n - 1.
        let low = self
            .log_sigmas
            .iter()
            .rposition(|&l| log_sigma - l >= 0.0)
            .unwrap_or(0)
            .min(n - 2);
        let (lo, hi) = (self.log_sigmas[low], self.log_sigmas[low + 1]);
        let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
        Timestep((1.0 - w) * low as f64 + w * (low + 1) as f64)
    }

    /// A level with the clock this chain's network expects.
    pub fn level(&self, sigma: Sigma) -> Level {
        Level {
            sigma,
            clock: Clock::Discrete(self.timestep_of(sigma)),
        }
    }
}

/// Where a process's noise levels meet a network: the network's clock at a sigma, and the
/// process's scale there. Every process here has x_t = alpha(t) x_0 + sigma_x(t) eps, so in
/// y = x / alpha the noise level is sigma = sigma_x / alpha, whatever the process: solvers step
/// in sigma, and a clock says what the network is told and how y becomes its x.
///
/// - a discrete variance-preserving chain ([`SigmaTable`]): a fractional timestep,
///   alpha = 1 / sqrt(1 + sigma^2), prior N(0, I);
/// - a score SDE (`crate::sde::Sde`): its continuous time t with sigma(t) = sigma, alpha =
///   mean(t), its prior (N(0, I) for VP and sub-VP, N(0, sigma_max^2 I) for VE).
pub trait NoiseClock {
    /// The level at `sigma`, with the clock the network expects there.
    fn level(&self, sigma: Sigma) -> Level;
    /// alpha at `sigma`: x = alpha y.
    fn alpha(&self, sigma: Sigma) -> f64;
    /// The standard deviation of the prior the process ends in, in x coordinates.
    fn prior_std(&self) -> f64;
    /// The scale of y at the first level of a solve from the prior: y = x / alpha with x drawn
    /// from the prior.
    fn init_sigma(&self, sigma_max: Sigma) -> f64 {
        self.prior_std() / self.alpha(sigma_max)
    }
}

impl NoiseClock for SigmaTable {
    fn level(&self, sigma: Sigma) -> Level {
        SigmaTable::level(self, sigma)
    }

    fn alpha(&self, sigma: Sigma) -> f64 {
        sigma.alpha_sigma_vp().0
    }

    fn prior_std(&self) -> f64 {
        1.0
    }

    /// sqrt(1 + sigma_max^2), the exact variance-preserving scale.
    fn init_sigma(&self, sigma_max: Sigma) -> f64 {
        (1.0 + sigma_max.0 * sigma_max.0).sqrt()
    }
}

/// What a network's time input counts. A network says which it reads
/// ([`crate::Denoiser::time_input`]), and every caller in the core checks that before passing its
/// clock ([`crate::model::check_time_input`]), so a continuous time is never read as a timestep, or back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeInput {
    /// Timesteps of a discrete chain of T steps (DDPM, diffusers): 0..T-1, fractional between
    /// the chain's steps for sigma solvers (see [`crate::level::Timestep`]).
    Timesteps,
    /// Continuous time of an SDE, t in [0, 1] (score_sde; see [`crate::level::Time`]).
    Continuous,
}

impl std::fmt::Display for TimeInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimeInput::Timesteps => "discrete timesteps",
            TimeInput::Continuous => "continuous time in [0, 1]",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScheduleConfig;

    #[test]
    fn sigma_and_timestep_maps_invert_each_other_on_the_chain() {
        let s = ScheduleConfig::default().build().unwrap();
        let table = SigmaTable::new(&s.alphas_cumprod);
        for t in [0usize, 1, 17, 500, 998, 999] {
            let sigma = table.sigma_at(Timestep(t as f64));
            assert!(
                (table.timestep_of(sigma).0 - t as f64).abs() < 1e-9,
                "t = {t}"
            );
        }
        // Between steps the two interpolations differ (linear in sigma vs in log sigma), but the
        // timestep stays inside its interval.
        let t = table.timestep_of(table.sigma_at(Timestep(10.5))).0;
        assert!(t > 10.0 && t < 11.0, "{t}");
        // Beyond the chain, clamped.
        assert_eq!(table.timestep_of(Sigma(1e-6)).0, 0.0);
        assert_eq!(table.timestep_of(Sigma(1e6)).0, 999.0);
    }

    #[test]
    fn vp_pair_and_log_snr_agree() {
        let s = Sigma(0.7);
        let (a, sv) = s.alpha_sigma_vp();
        assert!((a * a + sv * sv - 1.0).abs() < 1e-15);
        assert!((Sigma::from_log_snr(s.log_snr()).0 - 0.7).abs() < 1e-15);
        assert!((s.log_snr() - (a * a / (sv * sv)).ln()).abs() < 1e-12);
    }
}
