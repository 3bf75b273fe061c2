//! Score SDEs on 2-D points: the MLP, told 999 t, predicting the noise. Its run directory holds
//! what a DDPM 2-D run's does (`config.json` with its `[score]` section, the weights,
//! `checkpoint/`, `loss.csv`, `loss.png`, `samples.png`, `metrics.json`), with these pictures:
//!
//! - `forward.png`: held-out data at 10 times of the SDE, mean(t) x_0 + std(t) z (model space)
//! - `score.png`: the learned score field s(x, t) as arrows over the held-out data at 4 times
//! - `reverse.png`: the PC sampler's x after 10 of its steps (model space): the points sliding
//!   down the score field

use std::path::Path;

use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use diffuse_core::coef::randn;
use diffuse_core::level::Time;
use diffuse_data::Standardizer;
use diffuse_eval::plots::strip;
use diffuse_nn::Mlp;
use diffuse_train::{Checkpoint, TrainError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Score, pc_with_steps, perturbations, run_solver, sampler, section};
use crate::args::{EvalArgs, Method, SampleArgs};
use crate::config::RunConfig;
use crate::families::likelihood;
use crate::families::pictures::{ScoreAt, points_forward, score_field, shown};
use crate::families::{Family, TrainFigures};
use crate::kinds::points::{
    TrainPoints, load_mlp, report_samples, save_mlp, standardizer, to_points, write_points,
};
use crate::kinds::{Kind, PointKind};

impl Family<2, PointKind> for Score {
    type Net = Mlp;
    type Objective = diffuse_train::ScoreSde<2>;

    /// VE: sigma_max from the training points (Technique 1; every one in 2-D).
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
        format!("a {}-parameter time-conditional MLP", net.num_params())
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
        let section = section(config)?;
        points_forward(
            dir,
            &format!(
                "{} SDE: mean(t) x_0 + std(t) z (model space)",
                section.sde.name()
            ),
            &held_out,
            config.train.seed + 2,
            &perturbations(section)?,
            &device,
        )?;
        let how = section.net()?;
        let panels: Vec<(String, ScoreAt)> = [0.5, 0.2, 0.05, section.sample_eps]
            .into_iter()
            .map(|t| {
                let how = &how;
                let score: ScoreAt = Box::new(move |x| Ok(how.score(model, x, Time(t))?));
                (format!("t {t}"), score)
            })
            .collect();
        score_field(
            dir,
            "learned score s(x, t) over held-out data (model space; arrows cut at one cell)",
            &held_out,
            panels,
            &device,
        )?;
        let n = config.sample.n;
        let mut rng = ChaCha8Rng::seed_from_u64(config.train.seed + 1);
        let z = randn(&mut rng, [n, 2], &device);
        let show = shown(section.steps);
        let mut panels = Vec::new();
        let times = section.pc().times();
        let mut observe = |i: usize, x: &Tensor<2>| {
            if show.contains(&i) {
                let pts = x
                    .clone()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap_or_default();
                panels.push((format!("t {:.3}", times[i]), pts));
            }
        };
        let x = pc_with_steps(model, section, z, &mut rng, &mut observe)?;
        strip(
            &dir.join("reverse.png"),
            "predictor-corrector (model space): x after the step at t",
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
        let (solver, label) = sampler::<2>(&args.solver, section)?;
        let n = args.n.unwrap_or(crate::sample::DEFAULT_POINTS);
        crate::memory::check_mlp_sampling(config.mlp()?, n)?;
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        let z = randn(&mut rng, [n, 2], &device);
        let x = run_solver(solver.as_ref(), &model, z, &mut rng, &label)?;
        let standardizer = config
            .standardizer
            .clone()
            .unwrap_or(Standardizer::identity(2));
        write_points(args, x, &standardizer, &format!("{n} samples ({label})"))
    }

    fn nll(args: &EvalArgs, dir: &Path, _: &RunConfig) -> Result<()> {
        if args.method != Method::Ode {
            bail!(
                "a score run's likelihood is the probability-flow ODE's: --method ode (the variational bound --method vlb is DDPM's)"
            );
        }
        let device = crate::device::device();
        let r = likelihood::eval_points(args, &device, |c| super::ode_process(section(c)?))?;
        likelihood::print(args, dir, &r)
    }
}
