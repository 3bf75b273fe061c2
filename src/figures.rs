//! What a run reports of its training in `metrics.json`, beside its family's own figures.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// How the run trained, for `metrics.json`: measured by the command that trained its last
/// steps; carried over from the `metrics.json` already there when the pictures are drawn again
/// (`sample --pictures`); unknown (null) when a run stopped between its last step and its
/// pictures is finished by `train --resume`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TrainFigures {
    /// Seconds and steps per second of the command that trained the last steps (a resumed
    /// run: those after its checkpoint).
    pub train_seconds: Option<f64>,
    pub steps_per_second: Option<f64>,
    /// The mean of the last 100 losses.
    pub final_loss_avg100: Option<f64>,
}

impl TrainFigures {
    /// Figures of `steps` steps trained in `seconds`, ending with `losses`.
    pub fn measured(steps: usize, seconds: f64, losses: &[f32]) -> Self {
        let trained = steps > 0 && seconds > 0.0;
        Self {
            train_seconds: trained.then_some(seconds),
            steps_per_second: trained.then(|| steps as f64 / seconds),
            final_loss_avg100: final_loss(losses),
        }
    }

    /// The figures in the run's `metrics.json`, where it has one.
    pub fn read(dir: &Path) -> Self {
        diffuse_fs::read_to_string(&dir.join("metrics.json"), diffuse_fs::Limit::CONFIG)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }
}

/// The mean of the last 100 losses; `None` before the first step.
pub fn final_loss(losses: &[f32]) -> Option<f64> {
    let tail = &losses[losses.len().saturating_sub(100)..];
    (!tail.is_empty()).then(|| tail.iter().map(|v| *v as f64).sum::<f64>() / tail.len() as f64)
}
