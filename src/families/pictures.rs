//! Pictures that every family with a noise process draws the same way (NCSN, the score SDEs):
//! the data perturbed at several noise levels, the learned score field over 2-D data, and
//! image samples with their progress. A family says which levels and how it samples; these
//! draw.

use std::path::Path;

use anyhow::Result;
use burn::tensor::{Device, Tensor, TensorData};
use diffuse_core::coef::randn;
use diffuse_data::{Points as PointSet, write_npy};
use diffuse_eval::field::{FieldPanel, vector_fields};
use diffuse_eval::plots::{square_bounds, strip};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::kinds::images::{ImageData, first_images, grid, pixels};

/// Panels of the strips and rows of the image pictures.
pub const PANELS: usize = 10;
pub const ROWS: usize = 8;

/// `PANELS` indices of `count` steps or levels, from the first to the last.
pub fn shown(count: usize) -> Vec<usize> {
    (0..PANELS)
        .map(|k| k * (count.max(1) - 1) / (PANELS - 1))
        .collect()
}

/// A noise level drawn: x_t = mean x_0 + std z, with its label.
pub struct Perturbation {
    pub label: String,
    pub mean: f64,
    pub std: f64,
}

/// `forward.png` for points: up to 1,000 held-out points (model space) perturbed at each
/// level, one noise draw (seeded) for all.
pub fn points_forward(
    dir: &Path,
    title: &str,
    x0: &PointSet,
    seed: u64,
    levels: &[Perturbation],
    device: &Device,
) -> Result<()> {
    let n = x0.len().min(1000);
    let x0_t = Tensor::<2>::from_data(TensorData::new(x0.data[..n * 2].to_vec(), [n, 2]), device);
    let z = randn(&mut ChaCha8Rng::seed_from_u64(seed), [n, 2], device);
    let panels: Vec<(String, Vec<f32>)> = levels
        .iter()
        .map(|p| {
            let x = x0_t.clone().mul_scalar(p.mean as f32) + z.clone().mul_scalar(p.std as f32);
            (
                p.label.clone(),
                x.into_data().try_to_vec::<f32>().unwrap_or_default(),
            )
        })
        .collect();
    strip(&dir.join("forward.png"), title, &panels)?;
    Ok(())
}

/// Arrows per side of `score.png`'s grid.
const GRID: usize = 21;

/// The score of a 2-D model at one level of a picture.
pub type ScoreAt<'a> = Box<dyn FnMut(Tensor<2>) -> Result<Tensor<2>> + 'a>;

/// `score.png`: the score field on a 21 x 21 grid over the held-out points (model space), one
/// panel per (label, score), each panel's median arrow one grid cell long and none longer.
pub fn score_field(
    dir: &Path,
    title: &str,
    held_out: &PointSet,
    levels: Vec<(String, ScoreAt<'_>)>,
    device: &Device,
) -> Result<()> {
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
    let mut panels = Vec::new();
    for (label, mut score) in levels {
        let s: Vec<f32> = score(x.clone())?
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
            label,
            points,
            arrows,
        });
    }
    vector_fields(&dir.join("score.png"), title, &panels)?;
    Ok(())
}

/// `forward.png` for images: the first `ROWS` test images perturbed at each level (one noise
/// draw per image, seeded), a row per image.
pub fn images_forward(
    dir: &Path,
    title: &str,
    data: &ImageData,
    seed: u64,
    levels: &[Perturbation],
    device: &Device,
) -> Result<()> {
    let x0 = first_images(&data.test, ROWS, device);
    let shape: [usize; 4] = x0.dims();
    let z = randn(&mut ChaCha8Rng::seed_from_u64(seed), shape, device);
    let mut panels = Vec::new();
    for p in levels {
        let x = x0.clone().mul_scalar(p.mean as f32) + z.clone().mul_scalar(p.std as f32);
        panels.push(pixels(x)?);
    }
    let ordered = by_rows(&panels, shape[0], shape[1] * shape[2] * shape[3]);
    grid(
        &dir.join("forward.png"),
        title,
        &ordered,
        [shape[0] * panels.len(), shape[1], shape[2], shape[3]],
        panels.len(),
    )
}

/// Panels of `rows` images each, reordered so that row r holds image r of every panel.
fn by_rows(panels: &[Vec<u8>], rows: usize, per_image: usize) -> Vec<u8> {
    let mut ordered = Vec::with_capacity(rows * panels.len() * per_image);
    for r in 0..rows {
        for panel in panels {
            ordered.extend_from_slice(&panel[r * per_image..(r + 1) * per_image]);
        }
    }
    ordered
}

/// An image run's samples (model space) as `samples.npy` and a square-ish grid `samples.png`.
pub fn write_samples(dir: &Path, x: Tensor<4>, title: &str) -> Result<()> {
    let shape: [usize; 4] = x.dims();
    let values: Vec<f32> = x
        .clone()
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    write_npy(&dir.join("samples.npy"), &shape, &values)?;
    let cols = (shape[0] as f64).sqrt().ceil() as usize;
    grid(&dir.join("samples.png"), title, &pixels(x)?, shape, cols)?;
    Ok(())
}

/// Runs a sampler from a seeded standard-normal draw of `shape`, keeping the first `ROWS`
/// images at the steps in `show`; writes `samples.npy`, `samples.png` (titled
/// `samples_title`) and `progressive.png` (titled `progressive_title`).
#[allow(clippy::too_many_arguments)]
pub fn samples_and_progressive(
    dir: &Path,
    shape: [usize; 4],
    seed: u64,
    show: &[usize],
    sample: impl FnOnce(
        Tensor<4>,
        &mut ChaCha8Rng,
        &mut dyn FnMut(usize, &Tensor<4>),
    ) -> Result<Tensor<4>>,
    samples_title: &str,
    progressive_title: &str,
    device: &Device,
) -> Result<()> {
    let [n, c, h, w] = shape;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let z = randn(&mut rng, shape, device);
    let rows = ROWS.min(n);
    let mut progressive: Vec<Vec<u8>> = Vec::new();
    let mut observe = |i: usize, x: &Tensor<4>| {
        if show.contains(&i) {
            progressive.push(pixels(x.clone().narrow(0, 0, rows)).unwrap_or_default());
        }
    };
    let x = sample(z, &mut rng, &mut observe)?;
    write_samples(dir, x, samples_title)?;
    let ordered = by_rows(&progressive, rows, c * h * w);
    grid(
        &dir.join("progressive.png"),
        progressive_title,
        &ordered,
        [rows * progressive.len(), c, h, w],
        progressive.len(),
    )
}
