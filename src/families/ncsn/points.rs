//! NCSN on 2-D points: the MLP, told the noise level, predicting the noise. Its run directory
//! holds what a DDPM 2-D run's does (`config.json` with its `[ncsn]` section, the weights,
//! `checkpoint/`, `loss.csv`, `loss.png`, `samples.png`, `metrics.json`), with these pictures:
//!
//! - `forward.png`: held-out data perturbed at 10 of the levels, x_0 + sigma_i z (model space)
//! - `score.png`: the learned score field s(x, sigma) as arrows over the held-out data, at 4 of
//!   the levels (model space)
//! - `reverse.png`: annealed Langevin's samples after 10 of the levels (model space)

use std::path::Path;

use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use diffuse_core::coef::randn;
use diffuse_data::{Points as PointSet, Standardizer};
use diffuse_eval::field::{FieldPanel, vector_fields};
use diffuse_eval::plots::{square_bounds, strip};
use diffuse_nn::Mlp;
use diffuse_train::{Checkpoint, TrainError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Ncsn, langevin, langevin_steps, section};
use crate::args::{EvalArgs, SampleArgs};
use crate::config::{NcsnConfig, RunConfig};
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
        let held_out = standardizer.forward(&data.data.held_out);
        forward_picture(dir, config, &held_out, &device)?;
        let section = section(config)?;
        score_picture(dir, model, section, &held_out, &device)?;
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

/// Arrows per side of `score.png`'s grid.
const GRID: usize = 21;

/// `score.png`: the score field on a 21 x 21 grid over the held-out points (model space) at 4
/// of the levels, each panel's median arrow one grid cell long and none longer.
fn score_picture(
    dir: &Path,
    model: &Mlp,
    section: &NcsnConfig,
    held_out: &PointSet,
    device: &Device,
) -> Result<()> {
    let levels = section.levels()?;
    let n = held_out.len().min(1000);
    let points = &held_out.data[..n * 2];
    let (x0, x1, y0, y1) = square_bounds(&[points]);
    let cell = (x1 - x0) / GRID as f64;
    let grid: Vec<f32> = (0..GRID * GRID)
        .flat_map(|k| {
            let (i, j) = (k % GRID, k / GRID);
            [
                (x0 + (i as f64 + 0.5) * cell) as f32,
                (y0 + (j as f64 + 0.5) * (y1 - y0) / GRID as f64) as f32,
            ]
        })
        .collect();
    let x = Tensor::<2>::from_data(TensorData::new(grid.clone(), [GRID * GRID, 2]), device);
    let last = levels.len() - 1;
    let mut panels = Vec::new();
    for i in [0, last / 3, 2 * last / 3, last] {
        let s: Vec<f32> = super::score(model, section, &levels, x.clone(), i)
            .into_data()
            .try_to_vec()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        // The median arrow spans a cell; longer ones (far from the data, where the score is
        // large) are cut to one cell, so the field near the data stays visible.
        let mut lengths: Vec<f32> = s.chunks_exact(2).map(|v| v[0].hypot(v[1])).collect();
        lengths.sort_by(f32::total_cmp);
        let median = lengths[lengths.len() / 2].max(f32::MIN_POSITIVE);
        let cell = cell as f32;
        let arrows = grid
            .chunks_exact(2)
            .zip(s.chunks_exact(2))
            .map(|(p, v)| {
                let len = v[0].hypot(v[1]).max(f32::MIN_POSITIVE);
                let scale = (cell / median).min(cell / len);
                [p[0], p[1], v[0] * scale, v[1] * scale]
            })
            .collect();
        panels.push(FieldPanel {
            label: format!("sigma {:.3}", levels.sigmas()[i]),
            points,
            arrows,
        });
    }
    vector_fields(
        &dir.join("score.png"),
        "learned score s(x, sigma) over held-out data (model space; arrows cut at one cell)",
        &panels,
    )?;
    Ok(())
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
