//! The configs of diffusers' `AutoencoderKL` and `VQModel`, field for field (their
//! `config.json`), read as the U-Net's is: fields diffuse does not implement are accepted only at
//! the value that switches them off, and an unknown field is an error naming it.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::NnError;
use crate::fields::check_unmapped_fields;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EncoderBlockType {
    DownEncoderBlock2D,
    AttnDownEncoderBlock2D,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DecoderBlockType {
    UpDecoderBlock2D,
    AttnUpDecoderBlock2D,
}

fn d_three() -> usize {
    3
}
fn d_four() -> usize {
    4
}
fn d_one() -> usize {
    1
}
fn d_true() -> bool {
    true
}
fn d_down() -> Vec<EncoderBlockType> {
    vec![EncoderBlockType::DownEncoderBlock2D]
}
fn d_up() -> Vec<DecoderBlockType> {
    vec![DecoderBlockType::UpDecoderBlock2D]
}
fn d_channels() -> Vec<usize> {
    vec![64]
}
fn d_groups() -> usize {
    32
}
fn d_sample_size() -> Value {
    Value::from(32)
}
fn d_scaling() -> f64 {
    0.18215
}
fn d_embeddings() -> usize {
    256
}

/// The fields `AutoencoderKL` and `VQModel` share: their encoder's and decoder's shape, and the
/// latents' scale. Defaults are diffusers' own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoderConfig {
    #[serde(default = "d_three")]
    pub in_channels: usize,
    #[serde(default = "d_three")]
    pub out_channels: usize,
    #[serde(default = "d_down")]
    pub down_block_types: Vec<EncoderBlockType>,
    #[serde(default = "d_up")]
    pub up_block_types: Vec<DecoderBlockType>,
    #[serde(default = "d_channels")]
    pub block_out_channels: Vec<usize>,
    #[serde(default = "d_one")]
    pub layers_per_block: usize,
    #[serde(default = "d_groups")]
    pub norm_num_groups: usize,
    /// The image side the autoencoder was trained on (an integer, or a pair in some hub
    /// configs); only tiling reads it in diffusers, and nothing in diffuse. Kept to round-trip.
    #[serde(default = "d_sample_size")]
    pub sample_size: Value,
    /// Latents are multiplied by it before a diffusion model sees them (LDM's section 4.3.2).
    #[serde(default = "d_scaling")]
    pub scaling_factor: f64,
    #[serde(default = "d_true")]
    pub mid_block_add_attention: bool,
}

/// `AutoencoderKL`'s own fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KlFields {
    #[serde(default = "d_four")]
    pub latent_channels: usize,
    /// Subtracted from the latents before the scaling (Stable Diffusion 3's autoencoder).
    #[serde(default)]
    pub shift_factor: Option<f64>,
    /// Per-channel statistics some pipelines (SDXL) read; the autoencoder itself does not.
    #[serde(default)]
    pub latents_mean: Option<Vec<f64>>,
    #[serde(default)]
    pub latents_std: Option<Vec<f64>>,
    /// Whether diffusers runs it in float32 inside a half-precision pipeline; diffuse always does.
    #[serde(default = "d_true")]
    pub force_upcast: bool,
    #[serde(default = "d_true")]
    pub use_quant_conv: bool,
    #[serde(default = "d_true")]
    pub use_post_quant_conv: bool,
}

/// `VQModel`'s own fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VqFields {
    #[serde(default = "d_three")]
    pub latent_channels: usize,
    #[serde(default = "d_embeddings")]
    pub num_vq_embeddings: usize,
    /// The codebook's width, `latent_channels` when absent.
    #[serde(default)]
    pub vq_embed_dim: Option<usize>,
    /// Only read by `decode(force_not_quantize=True)`, which diffuse does not offer.
    #[serde(default)]
    pub lookup_from_codebook: bool,
    #[serde(default)]
    pub force_upcast: bool,
}

/// Which autoencoder, with its own fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Bottleneck {
    /// `AutoencoderKL`: a diagonal Gaussian posterior over the latents.
    Kl(KlFields),
    /// `VQModel`: latents snapped to the nearest of a codebook's vectors when decoded.
    Vq(VqFields),
}

/// An `AutoencoderKL` or `VQModel` config.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoencoderConfig {
    pub coder: CoderConfig,
    pub bottleneck: Bottleneck,
}

/// The class names diffuse loads, as `_class_name` spells them.
pub const KL_CLASS: &str = "AutoencoderKL";
pub const VQ_CLASS: &str = "VQModel";

/// A config file's fields: the shared ones, the class's own, and the rest for the field rule.
#[derive(Deserialize)]
struct Fields<Q> {
    #[serde(flatten)]
    coder: CoderConfig,
    #[serde(flatten)]
    own: Q,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// The one value diffuse accepts for a field whose feature it does not implement.
fn only_value(key: &str) -> Option<Value> {
    Some(match key {
        "act_fn" => Value::from("silu"),
        // VQModel's "spatial" is MoVQ's spatially conditioned norm.
        "norm_type" => Value::from("group"),
        _ => return None,
    })
}

fn parse<Q: DeserializeOwned>(value: Value, class: &str) -> Result<(CoderConfig, Q), NnError> {
    let fields: Fields<Q> =
        serde_json::from_value(value).map_err(|e| NnError::Config(format!("{class}: {e}")))?;
    check_unmapped_fields(&fields.other, class, only_value, &[], "")?;
    Ok((fields.coder, fields.own))
}

impl AutoencoderConfig {
    /// Reads a `config.json`, choosing the class by its `_class_name`.
    pub fn from_json(text: &str) -> Result<Self, NnError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| NnError::Config(e.to_string()))?;
        let class = value
            .get("_class_name")
            .and_then(Value::as_str)
            .unwrap_or("(missing)")
            .to_string();
        let config = match class.as_str() {
            KL_CLASS => {
                let (coder, own) = parse(value, KL_CLASS)?;
                Self {
                    coder,
                    bottleneck: Bottleneck::Kl(own),
                }
            }
            VQ_CLASS => {
                let (coder, own) = parse(value, VQ_CLASS)?;
                Self {
                    coder,
                    bottleneck: Bottleneck::Vq(own),
                }
            }
            other => {
                return Err(NnError::UnsupportedField {
                    field: "_class_name".into(),
                    reason: format!("is {other}; diffuse loads {KL_CLASS} and {VQ_CLASS}"),
                });
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// The `config.json` diffusers writes for it (with `_class_name`).
    pub fn to_json(&self, diffusers_version: &str) -> Value {
        let mut map = match serde_json::to_value(&self.coder) {
            Ok(Value::Object(map)) => map,
            _ => unreachable!("a struct serializes to an object"),
        };
        let own = match &self.bottleneck {
            Bottleneck::Kl(own) => serde_json::to_value(own),
            Bottleneck::Vq(own) => serde_json::to_value(own),
        };
        if let Ok(Value::Object(own)) = own {
            map.extend(own);
        }
        map.insert("_class_name".into(), Value::from(self.class_name()));
        map.insert("_diffusers_version".into(), Value::from(diffusers_version));
        Value::Object(map)
    }

    pub fn class_name(&self) -> &'static str {
        match self.bottleneck {
            Bottleneck::Kl(_) => KL_CLASS,
            Bottleneck::Vq(_) => VQ_CLASS,
        }
    }

    /// Channels of the decoder's input (and of a KL encoder's mean).
    pub fn latent_channels(&self) -> usize {
        match &self.bottleneck {
            Bottleneck::Kl(own) => own.latent_channels,
            Bottleneck::Vq(own) => own.latent_channels,
        }
    }

    /// Channels of the latents a diffusion model sees: `encode`'s output and `decode`'s input
    /// (a VQ model's codebook width).
    pub fn diffusion_channels(&self) -> usize {
        match &self.bottleneck {
            Bottleneck::Kl(own) => own.latent_channels,
            Bottleneck::Vq(own) => own.vq_embed_dim.unwrap_or(own.latent_channels),
        }
    }

    /// How many times the encoder halves the side: one per down block but the last.
    pub fn downsampling(&self) -> usize {
        1 << (self.coder.block_out_channels.len().saturating_sub(1)).min(16)
    }

    /// The shift subtracted before scaling (0 unless the config sets `shift_factor`).
    pub fn shift_factor(&self) -> f64 {
        match &self.bottleneck {
            Bottleneck::Kl(own) => own.shift_factor.unwrap_or(0.0),
            Bottleneck::Vq(_) => 0.0,
        }
    }

    pub fn validate(&self) -> Result<(), NnError> {
        let bad = |field: &str, reason: String| {
            Err(NnError::UnsupportedField {
                field: field.into(),
                reason,
            })
        };
        let c = &self.coder;
        let n = c.block_out_channels.len();
        if n == 0 || c.down_block_types.len() != n || c.up_block_types.len() != n {
            return bad(
                "block_out_channels",
                format!(
                    "has {n} entries but there are {} down and {} up blocks; all three must match",
                    c.down_block_types.len(),
                    c.up_block_types.len()
                ),
            );
        }
        if n > 16 {
            return bad("block_out_channels", format!("has {n} entries; at most 16"));
        }
        for (field, v) in [
            ("in_channels", c.in_channels),
            ("out_channels", c.out_channels),
            ("layers_per_block", c.layers_per_block),
            ("norm_num_groups", c.norm_num_groups),
            ("latent_channels", self.latent_channels()),
            ("vq_embed_dim", self.diffusion_channels()),
        ] {
            if v == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        if let Bottleneck::Vq(own) = &self.bottleneck
            && own.num_vq_embeddings == 0
        {
            return bad("num_vq_embeddings", "must be at least 1".into());
        }
        for &ch in &c.block_out_channels {
            if ch == 0 || ch % c.norm_num_groups != 0 {
                return bad(
                    "norm_num_groups",
                    format!(
                        "{} must divide every block_out_channels entry ({ch})",
                        c.norm_num_groups
                    ),
                );
            }
        }
        if !(c.scaling_factor.is_finite() && c.scaling_factor > 0.0) {
            return bad(
                "scaling_factor",
                format!("is {}; it must be positive", c.scaling_factor),
            );
        }
        if !self.shift_factor().is_finite() {
            return bad("shift_factor", "must be finite".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_class_with_diffusers_defaults() {
        let kl = AutoencoderConfig::from_json(r#"{"_class_name": "AutoencoderKL"}"#).unwrap();
        assert_eq!(kl.latent_channels(), 4);
        assert_eq!(kl.coder.block_out_channels, vec![64]);
        let Bottleneck::Kl(own) = &kl.bottleneck else {
            panic!("not KL")
        };
        assert!(own.use_quant_conv && own.force_upcast);
        let vq = AutoencoderConfig::from_json(
            r#"{"_class_name": "VQModel", "vq_embed_dim": 5, "norm_type": "group", "act_fn": "silu",
                "_diffusers_version": "0.1"}"#,
        )
        .unwrap();
        assert_eq!((vq.latent_channels(), vq.diffusion_channels()), (3, 5));
    }

    #[test]
    fn fields_of_the_other_class_and_unknown_values_are_refused_by_name() {
        for (text, field) in [
            (
                r#"{"_class_name": "AutoencoderKL", "num_vq_embeddings": 8}"#,
                "num_vq_embeddings",
            ),
            (
                r#"{"_class_name": "VQModel", "shift_factor": 0.1}"#,
                "shift_factor",
            ),
            (
                r#"{"_class_name": "VQModel", "norm_type": "spatial"}"#,
                "norm_type",
            ),
            (
                r#"{"_class_name": "AutoencoderKL", "act_fn": "gelu"}"#,
                "act_fn",
            ),
            (r#"{"_class_name": "AutoencoderTiny"}"#, "_class_name"),
            (
                r#"{"_class_name": "AutoencoderKL", "block_out_channels": [8, 16]}"#,
                "block_out_channels",
            ),
            (
                r#"{"_class_name": "AutoencoderKL", "scaling_factor": 0}"#,
                "scaling_factor",
            ),
        ] {
            let err = AutoencoderConfig::from_json(text).unwrap_err().to_string();
            assert!(err.contains(field), "{text}: {err}");
        }
    }

    #[test]
    fn writes_what_it_reads() {
        for text in [
            r#"{"_class_name": "AutoencoderKL", "shift_factor": 0.0609, "latent_channels": 2,
                "block_out_channels": [8, 16], "norm_num_groups": 4,
                "down_block_types": ["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
                "up_block_types": ["AttnUpDecoderBlock2D", "UpDecoderBlock2D"]}"#,
            r#"{"_class_name": "VQModel", "num_vq_embeddings": 16, "sample_size": [8, 8]}"#,
        ] {
            let config = AutoencoderConfig::from_json(text).unwrap();
            let again =
                AutoencoderConfig::from_json(&config.to_json("0.36.0").to_string()).unwrap();
            assert_eq!(config, again);
        }
    }
}
