//! `diffuse sample`: draw points from a trained run, and the sampling helper `train` shares.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor};
use clap::Args;
use diffuse_core::coef::randn;
use diffuse_core::sampler::{
    self, DdimConfig, DdimSampler, DdpmConfig, DdpmSampler, StepOutput, VarianceType,
};
use diffuse_core::{Denoiser, NoiseSchedule};
use diffuse_data::{Points, Standardizer, write_npy};
use diffuse_eval::plots::{Layer, SAMPLE_COLOR, scatter};
use diffuse_nn::Mlp;
use diffuse_train::checkpoint::load_weights;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::SamplerKind;
use crate::config::RunConfig;
use crate::progress;

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
    #[arg(long, value_enum, default_value = "ddpm")]
    pub sampler: SamplerKind,
    /// Sampling steps (default: all T for DDPM, 50 for DDIM).
    #[arg(long)]
    pub steps: Option<usize>,
    /// DDIM's eta in [0, 1] (0: deterministic).
    #[arg(long, default_value_t = 0.0)]
    pub eta: f64,
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
    /// Images: x_T from a float32/float64 `.npy` of shape [N, C, H, W] instead of the seed.
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

/// DDIM's step count when `--steps` is not given (the DDIM paper's usual setting).
pub const DEFAULT_DDIM_STEPS: usize = 50;

/// Said when DDIM samples a model with a learned variance, which it cannot use.
pub const DDIM_LEARNED_VARIANCE_NOTE: &str = "note: DDIM's noise is set by --eta alone (DDIM eq. 16); this model's learned variance is not used (--sampler ddpm uses it)";

/// Points drawn from a 2-D run when `--n` is not given.
const DEFAULT_POINTS: usize = 1000;

/// Which sampler and how, for [`draw`].
pub struct SamplerChoice {
    pub kind: SamplerKind,
    pub steps: Option<usize>,
    pub eta: f64,
}

/// Runs the reverse process from N(0, I) for `n` points (model space). `observe` sees each step.
#[allow(non_snake_case, clippy::too_many_arguments)] // x_T, as in the papers.
pub fn draw<M: Denoiser<2>>(
    model: &M,
    schedule: &NoiseSchedule,
    config: &RunConfig,
    choice: &SamplerChoice,
    n: usize,
    seed: u64,
    device: &Device,
    mut observe: impl FnMut(usize, usize, &StepOutput<2>),
) -> Result<Tensor<2>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x_T = randn(&mut rng, [n, config.model.data_dim], device);
    let out = match choice.kind {
        SamplerKind::Ddpm => {
            if choice.eta != 0.0 {
                bail!("--eta applies to DDIM only; DDPM's noise is fixed by its variance type");
            }
            let s = DdpmSampler::new(
                schedule,
                DdpmConfig {
                    prediction: config.prediction,
                    // A model that learned its variance samples with it.
                    variance_type: if config.model.learned_variance {
                        VarianceType::LearnedRange
                    } else {
                        config.sample.variance_type
                    },
                    clip_sample: config.sample.clip_sample,
                    num_inference_steps: choice.steps,
                    ..Default::default()
                },
            )?;
            sampler::sample(model, &s, x_T, &mut rng, &mut observe)?
        }
        SamplerKind::Ddim => {
            if config.model.learned_variance {
                eprintln!("{DDIM_LEARNED_VARIANCE_NOTE}");
            }
            let s = DdimSampler::new(
                schedule,
                DdimConfig {
                    prediction: config.prediction,
                    num_inference_steps: choice.steps.unwrap_or(DEFAULT_DDIM_STEPS),
                    eta: choice.eta,
                    clip_sample: config.sample.clip_sample,
                    learned_variance: config.model.learned_variance,
                    ..Default::default()
                },
            )?;
            sampler::sample(model, &s, x_T, &mut rng, &mut observe)?
        }
    };
    Ok(out)
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
        (None, Some(dir)) if dir.join("model_index.json").is_file() => {
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
    let schedule = config.schedule.build()?;
    let choice = SamplerChoice {
        kind: args.sampler,
        steps: args.steps,
        eta: args.eta,
    };
    let standardizer = config
        .standardizer
        .clone()
        .unwrap_or(Standardizer::identity(config.model.data_dim));
    let steps = match (args.sampler, args.steps) {
        (_, Some(s)) => s,
        (SamplerKind::Ddpm, None) => schedule.num_timesteps(),
        (SamplerKind::Ddim, None) => DEFAULT_DDIM_STEPS,
    };
    let pb = progress::bar(steps, "sampling");
    let x = draw(
        &model,
        &schedule,
        &config,
        &choice,
        n,
        args.seed,
        &device,
        |_, _, _| pb.inc(1),
    )?;
    pb.finish_and_clear();
    let points = to_points(x, &standardizer)?;
    write_npy(&args.out, &[points.len(), points.dim], &points.data)?;
    println!("wrote {} samples to {}", points.len(), args.out.display());
    if let Some(png) = &args.png {
        let title = format!(
            "{} samples ({:?}, {steps} steps)",
            points.len(),
            args.sampler
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
