//! `diffuse sample` for the DDPM family: load the network and its scheduler config, draw x_T
//! (from the seed, or `--init-noise` for images), run the `--sampler`'s solver, write `.npy`
//! (and a picture).

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use diffuse_core::Denoiser;
use diffuse_core::coef::randn;
use diffuse_core::solver::Solver;
use diffuse_data::images::to_pixel;
use diffuse_data::{Standardizer, read_npy, write_npy};
use diffuse_diffusers::{Pipeline, SchedulerConfig};
use diffuse_eval::grid::{Images, image_grid};
use diffuse_eval::plots::{Layer, SAMPLE_COLOR, scatter};
use diffuse_nn::Mlp;
use diffuse_train::checkpoint::load_weights;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::solvers::build;
use crate::args::{SampleArgs, SolverChoice};
use crate::config::RunConfig;
use crate::kinds::points::to_points;
use crate::progress;

/// Points drawn from a 2-D run when `--n` is not given.
const DEFAULT_POINTS: usize = 1000;
/// Images drawn when neither `--n` nor `--init-noise` gives the count.
const DEFAULT_IMAGES: usize = 16;

/// Runs a solver with a progress bar, and says how many network evaluations it made.
pub fn run_solver<const D: usize>(
    solver: &dyn Solver<D>,
    net: &dyn Denoiser<D>,
    z: Tensor<D>,
    rng: &mut ChaCha8Rng,
) -> Result<Tensor<D>> {
    let pb = match solver.model_calls() {
        Some(calls) => progress::bar(calls, "sampling"),
        None => progress::spinner("sampling (adaptive ODE): network evaluations"),
    };
    let out = solver.sample(net, z, rng, &mut |calls| pb.set_position(calls as u64));
    pb.finish_and_clear();
    let out = out?;
    eprintln!("{} network evaluations", out.nfe);
    Ok(out.x0)
}

/// "N steps" or "adaptive" for titles.
pub fn steps_label(choice: &SolverChoice, train_steps: usize) -> String {
    match choice.steps_or_default(train_steps) {
        Some(n) => format!("{n} steps"),
        None => format!(
            "rtol {:e}",
            choice.rtol.unwrap_or(crate::args::DEFAULT_TOLERANCE)
        ),
    }
}

/// Loads a point run's config and weights (EMA, unless `ema` is false or the run keeps none).
pub fn load_run(dir: &Path, ema: bool, device: &Device) -> Result<(RunConfig, Mlp)> {
    let config = RunConfig::load_run(dir)?;
    let file = if ema && config.train.ema_decay.is_some() {
        "model_ema.safetensors"
    } else {
        "model.safetensors"
    };
    let model = config.mlp()?.init(device)?;
    let model = load_weights(model, &dir.join(file))?;
    Ok((config, model))
}

/// x_T: the `--init-noise` file (checked against the U-Net), or N(0, I) from the seed.
#[allow(non_snake_case)] // x_T, as in the papers.
fn initial_noise(
    args: &SampleArgs,
    pipeline: &Pipeline,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<Tensor<4>> {
    let c = pipeline.unet_config.in_channels;
    let Some(path) = &args.init_noise else {
        let Some(size) = pipeline.unet_config.sample_size else {
            bail!(
                "unet/config.json has no sample_size; pass --init-noise NOISE.npy [N, {c}, H, W]"
            );
        };
        let n = args.n.unwrap_or(DEFAULT_IMAGES);
        crate::memory::check_unet_sampling(&pipeline.unet_config, size, size, n)?;
        return Ok(randn(rng, [n, c, size, size], device));
    };
    let noise = read_npy(path)?;
    if let Some(i) = noise.data.iter().position(|v| !v.is_finite()) {
        bail!(
            "{}: value {} at flat index {i} is not finite; initial noise must be finite",
            path.display(),
            noise.data[i]
        );
    }
    let shape: [usize; 4] = match noise.shape.as_slice() {
        &[n, ch, h, w] if ch == c && n > 0 => [n, ch, h, w],
        s => bail!(
            "{}: init noise must have shape [N, {c}, H, W] for this U-Net, found {s:?}",
            path.display()
        ),
    };
    let levels = pipeline.unet_config.block_out_channels.len() as u32;
    let factor = 1usize << (levels - 1);
    if !shape[2].is_multiple_of(factor) || !shape[3].is_multiple_of(factor) {
        bail!(
            "{}: H and W ({} x {}) must be divisible by {factor} for this {levels}-level U-Net",
            path.display(),
            shape[2],
            shape[3]
        );
    }
    if let Some(n) = args.n
        && n != shape[0]
    {
        bail!(
            "--n {n} disagrees with the {} images in {}; leave --n out",
            shape[0],
            path.display()
        );
    }
    let [n, _, h, w] = shape;
    crate::memory::check_unet_sampling(&pipeline.unet_config, h, w, n)
        .with_context(|| format!("--init-noise {}", path.display()))?;
    Ok(Tensor::from_data(
        TensorData::new(noise.data, shape),
        device,
    ))
}

/// `diffuse sample` on a DDPM run of points.
pub fn points(args: &SampleArgs, dir: &Path) -> Result<()> {
    if args.init_noise.is_some() {
        bail!("--init-noise applies to image models (--pipeline DIR)");
    }
    let device = crate::device::device();
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let n = args.n.unwrap_or(DEFAULT_POINTS);
    let (config, model) = load_run(dir, !args.no_ema, &device)?;
    let dim = config.mlp()?.data_dim;
    crate::memory::check_mlp_sampling(config.mlp()?, n)?;
    let scheduler = config.scheduler_config();
    let z = randn(&mut rng, [n, dim], &device);
    let x = draw(args, &model, &scheduler, z, &mut rng)?;
    let standardizer = config
        .standardizer
        .clone()
        .unwrap_or(Standardizer::identity(dim));
    write_points(args, x, &standardizer, &scheduler)
}

/// `diffuse sample` on a DDPM run of images, or on a diffusers pipeline folder.
pub fn images(args: &SampleArgs, dir: &Path) -> Result<()> {
    if args.no_ema {
        bail!(
            "--no-ema applies to 2-D runs; an image run keeps its raw weights as a diffusers model in {}",
            dir.join("raw").display()
        );
    }
    let device = crate::device::device();
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let pipeline = crate::memory::load_pipeline(dir, &device)?;
    let z = initial_noise(args, &pipeline, &mut rng, &device)?;
    let x = draw(args, &pipeline.unet, &pipeline.scheduler, z, &mut rng)?;
    write_images(args, x, &pipeline.scheduler)
}

/// The chosen solver over `net`, from z = x_T.
fn draw<const D: usize>(
    args: &SampleArgs,
    net: &dyn Denoiser<D>,
    scheduler: &SchedulerConfig,
    z: Tensor<D>,
    rng: &mut ChaCha8Rng,
) -> Result<Tensor<D>> {
    let solver = build::<D>(&args.solver, scheduler)?;
    run_solver(solver.as_ref(), net, z, rng)
}

/// The picture's title: how many, by which solver, in how many steps.
fn title(args: &SampleArgs, n: usize, scheduler: &SchedulerConfig) -> String {
    format!(
        "{n} samples ({}, {})",
        args.solver.sampler.label(),
        steps_label(&args.solver, scheduler.num_train_timesteps)
    )
}

/// Points in the data's units to `--out`, and a scatter plot to `--png`.
fn write_points(
    args: &SampleArgs,
    x: Tensor<2>,
    standardizer: &Standardizer,
    scheduler: &SchedulerConfig,
) -> Result<()> {
    let points = to_points(x, standardizer)?;
    write_npy(&args.out, &[points.len(), points.dim], &points.data)?;
    println!("wrote {} samples to {}", points.len(), args.out.display());
    if let Some(png) = &args.png {
        let layer = Layer {
            label: "samples",
            points: &points.data,
            color: SAMPLE_COLOR,
        };
        scatter(png, &title(args, points.len(), scheduler), &[layer])?;
        println!("wrote {}", png.display());
    }
    Ok(())
}

/// Images in model space to `--out`, and a grid of their 8-bit pixels to `--png`.
fn write_images(args: &SampleArgs, x: Tensor<4>, scheduler: &SchedulerConfig) -> Result<()> {
    let shape: [usize; 4] = x.dims();
    let values: Vec<f32> = x
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    write_npy(&args.out, &shape, &values)?;
    println!(
        "wrote {} images ({}x{}x{}, model space) to {}",
        shape[0],
        shape[1],
        shape[2],
        shape[3],
        args.out.display()
    );
    if let Some(png) = &args.png {
        let pixels: Vec<u8> = values.iter().map(|&v| to_pixel(v)).collect();
        let cols = (shape[0] as f64).sqrt().ceil() as usize;
        let scale = if shape[2] <= 32 { 3 } else { 1 };
        let grid = Images {
            pixels: &pixels,
            shape,
        };
        image_grid(png, &title(args, shape[0], scheduler), &grid, cols, scale)?;
        println!("wrote {}", png.display());
    }
    Ok(())
}
