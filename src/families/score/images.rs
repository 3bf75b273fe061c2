//! Score SDEs on images: diffusers' U-Net, told 999 t, predicting the noise. Its run directory
//! holds `diffuse_config.json` (with the `[score]` section), the EMA weights as a diffusers
//! `UNet2DModel` folder `unet/` and the raw ones in `raw/` (no scheduler: the run's SDE is in
//! its config), `checkpoint/`, `loss.csv`, `loss.png`, `metrics.json`, and:
//!
//! - `samples.npy`, `samples.png`: `sample.n` samples by the run's predictor-corrector sampler
//! - `progressive.png`: the first samples after 10 of its steps (left: t = 1)
//! - `forward.png`: test images at 10 times of the SDE, mean(t) x_0 + std(t) z

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::Device;
use diffuse_nn::Unet;
use diffuse_train::{Checkpoint, TrainError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Score, pc_with_steps, perturbations, run_solver, sampler, section};
use crate::args::{EvalArgs, Method, SampleArgs};
use crate::config::RunConfig;
use crate::families::likelihood;
use crate::families::pictures::{self, images_forward, shown};
use crate::families::{Family, TrainFigures};
use crate::kinds::images::{
    ImageData, load_unet_folder, save_unet_folders, write_images, write_metrics,
};
use crate::kinds::{ImageKind, Kind};

impl Family<4, ImageKind> for Score {
    type Net = Unet;
    type Objective = diffuse_train::ScoreSde<4>;

    /// VE: sigma_max from the first 2,000 training images (Technique 1).
    fn prepare(config: &mut RunConfig, data: &ImageData) -> Result<()> {
        let (rows, dim) = ImageKind::distance_rows(data);
        super::prepare(config, &rows, dim)
    }

    fn init(config: &RunConfig, device: &Device) -> Result<Unet> {
        Ok(config.unet()?.init(device)?)
    }

    fn objective(config: &RunConfig) -> Result<Self::Objective> {
        super::objective(config)
    }

    fn describe(net: &Unet) -> String {
        format!("a {}-parameter time-conditional U-Net", net.num_params())
    }

    fn save(dir: &Path, config: &RunConfig, c: &Checkpoint<Unet>) -> Result<(), TrainError> {
        save_unet_folders(dir, config, &c.model, c.sampling_model())
    }

    fn load_sampling(dir: &Path, _: &RunConfig, device: &Device) -> Result<Unet> {
        load_unet_folder(dir, device)
    }

    fn report(
        dir: &Path,
        config: &RunConfig,
        data: &ImageData,
        model: &Unet,
        figures: &TrainFigures,
    ) -> Result<()> {
        let device = crate::device::device();
        let section = section(config)?;
        images_forward(
            dir,
            &format!(
                "{} SDE: mean(t) x_0 + std(t) z, t from {} (left) to 1 (right)",
                section.sde.name(),
                section.sample_eps
            ),
            data,
            config.train.seed + 2,
            &perturbations(section)?,
            &device,
        )?;
        let start = Instant::now();
        let unet = config.unet()?;
        let size = unet.sample_size.unwrap_or(0);
        let shape = [config.sample.n, unet.in_channels, size, size];
        let pc = section.pc();
        pictures::samples_and_progressive(
            dir,
            shape,
            config.train.seed + 1,
            &shown(pc.steps),
            |z, rng, observe| pc_with_steps(model, section, z, rng, observe),
            &format!(
                "{} samples (PC, {} steps x (1 + {} corrector), EMA weights)",
                shape[0], pc.steps, pc.corrector_steps
            ),
            "predictor-corrector: x after 10 of its steps (left: t = 1)",
            &device,
        )?;
        let sample_seconds = start.elapsed().as_secs_f64();
        write_metrics(
            dir,
            config,
            data,
            model.num_params(),
            figures,
            sample_seconds,
        )
    }

    fn sample(args: &SampleArgs, dir: &Path, config: Option<&RunConfig>) -> Result<()> {
        let Some(config) = config else {
            bail!("{} has no diffuse_config.json", dir.display());
        };
        let (x, label) = draw(args, dir, config)?;
        let n = x.dims()[0];
        write_images(args, x, &format!("{n} samples ({label})"))
    }

    fn nll(args: &EvalArgs, dir: &Path, config: &RunConfig) -> Result<()> {
        if args.method != Method::Ode {
            bail!(
                "a score run's likelihood is the probability-flow ODE's: --method ode (the variational bound --method vlb is DDPM's)"
            );
        }
        if args.data.is_some() {
            bail!("--data applies to 2-D runs; an image run evaluates its dataset's test split");
        }
        let ad = crate::device::device().autodiff();
        let unet = load_unet_folder(dir, &ad)?;
        let process = super::ode_process(section(config)?)?;
        let r = likelihood::eval_images(args, config, &unet, config.unet()?, process, &ad)?;
        likelihood::print(args, dir, &r)
    }
}

/// `sample`'s draw from the `unet/` of a score run (or a latent score run, whose samples are
/// latents): the `--sampler`'s solver from `--init-noise` or the seed. Returns the samples and
/// the sampler's label.
pub(crate) fn draw(
    args: &SampleArgs,
    dir: &Path,
    config: &RunConfig,
) -> Result<(burn::tensor::Tensor<4>, String)> {
    if args.no_ema {
        bail!(
            "--no-ema applies to 2-D runs; an image run keeps its raw weights as a diffusers model in {}",
            dir.join("raw").display()
        );
    }
    let (solver, label) = sampler::<4>(&args.solver, section(config)?)?;
    let device = crate::device::device();
    let model = load_unet_folder(dir, &device)?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let z = crate::kinds::images::initial_noise(args, config, &mut rng, &device)?;
    let x = run_solver(solver.as_ref(), &model, z, &mut rng, &label)?;
    Ok((x, label))
}
