//! diffuse-kernels: the CPU kernels of diffuse's networks, and mixed precision.
//!
//! Each kernel is a burn backend extension for burn-flex (and autodiff) with its own backward
//! pass, called with the burn module it replaces; other devices, other dtypes and the cases a
//! kernel does not cover take burn's own op, so no code path depends on which backend runs it.
//!
//! - [`activation`] — SiLU, and the attention's softmax over the last dimension
//! - [`conv`] — 2-D convolution: Winograd F(2x2, 3x3), im2col + gemm for the rest
//! - [`linear`] — the linear layer, optionally with the SiLU after it
//! - [`norm`] — group norm, optionally with the SiLU after it
//! - [`amp`] — inside a bfloat16 [`precision::autocast`] scope, products in bfloat16
//! - [`precision`] — the precision of the products, set for a scope as `torch.autocast` does
//! - `cpu` — what they share: gemm on slices, the small-product kernel, the batch split and the
//!   order of sums, scratch buffers; [`on_worker`] runs a command on the kernels' thread pool
//!
//! Every kernel's bits are independent of the thread count (ARCHITECTURE.md). This crate holds
//! the SIMD code, and with it most of the workspace's `unsafe`.

pub mod activation;
pub mod amp;
pub mod conv;
mod cpu;
pub mod linear;
pub mod norm;
pub mod precision;

pub use cpu::{on_flex_f32, on_worker};
pub use precision::Precision;
