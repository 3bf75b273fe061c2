//! Trainer settings: optimizer, schedule of the learning rate, clipping, EMA, checkpoints.

use diffuse_core::discrete::loss::LossConfig;
use diffuse_kernels::Precision;
use serde::{Deserialize, Serialize};

use crate::error::TrainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Adam (Kingma & Ba 2015), with L2 weight decay added to the gradient as PyTorch's `Adam`.
    Adam,
    /// AdamW (Loshchilov & Hutter 2019): decoupled weight decay, as PyTorch's `AdamW`.
    AdamW,
}

/// The learning rate after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrDecay {
    Constant,
    /// Half a cosine from lr down to 0 at the last step (Loshchilov & Hutter 2017, no restarts).
    Cosine,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub optimizer: OptimizerKind,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    /// PyTorch's default 1e-8 (burn's own default is 1e-5).
    pub adam_epsilon: f64,
    pub weight_decay: f64,
    /// Linear warm-up of the learning rate from lr / warmup_steps to lr.
    pub warmup_steps: usize,
    pub lr_decay: LrDecay,
    /// Clip the global L2 norm of all gradients (PyTorch's `clip_grad_norm_`); `None` disables.
    pub grad_clip_norm: Option<f64>,
    /// Exponential moving average of the weights; sampling uses it by default. `None` disables.
    pub ema_decay: Option<f64>,
    /// Write a checkpoint every this many steps (and always at the end); 0 only at the end.
    pub checkpoint_every: usize,
    pub seed: u64,
    /// Stop with an error when a step's loss exceeds this many times the first step's (or 1,
    /// whichever is larger): a run that has diverged while its loss is still finite. `None`
    /// disables the check; a non-finite loss or weight always stops the run.
    pub divergence_factor: Option<f64>,
    /// The objective (L_simple by default), the reverse variance and the sampling of t.
    pub loss: LossConfig,
    /// The type of the network's products in the forward and backward passes: `f32`, or
    /// `bf16` (mixed precision: bfloat16 products, float32 weights, optimizer, norms and loss;
    /// `diffuse_kernels::precision`).
    pub precision: Precision,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 20_000,
            batch_size: 256,
            lr: 3e-3,
            optimizer: OptimizerKind::AdamW,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            weight_decay: 0.0,
            warmup_steps: 100,
            lr_decay: LrDecay::Cosine,
            grad_clip_norm: Some(1.0),
            ema_decay: Some(0.995),
            checkpoint_every: 1000,
            seed: 0,
            divergence_factor: Some(1e6),
            loss: LossConfig::default(),
            precision: Precision::F32,
        }
    }
}

impl TrainConfig {
    // `!(x > 0.0)` rather than `x <= 0.0`: NaN must be rejected too.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |field, reason: &str| {
            Err(TrainError::InvalidConfig {
                field,
                reason: reason.into(),
            })
        };
        if self.steps == 0 {
            return bad("steps", "must be at least 1");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", &format!("must be positive, got {}", self.lr));
        }
        for (field, v) in [
            ("adam_beta1", self.adam_beta1),
            ("adam_beta2", self.adam_beta2),
        ] {
            if !(0.0..1.0).contains(&v) {
                return bad(field, &format!("must be in [0, 1), got {v}"));
            }
        }
        if !(self.adam_epsilon > 0.0 && self.adam_epsilon.is_finite()) {
            return bad(
                "adam_epsilon",
                &format!("must be positive and finite, got {}", self.adam_epsilon),
            );
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(
                "weight_decay",
                &format!("must be non-negative and finite, got {}", self.weight_decay),
            );
        }
        if let Some(f) = self.divergence_factor.filter(|f| !(*f > 1.0)) {
            return bad(
                "divergence_factor",
                &format!("must be greater than 1 (or null to disable), got {f}"),
            );
        }
        if let Some(c) = self.grad_clip_norm.filter(|c| !(*c > 0.0)) {
            return bad("grad_clip_norm", &format!("must be positive, got {c}"));
        }
        if let Some(d) = self.ema_decay.filter(|d| !(0.0..1.0).contains(d)) {
            return bad("ema_decay", &format!("must be in [0, 1), got {d}"));
        }
        self.loss.validate().map_err(|e| TrainError::InvalidConfig {
            field: "loss",
            reason: e.to_string(),
        })
    }

    /// The learning rate at `step` (0-based): linear warm-up over `warmup_steps`, then
    /// `lr_decay` over the remaining steps.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.lr_decay {
            LrDecay::Constant => self.lr,
            LrDecay::Cosine => {
                let span = self.steps.saturating_sub(self.warmup_steps).max(1) as f64;
                let progress = (step - self.warmup_steps) as f64 / span;
                0.5 * self.lr * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_to_zero() {
        let c = TrainConfig {
            steps: 1100,
            warmup_steps: 100,
            lr: 1.0,
            ..Default::default()
        };
        assert_eq!(c.lr_at(0), 0.01);
        assert_eq!(c.lr_at(99), 1.0);
        assert_eq!(c.lr_at(100), 1.0);
        assert!((c.lr_at(600) - 0.5).abs() < 1e-12);
        assert!(c.lr_at(1099) < 1e-4);
        let c = TrainConfig {
            lr_decay: LrDecay::Constant,
            ..c
        };
        assert_eq!(c.lr_at(1099), 1.0);
    }
    #[test]
    fn invalid_values_name_the_field() {
        let c = TrainConfig {
            ema_decay: Some(1.5),
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("ema_decay"));
        let c = TrainConfig {
            batch_size: 0,
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("batch_size"));
    }
}
