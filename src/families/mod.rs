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

use crate::config::RunConfig;
use crate::eval::EvalArgs;
use crate::kinds::{Images, Kind, KindName, Points};
use crate::report::TrainFigures;
use crate::sample::SampleArgs;

/// The model families a run config names (`family`, default `ddpm`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FamilyName {
    /// DDPM's discrete chain (Ho et al. 2020; improved DDPM): eps / x_0 / v / mean prediction,
    /// L_simple, L_vlb or L_hybrid; DDPM, DDIM and the solvers over its noise levels.
    #[default]
    Ddpm,
}

impl FamilyName {
    pub fn is_ddpm(&self) -> bool {
        *self == FamilyName::Ddpm
    }
}

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
