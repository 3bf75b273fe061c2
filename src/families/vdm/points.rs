//! The VDM on 2-D points: the 2-D MLP (its `model` section) predicting the noise, told the
//! normalized gamma, with the run's schedule. The run directory holds what every 2-D run's does
//! (`config.json` with its `[vdm]` section, `model.safetensors` and `model_ema.safetensors`
//! with the network and the schedule, `checkpoint/`, `loss.csv`, `loss.png`, `samples.png`,
//! `metrics.json`), `schedule.csv` and `schedule.png`, and `reverse.png`: the ancestral
//! sampler's z after 10 of its steps (model space).

use std::path::Path;

use anyhow::{Result, bail};
use burn::tensor::{Device, Tensor};
use diffuse_core::coef::randn;
use diffuse_core::vdm::DataModel;
use diffuse_eval::plots::strip;
use diffuse_nn::Mlp;
use diffuse_nn::gamma::Vdm as VdmNet;
use diffuse_train::{Checkpoint, TrainError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Chain, Vdm, describe, draw, nll, sample, schedule_files, scheduler_config, section};
use crate::args::{EvalArgs, Method, SampleArgs};
use crate::config::RunConfig;
use crate::families::likelihood;
use crate::families::pictures::shown;
use crate::families::{Family, TrainFigures};
use crate::kinds::points::{TrainPoints, report_samples, standardizer, to_points, write_points};
use crate::kinds::{PointKind, load_weight_pair, save_weight_pair};

fn init(config: &RunConfig, device: &Device) -> Result<VdmNet<Mlp>> {
    Ok(VdmNet {
        net: config.mlp()?.init(device)?,
        gamma: section(config)?.gamma.init(device),
    })
}

impl Family<2, PointKind> for Vdm {
    type Net = VdmNet<Mlp>;
    type Objective = diffuse_train::elbo::Vdm<2>;

    fn init(config: &RunConfig, device: &Device) -> Result<Self::Net> {
        init(config, device)
    }

    fn objective(config: &RunConfig) -> Result<Self::Objective> {
        super::objective(config, DataModel::Continuous)
    }

    fn describe(net: &Self::Net) -> String {
        describe(
            burn::module::Module::num_params(net),
            &net.gamma,
            "noise-predicting MLP",
        )
    }

    fn save(dir: &Path, _: &RunConfig, c: &Checkpoint<Self::Net>) -> Result<(), TrainError> {
        save_weight_pair(dir, c)
    }

    fn load_sampling(dir: &Path, config: &RunConfig, device: &Device) -> Result<Self::Net> {
        load_weight_pair(dir, config, true, init(config, device)?)
    }

    fn report(
        dir: &Path,
        config: &RunConfig,
        data: &TrainPoints,
        model: &Self::Net,
        figures: &TrainFigures,
    ) -> Result<()> {
        let device = crate::device::device();
        schedule_files(dir, &model.gamma, false, &device)?;
        let steps = section(config)?.sample_steps;
        let n = config.sample.n;
        let mut rng = ChaCha8Rng::seed_from_u64(config.train.seed + 1);
        let z = randn(&mut rng, [n, 2], &device);
        let show = shown(steps);
        let mut panels = Vec::new();
        let x = sample(
            model,
            z,
            steps,
            DataModel::Continuous,
            &mut rng,
            |i, z: &Tensor<2>| {
                if show.contains(&i) {
                    let pts = z
                        .clone()
                        .into_data()
                        .try_to_vec::<f32>()
                        .unwrap_or_default();
                    panels.push((format!("t {:.3}", i as f64 / steps as f64), pts));
                }
            },
        );
        strip(
            &dir.join("reverse.png"),
            "ancestral sampling (model space): z after the step to t",
            &panels,
        )?;
        let samples = to_points(x, &standardizer(config)?)?;
        report_samples(dir, config, &data.data, &samples, figures)
    }

    fn sample(args: &SampleArgs, dir: &Path, config: Option<&RunConfig>) -> Result<()> {
        if args.init_noise.is_some() {
            bail!("--init-noise applies to image models");
        }
        let Some(config) = config else {
            bail!("{} has no config.json", dir.display());
        };
        let device = crate::device::device();
        let model = load_weight_pair(dir, config, !args.no_ema, init(config, &device)?)?;
        let n = args.n.unwrap_or(crate::sample::DEFAULT_POINTS);
        crate::memory::check_mlp_sampling(config.mlp()?, n)?;
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        let z = randn(&mut rng, [n, 2], &device);
        let section = section(config)?;
        let (x, label) = draw(
            &args.solver,
            section,
            &model,
            z,
            DataModel::Continuous,
            &mut rng,
        )?;
        write_points(
            args,
            x,
            &standardizer(config)?,
            &format!("{n} samples ({label})"),
        )
    }

    fn nll(args: &EvalArgs, dir: &Path, config: &RunConfig) -> Result<()> {
        let device = crate::device::device();
        if args.method == Method::Ode {
            let ad = device.clone().autodiff();
            let model = load_weight_pair(dir, config, true, init(config, &ad)?)?;
            let scheduler = scheduler_config(&model.gamma, false, &ad)?;
            let process = likelihood::OdeProcess::chain(&scheduler)?;
            let r =
                likelihood::eval_points_with(args, config, &Chain { model: &model }, process, &ad)?;
            return likelihood::print(args, dir, &r);
        }
        let model = load_weight_pair(dir, config, true, init(config, &device)?)?;
        nll::<2, Mlp>(args, dir, config, &model, &device)
    }
}
