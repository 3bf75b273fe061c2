//! The config of diffusers' `UNet2DModel`, field for field (its `config.json`). Fields diffuse
//! does not implement are accepted only at the value that disables them; anything else is an
//! error naming the field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::NnError;
use crate::fields::check_unmapped_fields;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DownBlockType {
    DownBlock2D,
    AttnDownBlock2D,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpBlockType {
    UpBlock2D,
    AttnUpBlock2D,
}

/// How the time embedding enters a residual block (diffusers' `resnet_time_scale_shift`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeScaleShift {
    /// h = norm2(h + proj(temb)).
    Default,
    /// h = norm2(h) (1 + scale) + shift, with (scale, shift) = proj(temb) (improved DDPM).
    ScaleShift,
}

fn d_in() -> usize {
    3
}
fn d_true() -> bool {
    true
}
fn d_down() -> Vec<DownBlockType> {
    use DownBlockType::*;
    vec![
        DownBlock2D,
        AttnDownBlock2D,
        AttnDownBlock2D,
        AttnDownBlock2D,
    ]
}
fn d_up() -> Vec<UpBlockType> {
    use UpBlockType::*;
    vec![AttnUpBlock2D, AttnUpBlock2D, AttnUpBlock2D, UpBlock2D]
}
fn d_channels() -> Vec<usize> {
    vec![224, 448, 672, 896]
}
fn d_layers() -> usize {
    2
}
fn d_one() -> f64 {
    1.0
}
fn d_padding() -> usize {
    1
}
fn d_head() -> Option<usize> {
    Some(8)
}
fn d_groups() -> usize {
    32
}
fn d_eps() -> f64 {
    1e-5
}
fn d_shift() -> TimeScaleShift {
    TimeScaleShift::Default
}

/// `UNet2DModel`'s config; defaults are diffusers' own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnetConfig {
    #[serde(default)]
    pub sample_size: Option<usize>,
    #[serde(default = "d_in")]
    pub in_channels: usize,
    #[serde(default = "d_in")]
    pub out_channels: usize,
    #[serde(default)]
    pub center_input_sample: bool,
    #[serde(default = "d_true")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    #[serde(default = "d_down")]
    pub down_block_types: Vec<DownBlockType>,
    #[serde(default = "d_up")]
    pub up_block_types: Vec<UpBlockType>,
    #[serde(default = "d_channels")]
    pub block_out_channels: Vec<usize>,
    #[serde(default = "d_layers")]
    pub layers_per_block: usize,
    #[serde(default = "d_one")]
    pub mid_block_scale_factor: f64,
    #[serde(default = "d_padding")]
    pub downsample_padding: usize,
    /// Channels per attention head; `None` means one head per block.
    #[serde(default = "d_head")]
    pub attention_head_dim: Option<usize>,
    #[serde(default = "d_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "d_eps")]
    pub norm_eps: f64,
    #[serde(default = "d_shift")]
    pub resnet_time_scale_shift: TimeScaleShift,
    #[serde(default = "d_true")]
    pub add_attention: bool,
    /// Dropout is a training-time choice; kept so configs round-trip.
    #[serde(default)]
    pub dropout: f64,
    /// Every other field of the file: `_`-prefixed metadata, and fields checked by [`Self::validate`].
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// The one value diffuse accepts for a field whose feature it does not implement (the value that
/// switches the feature off), or `None` for fields it does not know at all.
fn only_value(key: &str) -> Option<Value> {
    Some(match key {
        "act_fn" => Value::from("silu"),
        "time_embedding_type" => Value::from("positional"),
        "downsample_type" | "upsample_type" => Value::from("conv"),
        "mid_block_type" => Value::from("UNetMidBlock2D"),
        "attn_norm_num_groups"
        | "class_embed_type"
        | "num_class_embeds"
        | "num_train_timesteps"
        | "time_embedding_dim" => Value::Null,
        _ => return None,
    })
}

impl UnetConfig {
    pub fn from_json(text: &str) -> Result<Self, NnError> {
        let config: Self =
            serde_json::from_str(text).map_err(|e| NnError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), NnError> {
        let bad = |field: &str, reason: String| {
            Err(NnError::UnsupportedField {
                field: field.into(),
                reason,
            })
        };
        check_unmapped_fields(&self.other, "UNet2DModel", only_value, &[], "")?;
        let n = self.block_out_channels.len();
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return bad(
                "block_out_channels",
                format!(
                    "has {n} entries but there are {} down and {} up blocks; all three must match",
                    self.down_block_types.len(),
                    self.up_block_types.len()
                ),
            );
        }
        if self.layers_per_block == 0 {
            return bad("layers_per_block", "must be at least 1".into());
        }
        if self.norm_num_groups == 0 {
            return bad("norm_num_groups", "must be at least 1".into());
        }
        for (field, v) in [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
        ] {
            if v == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        if let Some(size) = self.sample_size {
            // Each down block but the last halves the side; the up path must meet the skips.
            let factor = 1usize << (n - 1).min(usize::BITS as usize - 1);
            if size == 0 || !size.is_multiple_of(factor) {
                return bad(
                    "sample_size",
                    format!(
                        "{size} must be a positive multiple of {factor} (2^(levels - 1) for {n} levels)"
                    ),
                );
            }
        }
        for &c in &self.block_out_channels {
            if c == 0 || c % self.norm_num_groups.max(1) != 0 {
                return bad(
                    "norm_num_groups",
                    format!(
                        "{} must divide every block_out_channels entry ({c})",
                        self.norm_num_groups
                    ),
                );
            }
            if let Some(h) = self.attention_head_dim
                && (h == 0 || c % h != 0)
            {
                return bad(
                    "attention_head_dim",
                    format!("{h} must divide every block_out_channels entry ({c})"),
                );
            }
        }
        Ok(())
    }

    /// Width of the time embedding: 4 x block_out_channels[0].
    pub fn time_embed_dim(&self) -> usize {
        4 * self.block_out_channels[0]
    }
}
