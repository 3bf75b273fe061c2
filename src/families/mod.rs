//! The model axis of the binary: what a run trains and how it samples. A family brings, for
//! each kind of data (`crate::kinds`), its network, its objective, where its weights go, what
//! its run shows once trained, and its own `sample` and `eval --nll`; the commands (`train`,
//! `sample`, `eval`, the pictures) have one path each, generic over the kind and the family.
//!
//! [`dispatch`] is the one place a family's name becomes its type: adding a family is its own
//! files (a folder beside `ddpm/`) plus one arm there.

pub mod ddpm;

use std::path::Path;

use anyhow::Result;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use diffuse_core::Denoiser;
use diffuse_train::{Checkpoint, Objective, TrainError};
use serde::{Deserialize, Serialize};

use crate::args::{EvalArgs, SampleArgs};
pub use crate::axes::FamilyName;
use crate::config::RunConfig;
use crate::kinds::{Images, Kind, KindName, Points};

/// A model family on one kind of data `K`, with examples of rank `D`.
pub trait Family<const D: usize, K: Kind<D>> {
    type Net: Module + Denoiser<D>;
    type Objective: Objective<Self::Net, Batch = Tensor<D>>;

    /// The network of a fresh run, on `device` (an autodiff one to train on).
    fn init(config: &RunConfig, device: &Device) -> Result<Self::Net>;
    /// What the trainer minimizes.
    fn objective(config: &RunConfig) -> Result<Self::Objective>;
    /// The network, for the line a run prints when it starts ("a 280412-parameter U-Net").
    fn describe(net: &Self::Net) -> String;
    /// Writes the user-facing weights of a checkpoint.
    fn save(
        dir: &Path,
        config: &RunConfig,
        checkpoint: &Checkpoint<Self::Net>,
    ) -> Result<(), TrainError>;
    /// The weights sampling uses (EMA where kept), as the run directory holds them.
    fn load_sampling(dir: &Path, config: &RunConfig, device: &Device) -> Result<Self::Net>;
    /// Everything the run shows after training: pictures, samples and metrics. `metrics.json`
    /// is written last: it marks a finished run (`run_dir::is_finished`).
    fn report(
        dir: &Path,
        config: &RunConfig,
        data: &K::Data,
        model: &Self::Net,
        figures: &TrainFigures,
    ) -> Result<()>;
    /// `diffuse sample` on a run of this family (or, `config` being `None`, on a diffusers
    /// pipeline folder).
    fn sample(args: &SampleArgs, dir: &Path, config: Option<&RunConfig>) -> Result<()>;
    /// `diffuse eval --nll` on a run of this family.
    fn nll(args: &EvalArgs, dir: &Path, config: &RunConfig) -> Result<()>;
}

/// A command that runs on any kind of data and any family: the generic half of every command.
pub trait Task {
    fn run<const D: usize, K: Kind<D>, F: Family<D, K>>(self) -> Result<()>;
}

/// Runs `task` with the family and kind named: the one place either name becomes a type.
pub fn dispatch(family: FamilyName, kind: KindName, task: impl Task) -> Result<()> {
    match family {
        FamilyName::Ddpm => on_kind::<ddpm::Ddpm>(kind, task),
    }
}

fn on_kind<F: Family<2, Points> + Family<4, Images>>(
    kind: KindName,
    task: impl Task,
) -> Result<()> {
    match kind {
        KindName::Points => task.run::<2, Points, F>(),
        KindName::Images => task.run::<4, Images, F>(),
    }
}

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

/// "+- 0.0123 bits/dim (95% CI over 200 examples" for a likelihood's printed summary; one
/// example has no interval.
pub fn interval(ci: Option<f64>, examples: usize) -> String {
    match ci {
        Some(ci) => format!("+- {ci:.4} bits/dim (95% CI over {examples} examples"),
        None => "bits/dim (one example: no confidence interval".into(),
    }
}
