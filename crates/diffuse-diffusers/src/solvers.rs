//! Euler, Heun and DPM-Solver++ configured from a pipeline folder's scheduler config, as
//! `EulerDiscreteScheduler.from_config(pipe.scheduler.config)` (and the `HeunDiscreteScheduler`
//! and `DPMSolverMultistepScheduler` equivalents) would: the fields the folder has carry over,
//! the rest take those classes' defaults (diffusers 0.42: `timestep_spacing = "linspace"`,
//! Heun's `clip_sample = False`, DPM-Solver's `solver_order = 2`, `algorithm_type =
//! "dpmsolver++"`, `solver_type = "midpoint"`, `lower_order_final = True`,
//! `final_sigmas_type = "zero"`). `--karras` is `use_karras_sigmas = True`.

use diffuse_core::discrete::timesteps::TimestepSpacing;
use diffuse_core::level::SigmaTable;
use diffuse_core::solver::adapter::{Adapter, DiscreteVp};
use diffuse_core::solver::grid::Grid;
use diffuse_core::solver::{DpmOrder, Method, SigmaSolver};
use diffuse_core::{BetaSchedule, NoiseSchedule, Prediction};

use super::scheduler::{DiffusersVariance, SchedulerConfig};
use crate::error::DiffusersError;

/// The diffusers schedulers diffuse reproduces over noise levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigmaScheduler {
    /// `EulerDiscreteScheduler`
    Euler,
    /// `HeunDiscreteScheduler`: two network calls per step but the last.
    Heun,
    /// `DPMSolverMultistepScheduler`, DPM-Solver++(2M).
    DpmSolverPp,
}

impl SchedulerConfig {
    /// How a solver between the chain's steps reads this model's output: its prediction type and
    /// learned variance, with `clip_sample` as given. Mean prediction is refused: it is defined
    /// on the chain's own timesteps only.
    pub fn adapter(
        &self,
        schedule: &NoiseSchedule,
        clip_sample: Option<f64>,
    ) -> Result<DiscreteVp, DiffusersError> {
        if self.prediction_type == Prediction::Mean {
            return Err(DiffusersError::Scheduler(
                "mean prediction is defined on the chain's own timesteps only, and this method evaluates the network between them; use --sampler ddpm or ddim (for the likelihood, --method vlb)".into(),
            ));
        }
        Ok(DiscreteVp {
            prediction: self.prediction_type,
            learned_variance: self.variance_type == Some(DiffusersVariance::LearnedRange),
            clip_sample,
            alphas_cumprod: schedule.alphas_cumprod.clone(),
        })
    }

    /// The solver `steps` inference steps of `which` would take, from this config.
    pub fn sigma_solver(
        &self,
        which: SigmaScheduler,
        steps: usize,
        karras: bool,
    ) -> Result<SigmaSolver, DiffusersError> {
        let schedule = self.schedule()?;
        let table = SigmaTable::diffusers_f32(&schedule.betas);
        let spacing = self.timestep_spacing.unwrap_or(TimestepSpacing::Linspace);
        let core = |e: diffuse_core::CoreError| DiffusersError::Scheduler(e.to_string());
        let (method, grid) = match which {
            SigmaScheduler::Euler | SigmaScheduler::Heun => {
                let grid =
                    Grid::euler(&table, steps, spacing, self.steps_offset, karras).map_err(core)?;
                let method = if which == SigmaScheduler::Euler {
                    Method::Euler
                } else {
                    Method::Heun
                };
                (method, grid)
            }
            SigmaScheduler::DpmSolverPp => {
                // diffusers rounds Karras timesteps except for squaredcos_cap_v2 (truncated).
                let round = self.beta_schedule != BetaSchedule::SquaredCosCapV2;
                let grid = Grid::dpm(
                    &table,
                    steps,
                    spacing,
                    self.steps_offset,
                    karras,
                    round,
                    false,
                )
                .map_err(core)?;
                let order = DpmOrder {
                    second_order: true,
                    first_order_last: true,
                };
                (Method::DpmSolverPp(order), grid)
            }
        };
        // Of the three, only Heun has `clip_sample`; its default is off.
        let clip = (which == SigmaScheduler::Heun && self.clip_sample == Some(true))
            .then_some(self.clip_sample_range);
        let adapter = self.adapter(&schedule, clip)?;
        Ok(SigmaSolver {
            method,
            grid,
            adapter: Adapter::DiscreteVp(adapter),
            clock: Box::new(table),
        })
    }
}
