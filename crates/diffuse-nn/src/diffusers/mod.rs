//! The diffusers formats, both ways: a pipeline folder (the layout of a downloaded hub repo) with
//! `model_index.json`, `unet/` (`config.json` + `diffusion_pytorch_model.safetensors`) and
//! `scheduler/scheduler_config.json`.

mod pipeline;
mod scheduler;
mod solvers;

pub use pipeline::{Pipeline, save_pipeline, save_unet};
pub use scheduler::{DIFFUSERS_VERSION, DiffusersVariance, SchedulerClass, SchedulerConfig};
pub use solvers::SigmaScheduler;
