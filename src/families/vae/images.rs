//! The VAE and the hierarchical VAE on images: MLPs over the flattened image, a discretized
//! (8-bit) or Bernoulli (binarized) decoder. The run directory holds `diffuse_config.json`
//! (its `unet` section gives the image's size and channels; the networks are the `[vae]`
//! section's MLPs), `model.safetensors`, `model_ema.safetensors`, `checkpoint/`, `loss.csv`,
//! `loss.png`, `metrics.json`, and:
//!
//! - `samples.npy`, `samples.png`: `sample.n` samples (the decoder's mean from z ~ the prior)
//! - `reconstructions.png`: test images (odd rows) above their reconstructions (even rows)
//! - `interpolation.png`: the decoder's mean along straight lines between the top-level
//!   encoder means of pairs of test images
//! - `latent.png`: the top latent's encoder means of 2,000 test images (first two coordinates),
//!   coloured by class where the dataset has labels
//! - `levels.png` (HVAE): per row, one sample's z_t at each level t decoded through the means
//!   of the levels below (left: z_1, right: z_T)

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};
use burn::tensor::{Device, Tensor};
use diffuse_eval::plots::{Layer, PALETTE, scatter};
use diffuse_nn::vae::Hierarchy;
use diffuse_train::elbo::flatten;
use diffuse_train::{Checkpoint, TrainError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Vae, decode_means, encode_means, generate, reconstruct, section};
use crate::args::{EvalArgs, SampleArgs};
use crate::config::RunConfig;
use crate::families::pictures::write_samples;
use crate::families::{Family, TrainFigures};
use crate::kinds::images::{ImageData, first_images, grid, pixels, write_images, write_metrics};
use crate::kinds::{ImageKind, load_weight_pair, save_weight_pair};

/// [n, C H W] back to [n, C, H, W] of the run's images.
fn unflatten(x: Tensor<2>, config: &RunConfig) -> Result<Tensor<4>> {
    let unet = config.unet()?;
    let size = unet.sample_size.unwrap_or(0);
    let n = x.dims()[0];
    Ok(x.reshape([n, unet.in_channels, size, size]))
}

fn pictures(
    dir: &Path,
    config: &RunConfig,
    data: &ImageData,
    model: &Hierarchy,
    device: &Device,
) -> Result<()> {
    let observation = section(config)?.observation;
    let rows = 8;
    let x = first_images(&data.test, rows * 8, device);
    let shape: [usize; 4] = x.dims();
    let recon = unflatten(
        reconstruct(model, observation, observation.data(flatten(x.clone()))),
        config,
    )?;
    // Row pairs: 8 inputs, then their 8 reconstructions.
    let (mut inputs, mut outputs) = (pixels(x.clone())?, pixels(recon)?);
    let per = shape[1] * shape[2] * shape[3] * 8;
    let mut interleaved = Vec::with_capacity(inputs.len() * 2);
    for (a, b) in inputs.chunks_mut(per).zip(outputs.chunks_mut(per)) {
        interleaved.extend_from_slice(a);
        interleaved.extend_from_slice(b);
    }
    let mut both = shape;
    both[0] *= 2;
    grid(
        &dir.join("reconstructions.png"),
        "test images (odd rows) and their reconstructions (even rows)",
        &interleaved,
        both,
        8,
    )?;
    // Interpolation between consecutive pairs of test images at the top level.
    let ends = encode_means(
        model,
        observation.data(flatten(x.clone().narrow(0, 0, 2 * rows))),
    );
    let steps = 10;
    let mut lines = Vec::new();
    for r in 0..rows {
        let a = ends.clone().narrow(0, 2 * r, 1);
        let b = ends.clone().narrow(0, 2 * r + 1, 1);
        for k in 0..steps {
            let w = k as f32 / (steps - 1) as f32;
            lines.push(a.clone().mul_scalar(1.0 - w) + b.clone().mul_scalar(w));
        }
    }
    let path = unflatten(
        decode_means(model, observation, model.levels(), Tensor::cat(lines, 0)),
        config,
    )?;
    let s: [usize; 4] = path.dims();
    grid(
        &dir.join("interpolation.png"),
        "decoded along straight lines between two test images' top-level latents",
        &pixels(path)?,
        s,
        steps,
    )?;
    // The latent space of 2,000 test images, coloured by class.
    let n = data.test.len().min(2000);
    let z = encode_means(
        model,
        observation.data(flatten(first_images(&data.test, n, device))),
    );
    let d = z.dims()[1];
    let z: Vec<f32> = z
        .narrow(1, 0, d.min(2))
        .into_data()
        .try_to_vec::<f32>()
        .unwrap_or_default();
    let z: Vec<f32> = if d >= 2 {
        z
    } else {
        z.into_iter().flat_map(|v| [v, 0.0]).collect()
    };
    let labels = data.test.labels.as_ref().map(|l| &l[..n]);
    let names: Vec<String> = (0..10).map(|c| c.to_string()).collect();
    let layers: Vec<Vec<f32>> = match labels {
        Some(labels) => (0..10u8)
            .map(|c| {
                z.chunks(2)
                    .zip(labels)
                    .filter(|(_, l)| **l == c)
                    .flat_map(|(p, _)| p.to_vec())
                    .collect()
            })
            .collect(),
        None => vec![z],
    };
    let layers: Vec<Layer> = layers
        .iter()
        .enumerate()
        .map(|(c, points)| Layer {
            label: &names[c],
            points,
            color: PALETTE[c % 10],
        })
        .collect();
    scatter(
        &dir.join("latent.png"),
        &format!("{n} test images: encoder means, 2 of {d} latents"),
        &layers,
    )?;
    Ok(())
}

impl Family<4, ImageKind> for Vae {
    type Net = Hierarchy;
    type Objective = diffuse_train::elbo::Elbo<4>;

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
        data: &ImageData,
        model: &Hierarchy,
        figures: &TrainFigures,
    ) -> Result<()> {
        let device = crate::device::device();
        pictures(dir, config, data, model, &device)?;
        let start = Instant::now();
        let observation = section(config)?.observation;
        let mut rng = ChaCha8Rng::seed_from_u64(config.train.seed + 1);
        let n = config.sample.n;
        let (x, per_level) = generate(model, observation, n, false, &mut rng, &device);
        let x = unflatten(x, config)?;
        let shape: [usize; 4] = x.dims();
        write_samples(dir, x, &format!("{n} samples (decoder means, EMA weights)"))?;
        if model.levels() > 1 {
            // Rows: the first 8 samples; columns: levels 1..T.
            let rows = n.min(8);
            let levels: Vec<Tensor<4>> = per_level
                .into_iter()
                .map(|l| unflatten(l.narrow(0, 0, rows), config))
                .collect::<Result<_>>()?;
            let t = levels.len();
            let stacked =
                Tensor::stack::<5>(levels, 1).reshape([rows * t, shape[1], shape[2], shape[3]]);
            let s: [usize; 4] = stacked.dims();
            grid(
                &dir.join("levels.png"),
                "z_t decoded, t = 1 (left) to T",
                &pixels(stacked)?,
                s,
                t,
            )?;
        }
        write_metrics(
            dir,
            config,
            data,
            model.num_params(),
            figures,
            start.elapsed().as_secs_f64(),
        )
    }

    fn sample(args: &SampleArgs, dir: &Path, config: Option<&RunConfig>) -> Result<()> {
        let Some(config) = config else {
            bail!("{} has no diffuse_config.json", dir.display());
        };
        if args.init_noise.is_some() {
            bail!(
                "--init-noise gives a diffusion model's noise; a {} run draws its latents from --seed",
                config.family.name()
            );
        }
        super::refuse_sampler_flags(&args.solver)?;
        let device = crate::device::device();
        let model = load_weight_pair(dir, config, !args.no_ema, super::init(config, &device)?)?;
        let n = args.n.unwrap_or(crate::sample::DEFAULT_IMAGES);
        super::check_sampling(config, n)?;
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        let (x, _) = generate(
            &model,
            section(config)?.observation,
            n,
            false,
            &mut rng,
            &device,
        );
        write_images(
            args,
            unflatten(x, config)?,
            &format!("{n} samples ({}, decoder means)", config.family.name()),
        )
    }

    fn nll(args: &EvalArgs, dir: &Path, config: &RunConfig) -> Result<()> {
        let device = crate::device::device();
        let model = load_weight_pair(dir, config, true, super::init(config, &device)?)?;
        super::nll(args, dir, config, &model)
    }
}
