//! What both benchmark binaries share: a timer that starts after the warm-up steps, and flags.

use std::time::Instant;

use diffuse_train::{LrDecay, OptimizerKind, TrainConfig, TrainError, TrainHooks};

/// Starts the clock when training reaches step `warmup`.
pub struct Timer {
    pub warmup: usize,
    pub start: Option<Instant>,
}

impl<M> TrainHooks<M> for Timer {
    fn on_step(&mut self, step: usize, _loss: f32, _lr: f64) -> Result<(), TrainError> {
        if step == self.warmup {
            self.start = Some(Instant::now());
        }
        Ok(())
    }
}

/// The value of `--name N` on the command line, or `default`.
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

/// Plain Adam at a constant rate, no clipping, EMA or checkpoints: the loop the PyTorch scripts
/// run, for `steps` steps at `batch_size`.
pub fn plain_adam(steps: usize, batch_size: usize, lr: f64) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size,
        lr,
        optimizer: OptimizerKind::Adam,
        warmup_steps: 0,
        lr_decay: LrDecay::Constant,
        grad_clip_norm: None,
        ema_decay: None,
        checkpoint_every: 0,
        ..Default::default()
    }
}
