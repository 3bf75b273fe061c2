//! diffuse-train: the trainer (DDPM Algorithm 1), optimizer glue, EMA and checkpoints.

pub mod autoencoder;
pub mod checkpoint;
pub mod config;
pub mod elbo;
pub mod error;
pub mod objective;
pub mod params;
pub mod state;
pub mod trainer;

pub use config::{LrDecay, OptimizerKind, TrainConfig};
pub use error::TrainError;
pub use objective::{Ddpm, Ncsn, Objective, ScoreSde};
pub use state::{TrainState, canonical_param_ids};
pub use trainer::{Checkpoint, Start, TrainHooks, Trained, check_checkpoint, random_batch, train};
