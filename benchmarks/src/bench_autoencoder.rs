//! W5, latent diffusion's autoencoder in Rust (burn-flex): diffusers' `AutoencoderKL` in Stable
//! Diffusion's layout at half its width (channels 64/128/256/256, two residual blocks per level,
//! attention in the middle blocks, 32 groups, 4 latent channels; 21 million parameters) on
//! 3 x 128 x 128 images at batch 4, no autodiff:
//!
//! - encodes/s (images to the posterior's mean and log-variance, 4 x 16 x 16)
//! - decodes/s (latents to images)
//!
//! Prints one JSON line. `benchmarks/run.sh --autoencoder` runs this and
//! `benchmarks/torch_autoencoder.py` side by side. Usage: bench-autoencoder [--passes N]

use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use diffuse_core::coef::randn;
use diffuse_nn::AutoencoderConfig;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[allow(dead_code)] // this binary uses `arg` and `keep_freed_pages` only
mod common;
use common::{arg, keep_freed_pages};

#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The benchmark model; `benchmarks/torch_autoencoder.py` builds the same config in diffusers.
pub fn w5_config() -> AutoencoderConfig {
    AutoencoderConfig::from_json(
        r#"{"_class_name": "AutoencoderKL", "block_out_channels": [64, 128, 256, 256],
            "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
            "layers_per_block": 2, "latent_channels": 4, "sample_size": 128}"#,
    )
    .expect("the benchmark config is valid")
}

fn main() {
    keep_freed_pages();
    diffuse_kernels::on_worker(run);
}

/// Passes per second of `f` over `passes` runs after one warm-up run.
fn rate(passes: usize, f: impl Fn() -> f32) -> f64 {
    f();
    let start = Instant::now();
    for _ in 0..passes {
        f();
    }
    passes as f64 / start.elapsed().as_secs_f64()
}

fn run() {
    let passes = arg("--passes", 5);
    let device = Device::default();
    device.seed(0);
    let model = w5_config().init(&device).unwrap();
    let params = model.num_params();
    let x: Tensor<4> = randn(&mut ChaCha8Rng::seed_from_u64(1), [4, 3, 128, 128], &device);
    let z: Tensor<4> = randn(&mut ChaCha8Rng::seed_from_u64(2), [4, 4, 16, 16], &device);
    let encode = rate(passes, || {
        let e = model.encode(x.clone());
        let logvar = e.logvar.expect("a KL model");
        (e.mean.sum() + logvar.sum()).into_scalar()
    });
    let decode = rate(passes, || model.decode(z.clone()).sum().into_scalar());
    println!(
        "{}",
        serde_json::json!({
            "impl": "diffuse (burn-flex)",
            "params": params,
            "encode_per_s_b4": encode,
            "decode_per_s_b4": decode,
            "passes_timed": passes,
        })
    );
}
