//! The data axis of the binary: what a run trains on, points or images. A kind loads its data
//! (training and held-out, as the run config says), draws training batches, and says what a
//! run trains on; its run directories keep their config under the kind's own file name. Every
//! model family (`crate::families`) runs on every kind.

pub mod images;
pub mod points;

use std::path::Path;

use anyhow::{Result, bail};
use burn::tensor::{Device, Tensor};
use rand_chacha::ChaCha8Rng;

use crate::config::RunConfig;

pub use images::Images;
pub use points::Points;

/// A kind of data, with examples of rank `D` ([N, 2] points, [N, C, H, W] images).
pub trait Kind<const D: usize> {
    /// The run's data: training examples, and held-out ones for pictures and metrics.
    type Data;
    /// Show the loss on the progress bar every this many steps.
    const LOSS_EVERY: usize;

    /// The run's data; a fresh run also fits what it derives from it (a standardizer).
    fn load(config: &mut RunConfig, fresh: bool) -> Result<Self::Data>;
    /// One training batch in model space, drawn with the run's RNG.
    fn batch(
        config: &RunConfig,
        data: &Self::Data,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Tensor<D>;
    /// What the run trains on, for the line it prints when it starts.
    fn describe(config: &RunConfig, data: &Self::Data) -> String;
}

/// The kind of data of a run directory or pipeline folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KindName {
    /// Points (an MLP: `config.json` with a `train` section, weights as safetensors).
    Points,
    /// Images (a U-Net: the folder holds `diffuse_config.json`, or is a diffusers pipeline
    /// with `model_index.json`, `unet/`, `scheduler/`).
    Images,
}

impl KindName {
    pub const ALL: [KindName; 2] = [KindName::Points, KindName::Images];

    /// The file a run directory of this kind keeps its run config in. An image run's folder
    /// is also a diffusers pipeline, whose loaders would take a `config.json` for a model config.
    pub fn run_config_file(self) -> &'static str {
        match self {
            KindName::Points => "config.json",
            KindName::Images => "diffuse_config.json",
        }
    }

    /// Which kind the folder holds; an error naming what is missing when it holds neither.
    /// (By existence: a config that is not a regular file is then refused by name when read.)
    pub fn of(dir: &Path) -> Result<Self> {
        if dir.join("model_index.json").exists() {
            Ok(KindName::Images)
        } else if dir.join("config.json").exists() {
            Ok(KindName::Points)
        } else {
            bail!(
                "{} is not a diffuse run directory: neither a 2-D run (config.json) nor a pipeline folder (model_index.json)",
                dir.display()
            )
        }
    }
}
