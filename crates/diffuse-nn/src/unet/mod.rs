//! A U-Net with the architecture and parameter names of diffusers' `UNet2DModel`, so that its
//! `config.json` + `diffusion_pytorch_model.safetensors` load unchanged.
//!
//! # Shapes
//! - `x_t`: [B, in_channels, H, W] with H, W divisible by 2^(levels - 1); `t`: [B] -> [B, out_channels, H, W]

pub(crate) mod blocks;
mod config;

use std::path::Path;
use std::sync::OnceLock;

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear, LinearConfig};
use burn::store::{KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::{Device, Tensor};
use diffuse_core::Denoiser;
use diffuse_kernels::conv::conv2d;
use diffuse_kernels::linear::{linear, linear_silu};
use diffuse_kernels::norm::group_norm_silu as normalize_silu;

pub use blocks::{
    Attention, BlockSettings, DownBlock, Downsample2D, MidBlock, ResnetBlock2D, UpBlock, Upsample2D,
};
pub use config::{DownBlockType, TimeScaleShift, UnetConfig, UpBlockType};

use crate::embedding::timestep_embedding;
use crate::error::NnError;
use blocks::{conv3, group_norm};

/// diffusers' `TimestepEmbedding`: linear -> SiLU -> linear.
#[derive(Module, Debug)]
pub struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
}

#[derive(Module, Debug)]
pub struct Unet {
    time_embedding: TimestepEmbedding,
    conv_in: Conv2d,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    time_proj_dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
    center_input_sample: bool,
}

impl UnetConfig {
    /// A freshly initialized U-Net (burn's default initializers).
    pub fn init(&self, device: &Device) -> Result<Unet, NnError> {
        self.validate()?;
        let ch = &self.block_out_channels;
        let n = ch.len();
        let temb = self.time_embed_dim();
        let s = BlockSettings {
            temb: Some(temb),
            groups: self.norm_num_groups,
            eps: self.norm_eps,
            scale_shift: self.resnet_time_scale_shift == TimeScaleShift::ScaleShift,
        };
        let head = |c: usize| self.attention_head_dim.unwrap_or(c);
        let attn = |c: usize, groups: Option<usize>, rescale: f64| {
            Attention::new(c, head(c), groups, self.norm_eps, rescale, device)
        };

        let mut down_blocks = Vec::with_capacity(n);
        let mut out = ch[0];
        for (i, kind) in self.down_block_types.iter().enumerate() {
            let c_in = out;
            out = ch[i];
            let resnets = (0..self.layers_per_block)
                .map(|j| ResnetBlock2D::new(if j == 0 { c_in } else { out }, out, s, 1.0, device))
                .collect();
            let attentions = match kind {
                DownBlockType::AttnDownBlock2D => (0..self.layers_per_block)
                    .map(|_| attn(out, Some(s.groups), 1.0))
                    .collect(),
                DownBlockType::DownBlock2D => vec![],
            };
            let down = if i + 1 < n {
                vec![Downsample2D::new(out, self.downsample_padding, device)]
            } else {
                vec![]
            };
            down_blocks.push(DownBlock::new(resnets, attentions, down));
        }

        let c_mid = ch[n - 1];
        let mid_scale = self.mid_block_scale_factor;
        // diffusers' UNetMidBlock2D: attention group norm only with the default time-embedding norm.
        let mid_groups = (!s.scale_shift).then_some(s.groups);
        let mid_block = MidBlock::new(
            (0..2)
                .map(|_| ResnetBlock2D::new(c_mid, c_mid, s, mid_scale, device))
                .collect(),
            if self.add_attention {
                vec![attn(c_mid, mid_groups, mid_scale)]
            } else {
                vec![]
            },
        );

        let reversed: Vec<usize> = ch.iter().rev().copied().collect();
        let mut up_blocks = Vec::with_capacity(n);
        let mut out = reversed[0];
        for (i, kind) in self.up_block_types.iter().enumerate() {
            let prev_out = out;
            out = reversed[i];
            let c_in = reversed[(i + 1).min(n - 1)];
            let layers = self.layers_per_block + 1;
            let resnets = (0..layers)
                .map(|j| {
                    let skip = if j == layers - 1 { c_in } else { out };
                    let res_in = if j == 0 { prev_out } else { out };
                    ResnetBlock2D::new(res_in + skip, out, s, 1.0, device)
                })
                .collect();
            let attentions = match kind {
                UpBlockType::AttnUpBlock2D => (0..layers)
                    .map(|_| attn(out, Some(s.groups), 1.0))
                    .collect(),
                UpBlockType::UpBlock2D => vec![],
            };
            let up = if i + 1 < n {
                vec![Upsample2D::new(out, device)]
            } else {
                vec![]
            };
            up_blocks.push(UpBlock::new(resnets, attentions, up));
        }

        Ok(Unet {
            time_embedding: TimestepEmbedding {
                linear_1: LinearConfig::new(ch[0], temb).init(device),
                linear_2: LinearConfig::new(temb, temb).init(device),
            },
            conv_in: conv3(self.in_channels, ch[0], device),
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: group_norm(self.norm_num_groups, ch[0], self.norm_eps, device),
            conv_out: conv3(ch[0], self.out_channels, device),
            time_proj_dim: ch[0],
            flip_sin_to_cos: self.flip_sin_to_cos,
            freq_shift: self.freq_shift,
            center_input_sample: self.center_input_sample,
        })
    }
}

/// (old name, current name) of attention parameters.
const LEGACY_ATTENTION_NAMES: [(&str, &str); 4] = [
    ("query", "to_q"),
    ("key", "to_k"),
    ("value", "to_v"),
    ("proj_attn", "to_out.0"),
];

/// Attention weights of early diffusers checkpoints (e.g. google/ddpm-cifar10-32) carry the old
/// names, which diffusers renames on load (`_fix_state_dict_keys_on_load`); so do we. Compiled
/// once: the regexes cost more than loading a small model.
fn legacy_attention_remapper() -> &'static KeyRemapper {
    static REMAPPER: OnceLock<KeyRemapper> = OnceLock::new();
    REMAPPER.get_or_init(|| {
        KeyRemapper::from_pattern_iter(LEGACY_ATTENTION_NAMES.iter().map(|(old, new)| {
            (
                format!(r"^(.*\.attentions\.\d+)\.{old}\.(weight|bias)$"),
                format!("${{1}}.{new}.${{2}}"),
            )
        }))
        .expect("the legacy attention patterns are valid regexes")
    })
}

/// Loads diffusers' `diffusion_pytorch_model.safetensors` into `model` (whose config fixes the
/// architecture) by parameter name (PyTorch layouts: linear weights are transposed, norm
/// weight/bias become gamma/beta; legacy attention names renamed). A missing, extra or misshapen
/// tensor is an error; float16, bfloat16 and float64 weights are converted to float32.
pub fn load_diffusers_weights<M: Module>(mut model: M, weights: &Path) -> Result<M, NnError> {
    // Read here (a regular file, within the memory available), parsed from memory.
    let bytes = diffuse_fs::read(weights, diffuse_fs::Limit::memory())?;
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .with_from_adapter(PyTorchToBurnAdapter)
        .remap(legacy_attention_remapper().clone());
    let result = model.load_from(&mut store).map_err(|e| NnError::Weights {
        path: weights.into(),
        reason: e.to_string(),
    })?;
    if !result.missing.is_empty() || !result.unused.is_empty() || !result.errors.is_empty() {
        return Err(NnError::Weights {
            path: weights.into(),
            reason: format!("weights do not match the config: {result}"),
        });
    }
    // Hub checkpoints often ship float16 or bfloat16 weights (diffusers' `torch_dtype`), some
    // float64: computed in float32, as `from_pretrained(..., torch_dtype=torch.float32)`.
    Ok(crate::cast_to_f32(model))
}

impl Unet {
    /// Loads a diffusers model folder: `config.json` and `diffusion_pytorch_model.safetensors`
    /// (PyTorch layouts: linear weights are transposed, norm weight/bias become gamma/beta).
    pub fn from_diffusers_dir(dir: &Path, device: &Device) -> Result<(UnetConfig, Unet), NnError> {
        let config_path = dir.join("config.json");
        let text = diffuse_fs::read_to_string(&config_path, diffuse_fs::Limit::CONFIG)?;
        let config = UnetConfig::from_json(&text)?;
        let model = config.init(device)?;
        let model =
            model.load_diffusers_weights(&dir.join("diffusion_pytorch_model.safetensors"))?;
        Ok((config, model))
    }

    /// Loads diffusers' `diffusion_pytorch_model.safetensors` into this U-Net (whose config fixes
    /// the architecture) by parameter name: see [`load_diffusers_weights`].
    pub fn load_diffusers_weights(self, weights: &Path) -> Result<Unet, NnError> {
        load_diffusers_weights(self, weights)
    }

    pub fn forward(&self, x_t: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        let x = if self.center_input_sample {
            x_t.mul_scalar(2.0).sub_scalar(1.0)
        } else {
            x_t
        };
        let t_emb = timestep_embedding(
            t,
            self.time_proj_dim,
            self.flip_sin_to_cos,
            self.freq_shift,
            10_000.0,
        );
        let emb = linear(
            &self.time_embedding.linear_2,
            linear_silu(&self.time_embedding.linear_1, t_emb),
        );
        let mut h = conv2d(&self.conv_in, x);
        let mut skips = vec![h.clone()];
        for block in &self.down_blocks {
            let (out, states) = block.forward(h, &emb);
            skips.extend(states);
            h = out;
        }
        h = self.mid_block.forward(h, Some(&emb));
        for block in &self.up_blocks {
            h = block.forward(h, &mut skips, &emb);
        }
        conv2d(&self.conv_out, normalize_silu(&self.conv_norm_out, h))
    }
}

impl Denoiser<4> for Unet {
    fn denoise(&self, x_t: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        self.forward(x_t, t)
    }
}
