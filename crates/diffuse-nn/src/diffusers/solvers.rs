//! Euler, Heun and DPM-Solver++ configured from a pipeline folder's scheduler config, as
//! `EulerDiscreteScheduler.from_config(pipe.scheduler.config)` (and the `HeunDiscreteScheduler`
//! and `DPMSolverMultistepScheduler` equivalents) would: the fields the folder has carry over,
//! the rest take those classes' defaults (diffusers 0.42: `timestep_spacing = "linspace"`,
//! Heun's `clip_sample = False`, DPM-Solver's `solver_order = 2`, `algorithm_type =
//! "dpmsolver++"`, `solver_type = "midpoint"`, `lower_order_final = True`,
//! `final_sigmas_type = "zero"`). `--karras` is `use_karras_sigmas = True`.

use diffuse_core::level::SigmaTable;
use diffuse_core::solver::adapter::DiscreteVp;
use diffuse_core::solver::grid::Grid;
use diffuse_core::solver::{DpmOrder, Method, SigmaSolver};
use diffuse_core::timesteps::TimestepSpacing;
use diffuse_core::{BetaSchedule, Prediction};

use super::scheduler::{DiffusersVariance, SchedulerConfig};
use crate::error::NnError;

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
    /// The solver `steps` inference steps of `which` would take, from this config.
    pub fn sigma_solver(
        &self,
        which: SigmaScheduler,
        steps: usize,
        karras: bool,
    ) -> Result<SigmaSolver, NnError> {
        if self.prediction_type == Prediction::Mean {
            return Err(NnError::Scheduler(
                "mean prediction is not a diffusers prediction type; sample this model with --sampler ddpm or ddim".into(),
            ));
        }
        let schedule = self.schedule()?;
        let table = SigmaTable::diffusers_f32(&schedule.betas);
        let spacing = self.timestep_spacing.unwrap_or(TimestepSpacing::Linspace);
        let core = |e: diffuse_core::CoreError| NnError::Scheduler(e.to_string());
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
        let adapter = DiscreteVp {
            prediction: self.prediction_type,
            learned_variance: self.variance_type == Some(DiffusersVariance::LearnedRange),
            // Of the three, only Heun has `clip_sample`; its default is off.
            clip_sample: (which == SigmaScheduler::Heun && self.clip_sample == Some(true))
                .then_some(self.clip_sample_range),
            alphas_cumprod: schedule.alphas_cumprod.clone(),
        };
        Ok(SigmaSolver {
            method,
            grid,
            adapter,
            table,
        })
    }
}
