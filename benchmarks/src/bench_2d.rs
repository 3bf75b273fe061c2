//! W1, the 2-D workload of the foundation issue, in Rust (burn-flex): an MLP denoiser (3 hidden
//! layers of 128, SiLU, 64-dim sinusoidal time embedding), T = 1000, Adam (eps 1e-8).
//!
//! - training steps/s at batch 1024 (L_simple on eps, no EMA, no clipping: plain Adam as in
//!   benchmarks/torch_2d.py)
//! - seconds to draw 10,000 samples with 1000 DDPM steps
//!
//! With `--score`, W3: the same MLP as a VP score SDE (issue 23): training steps/s with the
//! continuous-time objective (`diffuse_train::ScoreSde`: t ~ U(1e-5, 1), the network told 999 t),
//! and seconds to draw 10,000 samples by predictor-corrector (1000 reverse-diffusion steps, one
//! Langevin corrector step each: 2000 evaluations).
//!
//! Prints one JSON line. `benchmarks/run.sh` runs this and the PyTorch script side by side.
//! Usage: bench-2d [--score] [--train-steps N] [--samples N] [--sample-steps N]
//! Build with `--features system-alloc` to measure glibc malloc instead of mimalloc.

use std::time::Instant;

use burn::tensor::{Device, Tensor};
use diffuse_core::coef::randn;
use diffuse_core::discrete::sampler::{DdpmConfig, DdpmSampler, sample};
use diffuse_core::{Prediction, ScheduleConfig};
use diffuse_nn::MlpConfig;
use diffuse_train::{Ddpm, Start, train};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod common;
use common::{Timer, arg, flag, keep_freed_pages, plain_adam};

#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    keep_freed_pages();
    // On a worker of the kernels' thread pool, as the `diffuse` binary runs.
    diffuse_kernels::on_worker(run);
}

fn run() {
    if flag("--score") {
        return score();
    }
    let (train_steps, n_samples, sample_steps) = (
        arg("--train-steps", 300),
        arg("--samples", 10_000),
        arg("--sample-steps", 1000),
    );
    let warmup = 20;
    let device = Device::default();
    device.seed(0);
    let ad = device.clone().autodiff();
    let schedule = ScheduleConfig::default().build().unwrap();
    let model = MlpConfig::default().init(&ad).unwrap();
    let config = plain_adam(warmup + train_steps, 1024, 1e-3);
    let mut timer = Timer {
        warmup,
        start: None,
    };
    // Data: a fixed Gaussian batch, as in the PyTorch script (data loading is not measured).
    let x0: Tensor<2> = randn(&mut ChaCha8Rng::seed_from_u64(1), [1024, 2], &ad);
    let trained = train(
        Start::Fresh(model),
        &mut Ddpm::new(schedule.clone(), Prediction::Epsilon, config.loss),
        &config,
        |_| x0.clone(),
        &mut timer,
    )
    .unwrap();
    let train_secs = timer.start.unwrap().elapsed().as_secs_f64();
    let steps_per_s = train_steps as f64 / train_secs;

    let sampler = DdpmSampler::new(
        &schedule,
        DdpmConfig {
            num_inference_steps: Some(sample_steps),
            ..Default::default()
        },
    )
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x_t = randn(&mut rng, [n_samples, 2], &device);
    let start = Instant::now();
    let out = sample(&trained.model, &sampler, x_t, &mut rng, |_, _, _| {}).unwrap();
    let _: f32 = out.sum().into_scalar();
    let sample_secs = start.elapsed().as_secs_f64() * 1000.0 / sample_steps as f64;
    println!(
        "{}",
        serde_json::json!({
            "impl": "diffuse (burn-flex)",
            "allocator": if cfg!(feature = "system-alloc") { "glibc" } else { "mimalloc" },
            "train_steps_per_s": steps_per_s,
            "sample_10k_1000_steps_s": sample_secs * n_samples as f64 / 10_000.0,
            "train_steps_timed": train_steps,
            "sample_steps_timed": sample_steps,
            "samples": n_samples,
        })
    );
}

/// W3: the MLP trained and sampled as a VP score SDE.
fn score() {
    use diffuse_core::sde::Sde;
    use diffuse_core::sde::pc::{Pc, Predictor};
    use diffuse_core::solver::adapter::{Adapter, NoiseConditional};
    use diffuse_core::solver::{PcSolver, Solver};
    let (train_steps, n_samples, sample_steps) = (
        arg("--train-steps", 300),
        arg("--samples", 10_000),
        arg("--sample-steps", 1000),
    );
    let warmup = 20;
    let device = Device::default();
    device.seed(0);
    let ad = device.clone().autodiff();
    let model = MlpConfig::default().init(&ad).unwrap();
    let config = plain_adam(warmup + train_steps, 1024, 1e-3);
    let mut timer = Timer {
        warmup,
        start: None,
    };
    let net = NoiseConditional {
        sde: Sde::vp(),
        sigma_data: Some(1.0),
    };
    let x0: Tensor<2> = randn(&mut ChaCha8Rng::seed_from_u64(1), [1024, 2], &ad);
    let mut objective = diffuse_train::ScoreSde::<2> {
        net: net.clone(),
        eps: 1e-5,
        likelihood_weighting: false,
    };
    let trained = train(
        Start::Fresh(model),
        &mut objective,
        &config,
        |_| x0.clone(),
        &mut timer,
    )
    .unwrap();
    let train_secs = timer.start.unwrap().elapsed().as_secs_f64();
    let solver = PcSolver {
        sde: net.sde,
        pc: Pc {
            predictor: Predictor::ReverseDiffusion,
            corrector_steps: 1,
            snr: 0.16,
            steps: sample_steps,
            eps: 1e-3,
        },
        adapter: Adapter::NoiseConditional(net.clone()),
        clock: Box::new(net.sde),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let z = randn(&mut rng, [n_samples, 2], &device);
    let start = Instant::now();
    let out = solver
        .sample(&trained.model, z, &mut rng, &mut |_| {})
        .unwrap();
    let _: f32 = out.x0.sum().into_scalar();
    let sample_secs = start.elapsed().as_secs_f64() * 1000.0 / sample_steps as f64;
    println!(
        "{}",
        serde_json::json!({
            "impl": "diffuse (burn-flex)",
            "workload": "score",
            "train_steps_per_s": train_steps as f64 / train_secs,
            "sample_10k_pc_1000_s": sample_secs * n_samples as f64 / 10_000.0,
            "train_steps_timed": train_steps,
            "sample_steps_timed": sample_steps,
            "samples": n_samples,
        })
    );
}
