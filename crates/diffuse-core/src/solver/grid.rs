//! Sigma grids: where a solver evaluates the model, from sigma_max down to the final sigma.
//!
//! - [`karras_sigmas`]: Karras et al. 2022, eq. 5: sigma_i = (sigma_max^(1/rho) + i/(n-1)
//!   (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, rho = 7.
//! - [`Grid::euler`]: diffusers' `EulerDiscreteScheduler` / `HeunDiscreteScheduler`
//!   `set_timesteps`: timesteps by `timestep_spacing` (fractional for "linspace"), sigmas
//!   interpolated linearly in sigma, or replaced by Karras sigmas whose timesteps are interpolated
//!   in log sigma.
//! - [`Grid::dpm`]: `DPMSolverMultistepScheduler.set_timesteps`: integer timesteps (n + 1 points
//!   with the last dropped for "linspace" and "leading"), Karras sigmas over the whole chain.
//!
//! diffusers keeps sigmas and timesteps in float32; the grids round to float32 where it does.

use crate::discrete::schedule::linspace;
use crate::discrete::timesteps::TimestepSpacing;
use crate::error::CoreError;
use crate::level::{Clock, Level, NoiseClock, Sigma, SigmaTable, Timestep};

/// Karras et al.'s rho (section 3, "rho = 7 for all our experiments").
pub const KARRAS_RHO: f64 = 7.0;

/// Where a sigma solver evaluates the model and where it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// The model's evaluation points, sigma strictly decreasing.
    pub levels: Vec<Level>,
    /// The sigma the last step lands on: 0, or the chain's smallest.
    pub final_sigma: Sigma,
    /// The scale of x_T: y_T = init_sigma z for a standard-normal z (diffusers'
    /// `init_noise_sigma`).
    pub init_sigma: f64,
}

impl Grid {
    /// sigma_i, with sigma_n the final sigma.
    pub fn sigma(&self, i: usize) -> f64 {
        self.levels.get(i).map_or(self.final_sigma.0, |l| l.sigma.0)
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// A grid of these sigmas on a process's clock (a discrete chain's: log-sigma
    /// interpolation), ending at 0, starting from the prior's scale in y (for a chain the exact
    /// variance-preserving scale sqrt(1 + sigma_max^2)).
    pub fn from_sigmas(clock: &dyn NoiseClock, sigmas: &[f64]) -> Result<Self, CoreError> {
        check_decreasing(sigmas)?;
        let levels = sigmas.iter().map(|&s| clock.level(Sigma(s))).collect();
        Ok(Self {
            levels,
            final_sigma: Sigma(0.0),
            init_sigma: clock.init_sigma(Sigma(sigmas[0])),
        })
    }

    /// diffusers' Euler and Heun grid (`set_timesteps(n)`), with final sigma 0.
    pub fn euler(
        table: &SigmaTable,
        n: usize,
        spacing: TimestepSpacing,
        steps_offset: usize,
        karras: bool,
    ) -> Result<Self, CoreError> {
        let t_max = table.sigmas.len();
        check_steps(n, t_max)?;
        let timesteps: Vec<f64> = match spacing {
            TimestepSpacing::Linspace => linspace(0.0, (t_max - 1) as f64, n)
                .into_iter()
                .rev()
                .map(f32_round)
                .collect(),
            TimestepSpacing::Leading => {
                let ratio = t_max / n;
                (0..n)
                    .rev()
                    .map(|i| (i * ratio).saturating_add(steps_offset) as f64)
                    .collect()
            }
            TimestepSpacing::Trailing => trailing(t_max, n),
        };
        if let Some(&t) = timesteps.iter().find(|&&t| t > (t_max - 1) as f64) {
            return Err(out_of_range(steps_offset, n, t_max, t as usize));
        }
        let sigmas: Vec<f64> = timesteps
            .iter()
            .map(|&t| table.sigma_at(Timestep(t)).0)
            .collect();
        let levels: Vec<Level> = if karras {
            let (lo, hi) = (sigmas[n - 1], sigmas[0]);
            karras_sigmas(Sigma(lo), Sigma(hi), n)
                .into_iter()
                .map(|s| discrete(s, f32_round(table.timestep_of(Sigma(s)).0)))
                .collect()
        } else {
            timesteps
                .iter()
                .zip(&sigmas)
                .map(|(&t, &s)| discrete(s, t))
                .collect()
        };
        let sigma_max = levels[0].sigma.0;
        let init_sigma = match spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => sigma_max,
            TimestepSpacing::Leading => f32_round((sigma_max * sigma_max + 1.0).sqrt()),
        };
        let grid = Self {
            levels,
            final_sigma: Sigma(0.0),
            init_sigma,
        };
        check_decreasing(&grid.levels.iter().map(|l| l.sigma.0).collect::<Vec<_>>())?;
        Ok(grid)
    }

    /// diffusers' DPM-Solver multistep grid (`set_timesteps(n)`). `round_karras_timesteps` is
    /// false for the squaredcos_cap_v2 schedule, whose Karras timesteps diffusers truncates.
    pub fn dpm(
        table: &SigmaTable,
        n: usize,
        spacing: TimestepSpacing,
        steps_offset: usize,
        karras: bool,
        round_karras_timesteps: bool,
        final_sigma_min: bool,
    ) -> Result<Self, CoreError> {
        let t_max = table.sigmas.len();
        check_steps(n, t_max)?;
        let timesteps: Vec<usize> = match spacing {
            TimestepSpacing::Linspace => linspace(0.0, (t_max - 1) as f64, n + 1)
                .into_iter()
                .rev()
                .take(n)
                .map(|t| t.round_ties_even() as usize)
                .collect(),
            TimestepSpacing::Leading => {
                let ratio = t_max / (n + 1);
                (1..=n)
                    .rev()
                    .map(|i| (i * ratio).saturating_add(steps_offset))
                    .collect()
            }
            TimestepSpacing::Trailing => {
                trailing(t_max, n).into_iter().map(|t| t as usize).collect()
            }
        };
        if let Some(&t) = timesteps.iter().find(|&&t| t > t_max - 1) {
            return Err(out_of_range(steps_offset, n, t_max, t));
        }
        let levels: Vec<Level> = if karras {
            karras_sigmas(table.sigma_min(), table.sigma_max(), n)
                .into_iter()
                .map(|s| {
                    let t = table.timestep_of(Sigma(s)).0;
                    discrete(
                        s,
                        if round_karras_timesteps {
                            t.round_ties_even()
                        } else {
                            t.trunc()
                        },
                    )
                })
                .collect()
        } else {
            timesteps
                .iter()
                .map(|&t| discrete(table.sigmas[t], t as f64))
                .collect()
        };
        check_decreasing(&levels.iter().map(|l| l.sigma.0).collect::<Vec<_>>())?;
        let final_sigma = if final_sigma_min {
            f32_round(table.sigmas[0])
        } else {
            0.0
        };
        let sigma_max = levels[0].sigma.0;
        Ok(Self {
            levels,
            final_sigma: Sigma(final_sigma),
            // diffusers' DPM solver starts from N(0, I) in x = alpha y.
            init_sigma: (1.0 + sigma_max * sigma_max).sqrt(),
        })
    }
}

/// Karras et al. 2022, eq. 5, with rho = 7: n sigmas from sigma_max down to sigma_min.
pub fn karras_sigmas(sigma_min: Sigma, sigma_max: Sigma, n: usize) -> Vec<f64> {
    let (lo, hi) = (
        sigma_min.0.powf(1.0 / KARRAS_RHO),
        sigma_max.0.powf(1.0 / KARRAS_RHO),
    );
    linspace(0.0, 1.0, n)
        .into_iter()
        .map(|r| (hi + r * (lo - hi)).powf(KARRAS_RHO))
        .collect()
}

fn discrete(sigma: f64, t: f64) -> Level {
    Level {
        sigma: Sigma(f32_round(sigma)),
        clock: Clock::Discrete(Timestep(t)),
    }
}

/// round(arange(T, 0, -T / n)) - 1, as numpy computes it.
fn trailing(t_max: usize, n: usize) -> Vec<f64> {
    let ratio = t_max as f64 / n as f64;
    (0..)
        .map(|i| t_max as f64 - ratio * i as f64)
        .take_while(|&x| x > 0.0)
        .map(|x| x.round_ties_even() - 1.0)
        .collect()
}

fn f32_round(x: f64) -> f64 {
    x as f32 as f64
}

fn check_steps(n: usize, train_steps: usize) -> Result<(), CoreError> {
    match n {
        0 => Err(CoreError::ZeroSteps),
        n if n > train_steps => Err(CoreError::TooManySteps {
            requested: n,
            train_steps,
        }),
        _ => Ok(()),
    }
}

fn check_decreasing(sigmas: &[f64]) -> Result<(), CoreError> {
    if sigmas.is_empty() {
        return Err(CoreError::ZeroSteps);
    }
    match sigmas
        .windows(2)
        .find(|w| w[1].partial_cmp(&w[0]) != Some(std::cmp::Ordering::Less))
    {
        Some(w) => Err(CoreError::InvalidSolver(format!(
            "sigmas must decrease strictly, found {} then {} (too many steps for this chain?)",
            w[0], w[1]
        ))),
        None if sigmas.iter().all(|s| *s > 0.0 && s.is_finite()) => Ok(()),
        None => Err(CoreError::InvalidSolver(
            "sigmas must be positive and finite".into(),
        )),
    }
}

fn out_of_range(offset: usize, steps: usize, train_steps: usize, t: usize) -> CoreError {
    CoreError::TimestepOutOfRange {
        offset,
        steps,
        train_steps,
        t,
        last: train_steps - 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScheduleConfig;

    #[test]
    fn karras_grid_spans_its_ends_and_decreases() {
        let s = karras_sigmas(Sigma(0.002), Sigma(80.0), 18);
        assert!((s[0] - 80.0).abs() < 1e-9 && (s[17] - 0.002).abs() < 1e-12);
        assert!(s.windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn euler_grid_follows_the_spacing() {
        let table = SigmaTable::new(&ScheduleConfig::default().build().unwrap().alphas_cumprod);
        let g = Grid::euler(&table, 4, TimestepSpacing::Leading, 1, false).unwrap();
        let ts: Vec<f64> = g.levels.iter().map(|l| l.clock.value()).collect();
        assert_eq!(ts, [751.0, 501.0, 251.0, 1.0]);
        let g = Grid::euler(&table, 3, TimestepSpacing::Linspace, 0, false).unwrap();
        let ts: Vec<f64> = g.levels.iter().map(|l| l.clock.value()).collect();
        assert_eq!(ts, [999.0, 499.5, 0.0]);
        assert_eq!(g.init_sigma, g.levels[0].sigma.0);
        let g = Grid::dpm(&table, 4, TimestepSpacing::Leading, 0, false, true, false).unwrap();
        let ts: Vec<f64> = g.levels.iter().map(|l| l.clock.value()).collect();
        assert_eq!(ts, [800.0, 600.0, 400.0, 200.0]);
        assert!(Grid::euler(&table, 1001, TimestepSpacing::Leading, 0, false).is_err());
    }
}
