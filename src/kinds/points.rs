//! Points: a built-in 2-D set or the user's file, split into training and held-out points and
//! standardized per dimension for training (the map is kept in the run config, and samples are
//! mapped back to the data's units).

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor};
use diffuse_data::{Points as PointSet, Standardizer};
use diffuse_train::random_batch;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use diffuse_data::write_npy;
use diffuse_eval::metrics::{gaussian_fit_2d, sample_gaussian_2d, sliced_wasserstein};
use diffuse_eval::plots::{DATA_COLOR, Layer, SAMPLE_COLOR, scatter};
use diffuse_nn::Mlp;
use diffuse_train::checkpoint::save_json;
use diffuse_train::{Checkpoint, TrainError};
use serde::Serialize;

use super::Kind;
use crate::args::SampleArgs;
use crate::config::{MIN_HELD_OUT, RunConfig, Source};
use crate::figures::TrainFigures;

/// The kind of data: points in two dimensions (their values are `diffuse_data::Points`).
pub struct PointKind;

/// Training and held-out points, in data space.
pub struct PointData {
    pub name: String,
    pub train: PointSet,
    pub held_out: PointSet,
}

/// A point run's data: drawn from its built-in set, or its file split at random, both from the
/// run's seed, so that evaluation finds the same held-out points again.
pub fn load_points(config: &RunConfig) -> Result<PointData> {
    let d = &config.data;
    let model = config.mlp()?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.train.seed ^ 0xDA7A);
    match d.source()? {
        Source::File(path) => {
            let points = diffuse_data::load_points(path, model.data_dim)?;
            if points.len() < 5 * MIN_HELD_OUT {
                bail!(
                    "{} holds {} points; training needs at least {} (20% are held out for evaluation)",
                    path.display(),
                    points.len(),
                    5 * MIN_HELD_OUT
                );
            }
            let held = d.held_out().min(points.len() / 5);
            let (train, held_out) = points.split(held, &mut rng);
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok(PointData {
                name,
                train,
                held_out,
            })
        }
        Source::Toy(set) => Ok(PointData {
            name: set.name().to_string(),
            train: set.sample(d.train_points(), &mut rng),
            held_out: set.sample(d.held_out(), &mut rng),
        }),
        Source::Images(set) => bail!("{} is an image set, not points", set.name()),
    }
}

/// The run's standardizer (a point run's config always holds one once trained).
pub fn standardizer(config: &RunConfig) -> Result<Standardizer> {
    config
        .standardizer
        .clone()
        .context("config.json has no standardizer; was it written by diffuse train?")
}

/// Training points, standardized, beside the held-out ones.
pub struct TrainPoints {
    pub data: PointData,
    pub standardized: PointSet,
}

impl Kind<2> for PointKind {
    type Data = TrainPoints;
    const LOSS_EVERY: usize = 25;

    fn load(config: &mut RunConfig, fresh: bool) -> Result<TrainPoints> {
        let data = load_points(config)?;
        if fresh {
            config.standardizer = Some(match config.data.standardize {
                Some(false) => Standardizer::identity(data.train.dim),
                _ => Standardizer::fit(&data.train),
            });
        }
        let standardized = standardizer(config)?.forward(&data.train);
        Ok(TrainPoints { data, standardized })
    }

    fn batch(
        config: &RunConfig,
        data: &TrainPoints,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Tensor<2> {
        let z = &data.standardized;
        random_batch(&z.data, z.dim, config.train.batch_size, rng, device)
    }

    /// Every point of a 2-D set (the hull's diameter is O(n log n)); the first 20,000 in other
    /// dimensions, where every pair is visited.
    fn distance_rows(data: &TrainPoints) -> (Vec<f32>, usize) {
        let z = &data.standardized;
        let n = if z.dim == 2 {
            z.len()
        } else {
            z.len().min(20_000)
        };
        (z.data[..n * z.dim].to_vec(), z.dim)
    }

    fn describe(_: &RunConfig, data: &TrainPoints) -> String {
        format!(
            "{} ({} points, {} held out)",
            data.data.name,
            data.data.train.len(),
            data.data.held_out.len()
        )
    }
}

/// A [n, dim] tensor back to points in the data's own units.
pub fn to_points(x: Tensor<2>, standardizer: &Standardizer) -> Result<PointSet> {
    let dim = x.dims()[1];
    let data: Vec<f32> = x
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let points = standardizer.inverse(&PointSet::new(data, dim));
    if let Some(v) = points.data.iter().find(|v| !v.is_finite()) {
        bail!(
            "a sample is {v} in the data's units: the data's scale (std up to {:e}) overflows float32; rescale the data",
            standardizer.std.iter().fold(0.0f64, |m, s| m.max(*s))
        );
    }
    Ok(points)
}

/// The points a likelihood is evaluated on, in model space: the user's `data` file (in the
/// data's units) or the run's held-out split; and sum_d ln std_d of the run's standardization,
/// which turns a model-space NLL into one in the data's units (p_data(x) = p_model(z) / prod
/// std).
pub fn evaluation_points(config: &RunConfig, data: Option<&Path>) -> Result<(PointSet, f64)> {
    let standardizer = standardizer(config)?;
    let raw = match data {
        Some(path) => {
            let p = diffuse_data::load_points(path, config.mlp()?.data_dim)?;
            if let Some(v) = p.data.iter().find(|v| !v.is_finite()) {
                bail!("{}: holds {v}; points must be finite", path.display());
            }
            p
        }
        None => load_points(config)?.held_out,
    };
    let log_det: f64 = standardizer.std.iter().map(|s| s.ln()).sum();
    Ok((standardizer.forward(&raw), log_det))
}

/// The end of a 2-D run's report, whatever its family: `samples.png` (the samples over the
/// held-out points) and `metrics.json` (written last: the run is finished), with the sliced
/// Wasserstein distance of the samples to the held-out points next to its floor (two draws of
/// the data) and a Gaussian fitted to the data.
pub fn report_samples(
    dir: &Path,
    config: &RunConfig,
    data: &PointData,
    samples: &PointSet,
    figures: &TrainFigures,
) -> Result<()> {
    let metrics = quality(data, samples, config, figures, config.train.seed);
    scatter(
        &dir.join("samples.png"),
        &format!(
            "{}: {} samples (SW {:.3}; data vs data {:.3})",
            data.name,
            samples.len(),
            metrics.sw_samples,
            metrics.sw_data_vs_data
        ),
        &[
            Layer {
                label: "held-out data",
                points: &data.held_out.data,
                color: DATA_COLOR,
            },
            Layer {
                label: "samples",
                points: &samples.data,
                color: SAMPLE_COLOR,
            },
        ],
    )?;
    save_json(&metrics, &dir.join("metrics.json"))?;
    println!(
        "sliced Wasserstein to held-out points: samples {:.4}, data vs data {:.4} (ratio {:.2}), single Gaussian {:.4}",
        metrics.sw_samples,
        metrics.sw_data_vs_data,
        metrics.sw_samples / metrics.sw_data_vs_data,
        metrics.sw_gaussian_fit
    );
    Ok(())
}

#[derive(Serialize)]
struct Metrics {
    dataset: String,
    steps: usize,
    #[serde(flatten)]
    figures: TrainFigures,
    /// Sliced Wasserstein-1 (data units, 256 projections) to the held-out points.
    sw_samples: f64,
    /// The same for training points (as many as held-out): two independent draws of the data.
    sw_data_vs_data: f64,
    /// The same for a single Gaussian fitted to the training points.
    sw_gaussian_fit: f64,
}

fn quality(
    data: &PointData,
    samples: &PointSet,
    config: &RunConfig,
    figures: &TrainFigures,
    seed: u64,
) -> Metrics {
    let k = data.held_out.len().min(data.train.len());
    let reference = &data.train.data[..k * 2];
    let (mean, cov) = gaussian_fit_2d(&data.train.data);
    let gauss = sample_gaussian_2d(
        mean,
        cov,
        samples.len(),
        &mut ChaCha8Rng::seed_from_u64(seed + 3),
    );
    let sw = |pts: &[f32]| {
        sliced_wasserstein(
            pts,
            &data.held_out.data,
            2,
            256,
            &mut ChaCha8Rng::seed_from_u64(seed + 4),
        )
    };
    Metrics {
        dataset: data.name.clone(),
        steps: config.train.steps,
        figures: figures.clone(),
        sw_samples: sw(&samples.data),
        sw_data_vs_data: sw(reference),
        sw_gaussian_fit: sw(&gauss),
    }
}

/// Writes an MLP run's user-facing weights: `model.safetensors` (raw) and
/// `model_ema.safetensors` (what sampling uses: the EMA where kept).
pub fn save_mlp(dir: &Path, c: &Checkpoint<Mlp>) -> Result<(), TrainError> {
    super::save_weight_pair(dir, c)
}

/// Loads a point run's config and MLP weights (EMA, unless `ema` is false or the run keeps
/// none).
pub fn load_mlp(dir: &Path, ema: bool, device: &Device) -> Result<(RunConfig, Mlp)> {
    let config = RunConfig::load_run(dir)?;
    let model = super::load_weight_pair(dir, &config, ema, config.mlp()?.init(device)?)?;
    Ok((config, model))
}

/// Points in the data's units to `--out`, and a scatter plot to `--png`.
pub fn write_points(
    args: &SampleArgs,
    x: Tensor<2>,
    standardizer: &Standardizer,
    title: &str,
) -> Result<()> {
    let points = to_points(x, standardizer)?;
    write_npy(&args.out, &[points.len(), points.dim], &points.data)?;
    println!("wrote {} samples to {}", points.len(), args.out.display());
    if let Some(png) = &args.png {
        let layer = Layer {
            label: "samples",
            points: &points.data,
            color: SAMPLE_COLOR,
        };
        scatter(png, title, &[layer])?;
        println!("wrote {}", png.display());
    }
    Ok(())
}
