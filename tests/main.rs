//! The one integration test binary (STYLE.md): reference fixtures against diffusers, the sampler
//! contract suite, sampler identities, diffusers pipelines both ways, end-to-end CLI runs,
//! reliability (resume, divergence, refusals; hostile inputs) and the fuzzers' inputs.

mod autoencoders;
mod cli;
mod common;
mod elbo;
mod families;
mod fuzz_regressions;
mod gaussian;
mod hostile;
mod inception;
mod latent;
mod likelihood;
mod pipelines;
mod reference;
mod reliability;
mod samplers;
mod sampling_cli;
mod score;
mod sde;
mod solvers;
mod unet;
mod vlb;
