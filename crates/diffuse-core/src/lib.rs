//! diffuse-core: the mathematics of diffusion models, independent of networks, training and IO.
//!
//! - [`schedule`] — beta schedules and every coefficient derived from them (f64, host side)
//! - [`process`] — the forward process q(x_t | x_0), q(x_t | x_{t-1}) and the posterior
//! - [`param`] — eps / x_0 / v parameterizations and their conversions
//! - [`loss`] — `L_simple` (DDPM Algorithm 1)
//! - [`sampler`] — DDPM ancestral sampling and DDIM, over the [`model::Denoiser`] trait
//! - [`level`] — noise levels (sigma, log-SNR) and the clocks networks are told
//! - [`solver`] — one object-safe sampling interface: DDPM/DDIM, Euler, Heun, DPM-Solver++,
//!   the probability-flow ODE (RK45) and the reverse SDE, through model adapters
//! - [`sde`] — the VP, sub-VP and VE SDEs, their reverse SDE and probability-flow ODE
//! - [`likelihood`] — exact log-likelihood through the probability-flow ODE
//! - [`vlb`] — the variational bound term by term: KLs, decoders, learned variances
//! - [`objective`] — L_simple, L_vlb and L_hybrid for training, importance sampling of t
#![allow(non_snake_case)] // x_T, as in the papers.

pub mod coef;
pub mod error;
pub mod level;
pub mod likelihood;
pub mod loss;
pub mod model;
pub mod objective;
pub mod param;
pub mod process;
pub mod sampler;
pub mod schedule;
pub mod sde;
pub mod solver;
pub mod timesteps;
pub mod vlb;

pub use error::CoreError;
pub use model::Denoiser;
pub use param::Prediction;
pub use schedule::{BetaSchedule, NoiseSchedule, ScheduleConfig};
