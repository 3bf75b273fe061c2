//! Rough memory estimates of a run, checked against what the machine has before anything is
//! allocated, so an oversized config is a clear error rather than an abort after gigabytes.
//!
//! The estimates count float32 values: the model is its parameters four times over while
//! training (weights, gradients, Adam's two moments) plus the EMA copy, and the activations are
//! those autodiff keeps for the backward pass. They aim at the right order of magnitude, not the
//! byte.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use diffuse_nn::diffusers::Pipeline;
use diffuse_nn::{MlpConfig, UnetConfig};

const F32: f64 = 4.0;
/// Tensors kept per hidden layer of the MLP for the backward pass (linear out, SiLU out, grads).
const MLP_TENSORS_PER_LAYER: f64 = 6.0;
/// Tensors of one resolution's width kept per U-Net level (norms, SiLUs, convolutions, skips).
const UNET_TENSORS_PER_LEVEL: f64 = 30.0;

/// MemAvailable from /proc/meminfo, in bytes; `None` where it cannot be read.
fn available() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

fn gib(bytes: f64) -> String {
    format!("{:.1} GiB", bytes / f64::from(1u32 << 30))
}

/// Refuses `what` when its estimate exceeds the memory available now.
fn check(what: &str, params: f64, activations: f64, advice: &str) -> Result<()> {
    let total = params + activations;
    let Some(free) = available() else {
        return Ok(());
    };
    if total > free {
        bail!(
            "{what} needs about {} (model {}, activations {}), more than the {} this machine has available; {advice}",
            gib(total),
            gib(params),
            gib(activations),
            gib(free)
        );
    }
    Ok(())
}

fn mlp_params(m: &MlpConfig) -> f64 {
    let (h, layers) = (m.hidden_width as f64, m.hidden_layers as f64);
    let input = (m.data_dim * (1 + m.input_embed_dim) + m.time_embed_dim) as f64;
    input * h + (layers - 1.0).max(0.0) * h * h + h * 2.0 * m.data_dim as f64
}

/// Training an MLP at `batch`.
pub fn check_mlp_training(m: &MlpConfig, batch: usize) -> Result<()> {
    let params = mlp_params(m) * 5.0 * F32;
    let width = (m.hidden_width * m.hidden_layers) as f64 * MLP_TENSORS_PER_LAYER;
    check(
        "training this MLP",
        params,
        batch as f64 * width * F32,
        "lower model.hidden_width, model.hidden_layers or train.batch_size",
    )
}

/// Sampling `n` points from an MLP in one batch (no autodiff).
pub fn check_mlp_sampling(m: &MlpConfig, n: usize) -> Result<()> {
    let per_point = (m.hidden_width as f64 * 3.0) + 8.0 * m.data_dim as f64;
    check(
        &format!("sampling {n} points"),
        mlp_params(m) * F32,
        n as f64 * per_point * F32,
        "draw fewer points (sample.n or --n)",
    )
}

fn unet_params(u: &UnetConfig) -> f64 {
    let layers = u.layers_per_block as f64;
    let convs: f64 = u
        .block_out_channels
        .iter()
        .map(|&c| 9.0 * (c * c) as f64 * (5.0 * layers + 3.0))
        .sum();
    let last = *u.block_out_channels.last().unwrap_or(&0) as f64;
    convs + 40.0 * last * last
}

/// Activations per image at the U-Net's resolutions.
fn unet_activations(u: &UnetConfig, size: usize) -> f64 {
    u.block_out_channels
        .iter()
        .enumerate()
        .map(|(level, &c)| {
            let side = (size >> level).max(1) as f64;
            c as f64 * side * side
        })
        .sum()
}

/// Training a U-Net at `batch` on `size` x `size` images.
pub fn check_unet_training(u: &UnetConfig, size: usize, batch: usize) -> Result<()> {
    check(
        "training this U-Net",
        unet_params(u) * 5.0 * F32,
        batch as f64 * unet_activations(u, size) * UNET_TENSORS_PER_LEVEL * F32,
        "lower train.batch_size or unet.block_out_channels",
    )
}

/// Loading a diffusers pipeline's U-Net (its `unet/config.json`), before any weight is built.
pub fn load_pipeline(dir: &Path, device: &Device) -> Result<Pipeline> {
    let config_path = dir.join("unet").join("config.json");
    if let Ok(text) = std::fs::read_to_string(&config_path)
        && let Ok(config) = UnetConfig::from_json(&text)
    {
        check(
            &format!("loading the U-Net of {}", dir.display()),
            unet_params(&config) * 2.0 * F32,
            0.0,
            "this machine cannot hold the model",
        )?;
    }
    Pipeline::from_dir(dir, device)
        .with_context(|| format!("cannot load the pipeline in {}", dir.display()))
}

/// Sampling `n` images in one batch (no autodiff).
pub fn check_unet_sampling(u: &UnetConfig, size: usize, n: usize) -> Result<()> {
    check(
        &format!("sampling {n} images"),
        unet_params(u) * F32,
        n as f64 * unet_activations(u, size) * 4.0 * F32,
        "draw fewer images (sample.n or --n)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_configs_are_refused_with_the_estimate() {
        let m = MlpConfig {
            hidden_width: 30_000,
            ..Default::default()
        };
        let err = check_mlp_training(&m, 100_000_000).unwrap_err().to_string();
        assert!(
            err.contains("needs about") && err.contains("hidden_width"),
            "{err}"
        );
        let err = check_mlp_sampling(&MlpConfig::default(), 100_000_000_000)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sampling 100000000000 points"), "{err}");
        // The defaults fit.
        check_mlp_training(&MlpConfig::default(), 256).unwrap();
        check_mlp_sampling(&MlpConfig::default(), 2000).unwrap();
    }
}
