//! `--sampler`: the one place a command turns a sampler name into a [`Solver`], for 2-D runs and
//! pipeline folders alike (a 2-D run's sampling settings are written as a scheduler config
//! first, [`crate::config::RunConfig::scheduler_config`]).

use anyhow::{Result, bail};
use diffuse_core::discrete::sampler::{DdimSampler, DdpmSampler};
use diffuse_core::discrete::timesteps::TimestepSpacing;
use diffuse_core::level::SigmaTable;
use diffuse_core::sde::Sde;
use diffuse_core::sde::pc::{Pc, Predictor};
use diffuse_core::solver::adapter::Adapter;
use diffuse_core::solver::grid::{Grid, karras_sigmas};
use diffuse_core::solver::{Method, PcSolver, SigmaSolver, Solver, Stepwise};
use diffuse_core::{BetaSchedule, NoiseSchedule};
use diffuse_diffusers::{DiffusersVariance, SchedulerConfig, SigmaScheduler};

use crate::args::{DEFAULT_SNR, SamplerKind, SolverChoice, tolerance};

/// Said when DDIM samples a model with a learned variance, which it cannot use.
pub const DDIM_LEARNED_VARIANCE_NOTE: &str = "note: DDIM's noise is set by --eta alone (DDIM eq. 16); this model's learned variance is not used (--sampler ddpm uses it)";

/// The solver `choice` names, configured from `scheduler`.
pub fn build<const D: usize>(
    choice: &SolverChoice,
    scheduler: &SchedulerConfig,
) -> Result<Box<dyn Solver<D>>> {
    let schedule = scheduler.schedule()?;
    let steps = choice.steps_or_default(schedule.num_timesteps());
    if choice.eta != 0.0 && choice.sampler() != SamplerKind::Ddim {
        bail!("--eta applies to DDIM only; the other samplers' noise is fixed by their method");
    }
    if choice.karras
        && matches!(
            choice.sampler(),
            SamplerKind::Ddpm | SamplerKind::Ddim | SamplerKind::Ode
        )
    {
        bail!("--karras applies to euler, heun, dpm-solver++ and sde");
    }
    if choice.sampler() == SamplerKind::Ode && choice.steps.is_some() {
        bail!("--sampler ode chooses its own steps; set --rtol and --atol instead of --steps");
    }
    if choice.sampler() != SamplerKind::Ode && (choice.rtol.is_some() || choice.atol.is_some()) {
        bail!("--rtol and --atol apply to --sampler ode only; the other samplers take --steps");
    }
    if choice.sampler() != SamplerKind::Pc
        && (choice.corrector_steps.is_some() || choice.snr.is_some())
    {
        bail!("--corrector-steps and --snr apply to --sampler pc");
    }
    let learned = scheduler.variance_type == Some(DiffusersVariance::LearnedRange);
    let n = steps.unwrap_or(0);
    let sigma = |which| -> Result<Box<dyn Solver<D>>> {
        Ok(Box::new(scheduler.sigma_solver(which, n, choice.karras)?))
    };
    Ok(match choice.sampler() {
        SamplerKind::Langevin => bail!(
            "--sampler langevin applies to NCSN runs; a DDPM run samples with ddpm, ddim, euler, heun, dpm-solver++, ode or sde"
        ),
        SamplerKind::Pc => Box::new(pc(choice, scheduler, &schedule, n)?),
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
            let (method, grid) = if choice.sampler() == SamplerKind::Ode {
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
                adapter: Adapter::DiscreteVp(adapter),
                clock: Box::new(table),
            })
        }
    })
}

/// `--sampler pc` on a DDPM model: the VP SDE whose N-step chain is the model's (a linear
/// schedule: beta_i = (beta_min + i / (N - 1) (beta_max - beta_min)) / N, so beta_min =
/// N beta_start and beta_max = N beta_end), N = T steps by default, the reverse-diffusion
/// predictor and Langevin corrector steps (score_sde's sampling of its DDPM checkpoints).
fn pc(
    choice: &SolverChoice,
    scheduler: &SchedulerConfig,
    schedule: &NoiseSchedule,
    n: usize,
) -> Result<PcSolver> {
    let t = schedule.num_timesteps() as f64;
    let sde = match scheduler.beta_schedule {
        BetaSchedule::Linear => Sde::Vp {
            beta_min: scheduler.beta_start * t,
            beta_max: scheduler.beta_end * t,
        },
        other => bail!(
            "--sampler pc samples a DDPM model as the VP SDE, whose chain has linear betas; this model's beta_schedule is {other:?} (use ddpm, ddim, the solvers, ode or sde)"
        ),
    };
    if scheduler.trained_betas.is_some() {
        bail!("--sampler pc needs the chain's linear betas; this scheduler gives trained_betas");
    }
    let pc = Pc {
        predictor: Predictor::ReverseDiffusion,
        corrector_steps: choice.corrector_steps.unwrap_or(1),
        snr: choice.snr.unwrap_or(DEFAULT_SNR),
        steps: n,
        eps: 1e-3,
    };
    pc.validate()?;
    sde.check_steps(pc.steps)?;
    Ok(PcSolver {
        sde,
        pc,
        adapter: Adapter::DiscreteVp(scheduler.adapter(schedule, None)?),
        clock: Box::new(SigmaTable::new(&schedule.alphas_cumprod)),
    })
}
