//! NCSN on 2-D points: the MLP, told the noise level, predicting the noise. Its run directory
//! holds what a DDPM 2-D run's does (`config.json` with its `[ncsn]` section, the weights,
//! `checkpoint/`, `loss.csv`, `loss.png`, `samples.png`, `metrics.json`), with these pictures:
//!
//! - `forward.png`: held-out data perturbed at 10 of the levels, x_0 + sigma_i z (model space)
//! - `reverse.png`: annealed Langevin's samples after 10 of the levels (model space)

use std::path::Path;

use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use diffuse_core::coef::randn;
use diffuse_data::{Points as PointSet, Standardizer};
use diffuse_eval::plots::strip;
use diffuse_nn::Mlp;
use diffuse_train::{Checkpoint, TrainError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Ncsn, langevin, langevin_steps, section};
use crate::args::{EvalArgs, SampleArgs};
use crate::config::RunConfig;
use crate::families::{Family, TrainFigures};
use crate::kinds::points::{
    TrainPoints, load_mlp, report_samples, save_mlp, standardizer, to_points, write_points,
};
use crate::kinds::{Kind, Points};

/// Panels of the pictures: levels shown.
const PANELS: usize = 10;

impl Family<2, Points> for Ncsn {
    type Net = Mlp;
    type Objective = diffuse_train::Ncsn<2>;

    /// sigma_1 from every training point (Technique 1).
    fn prepare(config: &mut RunConfig, data: &TrainPoints) -> Result<()> {
        let (rows, dim) = Points::model_rows(data, usize::MAX);
        super::prepare(config, &rows, dim)
    }

    fn init(config: &RunConfig, device: &Device) -> Result<Mlp> {
        Ok(config.mlp()?.init(device)?)
    }

    fn objective(config: &RunConfig) -> Result<Self::Objective> {
        super::objective(config)
    }

    fn describe(net: &Mlp) -> String {
        format!("a {}-parameter noise-conditional MLP", net.num_params())
    }

    fn save(dir: &Path, _: &RunConfig, c: &Checkpoint<Mlp>) -> Result<(), TrainError> {
        save_mlp(dir, c)
    }

    fn load_sampling(dir: &Path, _: &RunConfig, device: &Device) -> Result<Mlp> {
        Ok(load_mlp(dir, true, device)?.1)
    }

    fn report(
        dir: &Path,
        config: &RunConfig,
        data: &TrainPoints,
        model: &Mlp,
        figures: &TrainFigures,
    ) -> Result<()> {
        let device = crate::device::device();
        let standardizer = standardizer(config)?;
        forward_picture(
            dir,
            config,
            &standardizer.forward(&data.data.held_out),
            &device,
        )?;
        let section = section(config)?;
        let n = config.sample.n;
        let mut rng = ChaCha8Rng::seed_from_u64(config.train.seed + 1);
        let z = randn(&mut rng, [n, 2], &device);
        let levels = section.levels()?.len();
        let shown = shown_levels(levels);
        let mut panels = Vec::new();
        let mut observe = |i: usize, x: &Tensor<2>| {
            if shown.contains(&i) {
                let pts = x
                    .clone()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap_or_default();
                panels.push((format!("level {}", i + 1), pts));
            }
        };
        let x = langevin(
            model,
            section,
            section.langevin_steps,
            z,
            &mut rng,
            &mut observe,
        )?;
        strip(
            &dir.join("reverse.png"),
            "annealed Langevin (model space): x after the steps at level i",
            &panels,
        )?;
        let samples = to_points(x, &standardizer)?;
        report_samples(dir, config, &data.data, &samples, figures)
    }

    fn sample(args: &SampleArgs, dir: &Path, _: Option<&RunConfig>) -> Result<()> {
        if args.init_noise.is_some() {
            bail!("--init-noise applies to image models");
        }
        let device = crate::device::device();
        let (config, model) = load_mlp(dir, !args.no_ema, &device)?;
        let section = section(&config)?;
        let steps = langevin_steps(args, section)?;
        let n = args.n.unwrap_or(crate::sample::DEFAULT_POINTS);
        crate::memory::check_mlp_sampling(config.mlp()?, n)?;
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        let z = randn(&mut rng, [n, 2], &device);
        let x = langevin(&model, section, steps, z, &mut rng, &mut |_, _| {})?;
        let standardizer = config
            .standardizer
            .clone()
            .unwrap_or(Standardizer::identity(2));
        let title = format!("{n} samples (annealed Langevin, {steps} steps per level)");
        write_points(args, x, &standardizer, &title)
    }

    fn nll(_: &EvalArgs, _: &Path, _: &RunConfig) -> Result<()> {
        bail!(
            "NCSN defines no likelihood (its levels are a set, not a process); train --family score --sde ve for the probability-flow ODE's"
        )
    }
}

/// The `PANELS` level indices shown in the pictures, from the first to the last.
fn shown_levels(levels: usize) -> Vec<usize> {
    (0..PANELS)
        .map(|k| k * (levels - 1) / (PANELS - 1))
        .collect()
}

/// `forward.png`: held-out points (model space) perturbed at 10 of the levels.
fn forward_picture(dir: &Path, config: &RunConfig, x0: &PointSet, device: &Device) -> Result<()> {
    let levels = section(config)?.levels()?;
    let n = x0.len().min(1000);
    let x0_t = Tensor::<2>::from_data(TensorData::new(x0.data[..n * 2].to_vec(), [n, 2]), device);
    let z = randn(
        &mut ChaCha8Rng::seed_from_u64(config.train.seed + 2),
        [n, 2],
        device,
    );
    let mut panels = Vec::new();
    for i in shown_levels(levels.len()).into_iter().rev() {
        let sigma = levels.sigmas()[i];
        let x = x0_t.clone() + z.clone().mul_scalar(sigma as f32);
        panels.push((
            format!("sigma {sigma:.3}"),
            x.into_data().try_to_vec::<f32>().unwrap_or_default(),
        ));
    }
    strip(
        &dir.join("forward.png"),
        "noise levels: x_0 + sigma z (model space), from sigma_L to sigma_1",
        &panels,
    )?;
    Ok(())
}
