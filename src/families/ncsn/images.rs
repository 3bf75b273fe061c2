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
use burn::tensor::{Device, Tensor};
use diffuse_core::coef::randn;
use diffuse_data::write_npy;
use diffuse_diffusers::save_unet;
use diffuse_nn::Unet;
use diffuse_train::{Checkpoint, TrainError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Ncsn, langevin, langevin_steps, section};
use crate::args::{EvalArgs, SampleArgs};
use crate::config::RunConfig;
use crate::families::{Family, TrainFigures};
use crate::kinds::images::{ImageData, first_images, grid, pixels, write_images, write_metrics};
use crate::kinds::{Images, Kind};

/// Training images compared for the largest pairwise distance (Technique 1): every pair of
/// them is visited.
const DISTANCE_IMAGES: usize = 2000;
/// Rows of the progressive picture, and panels per row.
const ROWS: usize = 8;
const PANELS: usize = 10;

impl Family<4, Images> for Ncsn {
    type Net = Unet;
    type Objective = diffuse_train::Ncsn<4>;

    /// sigma_1 from the first 2,000 training images (Technique 1).
    fn prepare(config: &mut RunConfig, data: &ImageData) -> Result<()> {
        let (rows, dim) = Images::model_rows(data, DISTANCE_IMAGES);
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
        let err = |e: String| TrainError::Checkpoint {
            path: dir.into(),
            reason: e,
        };
        let unet = config.unet().map_err(|e| err(e.to_string()))?;
        save_unet(&dir.join("unet"), unet, c.sampling_model()).map_err(|e| err(e.to_string()))?;
        save_unet(&dir.join("raw"), unet, &c.model).map_err(|e| err(e.to_string()))
    }

    fn load_sampling(dir: &Path, _: &RunConfig, device: &Device) -> Result<Unet> {
        Ok(Unet::from_diffusers_dir(&dir.join("unet"), device)?.1)
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
        let steps = langevin_steps(args, section)?;
        let device = crate::device::device();
        let model = <Self as Family<4, Images>>::load_sampling(dir, config, &device)?;
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        let z = initial_noise(args, config, &mut rng, &device)?;
        let x = langevin(&model, section, steps, z, &mut rng, &mut |_, _| {})?;
        let n = x.dims()[0];
        let title = format!("{n} samples (annealed Langevin, {steps} steps per level)");
        write_images(args, x, &title)
    }

    fn nll(_: &EvalArgs, _: &Path, _: &RunConfig) -> Result<()> {
        bail!(
            "NCSN defines no likelihood (its levels are a set, not a process); train --family score --sde ve for the probability-flow ODE's"
        )
    }
}

/// The standard normal draw Langevin starts from (scaled to sigma_1 there): `--init-noise`, or
/// `--n` images from the seed.
fn initial_noise(
    args: &SampleArgs,
    config: &RunConfig,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<Tensor<4>> {
    let unet = config.unet()?;
    let size = unet.sample_size.unwrap_or(0);
    match &args.init_noise {
        Some(path) => crate::kinds::images::read_noise(path, unet, args.n, device),
        None => {
            let n = args.n.unwrap_or(crate::sample::DEFAULT_IMAGES);
            crate::memory::check_unet_sampling(unet, size, size, n)?;
            Ok(randn(rng, [n, unet.in_channels, size, size], device))
        }
    }
}

/// The `PANELS` level indices shown in the pictures, from the first to the last.
fn shown_levels(levels: usize) -> Vec<usize> {
    (0..PANELS)
        .map(|k| k * (levels - 1) / (PANELS - 1))
        .collect()
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
    let (n, c) = (config.sample.n, unet.in_channels);
    let size = unet.sample_size.unwrap_or(0);
    let shape = [n, c, size, size];
    let mut rng = ChaCha8Rng::seed_from_u64(config.train.seed + 1);
    let z = randn(&mut rng, shape, device);
    let shown = shown_levels(section.levels()?.len());
    let rows = ROWS.min(n);
    let mut progressive: Vec<Vec<u8>> = Vec::new();
    let mut observe = |i: usize, x: &Tensor<4>| {
        if shown.contains(&i) {
            progressive.push(pixels(x.clone().narrow(0, 0, rows)).unwrap_or_default());
        }
    };
    let x = langevin(
        model,
        section,
        section.langevin_steps,
        z,
        &mut rng,
        &mut observe,
    )?;
    let values: Vec<f32> = x
        .clone()
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    write_npy(&dir.join("samples.npy"), &shape, &values)?;
    let cols = (n as f64).sqrt().ceil() as usize;
    grid(
        &dir.join("samples.png"),
        &format!(
            "{n} samples (annealed Langevin, {} steps per level, EMA weights)",
            section.langevin_steps
        ),
        &pixels(x)?,
        shape,
        cols,
    )?;
    let per_image = c * size * size;
    let mut ordered = Vec::with_capacity(rows * progressive.len() * per_image);
    for r in 0..rows {
        for panel in &progressive {
            ordered.extend_from_slice(&panel[r * per_image..(r + 1) * per_image]);
        }
    }
    grid(
        &dir.join("progressive.png"),
        "annealed Langevin: x after the steps at 10 of the levels (left: sigma_1)",
        &ordered,
        [rows * progressive.len(), c, size, size],
        progressive.len(),
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
    let x0 = first_images(&data.test, ROWS, device);
    let shape: [usize; 4] = x0.dims();
    let z = randn(
        &mut ChaCha8Rng::seed_from_u64(config.train.seed + 2),
        shape,
        device,
    );
    let mut panels = Vec::new();
    for i in shown_levels(levels.len()).into_iter().rev() {
        let x = x0.clone() + z.clone().mul_scalar(levels.sigmas()[i] as f32);
        panels.push(pixels(x)?);
    }
    let per_image = shape[1] * shape[2] * shape[3];
    let mut ordered = Vec::new();
    for r in 0..shape[0] {
        for panel in &panels {
            ordered.extend_from_slice(&panel[r * per_image..(r + 1) * per_image]);
        }
    }
    grid(
        &dir.join("forward.png"),
        &format!(
            "noise levels: x_0 + sigma z, sigma from {:.3} (left) to {:.1} (right)",
            levels.sigma_min(),
            levels.sigma_max()
        ),
        &ordered,
        [shape[0] * PANELS, shape[1], shape[2], shape[3]],
        PANELS,
    )
}
