//! `--sampler`: the one place a command turns a sampler name into a [`Solver`], for 2-D runs and
//! pipeline folders alike (a 2-D run's sampling settings are written as a scheduler config
//! first, [`crate::config::RunConfig::scheduler_config`]).

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use diffuse_core::discrete::sampler::{DdimSampler, DdpmSampler};
use diffuse_core::discrete::timesteps::TimestepSpacing;
use diffuse_core::level::SigmaTable;
use diffuse_core::solver::grid::{Grid, karras_sigmas};
use diffuse_core::solver::{Method, SigmaSolver, Solver, Stepwise, Tolerance};
use diffuse_diffusers::{DiffusersVariance, SchedulerConfig, SigmaScheduler};

/// DDIM's step count when `--steps` is not given (the DDIM paper's usual setting).
pub const DEFAULT_DDIM_STEPS: usize = 50;

/// Said when DDIM samples a model with a learned variance, which it cannot use.
pub const DDIM_LEARNED_VARIANCE_NOTE: &str = "note: DDIM's noise is set by --eta alone (DDIM eq. 16); this model's learned variance is not used (--sampler ddpm uses it)";

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
    /// Euler-Maruyama on the reverse SDE; T steps by default.
    Sde,
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
        }
    }
}

/// The sampling flags `sample` takes.
#[derive(Args, Clone, Debug)]
pub struct SolverChoice {
    #[arg(long, value_enum, default_value = "ddpm")]
    pub sampler: SamplerKind,
    /// Sampling steps (diffusers' num_inference_steps). Defaults: DDPM and SDE all T, DDIM and
    /// Euler 50, Heun 25, DPM-Solver++ 20; the ODE solver chooses its own.
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
}

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
    /// The step count used (for titles); `None` for the adaptive ODE.
    pub fn steps_or_default(&self, train_steps: usize) -> Option<usize> {
        Some(match (self.sampler, self.steps) {
            (SamplerKind::Ode, _) => return None,
            (_, Some(s)) => s,
            (SamplerKind::Ddpm | SamplerKind::Sde, None) => train_steps,
            (SamplerKind::Ddim | SamplerKind::Euler, None) => DEFAULT_DDIM_STEPS,
            (SamplerKind::Heun, None) => 25,
            (SamplerKind::DpmSolverPp, None) => 20,
        })
    }
}

/// The solver `choice` names, configured from `scheduler`.
pub fn build<const D: usize>(
    choice: &SolverChoice,
    scheduler: &SchedulerConfig,
) -> Result<Box<dyn Solver<D>>> {
    let schedule = scheduler.schedule()?;
    let steps = choice.steps_or_default(schedule.num_timesteps());
    if choice.eta != 0.0 && choice.sampler != SamplerKind::Ddim {
        bail!("--eta applies to DDIM only; the other samplers' noise is fixed by their method");
    }
    if choice.karras
        && matches!(
            choice.sampler,
            SamplerKind::Ddpm | SamplerKind::Ddim | SamplerKind::Ode
        )
    {
        bail!("--karras applies to euler, heun, dpm-solver++ and sde");
    }
    if choice.sampler == SamplerKind::Ode && choice.steps.is_some() {
        bail!("--sampler ode chooses its own steps; set --rtol and --atol instead of --steps");
    }
    if choice.sampler != SamplerKind::Ode && (choice.rtol.is_some() || choice.atol.is_some()) {
        bail!("--rtol and --atol apply to --sampler ode only; the other samplers take --steps");
    }
    let learned = scheduler.variance_type == Some(DiffusersVariance::LearnedRange);
    let n = steps.unwrap_or(0);
    let sigma = |which| -> Result<Box<dyn Solver<D>>> {
        Ok(Box::new(scheduler.sigma_solver(which, n, choice.karras)?))
    };
    Ok(match choice.sampler {
        SamplerKind::Ddpm => Box::new(Stepwise(DdpmSampler::new(
            &schedule,
            scheduler.ddpm(choice.steps),
        )?)),
        SamplerKind::Ddim => {
            if learned {
                eprintln!("{DDIM_LEARNED_VARIANCE_NOTE}");
            }
            Box::new(Stepwise(DdimSampler::new(
                &schedule,
                scheduler.ddim(n, choice.eta),
            )?))
        }
        SamplerKind::Euler => sigma(SigmaScheduler::Euler)?,
        SamplerKind::Heun => sigma(SigmaScheduler::Heun)?,
        SamplerKind::DpmSolverPp => sigma(SigmaScheduler::DpmSolverPp)?,
        SamplerKind::Ode | SamplerKind::Sde => {
            let adapter = scheduler.adapter(&schedule, None)?;
            let table = SigmaTable::new(&schedule.alphas_cumprod);
            let (method, grid) = if choice.sampler == SamplerKind::Ode {
                let tol = tolerance(choice.rtol, choice.atol)?;
                let ends = [table.sigma_max().0, table.sigma_min().0];
                (Method::Ode(tol), Grid::from_sigmas(&table, &ends)?)
            } else if choice.karras {
                let sigmas = karras_sigmas(table.sigma_min(), table.sigma_max(), n);
                (Method::Sde, Grid::from_sigmas(&table, &sigmas)?)
            } else {
                let spacing = scheduler
                    .timestep_spacing
                    .unwrap_or(TimestepSpacing::Leading);
                (
                    Method::Sde,
                    Grid::euler(&table, n, spacing, scheduler.steps_offset, false)?,
                )
            };
            Box::new(SigmaSolver {
                method,
                grid,
                adapter,
                table,
            })
        }
    })
}
