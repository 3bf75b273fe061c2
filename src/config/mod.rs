//! The one configuration of a run, for every model family and kind of data: written into the run
//! directory (`config.json` for an MLP on points, `diffuse_config.json` for a U-Net on images,
//! whose folder is also a diffusers pipeline and keeps `config.json` free for diffusers' model
//! loaders) and read from `--config FILE` (TOML or JSON), whose fields are laid over the
//! dataset's preset.
//!
//! `family` names the model family (`ddpm`, the default, is left out of the file, so configs
//! written before families existed read as they always did). The model section names the kind
//! of data: `[model]` is an MLP on points, `[unet]` a diffusers `UNet2DModel` on images. A config
//! holds exactly one of them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use diffuse_core::discrete::bound::ReverseVariance;
use diffuse_core::discrete::loss::LossConfig;
use diffuse_core::discrete::sampler::{DdimSampler, DdpmSampler, VarianceType};
use diffuse_core::gaussian::Decoder;
use diffuse_core::{Prediction, ScheduleConfig};
use diffuse_data::{Standardizer, ToyDataset};
use diffuse_diffusers::{DiffusersVariance, SchedulerClass, SchedulerConfig};
use diffuse_nn::unet::{DownBlockType, UpBlockType};
use diffuse_nn::{MlpConfig, UnetConfig};
use diffuse_train::TrainConfig;
use serde::{Deserialize, Serialize};

use crate::axes::{FamilyName, KindName};

mod elbo;
pub mod latent;
mod ncsn;
mod score;
pub use elbo::{VaeConfig, VdmConfig};
pub use latent::{AutoencoderSection, LatentDiffusion, LatentSection};
pub use ncsn::NcsnConfig;
pub use score::{ScoreConfig, SdeName};

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

    /// Where its files are looked for without `--data-dir`: `data/<name>`.
    pub fn default_dir(self) -> PathBuf {
        PathBuf::from("data").join(self.name())
    }
}

/// Where a run's data comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source<'a> {
    /// The user's own points (`data.path`).
    File(&'a Path),
    /// A built-in 2-D set.
    Toy(ToyDataset),
    Images(ImageDataset),
}

/// Where the training data comes from. The fields after `dataset` belong to one kind of data;
/// the other kind's are left out (and refused when set). A field a file leaves out is unset:
/// `train` lays files over the dataset's preset, which sets its kind's fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A built-in 2-D set (`swiss_roll`, `two_moons`, `eight_gaussians`, `circles`,
    /// `checkerboard`) or an image set (`mnist`, `fashion_mnist`, `cifar10`, `folder`); ignored
    /// when `path` is set.
    #[serde(default = "swiss_roll")]
    pub dataset: String,
    /// Points: the user's own, `.npy` (float32/float64, [N, 2]) or `.csv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Points drawn from a built-in set for training (`DEFAULT_TRAIN_POINTS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_points: Option<usize>,
    /// Points held out for evaluation (drawn from a built-in set, or split off a file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out: Option<usize>,
    /// Points: standardize each dimension to zero mean and unit variance before training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standardize: Option<bool>,
    /// Images: where the files are (default: `data/<dataset>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Images: random horizontal flips while training (on for CIFAR-10 and folders: digits and
    /// letters are not mirror-symmetric).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_flip: Option<bool>,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: "swiss_roll".into(),
            path: None,
            train_points: Some(DEFAULT_TRAIN_POINTS),
            held_out: Some(2_000),
            standardize: Some(true),
            dir: None,
            random_flip: None,
        }
    }
}

impl DataConfig {
    /// What `dataset` and `path` name: an unknown name is an error listing the built-in sets.
    pub fn source(&self) -> Result<Source<'_>> {
        if let Some(path) = &self.path {
            return Ok(Source::File(path));
        }
        if let Some(set) = ImageDataset::from_name(&self.dataset) {
            return Ok(Source::Images(set));
        }
        Ok(Source::Toy(ToyDataset::from_name(&self.dataset)?))
    }

    /// The kind of data these fields name.
    fn kind(&self) -> KindName {
        match self.source() {
            Ok(Source::Images(_)) => KindName::Images,
            _ => KindName::Points,
        }
    }

    pub fn train_points(&self) -> usize {
        self.train_points.unwrap_or(DEFAULT_TRAIN_POINTS)
    }

    pub fn held_out(&self) -> usize {
        self.held_out.unwrap_or(2_000)
    }

    /// The image set these fields name (the caller has checked the family).
    pub fn image_dataset(&self) -> Result<ImageDataset> {
        match self.source()? {
            Source::Images(set) => Ok(set),
            _ => bail!("data.dataset {:?} is not an image set", self.dataset),
        }
    }

    /// The image folder: `dir`, or `data/<dataset>`.
    pub fn image_dir(&self) -> Result<PathBuf> {
        let set = self.image_dataset()?;
        Ok(self.dir.clone().unwrap_or_else(|| set.default_dir()))
    }
}

/// How `train` draws its final samples and pictures: points with DDPM over all T steps (its
/// `variance_type`), images with DDIM (`ddim_steps`, eta 0). As in [`DataConfig`], a field a
/// file leaves out is unset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    /// Points drawn for `samples.png` and the quality figure, or images in `samples.png`.
    pub n: usize,
    /// Clamp the x_0 estimate to [-r, r] (model space); written to the scheduler config.
    #[serde(default)]
    pub clip_sample: Option<f64>,
    /// Points: DDPM's reverse variance for a model with a fixed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variance_type: Option<VarianceType>,
    /// Images: DDIM steps (eta = 0) for the pictures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ddim_steps: Option<usize>,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            n: 2000,
            clip_sample: None,
            variance_type: Some(VarianceType::FixedSmall),
            ddim_steps: None,
        }
    }
}

/// The network, and with it the model family.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    /// An MLP denoiser on points (`[model]`).
    Mlp(MlpConfig),
    /// diffusers' `UNet2DModel` on images (`[unet]`).
    Unet(UnetConfig),
}

impl ModelConfig {
    /// The kind of data the network takes.
    pub fn kind(&self) -> KindName {
        match self {
            Self::Mlp(_) => KindName::Points,
            Self::Unet(_) => KindName::Images,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RunConfigFile", into = "RunConfigFile")]
pub struct RunConfig {
    /// The model family (`crate::families`).
    pub family: FamilyName,
    pub data: DataConfig,
    pub schedule: ScheduleConfig,
    pub prediction: Prediction,
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub sample: SampleConfig,
    /// Points: filled in by `train`, the map from data space to model space.
    pub standardizer: Option<Standardizer>,
    /// The NCSN family's section (`family = "ncsn"`).
    pub ncsn: Option<NcsnConfig>,
    /// The score SDE family's section (`family = "score"`).
    pub score: Option<ScoreConfig>,
    /// The VAE's and the hierarchical VAE's section (`family = "vae"` or `"hvae"`).
    pub vae: Option<VaeConfig>,
    /// The VDM's section (`family = "vdm"`).
    pub vdm: Option<VdmConfig>,
    /// The first stage's section (`family = "autoencoder"`).
    pub autoencoder: Option<AutoencoderSection>,
    /// Latent diffusion's section (`family = "latent"`).
    pub latent: Option<LatentSection>,
}

/// A run config as a file holds it: the model under `model` (MLP) or `unet` (U-Net); the DDPM
/// family's `schedule` and `prediction` only for that family, another family's own section
/// only for it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunConfigFile {
    #[serde(default, skip_serializing_if = "FamilyName::is_ddpm")]
    family: FamilyName,
    #[serde(default)]
    data: DataConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schedule: Option<ScheduleConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prediction: Option<Prediction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<MlpConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unet: Option<UnetConfig>,
    #[serde(default)]
    train: TrainConfig,
    #[serde(default)]
    sample: SampleConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    standardizer: Option<Standardizer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ncsn: Option<NcsnConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    score: Option<ScoreConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vae: Option<VaeConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vdm: Option<VdmConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    autoencoder: Option<AutoencoderSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    latent: Option<LatentSection>,
}

impl TryFrom<RunConfigFile> for RunConfig {
    type Error = String;

    fn try_from(f: RunConfigFile) -> Result<Self, String> {
        let family = f.family;
        for (section, set, owner) in [
            ("schedule", f.schedule.is_some(), FamilyName::Ddpm),
            ("prediction", f.prediction.is_some(), FamilyName::Ddpm),
            ("ncsn", f.ncsn.is_some(), FamilyName::Ncsn),
            ("score", f.score.is_some(), FamilyName::Score),
            ("vae", f.vae.is_some(), FamilyName::Vae),
            ("vdm", f.vdm.is_some(), FamilyName::Vdm),
            (
                "autoencoder",
                f.autoencoder.is_some(),
                FamilyName::Autoencoder,
            ),
            ("latent", f.latent.is_some(), FamilyName::Latent),
        ] {
            // One section serves both latent-variable families; latent diffusion is DDPM's
            // chain in latent space, with DDPM's sections, or the score SDE's or the VDM's with
            // that family's section.
            let latent = (family == FamilyName::Latent)
                .then(|| f.latent.as_ref().map(|l| l.diffusion))
                .flatten();
            let owns = family == owner
                || (owner == FamilyName::Vae && family == FamilyName::Hvae)
                || (owner == FamilyName::Ddpm && family.uses_chain())
                || (owner == FamilyName::Score && latent == Some(LatentDiffusion::Score))
                || (owner == FamilyName::Vdm && latent == Some(LatentDiffusion::Vdm));
            if set && !owns {
                return Err(format!(
                    "`{section}` applies to the {} family, and this run's family is {}",
                    owner.name(),
                    family.name()
                ));
            }
        }
        let model = match (f.model, f.unet) {
            (Some(m), None) => ModelConfig::Mlp(m),
            (None, Some(u)) => ModelConfig::Unet(u),
            (None, None) => ModelConfig::Mlp(MlpConfig::default()),
            (Some(_), Some(_)) => {
                return Err("a run has one model: a `model` section (an MLP on points) or a `unet` section (a U-Net on images), not both".into());
            }
        };
        Ok(Self {
            family: f.family,
            data: f.data,
            schedule: f.schedule.unwrap_or_default(),
            prediction: f.prediction.unwrap_or_default(),
            model,
            train: f.train,
            sample: f.sample,
            standardizer: f.standardizer,
            ncsn: f.ncsn,
            score: f.score,
            vae: f.vae,
            vdm: f.vdm,
            autoencoder: f.autoencoder,
            latent: f.latent,
        })
    }
}

impl From<RunConfig> for RunConfigFile {
    fn from(c: RunConfig) -> Self {
        let (model, unet) = match c.model {
            ModelConfig::Mlp(m) => (Some(m), None),
            ModelConfig::Unet(u) => (None, Some(u)),
        };
        let ddpm = c.family.uses_chain();
        Self {
            family: c.family,
            data: c.data,
            schedule: ddpm.then_some(c.schedule),
            prediction: ddpm.then_some(c.prediction),
            model,
            unet,
            train: c.train,
            sample: c.sample,
            standardizer: c.standardizer,
            ncsn: c.ncsn,
            score: c.score,
            vae: c.vae,
            vdm: c.vdm,
            autoencoder: c.autoencoder,
            latent: c.latent,
        }
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            family: FamilyName::Ddpm,
            data: DataConfig::default(),
            schedule: ScheduleConfig::default(),
            prediction: Prediction::default(),
            model: ModelConfig::Mlp(MlpConfig::default()),
            train: TrainConfig::default(),
            sample: SampleConfig::default(),
            standardizer: None,
            ncsn: None,
            score: None,
            vae: None,
            vdm: None,
            autoencoder: None,
            latent: None,
        }
    }
}

/// The MLP of the 2-D presets: the default one with 32 Fourier features of each coordinate
/// (`input_embed_dim`, Tancik et al. 2020). Measured on `ring16` (16 tight Gaussians on a
/// circle; 20,000 samples against the data-vs-data floor): without them DDPM, NCSN and the
/// score SDEs all stayed at 6.4-8.0x, a wider MLP (256) at 7.1x, a wider and deeper one (256 x 4)
/// at 7.1x; with them DDPM came to 1.21x (1.25x at width 256).
pub fn points_mlp() -> MlpConfig {
    MlpConfig {
        input_embed_dim: 32,
        ..MlpConfig::default()
    }
}

/// The 2-D presets' batch: 1024 (20,000 steps, about 45 s on 2 cores). Measured with NCSN,
/// seed 0, 40,000-60,000 samples against the averaged floor: batch 256 left the swiss roll
/// at 1.51x and ring16 at 1.58x, 1024 at 1.03x and 1.08x; a longer EMA at batch 256 (0.999)
/// at 1.42x and 1.33x; batch 1024 for 10,000 steps (the same time as 256 for 20,000) at
/// 1.24x on the swiss roll (`experiments/families/README.md`).
pub const POINTS_BATCH: usize = 1024;

fn swiss_roll() -> String {
    "swiss_roll".into()
}

/// Fewest held-out points the quality figure is computed on.
pub const MIN_HELD_OUT: usize = 10;
/// Most held-out points: the sliced Wasserstein distance sorts them 256 times.
pub const MAX_HELD_OUT: usize = 1_000_000;
/// Most points drawn from a built-in set.
pub const MAX_TRAIN_POINTS: usize = 10_000_000;
/// Points drawn from a built-in set for training unless the config says otherwise: a million,
/// so that a model is measured against the set itself rather than against one small draw of it.
/// With 10,000 (the default until issue 23) a model that reproduced its draw exactly would stand
/// at sqrt(2) times the data-vs-data floor at 20,000 points (the draw's own error adds to the
/// samples'); measured on the swiss roll's DDPM default (seed 0, batch 256, 60,000 samples
/// against the 30-pair floor): 1.64x (standard error 0.23) with 10,000 points, 1.24x (0.10)
/// with a million (`experiments/families/README.md`).
pub const DEFAULT_TRAIN_POINTS: usize = 1_000_000;

/// The CPU preset U-Net: `widths.len()` levels, attention at the lowest and in the middle.
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

impl RunConfig {
    /// The preset for a dataset name: the MLP defaults for points, the CPU U-Net presets for
    /// images (README, "Images", has their time and pictures).
    pub fn preset(dataset: &str) -> Self {
        let Some(set) = ImageDataset::from_name(dataset) else {
            let mut c = Self::default();
            c.data.dataset = dataset.into();
            c.model = ModelConfig::Mlp(points_mlp());
            c.train.batch_size = POINTS_BATCH;
            return c;
        };
        let (unet, random_flip) = match set {
            // 28 -> 14 -> 7, attention at 7x7 and in the middle block: 280k parameters, about
            // 11 steps/s at batch 32 on 2 cores (README, "Images").
            ImageDataset::Mnist | ImageDataset::FashionMnist => {
                (unet(28, 1, &[16, 32, 32], 16), false)
            }
            // 32 -> 16 -> 8, attention at 8x8 and in the middle block.
            ImageDataset::Cifar10 | ImageDataset::Folder => (unet(32, 3, &[32, 64, 64], 32), true),
        };
        Self {
            family: FamilyName::Ddpm,
            data: DataConfig {
                dataset: set.name().into(),
                path: None,
                train_points: None,
                held_out: None,
                standardize: None,
                dir: None,
                random_flip: Some(random_flip),
            },
            schedule: ScheduleConfig::default(),
            prediction: Prediction::Epsilon,
            model: ModelConfig::Unet(unet),
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
            sample: SampleConfig {
                n: 64,
                clip_sample: Some(1.0),
                variance_type: None,
                ddim_steps: Some(50),
            },
            standardizer: None,
            ncsn: None,
            score: None,
            vae: None,
            vdm: None,
            autoencoder: None,
            latent: None,
        }
    }

    /// The kind of data of the run: its network's.
    pub fn kind(&self) -> KindName {
        self.model.kind()
    }

    /// The MLP of a point run.
    pub fn mlp(&self) -> Result<&MlpConfig> {
        match &self.model {
            ModelConfig::Mlp(m) => Ok(m),
            ModelConfig::Unet(_) => bail!("an image run has no MLP"),
        }
    }

    /// The U-Net of an image run.
    pub fn unet(&self) -> Result<&UnetConfig> {
        match &self.model {
            ModelConfig::Unet(u) => Ok(u),
            ModelConfig::Mlp(_) => bail!("a point run has no U-Net"),
        }
    }

    /// Whether the network also outputs its reverse variance (improved DDPM): the loss's
    /// `variance` is the one place this is chosen.
    pub fn learned_variance(&self) -> bool {
        self.train.loss.variance == ReverseVariance::LearnedRange
    }

    /// Sizes the network's output for the loss: twice the data's channels (coordinates) for a
    /// learned variance.
    pub fn fit_output_to_loss(&mut self) {
        let learned = self.learned_variance();
        match &mut self.model {
            ModelConfig::Mlp(m) => m.learned_variance = learned,
            ModelConfig::Unet(u) => u.out_channels = self.train.loss.output_channels(u.in_channels),
        }
    }

    /// The run directory's config file.
    pub fn file_name(&self) -> &'static str {
        self.kind().run_config_file()
    }

    /// Checks every part of the config that can be checked before any data is read.
    pub fn validate(&self) -> Result<()> {
        if let Some((field, value)) = first_non_finite(&toml::Value::try_from(self)?, "") {
            bail!("{field} is {value}; every number of a run config must be finite");
        }
        self.train.validate()?;
        if self.sample.n == 0 {
            bail!("sample.n must be at least 1");
        }
        match self.data.kind() {
            KindName::Points => self.validate_points()?,
            KindName::Images => self.validate_images()?,
        }
        match self.family {
            FamilyName::Ddpm => self.validate_ddpm(),
            FamilyName::Ncsn => self.validate_ncsn(),
            FamilyName::Score => self.validate_score(),
            FamilyName::Vae | FamilyName::Hvae => self.validate_vae(),
            FamilyName::Vdm => self.validate_vdm(),
            FamilyName::Autoencoder => self.validate_autoencoder(),
            FamilyName::Latent => self.validate_latent(),
        }
    }

    /// The first stage: images, its section, and none of DDPM's fields.
    fn validate_autoencoder(&self) -> Result<()> {
        self.refuse_points()?;
        let Some(section) = &self.autoencoder else {
            bail!("family \"autoencoder\" needs an [autoencoder] section");
        };
        let (channels, size) = self.image_shape()?;
        section.validate(channels, size)?;
        let vae = section.diffusers(channels, size, 1.0);
        crate::memory::check_autoencoder_training(&vae, size, size, self.train.batch_size)?;
        self.refuse_ddpm_fields("autoencoder")
    }

    /// Latent diffusion: DDPM's fields and an autoencoder named. (That the U-Net fits its
    /// latents is checked where the autoencoder is read: `train` (`RunConfig::fit_latent_unet`,
    /// the objective) and the run's pipeline folder; sampling a run reads its own `vqvae/`, so
    /// it does not need `latent.vae` to exist any more.)
    fn validate_latent(&self) -> Result<()> {
        self.refuse_points()?;
        let Some(section) = &self.latent else {
            bail!("family \"latent\" needs a [latent] section");
        };
        section.vae()?;
        match section.diffusion {
            LatentDiffusion::Ddpm => self.validate_ddpm(),
            LatentDiffusion::Score => {
                let Some(score) = &self.score else {
                    bail!(
                        "latent diffusion by a score SDE needs a [score] section (train --family latent --sde vp)"
                    );
                };
                score.validate()?;
                self.refuse_ddpm_fields("latent diffusion by a score SDE")
            }
            LatentDiffusion::Vdm => {
                let Some(vdm) = &self.vdm else {
                    bail!(
                        "latent diffusion by the VDM needs a [vdm] section (train --family latent --diffusion vdm)"
                    );
                };
                vdm.validate()?;
                self.refuse_ddpm_fields("latent diffusion by the VDM")
            }
        }
    }

    /// Latent diffusion by `diffusion` (`train --family latent --diffusion`, `--sde`): a score
    /// SDE's `[score]` section (of `sde`, VP by default) or the VDM's `[vdm]` at their image
    /// defaults, DDPM's sampling fields and loss cleared; DDPM's chain as it is.
    pub fn with_latent_diffusion(
        mut self,
        diffusion: LatentDiffusion,
        sde: Option<SdeName>,
    ) -> Result<Self> {
        if diffusion == LatentDiffusion::Ddpm && sde.is_none() {
            return Ok(self);
        }
        let Some(latent) = self.latent.as_mut() else {
            bail!(
                "--diffusion and --sde with --family latent need image data (--dataset mnist, fashion_mnist, cifar10, folder)"
            );
        };
        if sde.is_some() && diffusion != LatentDiffusion::Score {
            bail!(
                "--sde chooses a score SDE, and this latent run's diffusion is {}",
                diffusion.name()
            );
        }
        latent.diffusion = diffusion;
        self.score = (diffusion == LatentDiffusion::Score)
            .then(|| ScoreConfig::for_kind(sde.unwrap_or(SdeName::Vp), KindName::Images));
        self.vdm =
            (diffusion == LatentDiffusion::Vdm).then(|| VdmConfig::for_kind(KindName::Images));
        self.sample.clip_sample = None;
        self.sample.ddim_steps = None;
        self.sample.variance_type = None;
        self.train.loss = Default::default();
        Ok(self)
    }

    /// Latent diffusion: the `unet` section made to work on the autoencoder's latents
    /// ([`LatentSection::fit_unet`]); nothing for other families.
    pub fn fit_latent_unet(&mut self) -> Result<()> {
        let (Some(latent), ModelConfig::Unet(unet)) = (&self.latent, &mut self.model) else {
            return Ok(());
        };
        latent.fit_unet(unet)?;
        Ok(())
    }

    /// Latent diffusion and its first stage train on images only.
    fn refuse_points(&self) -> Result<()> {
        if self.kind() == KindName::Points {
            bail!(
                "the {} family trains on images (--dataset mnist, fashion_mnist, cifar10, folder), not points",
                self.family.name()
            );
        }
        Ok(())
    }

    /// The images' channels and side: the `unet` section's, or for latent diffusion (whose U-Net
    /// works on latents) the `[latent]` section's.
    pub fn image_shape(&self) -> Result<(usize, usize)> {
        if let Some(latent) = &self.latent {
            return Ok((latent.image_channels, latent.image_size));
        }
        let unet = self.unet()?;
        let size = unet
            .sample_size
            .context("unet.sample_size must be set (the image side in pixels)")?;
        Ok((unet.in_channels, size))
    }

    /// The DDPM family's fields: the sampler `train` draws its pictures with is built now, so
    /// that a bad sampling field fails before training (and any download) rather than after it.
    fn validate_ddpm(&self) -> Result<()> {
        if self.kind() == KindName::Images {
            let steps = self.sample.ddim_steps.unwrap_or(0);
            if steps == 0 || steps > self.schedule.num_train_timesteps {
                bail!(
                    "sample.ddim_steps must be in 1..={}, got {steps}",
                    self.schedule.num_train_timesteps
                );
            }
        }
        let schedule = self.schedule.build()?;
        let scheduler = self.scheduler_config();
        match self.sample.ddim_steps {
            Some(steps) => DdimSampler::new(&schedule, scheduler.ddim(steps, 0.0)).map(drop),
            None => DdpmSampler::new(&schedule, scheduler.ddpm(None)).map(drop),
        }
        .context("sample.clip_sample")?;
        Ok(())
    }

    /// The NCSN family: its section, and none of DDPM's sampling fields or losses.
    fn validate_ncsn(&self) -> Result<()> {
        let Some(ncsn) = &self.ncsn else {
            bail!("family \"ncsn\" needs an [ncsn] section (langevin_steps at least)");
        };
        ncsn.validate()?;
        self.refuse_ddpm_fields("ncsn")
    }

    /// The score SDE family: its section, and none of DDPM's sampling fields or losses.
    fn validate_score(&self) -> Result<()> {
        let Some(score) = &self.score else {
            bail!("family \"score\" needs a [score] section (sde and steps at least)");
        };
        score.validate()?;
        self.refuse_ddpm_fields("score")
    }

    /// The VAE and the hierarchical VAE: their section, and none of DDPM's fields.
    fn validate_vae(&self) -> Result<()> {
        let Some(vae) = &self.vae else {
            bail!(
                "family \"{}\" needs a [vae] section (latent_dim, levels, hidden_layers, hidden_width, observation)",
                self.family.name()
            );
        };
        vae.validate(self.kind(), self.family == FamilyName::Hvae)?;
        self.refuse_ddpm_fields(self.family.name())
    }

    /// The VDM: its section, and none of DDPM's fields.
    fn validate_vdm(&self) -> Result<()> {
        let Some(vdm) = &self.vdm else {
            bail!("family \"vdm\" needs a [vdm] section (sample_steps at least)");
        };
        vdm.validate()?;
        self.refuse_ddpm_fields("vdm")
    }

    /// DDPM's sampling fields and losses, set on a run of another family, are refused by name.
    fn refuse_ddpm_fields(&self, family: &str) -> Result<()> {
        let s = &self.sample;
        for (field, set) in [
            ("sample.clip_sample", s.clip_sample.is_some()),
            ("sample.ddim_steps", s.ddim_steps.is_some()),
            ("sample.variance_type", s.variance_type.is_some()),
            (
                "train.loss",
                self.train.loss != diffuse_core::discrete::loss::LossConfig::default(),
            ),
        ] {
            if set {
                bail!("{field} applies to the ddpm family, not to {family}");
            }
        }
        Ok(())
    }

    /// This config moved to `family`, with that family's section at its defaults for the
    /// config's kind of data and the DDPM family's sampling fields cleared: what `train
    /// --family` lays a config file over.
    pub fn with_family(mut self, family: FamilyName) -> Self {
        self.family = family;
        if !family.uses_chain() {
            self.sample.clip_sample = None;
            self.sample.ddim_steps = None;
            self.sample.variance_type = None;
            self.train.loss = Default::default();
        }
        self.ncsn = (family == FamilyName::Ncsn).then(|| NcsnConfig::for_kind(self.kind()));
        self.score =
            (family == FamilyName::Score).then(|| ScoreConfig::for_kind(SdeName::Vp, self.kind()));
        self.vae = match family {
            FamilyName::Vae | FamilyName::Hvae => {
                let levels = if family == FamilyName::Vae { 1 } else { 4 };
                let conv = matches!(
                    self.data.image_dataset(),
                    Ok(ImageDataset::Cifar10 | ImageDataset::Folder)
                );
                Some(VaeConfig::for_kind(self.kind(), levels, conv))
            }
            _ => None,
        };
        self.vdm = (family == FamilyName::Vdm).then(|| VdmConfig::for_kind(self.kind()));
        self.autoencoder = match (&self.model, family) {
            (ModelConfig::Unet(unet), FamilyName::Autoencoder) => {
                Some(AutoencoderSection::default_for_images(unet.in_channels))
            }
            _ => None,
        };
        self.latent = match (&self.model, family) {
            (ModelConfig::Unet(unet), FamilyName::Latent) => Some(LatentSection {
                diffusion: LatentDiffusion::Ddpm,
                vae: None,
                image_channels: unet.in_channels,
                image_size: unet.sample_size.unwrap_or(0),
            }),
            _ => None,
        };
        if family == FamilyName::Latent {
            // Latents are not bounded as pixels are (LDM's DDIM does not clip), and are
            // continuous: the bound's decoder is a density.
            self.sample.clip_sample = None;
            self.train.loss.decoder = Decoder::Continuous;
        }
        self
    }

    /// The family's fields are set and the other family's are not.
    fn check_fields(&self, family: &str, other: &[(&str, bool)]) -> Result<()> {
        for (field, set) in other {
            if *set {
                bail!(
                    "{field} does not apply to {family}; data.dataset is {:?}",
                    self.data.dataset
                );
            }
        }
        Ok(())
    }

    fn validate_points(&self) -> Result<()> {
        let ModelConfig::Mlp(model) = &self.model else {
            bail!(
                "data.dataset {:?} is a set of points, which an MLP (a `model` section) trains on, not a U-Net (`unet`)",
                self.data.dataset
            );
        };
        let (d, s) = (&self.data, &self.sample);
        self.check_fields(
            "points",
            &[
                ("data.dir", d.dir.is_some()),
                ("data.random_flip", d.random_flip.is_some()),
                ("sample.ddim_steps", s.ddim_steps.is_some()),
            ],
        )?;
        model.validate()?;
        let held_out = d.held_out();
        if held_out < MIN_HELD_OUT {
            bail!("data.held_out must be at least {MIN_HELD_OUT}, got {held_out}");
        }
        if d.path.is_none() && d.train_points() == 0 {
            bail!("data.train_points must be at least 1");
        }
        if held_out > MAX_HELD_OUT {
            bail!(
                "data.held_out must be at most {MAX_HELD_OUT} (the quality figure's cost grows with it), got {held_out}"
            );
        }
        if d.path.is_none() && d.train_points() > MAX_TRAIN_POINTS {
            bail!(
                "data.train_points must be at most {MAX_TRAIN_POINTS} for a built-in set (they are held in memory; batches are drawn from them with replacement), got {}",
                d.train_points()
            );
        }
        crate::memory::check_mlp_training(model, self.train.batch_size)?;
        crate::memory::check_mlp_sampling(model, self.sample.n)?;
        if model.data_dim != 2 {
            bail!(
                "model.data_dim must be 2, got {}: point runs draw 2-D pictures and metrics",
                model.data_dim
            );
        }
        if let Some(std) = &self.standardizer {
            std.check_dim(model.data_dim)?;
        }
        if model.learned_variance != self.learned_variance() {
            bail!(
                "model.learned_variance is {} but train.loss.variance is {:?}: the network learns its variance exactly when the loss does",
                model.learned_variance,
                self.train.loss.variance
            );
        }
        if self.sample.variance_type == Some(VarianceType::LearnedRange) && !self.learned_variance()
        {
            bail!(
                "sample.variance_type = \"learned_range\" needs a model that learns its variance: set train.loss.variance = \"learned_range\" (with the vlb or hybrid objective)"
            );
        }
        Ok(())
    }

    fn validate_images(&self) -> Result<()> {
        let ModelConfig::Unet(unet) = &self.model else {
            bail!(
                "data.dataset {:?} is a set of images, which a U-Net (a `unet` section) trains on, not an MLP (`model`)",
                self.data.dataset
            );
        };
        let (d, s) = (&self.data, &self.sample);
        self.check_fields(
            "images",
            &[
                ("data.path", d.path.is_some()),
                ("data.train_points", d.train_points.is_some()),
                ("data.held_out", d.held_out.is_some()),
                ("data.standardize", d.standardize.is_some()),
                ("sample.variance_type", s.variance_type.is_some()),
                ("standardizer", self.standardizer.is_some()),
            ],
        )?;
        unet.validate()?;
        // unet.validate checks that the size suits the U-Net's levels.
        let Some(size) = unet.sample_size else {
            bail!("unet.sample_size must be set for training (the image side in pixels)");
        };
        let out = self.train.loss.output_channels(unet.in_channels);
        if unet.out_channels != out {
            bail!(
                "unet.out_channels is {} but must be {out}: in_channels ({}){}",
                unet.out_channels,
                unet.in_channels,
                if out > unet.in_channels {
                    ", twice for a learned variance"
                } else {
                    ""
                }
            );
        }
        crate::memory::check_unet_training(unet, size, self.train.batch_size)?;
        crate::memory::check_unet_sampling(unet, size, size, self.sample.n)?;
        Ok(())
    }

    /// The run's sampling settings as a diffusers scheduler config, from which every `--sampler`
    /// is built; an image run directory is saved with it. A `DDIMScheduler`, or a
    /// `DDPMScheduler` with `learned_range` for a learned variance (diffusers' DDIM cannot read
    /// one); a point run, which draws its pictures with DDPM, always a `DDPMScheduler` with its
    /// `variance_type`.
    pub fn scheduler_config(&self) -> SchedulerConfig {
        let learned = self.learned_variance();
        let mut c = SchedulerConfig::for_trained(
            &self.schedule,
            self.prediction,
            self.sample.clip_sample,
            learned,
        );
        if self.kind() == KindName::Points {
            c.class = SchedulerClass::Ddpm;
            c.variance_type = match (learned, self.sample.variance_type) {
                (true, _) => Some(DiffusersVariance::LearnedRange),
                (false, Some(VarianceType::FixedLarge)) => Some(DiffusersVariance::FixedLarge),
                (false, _) => None,
            };
        }
        c
    }

    /// `self` with the fields of a config file laid over it: any subset of the fields, nested
    /// tables merged key by key. A model section of the other family replaces this one's model
    /// (a file that names both is refused).
    pub fn overlay(&self, file: &ConfigFile) -> Result<Self> {
        let what = || format!("invalid run config {}", file.path.display());
        let (has_model, has_unet) = file.model_sections();
        let mut base = self.clone();
        match (&base.model, has_model, has_unet) {
            (ModelConfig::Unet(_), true, false) => base.model = ModelConfig::Mlp(points_mlp()),
            (ModelConfig::Mlp(_), false, true) => {
                base.model = ModelConfig::Unet(serde_json::from_str("{}")?)
            }
            _ => {}
        }
        match &file.fields {
            // TOML is merged as TOML: its values (inf, for one) need not be JSON's.
            Fields::Toml(overlay) => {
                let mut merged = toml::Value::try_from(&base)?;
                merge_toml(&mut merged, toml::Value::Table(overlay.clone()));
                merged.try_into().with_context(what)
            }
            Fields::Json(overlay) => {
                let mut merged = serde_json::to_value(&base)?;
                merge_json(&mut merged, overlay.clone());
                serde_json::from_value(merged).with_context(what)
            }
        }
    }

    /// The run config a run directory holds (`config.json` or `diffuse_config.json`), checked.
    pub fn load_run(dir: &Path) -> Result<Self> {
        let Some(path) = KindName::ALL
            .iter()
            .map(|f| dir.join(f.run_config_file()))
            .find(|p| p.is_file())
        else {
            bail!(
                "{} is not a diffuse run directory (no config.json or diffuse_config.json)",
                dir.display()
            );
        };
        let text = diffuse_fs::read_to_string(&path, diffuse_fs::Limit::CONFIG)?;
        let config: Self =
            serde_json::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
        config
            .validate()
            .with_context(|| format!("{} holds an invalid config", path.display()))?;
        Ok(config)
    }
}

/// A `--config` file: any subset of a run config's fields.
pub struct ConfigFile {
    path: PathBuf,
    fields: Fields,
}

enum Fields {
    Toml(toml::Table),
    Json(serde_json::Value),
}

impl ConfigFile {
    /// Reads a config file; the format follows the extension (`.toml` or `.json`).
    pub fn read(path: &Path) -> Result<Self> {
        let text = diffuse_fs::read_to_string(path, diffuse_fs::Limit::CONFIG)
            .context("cannot read the --config file")?;
        let fields = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Fields::Toml(
                toml::from_str(&text)
                    .with_context(|| format!("invalid TOML config {}", path.display()))?,
            ),
            Some("json") => Fields::Json(
                serde_json::from_str(&text)
                    .with_context(|| format!("invalid JSON config {}", path.display()))?,
            ),
            _ => bail!("config file {} must end in .toml or .json", path.display()),
        };
        Ok(Self {
            path: path.into(),
            fields,
        })
    }

    /// Whether the file has a `model` and a `unet` section.
    fn model_sections(&self) -> (bool, bool) {
        let has = |key: &str| match &self.fields {
            Fields::Toml(t) => t.contains_key(key),
            Fields::Json(j) => j.get(key).is_some(),
        };
        (has("model"), has("unet"))
    }

    /// The file's `data.dataset`, which chooses the preset it is laid over.
    pub fn dataset(&self) -> Option<&str> {
        match &self.fields {
            Fields::Toml(t) => t.get("data")?.get("dataset")?.as_str(),
            Fields::Json(j) => j.pointer("/data/dataset")?.as_str(),
        }
    }

    /// The file's `latent.diffusion`, which chooses (with `family`) the section it is laid over.
    pub fn latent_diffusion(&self) -> Result<Option<LatentDiffusion>> {
        self.field(&["latent", "diffusion"], "it is ddpm, score or vdm")
    }

    /// The file's `family`, which chooses the family section it is laid over.
    pub fn family(&self) -> Result<Option<FamilyName>> {
        self.field(
            &["family"],
            "families are ddpm, ncsn, score, vae, hvae, vdm, autoencoder and latent",
        )
    }

    /// The file's value at `path` (keys from the top) as a `T`, read before the file is laid
    /// over anything; `hint` says what it may be.
    fn field<T: serde::de::DeserializeOwned>(
        &self,
        path: &[&str],
        hint: &str,
    ) -> Result<Option<T>> {
        let value = match &self.fields {
            Fields::Toml(t) => {
                let mut v = t.get(path[0]);
                for key in &path[1..] {
                    v = v.and_then(|v| v.get(key));
                }
                v.map(serde_json::to_value)
            }
            Fields::Json(j) => {
                let mut v = j.get(path[0]);
                for key in &path[1..] {
                    v = v.and_then(|v| v.get(key));
                }
                v.map(|v| Ok(v.clone()))
            }
        };
        let Some(value) = value else {
            return Ok(None);
        };
        let value = value?;
        serde_json::from_value(value.clone())
            .map(Some)
            .with_context(|| {
                format!(
                    "{}: `{}` is {value}; {hint}",
                    self.path.display(),
                    path.join(".")
                )
            })
    }
}

/// The first NaN or infinite number in a config (TOML keeps them; JSON cannot hold them), with
/// its dotted path: every field of every section is checked, those added later included.
fn first_non_finite(value: &toml::Value, path: &str) -> Option<(String, f64)> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        toml::Value::Float(f) if !f.is_finite() => Some((path.to_string(), *f)),
        toml::Value::Table(t) => t.iter().find_map(|(k, v)| first_non_finite(v, &join(k))),
        toml::Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| first_non_finite(v, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// Lays `overlay` over `base`: objects merge key by key, anything else replaces.
fn merge_json(base: &mut serde_json::Value, overlay: serde_json::Value) {
    match (base, overlay) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                merge_json(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

/// [`merge_json`] for TOML: tables merge key by key, anything else replaces.
fn merge_toml(base: &mut toml::Value, overlay: toml::Value) {
    match (base, overlay) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge_toml(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_names_its_family_by_its_model_section() {
        let points = RunConfig::preset("two_moons");
        let json = serde_json::to_value(&points).unwrap();
        assert!(json.get("model").is_some() && json.get("unet").is_none());
        assert!(json["data"].get("random_flip").is_none());
        let images = RunConfig::preset("mnist");
        let json = serde_json::to_value(&images).unwrap();
        assert!(json.get("unet").is_some() && json.get("model").is_none());
        assert!(json["data"].get("train_points").is_none());
        for c in [points, images] {
            let back: RunConfig =
                serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
            assert_eq!(back, c);
            // A TOML file is laid over the preset as TOML, where None is a missing key.
            let back: RunConfig = toml::Value::try_from(&c).unwrap().try_into().unwrap();
            assert_eq!(back, c);
            c.validate().unwrap();
        }
        let both = serde_json::json!({"model": {}, "unet": {}});
        let err = serde_json::from_value::<RunConfig>(both).unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
    }

    #[test]
    fn a_model_that_does_not_fit_the_data_is_refused() {
        let mut c = RunConfig::preset("mnist");
        c.model = ModelConfig::Mlp(MlpConfig::default());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("U-Net"), "{err}");
        let mut c = RunConfig::preset("swiss_roll");
        c.data.random_flip = Some(true);
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("data.random_flip"), "{err}");
    }

    #[test]
    fn every_field_must_be_finite() {
        let mut c = RunConfig::preset("swiss_roll");
        c.validate().unwrap();
        let ModelConfig::Mlp(m) = &mut c.model else {
            unreachable!()
        };
        m.input_embed_scale = f64::NAN;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("model.input_embed_scale is NaN"), "{err}");
        let mut c = RunConfig::preset("mnist");
        c.train.adam_beta2 = f64::INFINITY;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("train.adam_beta2 is inf"), "{err}");
        let mut c = RunConfig::preset("swiss_roll");
        c.standardizer = Some(Standardizer {
            mean: vec![0.0, f64::NEG_INFINITY],
            std: vec![1.0, 1.0],
        });
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("standardizer.mean[1] is -inf"), "{err}");
    }

    #[test]
    fn latent_diffusion_owns_the_section_of_its_model() {
        let mut c = RunConfig::preset("mnist")
            .with_family(FamilyName::Latent)
            .with_latent_diffusion(LatentDiffusion::Vdm, None)
            .unwrap();
        c.latent.as_mut().unwrap().vae = Some("ae".into());
        c.validate().unwrap();
        assert!(c.vdm.is_some() && c.score.is_none());
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["latent"]["diffusion"], "vdm");
        let back: RunConfig = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, c);
        // The [vdm] section belongs to a latent run only when its diffusion is the VDM.
        let mut ddpm = json.clone();
        ddpm["latent"]["diffusion"] = "ddpm".into();
        let err = serde_json::from_value::<RunConfig>(ddpm).unwrap_err();
        assert!(err.to_string().contains("`vdm` applies"), "{err}");
        let mut no_section = c.clone();
        no_section.vdm = None;
        let err = no_section.validate().unwrap_err().to_string();
        assert!(err.contains("needs a [vdm] section"), "{err}");
        let mut ddim = c.clone();
        ddim.sample.ddim_steps = Some(50);
        let err = ddim.validate().unwrap_err().to_string();
        assert!(err.contains("sample.ddim_steps"), "{err}");
        let latent = RunConfig::preset("mnist").with_family(FamilyName::Latent);
        let err = latent
            .clone()
            .with_latent_diffusion(LatentDiffusion::Vdm, Some(SdeName::Vp))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--sde chooses a score SDE"), "{err}");
        let score = latent
            .with_latent_diffusion(LatentDiffusion::Score, Some(SdeName::Ve))
            .unwrap();
        assert_eq!(score.score.as_ref().map(|s| s.sde), Some(SdeName::Ve));
        assert!(score.vdm.is_none());
        let points = RunConfig::preset("swiss_roll").with_family(FamilyName::Latent);
        let err = points
            .with_latent_diffusion(LatentDiffusion::Vdm, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("need image data"), "{err}");
    }

    #[test]
    fn the_loss_alone_chooses_a_learned_variance() {
        for dataset in ["swiss_roll", "mnist"] {
            let mut c = RunConfig::preset(dataset);
            c.train.loss.variance = ReverseVariance::LearnedRange;
            c.train.loss.objective =
                diffuse_core::discrete::loss::LossKind::Hybrid { lambda: 0.001 };
            assert!(
                c.validate().is_err(),
                "{dataset}: the output is not yet doubled"
            );
            c.fit_output_to_loss();
            c.validate().unwrap();
            assert_eq!(
                c.scheduler_config().variance_type,
                Some(DiffusersVariance::LearnedRange)
            );
        }
    }
}
