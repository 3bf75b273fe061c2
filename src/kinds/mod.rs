//! The data axis of the binary: what a run trains on, points or images. A kind loads its data
//! (training and held-out, as the run config says), draws training batches, and says what a
//! run trains on; its run directories keep their config under the kind's own file name. Every
//! model family (`crate::families`) runs on every kind.

pub mod images;
pub mod points;

use anyhow::Result;
use burn::tensor::{Device, Tensor};
use rand_chacha::ChaCha8Rng;

use crate::config::RunConfig;
use burn::module::Module;
use diffuse_train::checkpoint::{load_weights, save_weights};
use diffuse_train::{Checkpoint, TrainError};
use std::path::Path;

pub use crate::axes::KindName;
pub use images::ImageKind;
pub use points::PointKind;

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
    /// The training examples whose largest pairwise distance sets sigma_1 (NCSNv2's Technique
    /// 1), in model space, row-major, and their dimension: the first ones (deterministic), as
    /// many as `diffuse_eval::metrics::max_pairwise_distance` measures in seconds.
    fn distance_rows(data: &Self::Data) -> (Vec<f32>, usize);
}

/// Writes a run's user-facing weights as safetensors beside its config: `model.safetensors`
/// (raw) and `model_ema.safetensors` (what sampling uses: the EMA where kept). The MLP runs of
/// every family, and the ELBO family's runs of either kind.
pub fn save_weight_pair<M: Module>(dir: &Path, c: &Checkpoint<M>) -> Result<(), TrainError> {
    save_weights(&c.model, &dir.join("model.safetensors"))?;
    save_weights(c.sampling_model(), &dir.join("model_ema.safetensors"))
}

/// Reads `fresh`'s weights back from a run written by [`save_weight_pair`] (the EMA's, unless
/// `ema` is false or the run keeps none).
pub fn load_weight_pair<M: Module>(
    dir: &Path,
    config: &RunConfig,
    ema: bool,
    fresh: M,
) -> Result<M> {
    let file = if ema && config.train.ema_decay.is_some() {
        "model_ema.safetensors"
    } else {
        "model.safetensors"
    };
    Ok(load_weights(fresh, &dir.join(file))?)
}
