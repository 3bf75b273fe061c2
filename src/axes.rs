//! The names of the binary's two axes, as a run config and a run directory spell them: the
//! model family (`crate::families`) and the kind of data (`crate::kinds`). Both modules, the run
//! config and the run directories use these; nothing here depends on them.

use std::path::Path;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// The model families a run config names (`family`, default `ddpm`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum FamilyName {
    /// DDPM's discrete chain (Ho et al. 2020; improved DDPM): eps / x_0 / v / mean prediction,
    /// L_simple, L_vlb or L_hybrid; DDPM, DDIM and the solvers over its noise levels.
    #[default]
    Ddpm,
    /// Noise-conditional score networks (Song & Ermon 2019, 2020): denoising score matching
    /// over geometric noise levels, sampled by annealed Langevin dynamics.
    Ncsn,
    /// Score SDEs (Song et al. 2021): VP, sub-VP or VE (`--sde`), trained in continuous time,
    /// sampled by predictor-corrector, the probability-flow ODE or the fast solvers.
    Score,
    /// The variational autoencoder (Kingma & Welling 2014): an encoder, a decoder and the
    /// ELBO, evaluated also by the importance-weighted bound (IWAE).
    Vae,
    /// The Markovian hierarchical VAE: a chain of latents, Gaussian transitions both ways.
    Hvae,
    /// The variational diffusion model (Kingma et al. 2021): a learned noise schedule and the
    /// continuous-time bound.
    Vdm,
    /// Latent diffusion's first stage (Rombach et al. 2022): a KL- or VQ-regularized
    /// autoencoder with diffusers' `AutoencoderKL` / `VQModel` architecture, trained on images.
    Autoencoder,
    /// Latent diffusion (Rombach et al. 2022): DDPM (a run is a diffusers `LDMPipeline`
    /// folder), a score SDE or the VDM in an autoencoder's latent space.
    Latent,
}

impl FamilyName {
    pub fn is_ddpm(&self) -> bool {
        *self == FamilyName::Ddpm
    }

    /// Whether the family trains on DDPM's discrete chain, with its `schedule`, `prediction`,
    /// loss and sampling fields: DDPM, and latent diffusion (DDPM on latents).
    pub fn uses_chain(&self) -> bool {
        matches!(self, FamilyName::Ddpm | FamilyName::Latent)
    }

    /// The name a run config and `--family` spell it with.
    pub fn name(self) -> &'static str {
        match self {
            FamilyName::Ddpm => "ddpm",
            FamilyName::Ncsn => "ncsn",
            FamilyName::Score => "score",
            FamilyName::Vae => "vae",
            FamilyName::Hvae => "hvae",
            FamilyName::Vdm => "vdm",
            FamilyName::Autoencoder => "autoencoder",
            FamilyName::Latent => "latent",
        }
    }
}

/// The kind of data of a run directory or pipeline folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KindName {
    /// Points (an MLP: `config.json` with a `train` section, weights as safetensors).
    Points,
    /// Images (a U-Net: the folder holds `diffuse_config.json`, or is a diffusers pipeline
    /// with `model_index.json`, `unet/`, `scheduler/`).
    Images,
}

impl KindName {
    pub const ALL: [KindName; 2] = [KindName::Points, KindName::Images];

    /// The file a run directory of this kind keeps its run config in. An image run's folder
    /// is also a diffusers pipeline, whose loaders would take a `config.json` for a model config.
    pub fn run_config_file(self) -> &'static str {
        match self {
            KindName::Points => "config.json",
            KindName::Images => "diffuse_config.json",
        }
    }

    /// Which kind the folder holds; an error naming what is missing when it holds neither.
    /// (By existence: a config that is not a regular file is then refused by name when read.)
    pub fn of(dir: &Path) -> Result<Self> {
        if dir.join("model_index.json").exists() || dir.join("diffuse_config.json").exists() {
            Ok(KindName::Images)
        } else if dir.join("config.json").exists() {
            Ok(KindName::Points)
        } else {
            bail!(
                "{} is not a diffuse run directory: neither a 2-D run (config.json) nor a pipeline folder (model_index.json)",
                dir.display()
            )
        }
    }
}
