//! diffuse-diffusers: the diffusers formats, both ways.
//!
//! - `scheduler` — `scheduler_config.json` of DDPM/DDIM schedulers read field for field onto
//!   diffuse's schedule and samplers, and written for a trained run
//! - `solvers` — the same config onto Euler, Heun and DPM-Solver++ as their `from_config` would
//! - `pipeline` — pipeline folders (the layout of a downloaded hub repo): `model_index.json`,
//!   `unet/` (`config.json` + `diffusion_pytorch_model.safetensors`) and
//!   `scheduler/scheduler_config.json`, and an `LDMPipeline`'s `vqvae/` (an autoencoder), loaded
//!   and saved
//! - `dtype` — the float type of saved weights: float32, or float16 / bfloat16 by rounding

mod dtype;
mod error;
mod pipeline;
mod scheduler;
mod solvers;

pub use dtype::WeightDtype;
pub use error::DiffusersError;
pub use pipeline::{
    Pipeline, Vqvae, WEIGHTS_FILE, save_autoencoder, save_latent_pipeline, save_pipeline,
    save_unet, save_weights,
};
pub use scheduler::{DIFFUSERS_VERSION, DiffusersVariance, SchedulerClass, SchedulerConfig};
pub use solvers::SigmaScheduler;
