//! `diffuse sample`: draw points from a trained run, and the sampling helper `train` shares.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor};
use clap::Args;
use diffuse_core::Denoiser;
use diffuse_core::coef::randn;
use diffuse_core::sampler::{self, DdpmSampler, StepOutput};
use diffuse_core::solver::Solver;
use diffuse_data::{Points, Standardizer, write_npy};
use diffuse_eval::plots::{Layer, SAMPLE_COLOR, scatter};
use diffuse_nn::Mlp;
use diffuse_train::checkpoint::load_weights;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::RunConfig;
use crate::progress;
use crate::run_dir::ModelFamily;
use crate::solvers::{SolverChoice, build};

#[derive(Args)]
pub struct SampleArgs {
    /// A run directory written by `diffuse train` (2-D or image).
    #[arg(
        long,
        required_unless_present = "pipeline",
        conflicts_with = "pipeline"
    )]
    pub run: Option<PathBuf>,
    /// A diffusers pipeline folder (model_index.json, unet/, scheduler/), e.g. a downloaded
    /// `google/ddpm-cifar10-32`, or an image run directory.
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
    #[command(flatten)]
    pub solver: SolverChoice,
    /// Number of samples (default: 1000 points, 16 images; with --init-noise, its N).
    #[arg(long)]
    pub n: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output `.npy`, float32: points [n, 2] in the data's own units, or images [N, C, H, W] in
    /// model space ([-1, 1]), before conversion to 8 bits.
    #[arg(long, default_value = "samples.npy")]
    pub out: PathBuf,
    /// Also write a PNG: a scatter plot of points, or a grid of the 8-bit images.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Images: x_T from a float32/float64 `.npy` of shape [N, C, H, W] instead of the seed: a
    /// standard-normal draw, scaled by the solver's first noise level as diffusers' pipelines
    /// scale by `init_noise_sigma`.
    #[arg(long)]
    pub init_noise: Option<PathBuf>,
    /// 2-D runs: use the raw weights instead of the EMA weights.
    #[arg(long)]
    pub no_ema: bool,
    /// Image runs: draw the run's pictures (samples, progressive, forward, interpolation) again
    /// from its saved weights, into the run directory.
    #[arg(long, requires = "run")]
    pub pictures: bool,
}

/// Points drawn from a 2-D run when `--n` is not given.
const DEFAULT_POINTS: usize = 1000;

/// DDPM from N(0, I) for `n` points (model space), as `train` draws its pictures; `observe`
/// sees each step.
#[allow(non_snake_case)] // x_T, as in the papers.
pub fn draw_ddpm<M: Denoiser<2>>(
    model: &M,
    config: &RunConfig,
    n: usize,
    seed: u64,
    device: &Device,
    observe: impl FnMut(usize, usize, &StepOutput<2>),
) -> Result<Tensor<2>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x_T = randn(&mut rng, [n, config.model.data_dim], device);
    let scheduler = config.scheduler_config();
    let s = DdpmSampler::new(&scheduler.schedule()?, scheduler.ddpm(None))?;
    Ok(sampler::sample(model, &s, x_T, &mut rng, observe)?)
}

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
        None => format!("rtol {:e}", choice.rtol),
    }
}

/// A [n, dim] tensor back to points in the data's own units.
pub fn to_points(x: Tensor<2>, standardizer: &Standardizer) -> Result<Points> {
    let dim = x.dims()[1];
    let data: Vec<f32> = x
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let points = standardizer.inverse(&Points::new(data, dim));
    if let Some(v) = points.data.iter().find(|v| !v.is_finite()) {
        bail!(
            "a sample is {v} in the data's units: the data's scale (std up to {:e}) overflows float32; rescale the data",
            standardizer.std.iter().fold(0.0f64, |m, s| m.max(*s))
        );
    }
    Ok(points)
}

/// Loads a run's config and weights.
pub fn load_run(dir: &Path, ema: bool, device: &Device) -> Result<(RunConfig, Mlp)> {
    let config = RunConfig::load(&dir.join("config.json"))
        .with_context(|| format!("{} is not a diffuse run directory", dir.display()))?;
    let file = if ema && config.train.ema_decay.is_some() {
        "model_ema.safetensors"
    } else {
        "model.safetensors"
    };
    config.validate().with_context(|| {
        format!(
            "{} holds an invalid config",
            dir.join("config.json").display()
        )
    })?;
    let model = config.model.init(device)?;
    let model = load_weights(model, &dir.join(file))?;
    Ok((config, model))
}

pub fn run(args: SampleArgs) -> Result<()> {
    if args.n == Some(0) {
        bail!("--n must be at least 1");
    }
    let inputs: Vec<&Path> = args.init_noise.iter().map(|p| p.as_path()).collect();
    crate::run_dir::check_output(&args.out, &inputs)?;
    if let Some(png) = &args.png {
        crate::run_dir::check_output(png, &inputs)?;
    }
    if args.pictures {
        let dir = args
            .run
            .as_ref()
            .expect("clap requires --run with --pictures");
        return crate::image_train::redraw_pictures(dir);
    }
    let dir = match (&args.pipeline, &args.run) {
        (Some(dir), _) => return crate::sample_images::run(dir, &args),
        (None, Some(dir)) if ModelFamily::of(dir)? == ModelFamily::Unet => {
            return crate::sample_images::run(dir, &args);
        }
        (None, Some(dir)) => dir.clone(),
        (None, None) => bail!("pass --run DIR or --pipeline DIR"),
    };
    if args.init_noise.is_some() {
        bail!("--init-noise applies to image models (--pipeline DIR)");
    }
    let n = args.n.unwrap_or(DEFAULT_POINTS);
    let device = Device::default();
    let (config, model) = load_run(&dir, !args.no_ema, &device)?;
    crate::memory::check_mlp_sampling(&config.model, n)?;
    let solver = build::<2>(&args.solver, &config.scheduler_config())?;
    let standardizer = config
        .standardizer
        .clone()
        .unwrap_or(Standardizer::identity(config.model.data_dim));
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let z = randn(&mut rng, [n, config.model.data_dim], &device);
    let x = run_solver(solver.as_ref(), &model, z, &mut rng)?;
    let points = to_points(x, &standardizer)?;
    write_npy(&args.out, &[points.len(), points.dim], &points.data)?;
    println!("wrote {} samples to {}", points.len(), args.out.display());
    if let Some(png) = &args.png {
        let title = format!(
            "{} samples ({}, {})",
            points.len(),
            args.solver.sampler.label(),
            steps_label(&args.solver, config.schedule.num_train_timesteps)
        );
        scatter(
            png,
            &title,
            &[Layer {
                label: "samples",
                points: &points.data,
                color: SAMPLE_COLOR,
            }],
        )?;
        println!("wrote {}", png.display());
    }
    Ok(())
}
