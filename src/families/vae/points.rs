//! The VAE and the hierarchical VAE on 2-D points: MLPs both ways, a Gaussian decoder. The run
//! directory holds what every 2-D run's does (`config.json` with its `[vae]` section,
//! `model.safetensors`, `model_ema.safetensors`, `checkpoint/`, `loss.csv`, `loss.png`,
//! `samples.png`, `metrics.json`), and `latent.png`: held-out points, their reconstructions
//! (the decoder's mean from the encoder's), the encoder's means in latent space (its first two
//! coordinates) over draws of the prior, and samples.

use std::path::Path;

use anyhow::{Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use diffuse_eval::plots::strip;
use diffuse_nn::vae::Hierarchy;
use diffuse_train::{Checkpoint, TrainError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Vae, encode_means, generate, reconstruct, section};
use crate::args::{EvalArgs, SampleArgs};
use crate::config::RunConfig;
use crate::families::{Family, TrainFigures};
use crate::kinds::points::{TrainPoints, report_samples, standardizer, to_points, write_points};
use crate::kinds::{PointKind, load_weight_pair, save_weight_pair};

/// Host values of a [n, d] tensor.
fn values(x: Tensor<2>) -> Vec<f32> {
    x.into_data().try_to_vec::<f32>().unwrap_or_default()
}

/// The first two coordinates of each row of a [n, d] tensor.
fn first_two(x: Tensor<2>) -> Vec<f32> {
    let d = x.dims()[1];
    if d >= 2 {
        values(x.narrow(1, 0, 2))
    } else {
        values(x).into_iter().flat_map(|v| [v, 0.0]).collect()
    }
}

impl Family<2, PointKind> for Vae {
    type Net = Hierarchy;
    type Objective = diffuse_train::elbo::Elbo<2>;

    fn init(config: &RunConfig, device: &Device) -> Result<Hierarchy> {
        super::init(config, device)
    }

    fn objective(config: &RunConfig) -> Result<Self::Objective> {
        super::objective(config)
    }

    fn describe(net: &Hierarchy) -> String {
        super::describe(net)
    }

    fn save(dir: &Path, _: &RunConfig, c: &Checkpoint<Hierarchy>) -> Result<(), TrainError> {
        save_weight_pair(dir, c)
    }

    fn load_sampling(dir: &Path, config: &RunConfig, device: &Device) -> Result<Hierarchy> {
        load_weight_pair(dir, config, true, super::init(config, device)?)
    }

    fn report(
        dir: &Path,
        config: &RunConfig,
        data: &TrainPoints,
        model: &Hierarchy,
        figures: &TrainFigures,
    ) -> Result<()> {
        let device = crate::device::device();
        let standardizer = standardizer(config)?;
        let observation = section(config)?.observation;
        let held = standardizer.forward(&data.data.held_out);
        let x = Tensor::<2>::from_data(
            TensorData::new(held.data.clone(), [held.len(), held.dim]),
            &device,
        );
        let n = config.sample.n;
        let mut rng = ChaCha8Rng::seed_from_u64(config.train.seed + 1);
        let (samples, _) = generate(model, observation, n, true, &mut rng, &device);
        let recon = reconstruct(model, observation, x.clone());
        let z = encode_means(model, x);
        let prior = diffuse_core::coef::randn(&mut rng, [held.len(), model.latent_dim()], &device);
        strip(
            &dir.join("latent.png"),
            "model space: held-out data | reconstructions | top latent: encoder means (blue) and prior draws | samples",
            &[
                ("held-out data".into(), held.data.clone()),
                ("reconstructions".into(), values(recon)),
                ("prior draws".into(), first_two(prior)),
                ("encoder means".into(), first_two(z)),
                ("samples".into(), values(samples.clone())),
            ],
        )?;
        let samples = to_points(samples, &standardizer)?;
        report_samples(dir, config, &data.data, &samples, figures)
    }

    fn sample(args: &SampleArgs, dir: &Path, config: Option<&RunConfig>) -> Result<()> {
        if args.init_noise.is_some() {
            bail!("--init-noise applies to image models");
        }
        let Some(config) = config else {
            bail!("{} has no config.json", dir.display());
        };
        super::refuse_sampler_flags(&args.solver)?;
        let device = crate::device::device();
        let model = load_weight_pair(dir, config, !args.no_ema, super::init(config, &device)?)?;
        let n = args.n.unwrap_or(crate::sample::DEFAULT_POINTS);
        let observation = section(config)?.observation;
        super::check_sampling(config, n)?;
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        let (x, _) = generate(&model, observation, n, true, &mut rng, &device);
        write_points(
            args,
            x,
            &standardizer(config)?,
            &format!("{n} samples ({})", config.family.name()),
        )
    }

    fn nll(args: &EvalArgs, dir: &Path, config: &RunConfig) -> Result<()> {
        let device = crate::device::device();
        let model = load_weight_pair(dir, config, true, super::init(config, &device)?)?;
        super::nll(args, dir, config, &model)
    }
}
