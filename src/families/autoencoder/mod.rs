//! The autoencoder family: latent diffusion's first stage (Rombach et al. 2022), a KL- or
//! VQ-regularized autoencoder with diffusers' `AutoencoderKL` / `VQModel` architecture, trained on
//! images by `diffuse_core::autoencoder`'s loss. Images only. Its run directory holds:
//!
//! - `vae/`: the autoencoder as a diffusers model folder (EMA weights where kept), whose
//!   `scaling_factor` is 1 / the standard deviation of the training images' latents (LDM's
//!   recipe: the first 2,048 images, one posterior draw each), written when the run finishes;
//!   `AutoencoderKL.from_pretrained(run/vae)`, `diffuse encode --vae run` and
//!   `diffuse train --family latent --vae run` read it
//! - `diffuse_config.json`, `checkpoint/`, `loss.csv`, `loss.png`
//! - `reconstructions.png` (test images, each beside its reconstruction), `latents.png` (each
//!   latent channel of test images as an image), `interpolation.png` (decoded straight lines
//!   between two test images' latents)
//! - `reconstructions.npy`: the first 1,000 test images reconstructed (model space), for the
//!   distance of reconstructions to the data (`diffuse fid`): what latent diffusion can reach
//! - `metrics.json`: reconstruction errors on those images, the scaling factor, training time

mod pictures;

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use diffuse_core::autoencoder::{Reconstruction, reconstruction_error};
use diffuse_core::coef::randn;
use diffuse_data::ImageSet;
use diffuse_nn::autoencoder::{Autoencoder, AutoencoderConfig};
use diffuse_train::checkpoint::save_json;
use diffuse_train::{Checkpoint, TrainError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::args::{EvalArgs, SampleArgs};
use crate::config::{AutoencoderSection, RunConfig};
use crate::families::{Family, TrainFigures};
use crate::kinds::ImageKind;
use crate::kinds::images::{ImageData, first_images};

/// The autoencoder family (see the module docs).
pub struct FirstStage;

/// Training images whose latents' spread sets the scaling factor (LDM: one batch).
const SCALING_IMAGES: usize = 2048;
/// Images through the network at once outside training.
const BATCH: usize = 64;
/// Test images the reconstruction errors are measured on.
const METRIC_IMAGES: usize = 1000;

fn section(config: &RunConfig) -> Result<&AutoencoderSection> {
    config
        .autoencoder
        .as_ref()
        .context("the run config has no [autoencoder] section")
}

/// The run's diffusers config with `scaling_factor`.
fn diffusers_config(config: &RunConfig, scaling_factor: f64) -> Result<AutoencoderConfig> {
    let (channels, size) = config.image_shape()?;
    Ok(section(config)?.diffusers(channels, size, scaling_factor))
}

/// The folder of a run's autoencoder.
pub fn vae_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("vae")
}

/// `f(batch)` over `set`'s first `n` images, `BATCH` at a time, in model space.
fn over_images<T>(
    set: &ImageSet,
    n: usize,
    device: &Device,
    mut f: impl FnMut(Tensor<4>) -> T,
) -> Vec<T> {
    let n = n.min(set.len());
    let all = first_images(set, n, device);
    (0..n)
        .step_by(BATCH)
        .map(|start| f(all.clone().narrow(0, start, BATCH.min(n - start))))
        .collect()
}

/// 1 / the standard deviation of the latents of the first training images (each a posterior
/// draw for a KL model, the latents before the codebook for a VQ one), in f64.
pub fn estimate_scaling_factor(
    model: &Autoencoder,
    train: &ImageSet,
    seed: u64,
    device: &Device,
) -> Result<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<Vec<f32>> = over_images(train, SCALING_IMAGES, device, |x| {
        let z = model.encode(x).draw(|shape| randn(&mut rng, shape, device));
        z.into_data().try_to_vec().unwrap_or_default()
    });
    let values: Vec<f64> = values.into_iter().flatten().map(f64::from).collect();
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let std = var.sqrt();
    if !(std.is_finite() && std > 0.0) {
        bail!("the latents' standard deviation is {std}; the autoencoder did not train");
    }
    Ok(1.0 / std)
}

#[derive(Serialize)]
struct Metrics {
    dataset: String,
    train_images: usize,
    steps: usize,
    batch_size: usize,
    parameters: usize,
    /// The latents' side and channels, and how many times fewer values they hold than images.
    latent_shape: [usize; 3],
    compression: f64,
    scaling_factor: f64,
    /// On the first test images, reconstructed from the posterior mean (model space [-1, 1]).
    test_images: usize,
    reconstruction_l1: f64,
    reconstruction_mse: f64,
    /// 10 log10(255^2 / MSE) on 8-bit pixels.
    psnr_db: f64,
    #[serde(flatten)]
    figures: TrainFigures,
}

/// Mean absolute and squared errors of reconstructions of the first test images, which are
/// written to `reconstructions.npy`.
fn reconstruction_errors(
    dir: &Path,
    model: &Autoencoder,
    test: &ImageSet,
    device: &Device,
) -> Result<(f64, f64, usize)> {
    let n = METRIC_IMAGES.min(test.len());
    let mut kept = Vec::new();
    let sums = over_images(test, n, device, |x| {
        let x_hat = model.decode(model.encode(x.clone()).mean).clamp(-1.0, 1.0);
        kept.extend(
            x_hat
                .clone()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap_or_default(),
        );
        let sum = |kind| -> f64 {
            let per: Vec<f32> = reconstruction_error(kind, x.clone(), x_hat.clone())
                .into_data()
                .try_to_vec()
                .unwrap_or_default();
            per.iter().map(|&v| f64::from(v)).sum()
        };
        (sum(Reconstruction::L1), sum(Reconstruction::L2))
    });
    let (l1, l2) = sums.iter().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    let [_, c, h, w] = test.shape();
    diffuse_data::write_npy(&dir.join("reconstructions.npy"), &[n, c, h, w], &kept)?;
    Ok((l1 / n as f64, l2 / n as f64, n))
}

impl Family<4, ImageKind> for FirstStage {
    type Net = Autoencoder;
    type Objective = diffuse_train::autoencoder::FirstStage;

    fn init(config: &RunConfig, device: &Device) -> Result<Autoencoder> {
        Ok(diffusers_config(config, 1.0)?.init(device)?)
    }

    fn objective(config: &RunConfig) -> Result<Self::Objective> {
        let section = section(config)?;
        let mut objective =
            diffuse_train::autoencoder::FirstStage::new(section.loss(), section.codebook_ema);
        if let Some(p) = &section.perceptual {
            let (lenet, _) = crate::classifier::load(&p.classifier)
                .context("autoencoder.perceptual.classifier: the LeNet of the perceptual term")?;
            // Frozen, on the device the autoencoder trains on: gradients reach the images only.
            let lenet = lenet
                .no_grad()
                .to_device(&crate::device::device().autodiff());
            objective.perceptual = Some(diffuse_train::autoencoder::Perceptual {
                layers: Box::new(move |x| lenet.layers(x).to_vec()),
                weight: p.weight,
            });
        }
        Ok(objective)
    }

    fn describe(net: &Autoencoder) -> String {
        let kind = if net.quantizer().is_some() {
            "VQ"
        } else {
            "KL"
        };
        format!("a {}-parameter {kind} autoencoder", net.num_params())
    }

    /// `vae/` with scaling factor 1 until the run finishes and [`Family::report`] measures it.
    fn save(dir: &Path, config: &RunConfig, c: &Checkpoint<Autoencoder>) -> Result<(), TrainError> {
        let err = |e: String| TrainError::Checkpoint {
            path: dir.into(),
            reason: e,
        };
        let vae = diffusers_config(config, 1.0).map_err(|e| err(e.to_string()))?;
        diffuse_diffusers::save_autoencoder(&vae_dir(dir), &vae, c.sampling_model())
            .map_err(|e| err(e.to_string()))
    }

    fn load_sampling(dir: &Path, _: &RunConfig, device: &Device) -> Result<Autoencoder> {
        Ok(Autoencoder::from_diffusers_dir(&vae_dir(dir), device)?.1)
    }

    fn report(
        dir: &Path,
        config: &RunConfig,
        data: &ImageData,
        model: &Autoencoder,
        figures: &TrainFigures,
    ) -> Result<()> {
        let device = crate::device::device();
        let model = model.clone().no_grad();
        let seed = config.train.seed;
        eprintln!("measuring the latents' scale on {SCALING_IMAGES} training images");
        let scaling_factor = estimate_scaling_factor(&model, &data.train, seed + 1, &device)?;
        let vae = diffusers_config(config, scaling_factor)?;
        diffuse_diffusers::save_autoencoder(&vae_dir(dir), &vae, &model)?;
        pictures::draw(dir, &model, &vae, &data.test, &device)?;
        let (l1, mse, n) = reconstruction_errors(dir, &model, &data.test, &device)?;
        let (channels, size) = config.image_shape()?;
        let f = vae.downsampling();
        let latent = [vae.diffusion_channels(), size / f, size / f];
        let mse_pixels = mse * 127.5 * 127.5;
        save_json(
            &Metrics {
                dataset: config.data.dataset.clone(),
                train_images: data.train.len(),
                steps: config.train.steps,
                batch_size: config.train.batch_size,
                parameters: model.num_params(),
                latent_shape: latent,
                compression: (channels * size * size) as f64
                    / latent.iter().product::<usize>() as f64,
                scaling_factor,
                test_images: n,
                reconstruction_l1: l1,
                reconstruction_mse: mse,
                psnr_db: 10.0 * (255.0f64.powi(2) / mse_pixels).log10(),
                figures: figures.clone(),
            },
            &dir.join("metrics.json"),
        )?;
        eprintln!(
            "scaling factor {scaling_factor:.5}; test reconstructions L1 {l1:.4}, PSNR {:.2} dB",
            10.0 * (255.0f64.powi(2) / mse_pixels).log10()
        );
        Ok(())
    }

    fn sample(_: &SampleArgs, dir: &Path, _: Option<&RunConfig>) -> Result<()> {
        bail!(
            "{} is an autoencoder: it draws no samples. `diffuse encode --vae {0}` / `diffuse decode --vae {0}` run it, and `diffuse train --family latent --vae {0}` trains diffusion in its latent space",
            dir.display()
        )
    }

    fn nll(_: &EvalArgs, dir: &Path, _: &RunConfig) -> Result<()> {
        bail!(
            "{} is an autoencoder: its loss is a reconstruction error, not a likelihood (metrics.json has its errors)",
            dir.display()
        )
    }
}
