//! DDPM ancestral sampling (Ho et al. 2020, Algorithm 2), as diffusers' `DDPMScheduler.step`.
//!
//! Notation: abar_t = alphas_cumprod[t], abar_prev = alphas_cumprod[t_prev] (1 past the end),
//! alpha_t = abar_t / abar_prev and beta_t = 1 - alpha_t (the strided step's beta; the schedule's
//! beta_t on the full chain).
//!
//! 1. x_0 from the network output (eq. 15 for eps prediction), clipped if asked;
//! 2. mu-tilde = sqrt(abar_prev) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_prev) / (1 - abar_t) x_t (eq. 7);
//! 3. x_{t_prev} = mu-tilde + sigma_t z, with sigma_t^2 = beta-tilde_t (`fixed_small`) or beta_t
//!    (`fixed_large`), and no noise at t = 0 (section 3.2).

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::{Sampler, StepOutput, check_clip, clip};
use crate::discrete::param::{NoiseLevel, Prediction};
use crate::discrete::schedule::NoiseSchedule;
use crate::discrete::timesteps::{TimestepSpacing, spaced_timesteps};
use crate::error::CoreError;

/// sigma_t^2 of the reverse step (DDPM section 3.2: both fixed choices give similar results):
/// the variance of p(x_{t-1} | x_t) that training and the bound use, under diffusers' name.
/// A sampler steps from t > 0 only with noise, so the bound's conventions at t = 0 do not apply.
pub use crate::discrete::bound::ReverseVariance as VarianceType;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DdpmConfig {
    pub prediction: Prediction,
    pub variance_type: VarianceType,
    /// Clamp the x_0 estimate to [-r, r] (diffusers' `clip_sample` + `clip_sample_range`).
    pub clip_sample: Option<f64>,
    /// Steps to take; `None` walks all T (Algorithm 2).
    pub num_inference_steps: Option<usize>,
    pub timestep_spacing: TimestepSpacing,
    pub steps_offset: usize,
}

impl Default for DdpmConfig {
    fn default() -> Self {
        Self {
            prediction: Prediction::Epsilon,
            variance_type: VarianceType::FixedSmall,
            clip_sample: None,
            num_inference_steps: None,
            timestep_spacing: TimestepSpacing::Leading,
            steps_offset: 0,
        }
    }
}

pub struct DdpmSampler {
    alphas_cumprod: Vec<f64>,
    config: DdpmConfig,
    timesteps: Vec<usize>,
}

impl DdpmSampler {
    pub fn new(schedule: &NoiseSchedule, config: DdpmConfig) -> Result<Self, CoreError> {
        check_clip(config.clip_sample)?;
        let train_steps = schedule.num_timesteps();
        let timesteps = match config.num_inference_steps {
            None => (0..train_steps).rev().collect(),
            Some(n) => {
                spaced_timesteps(config.timestep_spacing, train_steps, n, config.steps_offset)?
            }
        };
        Ok(Self {
            alphas_cumprod: schedule.alphas_cumprod.clone(),
            config,
            timesteps,
        })
    }

    /// The timestep after `t` in the walk, or `None` past the end (where abar = 1).
    fn previous(&self, t: usize) -> Result<Option<usize>, CoreError> {
        let i = self
            .timesteps
            .iter()
            .position(|&s| s == t)
            .ok_or(CoreError::UnknownTimestep { t })?;
        Ok(self.timesteps.get(i + 1).copied())
    }
}

impl Sampler for DdpmSampler {
    fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    fn needs_noise(&self, t: usize) -> bool {
        t > 0
    }

    fn step<const D: usize>(
        &self,
        output: Tensor<D>,
        t: usize,
        x_t: Tensor<D>,
        noise: Option<Tensor<D>>,
    ) -> Result<StepOutput<D>, CoreError> {
        let abar_t = self.alphas_cumprod[t];
        let abar_prev = self.previous(t)?.map_or(1.0, |p| self.alphas_cumprod[p]);
        let alpha_t = abar_t / abar_prev;
        let beta_t = 1.0 - alpha_t;
        let (output, learned) = match self.config.variance_type {
            VarianceType::LearnedRange => {
                let c = x_t.dims()[1];
                if output.dims()[1] != 2 * c {
                    return Err(CoreError::LearnedVarianceShape {
                        expected: 2 * c,
                        got: output.dims()[1],
                    });
                }
                (output.clone().narrow(1, 0, c), Some(output.narrow(1, c, c)))
            }
            _ => (output, None),
        };
        let level = NoiseLevel::from_chain(&self.alphas_cumprod, t);
        let (x0, _) = self.config.prediction.split(output, x_t.clone(), &level);
        let x0 = clip(x0, self.config.clip_sample);
        let coef_x0 = abar_prev.sqrt() * beta_t / (1.0 - abar_t);
        let coef_xt = alpha_t.sqrt() * (1.0 - abar_prev) / (1.0 - abar_t);
        let mean = x0.clone().mul_scalar(coef_x0 as f32) + x_t.mul_scalar(coef_xt as f32);
        let prev_sample = if self.needs_noise(t) {
            let small = ((1.0 - abar_prev) / (1.0 - abar_t) * beta_t).max(1e-20);
            let z = noise.expect("DdpmSampler::step needs noise for t > 0");
            match (self.config.variance_type, learned) {
                (VarianceType::FixedLarge, _) => mean + z.mul_scalar(beta_t.sqrt() as f32),
                (VarianceType::LearnedRange, Some(v)) => {
                    let frac = v.add_scalar(1.0).mul_scalar(0.5);
                    let log_var = frac.clone().mul_scalar(beta_t.ln() as f32)
                        + frac.neg().add_scalar(1.0).mul_scalar(small.ln() as f32);
                    mean + z * log_var.mul_scalar(0.5).exp()
                }
                _ => mean + z.mul_scalar(small.sqrt() as f32),
            }
        } else {
            mean
        };
        Ok(StepOutput {
            prev_sample,
            pred_x0: x0,
        })
    }
}
