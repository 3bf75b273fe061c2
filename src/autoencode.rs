//! `diffuse encode` and `diffuse decode`: an autoencoder's latents of images, and images of
//! latents, on `.npy` arrays [N, C, H, W] in diffusers' conventions (images in [-1, 1]; no scaling
//! factor applied: as `vae.encode(x)` and `vae.decode(z).sample`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use clap::Args;
use diffuse_data::{read_npy, write_npy};
use diffuse_nn::autoencoder::{Autoencoder, AutoencoderConfig};

use crate::run_files::check_output;

#[derive(Args, Debug)]
pub struct EncodeArgs {
    /// The autoencoder: a diffusers AutoencoderKL or VQModel folder (config.json and
    /// diffusion_pytorch_model.safetensors), or a folder holding one as vqvae/ (an LDMPipeline
    /// folder, a latent run) or vae/ (an autoencoder run).
    #[arg(long)]
    pub vae: PathBuf,
    /// Images, float32 or float64 [N, C, H, W] in [-1, 1]; H and W divisible by 2^(levels - 1).
    #[arg(long = "in")]
    pub input: PathBuf,
    /// The latents: an AutoencoderKL's posterior mean, a VQModel's latents before the codebook.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the posterior's log-variance here (AutoencoderKL only).
    #[arg(long)]
    pub logvar: Option<PathBuf>,
    /// Images through the network at once.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
}

#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// The autoencoder, as for `encode`.
    #[arg(long)]
    pub vae: PathBuf,
    /// Latents, float32 or float64 [N, C, h, w] (C: latent_channels, or a VQModel's vq_embed_dim).
    #[arg(long = "in")]
    pub input: PathBuf,
    /// The decoder's output [N, out_channels, h f, w f], not clamped.
    #[arg(long)]
    pub out: PathBuf,
    /// Latents through the network at once.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
}

/// The folder that holds the autoencoder's `config.json`: `dir` itself, or its `vqvae/` or `vae/`.
pub fn autoencoder_dir(dir: &Path) -> Result<PathBuf> {
    for candidate in [dir.to_path_buf(), dir.join("vqvae"), dir.join("vae")] {
        if candidate.join("config.json").is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "{}: no autoencoder here; expected config.json and diffusion_pytorch_model.safetensors \
         (a diffusers AutoencoderKL or VQModel folder), or such a folder as vqvae/ or vae/",
        dir.display()
    )
}

/// Loads the autoencoder of `dir` (see [`autoencoder_dir`]), its size checked first.
pub fn load(dir: &Path, device: &Device) -> Result<(AutoencoderConfig, Autoencoder)> {
    let dir = autoencoder_dir(dir)?;
    Autoencoder::from_diffusers_dir(&dir, device)
        .with_context(|| format!("cannot load the autoencoder in {}", dir.display()))
}

/// Reads a finite [N, C, H, W] array with `channels` channels and sides divisible by `factor`.
fn read_input(
    path: &Path,
    channels: usize,
    factor: usize,
    what: &str,
) -> Result<(Vec<f32>, [usize; 4])> {
    let array = read_npy(path).with_context(|| format!("cannot read {}", path.display()))?;
    let shape: [usize; 4] = match array.shape.as_slice() {
        &[n, c, h, w] if c == channels && n > 0 && h > 0 && w > 0 => [n, c, h, w],
        s => bail!(
            "{}: {what} must have shape [N, {channels}, H, W] for this autoencoder, found {s:?}",
            path.display()
        ),
    };
    if !shape[2].is_multiple_of(factor) || !shape[3].is_multiple_of(factor) {
        bail!(
            "{}: H and W ({} x {}) must be divisible by {factor} for this autoencoder",
            path.display(),
            shape[2],
            shape[3]
        );
    }
    if let Some(i) = array.data.iter().position(|v| !v.is_finite()) {
        bail!(
            "{}: value {} at flat index {i} is not finite",
            path.display(),
            array.data[i]
        );
    }
    Ok((array.data, shape))
}

/// Runs `f` over batches of `data` ([n, ...] with `per` values each), concatenating each output.
fn batched<const K: usize>(
    data: &[f32],
    shape: [usize; 4],
    batch: usize,
    what: &str,
    device: &Device,
    mut f: impl FnMut(Tensor<4>) -> [Tensor<4>; K],
) -> Result<Vec<(Vec<f32>, [usize; 4])>> {
    if batch == 0 {
        bail!("--batch-size must be at least 1");
    }
    let [n, c, h, w] = shape;
    let per = c * h * w;
    let pb = crate::progress::bar(n, what);
    let mut outs: Vec<(Vec<f32>, [usize; 4])> = vec![(Vec::new(), [0; 4]); K];
    for start in (0..n).step_by(batch) {
        let b = batch.min(n - start);
        let x = Tensor::<4>::from_data(
            TensorData::new(data[start * per..(start + b) * per].to_vec(), [b, c, h, w]),
            device,
        );
        for (slot, y) in outs.iter_mut().zip(f(x)) {
            let [_, yc, yh, yw] = y.dims();
            slot.1 = [n, yc, yh, yw];
            slot.0.extend(
                y.into_data()
                    .try_to_vec::<f32>()
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?,
            );
        }
        pb.set_position((start + b) as u64);
    }
    pb.finish_and_clear();
    if let Some(i) = outs
        .iter()
        .flat_map(|o| o.0.iter())
        .position(|v| !v.is_finite())
    {
        bail!("the autoencoder's output is not finite (flat index {i}); nothing was written");
    }
    Ok(outs)
}

pub fn run_encode(args: EncodeArgs) -> Result<()> {
    check_output("--out", &args.out, &[&args.input], &[&args.vae])?;
    if let Some(lv) = &args.logvar {
        check_output("--logvar", lv, &[&args.input], &[&args.vae])?;
        if lv == &args.out {
            bail!("--logvar and --out name the same file; give each its own");
        }
    }
    let device = crate::device::device();
    let (config, model) = load(&args.vae, &device)?;
    if args.logvar.is_some() && model.quantizer().is_some() {
        bail!("--logvar: a VQModel has no posterior variance (its latents are deterministic)");
    }
    let (data, shape) = read_input(
        &args.input,
        config.coder.in_channels,
        config.downsampling(),
        "images",
    )?;
    crate::memory::check_autoencoder(&config, shape[2], shape[3], args.batch_size.min(shape[0]))?;
    let outs = batched(&data, shape, args.batch_size, "encoding", &device, |x| {
        let e = model.encode(x);
        let logvar = e.logvar.unwrap_or_else(|| e.mean.zeros_like());
        [e.mean, logvar]
    })?;
    let (mean, shape) = &outs[0];
    write_npy(&args.out, shape, mean)?;
    if let Some(path) = &args.logvar {
        write_npy(path, &outs[1].1, &outs[1].0)?;
    }
    eprintln!(
        "wrote latents {shape:?} of {} to {}",
        config.class_name(),
        args.out.display()
    );
    Ok(())
}

pub fn run_decode(args: DecodeArgs) -> Result<()> {
    check_output("--out", &args.out, &[&args.input], &[&args.vae])?;
    let device = crate::device::device();
    let (config, model) = load(&args.vae, &device)?;
    let (data, shape) = read_input(&args.input, config.diffusion_channels(), 1, "latents")?;
    let factor = config.downsampling();
    crate::memory::check_autoencoder(
        &config,
        shape[2] * factor,
        shape[3] * factor,
        args.batch_size.min(shape[0]),
    )?;
    let outs = batched(&data, shape, args.batch_size, "decoding", &device, |z| {
        [model.decode(z)]
    })?;
    let (x, shape) = &outs[0];
    write_npy(&args.out, shape, x)?;
    eprintln!("wrote images {shape:?} to {}", args.out.display());
    Ok(())
}
