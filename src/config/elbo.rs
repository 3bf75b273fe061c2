//! The ELBO family's sections of a run config: `[vae]` (families `vae` and `hvae`: a Markovian
//! hierarchy of MLPs, one level for a VAE) and `[vdm]` (family `vdm`: the variational diffusion
//! model's schedule and bound; its noise predictor is the run's `model` MLP or `unet`).

use anyhow::{Result, bail};
use diffuse_core::elbo::Observation;
use diffuse_core::vdm::{DataModel, DiffusionTime};
use diffuse_nn::gamma::{GammaConfig, GammaKind};
use diffuse_nn::vae::HierarchyConfig;
use serde::{Deserialize, Serialize};

use crate::axes::KindName;

/// The first level's networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VaeNetwork {
    /// MLPs over the flattened example.
    Mlp,
    /// For images: stride-2 convolutions down, upsampling convolutions back
    /// (`diffuse_nn::vae::ConvLevel`); the levels above are MLPs.
    Conv,
}

/// A VAE's or Markovian HVAE's settings. Images are flattened for the MLPs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeConfig {
    /// Coordinates of each latent z_t.
    pub latent_dim: usize,
    /// The first level's networks: mlp (points, MNIST, Fashion-MNIST) or conv (images;
    /// CIFAR-10 and folders by default).
    #[serde(default = "mlp")]
    pub network: VaeNetwork,
    /// T: 1 for the `vae` family, 2 or more for `hvae`.
    pub levels: usize,
    pub hidden_layers: usize,
    pub hidden_width: usize,
    /// Sinusoidal features of each data coordinate for the first encoder (points: 32, as the
    /// 2-D denoisers'; images: none), and their scale.
    #[serde(default)]
    pub input_embed_dim: usize,
    #[serde(default = "embed_scale")]
    pub input_embed_scale: f64,
    /// p(x | z_1): gaussian (points), discretized (8-bit images, the default for images) or
    /// bernoulli (binarized images).
    pub observation: Observation,
    /// Steps over which the latent terms' weight rises from 0 to 1 (KL warm-up; 0: none).
    #[serde(default)]
    pub kl_warmup: usize,
}

fn embed_scale() -> f64 {
    25.0
}

fn mlp() -> VaeNetwork {
    VaeNetwork::Mlp
}

impl VaeConfig {
    /// The defaults for a kind of data and a number of levels: points, a 2-D latent (the
    /// data's own dimension) through 3 x 128 MLPs with Fourier features; images, a 16-D latent
    /// through 2 x 512 MLPs (MNIST's classic VAE widths; `conv`: the convolutional first
    /// level, 32 latents), the discretized decoder.
    pub fn for_kind(kind: KindName, levels: usize, conv: bool) -> Self {
        match kind {
            KindName::Points => Self {
                latent_dim: 2,
                network: VaeNetwork::Mlp,
                levels,
                hidden_layers: 3,
                hidden_width: 128,
                input_embed_dim: 32,
                input_embed_scale: embed_scale(),
                observation: Observation::Gaussian,
                kl_warmup: 1000,
            },
            KindName::Images => Self {
                latent_dim: if conv { 32 } else { 16 },
                network: if conv {
                    VaeNetwork::Conv
                } else {
                    VaeNetwork::Mlp
                },
                levels,
                hidden_layers: 2,
                hidden_width: 512,
                input_embed_dim: 0,
                input_embed_scale: embed_scale(),
                observation: Observation::Discretized,
                kl_warmup: 1000,
            },
        }
    }

    pub fn validate(&self, kind: KindName, hierarchical: bool) -> Result<()> {
        match (hierarchical, self.levels) {
            (false, 1) | (true, 2..=64) => {}
            (false, n) => bail!("vae.levels is {n}; a VAE has one level (family hvae has more)"),
            (true, n) => bail!("vae.levels must be in 2..=64 for an hvae, got {n}"),
        }
        if self.latent_dim == 0 || self.hidden_layers == 0 || self.hidden_width == 0 {
            bail!("vae.latent_dim, vae.hidden_layers and vae.hidden_width must be at least 1");
        }
        if kind == KindName::Points && self.network == VaeNetwork::Conv {
            bail!("vae.network conv applies to images; points take mlp");
        }
        match (kind, self.observation) {
            (KindName::Points, Observation::Gaussian) => {}
            (KindName::Points, o) => bail!(
                "vae.observation {} applies to 8-bit images; points take gaussian",
                o.name()
            ),
            (KindName::Images, Observation::Gaussian) => bail!(
                "vae.observation gaussian is a density over continuous data; images take discretized (8-bit) or bernoulli (binarized)"
            ),
            (KindName::Images, _) => {}
        }
        Ok(())
    }

    /// The networks for examples of `data_dim` coordinates (`image`: their [C, H, W]).
    pub fn hierarchy(&self, data_dim: usize, image: Option<[usize; 3]>) -> HierarchyConfig {
        HierarchyConfig {
            image: image.filter(|_| self.network == VaeNetwork::Conv),
            data_dim,
            latent_dim: self.latent_dim,
            levels: self.levels,
            hidden_layers: self.hidden_layers,
            hidden_width: self.hidden_width,
            input_embed_dim: self.input_embed_dim,
            input_embed_scale: self.input_embed_scale,
            output_channels: self.observation.output_channels(),
        }
    }
}

/// The VDM's settings (the paper's defaults where they apply).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VdmConfig {
    /// The schedule gamma(t): learned (the monotone network) or fixed_linear, its initial (or
    /// fixed) gamma(0) and gamma(1), the network's width.
    #[serde(default)]
    pub gamma: GammaConfig,
    /// Train on the discrete-time loss of this many steps; unset, the continuous-time loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_steps: Option<usize>,
    /// Antithetic (low-discrepancy) time sampling (the paper's; on by default).
    #[serde(default = "yes")]
    pub antithetic: bool,
    /// A learned schedule's interior minimizes the loss's variance (the paper's; on by
    /// default); off, it follows the bound's gradient like the rest.
    #[serde(default = "yes")]
    pub minimize_variance: bool,
    /// Ancestral sampling steps (the paper: 1000).
    pub sample_steps: usize,
}

fn yes() -> bool {
    true
}

impl VdmConfig {
    /// 1,000 sampling steps for points; 250 for images (a CPU budget: the paper takes 1,000).
    /// The schedule network has the paper's 1,024 hidden units for images (batches of 32) and
    /// 64 for points, whose batches of 1,024 times made the 1,024-unit network most of the cost:
    /// 22 steps/s against 114 with 64 units (2-core machine, alone; the fixed schedule: 402).
    pub fn for_kind(kind: KindName) -> Self {
        Self {
            gamma: GammaConfig {
                features: match kind {
                    KindName::Points => 64,
                    KindName::Images => 1024,
                },
                ..GammaConfig::default()
            },
            loss_steps: None,
            antithetic: true,
            minimize_variance: true,
            sample_steps: match kind {
                KindName::Points => 1000,
                KindName::Images => 250,
            },
        }
    }

    pub fn validate(&self) -> Result<()> {
        let g = &self.gamma;
        if g.gamma_min >= g.gamma_max {
            bail!(
                "vdm.gamma.gamma_min ({}) must be below vdm.gamma.gamma_max ({})",
                g.gamma_min,
                g.gamma_max
            );
        }
        if g.kind == GammaKind::Learned && g.features == 0 {
            bail!("vdm.gamma.features must be at least 1");
        }
        if self.loss_steps == Some(0) || self.sample_steps == 0 {
            bail!("vdm.loss_steps and vdm.sample_steps must be at least 1");
        }
        Ok(())
    }

    pub fn time(&self) -> DiffusionTime {
        match self.loss_steps {
            Some(t) => DiffusionTime::Discrete(t),
            None => DiffusionTime::Continuous,
        }
    }

    /// The data model of a kind: continuous points, 8-bit images.
    pub fn data_model(kind: KindName) -> DataModel {
        match kind {
            KindName::Points => DataModel::Continuous,
            KindName::Images => DataModel::Discretized,
        }
    }
}
