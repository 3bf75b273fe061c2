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
use diffuse_diffusers::Pipeline;
use diffuse_nn::{AutoencoderConfig, MlpConfig, UnetConfig};

const F32: f64 = 4.0;
/// Tensors kept per hidden layer of the MLP for the backward pass (linear out, SiLU out, grads).
const MLP_TENSORS_PER_LAYER: f64 = 6.0;
/// Tensors of one resolution's width kept per U-Net level (norms, SiLUs, convolutions, skips).
const UNET_TENSORS_PER_LEVEL: f64 = 30.0;

/// MemAvailable from /proc/meminfo, in bytes; `None` where it cannot be read.
fn available() -> Option<f64> {
    diffuse_fs::available_memory().map(|b| b as f64)
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

/// Drawing `n` examples of `data_dim` coordinates from a latent-variable model whose MLPs are
/// `hidden` wide: the output's mean and scale and a few hidden layers per example.
pub fn check_latent_sampling(data_dim: usize, hidden: usize, n: usize) -> Result<()> {
    let per_example = 4.0 * data_dim as f64 + 3.0 * hidden as f64;
    check(
        &format!("drawing {n} examples"),
        0.0,
        n as f64 * per_example * F32,
        "draw fewer (sample.n or --n)",
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

/// What one image holds in a U-Net's forward pass at h x w, in float32 values: every level's
/// feature maps, and the attention's score matrices (heads x tokens x tokens, the scores and
/// their softmax), which grow with the square of the pixels and dominate for large inputs.
struct Activations {
    maps: f64,
    attention: f64,
}

fn unet_activations(u: &UnetConfig, h: usize, w: usize) -> Activations {
    use diffuse_nn::unet::{DownBlockType, UpBlockType};
    let n = u.block_out_channels.len();
    let mut a = Activations {
        maps: 0.0,
        attention: 0.0,
    };
    for (level, &c) in u.block_out_channels.iter().enumerate() {
        let tokens = ((h >> level).max(1) * (w >> level).max(1)) as f64;
        a.maps += c as f64 * tokens;
        // Up block i works at level n - 1 - i; the middle block at the lowest level.
        let attends = u.down_block_types.get(level) == Some(&DownBlockType::AttnDownBlock2D)
            || u.up_block_types.get(n - 1 - level) == Some(&UpBlockType::AttnUpBlock2D)
            || (level + 1 == n && u.add_attention);
        if attends {
            let heads = (c / u.attention_head_dim.unwrap_or(c).max(1)).max(1) as f64;
            a.attention += 2.0 * heads * tokens * tokens;
        }
    }
    a
}

/// Training a U-Net at `batch` on `size` x `size` images.
pub fn check_unet_training(u: &UnetConfig, size: usize, batch: usize) -> Result<()> {
    let a = unet_activations(u, size, size);
    check(
        "training this U-Net",
        unet_params(u) * 5.0 * F32,
        batch as f64 * (a.maps * UNET_TENSORS_PER_LEVEL + a.attention * 2.0) * F32,
        "lower train.batch_size or unet.block_out_channels",
    )
}

/// Loading a diffusers pipeline's U-Net (its `unet/config.json`), before any weight is built.
pub fn load_pipeline(dir: &Path, device: &Device) -> Result<Pipeline> {
    let config_path = dir.join("unet").join("config.json");
    if let Ok(text) = diffuse_fs::read_to_string(&config_path, diffuse_fs::Limit::CONFIG)
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

/// Sampling `n` images of h x w in one batch (no autodiff): the U-Net's activations, and the
/// copies of x a solver keeps (RK45's seven stages at most).
pub fn check_unet_sampling(u: &UnetConfig, h: usize, w: usize, n: usize) -> Result<()> {
    let a = unet_activations(u, h, w);
    let solver = 8.0 * (u.in_channels * h * w) as f64;
    check(
        &format!("sampling {n} images of {h} x {w}"),
        unet_params(u) * F32,
        n as f64 * (a.maps * 4.0 + a.attention + solver) * F32,
        "draw fewer or smaller images (sample.n, --n, or a smaller --init-noise)",
    )
}

/// Encoding or decoding `batch` images of h x w with an autoencoder (no autodiff): its
/// parameters, a few feature maps of each level alive at once, and the attention's score
/// matrices (one head, tokens x tokens) wherever it attends.
pub fn check_autoencoder(a: &AutoencoderConfig, h: usize, w: usize, batch: usize) -> Result<()> {
    let (params, per_image) = autoencoder_sizes(a, h, w);
    check(
        &format!("running the autoencoder on {batch} images of {h} x {w}"),
        params * F32,
        batch as f64 * per_image * F32,
        "pass a smaller --batch-size",
    )
}

/// Training an autoencoder at `batch` on h x w images: the parameters five times over, and
/// every level's maps kept for the backward pass, as a U-Net's.
pub fn check_autoencoder_training(
    a: &AutoencoderConfig,
    h: usize,
    w: usize,
    batch: usize,
) -> Result<()> {
    let (params, per_image) = autoencoder_sizes(a, h, w);
    check(
        "training this autoencoder",
        params * 5.0 * F32,
        batch as f64 * per_image * UNET_TENSORS_PER_LEVEL / 6.0 * 2.0 * F32,
        "lower train.batch_size or autoencoder.block_out_channels",
    )
}

/// An autoencoder's parameters and the float32 values one image holds in its forward pass.
fn autoencoder_sizes(a: &AutoencoderConfig, h: usize, w: usize) -> (f64, f64) {
    use diffuse_nn::autoencoder::{DecoderBlockType, EncoderBlockType};
    let c = &a.coder;
    let layers = c.layers_per_block as f64;
    let n = c.block_out_channels.len();
    let (mut params, mut maps, mut attention) = (0.0, 0.0, 0.0);
    for (level, &ch) in c.block_out_channels.iter().enumerate() {
        let ch = ch as f64;
        params += 9.0 * ch * ch * (4.0 * layers + 6.0);
        let tokens = ((h >> level).max(1) * (w >> level).max(1)) as f64;
        maps += ch * tokens;
        let attends = c.down_block_types.get(level)
            == Some(&EncoderBlockType::AttnDownEncoderBlock2D)
            || c.up_block_types.get(n - 1 - level) == Some(&DecoderBlockType::AttnUpDecoderBlock2D)
            || (level + 1 == n && c.mid_block_add_attention);
        if attends {
            attention = f64::max(attention, 2.0 * tokens * tokens);
        }
    }
    (params, maps * 6.0 + attention)
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
