//! DDPM's discrete chain (Ho et al. 2020; improved DDPM, Nichol & Dhariwal 2021; DDIM, Song et
//! al. 2021): T noising steps indexed t = 0..T-1.
//!
//! - [`schedule`] — beta schedules and every coefficient derived from them (f64, host side)
//! - [`process`] — the forward process q(x_t | x_0), q(x_t | x_{t-1}) and the posterior
//! - [`param`] — eps / x_0 / v / mean parameterizations and their conversions
//! - [`loss`] — L_simple, L_vlb and L_hybrid for training (DDPM Algorithm 1, improved DDPM)
//! - [`importance`] — importance sampling of t from each t's recent losses
//! - [`bound`] — the variational bound term by term: reverse variances, KLs, the decoder
//! - [`timesteps`] — leading / trailing / linspace spacing of a sampler's steps
//! - [`sampler`] — DDPM ancestral sampling and DDIM, stepping the chain as diffusers does

pub mod bound;
pub mod importance;
pub mod loss;
pub mod param;
pub mod process;
pub mod sampler;
pub mod schedule;
pub mod timesteps;
