//! Noise schedules: beta_t for t = 0..T-1, and everything derived from it, in f64.
//!
//! Notation (DDPM, Ho et al. 2020, section 2; diffusers' names in brackets):
//! - `betas[t]`            beta_t, the variance added by forward step t
//! - `alphas[t]`           alpha_t = 1 - beta_t
//! - `alphas_cumprod[t]`   alpha-bar_t = prod_{s <= t} alpha_s  (eq. 4: q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I))
//! - `alphas_cumprod_prev` alpha-bar_{t-1}, with alpha-bar_{-1} = 1
//! - `posterior_variance`  beta-tilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t   (eq. 7)
//! - `posterior_mean_coef1/2` the coefficients of x_0 and x_t in mu-tilde_t    (eq. 7)
//!
//! Indices are 0-based as in diffusers and improved-diffusion: `t = 0` is the first noising step.
//! The arrays are computed once on the host in f64 and converted to the tensor dtype only where
//! used (improved-diffusion's `gaussian_diffusion.py` does the same "for accuracy").

use serde::{Deserialize, Serialize};

use crate::error::CoreError;

/// The shape of beta_t over t. Names and formulas follow diffusers' `DDPMScheduler`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    /// beta_t evenly spaced from `beta_start` to `beta_end` (DDPM: 1e-4 to 0.02).
    Linear,
    /// sqrt(beta_t) evenly spaced from sqrt(`beta_start`) to sqrt(`beta_end`) (latent diffusion).
    ScaledLinear,
    /// The cosine schedule of improved DDPM (Nichol & Dhariwal 2021, eq. 17) with s = 0.008 and
    /// beta capped at 0.999; ignores `beta_start`/`beta_end`.
    #[serde(rename = "squaredcos_cap_v2")]
    SquaredCosCapV2,
    /// GeoDiff's sigmoid schedule: sigmoid(linspace(-6, 6)) scaled into [`beta_start`, `beta_end`].
    Sigmoid,
}

/// How to build a [`NoiseSchedule`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// T, the number of diffusion steps.
    pub num_train_timesteps: usize,
    pub beta_schedule: BetaSchedule,
    pub beta_start: f64,
    pub beta_end: f64,
}

impl Default for ScheduleConfig {
    /// DDPM (Ho et al. 2020, section 4): T = 1000, betas linear from 1e-4 to 0.02.
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_schedule: BetaSchedule::Linear,
            beta_start: 1e-4,
            beta_end: 0.02,
        }
    }
}

/// Terminal alpha-bar above which sampling from N(0, I) is a poor start: at 1e-2 the data still
/// carries 10% of its amplitude at t = T-1. DDPM's linear schedule ends at 4.0e-5.
pub const TERMINAL_ALPHA_CUMPROD_WARN: f64 = 1e-2;

/// A built schedule: betas and every coefficient derived from them, in f64.
#[derive(Debug, Clone)]
pub struct NoiseSchedule {
    pub config: ScheduleConfig,
    pub betas: Vec<f64>,
    pub alphas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
    pub alphas_cumprod_prev: Vec<f64>,
    pub sqrt_alphas_cumprod: Vec<f64>,
    pub sqrt_one_minus_alphas_cumprod: Vec<f64>,
    /// beta-tilde_t (DDPM eq. 7). Zero at t = 0.
    pub posterior_variance: Vec<f64>,
    /// log beta-tilde_t with the t = 0 entry replaced by beta-tilde_1, since beta-tilde_0 = 0
    /// (improved-diffusion's `posterior_log_variance_clipped`).
    pub posterior_log_variance_clipped: Vec<f64>,
    pub posterior_mean_coef1: Vec<f64>,
    pub posterior_mean_coef2: Vec<f64>,
}

/// The most training timesteps a schedule may have: far above any published model (DDPM 1000,
/// diffusers at most a few thousand), low enough that its coefficients fit in memory.
pub const MAX_TIMESTEPS: usize = 100_000;

impl ScheduleConfig {
    /// The raw betas, validated.
    pub fn betas(&self) -> Result<Vec<f64>, CoreError> {
        let t_max = self.num_train_timesteps;
        if t_max == 0 {
            return Err(CoreError::ZeroTimesteps);
        }
        if t_max > MAX_TIMESTEPS {
            return Err(CoreError::TooManyTimesteps {
                value: t_max,
                max: MAX_TIMESTEPS,
            });
        }
        let (b0, b1) = (self.beta_start, self.beta_end);
        if self.beta_schedule != BetaSchedule::SquaredCosCapV2 {
            for (name, value) in [("beta_start", b0), ("beta_end", b1)] {
                if !(value > 0.0 && value < 1.0) {
                    return Err(CoreError::InvalidBetaParameter { name, value });
                }
            }
            if b0 > b1 {
                return Err(CoreError::BetaStartAfterEnd { start: b0, end: b1 });
            }
        }
        let betas = match self.beta_schedule {
            BetaSchedule::Linear => linspace(b0, b1, t_max),
            BetaSchedule::ScaledLinear => linspace(b0.sqrt(), b1.sqrt(), t_max)
                .into_iter()
                .map(|b| b * b)
                .collect(),
            BetaSchedule::SquaredCosCapV2 => betas_for_alpha_bar(t_max, 0.999, |t| {
                ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                    .cos()
                    .powi(2)
            }),
            BetaSchedule::Sigmoid => linspace(-6.0, 6.0, t_max)
                .into_iter()
                .map(|x| sigmoid(x) * (b1 - b0) + b0)
                .collect(),
        };
        for (t, &value) in betas.iter().enumerate() {
            if !(value > 0.0 && value < 1.0) {
                return Err(CoreError::InvalidBeta { t, value });
            }
        }
        Ok(betas)
    }

    /// Validates the config and computes the schedule.
    pub fn build(&self) -> Result<NoiseSchedule, CoreError> {
        NoiseSchedule::from_betas(self.clone(), self.betas()?)
    }
}

impl NoiseSchedule {
    /// Builds every derived coefficient from explicit betas (e.g. diffusers' `trained_betas`).
    pub fn from_betas(config: ScheduleConfig, betas: Vec<f64>) -> Result<Self, CoreError> {
        if betas.is_empty() {
            return Err(CoreError::ZeroTimesteps);
        }
        if let Some((t, &value)) = betas
            .iter()
            .enumerate()
            .find(|(_, b)| !(**b > 0.0 && **b < 1.0))
        {
            return Err(CoreError::InvalidBeta { t, value });
        }
        let alphas: Vec<f64> = betas.iter().map(|b| 1.0 - b).collect();
        let mut alphas_cumprod = Vec::with_capacity(alphas.len());
        let mut acc = 1.0;
        for a in &alphas {
            acc *= a;
            alphas_cumprod.push(acc);
        }
        check_float32(&alphas_cumprod)?;
        let alphas_cumprod_prev: Vec<f64> = std::iter::once(1.0)
            .chain(alphas_cumprod[..alphas_cumprod.len() - 1].iter().copied())
            .collect();
        let zip = |f: &dyn Fn(usize) -> f64| (0..betas.len()).map(f).collect::<Vec<f64>>();
        let posterior_variance =
            zip(&|t| betas[t] * (1.0 - alphas_cumprod_prev[t]) / (1.0 - alphas_cumprod[t]));
        let posterior_log_variance_clipped = zip(&|t| {
            let v = if t == 0 && betas.len() > 1 {
                posterior_variance[1]
            } else {
                posterior_variance[t]
            };
            // With T = 1 there is no beta-tilde_1; fall back to beta_0 (the `fixed_large` choice).
            if v > 0.0 { v.ln() } else { betas[t].ln() }
        });
        Ok(Self {
            sqrt_alphas_cumprod: alphas_cumprod.iter().map(|a| a.sqrt()).collect(),
            sqrt_one_minus_alphas_cumprod: alphas_cumprod
                .iter()
                .map(|a| (1.0 - a).sqrt())
                .collect(),
            posterior_mean_coef1: zip(&|t| {
                betas[t] * alphas_cumprod_prev[t].sqrt() / (1.0 - alphas_cumprod[t])
            }),
            posterior_mean_coef2: zip(&|t| {
                (1.0 - alphas_cumprod_prev[t]) * alphas[t].sqrt() / (1.0 - alphas_cumprod[t])
            }),
            config,
            betas,
            alphas,
            alphas_cumprod,
            alphas_cumprod_prev,
            posterior_variance,
            posterior_log_variance_clipped,
        })
    }

    /// T, the number of diffusion steps.
    pub fn num_timesteps(&self) -> usize {
        self.betas.len()
    }

    /// alpha-bar at t = T-1: how much signal is left where sampling starts.
    pub fn terminal_alpha_cumprod(&self) -> f64 {
        *self.alphas_cumprod.last().expect("schedule is non-empty")
    }

    /// A warning when sampling from N(0, I) would be a poor start (see [`TERMINAL_ALPHA_CUMPROD_WARN`]).
    pub fn terminal_warning(&self) -> Option<String> {
        let terminal = self.terminal_alpha_cumprod();
        (terminal > TERMINAL_ALPHA_CUMPROD_WARN).then(|| {
            format!(
                "the schedule ends at alphas_cumprod[T-1] = {terminal:.4} (signal amplitude {:.3}); \
                 samplers start from N(0, I), which assumes it is near 0. Use more timesteps or \
                 larger betas.",
                terminal.sqrt()
            )
        })
    }
}

/// Every alpha-bar_t must stay a normal float32 below 1: the samplers compute in float32 (the
/// sigma tables of Euler and Heun as diffusers does, `(1 - abar) / abar` in float32), so an
/// alpha-bar that rounds to 0 (a beta_end of 0.5 over 1000 steps: 1e-126) makes 1 / abar
/// infinite, and one that rounds to 1 (a beta_start below 6e-8) makes the first noise level 0.
/// Training alone would not notice; every sampler would give NaN or refuse its grid.
fn check_float32(alphas_cumprod: &[f64]) -> Result<(), CoreError> {
    let bad = |a: f64| {
        let a32 = a as f32;
        !(a32.is_normal() && a32 < 1.0)
    };
    match alphas_cumprod.iter().position(|&a| bad(a)) {
        Some(t) => Err(CoreError::AlphasCumprodInFloat32 {
            t,
            value: alphas_cumprod[t],
        }),
        None => Ok(()),
    }
}

/// `n` evenly spaced values from `start` to `end` inclusive (numpy/torch `linspace`).
pub fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![start],
        _ => (0..n).map(|i| linspace_at(start, end, n, i)).collect(),
    }
}

/// The `i`-th of the `n` points of [`linspace`], alone, with the same bits.
pub fn linspace_at(start: f64, end: f64, n: usize, i: usize) -> f64 {
    if n == 1 {
        return start;
    }
    let step = (end - start) / (n - 1) as f64;
    // torch.linspace fills the second half from the end, so both ends are exact.
    if i < n / 2 {
        start + step * i as f64
    } else {
        end - step * (n - 1 - i) as f64
    }
}

/// Betas whose cumulative product follows `alpha_bar(t / T)` (improved DDPM, eq. 17).
fn betas_for_alpha_bar(t_max: usize, max_beta: f64, alpha_bar: impl Fn(f64) -> f64) -> Vec<f64> {
    (0..t_max)
        .map(|i| {
            let t1 = i as f64 / t_max as f64;
            let t2 = (i + 1) as f64 / t_max as f64;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(max_beta)
        })
        .collect()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(s: BetaSchedule, t: usize) -> NoiseSchedule {
        ScheduleConfig {
            num_train_timesteps: t,
            beta_schedule: s,
            ..Default::default()
        }
        .build()
        .unwrap()
    }

    #[test]
    fn alphas_cumprod_strictly_decreasing_in_unit_interval() {
        for s in [
            BetaSchedule::Linear,
            BetaSchedule::ScaledLinear,
            BetaSchedule::SquaredCosCapV2,
            BetaSchedule::Sigmoid,
        ] {
            let sched = build(s, 1000);
            let ac = &sched.alphas_cumprod;
            assert!(ac.iter().all(|a| *a > 0.0 && *a < 1.0), "{s:?}");
            assert!(ac.windows(2).all(|w| w[1] < w[0]), "{s:?}");
        }
    }

    #[test]
    fn cosine_schedule_is_not_all_zero() {
        // The integer-division pitfall of STYLE.md gives all-zero betas.
        let sched = build(BetaSchedule::SquaredCosCapV2, 1000);
        assert!(sched.betas.iter().all(|b| *b > 1e-6));
        assert_eq!(*sched.betas.last().unwrap(), 0.999);
    }

    #[test]
    fn invalid_configs_are_typed_errors() {
        let c = ScheduleConfig {
            num_train_timesteps: 0,
            ..Default::default()
        };
        assert!(matches!(c.build(), Err(CoreError::ZeroTimesteps)));
        let c = ScheduleConfig {
            beta_end: 1.5,
            ..Default::default()
        };
        assert!(matches!(
            c.build(),
            Err(CoreError::InvalidBetaParameter {
                name: "beta_end",
                ..
            })
        ));
        let c = ScheduleConfig {
            beta_start: 0.0,
            ..Default::default()
        };
        assert!(matches!(
            c.build(),
            Err(CoreError::InvalidBetaParameter {
                name: "beta_start",
                ..
            })
        ));
        let mut c = ScheduleConfig::default();
        (c.beta_start, c.beta_end) = (0.02, 1e-4);
        assert!(matches!(
            c.build(),
            Err(CoreError::BetaStartAfterEnd { .. })
        ));
        let err = NoiseSchedule::from_betas(ScheduleConfig::default(), vec![0.1, f64::NAN]);
        assert!(matches!(err, Err(CoreError::InvalidBeta { t: 1, .. })));
        // beta = 1 makes alphas_cumprod 0 from there on, and x_0 = x_t / sqrt(abar) infinite.
        let c = ScheduleConfig {
            beta_end: 1.0,
            ..Default::default()
        };
        let err = c.build().unwrap_err().to_string();
        assert!(err.contains("beta_end") && err.contains("(0, 1)"), "{err}");
        let err = NoiseSchedule::from_betas(ScheduleConfig::default(), vec![0.1, 1.0]);
        assert!(matches!(err, Err(CoreError::InvalidBeta { t: 1, .. })));
        // Found by the run_config fuzzer: 15.5e9 timesteps asked for 124 GB and aborted.
        let c = ScheduleConfig {
            num_train_timesteps: 15_555_555_553,
            ..Default::default()
        };
        assert!(matches!(
            c.build(),
            Err(CoreError::TooManyTimesteps {
                value: 15_555_555_553,
                ..
            })
        ));
    }

    /// Schedules whose alpha-bar leaves float32's normal range, or rounds to 1 in it, are
    /// refused (every sampler gave NaN or refused its grid); the published schedules and the
    /// edge of the range are not.
    #[test]
    fn alphas_cumprod_must_be_a_normal_float32_below_1() {
        let config = |schedule, beta_start, beta_end| ScheduleConfig {
            num_train_timesteps: 1000,
            beta_schedule: schedule,
            beta_start,
            beta_end,
        };
        use BetaSchedule::*;
        for (s, b0, b1) in [
            (Linear, 1e-4, 0.5),
            (Linear, 1e-4, 0.9),
            (Linear, 1e-4, 0.999),
            (Sigmoid, 0.5, 0.9),
            (Linear, 1e-4, 0.166), // alpha-bar_999 = 5.6e-39, subnormal in float32
            (Linear, 1e-9, 0.02),  // alpha-bar_0 rounds to 1
        ] {
            let err = config(s, b0, b1).build().unwrap_err();
            assert!(
                matches!(err, CoreError::AlphasCumprodInFloat32 { .. }),
                "{s:?} {b0} {b1}: {err}"
            );
        }
        let err = config(Linear, 1e-4, 0.5).build().unwrap_err().to_string();
        assert!(err.contains("beta_end") && err.contains("t = "), "{err}");
        let err = config(Linear, 1e-9, 0.02).build().unwrap_err().to_string();
        assert!(err.contains("t = 0") && err.contains("beta_start"), "{err}");
        for (s, b0, b1) in [
            (Linear, 1e-4, 0.02),
            (ScaledLinear, 0.00085, 0.012),
            (SquaredCosCapV2, 1e-4, 0.02),
            (Sigmoid, 1e-4, 0.02),
            (Linear, 1e-4, 0.164), // alpha-bar_999 = 1.7e-38, still normal
            (Linear, 1e-7, 0.02),
        ] {
            config(s, b0, b1).build().unwrap();
        }
    }

    #[test]
    fn terminal_warning_only_for_short_schedules() {
        assert!(
            build(BetaSchedule::Linear, 1000)
                .terminal_warning()
                .is_none()
        );
        // T = 10 with DDPM's betas leaves alpha-bar ~ 0.9.
        let short = build(BetaSchedule::Linear, 10);
        assert!(short.terminal_alpha_cumprod() > 0.8);
        assert!(short.terminal_warning().unwrap().contains("alphas_cumprod"));
    }

    #[test]
    fn single_step_schedule_is_defined() {
        let s = build(BetaSchedule::Linear, 1);
        assert_eq!(s.betas, vec![1e-4]);
        assert_eq!(s.posterior_variance, vec![0.0]);
        assert!(s.posterior_log_variance_clipped[0].is_finite());
    }

    #[test]
    fn posterior_coefficients_match_definitions() {
        let s = build(BetaSchedule::Linear, 1000);
        for t in [1, 10, 500, 999] {
            let var = s.posterior_variance[t];
            assert!(
                (var - (1.0 - s.alphas_cumprod_prev[t]) / (1.0 - s.alphas_cumprod[t]) * s.betas[t])
                    .abs()
                    < 1e-15
            );
            assert!((s.posterior_log_variance_clipped[t] - var.ln()).abs() < 1e-12);
        }
        assert_eq!(
            s.posterior_log_variance_clipped[0],
            s.posterior_variance[1].ln()
        );
    }
}
