//! NCSN on images: diffusers' U-Net, told the noise level, predicting the noise. Its run
//! directory holds `diffuse_config.json` (with the `[ncsn]` section), the EMA weights as a
//! diffusers `UNet2DModel` folder `unet/` and the raw ones in `raw/` (no scheduler: diffusers
//! has no NCSN pipeline), `checkpoint/`, `loss.csv`, `loss.png`, `metrics.json`, and:
//!
//! - `samples.npy`, `samples.png`: `sample.n` samples by annealed Langevin dynamics
//! - `progressive.png`: the first samples after 10 of the levels (left: the first level)
//! - `forward.png`: test images perturbed at 10 of the levels, x_0 + sigma_i z

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::Device;
use diffuse_nn::Unet;
use diffuse_train::{Checkpoint, TrainError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Ncsn, check_method, draw, langevin, ode_process, section};
use crate::args::{EvalArgs, SampleArgs};
use crate::axes::KindName;
use crate::config::RunConfig;
use crate::families::likelihood;
use crate::families::pictures::{self, Perturbation, images_forward, shown};
use crate::families::{Family, TrainFigures};
use crate::kinds::images::{
    ImageData, load_unet_folder, save_unet_folders, write_images, write_metrics,
};
use crate::kinds::{ImageKind, Kind};

impl Family<4, ImageKind> for Ncsn {
    type Net = Unet;
    type Objective = diffuse_train::Ncsn<4>;

    /// sigma_1 from the first 2,000 training images (Technique 1).
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
        format!("a {}-parameter noise-conditional U-Net", net.num_params())
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
        forward_picture(dir, config, data, &device)?;
        let start = Instant::now();
        samples_and_progressive(dir, config, model, &device)?;
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
        if args.no_ema {
            bail!(
                "--no-ema applies to 2-D runs; an image run keeps its raw weights as a diffusers model in {}",
                dir.join("raw").display()
            );
        }
        let section = section(config)?;
        let device = crate::device::device();
        let model = <Self as Family<4, ImageKind>>::load_sampling(dir, config, &device)?;
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        let z = crate::kinds::images::initial_noise(args, config, &mut rng, &device)?;
        let (x, label) = draw(&model, args, section, KindName::Images, z, &mut rng)?;
        let n = x.dims()[0];
        write_images(args, x, &format!("{n} samples ({label})"))
    }

    fn nll(args: &EvalArgs, dir: &Path, config: &RunConfig) -> Result<()> {
        check_method(args)?;
        if args.data.is_some() {
            bail!("--data applies to 2-D runs; an image run evaluates its dataset's test split");
        }
        let ad = crate::device::device().autodiff();
        let unet = load_unet_folder(dir, &ad)?;
        let process = ode_process(config, KindName::Images)?;
        let r = likelihood::eval_images(args, config, &unet, config.unet()?, process, &ad)?;
        likelihood::print(args, dir, &r)
    }
}

/// `samples.npy`, `samples.png` and `progressive.png` from one annealed Langevin run.
fn samples_and_progressive(
    dir: &Path,
    config: &RunConfig,
    model: &Unet,
    device: &Device,
) -> Result<()> {
    let section = section(config)?;
    let unet = config.unet()?;
    let size = unet.sample_size.unwrap_or(0);
    let shape = [config.sample.n, unet.in_channels, size, size];
    let steps = section.langevin_steps;
    pictures::samples_and_progressive(
        dir,
        shape,
        config.train.seed + 1,
        &shown(section.levels()?.len()),
        |z, rng, observe| langevin(model, section, steps, z, rng, observe),
        &format!(
            "{} samples (annealed Langevin, {steps} steps per level, EMA weights)",
            shape[0]
        ),
        "annealed Langevin: x after the steps at 10 of the levels (left: sigma_1)",
        device,
    )
}

/// `forward.png`: test images perturbed at 10 of the levels (one noise draw per image).
fn forward_picture(
    dir: &Path,
    config: &RunConfig,
    data: &ImageData,
    device: &Device,
) -> Result<()> {
    let levels = section(config)?.levels()?;
    let panels: Vec<Perturbation> = shown(levels.len())
        .into_iter()
        .rev()
        .map(|i| Perturbation {
            label: String::new(),
            mean: 1.0,
            std: levels.sigmas()[i],
        })
        .collect();
    images_forward(
        dir,
        &format!(
            "noise levels: x_0 + sigma z, sigma from {:.3} (left) to {:.1} (right)",
            levels.sigma_min(),
            levels.sigma_max()
        ),
        data,
        config.train.seed + 2,
        &panels,
        device,
    )
}
