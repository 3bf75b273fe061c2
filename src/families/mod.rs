//! The model axis of the binary: what a run trains and how it samples. A family brings, for
//! each kind of data (`crate::kinds`), its network, its objective, where its weights go, what
//! its run shows once trained, and its own `sample` and `eval --nll`; the commands (`train`,
//! `sample`, `eval`, the pictures) have one path each, generic over the kind and the family.
//!
//! [`dispatch`] is the one place a family's name becomes its type: adding a family is its own
//! files (a folder beside `ddpm/`) plus one arm there.

pub mod autoencoder;
pub mod bounds;
pub mod ddpm;
pub mod latent;
pub mod likelihood;
pub mod ncsn;
pub mod pictures;
pub mod score;
pub mod vae;
pub mod vdm;

use std::path::Path;

use anyhow::Result;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use diffuse_train::{Checkpoint, Objective, TrainError};

use crate::args::{EvalArgs, SampleArgs};
pub use crate::axes::FamilyName;
use crate::config::RunConfig;
pub use crate::figures::TrainFigures;
use crate::kinds::{ImageKind, Kind, KindName, PointKind};

/// A model family on one kind of data `K`, with examples of rank `D`.
pub trait Family<const D: usize, K: Kind<D>> {
    type Net: Module;
    type Objective: Objective<Self::Net, Batch = Tensor<D>>;

    /// Fills what a fresh run derives from its data into its config (NCSN's noise levels)
    /// before the network and the objective are built; nothing by default.
    fn prepare(_config: &mut RunConfig, _data: &K::Data) -> Result<()> {
        Ok(())
    }
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
        FamilyName::Ncsn => on_kind::<ncsn::Ncsn>(kind, task),
        FamilyName::Score => on_kind::<score::Score>(kind, task),
        // One family over the [vae] section: its `levels` is 1 for a VAE.
        FamilyName::Vae | FamilyName::Hvae => on_kind::<vae::Vae>(kind, task),
        FamilyName::Vdm => on_kind::<vdm::Vdm>(kind, task),
        // Latent diffusion and its first stage work on images only.
        FamilyName::Autoencoder => on_images::<autoencoder::FirstStage>(family, kind, task),
        FamilyName::Latent => on_images::<latent::Latent>(family, kind, task),
    }
}

fn on_images<F: Family<4, ImageKind>>(
    family: FamilyName,
    kind: KindName,
    task: impl Task,
) -> Result<()> {
    match kind {
        KindName::Images => task.run::<4, ImageKind, F>(),
        KindName::Points => anyhow::bail!(
            "the {} family trains on images (--dataset mnist, fashion_mnist, cifar10, folder), not points",
            family.name()
        ),
    }
}

fn on_kind<F: Family<2, PointKind> + Family<4, ImageKind>>(
    kind: KindName,
    task: impl Task,
) -> Result<()> {
    match kind {
        KindName::Points => task.run::<2, PointKind, F>(),
        KindName::Images => task.run::<4, ImageKind, F>(),
    }
}

/// "+- 0.0123 bits/dim (95% CI over 200 examples" for a likelihood's printed summary; one
/// example has no interval.
pub fn interval(ci: Option<f64>, examples: usize) -> String {
    match ci {
        Some(ci) => format!("+- {ci:.4} bits/dim (95% CI over {examples} examples"),
        None => "bits/dim (one example: no confidence interval".into(),
    }
}
