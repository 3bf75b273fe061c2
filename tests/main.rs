//! The one integration test binary (STYLE.md): reference fixtures against diffusers, the sampler
//! contract suite, sampler identities, and end-to-end CLI runs.

mod cli;
mod reference;
mod samplers;
mod unet;
