//! The full configuration of a 2-D run, as written to `config.json` in the run directory and read
//! from `--config FILE` (TOML or JSON). Every field has a default; command-line flags override.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use diffuse_core::sampler::{DdpmSampler, VarianceType};
use diffuse_core::{Prediction, ScheduleConfig};
use diffuse_data::Standardizer;
use diffuse_nn::MlpConfig;
use diffuse_nn::diffusers::{DiffusersVariance, SchedulerClass, SchedulerConfig};
use diffuse_train::TrainConfig;
use serde::{Deserialize, Serialize};

/// Where the training points come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// A built-in set (`swiss_roll`, `two_moons`, `eight_gaussians`, `circles`, `checkerboard`);
    /// ignored when `path` is set.
    pub dataset: String,
    /// The user's own points: `.npy` (float32/float64, [N, 2]) or `.csv`.
    pub path: Option<PathBuf>,
    /// Points drawn from a built-in set for training.
    pub train_points: usize,
    /// Points held out for evaluation (drawn from a built-in set, or split off a file).
    pub held_out: usize,
    /// Standardize each dimension to zero mean and unit variance before training.
    pub standardize: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: "swiss_roll".into(),
            path: None,
            train_points: 10_000,
            held_out: 2_000,
            standardize: true,
        }
    }
}

/// How `train` draws its final samples and pictures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SampleConfig {
    pub variance_type: VarianceType,
    pub clip_sample: Option<f64>,
    /// Points drawn for `samples.png` and the quality figure.
    pub n: usize,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            variance_type: VarianceType::FixedSmall,
            clip_sample: None,
            n: 2000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    pub data: DataConfig,
    pub schedule: ScheduleConfig,
    pub prediction: Prediction,
    pub model: MlpConfig,
    pub train: TrainConfig,
    pub sample: SampleConfig,
    /// Filled in by `train`: the map from data space to model space.
    pub standardizer: Option<Standardizer>,
}

/// Fewest held-out points the quality figure is computed on.
pub const MIN_HELD_OUT: usize = 10;
/// Most held-out points: the sliced Wasserstein distance sorts them 256 times.
pub const MAX_HELD_OUT: usize = 1_000_000;
/// Most points drawn from a built-in set.
pub const MAX_TRAIN_POINTS: usize = 10_000_000;

impl RunConfig {
    /// Checks every part of the config that can be checked before any data is read.
    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        self.model.validate()?;
        if self.data.held_out < MIN_HELD_OUT {
            bail!(
                "data.held_out must be at least {MIN_HELD_OUT}, got {}",
                self.data.held_out
            );
        }
        if self.data.path.is_none() && self.data.train_points == 0 {
            bail!("data.train_points must be at least 1");
        }
        if self.data.held_out > MAX_HELD_OUT {
            bail!(
                "data.held_out must be at most {MAX_HELD_OUT} (the quality figure's cost grows with it), got {}",
                self.data.held_out
            );
        }
        if self.data.path.is_none() && self.data.train_points > MAX_TRAIN_POINTS {
            bail!(
                "data.train_points must be at most {MAX_TRAIN_POINTS} for a built-in set (batches are drawn with replacement; more points add nothing), got {}",
                self.data.train_points
            );
        }
        crate::memory::check_mlp_training(&self.model, self.train.batch_size)?;
        crate::memory::check_mlp_sampling(&self.model, self.sample.n)?;
        if self.sample.n == 0 {
            bail!("sample.n must be at least 1");
        }
        if self.model.data_dim != 2 {
            bail!(
                "model.data_dim must be 2, got {}: point runs draw 2-D pictures and metrics",
                self.model.data_dim
            );
        }
        if let Some(std) = &self.standardizer {
            std.check_dim(self.model.data_dim)?;
        }
        // The sampler `train` draws its samples with, built now so that a bad sampling field
        // fails before training rather than after it.
        let schedule = self.schedule.build()?;
        DdpmSampler::new(&schedule, self.scheduler_config().ddpm(None))
            .context("sample.clip_sample")?;
        if self.sample.variance_type == VarianceType::LearnedRange && !self.model.learned_variance {
            bail!(
                "sample.variance_type = \"learned_range\" needs a model that learns its variance: set train.loss.variance = \"learned_range\" (with the vlb or hybrid objective)"
            );
        }
        Ok(())
    }

    /// The run's sampling settings as a diffusers scheduler config (a DDPM chain with its
    /// prediction, variance and clipping), from which every `--sampler` is built.
    pub fn scheduler_config(&self) -> SchedulerConfig {
        let learned = self.model.learned_variance;
        let mut c = SchedulerConfig::for_trained(
            &self.schedule,
            self.prediction,
            self.sample.clip_sample,
            learned,
        );
        c.class = SchedulerClass::Ddpm;
        c.variance_type = match (learned, self.sample.variance_type) {
            (true, _) => Some(DiffusersVariance::LearnedRange),
            (false, VarianceType::FixedLarge) => Some(DiffusersVariance::FixedLarge),
            (false, _) => None,
        };
        c
    }

    /// Reads a config file; the format follows the extension (`.toml` or `.json`).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => toml::from_str(&text)
                .with_context(|| format!("invalid TOML config {}", path.display())),
            Some("json") => serde_json::from_str(&text)
                .with_context(|| format!("invalid JSON config {}", path.display())),
            _ => bail!("config file {} must end in .toml or .json", path.display()),
        }
    }
}
