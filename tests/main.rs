//! The one integration test binary (STYLE.md): reference fixtures against diffusers, the sampler
//! contract suite, sampler identities, diffusers pipelines both ways, and end-to-end CLI runs.

mod cli;
mod common;
mod pipelines;
mod reliability;
mod reference;
mod samplers;
mod unet;
mod vlb;
