//! Latent diffusion's sections of a run config: `[autoencoder]` (family `autoencoder`: the first
//! stage, a KL- or VQ-regularized autoencoder with diffusers' architecture, trained on images
//! whose shape the run's `unet` section gives, as for the VAE) and `[latent]` (family `latent`:
//! DDPM, with its `schedule`, `prediction` and `sample` fields, a score SDE with its `[score]`
//! section, or the VDM with its `[vdm]` section, in the latent space of an autoencoder; the run's
//! `unet` works on the latents).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use diffuse_core::autoencoder::{AutoencoderLoss, Reconstruction};
use diffuse_nn::autoencoder::{
    AutoencoderConfig, Bottleneck, CoderConfig, DecoderBlockType, EncoderBlockType, KlFields,
    VqFields,
};
use diffuse_nn::unet::UnetConfig;
use serde::{Deserialize, Serialize};

/// How the latents are regularized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BottleneckKind {
    /// A diagonal Gaussian posterior pulled toward N(0, I) (diffusers' `AutoencoderKL`).
    Kl,
    /// A codebook (diffusers' `VQModel`).
    Vq,
}

/// The first stage's architecture and loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoencoderSection {
    pub bottleneck: BottleneckKind,
    pub latent_channels: usize,
    /// One entry per level; each level but the last halves the side (f = 2^(levels - 1)).
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub norm_num_groups: usize,
    /// Self-attention in the encoder's and the decoder's middle blocks.
    pub mid_block_add_attention: bool,
    pub reconstruction: Reconstruction,
    /// KL: the KL term's weight against the summed reconstruction error.
    pub kl_weight: f64,
    /// VQ: the codebook's entries.
    pub num_vq_embeddings: usize,
    /// VQ: beta, the commitment term's weight.
    pub commitment: f64,
    /// VQ: keep the codebook by exponential moving averages of this decay (VQ-VAE's appendix
    /// A.1; 0.99 there) instead of its loss term.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codebook_ema: Option<f64>,
    /// An optional perceptual term.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perceptual: Option<PerceptualSection>,
}

/// A perceptual term: the distance of the activations of a LeNet-5 trained by `diffuse
/// classifier` (28 x 28 grayscale images) of an image and its reconstruction, as LDM's LPIPS term
/// (whose VGG weights cannot be fetched here) but with the FD_LeNet network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerceptualSection {
    /// A `diffuse classifier` folder (lenet.safetensors, classifier.json).
    pub classifier: PathBuf,
    /// The term's weight against the mean reconstruction error.
    pub weight: f64,
}

impl AutoencoderSection {
    /// The defaults for images of `channels` channels: a KL autoencoder with f = 2 and as many
    /// latent channels as the images have (28 x 28 x 1 -> 14 x 14 x 1 for MNIST: 4x fewer
    /// values), widths 16/32 (165,000 parameters), L1 reconstruction and a KL weight of 1e-5 per
    /// summed pixel error. Chosen by the latent model's samples (`experiments/latent`, MNIST,
    /// 2,000 autoencoder steps and 5,000 latent DDPM steps at batch 32): f = 2 with one channel
    /// reconstructed at 30.3 dB PSNR (11.5 steps/s) and its latents left the latent U-Net two
    /// levels, whose samples reached FD_LeNet 18.0; f = 4 with four channels (16/32/32, the
    /// same 196 values) reconstructed at 27.4 dB (15.4 steps/s), but its 7 x 7 latents left one
    /// level and FD_LeNet 66-76 over three seeds, for half the latent training time.
    pub fn default_for_images(channels: usize) -> Self {
        Self {
            bottleneck: BottleneckKind::Kl,
            latent_channels: channels,
            block_out_channels: vec![16, 32],
            layers_per_block: 1,
            norm_num_groups: 8,
            mid_block_add_attention: true,
            reconstruction: Reconstruction::L1,
            kl_weight: 1e-5,
            num_vq_embeddings: 256,
            commitment: 0.25,
            codebook_ema: None,
            perceptual: None,
        }
    }

    /// The diffusers config of this autoencoder on images of `channels` and `size`.
    pub fn diffusers(
        &self,
        channels: usize,
        size: usize,
        scaling_factor: f64,
    ) -> AutoencoderConfig {
        let n = self.block_out_channels.len();
        let coder = CoderConfig {
            in_channels: channels,
            out_channels: channels,
            down_block_types: vec![EncoderBlockType::DownEncoderBlock2D; n],
            up_block_types: vec![DecoderBlockType::UpDecoderBlock2D; n],
            block_out_channels: self.block_out_channels.clone(),
            layers_per_block: self.layers_per_block,
            norm_num_groups: self.norm_num_groups,
            sample_size: size.into(),
            scaling_factor,
            mid_block_add_attention: self.mid_block_add_attention,
        };
        let bottleneck = match self.bottleneck {
            BottleneckKind::Kl => Bottleneck::Kl(KlFields {
                latent_channels: self.latent_channels,
                shift_factor: None,
                latents_mean: None,
                latents_std: None,
                force_upcast: true,
                use_quant_conv: true,
                use_post_quant_conv: true,
            }),
            BottleneckKind::Vq => Bottleneck::Vq(VqFields {
                latent_channels: self.latent_channels,
                num_vq_embeddings: self.num_vq_embeddings,
                vq_embed_dim: None,
                lookup_from_codebook: false,
                force_upcast: false,
            }),
        };
        AutoencoderConfig { coder, bottleneck }
    }

    pub fn loss(&self) -> AutoencoderLoss {
        AutoencoderLoss {
            reconstruction: self.reconstruction,
            kl_weight: self.kl_weight,
            commitment: self.commitment,
            codebook_term: true,
        }
    }

    /// The section's own checks, then diffusers' (through the config it makes).
    pub fn validate(&self, channels: usize, size: usize) -> Result<()> {
        for (field, value) in [
            ("kl_weight", self.kl_weight),
            ("commitment", self.commitment),
        ] {
            if value.is_nan() || value < 0.0 {
                bail!("autoencoder.{field} is {value}; it must be at least 0");
            }
        }
        if let Some(decay) = self.codebook_ema {
            if self.bottleneck != BottleneckKind::Vq {
                bail!("autoencoder.codebook_ema applies to bottleneck = \"vq\"");
            }
            if decay.is_nan() || decay <= 0.0 || decay >= 1.0 {
                bail!("autoencoder.codebook_ema is {decay}; the decay must be in (0, 1)");
            }
        }
        if let Some(p) = &self.perceptual {
            if p.weight.is_nan() || p.weight < 0.0 {
                bail!(
                    "autoencoder.perceptual.weight is {}; it must be at least 0",
                    p.weight
                );
            }
            if (channels, size) != (1, diffuse_nn::lenet::LENET_SIDE) {
                bail!(
                    "autoencoder.perceptual: its LeNet takes 1 x 28 x 28 images; these are {channels} x {size} x {size}"
                );
            }
        }
        let config = self.diffusers(channels, size, 1.0);
        config.validate().context("the [autoencoder] section")?;
        let f = config.downsampling();
        if !size.is_multiple_of(f) {
            bail!(
                "autoencoder.block_out_channels: {} levels halve the side {} times (f = {f}), which does not divide the images' {size}",
                self.block_out_channels.len(),
                self.block_out_channels.len() - 1
            );
        }
        Ok(())
    }
}

/// Which diffusion model learns the latents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LatentDiffusion {
    /// DDPM's chain (the `schedule`, `prediction`, loss and `sample` fields); the run is an
    /// `LDMPipeline` folder.
    #[default]
    Ddpm,
    /// A score SDE (the `[score]` section; `train --family latent --sde vp|subvp|ve`).
    Score,
    /// The variational diffusion model (the `[vdm]` section; `train --family latent --diffusion
    /// vdm`), its decoder a density: latents are continuous.
    Vdm,
}

impl LatentDiffusion {
    pub fn name(self) -> &'static str {
        match self {
            LatentDiffusion::Ddpm => "ddpm",
            LatentDiffusion::Score => "score",
            LatentDiffusion::Vdm => "vdm",
        }
    }
}

/// Diffusion in an autoencoder's latent space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatentSection {
    /// DDPM (the default), a score SDE or the VDM.
    #[serde(default)]
    pub diffusion: LatentDiffusion,
    /// The autoencoder: a diffusers AutoencoderKL or VQModel folder, a folder holding one as
    /// vqvae/ or vae/ (an LDMPipeline folder; an `autoencoder` run). Its `scaling_factor` scales
    /// the latents, as diffusers' LDMPipeline reads it. `train --vae DIR` sets it.
    #[serde(default)]
    pub vae: Option<PathBuf>,
    /// The images' channels and side (the dataset's; the `unet` section is the latents').
    pub image_channels: usize,
    pub image_size: usize,
}

/// The autoencoder config of `dir` (see `autoencode::autoencoder_dir`).
pub fn read_autoencoder_config(dir: &Path) -> Result<AutoencoderConfig> {
    Ok(AutoencoderConfig::read(
        &crate::autoencode::autoencoder_dir(dir)?,
    )?)
}

impl LatentSection {
    /// The autoencoder's folder, or an error saying how to give it.
    pub fn vae(&self) -> Result<&Path> {
        self.vae.as_deref().context(
            "family \"latent\" needs an autoencoder: pass --vae DIR (a diffusers AutoencoderKL or VQModel folder, an LDMPipeline folder, or an `autoencoder` run) or set latent.vae",
        )
    }

    /// An error unless `unet` works on the latents of `vae` (this section's images encoded).
    pub fn check_fits(&self, unet: &UnetConfig, vae: &AutoencoderConfig) -> Result<()> {
        let (c, f) = (vae.diffusion_channels(), vae.downsampling());
        let side = self.image_size / f;
        if vae.coder.in_channels != self.image_channels
            || unet.in_channels != c
            || unet.sample_size != Some(side)
        {
            bail!(
                "the run's U-Net takes {} x {:?} inputs, but the autoencoder in {} makes {c} channels of {side} x {side} from {}-channel images of {}; leave unet.in_channels and unet.sample_size to train --vae",
                unet.in_channels,
                unet.sample_size,
                self.vae()?.display(),
                self.image_channels,
                self.image_size
            );
        }
        Ok(())
    }

    /// `unet` made to work on this autoencoder's latents: its channels (in and out) and side
    /// are the latents', and levels its side cannot halve are dropped (the deepest kept), with a
    /// note. Errors when the images do not fit the autoencoder.
    pub fn fit_unet(&self, unet: &mut UnetConfig) -> Result<AutoencoderConfig> {
        let vae = read_autoencoder_config(self.vae()?)?;
        if vae.coder.in_channels != self.image_channels {
            bail!(
                "the autoencoder in {} takes images of {} channels; these have {}",
                self.vae()?.display(),
                vae.coder.in_channels,
                self.image_channels
            );
        }
        let f = vae.downsampling();
        if !self.image_size.is_multiple_of(f) {
            bail!(
                "the autoencoder in {} divides the side by {f}, which does not divide the images' {}",
                self.vae()?.display(),
                self.image_size
            );
        }
        let side = self.image_size / f;
        let c = vae.diffusion_channels();
        unet.in_channels = c;
        unet.out_channels = c;
        unet.sample_size = Some(side);
        let levels = unet.block_out_channels.len();
        let fits = (1..=levels)
            .rev()
            .find(|&n| {
                u32::try_from(n - 1)
                    .ok()
                    .and_then(|shift| 1usize.checked_shl(shift))
                    .is_some_and(|f| side.is_multiple_of(f))
            })
            .unwrap_or(1);
        if fits < levels {
            eprintln!(
                "note: unet: {levels} levels do not fit {side} x {side} latents; keeping the last {fits}"
            );
            let drop = levels - fits;
            unet.block_out_channels.drain(..drop);
            unet.down_block_types.drain(..drop);
            unet.up_block_types.truncate(fits);
        }
        Ok(vae)
    }
}
