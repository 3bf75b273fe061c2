//! An autoencoder run's pictures: reconstructions beside their inputs, the latent channels as
//! images, and decoded straight lines between two images' latents.

use std::path::Path;

use anyhow::Result;
use burn::tensor::{Device, Tensor};
use diffuse_data::ImageSet;
use diffuse_nn::autoencoder::{Autoencoder, AutoencoderConfig};

use crate::kinds::images::{first_images, grid, pixels};

/// Test images in the reconstruction picture (two rows of eight: input, reconstruction).
const RECONSTRUCTED: usize = 32;
/// Test images whose latents are shown.
const SHOWN_LATENTS: usize = 8;
/// Pairs of test images interpolated between, and the points on each line.
const PAIRS: usize = 4;
const POINTS: usize = 9;

pub fn draw(
    dir: &Path,
    model: &Autoencoder,
    config: &AutoencoderConfig,
    test: &ImageSet,
    device: &Device,
) -> Result<()> {
    reconstructions(dir, model, test, device)?;
    latents(dir, model, config, test, device)?;
    interpolation(dir, model, test, device)
}

/// Blocks of eight test images above their reconstructions (decoded posterior means).
fn reconstructions(
    dir: &Path,
    model: &Autoencoder,
    test: &ImageSet,
    device: &Device,
) -> Result<()> {
    let x = first_images(test, RECONSTRUCTED, device);
    let [n, c, h, w] = x.dims();
    let x_hat = model.decode(model.encode(x.clone()).mean);
    let (a, b) = (pixels(x)?, pixels(x_hat)?);
    let per = c * h * w;
    let cols = 8.min(n);
    let mut ordered = Vec::with_capacity(2 * n * per);
    for start in (0..n).step_by(cols) {
        let end = (start + cols).min(n);
        ordered.extend_from_slice(&a[start * per..end * per]);
        ordered.extend_from_slice(&b[start * per..end * per]);
        // A short last block keeps its columns aligned.
        let pad = (cols - (end - start)) * per;
        ordered.extend(std::iter::repeat_n(255u8, 2 * pad));
    }
    let rows = 2 * n.div_ceil(cols);
    grid(
        &dir.join("reconstructions.png"),
        "test images (odd rows) and their reconstructions (even rows)",
        &ordered,
        [rows * cols, c, h, w],
        cols,
    )
}

/// Row i: test image i, then each channel of its latents (times the scaling factor, so about
/// unit spread) as a gray image, -3 black to 3 white, upsampled to the image's side.
fn latents(
    dir: &Path,
    model: &Autoencoder,
    config: &AutoencoderConfig,
    test: &ImageSet,
    device: &Device,
) -> Result<()> {
    let x = first_images(test, SHOWN_LATENTS, device);
    let [n, c, h, w] = x.dims();
    let z = model
        .encode(x.clone())
        .mean
        .mul_scalar(config.coder.scaling_factor as f32 / 3.0);
    let [_, zc, zh, zw] = z.dims();
    let (fy, fx) = (h / zh.max(1), w / zw.max(1));
    // Nearest upsampling to the image's side; every channel as its own gray image.
    let up = z
        .reshape([n, zc, zh, 1, zw, 1])
        .repeat_dim(3, fy)
        .repeat_dim(5, fx)
        .reshape([n * zc, 1, zh * fy, zw * fx]);
    let gray = if c == 1 { up } else { up.repeat_dim(1, c) };
    let (images, channels) = (pixels(x)?, pixels(gray)?);
    let (per_image, per_channel) = (c * h * w, c * zh * fy * zw * fx);
    let mut ordered = Vec::with_capacity(n * (1 + zc) * per_image);
    for i in 0..n {
        ordered.extend_from_slice(&images[i * per_image..(i + 1) * per_image]);
        ordered.extend_from_slice(&channels[i * zc * per_channel..(i + 1) * zc * per_channel]);
    }
    grid(
        &dir.join("latents.png"),
        &format!("test images and their {zc} latent channels ({zh} x {zw}, scaled, -3 to 3)"),
        &ordered,
        [n * (1 + zc), c, h, w],
        1 + zc,
    )
}

/// Row p: image a_p, the decoded latents (1 - l) z_a + l z_b for 9 values of l from 0 to 1,
/// image b_p.
fn interpolation(dir: &Path, model: &Autoencoder, test: &ImageSet, device: &Device) -> Result<()> {
    let pairs = PAIRS.min(test.len() / 2);
    if pairs == 0 {
        return Ok(());
    }
    let x = first_images(test, 2 * pairs, device);
    let [_, c, h, w] = x.dims();
    let (a, b) = (x.clone().narrow(0, 0, pairs), x.narrow(0, pairs, pairs));
    let (z_a, z_b) = (model.encode(a.clone()).mean, model.encode(b.clone()).mean);
    let lines: Vec<Tensor<4>> = (0..POINTS)
        .map(|k| {
            let l = k as f32 / (POINTS - 1) as f32;
            z_a.clone().mul_scalar(1.0 - l) + z_b.clone().mul_scalar(l)
        })
        .collect();
    let decoded = pixels(model.decode(Tensor::cat(lines, 0)))?;
    let (a, b) = (pixels(a)?, pixels(b)?);
    let per = c * h * w;
    let mut ordered = Vec::with_capacity(pairs * (POINTS + 2) * per);
    for p in 0..pairs {
        ordered.extend_from_slice(&a[p * per..(p + 1) * per]);
        for k in 0..POINTS {
            let i = k * pairs + p;
            ordered.extend_from_slice(&decoded[i * per..(i + 1) * per]);
        }
        ordered.extend_from_slice(&b[p * per..(p + 1) * per]);
    }
    grid(
        &dir.join("interpolation.png"),
        "interpolation in latent space: image a, decoded (1 - l) z_a + l z_b for l = 0..1, image b",
        &ordered,
        [pairs * (POINTS + 2), c, h, w],
        POINTS + 2,
    )
}
