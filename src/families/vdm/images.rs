//! The VDM on images: diffusers' U-Net (the run's `unet` section) predicting the noise, told the
//! normalized gamma, with the run's schedule; the discretized decoder over 256 values. The run
//! directory holds `diffuse_config.json` (with the `[vdm]` section), `model.safetensors` and
//! `model_ema.safetensors` (the U-Net and the schedule), `checkpoint/`, `loss.csv`, `loss.png`,
//! `schedule.csv`, `schedule.png`, `metrics.json`, and:
//!
//! - `samples.npy`, `samples.png`: `sample.n` samples by ancestral sampling
//! - `progressive.png`: the first samples after 10 of its steps (left: t = 1)

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};
use burn::tensor::{Device, Tensor};
use diffuse_core::vdm::DataModel;
use diffuse_nn::Unet;
use diffuse_nn::gamma::Vdm as VdmNet;
use diffuse_train::{Checkpoint, TrainError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Vdm, describe, draw, nll, sample, schedule_files, section};
use crate::args::{EvalArgs, SampleArgs};
use crate::config::RunConfig;
use crate::families::pictures::{self, shown};
use crate::families::{Family, TrainFigures};
use crate::kinds::images::{ImageData, write_images, write_metrics};
use crate::kinds::{ImageKind, load_weight_pair, save_weight_pair};

/// A fresh VDM on images: the run's U-Net and its `[vdm]` schedule.
pub(crate) fn init(config: &RunConfig, device: &Device) -> Result<VdmNet<Unet>> {
    Ok(VdmNet {
        net: config.unet()?.init(device)?,
        gamma: section(config)?.gamma.init(device),
    })
}

/// `sample`'s draw from the weight pair of a VDM run on images (or a latent VDM run, whose
/// samples are latents, `data` continuous): its ancestral sampler or `--sampler` on its chain,
/// from `--init-noise` or the seed. Returns the samples and the sampler's label.
pub(crate) fn draw_images(
    args: &SampleArgs,
    dir: &Path,
    config: &RunConfig,
    data: DataModel,
) -> Result<(Tensor<4>, String)> {
    let device = crate::device::device();
    let model = load_weight_pair(dir, config, !args.no_ema, init(config, &device)?)?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let z = crate::kinds::images::initial_noise(args, config, &mut rng, &device)?;
    draw(&args.solver, section(config)?, &model, z, data, &mut rng)
}

impl Family<4, ImageKind> for Vdm {
    type Net = VdmNet<Unet>;
    type Objective = diffuse_train::elbo::Vdm<4>;

    fn init(config: &RunConfig, device: &Device) -> Result<Self::Net> {
        init(config, device)
    }

    fn objective(config: &RunConfig) -> Result<Self::Objective> {
        super::objective(config, DataModel::Discretized)
    }

    fn describe(net: &Self::Net) -> String {
        describe(
            burn::module::Module::num_params(net),
            &net.gamma,
            "noise-predicting U-Net",
        )
    }

    fn save(dir: &Path, _: &RunConfig, c: &Checkpoint<Self::Net>) -> Result<(), TrainError> {
        save_weight_pair(dir, c)
    }

    fn load_sampling(dir: &Path, config: &RunConfig, device: &Device) -> Result<Self::Net> {
        load_weight_pair(dir, config, true, init(config, device)?)
    }

    fn report(
        dir: &Path,
        config: &RunConfig,
        data: &ImageData,
        model: &Self::Net,
        figures: &TrainFigures,
    ) -> Result<()> {
        let device = crate::device::device();
        schedule_files(dir, &model.gamma, true, &device)?;
        let start = Instant::now();
        let unet = config.unet()?;
        let size = unet.sample_size.unwrap_or(0);
        let shape = [config.sample.n, unet.in_channels, size, size];
        let steps = section(config)?.sample_steps;
        pictures::samples_and_progressive(
            dir,
            shape,
            config.train.seed + 1,
            &shown(steps),
            |z, rng, observe| {
                Ok(sample(
                    model,
                    z,
                    steps,
                    DataModel::Discretized,
                    rng,
                    observe,
                ))
            },
            &format!(
                "{} samples (VDM, {steps} ancestral steps, EMA weights)",
                shape[0]
            ),
            "ancestral sampling: z after 10 of its steps (left: t = 1)",
            &device,
        )?;
        let sample_seconds = start.elapsed().as_secs_f64();
        write_metrics(
            dir,
            config,
            data,
            burn::module::Module::num_params(model),
            figures,
            sample_seconds,
        )
    }

    fn sample(args: &SampleArgs, dir: &Path, config: Option<&RunConfig>) -> Result<()> {
        let Some(config) = config else {
            bail!("{} has no diffuse_config.json", dir.display());
        };
        let (x, label) = draw_images(args, dir, config, DataModel::Discretized)?;
        let n = x.dims()[0];
        write_images(args, x, &format!("{n} samples ({label})"))
    }

    fn nll(args: &EvalArgs, dir: &Path, config: &RunConfig) -> Result<()> {
        let device = crate::device::device();
        let model = load_weight_pair(dir, config, true, init(config, &device)?)?;
        nll::<4, Unet>(args, dir, config, &model, &device)
    }
}
