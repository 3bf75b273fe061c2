//! W2, the image workload of issue 3, in Rust (burn-flex): a diffusers-style `UNet2DModel` on
//! 28x28x1 (channels 32/64/64, two residual blocks per level, attention at 7x7 and in the middle
//! block, 8 groups), T = 1000, Adam (lr 1e-4, eps 1e-8).
//!
//! - training steps/s at batch 64 (L_simple on eps, reading the loss every step, no EMA or clipping)
//! - forward passes/s at batch 256 (inference, no autodiff)
//!
//! Prints one JSON line. `benchmarks/run.sh --unet` runs this and `benchmarks/torch_unet.py` side
//! by side. Usage: bench-unet [--train-steps N] [--forward N]

use std::time::Instant;

use burn::tensor::{Device, Tensor};
use diffuse_core::coef::randn;
use diffuse_core::{Prediction, ScheduleConfig};
use diffuse_nn::unet::{DownBlockType, UnetConfig, UpBlockType};
use diffuse_train::{Ddpm, Start, train};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod common;
use common::{Timer, arg, keep_freed_pages, plain_adam};

#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The benchmark model; `benchmarks/torch_unet.py` builds the same config in diffusers.
pub fn w2_config() -> UnetConfig {
    use DownBlockType::*;
    use UpBlockType::*;
    let mut c: UnetConfig = serde_json::from_str("{}").unwrap();
    c.sample_size = Some(28);
    c.in_channels = 1;
    c.out_channels = 1;
    c.block_out_channels = vec![32, 64, 64];
    c.down_block_types = vec![DownBlock2D, DownBlock2D, AttnDownBlock2D];
    c.up_block_types = vec![AttnUpBlock2D, UpBlock2D, UpBlock2D];
    c.layers_per_block = 2;
    c.norm_num_groups = 8;
    c.attention_head_dim = Some(32);
    c
}

fn main() {
    keep_freed_pages();
    // On a worker of the kernels' thread pool, as the `diffuse` binary runs.
    diffuse_kernels::on_worker(run);
}

fn run() {
    let (train_steps, forwards) = (arg("--train-steps", 30), arg("--forward", 10));
    let warmup = 3;
    let device = Device::default();
    device.seed(0);
    let ad = device.clone().autodiff();
    let schedule = ScheduleConfig::default().build().unwrap();
    let config = w2_config();
    let model = config.init(&ad).unwrap();
    let params = {
        use burn::module::Module;
        model.num_params()
    };
    let train_config = plain_adam(warmup + train_steps, 64, 1e-4);
    let mut timer = Timer {
        warmup,
        start: None,
    };
    // Data: a fixed Gaussian batch, as in the PyTorch script (data loading is not measured).
    let x0: Tensor<4> = randn(&mut ChaCha8Rng::seed_from_u64(1), [64, 1, 28, 28], &ad);
    let trained = train(
        Start::Fresh(model),
        &mut Ddpm::new(schedule.clone(), Prediction::Epsilon, train_config.loss),
        &train_config,
        |_| x0.clone(),
        &mut timer,
    )
    .unwrap();
    let steps_per_s = train_steps as f64 / timer.start.unwrap().elapsed().as_secs_f64();

    let x: Tensor<4> = randn(&mut ChaCha8Rng::seed_from_u64(2), [256, 1, 28, 28], &device);
    let t = Tensor::<1>::full([256], 500.0, &device);
    let _: f32 = trained
        .model
        .forward(x.clone(), t.clone())
        .sum()
        .into_scalar();
    let start = Instant::now();
    for _ in 0..forwards {
        let _: f32 = trained
            .model
            .forward(x.clone(), t.clone())
            .sum()
            .into_scalar();
    }
    let forward_per_s = forwards as f64 / start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "impl": "diffuse (burn-flex)",
            "params": params,
            "train_steps_per_s_b64": steps_per_s,
            "forward_per_s_b256": forward_per_s,
            "train_steps_timed": train_steps,
            "forwards_timed": forwards,
        })
    );
}
