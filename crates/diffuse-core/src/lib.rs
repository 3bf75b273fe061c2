//! diffuse-core: the mathematics of diffusion models, independent of networks, training and IO.
//!
//! - [`model`] — the one trait the core sees a network through: (x_t, t) -> output
//! - [`level`] — noise levels (sigma, timesteps, SDE time) and the clocks networks are told
//! - [`gaussian`] — Gaussian math every bound shares: KL, decoders, bits/dim
//! - [`autoencoder`] — latent diffusion's first stage: the KL- or VQ-regularized autoencoder's
//!   loss over a model seen as `Autoencoding`
//! - [`coef`] — per-item coefficients broadcast over a batch, seeded host noise
//! - [`discrete`] — DDPM's chain: schedule, forward process, parameterizations, losses, the
//!   variational bound, DDPM and DDIM sampling
//! - [`sde`] — the VP, sub-VP and VE SDEs, their reverse SDE and probability-flow ODE
//! - [`solver`] — one object-safe sampling interface: DDPM/DDIM, Euler, Heun, DPM-Solver++,
//!   the probability-flow ODE (RK45) and the reverse SDE, through model adapters; the exact
//!   likelihood through the ODE
#![allow(non_snake_case)] // x_T, as in the papers.

pub mod autoencoder;
pub mod coef;
pub mod discrete;
pub mod elbo;
pub mod error;
pub mod gaussian;
pub mod level;
pub mod model;
pub mod sde;
pub mod solver;
pub mod vdm;

pub use discrete::param::Prediction;
pub use discrete::schedule::{BetaSchedule, NoiseSchedule, ScheduleConfig};
pub use error::CoreError;
pub use model::Denoiser;
