//! The autoencoders of latent diffusion with diffusers' architectures and parameter names:
//! `AutoencoderKL` (a diagonal Gaussian posterior, `quant_conv` / `post_quant_conv`) and
//! `VQModel` (a vector quantizer between `quant_conv` and `post_quant_conv`), over one
//! `Encoder` and `Decoder` built from the U-Net's blocks without a time embedding
//! (`DownEncoderBlock2D`, the attention mid block, `UpDecoderBlock2D`). Their `config.json` +
//! `diffusion_pytorch_model.safetensors` load unchanged.
//!
//! # Shapes
//! - `encode`: x [B, in_channels, H, W] -> latents [B, C, H / f, W / f] with f = 2^(levels - 1),
//!   C = `latent_channels` (KL: mean and log-variance) or `vq_embed_dim` (VQ: before the codebook)
//! - `decode`: latents [B, C, h, w] -> x [B, out_channels, h f, w f]
//!
//! No scaling factor is applied here (as diffusers' `vae.encode(x)` and `vae.decode(z)`).

mod config;

use std::path::Path;

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{Embedding, EmbeddingConfig, GroupNorm, PaddingConfig2d};
use burn::tensor::{Device, Int, Tensor};
use diffuse_core::autoencoder::{Autoencoding, Posterior};
use diffuse_kernels::conv::conv2d;
use diffuse_kernels::norm::group_norm_silu as normalize_silu;

pub use config::{
    AutoencoderConfig, Bottleneck, CoderConfig, DecoderBlockType, EncoderBlockType, KL_CLASS,
    KlFields, VQ_CLASS, VqFields,
};

use crate::error::NnError;
use crate::unet::blocks::{conv, conv3, group_norm};
use crate::unet::{Attention, BlockSettings, DownBlock, Downsample2D, MidBlock, ResnetBlock2D};
use crate::unet::{UpBlock, Upsample2D};

/// diffusers' autoencoder blocks use this group-norm epsilon throughout.
const EPS: f64 = 1e-6;

/// diffusers' `Encoder`: conv_in, down blocks (the last without a downsampler), the mid block,
/// norm -> SiLU -> conv_out.
#[derive(Module, Debug)]
pub struct Encoder {
    conv_in: Conv2d,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

/// diffusers' `Decoder`: conv_in, the mid block, up blocks of `layers_per_block + 1` resnets,
/// norm -> SiLU -> conv_out.
#[derive(Module, Debug)]
pub struct Decoder {
    conv_in: Conv2d,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

/// diffusers' `VectorQuantizer` (legacy loss, no index remapping): each latent vector replaced by
/// its nearest codebook entry.
#[derive(Module, Debug)]
pub struct VectorQuantizer {
    embedding: Embedding,
}

/// An `AutoencoderKL` (`quantize` absent) or a `VQModel`.
#[derive(Module, Debug)]
pub struct Autoencoder {
    encoder: Encoder,
    quant_conv: Option<Conv2d>,
    quantize: Option<VectorQuantizer>,
    post_quant_conv: Option<Conv2d>,
    decoder: Decoder,
}

/// What `encode` gives: a KL autoencoder's posterior mean and log-variance (clamped to
/// [-30, 20], as diffusers' `DiagonalGaussianDistribution`), or a VQ model's latents before
/// quantization (`logvar` absent).
pub struct Encoded {
    pub mean: Tensor<4>,
    pub logvar: Option<Tensor<4>>,
}

impl Encoded {
    /// One draw of the latents: mean + exp(logvar / 2) eps for a KL posterior, with `eps` of
    /// the latents' shape; a VQ model's latents as they are.
    pub fn draw(self, eps: impl FnOnce([usize; 4]) -> Tensor<4>) -> Tensor<4> {
        match self.logvar {
            Some(logvar) => {
                let eps = eps(self.mean.dims());
                diffuse_core::elbo::reparameterize(self.mean, logvar, eps)
            }
            None => self.mean,
        }
    }
}

/// A KL model's moments split into the mean and the log-variance clamped to [-30, 20].
fn split_moments(h: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
    let half = h.dims()[1] / 2;
    (
        h.clone().narrow(1, 0, half),
        h.narrow(1, half, half).clamp(-30.0, 20.0),
    )
}

fn mid_block(channels: usize, c: &CoderConfig, s: BlockSettings, device: &Device) -> MidBlock {
    let resnets = (0..2)
        .map(|_| ResnetBlock2D::new(channels, channels, s, 1.0, device))
        .collect();
    // One head as wide as the block (attention_head_dim = channels), group norm, eps 1e-6.
    let attentions = if c.mid_block_add_attention {
        vec![attention(channels, s, device)]
    } else {
        vec![]
    };
    MidBlock::new(resnets, attentions)
}

fn attention(channels: usize, s: BlockSettings, device: &Device) -> Attention {
    Attention::new(channels, channels, Some(s.groups), EPS, 1.0, device)
}

impl Encoder {
    fn new(c: &CoderConfig, out_channels: usize, device: &Device) -> Self {
        let ch = &c.block_out_channels;
        let s = settings(c);
        let mut out = ch[0];
        let down_blocks = c
            .down_block_types
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                let c_in = out;
                out = ch[i];
                let resnets = (0..c.layers_per_block)
                    .map(|j| {
                        ResnetBlock2D::new(if j == 0 { c_in } else { out }, out, s, 1.0, device)
                    })
                    .collect();
                let attentions = match kind {
                    EncoderBlockType::AttnDownEncoderBlock2D => (0..c.layers_per_block)
                        .map(|_| attention(out, s, device))
                        .collect(),
                    EncoderBlockType::DownEncoderBlock2D => vec![],
                };
                // downsample_padding 0: one row and column of zeros at the bottom right.
                let down = (i + 1 < ch.len())
                    .then(|| Downsample2D::new(out, 0, device))
                    .into_iter()
                    .collect();
                DownBlock::new(resnets, attentions, down)
            })
            .collect();
        let last = ch[ch.len() - 1];
        Self {
            conv_in: conv3(c.in_channels, ch[0], device),
            down_blocks,
            mid_block: mid_block(last, c, s, device),
            conv_norm_out: group_norm(c.norm_num_groups, last, EPS, device),
            conv_out: conv3(last, out_channels, device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut h = conv2d(&self.conv_in, x);
        for block in &self.down_blocks {
            h = block.forward_encoder(h);
        }
        let h = self.mid_block.forward(h, None);
        conv2d(&self.conv_out, normalize_silu(&self.conv_norm_out, h))
    }
}

impl Decoder {
    fn new(c: &CoderConfig, in_channels: usize, device: &Device) -> Self {
        let s = settings(c);
        let reversed: Vec<usize> = c.block_out_channels.iter().rev().copied().collect();
        let n = reversed.len();
        let mut out = reversed[0];
        let up_blocks = c
            .up_block_types
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                let prev = out;
                out = reversed[i];
                let layers = c.layers_per_block + 1;
                let resnets = (0..layers)
                    .map(|j| {
                        ResnetBlock2D::new(if j == 0 { prev } else { out }, out, s, 1.0, device)
                    })
                    .collect();
                let attentions = match kind {
                    DecoderBlockType::AttnUpDecoderBlock2D => {
                        (0..layers).map(|_| attention(out, s, device)).collect()
                    }
                    DecoderBlockType::UpDecoderBlock2D => vec![],
                };
                let up = (i + 1 < n)
                    .then(|| Upsample2D::new(out, device))
                    .into_iter()
                    .collect();
                UpBlock::new(resnets, attentions, up)
            })
            .collect();
        Self {
            conv_in: conv3(in_channels, reversed[0], device),
            mid_block: mid_block(reversed[0], c, s, device),
            up_blocks,
            conv_norm_out: group_norm(c.norm_num_groups, reversed[n - 1], EPS, device),
            conv_out: conv3(reversed[n - 1], c.out_channels, device),
        }
    }

    pub fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        let mut h = conv2d(&self.conv_in, z);
        h = self.mid_block.forward(h, None);
        for block in &self.up_blocks {
            h = block.forward_decoder(h);
        }
        conv2d(&self.conv_out, normalize_silu(&self.conv_norm_out, h))
    }
}

fn settings(c: &CoderConfig) -> BlockSettings {
    BlockSettings {
        temb: None,
        groups: c.norm_num_groups,
        eps: EPS,
        scale_shift: false,
    }
}

/// A 1x1 convolution (`quant_conv`, `post_quant_conv`).
fn pointwise(c_in: usize, c_out: usize, device: &Device) -> Conv2d {
    conv(c_in, c_out, 1, 1, PaddingConfig2d::Valid, device)
}

impl VectorQuantizer {
    fn new(entries: usize, width: usize, device: &Device) -> Self {
        Self {
            embedding: EmbeddingConfig::new(entries, width).init(device),
        }
    }

    /// The codebook, [entries, width].
    pub fn codebook(&self) -> Tensor<2> {
        self.embedding.weight.val()
    }

    /// The index of each latent vector's nearest codebook entry, [B * H * W] in (b, h, w) order.
    /// Squared distances |z|^2 - 2 z.e + |e|^2, as `torch.cdist` computes them for more than 25
    /// rows.
    pub fn nearest(&self, z: Tensor<4>) -> Tensor<1, Int> {
        let [b, c, h, w] = z.dims();
        let flat = z.permute([0, 2, 3, 1]).reshape([b * h * w, c]);
        let e = self.codebook();
        let cross = flat.clone().matmul(e.clone().transpose()).mul_scalar(-2.0);
        let d = cross + flat.powi_scalar(2).sum_dim(1) + e.powi_scalar(2).sum_dim(1).transpose();
        d.argmin(1).reshape([b * h * w])
    }

    /// z with each vector replaced by its nearest entry, as z + (e - z) with the difference cut
    /// from the gradient (the straight-through estimator; in the forward pass, diffusers' bits).
    pub fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        let z_q = self.quantized(z.clone());
        z.clone() + (z_q - z).detach()
    }

    /// Each vector of z replaced by its nearest entry (the codebook's gradient flows through it).
    pub fn quantized(&self, z: Tensor<4>) -> Tensor<4> {
        let dims = z.dims();
        self.select(self.nearest(z), dims)
    }

    /// The latents [B, C, H, W] (`dims`) made of the codebook's `entries` ([`Self::nearest`]'s
    /// order).
    pub fn select(&self, entries: Tensor<1, Int>, dims: [usize; 4]) -> Tensor<4> {
        let [b, c, h, w] = dims;
        let chosen = self.codebook().select(0, entries);
        chosen.reshape([b, h, w, c]).permute([0, 3, 1, 2])
    }
}

impl AutoencoderConfig {
    /// The `config.json` of a diffusers model folder; errors name the file.
    pub fn read(dir: &Path) -> Result<Self, NnError> {
        let path = dir.join("config.json");
        let text = diffuse_fs::read_to_string(&path, diffuse_fs::Limit::CONFIG)?;
        Self::from_json(&text).map_err(|e| NnError::Weights {
            path,
            reason: e.to_string(),
        })
    }

    /// A freshly initialized autoencoder (burn's default initializers).
    pub fn init(&self, device: &Device) -> Result<Autoencoder, NnError> {
        self.validate()?;
        let latent = self.latent_channels();
        let c = &self.coder;
        Ok(match &self.bottleneck {
            Bottleneck::Kl(own) => Autoencoder {
                encoder: Encoder::new(c, 2 * latent, device),
                quant_conv: own
                    .use_quant_conv
                    .then(|| pointwise(2 * latent, 2 * latent, device)),
                quantize: None,
                post_quant_conv: own
                    .use_post_quant_conv
                    .then(|| pointwise(latent, latent, device)),
                decoder: Decoder::new(c, latent, device),
            },
            Bottleneck::Vq(own) => {
                let width = self.diffusion_channels();
                Autoencoder {
                    encoder: Encoder::new(c, latent, device),
                    quant_conv: Some(pointwise(latent, width, device)),
                    quantize: Some(VectorQuantizer::new(own.num_vq_embeddings, width, device)),
                    post_quant_conv: Some(pointwise(width, latent, device)),
                    decoder: Decoder::new(c, latent, device),
                }
            }
        })
    }
}

impl Autoencoder {
    /// Loads a diffusers model folder: `config.json` (an `AutoencoderKL` or `VQModel`) and
    /// `diffusion_pytorch_model.safetensors` by name (float16, bfloat16 and float64 weights
    /// computed in float32).
    pub fn from_diffusers_dir(
        dir: &Path,
        device: &Device,
    ) -> Result<(AutoencoderConfig, Autoencoder), NnError> {
        let config = AutoencoderConfig::read(dir)?;
        let model = config.init(device)?;
        let weights = dir.join("diffusion_pytorch_model.safetensors");
        Ok((
            config,
            crate::unet::load_diffusers_weights(model, &weights)?,
        ))
    }

    /// The posterior (KL) or the latents before the codebook (VQ).
    pub fn encode(&self, x: Tensor<4>) -> Encoded {
        let h = self.moments(x);
        if self.quantize.is_some() {
            return Encoded {
                mean: h,
                logvar: None,
            };
        }
        let (mean, logvar) = split_moments(h);
        Encoded {
            mean,
            logvar: Some(logvar),
        }
    }

    /// The image of latents `z` (a VQ model snaps them to its codebook first).
    pub fn decode(&self, z: Tensor<4>) -> Tensor<4> {
        let z = match &self.quantize {
            Some(q) => q.forward(z),
            None => z,
        };
        self.decode_latents(z)
    }

    /// The vector quantizer of a VQ model.
    pub fn quantizer(&self) -> Option<&VectorQuantizer> {
        self.quantize.as_ref()
    }

    /// The encoder and quant_conv: a KL model's mean and log-variance side by side, a VQ
    /// model's latents before the codebook.
    fn moments(&self, x: Tensor<4>) -> Tensor<4> {
        let h = self.encoder.forward(x);
        match &self.quant_conv {
            Some(q) => conv2d(q, h),
            None => h,
        }
    }
}

impl Autoencoding for Autoencoder {
    fn posterior(&self, x: Tensor<4>) -> Posterior {
        let h = self.moments(x);
        match &self.quantize {
            Some(q) => {
                let entries = q.nearest(h.clone());
                Posterior::Quantized {
                    z_q: q.select(entries.clone(), h.dims()),
                    z_e: h,
                    entries,
                }
            }
            None => {
                let (mean, logvar) = split_moments(h);
                Posterior::Gaussian { mean, logvar }
            }
        }
    }

    fn decode_latents(&self, z: Tensor<4>) -> Tensor<4> {
        let z = match &self.post_quant_conv {
            Some(p) => conv2d(p, z),
            None => z,
        };
        self.decoder.forward(z)
    }

    fn codebook(&self) -> Option<Tensor<2>> {
        self.quantize.as_ref().map(VectorQuantizer::codebook)
    }

    /// The same parameter (its id, so the optimizer's and the EMA's state follow it) with new
    /// values.
    fn with_codebook(mut self, codebook: Tensor<2>) -> Self {
        if let Some(q) = self.quantize.take() {
            let weight = q.embedding.weight.map(|old| {
                let new = codebook.to_device(&old.device());
                if old.is_require_grad() {
                    new.require_grad()
                } else {
                    new
                }
            });
            self.quantize = Some(VectorQuantizer {
                embedding: Embedding { weight },
            });
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn config(text: &str) -> AutoencoderConfig {
        AutoencoderConfig::from_json(text).unwrap()
    }

    #[test]
    fn shapes_follow_the_levels_and_the_bottleneck() {
        let device = Device::default();
        let layout = r#""block_out_channels": [8, 16, 16], "norm_num_groups": 4, "layers_per_block": 1,
            "down_block_types": ["DownEncoderBlock2D", "AttnDownEncoderBlock2D", "DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "AttnUpDecoderBlock2D", "UpDecoderBlock2D"],
            "in_channels": 1, "out_channels": 1"#;
        let x = Tensor::<4>::random([2, 1, 16, 12], Distribution::Normal(0.0, 1.0), &device);
        let kl = config(&format!(
            r#"{{"_class_name": "AutoencoderKL", "latent_channels": 3, {layout}}}"#
        ));
        let model = kl.init(&device).unwrap();
        let e = model.encode(x.clone());
        assert_eq!(e.mean.dims(), [2, 3, 4, 3]);
        assert_eq!(e.logvar.unwrap().dims(), [2, 3, 4, 3]);
        assert_eq!(model.decode(e.mean).dims(), [2, 1, 16, 12]);
        let vq = config(&format!(
            r#"{{"_class_name": "VQModel", "latent_channels": 3, "vq_embed_dim": 2,
                "num_vq_embeddings": 5, {layout}}}"#
        ));
        let model = vq.init(&device).unwrap();
        let e = model.encode(x);
        assert_eq!(e.mean.dims(), [2, 2, 4, 3]);
        assert!(e.logvar.is_none());
        assert_eq!(model.decode(e.mean).dims(), [2, 1, 16, 12]);
    }

    /// Every quantized vector is a codebook entry, the one nearest by a brute-force search.
    #[test]
    fn quantizer_picks_the_nearest_entry() {
        let device = Device::default();
        let q = VectorQuantizer::new(7, 3, &device);
        let z = Tensor::<4>::random([2, 3, 4, 5], Distribution::Normal(0.0, 1.0), &device);
        let out: Vec<f32> = q
            .forward(z.clone())
            .permute([0, 2, 3, 1])
            .into_data()
            .try_to_vec()
            .unwrap();
        let zs: Vec<f32> = z.permute([0, 2, 3, 1]).into_data().try_to_vec().unwrap();
        let book: Vec<f32> = q.codebook().into_data().try_to_vec().unwrap();
        for (v, got) in zs.chunks(3).zip(out.chunks(3)) {
            let dist = |e: &[f32]| -> f32 { v.iter().zip(e).map(|(a, b)| (a - b).powi(2)).sum() };
            let best = book
                .chunks(3)
                .min_by(|a, b| dist(a).total_cmp(&dist(b)))
                .unwrap();
            for (g, b) in got.iter().zip(best) {
                assert!((g - b).abs() < 1e-6, "{got:?} is not the nearest {best:?}");
            }
        }
    }
}
