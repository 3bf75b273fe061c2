//! The flags of `sample` and `eval`: what the commands parse and the families carry out
//! (`crate::families`). A family refuses, by name, a flag that does not apply to it.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use diffuse_core::solver::Tolerance;

/// DDIM's step count when `--steps` is not given (the DDIM paper's usual setting).
pub const DEFAULT_DDIM_STEPS: usize = 50;

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
    /// Draw the run's pictures and metrics again from its saved weights, into the run
    /// directory (2-D runs: forward, reverse, samples; image runs: samples, progressive,
    /// forward, interpolation).
    #[arg(long, requires = "run", conflicts_with_all = [
        "n", "seed", "out", "png", "init_noise", "no_ema", "sampler", "steps", "eta", "karras",
        "rtol", "atol", "corrector_steps", "snr"
    ])]
    pub pictures: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SamplerKind {
    /// DDPM ancestral sampling (Algorithm 2); all T steps by default.
    Ddpm,
    /// DDIM (eta = 0: deterministic); 50 steps by default.
    Ddim,
    /// Euler on the probability-flow ODE (diffusers' EulerDiscreteScheduler); 50 steps.
    Euler,
    /// Heun, Karras et al. 2022 Algorithm 1 (HeunDiscreteScheduler); 25 steps, 49 evaluations.
    Heun,
    /// DPM-Solver++(2M) (DPMSolverMultistepScheduler); 20 steps.
    #[value(name = "dpm-solver++")]
    DpmSolverPp,
    /// The probability-flow ODE by adaptive RK45 (--rtol, --atol); reports its evaluations.
    Ode,
    /// Euler-Maruyama on the reverse SDE; T steps by default (score runs: the SDE's own
    /// clock, score.steps; --corrector-steps adds Langevin corrector steps).
    Sde,
    /// Predictor-corrector (Song et al. 2021, Algorithms 2-3): the reverse-diffusion predictor
    /// and --corrector-steps Langevin corrector steps at --snr (score runs, and DDPM runs on a
    /// linear schedule, the VP SDE's chain).
    Pc,
    /// Annealed Langevin dynamics (NCSN Algorithm 1): --steps per noise level (NCSN runs).
    Langevin,
}

impl SamplerKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Ddpm => "DDPM",
            Self::Ddim => "DDIM",
            Self::Euler => "Euler",
            Self::Heun => "Heun",
            Self::DpmSolverPp => "DPM-Solver++(2M)",
            Self::Ode => "PF-ODE RK45",
            Self::Sde => "reverse SDE",
            Self::Pc => "predictor-corrector",
            Self::Langevin => "annealed Langevin",
        }
    }
}

/// The sampling flags `sample` takes.
#[derive(Args, Clone, Debug)]
pub struct SolverChoice {
    /// The sampler (default: ddpm for DDPM runs and pipelines, langevin for NCSN runs, pc for
    /// score runs).
    #[arg(long, value_enum)]
    pub sampler: Option<SamplerKind>,
    /// Sampling steps (diffusers' num_inference_steps). Defaults: DDPM and SDE all T, DDIM and
    /// Euler 50, Heun 25, DPM-Solver++ 20; the ODE solver chooses its own. Langevin: steps per
    /// noise level (default: the run's ncsn.langevin_steps).
    #[arg(long)]
    pub steps: Option<usize>,
    /// DDIM's eta in [0, 1] (0: deterministic).
    #[arg(long, default_value_t = 0.0)]
    pub eta: f64,
    /// Karras et al.'s sigmas (rho = 7) for euler, heun, dpm-solver++ and sde
    /// (diffusers' use_karras_sigmas).
    #[arg(long)]
    pub karras: bool,
    /// The ODE solver's relative tolerance (--sampler ode; default 1e-5).
    #[arg(long)]
    pub rtol: Option<f64>,
    /// The ODE solver's absolute tolerance (--sampler ode; default 1e-5).
    #[arg(long)]
    pub atol: Option<f64>,
    /// Langevin corrector steps per time step (--sampler pc: default 1, or the run's
    /// score.corrector_steps; --sampler sde on score runs: default 0).
    #[arg(long)]
    pub corrector_steps: Option<usize>,
    /// The Langevin corrector's signal-to-noise ratio (default 0.16, or the run's score.snr).
    #[arg(long)]
    pub snr: Option<f64>,
}

/// The Langevin corrector's signal-to-noise ratio when --snr is not given (score_sde's 0.16).
pub const DEFAULT_SNR: f64 = 0.16;

/// The ODE solver's tolerances when --rtol / --atol are not given (score_sde uses 1e-5).
pub const DEFAULT_TOLERANCE: f64 = 1e-5;

/// `--rtol` and `--atol`, defaulted and checked: positive and finite.
pub fn tolerance(rtol: Option<f64>, atol: Option<f64>) -> Result<Tolerance> {
    let tol = Tolerance {
        rtol: rtol.unwrap_or(DEFAULT_TOLERANCE),
        atol: atol.unwrap_or(DEFAULT_TOLERANCE),
        ..Default::default()
    };
    for (flag, v) in [("--rtol", tol.rtol), ("--atol", tol.atol)] {
        if !(v > 0.0 && v.is_finite()) {
            bail!("{flag} must be a positive finite number, got {v}");
        }
    }
    Ok(tol)
}

impl SolverChoice {
    /// The sampler of a DDPM run: `--sampler`, or DDPM's ancestral sampler.
    pub fn sampler(&self) -> SamplerKind {
        self.sampler.unwrap_or(SamplerKind::Ddpm)
    }

    /// The flags that set a sampler's details, by name, where given: each family refuses those
    /// its sampler does not take.
    pub fn given(&self) -> Vec<&'static str> {
        [
            ("--eta", self.eta != 0.0),
            ("--karras", self.karras),
            ("--rtol", self.rtol.is_some()),
            ("--atol", self.atol.is_some()),
            ("--corrector-steps", self.corrector_steps.is_some()),
            ("--snr", self.snr.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect()
    }

    /// The step count used (for titles); `None` for the adaptive ODE.
    pub fn steps_or_default(&self, train_steps: usize) -> Option<usize> {
        Some(match (self.sampler(), self.steps) {
            (SamplerKind::Ode, _) => return None,
            (_, Some(s)) => s,
            (SamplerKind::Ddpm | SamplerKind::Sde | SamplerKind::Pc, None) => train_steps,
            (SamplerKind::Ddim | SamplerKind::Euler, None) => DEFAULT_DDIM_STEPS,
            (SamplerKind::Heun, None) => 25,
            (SamplerKind::DpmSolverPp, None) => 20,
            (SamplerKind::Langevin, None) => return None,
        })
    }
}

#[derive(Args)]
pub struct EvalArgs {
    /// A run directory written by `diffuse train` (2-D or image).
    #[arg(long)]
    pub run: std::path::PathBuf,
    /// Compute the negative log-likelihood on held-out data (`--method`).
    #[arg(long)]
    pub nll: bool,
    /// vlb: the variational bound (DDPM eq. 5), term by term; ode: the exact likelihood of the
    /// probability-flow ODE (RK45 with --rtol/--atol), written to nll_ode.json.
    #[arg(long, value_enum, default_value = "vlb")]
    pub method: Method,
    /// 2-D runs: the sliced Wasserstein distance of these samples (`diffuse sample`'s `.npy`) to
    /// the data, next to the distance between two draws of the data; writes FILE.sw.json.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["nll", "data"])]
    pub samples: Option<std::path::PathBuf>,
    /// 2-D runs: evaluate these points (`.npy` or `.csv`, [n, 2], in the data's own units)
    /// instead of the run's held-out split; the files are named `nll*_data.*`.
    #[arg(long, value_name = "FILE")]
    pub data: Option<std::path::PathBuf>,
    /// The ODE solver's relative tolerance (--method ode; default 1e-5).
    #[arg(long)]
    pub rtol: Option<f64>,
    /// The ODE solver's absolute tolerance (--method ode; default 1e-5).
    #[arg(long)]
    pub atol: Option<f64>,
    /// Image runs: draw --n images (default 10,000) with the run's default sampler and write
    /// their FID against the dataset's training split and their Inception Score (fid.json, and
    /// metrics.json). Needs --inception.
    #[arg(long, conflicts_with_all = ["nll", "samples", "data"])]
    pub fid: bool,
    /// pytorch-fid's Inception weights (`pt_inception-2015-12-05-6726825d.pth`), for --fid.
    #[arg(long, value_name = "FILE", requires = "fid")]
    pub inception: Option<std::path::PathBuf>,
    /// --fid: the sampler that draws the images (default: `diffuse sample`'s for the run).
    #[arg(long, value_enum, requires = "fid")]
    pub sampler: Option<SamplerKind>,
    /// --fid: the sampler's steps (default: the sampler's own).
    #[arg(long, requires = "fid")]
    pub steps: Option<usize>,
    /// Examples to evaluate (default: all held-out points of a 2-D run; 100 test images;
    /// --fid: 10,000 samples).
    #[arg(long)]
    pub n: Option<usize>,
    /// Estimate the bound from about this many timesteps instead of all T: t = 0 and the first
    /// K / 2 KL terms exactly, the rest from K / 2 drawn uniformly (once, shared by all examples).
    /// Unbiased, faster; the printed interval covers the examples, not the draw of t.
    #[arg(long)]
    pub t_samples: Option<usize>,
    /// Clamp the model's x_0 estimate to [-R, R] before forming the reverse mean, as a sampler with
    /// `clip_sample` does and as DDPM's and improved DDPM's bits/dim code do (`clip_denoised`).
    /// Default: the mean the network defines. Writes `nll_clip_x0.*` instead of `nll.*`.
    #[arg(long, value_name = "R")]
    pub clip_x0: Option<f64>,
    /// VAE runs: the importance-weighted bound's K (default 100; 1 is the ELBO).
    #[arg(long, value_name = "K")]
    pub iwae_k: Option<usize>,
    /// Examples per forward pass.
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    Vlb,
    Ode,
}

/// The files' stem: `nll`, or `nll_clip_x0` for a clamped evaluation.
pub fn stem(args: &EvalArgs) -> String {
    let base = match (args.method, args.clip_x0) {
        (Method::Ode, _) => "nll_ode",
        (Method::Vlb, Some(_)) => "nll_clip_x0",
        (Method::Vlb, None) => "nll",
    };
    match args.data {
        Some(_) => format!("{base}_data"),
        None => base.to_string(),
    }
}
