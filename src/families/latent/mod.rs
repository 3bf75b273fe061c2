//! The latent family: latent diffusion (Rombach et al. 2022), DDPM (its `schedule`,
//! `prediction`, loss and sampling fields), a score SDE (`[latent] diffusion = "score"`, its
//! `[score]` section; `train --family latent --sde`) or the VDM (`diffusion = "vdm"`, its `[vdm]`
//! section, the bound's decoder a density; `--diffusion vdm`) trained on the latents of a frozen
//! autoencoder. Each batch of images is encoded (a KL autoencoder's posterior drawn once per
//! image, a VQ model's latents before the codebook) and multiplied by the autoencoder's
//! `scaling_factor`; samples are drawn in latent space, divided by it and decoded. Images only.
//! A DDPM run directory is a diffusers `LDMPipeline` folder, which
//! `LDMPipeline.from_pretrained(run)` and `diffuse sample --run` / `--pipeline` load:
//!
//! - `model_index.json`, `unet/` (the latent U-Net, EMA weights where kept), `scheduler/`,
//!   `vqvae/` (the autoencoder, copied from `latent.vae` when the run starts)
//! - `raw/`: the raw U-Net; `diffuse_config.json`, `checkpoint/`, `loss.csv`, `loss.png`
//! - `samples.npy` (decoded images [N, C, H, W], model space), `samples.png` (DDIM, `sample.ddim_steps`)
//! - `metrics.json`: training and sampling time
//!
//! A score SDE's run keeps `unet/`, `raw/` and `vqvae/` (no diffusers pipeline runs its
//! samplers), and its `samples.png` holds decoded predictor-corrector samples. A VDM's run keeps
//! `model.safetensors` / `model_ema.safetensors` (the U-Net and the schedule, as a `vdm` run's),
//! `schedule.csv`, `schedule.png`, `scheduler/` (its chain, for `--sampler`) and `vqvae/`; its
//! `samples.png` holds decoded ancestral samples (`vdm.sample_steps`).

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use diffuse_core::coef::randn;
use diffuse_core::discrete::sampler::{DdimSampler, sample};
use diffuse_core::vdm::DataModel;
use diffuse_diffusers::Vqvae;
use diffuse_nn::Unet;
use diffuse_nn::autoencoder::{Autoencoder, AutoencoderConfig};
use diffuse_nn::gamma::Vdm as VdmNet;
use diffuse_train::{Checkpoint, Objective, TrainError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::args::{EvalArgs, SampleArgs};
use crate::config::{LatentDiffusion, LatentSection, RunConfig};
use crate::families::{Family, TrainFigures};
use crate::kinds::images::{ImageData, write_metrics};
use crate::kinds::{ImageKind, load_weight_pair, save_weight_pair};

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

/// The network on the latents: a U-Net (DDPM, score SDEs) or a VDM (the U-Net and its
/// schedule). Its weight files name no variant (`checkpoint::save_weights`).
// One network per run: the VDM arm's extra size (its schedule) costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum LatentNet {
    Unet(Unet),
    Vdm(VdmNet<Unet>),
}

/// The diffusion model's objective, on latents.
pub enum Inner {
    Ddpm(Box<diffuse_train::Ddpm<4>>),
    Score(diffuse_train::ScoreSde<4>),
    Vdm(diffuse_train::elbo::Vdm<4>),
}

/// DDPM, a score SDE or the VDM on the scaled latents of each batch of images.
pub struct LatentObjective {
    vae: Autoencoder,
    scaling_factor: f32,
    inner: Inner,
}

impl LatentObjective {
    /// z = scaling_factor (mean + exp(logvar / 2) eps) for a KL autoencoder, scaling_factor z_e
    /// for a VQ one; computed without autodiff, returned on `x`'s device.
    fn latents(&self, x: Tensor<4>, rng: &mut ChaCha8Rng) -> Tensor<4> {
        let autodiff = x.is_autodiff();
        let x = x.inner();
        let device = x.device();
        let z = self.vae.encode(x).draw(|shape| randn(rng, shape, &device));
        let z = z.mul_scalar(self.scaling_factor);
        if autodiff { z.autodiff() } else { z }
    }
}

impl Objective<LatentNet> for LatentObjective {
    type Batch = Tensor<4>;

    fn loss(&mut self, model: &LatentNet, x: Tensor<4>, rng: &mut ChaCha8Rng) -> Tensor<1> {
        let z = self.latents(x, rng);
        match (&mut self.inner, model) {
            (Inner::Ddpm(o), LatentNet::Unet(m)) => o.loss(m, z, rng),
            (Inner::Score(o), LatentNet::Unet(m)) => o.loss(m, z, rng),
            (Inner::Vdm(o), LatentNet::Vdm(m)) => o.loss(m, z, rng),
            // Refused by `accepts` before the first step; a NaN stops the trainer if not.
            _ => Tensor::full([1], f32::NAN, &z.device()),
        }
    }

    fn accepts(&self, model: &LatentNet) -> Result<(), TrainError> {
        match (&self.inner, model) {
            (Inner::Ddpm(o), LatentNet::Unet(m)) => o.accepts(m),
            (Inner::Score(o), LatentNet::Unet(m)) => o.accepts(m),
            (Inner::Vdm(o), LatentNet::Vdm(m)) => o.accepts(m),
            _ => Err(TrainError::InvalidConfig {
                field: "latent.diffusion",
                reason: "the latent network does not match it".into(),
            }),
        }
    }

    fn state(&self) -> Option<Value> {
        match &self.inner {
            Inner::Ddpm(o) => Objective::<Unet>::state(o.as_ref()),
            Inner::Score(o) => Objective::<Unet>::state(o),
            Inner::Vdm(o) => Objective::<VdmNet<Unet>>::state(o),
        }
    }

    fn check_state(&self, state: Option<&Value>) -> Result<(), TrainError> {
        match &self.inner {
            Inner::Ddpm(o) => Objective::<Unet>::check_state(o.as_ref(), state),
            Inner::Score(o) => Objective::<Unet>::check_state(o, state),
            Inner::Vdm(o) => Objective::<VdmNet<Unet>>::check_state(o, state),
        }
    }

    fn restore(&mut self, state: Option<Value>) -> Result<(), TrainError> {
        match &mut self.inner {
            Inner::Ddpm(o) => Objective::<Unet>::restore(o.as_mut(), state),
            Inner::Score(o) => Objective::<Unet>::restore(o, state),
            Inner::Vdm(o) => Objective::<VdmNet<Unet>>::restore(o, state),
        }
    }
}

/// The images of scaled latents `x` through `vqvae`'s decoder, `DECODE_BATCH` at a time, its
/// memory checked first: every latent sampler's last step (the DDPM family's pipeline path
/// included).
pub fn decode(vqvae: &Vqvae, x: Tensor<4>) -> Result<Tensor<4>> {
    let [n, _, h, w] = x.dims();
    let f = vqvae.config.downsampling();
    crate::memory::check_autoencoder(&vqvae.config, h * f, w * f, n.min(DECODE_BATCH))?;
    Ok(vqvae.images(x, DECODE_BATCH))
}

/// A run's own autoencoder, `vqvae/`.
fn run_vqvae(dir: &Path, device: &Device) -> Result<Vqvae> {
    Ok(Vqvae::from_dir(&dir.join("vqvae"), device)?)
}

fn score_section(config: &RunConfig) -> Result<&crate::config::ScoreConfig> {
    config
        .score
        .as_ref()
        .context("latent diffusion by a score SDE has a [score] section")
}

/// The checkpoint's U-Net weights (raw, sampling) where the run's network is a U-Net.
fn unets(c: &Checkpoint<LatentNet>) -> Option<(&Unet, &Unet)> {
    match (&c.model, c.sampling_model()) {
        (LatentNet::Unet(raw), LatentNet::Unet(sampling)) => Some((raw, sampling)),
        _ => None,
    }
}

/// A fresh network for the run's `latent.diffusion`.
fn init(config: &RunConfig, device: &Device) -> Result<LatentNet> {
    Ok(match section(config)?.diffusion {
        LatentDiffusion::Ddpm | LatentDiffusion::Score => {
            LatentNet::Unet(config.unet()?.init(device)?)
        }
        LatentDiffusion::Vdm => LatentNet::Vdm(super::vdm::images::init(config, device)?),
    })
}

impl Family<4, ImageKind> for Latent {
    type Net = LatentNet;
    type Objective = LatentObjective;

    /// A score SDE's VE sigma_max from the latents of the first 2,000 training images (their
    /// posterior means, scaled).
    fn prepare(config: &mut RunConfig, data: &ImageData) -> Result<()> {
        if section(config)?.diffusion != LatentDiffusion::Score {
            return Ok(());
        }
        let (vae_config, vae) = load_vae(config)?;
        let device = crate::device::device();
        let x = crate::kinds::images::first_images(&data.train, 2000, &device);
        let z = vae
            .encode(x)
            .mean
            .mul_scalar(vae_config.coder.scaling_factor as f32);
        let [_, c, h, w] = z.dims();
        let rows: Vec<f32> = z.into_data().try_to_vec().unwrap_or_default();
        super::score::prepare(config, &rows, c * h * w)
    }

    fn init(config: &RunConfig, device: &Device) -> Result<LatentNet> {
        init(config, device)
    }

    fn objective(config: &RunConfig) -> Result<LatentObjective> {
        let (vae_config, vae) = load_vae(config)?;
        let section = section(config)?;
        section.check_fits(config.unet()?, &vae_config)?;
        let inner = match section.diffusion {
            LatentDiffusion::Ddpm => Inner::Ddpm(Box::new(super::ddpm::objective(config)?)),
            LatentDiffusion::Score => Inner::Score(super::score::objective(config)?),
            LatentDiffusion::Vdm => {
                Inner::Vdm(super::vdm::objective(config, DataModel::Continuous)?)
            }
        };
        Ok(LatentObjective {
            vae: vae.no_grad(),
            scaling_factor: vae_config.coder.scaling_factor as f32,
            inner,
        })
    }

    fn describe(net: &LatentNet) -> String {
        match net {
            LatentNet::Unet(u) => format!("a {}-parameter latent U-Net", u.num_params()),
            LatentNet::Vdm(v) => super::vdm::describe(v.num_params(), &v.gamma, "latent U-Net"),
        }
    }

    /// `vqvae/` once (copied from `latent.vae`), then DDPM's LDMPipeline folder (`unet/`
    /// (sampling weights), `scheduler/`, `model_index.json`, and `raw/`), a score SDE's `unet/`
    /// and `raw/`, or the VDM's weight pair.
    fn save(dir: &Path, config: &RunConfig, c: &Checkpoint<LatentNet>) -> Result<(), TrainError> {
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
        let diffusion = section(config).map_err(|e| err(e.to_string()))?.diffusion;
        if diffusion == LatentDiffusion::Vdm {
            return save_weight_pair(dir, c);
        }
        let (raw, sampling) =
            unets(c).ok_or_else(|| err("the latent network is not a U-Net".into()))?;
        if diffusion == LatentDiffusion::Score {
            // No diffusers pipeline runs a score SDE's samplers: unet/ and raw/ as a score run's.
            return crate::kinds::images::save_unet_folders(dir, config, raw, sampling);
        }
        let unet = config.unet().map_err(|e| err(e.to_string()))?;
        let scheduler = config.scheduler_config();
        diffuse_diffusers::save_latent_pipeline(dir, unet, sampling, &scheduler, class)
            .map_err(|e| err(e.to_string()))?;
        diffuse_diffusers::save_unet(&dir.join("raw"), unet, raw).map_err(|e| err(e.to_string()))
    }

    fn load_sampling(dir: &Path, config: &RunConfig, device: &Device) -> Result<LatentNet> {
        Ok(match section(config)?.diffusion {
            LatentDiffusion::Ddpm => {
                LatentNet::Unet(crate::memory::load_pipeline(dir, device)?.unet)
            }
            LatentDiffusion::Score => {
                LatentNet::Unet(crate::kinds::images::load_unet_folder(dir, device)?)
            }
            LatentDiffusion::Vdm => load_weight_pair(dir, config, true, init(config, device)?)?,
        })
    }

    fn report(
        dir: &Path,
        config: &RunConfig,
        data: &ImageData,
        model: &LatentNet,
        figures: &TrainFigures,
    ) -> Result<()> {
        let start = Instant::now();
        match (section(config)?.diffusion, model) {
            (LatentDiffusion::Ddpm, _) => samples(dir, config)?,
            (LatentDiffusion::Score, LatentNet::Unet(unet)) => score_samples(dir, config, unet)?,
            (LatentDiffusion::Vdm, LatentNet::Vdm(vdm)) => vdm_samples(dir, config, vdm)?,
            (diffusion, _) => bail!(
                "the latent network does not match the run's latent.diffusion ({})",
                diffusion.name()
            ),
        }
        write_metrics(
            dir,
            config,
            data,
            model.num_params(),
            figures,
            start.elapsed().as_secs_f64(),
        )
    }

    fn sample(args: &SampleArgs, dir: &Path, config: Option<&RunConfig>) -> Result<()> {
        let diffusion = config
            .and_then(|c| section(c).ok())
            .map(|s| s.diffusion)
            .unwrap_or_default();
        let (x, label) = match (diffusion, config) {
            (LatentDiffusion::Score, Some(config)) => {
                super::score::images::draw(args, dir, config)?
            }
            (LatentDiffusion::Vdm, Some(config)) => {
                // Its weight files read as a `vdm` run's (no enum variant in their names).
                super::vdm::images::draw_images(args, dir, config, DataModel::Continuous)?
            }
            _ => return super::ddpm::sample::images(args, dir),
        };
        let n = x.dims()[0];
        let x = decode(&run_vqvae(dir, &crate::device::device())?, x)?;
        crate::kinds::images::write_images(
            args,
            x,
            &format!("{n} samples ({label}, in latent space; decoded)"),
        )
    }

    fn nll(_: &EvalArgs, dir: &Path, _: &RunConfig) -> Result<()> {
        bail!(
            "{}: latent diffusion has no bits/dim here (the autoencoder's decoder defines no likelihood of images); `diffuse eval --fid` measures its samples",
            dir.display()
        )
    }
}

/// `samples.npy` and `samples.png`: `sample.n` latents drawn by `draw` from standard-normal
/// noise of the latents' shape (seed + 1), decoded by `vqvae`; `draw` also says how it drew them
/// (the picture's title).
fn decoded_samples(
    dir: &Path,
    config: &RunConfig,
    vqvae: &Vqvae,
    draw: impl FnOnce(Tensor<4>, &mut ChaCha8Rng) -> Result<(Tensor<4>, String)>,
) -> Result<()> {
    let unet = config.unet()?;
    let side = unet.sample_size.unwrap_or(0);
    let n = config.sample.n;
    let mut rng = ChaCha8Rng::seed_from_u64(config.train.seed + 1);
    let noise = randn(
        &mut rng,
        [n, unet.in_channels, side, side],
        &crate::device::device(),
    );
    let (latents, how) = draw(noise, &mut rng)?;
    crate::families::pictures::write_samples(
        dir,
        decode(vqvae, latents)?,
        &format!("{n} samples ({how}; in latent space, decoded)"),
    )
}

/// DDIM samples (`sample.ddim_steps`, eta 0) from the pipeline folder the run has just written.
#[allow(non_snake_case)] // x_T, as in the papers.
fn samples(dir: &Path, config: &RunConfig) -> Result<()> {
    let pipeline = crate::memory::load_pipeline(dir, &crate::device::device())?;
    let steps = config
        .sample
        .ddim_steps
        .context("sample.ddim_steps is unset (the config was not validated)")?;
    let schedule = config.schedule.build()?;
    let sampler = DdimSampler::new(&schedule, pipeline.scheduler.ddim(steps, 0.0))?;
    let vqvae = pipeline
        .vqvae
        .as_ref()
        .context("a latent run's folder is an LDMPipeline with vqvae/")?;
    decoded_samples(dir, config, vqvae, |x_T, rng| {
        let pb = crate::progress::bar(steps, "sampling latents");
        let z = sample(&pipeline.unet, &sampler, x_T, rng, |_, _, _| pb.inc(1))?;
        pb.finish_and_clear();
        Ok((z, format!("DDIM, {steps} steps, eta 0, EMA weights")))
    })
}

/// `schedule.csv`, `schedule.png`, `scheduler/`, and samples by the VDM's ancestral sampler
/// (`vdm.sample_steps`).
fn vdm_samples(dir: &Path, config: &RunConfig, model: &VdmNet<Unet>) -> Result<()> {
    let device = crate::device::device();
    super::vdm::schedule_files(dir, &model.gamma, false, &device)?;
    let steps = super::vdm::section(config)?.sample_steps;
    decoded_samples(dir, config, &run_vqvae(dir, &device)?, |z, rng| {
        let z = super::vdm::sample(model, z, steps, DataModel::Continuous, rng, |_, _| {});
        Ok((z, format!("VDM, {steps} ancestral steps, EMA weights")))
    })
}

/// Samples by the run's predictor-corrector sampler.
fn score_samples(dir: &Path, config: &RunConfig, model: &Unet) -> Result<()> {
    let section = score_section(config)?;
    let pc = section.pc();
    let vqvae = run_vqvae(dir, &crate::device::device())?;
    decoded_samples(dir, config, &vqvae, |z, rng| {
        let x = super::score::pc_with_steps(model, section, z, rng, &mut |_, _| {})?;
        let how = format!(
            "{} SDE, PC {} steps x (1 + {} corrector)",
            section.sde.name(),
            pc.steps,
            pc.corrector_steps
        );
        Ok((x, how))
    })
}
