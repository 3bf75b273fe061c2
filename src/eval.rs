//! `diffuse eval`: `--nll`, the likelihood of held-out data by the run's family (DDPM: the
//! variational bound, or `--method ode` the probability-flow ODE), written into the run; and
//! `--samples FILE`, the distance of samples to the data, which depends on the kind of data
//! only (`eval_samples.rs`). One path for every family: the flags are checked, the run is
//! locked, and its family evaluates it (`Family::nll`).

use std::path::Path;

use anyhow::{Result, bail};
use clap::Args;

use crate::config::RunConfig;
use crate::families::{Family, Task, dispatch};
use crate::kinds::Kind;

#[derive(Args)]
pub struct EvalArgs {
    /// A run directory written by `diffuse train` (2-D or image).
    #[arg(long)]
    pub(crate) run: std::path::PathBuf,
    /// Compute the negative log-likelihood on held-out data (`--method`).
    #[arg(long)]
    pub(crate) nll: bool,
    /// vlb: the variational bound (DDPM eq. 5), term by term; ode: the exact likelihood of the
    /// probability-flow ODE (RK45 with --rtol/--atol), written to nll_ode.json.
    #[arg(long, value_enum, default_value = "vlb")]
    pub(crate) method: Method,
    /// 2-D runs: the sliced Wasserstein distance of these samples (`diffuse sample`'s `.npy`) to
    /// the data, next to the distance between two draws of the data; writes FILE.sw.json.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["nll", "data"])]
    pub(crate) samples: Option<std::path::PathBuf>,
    /// 2-D runs: evaluate these points (`.npy` or `.csv`, [n, 2], in the data's own units)
    /// instead of the run's held-out split; the files are named `nll*_data.*`.
    #[arg(long, value_name = "FILE")]
    pub(crate) data: Option<std::path::PathBuf>,
    /// The ODE solver's relative tolerance (--method ode; default 1e-5).
    #[arg(long)]
    pub(crate) rtol: Option<f64>,
    /// The ODE solver's absolute tolerance (--method ode; default 1e-5).
    #[arg(long)]
    pub(crate) atol: Option<f64>,
    /// Examples to evaluate (default: all held-out points of a 2-D run; 100 test images).
    #[arg(long)]
    pub(crate) n: Option<usize>,
    /// Estimate the bound from about this many timesteps instead of all T: t = 0 and the first
    /// K / 2 KL terms exactly, the rest from K / 2 drawn uniformly (once, shared by all examples).
    /// Unbiased, faster; the printed interval covers the examples, not the draw of t.
    #[arg(long)]
    pub(crate) t_samples: Option<usize>,
    /// Clamp the model's x_0 estimate to [-R, R] before forming the reverse mean, as a sampler with
    /// `clip_sample` does and as DDPM's and improved DDPM's bits/dim code do (`clip_denoised`).
    /// Default: the mean the network defines. Writes `nll_clip_x0.*` instead of `nll.*`.
    #[arg(long, value_name = "R")]
    pub(crate) clip_x0: Option<f64>,
    /// Examples per forward pass.
    #[arg(long, default_value_t = 500)]
    pub(crate) batch_size: usize,
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Method {
    Vlb,
    Ode,
}

/// The mean of per-example values and the half-width of its 95% confidence interval (normal
/// approximation); `None` for a single example, whose sample variance is undefined.
pub(crate) fn mean_and_ci95(values: &[f64]) -> (f64, Option<f64>) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let ci = (values.len() > 1).then(|| {
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        1.96 * (var / n).sqrt()
    });
    (mean, ci)
}

/// "+- 0.0123 bits/dim (95% CI over 200 examples" for the printed summary; one example has no
/// interval.
pub(crate) fn interval(ci: Option<f64>, examples: usize) -> String {
    match ci {
        Some(ci) => format!("+- {ci:.4} bits/dim (95% CI over {examples} examples"),
        None => "bits/dim (one example: no confidence interval".into(),
    }
}

/// The files' stem: `nll`, or `nll_clip_x0` for a clamped evaluation.
pub(crate) fn stem(args: &EvalArgs) -> String {
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

pub fn run(args: EvalArgs) -> Result<()> {
    if let Some(file) = &args.samples {
        return crate::eval_samples::run(&args.run, file, args.seed);
    }
    if !args.nll {
        bail!(
            "say what to evaluate: --nll (the likelihood of held-out data) or --samples FILE.npy"
        );
    }
    if args.n == Some(0) || args.batch_size == 0 || args.t_samples == Some(0) {
        bail!("--n, --batch-size and --t-samples must be at least 1");
    }
    if args.clip_x0.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("--clip-x0 must be a positive number (the x_0 estimate is clamped to [-R, R])");
    }
    if args.method == Method::Ode && args.clip_x0.is_some() {
        bail!("--clip-x0 applies to the bound (--method vlb); the ODE has no x_0 clamp");
    }
    if args.method == Method::Ode && args.t_samples.is_some() {
        bail!("--t-samples applies to the bound (--method vlb); the ODE visits no timesteps");
    }
    if args.method == Method::Vlb && (args.rtol.is_some() || args.atol.is_some()) {
        bail!("--rtol and --atol apply to --method ode; the bound (vlb) has no solver");
    }
    crate::families::ddpm::solvers::tolerance(args.rtol, args.atol)?;
    let dir = &args.run;
    // The evaluation writes its files into the run: one writer at a time.
    let _lock = crate::run_dir::lock_existing(dir)?;
    let (family, kind, config) = crate::sample::resolve(dir)?;
    let Some(config) = config else {
        bail!(
            "{} is a diffusers pipeline folder, not a diffuse run: --nll needs the run's data (diffuse_config.json)",
            dir.display()
        );
    };
    dispatch(
        family,
        kind,
        Nll {
            args: &args,
            dir,
            config: &config,
        },
    )
}

/// `eval --nll`'s generic half.
struct Nll<'a> {
    args: &'a EvalArgs,
    dir: &'a Path,
    config: &'a RunConfig,
}

impl Task for Nll<'_> {
    fn run<const D: usize, K: Kind<D>, F: Family<D, K>>(self) -> Result<()> {
        F::nll(self.args, self.dir, self.config)
    }
}
