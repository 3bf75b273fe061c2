//! `diffuse eval --run DIR --samples FILE.npy`: the sliced Wasserstein distance of a 2-D run's
//! samples (data units, as `diffuse sample` writes them) to the data, next to its floor at the
//! same count: the distance between two independent draws of the data. At 5,000 points a good
//! model sits at that floor, so compare at 20,000 or more.
//!
//! Image runs: the distances are taken between 4x4-average-pooled images (MNIST: 7x7 = 49
//! features per image; CIFAR-10: 8x8x3 = 192), the sliced Wasserstein distance and the Fréchet
//! distance of Gaussian fits (FID's formula on pooled pixels instead of Inception features: a
//! crude stand-in for FID that needs no network);
//! samples are rounded to 8 bits first, as saved images are. The reference is a random subset of
//! the test split (as many images as samples), the floor the distance between a random subset of
//! the training images and that reference.
//!
//! A single distance between two clouds of 20,000 points is a noisy figure: between pairs of
//! fresh swiss-roll draws its standard deviation is about 30% of its mean (30 pairs: 0.072,
//! standard error 0.004), because a 2-D cloud's projections all share its few low-frequency
//! fluctuations. So points are compared in chunks of at most 20,000 samples (samples past the
//! last whole chunk are left out), each against its own reference, and the floor is the mean
//! over at least `FLOOR_PAIRS` pairs of data draws of the chunk size; both are reported with
//! their standard errors, which are themselves rough for a few chunks. Built-in sets are drawn
//! afresh for every reference and pair (seeded by `--seed`); a run on a file compares every
//! chunk with its held-out split, and takes the floor between that split and disjoint slices of
//! its training points of the same size (as many as there are, at most `FLOOR_PAIRS`; the
//! held-out count caps the chunk size). A file's distances all share that one held-out split,
//! so its standard errors leave out the split's own variation.

use std::path::Path;

use anyhow::{Result, bail};
use diffuse_data::images::{to_model_space, to_pixel};
use diffuse_data::{ToyDataset, read_npy};
use diffuse_eval::frechet::frechet_distance;
use diffuse_eval::metrics::{mean_and_standard_error, sliced_wasserstein};
use diffuse_train::checkpoint::save_json;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::config::RunConfig;

/// Random directions per distance (as `train`'s metric).
const PROJECTIONS: usize = 256;
/// Most samples in one compared chunk: the and the experiments' count.
const CHUNK: usize = 20_000;
/// Fewest data-vs-data pairs the floor is averaged over.
const FLOOR_PAIRS: usize = 30;

#[derive(Serialize)]
pub struct Quality {
    /// Samples compared: `chunks` chunks of `reference` points.
    pub samples: usize,
    pub reference: usize,
    pub projections: usize,
    /// Points: the mean over the chunks of each chunk's distance to its reference.
    pub sliced_wasserstein: f64,
    /// Its standard error over the chunks (points, two chunks or more).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sliced_wasserstein_se: Option<f64>,
    pub chunks: usize,
    /// The same distance between two independent draws of the data (points: the mean over
    /// `floor_pairs` pairs).
    pub data_vs_data: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_vs_data_se: Option<f64>,
    pub floor_pairs: usize,
    /// Images: the Fréchet distance between Gaussian fits of the pooled features (FID's formula
    /// on 4x4-pooled pixels), and the same between training and test images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frechet: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frechet_data_vs_data: Option<f64>,
}

/// The k-th run of `chunk` rows of a row-major cloud `dim` wide.
fn rows(cloud: &[f32], dim: usize, k: usize, chunk: usize) -> &[f32] {
    &cloud[k * chunk * dim..(k + 1) * chunk * dim]
}

pub fn run(run_dir: &Path, file: &Path, seed: u64) -> Result<()> {
    if crate::kinds::KindName::of(run_dir)? == crate::kinds::KindName::Images {
        return images(run_dir, file, seed);
    }
    let config = RunConfig::load_run(run_dir)?;
    let data_dim = config.mlp()?.data_dim;
    let arr = read_npy(file)?;
    if arr.shape.len() != 2 || arr.shape[1] != data_dim || arr.shape[0] < 2 {
        bail!(
            "{}: expected samples of shape [n >= 2, {data_dim}], found {:?}",
            file.display(),
            arr.shape
        );
    }
    if let Some(v) = arr.data.iter().find(|v| !v.is_finite()) {
        bail!("{}: holds {v}; samples must be finite", file.display());
    }
    let dim = arr.shape[1];
    let sw = |a: &[f32], b: &[f32]| {
        sliced_wasserstein(
            a,
            b,
            dim,
            PROJECTIONS,
            &mut ChaCha8Rng::seed_from_u64(seed ^ 0x5EED),
        )
    };
    // Each chunk's distance to its reference, and the floor's pairs, at the chunk size.
    let (chunk, distances, floors): (usize, Vec<f64>, Vec<f64>) = match &config.data.path {
        None => {
            let set = ToyDataset::from_name(&config.data.dataset)?;
            let chunk = arr.shape[0].min(CHUNK);
            let chunks = arr.shape[0] / chunk;
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5A3D);
            let distances = (0..chunks)
                .map(|k| {
                    sw(
                        rows(&arr.data, dim, k, chunk),
                        &set.sample(chunk, &mut rng).data,
                    )
                })
                .collect();
            let floors = (0..chunks.max(FLOOR_PAIRS))
                .map(|_| {
                    let a = set.sample(chunk, &mut rng);
                    sw(&a.data, &set.sample(chunk, &mut rng).data)
                })
                .collect();
            (chunk, distances, floors)
        }
        Some(_) => {
            let data = crate::kinds::points::load_points(&config)?;
            let held_out = &data.held_out.data;
            let chunk = arr.shape[0].min(data.held_out.len()).min(data.train.len());
            let distances = (0..arr.shape[0] / chunk)
                .map(|k| sw(rows(&arr.data, dim, k, chunk), held_out))
                .collect();
            let floors = (0..(data.train.len() / chunk).min(FLOOR_PAIRS))
                .map(|k| sw(rows(&data.train.data, dim, k, chunk), held_out))
                .collect();
            (chunk, distances, floors)
        }
    };
    let ((sliced_wasserstein, sliced_wasserstein_se), (data_vs_data, data_vs_data_se)) = (
        mean_and_standard_error(&distances),
        mean_and_standard_error(&floors),
    );
    let q = Quality {
        samples: chunk * distances.len(),
        reference: chunk,
        projections: PROJECTIONS,
        sliced_wasserstein,
        sliced_wasserstein_se,
        chunks: distances.len(),
        data_vs_data,
        data_vs_data_se,
        floor_pairs: floors.len(),
        frechet: None,
        frechet_data_vs_data: None,
    };
    write(q, file)
}

fn write(q: Quality, file: &Path) -> Result<()> {
    let pm = |se: Option<f64>| se.map(|e| format!(" ± {e:.4}")).unwrap_or_default();
    let ratio = q.sliced_wasserstein / q.data_vs_data;
    // The ratio's standard error to first order (the two means are independent).
    let ratio_se = match (q.sliced_wasserstein_se, q.data_vs_data_se) {
        (s, Some(f)) => Some(
            ratio
                * ((s.unwrap_or(0.0) / q.sliced_wasserstein).powi(2)
                    + (f / q.data_vs_data).powi(2))
                .sqrt(),
        ),
        _ => None,
    };
    println!(
        "sliced Wasserstein to the data: samples {:.4}{} ({} x {} samples), data vs data {:.4}{} ({} pairs); ratio {:.2}{}",
        q.sliced_wasserstein,
        pm(q.sliced_wasserstein_se),
        q.chunks,
        q.reference,
        q.data_vs_data,
        pm(q.data_vs_data_se),
        q.floor_pairs,
        ratio,
        ratio_se.map(|e| format!(" ± {e:.2}")).unwrap_or_default(),
    );
    if let (Some(f), Some(floor)) = (q.frechet, q.frechet_data_vs_data) {
        println!("Fréchet distance of pooled features: samples {f:.4}, data vs data {floor:.4}");
    }
    let out = file.with_extension("sw.json");
    save_json(&q, &out)?;
    println!("wrote {}", out.display());
    Ok(())
}

/// Side of the pooling window for image features.
const POOL: usize = 4;

/// [n, c, h, w] model-space images to [n, c (h / POOL) (w / POOL)] block means.
fn pooled(images: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    let (ph, pw) = (h / POOL, w / POOL);
    let mut out = Vec::with_capacity(n * c * ph * pw);
    for img in images.chunks_exact(c * h * w).take(n) {
        for plane in img.chunks_exact(h * w) {
            for by in 0..ph {
                for bx in 0..pw {
                    let mut sum = 0.0;
                    for y in by * POOL..(by + 1) * POOL {
                        sum += plane[y * w + bx * POOL..y * w + (bx + 1) * POOL]
                            .iter()
                            .sum::<f32>();
                    }
                    out.push(sum / (POOL * POOL) as f32);
                }
            }
        }
    }
    out
}

fn images(run_dir: &Path, file: &Path, seed: u64) -> Result<()> {
    let config = crate::config::RunConfig::load_run(run_dir)?;
    let arr = read_npy(file)?;
    let test = crate::kinds::images::load_images(&config, diffuse_data::Split::Test)?;
    let train = crate::kinds::images::load_images(&config, diffuse_data::Split::Train)?;
    let [_, c, h, w] = test.shape();
    if arr.shape.len() != 4 || arr.shape[1..] != [c, h, w] || arr.shape[0] < 2 {
        bail!(
            "{}: expected samples of shape [n >= 2, {c}, {h}, {w}], found {:?}",
            file.display(),
            arr.shape
        );
    }
    if let Some(v) = arr.data.iter().find(|v| !v.is_finite()) {
        bail!("{}: holds {v}; samples must be finite", file.display());
    }
    let n = arr.shape[0];
    let m = n.min(test.len()).min(train.len());
    // Random subsets (seeded): MNIST's files are ordered by writer population (the test set's
    // first half is from one, its second from another), so leading slices differ in style.
    let size = c * h * w;
    let subset = |pixels: &[u8], count: usize, salt: u64| -> Vec<f32> {
        let mut idx: Vec<usize> = (0..pixels.len() / size).collect();
        idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ salt));
        idx[..m]
            .iter()
            .flat_map(|&i| {
                pixels[i * size..(i + 1) * size]
                    .iter()
                    .map(|&v| to_model_space(v))
            })
            .take(count * size)
            .collect()
    };
    let samples: Vec<f32> = arr
        .data
        .iter()
        .map(|&v| to_model_space(to_pixel(v)))
        .collect();
    let dim = c * (h / POOL) * (w / POOL);
    let (s, t, r) = (
        pooled(&samples, [n, c, h, w]),
        pooled(&subset(&test.pixels, m, 0x7E57), [m, c, h, w]),
        pooled(&subset(&train.pixels, m, 0x7BA1), [m, c, h, w]),
    );
    let sw = |a: &[f32], b: &[f32]| {
        sliced_wasserstein(
            a,
            b,
            dim,
            PROJECTIONS,
            &mut ChaCha8Rng::seed_from_u64(seed ^ 0x5EED),
        )
    };
    write(
        Quality {
            samples: n,
            reference: m,
            projections: PROJECTIONS,
            sliced_wasserstein: sw(&s, &t),
            sliced_wasserstein_se: None,
            chunks: 1,
            data_vs_data: sw(&r, &t),
            data_vs_data_se: None,
            floor_pairs: 1,
            frechet: Some(frechet_distance(&s, &t, dim)),
            frechet_data_vs_data: Some(frechet_distance(&r, &t, dim)),
        },
        file,
    )
}
