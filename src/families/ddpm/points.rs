//! DDPM on 2-D points: an MLP denoiser, how it trains and what its run directory holds:
//!
//! - `config.json`: the full configuration (with the data standardizer), enough to sample again
//! - `model.safetensors`, `model_ema.safetensors`: weights, written atomically every
//!   `checkpoint_every` steps and at the end
//! - `loss.csv`, `loss.png`: the loss at every step
//! - `forward.png`: the data at 10 evenly spaced steps of the forward process
//! - `reverse.png`: the reverse process (DDPM) at 10 evenly spaced steps
//! - `reverse.csv`: per reverse step, the RMS and largest |coordinate| of x_{t-1}
//! - `samples.png`: generated points over held-out data
//! - `metrics.json`: sliced Wasserstein distances of samples and baselines to held-out points

use std::path::Path;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use diffuse_core::Denoiser;
use diffuse_core::coef::randn;
use diffuse_core::discrete::process::q_sample;
use diffuse_core::discrete::sampler::{self, DdpmSampler, StepOutput};
use diffuse_data::Points as PointSet;
use diffuse_eval::plots::strip;
use diffuse_nn::Mlp;
use diffuse_train::{Checkpoint, TrainError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::Ddpm;
use crate::args::{EvalArgs, SampleArgs};
use crate::config::RunConfig;
use crate::families::Family;
use crate::families::TrainFigures;
use crate::kinds::PointKind;
use crate::kinds::points::{
    TrainPoints, load_mlp, report_samples, save_mlp, standardizer, to_points,
};
use crate::progress;

impl Family<2, PointKind> for Ddpm {
    type Net = Mlp;
    type Objective = diffuse_train::Ddpm<2>;

    fn init(config: &RunConfig, device: &Device) -> Result<Mlp> {
        Ok(config.mlp()?.init(device)?)
    }

    fn objective(config: &RunConfig) -> Result<Self::Objective> {
        super::objective(config)
    }

    fn describe(net: &Mlp) -> String {
        format!("a {}-parameter MLP", net.num_params())
    }

    fn save(dir: &Path, _: &RunConfig, c: &Checkpoint<Mlp>) -> Result<(), TrainError> {
        save_mlp(dir, c)
    }

    fn load_sampling(dir: &Path, _: &RunConfig, device: &Device) -> Result<Mlp> {
        Ok(load_mlp(dir, true, device)?.1)
    }

    fn sample(args: &SampleArgs, dir: &Path, _: Option<&RunConfig>) -> Result<()> {
        super::sample::points(args, dir)
    }

    fn nll(args: &EvalArgs, dir: &Path, config: &RunConfig) -> Result<()> {
        super::bound::nll_points(args, dir, config)
    }

    fn report(
        dir: &Path,
        config: &RunConfig,
        data: &TrainPoints,
        model: &Mlp,
        figures: &TrainFigures,
    ) -> Result<()> {
        let data = &data.data;
        let schedule = config.schedule.build()?;
        let standardizer = standardizer(config)?;
        let seed = config.train.seed;
        let device = crate::device::device();
        forward_picture(
            dir,
            &schedule,
            &standardizer.forward(&data.held_out),
            &device,
            seed,
        )?;
        let samples = reverse_pictures(dir, model, config, &device)?;
        let samples = to_points(samples, &standardizer)?;
        report_samples(dir, config, data, &samples, figures)
    }
}

/// Samples with DDPM over all T steps (model space), recording x_t at 10 points for
/// `reverse.png`, and each step's size in `reverse.csv`.
fn reverse_pictures(
    dir: &Path,
    model: &Mlp,
    config: &RunConfig,
    device: &Device,
) -> Result<Tensor<2>> {
    let steps = config.schedule.num_train_timesteps;
    let record: Vec<usize> = (0..10).map(|k| k * (steps - 1) / 9).collect();
    let mut panels = Vec::new();
    // Per step: the root mean square and the largest |coordinate| of x_{t-1} (model space), to see
    // where a chain leaves the data's range (a NaN coordinate makes the RMS NaN; the largest
    // skips it).
    let mut trajectory = String::from("t,rms,max_abs\n");
    let pb = progress::bar(steps, "sampling");
    let x = draw_ddpm(
        model,
        config,
        config.sample.n,
        config.train.seed + 1,
        device,
        |_, t, out| {
            pb.inc(1);
            let pts = out
                .prev_sample
                .clone()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap_or_default();
            let sq = pts.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
            let max = pts.iter().fold(0f32, |m, v| m.max(v.abs()));
            trajectory.push_str(&format!("{t},{},{max}\n", (sq / pts.len() as f64).sqrt()));
            if record.contains(&t) {
                panels.push((format!("t = {t}"), pts));
            }
        },
    );
    pb.finish_and_clear();
    // Written whether or not sampling went non-finite: it shows how the chain got there.
    diffuse_fs::write(&dir.join("reverse.csv"), trajectory.as_bytes())?;
    let x = x.with_context(|| {
        format!(
            "the weights are saved in {}, but sampling from them failed; reverse.csv lists each step before it",
            dir.display()
        )
    })?;
    strip(
        &dir.join("reverse.png"),
        "reverse process (DDPM, model space): x_{t-1} after the step at t",
        &panels,
    )?;
    Ok(x)
}

/// DDPM from N(0, I) for `n` points (model space), as `train` draws its pictures; `observe`
/// sees each step.
#[allow(non_snake_case)] // x_T, as in the papers.
pub fn draw_ddpm<M: Denoiser<2>>(
    model: &M,
    config: &RunConfig,
    n: usize,
    seed: u64,
    device: &Device,
    observe: impl FnMut(usize, usize, &StepOutput<2>),
) -> Result<Tensor<2>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x_T = randn(&mut rng, [n, config.mlp()?.data_dim], device);
    let scheduler = config.scheduler_config();
    let s = DdpmSampler::new(&scheduler.schedule()?, scheduler.ddpm(None))?;
    Ok(sampler::sample(model, &s, x_T, &mut rng, observe)?)
}

/// q(x_t | x_0) for held-out points at 10 evenly spaced t, in model space.
fn forward_picture(
    dir: &Path,
    schedule: &diffuse_core::NoiseSchedule,
    x0: &PointSet,
    device: &Device,
    seed: u64,
) -> Result<()> {
    let n = x0.len().min(1000);
    let x0_t = Tensor::<2>::from_data(TensorData::new(x0.data[..n * 2].to_vec(), [n, 2]), device);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 2);
    let eps = randn(&mut rng, [n, 2], device);
    let last = schedule.num_timesteps() - 1;
    let mut panels = Vec::new();
    for k in 0..10 {
        let t = k * last / 9;
        let x_t = q_sample(schedule, x0_t.clone(), &vec![t; n], eps.clone());
        panels.push((
            format!("t = {t}"),
            x_t.into_data().try_to_vec::<f32>().unwrap_or_default(),
        ));
    }
    strip(
        &dir.join("forward.png"),
        "forward process q(x_t | x_0) (model space)",
        &panels,
    )?;
    Ok(())
}
