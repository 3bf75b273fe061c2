//! Which timesteps a sampler visits when it takes fewer steps than T: diffusers'
//! `timestep_spacing` (see `DDIMScheduler.set_timesteps`, and Lin et al. 2023, table 2, for why
//! "trailing" exists).

use serde::{Deserialize, Serialize};

use crate::error::CoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    /// 0, r, 2r, ... with r = T / n (integer division), plus `steps_offset`; DDIM's original.
    #[default]
    Leading,
    /// round(T, T - r, ...) - 1 with r = T / n (real division): always starts at T - 1.
    Trailing,
    /// round(linspace(0, T - 1, n)).
    Linspace,
}

/// The `n` timesteps visited, in decreasing order, as diffusers' `set_timesteps(n)` computes them.
pub fn spaced_timesteps(
    spacing: TimestepSpacing,
    train_steps: usize,
    n: usize,
    steps_offset: usize,
) -> Result<Vec<usize>, CoreError> {
    if n == 0 {
        return Err(CoreError::ZeroSteps);
    }
    if n > train_steps {
        return Err(CoreError::TooManySteps {
            requested: n,
            train_steps,
        });
    }
    let mut ts: Vec<usize> = match spacing {
        TimestepSpacing::Leading => {
            let ratio = train_steps / n;
            (0..n).rev().map(|i| i * ratio + steps_offset).collect()
        }
        TimestepSpacing::Trailing => {
            // numpy: np.round(np.arange(T, 0, -T / n)) - 1, rounding half to even.
            let ratio = train_steps as f64 / n as f64;
            let mut out = Vec::with_capacity(n);
            let mut x = train_steps as f64;
            let mut i = 0;
            while x > 0.0 {
                out.push(x.round_ties_even() as usize - 1);
                i += 1;
                x = train_steps as f64 - ratio * i as f64;
            }
            out
        }
        TimestepSpacing::Linspace => {
            crate::discrete::schedule::linspace(0.0, (train_steps - 1) as f64, n)
                .into_iter()
                .rev()
                .map(|x| x.round_ties_even() as usize)
                .collect()
        }
    };
    ts.truncate(n);
    if let Some(&t) = ts.iter().find(|&&t| t >= train_steps) {
        return Err(CoreError::TimestepOutOfRange {
            offset: steps_offset,
            steps: n,
            train_steps,
            t,
            last: train_steps - 1,
        });
    }
    Ok(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_chain_visits_every_timestep() {
        for s in [
            TimestepSpacing::Leading,
            TimestepSpacing::Trailing,
            TimestepSpacing::Linspace,
        ] {
            let ts = spaced_timesteps(s, 100, 100, 0).unwrap();
            assert_eq!(ts, (0..100).rev().collect::<Vec<_>>(), "{s:?}");
        }
    }

    #[test]
    fn invalid_requests_are_errors() {
        assert_eq!(
            spaced_timesteps(TimestepSpacing::Leading, 10, 11, 0),
            Err(CoreError::TooManySteps {
                requested: 11,
                train_steps: 10
            })
        );
        assert_eq!(
            spaced_timesteps(TimestepSpacing::Leading, 10, 0, 0),
            Err(CoreError::ZeroSteps)
        );
        assert!(matches!(
            spaced_timesteps(TimestepSpacing::Leading, 10, 10, 1),
            Err(CoreError::TimestepOutOfRange { t: 10, .. })
        ));
    }
}
