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
