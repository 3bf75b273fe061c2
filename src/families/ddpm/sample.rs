//! `diffuse sample` for the DDPM family: load the network and its scheduler config, draw x_T
//! (from the seed, or `--init-noise` for images), run the `--sampler`'s solver, write `.npy`
//! (and a picture).

use std::path::Path;

use anyhow::{Result, bail};
use burn::tensor::{Device, Tensor};
use diffuse_core::Denoiser;
use diffuse_core::coef::randn;
use diffuse_core::solver::Solver;
use diffuse_data::Standardizer;
use diffuse_diffusers::{Pipeline, SchedulerConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::solvers::build;
use crate::args::{SampleArgs, SolverChoice};
use crate::kinds::images::write_images;
use crate::kinds::points::{load_mlp, write_points};
use crate::progress;

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
        let n = args.n.unwrap_or(crate::sample::DEFAULT_IMAGES);
        crate::memory::check_unet_sampling(&pipeline.unet_config, size, size, n)?;
        return Ok(randn(rng, [n, c, size, size], device));
    };
    crate::kinds::images::read_noise(path, &pipeline.unet_config, args.n, device)
}

/// `diffuse sample` on a DDPM run of points.
pub fn points(args: &SampleArgs, dir: &Path) -> Result<()> {
    if args.init_noise.is_some() {
        bail!("--init-noise applies to image models (--pipeline DIR)");
    }
    let device = crate::device::device();
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let n = args.n.unwrap_or(crate::sample::DEFAULT_POINTS);
    let (config, model) = load_mlp(dir, !args.no_ema, &device)?;
    let dim = config.mlp()?.data_dim;
    crate::memory::check_mlp_sampling(config.mlp()?, n)?;
    let scheduler = config.scheduler_config();
    let z = randn(&mut rng, [n, dim], &device);
    let x = draw(args, &model, &scheduler, z, &mut rng)?;
    let standardizer = config
        .standardizer
        .clone()
        .unwrap_or(Standardizer::identity(dim));
    write_points(args, x, &standardizer, &title(args, n, &scheduler))
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
    let n = x.dims()[0];
    // An LDMPipeline's samples are latents: its decoder makes them images.
    let x = match &pipeline.vqvae {
        Some(vqvae) => crate::families::latent::decode(vqvae, x)?,
        None => x,
    };
    write_images(args, x, &title(args, n, &pipeline.scheduler))
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
        args.solver.sampler().label(),
        steps_label(&args.solver, scheduler.num_train_timesteps)
    )
}
