//! The latent family: latent diffusion (Rombach et al. 2022), DDPM (its `schedule`,
//! `prediction`, loss and sampling fields) trained on the latents of a frozen autoencoder. Each
//! batch of images is encoded (a KL autoencoder's posterior drawn once per image, a VQ model's
//! latents before the codebook) and multiplied by the autoencoder's `scaling_factor`; samples are
//! DDPM's in latent space, divided by it and decoded. Images only. A run directory is a diffusers
//! `LDMPipeline` folder, which `LDMPipeline.from_pretrained(run)` and `diffuse sample --run` /
//! `--pipeline` load:
//!
//! - `model_index.json`, `unet/` (the latent U-Net, EMA weights where kept), `scheduler/`,
//!   `vqvae/` (the autoencoder, copied from `latent.vae` when the run starts)
//! - `raw/`: the raw U-Net; `diffuse_config.json`, `checkpoint/`, `loss.csv`, `loss.png`
//! - `samples.npy` (decoded images [N, C, H, W], model space), `samples.png` (DDIM, `sample.ddim_steps`)
//! - `metrics.json`: training and sampling time

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use diffuse_core::coef::randn;
use diffuse_core::discrete::sampler::{DdimSampler, sample};
use diffuse_nn::Unet;
use diffuse_nn::autoencoder::{Autoencoder, AutoencoderConfig};
use diffuse_train::{Checkpoint, Objective, TrainError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::args::{EvalArgs, SampleArgs};
use crate::config::{LatentSection, RunConfig};
use crate::families::{Family, TrainFigures};
use crate::kinds::ImageKind;
use crate::kinds::images::{ImageData, write_metrics};

/// The latent family (see the module docs).
pub struct Latent;

/// Latents decoded at once.
const DECODE_BATCH: usize = 8;

fn section(config: &RunConfig) -> Result<&LatentSection> {
    config
        .latent
        .as_ref()
        .context("the run config has no [latent] section")
}

/// The run's autoencoder, from `latent.vae`, on the (non-autodiff) device.
fn load_vae(config: &RunConfig) -> Result<(AutoencoderConfig, Autoencoder)> {
    let dir = section(config)?.vae()?;
    crate::autoencode::load(dir, &crate::device::device()).with_context(|| {
        format!(
            "latent.vae: the autoencoder this run trains on (a run's own copy is in its vqvae/; point latent.vae in {} there if the original moved)",
            config.file_name()
        )
    })
}

/// DDPM on the scaled latents of each batch of images.
pub struct LatentDdpm {
    vae: Autoencoder,
    scaling_factor: f32,
    ddpm: diffuse_train::Ddpm<4>,
}

impl LatentDdpm {
    /// z = scaling_factor (mean + exp(logvar / 2) eps) for a KL autoencoder, scaling_factor z_e
    /// for a VQ one; computed without autodiff, returned on `x`'s device.
    fn latents(&self, x: Tensor<4>, rng: &mut ChaCha8Rng) -> Tensor<4> {
        let autodiff = x.is_autodiff();
        let x = x.inner();
        let device = x.device();
        let e = self.vae.encode(x);
        let z = match e.logvar {
            Some(logvar) => {
                let eps = randn(rng, e.mean.dims(), &device);
                e.mean + logvar.mul_scalar(0.5).exp() * eps
            }
            None => e.mean,
        };
        let z = z.mul_scalar(self.scaling_factor);
        if autodiff { z.autodiff() } else { z }
    }
}

impl Objective<Unet> for LatentDdpm {
    type Batch = Tensor<4>;

    fn loss(&mut self, model: &Unet, x: Tensor<4>, rng: &mut ChaCha8Rng) -> Tensor<1> {
        let z = self.latents(x, rng);
        self.ddpm.loss(model, z, rng)
    }

    fn accepts(&self, model: &Unet) -> Result<(), TrainError> {
        self.ddpm.accepts(model)
    }

    fn state(&self) -> Option<Value> {
        Objective::<Unet>::state(&self.ddpm)
    }

    fn check_state(&self, state: Option<&Value>) -> Result<(), TrainError> {
        Objective::<Unet>::check_state(&self.ddpm, state)
    }

    fn restore(&mut self, state: Option<Value>) -> Result<(), TrainError> {
        Objective::<Unet>::restore(&mut self.ddpm, state)
    }
}

impl Family<4, ImageKind> for Latent {
    type Net = Unet;
    type Objective = LatentDdpm;

    fn init(config: &RunConfig, device: &Device) -> Result<Unet> {
        Ok(config.unet()?.init(device)?)
    }

    fn objective(config: &RunConfig) -> Result<LatentDdpm> {
        let (vae_config, vae) = load_vae(config)?;
        section(config)?.check_fits(config.unet()?, &vae_config)?;
        Ok(LatentDdpm {
            vae: vae.no_grad(),
            scaling_factor: vae_config.coder.scaling_factor as f32,
            ddpm: super::ddpm::objective(config)?,
        })
    }

    fn describe(net: &Unet) -> String {
        format!("a {}-parameter latent U-Net", net.num_params())
    }

    /// The LDMPipeline folder: `vqvae/` once (copied from `latent.vae`), `unet/` (sampling
    /// weights), `scheduler/`, `model_index.json`, and `raw/`.
    fn save(dir: &Path, config: &RunConfig, c: &Checkpoint<Unet>) -> Result<(), TrainError> {
        let err = |e: String| TrainError::Checkpoint {
            path: dir.into(),
            reason: e,
        };
        let vqvae = dir.join("vqvae");
        let class = if vqvae.join("config.json").is_file() {
            crate::config::latent::read_autoencoder_config(&vqvae)
        } else {
            load_vae(config).and_then(|(vae_config, vae)| {
                diffuse_diffusers::save_autoencoder(&vqvae, &vae_config, &vae)?;
                Ok(vae_config)
            })
        }
        .map_err(|e| err(format!("{e:#}")))?
        .class_name();
        let unet = config.unet().map_err(|e| err(e.to_string()))?;
        let scheduler = config.scheduler_config();
        diffuse_diffusers::save_latent_pipeline(dir, unet, c.sampling_model(), &scheduler, class)
            .map_err(|e| err(e.to_string()))?;
        diffuse_diffusers::save_unet(&dir.join("raw"), unet, &c.model)
            .map_err(|e| err(e.to_string()))
    }

    fn load_sampling(dir: &Path, _: &RunConfig, device: &Device) -> Result<Unet> {
        Ok(crate::memory::load_pipeline(dir, device)?.unet)
    }

    fn report(
        dir: &Path,
        config: &RunConfig,
        data: &ImageData,
        model: &Unet,
        figures: &TrainFigures,
    ) -> Result<()> {
        let start = Instant::now();
        samples(dir, config)?;
        write_metrics(
            dir,
            config,
            data,
            model.num_params(),
            figures,
            start.elapsed().as_secs_f64(),
        )
    }

    fn sample(args: &SampleArgs, dir: &Path, _: Option<&RunConfig>) -> Result<()> {
        super::ddpm::sample::images(args, dir)
    }

    fn nll(_: &EvalArgs, dir: &Path, _: &RunConfig) -> Result<()> {
        bail!(
            "{}: latent diffusion has no bits/dim here (the autoencoder's decoder defines no likelihood of images); `diffuse eval --fid` measures its samples",
            dir.display()
        )
    }
}

/// `samples.npy` and `samples.png`: `sample.n` DDIM samples in latent space (seed + 1),
/// decoded, from the pipeline folder the run has just written.
#[allow(non_snake_case)] // x_T, as in the papers.
fn samples(dir: &Path, config: &RunConfig) -> Result<()> {
    let device = crate::device::device();
    let pipeline = crate::memory::load_pipeline(dir, &device)?;
    let steps = config
        .sample
        .ddim_steps
        .context("sample.ddim_steps is unset (the config was not validated)")?;
    let schedule = config.schedule.build()?;
    let sampler = DdimSampler::new(&schedule, pipeline.scheduler.ddim(steps, 0.0))?;
    let unet = &pipeline.unet_config;
    let side = unet.sample_size.unwrap_or(0);
    let n = config.sample.n;
    let mut rng = ChaCha8Rng::seed_from_u64(config.train.seed + 1);
    let x_T = randn(&mut rng, [n, unet.in_channels, side, side], &device);
    let pb = crate::progress::bar(steps, "sampling latents");
    let z = sample(&pipeline.unet, &sampler, x_T, &mut rng, |_, _, _| pb.inc(1))?;
    pb.finish_and_clear();
    let x = pipeline.images(z, DECODE_BATCH);
    crate::families::pictures::write_samples(
        dir,
        x,
        &format!("{n} samples (DDIM in latent space, {steps} steps, eta 0, EMA weights; decoded)"),
    )
}
