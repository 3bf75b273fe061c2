//! `--sampler`: the one place a command turns a sampler name into a [`Solver`], for 2-D runs and
//! pipeline folders alike (a 2-D run's sampling settings are written as a scheduler config
//! first, [`crate::config::RunConfig::scheduler_config`]).

use anyhow::{Result, bail};
use diffuse_core::discrete::sampler::{DdimSampler, DdpmSampler};
use diffuse_core::discrete::timesteps::TimestepSpacing;
use diffuse_core::level::SigmaTable;
use diffuse_core::solver::grid::{Grid, karras_sigmas};
use diffuse_core::solver::{Method, SigmaSolver, Solver, Stepwise};
use diffuse_diffusers::{DiffusersVariance, SchedulerConfig, SigmaScheduler};

use crate::args::{SamplerKind, SolverChoice, tolerance};

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
    let learned = scheduler.variance_type == Some(DiffusersVariance::LearnedRange);
    let n = steps.unwrap_or(0);
    let sigma = |which| -> Result<Box<dyn Solver<D>>> {
        Ok(Box::new(scheduler.sigma_solver(which, n, choice.karras)?))
    };
    Ok(match choice.sampler() {
        SamplerKind::Langevin => bail!(
            "--sampler langevin applies to NCSN runs; a DDPM run samples with ddpm, ddim, euler, heun, dpm-solver++, ode or sde"
        ),
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
                adapter,
                table,
            })
        }
    })
}
