//! DDIM (Song, Meng & Ermon 2021, eq. 12), as diffusers' `DDIMScheduler.step`.
//!
//! Notation: abar_t = alphas_cumprod[t]; t_prev = t - T / n (integer division, as diffusers does
//! for every spacing); abar_prev = alphas_cumprod[t_prev], or past the end 1 (`set_alpha_to_one`)
//! or alphas_cumprod[0].
//!
//! 1. (x_0, eps) from the network output; x_0 clipped if asked (eps is not re-derived);
//! 2. sigma_t = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)   (eq. 16);
//! 3. x_{t_prev} = sqrt(abar_prev) x_0 + sqrt(1 - abar_prev - sigma_t^2) eps + sigma_t z  (eq. 12).
//!
//! eta = 0 is the deterministic DDIM; eta = 1 on the full chain is DDPM with beta-tilde.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::{Sampler, StepOutput, check_clip, clip};
use crate::discrete::param::{NoiseLevel, Prediction};
use crate::discrete::schedule::NoiseSchedule;
use crate::discrete::timesteps::{TimestepSpacing, spaced_timesteps};
use crate::error::CoreError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DdimConfig {
    pub prediction: Prediction,
    pub num_inference_steps: usize,
    /// Interpolates between deterministic DDIM (0) and DDPM-like sampling (1).
    pub eta: f64,
    pub timestep_spacing: TimestepSpacing,
    pub steps_offset: usize,
    /// alpha-bar "before step 0": 1 (true) or alphas_cumprod[0] (false).
    pub set_alpha_to_one: bool,
    /// Clamp the x_0 estimate to [-r, r].
    pub clip_sample: Option<f64>,
    /// The model outputs a learned variance as the second half of its channels (dimension 1).
    /// DDIM's sigma_t is set by eta alone (eq. 16), so that half is dropped.
    pub learned_variance: bool,
}

impl Default for DdimConfig {
    /// DDIM's paper setting: 50 steps, eta = 0; diffusers' defaults otherwise.
    fn default() -> Self {
        Self {
            prediction: Prediction::Epsilon,
            num_inference_steps: 50,
            eta: 0.0,
            timestep_spacing: TimestepSpacing::Leading,
            steps_offset: 0,
            set_alpha_to_one: true,
            clip_sample: None,
            learned_variance: false,
        }
    }
}

pub struct DdimSampler {
    alphas_cumprod: Vec<f64>,
    final_alpha_cumprod: f64,
    stride: usize,
    config: DdimConfig,
    timesteps: Vec<usize>,
}

impl DdimSampler {
    pub fn new(schedule: &NoiseSchedule, config: DdimConfig) -> Result<Self, CoreError> {
        if !(0.0..=1.0).contains(&config.eta) {
            return Err(CoreError::InvalidEta(config.eta));
        }
        check_clip(config.clip_sample)?;
        let train_steps = schedule.num_timesteps();
        let n = config.num_inference_steps;
        let timesteps =
            spaced_timesteps(config.timestep_spacing, train_steps, n, config.steps_offset)?;
        let ac = &schedule.alphas_cumprod;
        Ok(Self {
            final_alpha_cumprod: if config.set_alpha_to_one { 1.0 } else { ac[0] },
            alphas_cumprod: ac.clone(),
            stride: train_steps / n,
            config,
            timesteps,
        })
    }
}

impl Sampler for DdimSampler {
    fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    fn needs_noise(&self, _t: usize) -> bool {
        self.config.eta > 0.0
    }

    fn step<const D: usize>(
        &self,
        output: Tensor<D>,
        t: usize,
        x_t: Tensor<D>,
        noise: Option<Tensor<D>>,
    ) -> Result<StepOutput<D>, CoreError> {
        let abar_t = *self
            .alphas_cumprod
            .get(t)
            .ok_or(CoreError::UnknownTimestep { t })?;
        let abar_prev = t
            .checked_sub(self.stride)
            .map_or(self.final_alpha_cumprod, |p| self.alphas_cumprod[p]);
        let c = x_t.dims()[1];
        let output = match (self.config.learned_variance, output.dims()[1]) {
            (false, _) => output,
            (true, got) if got == 2 * c => output.narrow(1, 0, c),
            (true, got) => {
                return Err(CoreError::LearnedVarianceShape {
                    expected: 2 * c,
                    got,
                });
            }
        };
        let level = NoiseLevel::from_chain(&self.alphas_cumprod, t);
        let (x0, eps) = self.config.prediction.split(output, x_t, &level);
        let x0 = clip(x0, self.config.clip_sample);
        let variance = (1.0 - abar_prev) / (1.0 - abar_t) * (1.0 - abar_t / abar_prev);
        let sigma = self.config.eta * variance.sqrt();
        let direction = (1.0 - abar_prev - sigma * sigma).max(0.0).sqrt();
        let mut prev_sample =
            x0.clone().mul_scalar(abar_prev.sqrt() as f32) + eps.mul_scalar(direction as f32);
        if self.needs_noise(t) {
            let z = noise.expect("DdimSampler::step needs noise when eta > 0");
            prev_sample = prev_sample + z.mul_scalar(sigma as f32);
        }
        Ok(StepOutput {
            prev_sample,
            pred_x0: x0,
        })
    }
}
