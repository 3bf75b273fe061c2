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

/// Whether `name` is on the command line (bench-2d's `--score`).
#[allow(dead_code)] // bench-unet takes none
pub fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
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

/// As the `diffuse` binary does (src/main.rs): mimalloc keeps freed pages rather than returning
/// them to the OS after 10 ms, so tensors freed and allocated again each step cost no page faults.
#[cfg(not(feature = "system-alloc"))]
pub fn keep_freed_pages() {
    use libmimalloc_sys as mi;
    let purge_delay = mi::mi_option_use_numa_nodes - 1; // just before it in mimalloc v2's and v3's option lists
    // SAFETY: reads and sets one integer option of the allocator.
    unsafe {
        mi::mi_option_set(purge_delay, -1);
    }
}

#[cfg(feature = "system-alloc")]
pub fn keep_freed_pages() {}
