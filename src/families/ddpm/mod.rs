//! The DDPM family: a network on DDPM's discrete chain (Ho et al. 2020; improved DDPM, Nichol
//! & Dhariwal 2021), eps / x_0 / v / mean prediction, trained on L_simple, L_vlb or L_hybrid,
//! sampled by DDPM and DDIM or by the solvers over the chain's noise levels (Euler, Heun,
//! DPM-Solver++, the probability-flow ODE, the reverse SDE), evaluated by the variational bound
//! or the ODE's exact likelihood.
//!
//! - `points` / `images` — the family on each kind of data: network, weights, pictures
//! - `sample` — `diffuse sample` on its runs and on diffusers pipeline folders
//! - `solvers` — `--sampler` to a solver, from the run's scheduler config
//! - `bound` — `diffuse eval --nll`: the bound (`--method vlb`) and the ODE

pub mod bound;
pub mod images;
pub mod points;
pub mod sample;
pub mod solvers;

use anyhow::Result;

use crate::config::RunConfig;

/// The DDPM family (see the module docs).
pub struct Ddpm;

/// DDPM's objective on the run's schedule, prediction type and loss.
/// Warns when the schedule leaves signal at t = T - 1, where sampling starts from N(0, I).
pub fn objective<const D: usize>(config: &RunConfig) -> Result<diffuse_train::Ddpm<D>> {
    let schedule = config.schedule.build()?;
    if let Some(w) = schedule.terminal_warning() {
        eprintln!("warning: {w}");
    }
    Ok(diffuse_train::Ddpm::new(
        schedule,
        config.prediction,
        config.train.loss,
    ))
}
