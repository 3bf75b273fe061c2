//! The full configuration of an image run, written to `diffuse_config.json` in the run directory
//! and read from `--config FILE` (TOML or JSON). Presets per dataset are sized for a 2-core CPU.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use diffuse_core::objective::LossConfig;
use diffuse_core::vlb::Decoder;
use diffuse_core::vlb::ReverseVariance;
use diffuse_core::{Prediction, ScheduleConfig};
use diffuse_nn::UnetConfig;
use diffuse_nn::diffusers::SchedulerConfig;
use diffuse_nn::unet::{DownBlockType, UpBlockType};
use diffuse_train::TrainConfig;
use serde::{Deserialize, Serialize};

/// The image datasets `train` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageDataset {
    Mnist,
    FashionMnist,
    Cifar10,
    /// A folder of PNG/JPEG images (`data.dir`), resized and center-cropped to the U-Net's
    /// `sample_size`, read with its `in_channels` (1 gray, 3 RGB).
    Folder,
}

impl ImageDataset {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "mnist" => Self::Mnist,
            "fashion_mnist" | "fashion-mnist" => Self::FashionMnist,
            "cifar10" | "cifar-10" => Self::Cifar10,
            "folder" => Self::Folder,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Mnist => "mnist",
            Self::FashionMnist => "fashion_mnist",
            Self::Cifar10 => "cifar10",
            Self::Folder => "folder",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageDataConfig {
    pub dataset: ImageDataset,
    /// Where the files are (default: `data/<dataset>`).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Random horizontal flips while training (on for CIFAR-10 and folders: digits and letters
    /// are not mirror-symmetric).
    pub random_flip: bool,
}

/// How `train` draws its final samples and pictures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageSampleConfig {
    /// Images in `samples.png` / `samples.npy`.
    pub n: usize,
    /// DDIM steps (eta = 0) for the pictures.
    pub ddim_steps: usize,
    /// Clamp the x_0 estimate to [-r, r] (model space is [-1, 1]); written to the scheduler config.
    pub clip_sample: Option<f64>,
}

impl Default for ImageSampleConfig {
    fn default() -> Self {
        Self {
            n: 64,
            ddim_steps: 50,
            clip_sample: Some(1.0),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRunConfig {
    pub data: ImageDataConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub prediction: Prediction,
    /// diffusers' `UNet2DModel` config.
    pub unet: UnetConfig,
    pub train: TrainConfig,
    #[serde(default)]
    pub sample: ImageSampleConfig,
}

fn unet(size: usize, channels: usize, widths: &[usize], head_dim: usize) -> UnetConfig {
    let mut c: UnetConfig = serde_json::from_str("{}").expect("all fields have defaults");
    let n = widths.len();
    c.sample_size = Some(size);
    c.in_channels = channels;
    c.out_channels = channels;
    c.block_out_channels = widths.to_vec();
    c.down_block_types = (0..n)
        .map(|i| {
            if i == n - 1 {
                DownBlockType::AttnDownBlock2D
            } else {
                DownBlockType::DownBlock2D
            }
        })
        .collect();
    c.up_block_types = (0..n)
        .map(|i| {
            if i == 0 {
                UpBlockType::AttnUpBlock2D
            } else {
                UpBlockType::UpBlock2D
            }
        })
        .collect();
    c.layers_per_block = 1;
    c.norm_num_groups = 8;
    c.attention_head_dim = Some(head_dim);
    c
}

impl ImageRunConfig {
    /// The CPU preset for `dataset` (README, "Images", has the time and the pictures).
    pub fn preset(dataset: ImageDataset) -> Self {
        let (unet, random_flip) = match dataset {
            // 28 -> 14 -> 7, attention at 7x7 and in the middle block: 280k parameters, about
            // 2.3 steps/s at batch 32 on 2 cores (README, "Images").
            ImageDataset::Mnist | ImageDataset::FashionMnist => {
                (unet(28, 1, &[16, 32, 32], 16), false)
            }
            // 32 -> 16 -> 8, attention at 8x8 and in the middle block.
            ImageDataset::Cifar10 | ImageDataset::Folder => (unet(32, 3, &[32, 64, 64], 32), true),
        };
        Self {
            data: ImageDataConfig {
                dataset,
                dir: None,
                random_flip,
            },
            schedule: ScheduleConfig::default(),
            prediction: Prediction::Epsilon,
            unet,
            train: TrainConfig {
                steps: 5000,
                batch_size: 32,
                lr: 1e-3,
                warmup_steps: 200,
                ema_decay: Some(0.995),
                checkpoint_every: 500,
                loss: LossConfig {
                    decoder: Decoder::Discretized,
                    ..LossConfig::default()
                },
                ..TrainConfig::default()
            },
            sample: ImageSampleConfig::default(),
        }
    }

    /// The data folder: `data.dir`, or `data/<dataset>`.
    pub fn data_dir(&self) -> PathBuf {
        self.data
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("data").join(self.data.dataset.name()))
    }

    /// The scheduler config the run directory is saved with (and its pictures are drawn by).
    pub fn scheduler(&self) -> SchedulerConfig {
        SchedulerConfig::for_trained(
            &self.schedule,
            self.prediction,
            self.sample.clip_sample,
            self.train.loss.variance == ReverseVariance::LearnedRange,
        )
    }

    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        self.unet.validate()?;
        // unet.validate checks that the size suits the U-Net's levels.
        let Some(size) = self.unet.sample_size else {
            bail!("unet.sample_size must be set for training (the image side in pixels)");
        };
        let out = self.train.loss.output_channels(self.unet.in_channels);
        if self.unet.out_channels != out {
            bail!(
                "unet.out_channels is {} but must be {out}: in_channels ({}){}",
                self.unet.out_channels,
                self.unet.in_channels,
                if out > self.unet.in_channels {
                    ", twice for a learned variance"
                } else {
                    ""
                }
            );
        }
        if self.sample.n == 0 {
            bail!("sample.n must be at least 1");
        }
        // The pictures' sampler, built now so a bad sampling field (clip_sample) fails before
        // anything is downloaded or trained.
        let schedule = self.schedule.build()?;
        diffuse_core::sampler::DdimSampler::new(
            &schedule,
            self.scheduler().ddim(self.sample.ddim_steps, 0.0),
        )
        .context("sample.clip_sample")?;
        crate::memory::check_unet_training(&self.unet, size, self.train.batch_size)?;
        crate::memory::check_unet_sampling(&self.unet, size, self.sample.n)?;
        if self.sample.ddim_steps == 0 || self.sample.ddim_steps > self.schedule.num_train_timesteps
        {
            bail!(
                "sample.ddim_steps must be in 1..={}, got {}",
                self.schedule.num_train_timesteps,
                self.sample.ddim_steps
            );
        }
        Ok(())
    }

    /// `self` with the fields of a config file (`.toml` or `.json`) laid over it: any subset of
    /// the fields, nested tables merged key by key.
    pub fn overlay_file(&self, path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let overlay: serde_json::Value = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => toml::from_str(&text)
                .with_context(|| format!("invalid TOML config {}", path.display()))?,
            Some("json") => serde_json::from_str(&text)
                .with_context(|| format!("invalid JSON config {}", path.display()))?,
            _ => bail!("config file {} must end in .toml or .json", path.display()),
        };
        let mut merged = serde_json::to_value(self)?;
        merge(&mut merged, overlay);
        serde_json::from_value(merged)
            .with_context(|| format!("invalid image run config {}", path.display()))
    }
}

/// Lays `overlay` over `base`: objects merge key by key, anything else replaces.
fn merge(base: &mut serde_json::Value, overlay: serde_json::Value) {
    match (base, overlay) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}
