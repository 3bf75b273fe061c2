//! diffusers' `scheduler_config.json` for `DDPMScheduler` and `DDIMScheduler`, field for field,
//! mapped onto diffuse's schedule and samplers. Fields whose feature diffuse does not implement are
//! accepted only at the value that switches the feature off; anything else is an error naming the
//! field.

use std::collections::BTreeMap;

use diffuse_core::discrete::sampler::{DdimConfig, DdpmConfig, VarianceType};
use diffuse_core::discrete::timesteps::TimestepSpacing;
use diffuse_core::{BetaSchedule, NoiseSchedule, Prediction, ScheduleConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::DiffusersError;
use diffuse_nn::fields::check_unmapped_fields;

/// The diffusers version whose field names and defaults this file follows (written into saved
/// configs, as diffusers does).
pub const DIFFUSERS_VERSION: &str = "0.42.1";

/// The scheduler classes diffuse reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchedulerClass {
    #[serde(rename = "DDPMScheduler")]
    Ddpm,
    #[serde(rename = "DDIMScheduler")]
    Ddim,
}

impl SchedulerClass {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ddpm => "DDPMScheduler",
            Self::Ddim => "DDIMScheduler",
        }
    }
}

/// diffusers' `variance_type` (DDPMScheduler only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffusersVariance {
    FixedSmall,
    FixedSmallLog,
    FixedLarge,
    FixedLargeLog,
    Learned,
    LearnedRange,
}

fn d_steps() -> usize {
    1000
}
fn d_start() -> f64 {
    0.0001
}
fn d_end() -> f64 {
    0.02
}
fn d_schedule() -> BetaSchedule {
    BetaSchedule::Linear
}
fn d_true() -> bool {
    true
}
fn d_one() -> f64 {
    1.0
}

/// `scheduler_config.json` of a `DDPMScheduler` or `DDIMScheduler`; defaults are diffusers' own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name")]
    pub class: SchedulerClass,
    #[serde(rename = "_diffusers_version", default)]
    pub diffusers_version: Option<String>,
    #[serde(default = "d_steps")]
    pub num_train_timesteps: usize,
    #[serde(default = "d_start")]
    pub beta_start: f64,
    #[serde(default = "d_end")]
    pub beta_end: f64,
    #[serde(default = "d_schedule")]
    pub beta_schedule: BetaSchedule,
    /// Betas given outright; they override `beta_schedule`, `beta_start` and `beta_end`.
    #[serde(default)]
    pub trained_betas: Option<Vec<f64>>,
    /// `None`: absent from the file (DDPM and DDIM then clip, Heun does not: each scheduler's
    /// own default, as `from_config` gives it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_sample: Option<bool>,
    #[serde(default = "d_one")]
    pub clip_sample_range: f64,
    #[serde(default)]
    pub prediction_type: Prediction,
    /// DDIM only: alpha-bar before step 0 is 1 (true) or alphas_cumprod[0].
    #[serde(default = "d_true")]
    pub set_alpha_to_one: bool,
    #[serde(default)]
    pub steps_offset: usize,
    /// `None`: absent from the file; DDPM and DDIM then use "leading", Euler, Heun and
    /// DPM-Solver "linspace" (their `__init__` defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestep_spacing: Option<TimestepSpacing>,
    /// DDPM only (`None`: diffusers' default, `fixed_small`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variance_type: Option<DiffusersVariance>,
    /// Every other field: checked by [`Self::validate`].
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// The one value diffuse accepts for a field whose feature it does not implement, or `None` for
/// fields without effect while that feature is off (their values are ignored then) and for fields
/// it does not know.
fn only_value(key: &str) -> Option<Value> {
    Some(match key {
        "thresholding" | "rescale_betas_zero_snr" => Value::Bool(false),
        _ => return None,
    })
}

/// Fields without effect here: those that only matter when `thresholding` is on (checked to be
/// off), and `tensor_format`, which early diffusers versions wrote.
const INERT_FIELDS: [&str; 3] = [
    "dynamic_thresholding_ratio",
    "sample_max_value",
    "tensor_format",
];

impl SchedulerConfig {
    pub fn from_json(text: &str) -> Result<Self, DiffusersError> {
        let config: Self = serde_json::from_str(text).map_err(|e| {
            DiffusersError::Scheduler(format!("invalid scheduler_config.json: {e}"))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The scheduler config of a model diffuse trained: a `DDIMScheduler`, or, for a model with
    /// a learned variance (which diffusers' DDIM cannot read), a `DDPMScheduler` with
    /// `variance_type: learned_range`, so that `DDPMPipeline` samples with it.
    pub fn for_trained(
        schedule: &ScheduleConfig,
        prediction: Prediction,
        clip: Option<f64>,
        learned_variance: bool,
    ) -> Self {
        Self {
            class: if learned_variance {
                SchedulerClass::Ddpm
            } else {
                SchedulerClass::Ddim
            },
            diffusers_version: Some(DIFFUSERS_VERSION.into()),
            num_train_timesteps: schedule.num_train_timesteps,
            beta_start: schedule.beta_start,
            beta_end: schedule.beta_end,
            beta_schedule: schedule.beta_schedule,
            trained_betas: None,
            clip_sample: Some(clip.is_some()),
            clip_sample_range: clip.unwrap_or(1.0),
            prediction_type: prediction,
            set_alpha_to_one: true,
            steps_offset: 0,
            timestep_spacing: Some(TimestepSpacing::Leading),
            variance_type: learned_variance.then_some(DiffusersVariance::LearnedRange),
            other: [
                ("thresholding".to_string(), Value::Bool(false)),
                ("rescale_betas_zero_snr".to_string(), Value::Bool(false)),
            ]
            .into(),
        }
    }

    pub fn validate(&self) -> Result<(), DiffusersError> {
        let bad = |field: &str, reason: String| {
            Err(DiffusersError::from(
                diffuse_nn::NnError::UnsupportedField {
                    field: field.into(),
                    reason,
                },
            ))
        };
        check_unmapped_fields(
            &self.other,
            self.class.name(),
            only_value,
            &INERT_FIELDS,
            " (not implemented)",
        )?;
        if self.variance_type == Some(DiffusersVariance::Learned) {
            return bad(
                "variance_type",
                "is `learned` (an unbounded log-variance); diffuse supports fixed_small, fixed_large and learned_range".into(),
            );
        }
        if self.clip_sample.unwrap_or(true)
            && !(self.clip_sample_range > 0.0 && self.clip_sample_range.is_finite())
        {
            return bad(
                "clip_sample_range",
                format!("must be positive, got {}", self.clip_sample_range),
            );
        }
        if let Some(b) = &self.trained_betas
            && b.len() != self.num_train_timesteps
        {
            return bad(
                "trained_betas",
                format!(
                    "has {} entries but num_train_timesteps is {}",
                    b.len(),
                    self.num_train_timesteps
                ),
            );
        }
        Ok(())
    }

    /// The noise schedule: `trained_betas` where given, else the named schedule.
    pub fn schedule(&self) -> Result<NoiseSchedule, DiffusersError> {
        let config = ScheduleConfig {
            num_train_timesteps: self.num_train_timesteps,
            beta_schedule: self.beta_schedule,
            beta_start: self.beta_start,
            beta_end: self.beta_end,
        };
        let built = match &self.trained_betas {
            Some(betas) => NoiseSchedule::from_betas(config, betas.clone()),
            None => config.build(),
        };
        built.map_err(|e| DiffusersError::Scheduler(e.to_string()))
    }

    fn clip(&self) -> Option<f64> {
        self.clip_sample
            .unwrap_or(true)
            .then_some(self.clip_sample_range)
    }

    /// DDPM ancestral sampling as this scheduler config describes it, over `steps` steps (`None`:
    /// all T).
    pub fn ddpm(&self, steps: Option<usize>) -> DdpmConfig {
        DdpmConfig {
            prediction: self.prediction_type,
            variance_type: match self.variance_type {
                Some(DiffusersVariance::FixedLarge | DiffusersVariance::FixedLargeLog) => {
                    VarianceType::FixedLarge
                }
                Some(DiffusersVariance::LearnedRange) => VarianceType::LearnedRange,
                _ => VarianceType::FixedSmall,
            },
            clip_sample: self.clip(),
            num_inference_steps: steps,
            timestep_spacing: self.timestep_spacing.unwrap_or_default(),
            steps_offset: self.steps_offset,
        }
    }

    /// DDIM with `steps` steps and `eta`, as `DDIMScheduler.from_config(this)` would sample (a
    /// learned variance, which DDIM does not use, is dropped from the model output).
    pub fn ddim(&self, steps: usize, eta: f64) -> DdimConfig {
        DdimConfig {
            prediction: self.prediction_type,
            num_inference_steps: steps,
            eta,
            timestep_spacing: self.timestep_spacing.unwrap_or_default(),
            steps_offset: self.steps_offset,
            set_alpha_to_one: self.set_alpha_to_one,
            clip_sample: self.clip(),
            learned_variance: self.variance_type == Some(DiffusersVariance::LearnedRange),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffusers_defaults_and_field_mapping() {
        // An early-diffusers DDPM config (the style of google/ddpm-cifar10-32's, with 0.1-era
        // `tensor_format`).
        let c = SchedulerConfig::from_json(
            r#"{"_class_name": "DDPMScheduler", "_diffusers_version": "0.1.1", "beta_end": 0.02,
                "beta_schedule": "linear", "beta_start": 0.0001, "clip_sample": true,
                "num_train_timesteps": 1000, "trained_betas": null, "variance_type": "fixed_large",
                "tensor_format": "pt"}"#,
        )
        .unwrap();
        assert_eq!(c.class, SchedulerClass::Ddpm);
        let ddpm = c.ddpm(None);
        assert_eq!(ddpm.variance_type, VarianceType::FixedLarge);
        assert_eq!(ddpm.clip_sample, Some(1.0));
        assert_eq!(ddpm.prediction, Prediction::Epsilon);
        // DDIM from a DDPM config: set_alpha_to_one takes DDIMScheduler's default.
        let ddim = c.ddim(50, 0.0);
        assert!(ddim.set_alpha_to_one);
        assert_eq!(ddim.timestep_spacing, TimestepSpacing::Leading);
        assert_eq!(c.schedule().unwrap().num_timesteps(), 1000);
    }

    #[test]
    fn trained_betas_override_the_named_schedule() {
        let c = SchedulerConfig::from_json(
            r#"{"_class_name": "DDIMScheduler", "num_train_timesteps": 3,
                "trained_betas": [0.1, 0.2, 0.5], "beta_schedule": "scaled_linear"}"#,
        )
        .unwrap();
        let s = c.schedule().unwrap();
        let expected = [0.9, 0.9 * 0.8, 0.9 * 0.8 * 0.5];
        for (a, b) in s.alphas_cumprod.iter().zip(expected) {
            assert!((a - b).abs() < 1e-15);
        }
    }

    #[test]
    fn a_saved_ddim_config_reads_back_and_omits_ddpm_fields() {
        let schedule = ScheduleConfig::default();
        let c = SchedulerConfig::for_trained(&schedule, Prediction::VPrediction, None, false);
        let text = serde_json::to_string(&c).unwrap();
        assert!(!text.contains("variance_type"), "{text}");
        assert!(text.contains("\"_class_name\":\"DDIMScheduler\""), "{text}");
        assert!(
            text.contains("\"prediction_type\":\"v_prediction\""),
            "{text}"
        );
        assert_eq!(SchedulerConfig::from_json(&text).unwrap(), c);
        // A learned variance is saved as a DDPM scheduler with learned_range, which DDIM reads too.
        let c = SchedulerConfig::for_trained(&schedule, Prediction::Epsilon, Some(1.0), true);
        assert_eq!(c.class, SchedulerClass::Ddpm);
        assert_eq!(c.ddpm(None).variance_type, VarianceType::LearnedRange);
        assert!(c.ddim(10, 0.0).learned_variance);
    }

    #[test]
    fn unsupported_values_name_their_field() {
        for (json, field) in [
            (
                r#"{"_class_name": "DDIMScheduler", "thresholding": true}"#,
                "thresholding",
            ),
            (
                r#"{"_class_name": "DDIMScheduler", "rescale_betas_zero_snr": true}"#,
                "rescale_betas_zero_snr",
            ),
            (
                r#"{"_class_name": "DDIMScheduler", "clip_sample_range": -1.0}"#,
                "clip_sample_range",
            ),
            (
                r#"{"_class_name": "DDIMScheduler", "use_karras_sigmas": true}"#,
                "use_karras_sigmas",
            ),
        ] {
            let err = SchedulerConfig::from_json(json).unwrap_err().to_string();
            assert!(err.contains(&format!("`{field}`")), "{field}: {err}");
        }
        let err = SchedulerConfig::from_json(r#"{"_class_name": "PNDMScheduler"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("PNDMScheduler"), "{err}");
        // thresholding off: its parameters are inert.
        SchedulerConfig::from_json(
            r#"{"_class_name": "DDIMScheduler", "thresholding": false, "sample_max_value": 3.0}"#,
        )
        .unwrap();
    }
}
