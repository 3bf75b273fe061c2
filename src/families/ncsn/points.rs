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
use burn::tensor::{Device, Tensor};
use diffuse_core::coef::randn;
use diffuse_data::{Points as PointSet, Standardizer};
use diffuse_eval::plots::strip;
use diffuse_nn::Mlp;
use diffuse_train::{Checkpoint, TrainError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Ncsn, check_method, draw, langevin, ode_process, section};
use crate::args::{EvalArgs, SampleArgs};
use crate::axes::KindName;
use crate::config::{NcsnConfig, RunConfig};
use crate::families::likelihood;
use crate::families::pictures::{Perturbation, ScoreAt, points_forward, score_field, shown};
use crate::families::{Family, TrainFigures};
use crate::kinds::points::{
    TrainPoints, load_mlp, report_samples, save_mlp, standardizer, to_points, write_points,
};
use crate::kinds::{Kind, PointKind};

impl Family<2, PointKind> for Ncsn {
    type Net = Mlp;
    type Objective = diffuse_train::Ncsn<2>;

    /// sigma_1 from the training points (Technique 1; every one in 2-D).
    fn prepare(config: &mut RunConfig, data: &TrainPoints) -> Result<()> {
        let (rows, dim) = PointKind::distance_rows(data);
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
        let shown = shown(levels);
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
        let n = args.n.unwrap_or(crate::sample::DEFAULT_POINTS);
        crate::memory::check_mlp_sampling(config.mlp()?, n)?;
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        let z = randn(&mut rng, [n, 2], &device);
        let (x, label) = draw(&model, args, section, KindName::Points, z, &mut rng)?;
        let standardizer = config
            .standardizer
            .clone()
            .unwrap_or(Standardizer::identity(2));
        write_points(args, x, &standardizer, &format!("{n} samples ({label})"))
    }

    fn nll(args: &EvalArgs, dir: &Path, _: &RunConfig) -> Result<()> {
        check_method(args)?;
        let device = crate::device::device();
        let r = likelihood::eval_points(args, &device, |c| ode_process(c, KindName::Points))?;
        likelihood::print(args, dir, &r)
    }
}

/// `score.png`: the score field at 4 of the levels.
fn score_picture(
    dir: &Path,
    model: &Mlp,
    section: &NcsnConfig,
    held_out: &PointSet,
    device: &Device,
) -> Result<()> {
    let levels = section.levels()?;
    let last = levels.len() - 1;
    let panels: Vec<(String, ScoreAt)> = [0, last / 3, 2 * last / 3, last]
        .into_iter()
        .map(|i| {
            let levels = &levels;
            let score: ScoreAt = Box::new(move |x| Ok(super::score(model, section, levels, x, i)));
            (format!("sigma {:.3}", levels.sigmas()[i]), score)
        })
        .collect();
    score_field(
        dir,
        "learned score s(x, sigma) over held-out data (model space; arrows cut at one cell)",
        held_out,
        panels,
        device,
    )
}

/// `forward.png`: held-out points (model space) perturbed at 10 of the levels.
fn forward_picture(dir: &Path, config: &RunConfig, x0: &PointSet, device: &Device) -> Result<()> {
    let levels = section(config)?.levels()?;
    let panels: Vec<Perturbation> = shown(levels.len())
        .into_iter()
        .rev()
        .map(|i| {
            let sigma = levels.sigmas()[i];
            Perturbation {
                label: format!("sigma {sigma:.3}"),
                mean: 1.0,
                std: sigma,
            }
        })
        .collect();
    points_forward(
        dir,
        "noise levels: x_0 + sigma z (model space), from sigma_L to sigma_1",
        x0,
        config.train.seed + 2,
        &panels,
        device,
    )
}
