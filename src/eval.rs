//! `diffuse eval`: `--nll`, the likelihood of held-out data by the run's family (DDPM: the
//! variational bound, or `--method ode` the probability-flow ODE), written into the run; and
//! `--samples FILE`, the distance of samples to the data, which depends on the kind of data
//! only (`eval_samples.rs`). One path for every family: the flags are checked, the run is
//! locked, and its family evaluates it (`Family::nll`).

use std::path::Path;

use anyhow::{Result, bail};

pub use crate::args::{EvalArgs, Method};
use crate::config::RunConfig;
use crate::families::{Family, Task, dispatch};
use crate::kinds::Kind;

pub fn run(args: EvalArgs) -> Result<()> {
    if let Some(file) = &args.samples {
        return crate::eval_samples::run(&args.run, file, args.seed);
    }
    if args.fid {
        if args.steps == Some(0) {
            bail!("--steps must be at least 1");
        }
        // The evaluation writes its files into the run: one writer at a time.
        let _lock = crate::run_dir::lock_existing(&args.run)?;
        return crate::fid::eval::run(&args);
    }
    if !args.nll {
        bail!(
            "say what to evaluate: --nll (the likelihood of held-out data), --samples FILE.npy, or --fid (image runs)"
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
    crate::args::tolerance(args.rtol, args.atol)?;
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
