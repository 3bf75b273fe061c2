//! DDPM on images: a diffusers-compatible U-Net, how it trains and what its run directory
//! holds, which is also a diffusers `DDIMPipeline` folder:
//!
//! - `model_index.json`, `unet/` (EMA weights where enabled), `scheduler/scheduler_config.json`:
//!   `DDIMPipeline.from_pretrained(run_dir)` (`DDPMPipeline` for a learned variance) and
//!   `diffuse sample --pipeline run_dir` load it
//! - `raw/`: the raw (non-EMA) weights as a diffusers `UNet2DModel` folder
//! - `diffuse_config.json`: the full run configuration
//! - `loss.csv`, `loss.png`; `samples.npy` (float32 [N, C, H, W], model space) and `samples.png`
//! - `progressive.png`: the predicted x_0 at 10 points of the reverse process (DDPM fig. 6)
//! - `forward.png`: q(x_t | x_0) for test images at 10 evenly spaced t
//! - `interpolation.png`: two test images noised to the same t with the same noise, interpolated
//!   linearly and denoised (DDPM fig. 8)
//! - `metrics.json`: time, steps/s, final loss
//!
//! Weights are written atomically every `checkpoint_every` steps and at the end.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use diffuse_core::coef::randn;
use diffuse_core::discrete::process::q_sample;
use diffuse_core::discrete::sampler::{DdimSampler, Sampler, sample};
use diffuse_core::{Denoiser, NoiseSchedule};
use diffuse_data::{ImageSet, write_npy};
use diffuse_diffusers::{SchedulerConfig, save_pipeline, save_unet};
use diffuse_nn::Unet;
use diffuse_train::{Checkpoint, TrainError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::Ddpm;
use crate::args::{EvalArgs, SampleArgs};
use crate::config::RunConfig;
use crate::families::Family;
use crate::families::TrainFigures;
use crate::kinds::ImageKind;
use crate::kinds::images::{ImageData, first_images, grid, pixels, write_metrics};
use crate::progress;

/// Images per picture row (progressive generation, forward noising).
const PICTURE_ROWS: usize = 8;
/// Panels per row: points of the reverse process, or of the forward process.
const PICTURE_STEPS: usize = 10;

impl Family<4, ImageKind> for Ddpm {
    type Net = Unet;
    type Objective = diffuse_train::Ddpm<4>;

    fn init(config: &RunConfig, device: &Device) -> Result<Unet> {
        Ok(config.unet()?.init(device)?)
    }

    fn objective(config: &RunConfig) -> Result<Self::Objective> {
        super::objective(config)
    }

    fn describe(net: &Unet) -> String {
        format!("a {}-parameter U-Net", net.num_params())
    }

    fn save(dir: &Path, config: &RunConfig, c: &Checkpoint<Unet>) -> Result<(), TrainError> {
        let err = |e: String| TrainError::Checkpoint {
            path: dir.into(),
            reason: e,
        };
        let unet = config.unet().map_err(|e| err(e.to_string()))?;
        save_pipeline(dir, unet, c.sampling_model(), &config.scheduler_config())
            .map_err(|e| err(e.to_string()))?;
        save_unet(&dir.join("raw"), unet, &c.model).map_err(|e| err(e.to_string()))
    }

    fn load_sampling(dir: &Path, _: &RunConfig, device: &Device) -> Result<Unet> {
        Ok(crate::memory::load_pipeline(dir, device)?.unet)
    }

    fn sample(args: &SampleArgs, dir: &Path, _: Option<&RunConfig>) -> Result<()> {
        super::sample::images(args, dir)
    }

    fn nll(args: &EvalArgs, dir: &Path, config: &RunConfig) -> Result<()> {
        super::bound::nll_images(args, dir, config)
    }

    fn report(
        dir: &Path,
        config: &RunConfig,
        data: &ImageData,
        model: &Unet,
        figures: &TrainFigures,
    ) -> Result<()> {
        let device = crate::device::device();
        let schedule = config.schedule.build()?;
        let sample_seconds = pictures(
            dir,
            model,
            &config.scheduler_config(),
            &schedule,
            config,
            &data.test,
            &device,
        )?;
        write_metrics(
            dir,
            config,
            data,
            model.num_params(),
            figures,
            sample_seconds,
        )
    }
}

/// Every picture of a run (and `samples.npy`); returns the seconds spent sampling.
fn pictures(
    dir: &Path,
    model: &Unet,
    scheduler: &SchedulerConfig,
    schedule: &NoiseSchedule,
    config: &RunConfig,
    test: &ImageSet,
    device: &Device,
) -> Result<f64> {
    let seed = config.train.seed;
    let steps = config
        .sample
        .ddim_steps
        .context("sample.ddim_steps is unset (the config was not validated)")?;
    let sampler = DdimSampler::new(schedule, scheduler.ddim(steps, 0.0))?;
    forward_picture(dir, schedule, test, device, seed)?;
    let start = Instant::now();
    samples_and_progressive(dir, model, &sampler, config, device, seed)?;
    let sample_seconds = start.elapsed().as_secs_f64();
    interpolation_picture(dir, model, &sampler, schedule, test, device, seed)?;
    Ok(sample_seconds)
}

/// `samples.npy`, `samples.png` and `progressive.png` from one DDIM run.
#[allow(non_snake_case)] // x_T, as in the papers.
fn samples_and_progressive(
    dir: &Path,
    model: &Unet,
    sampler: &DdimSampler,
    config: &RunConfig,
    device: &Device,
    seed: u64,
) -> Result<()> {
    let unet = config.unet()?;
    let (n, c) = (config.sample.n, unet.in_channels);
    let size = unet.sample_size.unwrap_or(0);
    let shape = [n, c, size, size];
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 1);
    let x_T = randn(&mut rng, shape, device);
    let steps = sampler.timesteps().len();
    let record: Vec<usize> = (0..PICTURE_STEPS)
        .map(|k| k * (steps - 1) / (PICTURE_STEPS - 1))
        .collect();
    let rows = PICTURE_ROWS.min(n);
    let mut progressive: Vec<Vec<u8>> = Vec::new();
    let pb = progress::bar(steps, "sampling");
    let x = sample(model, sampler, x_T, &mut rng, |i, _, out| {
        pb.inc(1);
        if record.contains(&i) {
            let x0 = out.pred_x0.clone().narrow(0, 0, rows);
            progressive.push(pixels(x0).unwrap_or_default());
        }
    })?;
    pb.finish_and_clear();
    let values: Vec<f32> = x
        .clone()
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    write_npy(&dir.join("samples.npy"), &shape, &values)?;
    let cols = (n as f64).sqrt().ceil() as usize;
    grid(
        &dir.join("samples.png"),
        &format!("{n} samples (DDIM, {steps} steps, eta 0, EMA weights)"),
        &pixels(x)?,
        shape,
        cols,
    )?;
    // Row r: image r's predicted x_0 at each recorded step.
    let per_image = c * size * size;
    let mut ordered = Vec::with_capacity(rows * PICTURE_STEPS * per_image);
    for r in 0..rows {
        for panel in &progressive {
            ordered.extend_from_slice(&panel[r * per_image..(r + 1) * per_image]);
        }
    }
    grid(
        &dir.join("progressive.png"),
        "progressive generation: predicted x_0 from t = T (left) to t = 0 (right)",
        &ordered,
        [rows * progressive.len(), c, size, size],
        progressive.len(),
    )
}

/// `forward.png`: test images under q(x_t | x_0) at 10 evenly spaced t (one noise per image).
fn forward_picture(
    dir: &Path,
    schedule: &NoiseSchedule,
    test: &ImageSet,
    device: &Device,
    seed: u64,
) -> Result<()> {
    let x0 = first_images(test, PICTURE_ROWS, device);
    let shape: [usize; 4] = x0.dims();
    let eps = randn(&mut ChaCha8Rng::seed_from_u64(seed + 2), shape, device);
    let last = schedule.num_timesteps() - 1;
    let mut panels = Vec::new();
    for k in 0..PICTURE_STEPS {
        let t = k * last / (PICTURE_STEPS - 1);
        panels.push(pixels(q_sample(
            schedule,
            x0.clone(),
            &vec![t; shape[0]],
            eps.clone(),
        ))?);
    }
    let per_image = shape[1] * shape[2] * shape[3];
    let mut ordered = Vec::new();
    for r in 0..shape[0] {
        for panel in &panels {
            ordered.extend_from_slice(&panel[r * per_image..(r + 1) * per_image]);
        }
    }
    grid(
        &dir.join("forward.png"),
        &format!("forward process q(x_t | x_0): t = 0 (left) to {last} (right)"),
        &ordered,
        [shape[0] * PICTURE_STEPS, shape[1], shape[2], shape[3]],
        PICTURE_STEPS,
    )
}

/// Runs the deterministic DDIM steps of `sampler` at or below `t_start`, from `x` = x_{t_start}.
fn denoise_from(
    model: &Unet,
    sampler: &DdimSampler,
    t_start: usize,
    mut x: Tensor<4>,
) -> Result<Tensor<4>> {
    let device = x.device();
    let b = x.dims()[0];
    for &t in sampler.timesteps().iter().filter(|&&t| t <= t_start) {
        let output = model.denoise(x.clone(), Tensor::<1>::full([b], t as f32, &device));
        x = sampler.step(output, t, x, None)?.prev_sample;
        if !diffuse_core::coef::is_finite(&x) {
            bail!("denoising for the interpolation picture produced NaN or inf at t = {t}");
        }
    }
    Ok(x)
}

/// `interpolation.png`: pairs of test images noised to t ~ T/4 with the same noise, mixed
/// (1 - l) x_t + l x'_t for 9 values of l, and denoised by DDIM (eta 0). DDPM's figure noises
/// 256x256 faces to t = 500; on 28x28 digits, with abar_500 ~ 0.08, the ends are forgotten there.
fn interpolation_picture(
    dir: &Path,
    model: &Unet,
    sampler: &DdimSampler,
    schedule: &NoiseSchedule,
    test: &ImageSet,
    device: &Device,
    seed: u64,
) -> Result<()> {
    let pairs = 4.min(test.len() / 2);
    if pairs == 0 {
        return Ok(());
    }
    let lambdas = 9;
    // The sampler's timestep nearest T / 4, so the walk down starts on its own grid.
    let quarter = schedule.num_timesteps() / 4;
    let t0 = *sampler
        .timesteps()
        .iter()
        .min_by_key(|&&t| t.abs_diff(quarter))
        .unwrap_or(&quarter);
    let x0 = first_images(test, 2 * pairs, device);
    let [_, c, h, w] = x0.dims();
    let eps = randn(
        &mut ChaCha8Rng::seed_from_u64(seed + 3),
        [pairs, c, h, w],
        device,
    );
    let a = x0.clone().narrow(0, 0, pairs);
    let b = x0.narrow(0, pairs, pairs);
    let x_a = q_sample(schedule, a.clone(), &vec![t0; pairs], eps.clone());
    let x_b = q_sample(schedule, b.clone(), &vec![t0; pairs], eps);
    let mut mixed = Vec::with_capacity(lambdas);
    for k in 0..lambdas {
        let l = k as f32 / (lambdas - 1) as f32;
        mixed.push(x_a.clone().mul_scalar(1.0 - l) + x_b.clone().mul_scalar(l));
    }
    // Row p: a_p, the 9 denoised mixtures, b_p.
    let denoised = denoise_from(model, sampler, t0, Tensor::cat(mixed, 0))?;
    let (a, b, d) = (pixels(a)?, pixels(b)?, pixels(denoised)?);
    let per_image = c * h * w;
    let mut ordered = Vec::new();
    for p in 0..pairs {
        ordered.extend_from_slice(&a[p * per_image..(p + 1) * per_image]);
        for k in 0..lambdas {
            let i = k * pairs + p;
            ordered.extend_from_slice(&d[i * per_image..(i + 1) * per_image]);
        }
        ordered.extend_from_slice(&b[p * per_image..(p + 1) * per_image]);
    }
    grid(
        &dir.join("interpolation.png"),
        &format!(
            "interpolation: both ends noised to t = {t0} with the same noise, mixed, denoised"
        ),
        &ordered,
        [pairs * (lambdas + 2), c, h, w],
        lambdas + 2,
    )
}
