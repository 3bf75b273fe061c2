//! The training loop over any [`Objective`], with Adam/AdamW, warm-up, global-norm clipping and
//! EMA:
//!
//! repeat: x_0 ~ q(x_0); take a gradient step on objective.loss(model, x_0)
//!
//! ([`crate::objective::Ddpm`] is DDPM Algorithm 1 and improved DDPM's L_vlb / L_hybrid).

use burn::module::Module;
use burn::optim::{
    AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, decay::WeightDecayConfig,
};
use burn::tensor::{Device, Tensor, TensorData};
use diffuse_kernels::precision::autocast;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{OptimizerKind, TrainConfig};
use crate::error::TrainError;
use crate::objective::Objective;
use crate::params::{Ema, clip_grad_norm};
use crate::state::{RngState, TrainState, all_finite, canonical_param_ids};

/// What the caller sees of a run: progress, checkpoints and interruption. Only the binary prints.
pub trait TrainHooks<M> {
    /// After step `step` (1-based) with its loss and learning rate.
    fn on_step(&mut self, _step: usize, _loss: f32, _lr: f64) -> Result<(), TrainError> {
        Ok(())
    }
    /// Every `checkpoint_every` steps, at the end, and when a stop is requested; only with
    /// weights that are all finite.
    fn on_checkpoint(&mut self, _checkpoint: &Checkpoint<M>) -> Result<(), TrainError> {
        Ok(())
    }
    /// Asked after every step: `true` ends the run there, with a checkpoint (SIGINT, SIGTERM).
    fn stop_requested(&mut self) -> bool {
        false
    }
}

impl<M> TrainHooks<M> for () {}

/// Everything a run needs to go on from `state.step` exactly as if it had not stopped.
pub struct Checkpoint<M> {
    /// The raw weights, without autodiff.
    pub model: M,
    /// The EMA weights, where enabled.
    pub ema: Option<M>,
    pub state: TrainState,
    /// The optimizer's moments and step counts (burnpack bytes, tensors sorted by name).
    pub optimizer: Vec<u8>,
}

impl<M> Checkpoint<M> {
    /// The weights sampling uses: the EMA where enabled.
    pub fn sampling_model(&self) -> &M {
        self.ema.as_ref().unwrap_or(&self.model)
    }
}

/// The outcome of a run: weights without autodiff, and the loss at every step.
pub struct Trained<M> {
    pub model: M,
    pub ema: Option<M>,
    pub losses: Vec<f32>,
    /// `Some(step)` when a stop was requested and the run ended after `step` steps.
    pub stopped_at: Option<usize>,
}

impl<M> Trained<M> {
    /// The weights sampling uses: the EMA where enabled.
    pub fn sampling_model(&self) -> &M {
        self.ema.as_ref().unwrap_or(&self.model)
    }
}

fn optimizer(config: &TrainConfig) -> ModuleOptimizer {
    let (b1, b2, eps) = (
        config.adam_beta1 as f32,
        config.adam_beta2 as f32,
        config.adam_epsilon as f32,
    );
    match config.optimizer {
        OptimizerKind::Adam => AdamConfig::new()
            .with_beta_1(b1)
            .with_beta_2(b2)
            .with_epsilon(eps)
            .with_weight_decay(
                (config.weight_decay > 0.0)
                    .then(|| WeightDecayConfig::new(config.weight_decay as f32)),
            )
            .init(),
        OptimizerKind::AdamW => AdamWConfig::new()
            .with_beta_1(b1)
            .with_beta_2(b2)
            .with_epsilon(eps)
            .with_weight_decay(config.weight_decay as f32)
            .init(),
    }
}

/// Where a run starts: fresh weights, or a checkpoint to continue from.
pub enum Start<M> {
    Fresh(M),
    /// A checkpoint whose weights are already on the autodiff device.
    Resume(Checkpoint<M>),
}

/// Checks that `checkpoint` can continue under `config` and `objective` (the RNG position, EMA
/// weights where the config keeps them, the objective's own state), without consuming it: a
/// resumed run calls this before it writes anything, and [`train`] makes the same checks.
pub fn check_checkpoint<M>(
    checkpoint: &Checkpoint<M>,
    objective: &impl Objective<M>,
    config: &TrainConfig,
) -> Result<(), TrainError> {
    let bad = |reason: &str| TrainError::Resume {
        reason: reason.into(),
    };
    if checkpoint.state.rng.restore().is_none() {
        return Err(bad(
            "the RNG position in checkpoint/state.json is not a number",
        ));
    }
    if config.ema_decay.is_some() != checkpoint.ema.is_some() {
        return Err(bad("the checkpoint and the config disagree on ema_decay"));
    }
    objective.check_state(checkpoint.state.objective.as_ref())
}

/// The mutable state of the loop, apart from the weights.
struct Loop<M: Module> {
    rng: ChaCha8Rng,
    optim: ModuleOptimizer,
    ema: Option<Ema<M>>,
    losses: Vec<f32>,
}

impl<M: Module> Loop<M> {
    fn start(
        start: Start<M>,
        config: &TrainConfig,
        objective: &mut impl Objective<M>,
    ) -> Result<(M, Self), TrainError> {
        match start {
            Start::Fresh(model) => {
                let model = canonical_param_ids(model);
                let state = Self {
                    rng: ChaCha8Rng::seed_from_u64(config.seed),
                    optim: optimizer(config),
                    ema: config.ema_decay.map(|d| Ema::new(&model, d)),
                    // Grown as needed: `steps` is the user's number, not a size to allocate.
                    losses: Vec::with_capacity(config.steps.min(1 << 20)),
                };
                Ok((model, state))
            }
            Start::Resume(c) => {
                check_checkpoint(&c, objective, config)?;
                let bad = |reason: String| TrainError::Resume { reason };
                let rng = c
                    .state
                    .rng
                    .restore()
                    .ok_or_else(|| bad("the RNG position is not a number".into()))?;
                let optim = optimizer(config)
                    .from_bytes(burn::tensor::Bytes::from_bytes_vec(c.optimizer))
                    .map_err(|e| bad(format!("the optimizer state does not load: {e}")))?;
                let ema = match (config.ema_decay, c.ema) {
                    (Some(d), Some(e)) => Some(Ema::from_weights(canonical_param_ids(e), d)),
                    (None, None) => None,
                    _ => {
                        return Err(bad(
                            "the checkpoint and the config disagree on ema_decay".into()
                        ));
                    }
                };
                objective.restore(c.state.objective)?;
                let model = canonical_param_ids(c.model);
                let state = Self {
                    rng,
                    optim,
                    ema,
                    losses: c.state.losses,
                };
                Ok((model, state))
            }
        }
    }

    fn checkpoint(
        &self,
        model: &M,
        objective: &impl Objective<M>,
    ) -> Result<Checkpoint<M>, TrainError> {
        let step = self.losses.len();
        let raw = model.valid();
        let ema = self.ema.as_ref().map(|e| e.model().clone());
        if !all_finite(&raw) || !ema.as_ref().is_none_or(all_finite) {
            return Err(TrainError::NonFiniteWeights { step });
        }
        Ok(Checkpoint {
            model: raw,
            ema,
            state: TrainState {
                step,
                rng: RngState::of(&self.rng),
                losses: self.losses.clone(),
                objective: objective.state(),
            },
            optimizer: canonical_record(&self.optim)?,
        })
    }
}

/// The optimizer state as burnpack bytes with its tensors in name order (burn writes them in
/// hash-map order, which differs from run to run).
fn canonical_record(optim: &ModuleOptimizer) -> Result<Vec<u8>, TrainError> {
    let err = |e: String| TrainError::Resume {
        reason: format!("cannot serialize the optimizer: {e}"),
    };
    let bytes = optim.into_bytes().map_err(|e| err(e.to_string()))?;
    let reader = burn_pack::Reader::from_bytes(bytes).map_err(|e| err(e.to_string()))?;
    let scalars = reader.scalars().clone();
    let metadata = reader.metadata().clone();
    let mut tensors = Vec::new();
    for t in reader.into_tensors().map_err(|e| err(e.to_string()))? {
        let (name, dtype, shape, id, data) = t.into_parts().map_err(|e| err(e.to_string()))?;
        tensors.push(burn_pack::Tensor::new(name, dtype, shape, id, data));
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let mut writer = burn_pack::Writer::new(tensors);
    for (k, v) in &scalars {
        writer = writer.with_scalar(k, *v);
    }
    for (k, v) in &metadata {
        writer = writer.with_metadata(k, v);
    }
    Ok(writer
        .into_bytes()
        .map_err(|e| err(e.to_string()))?
        .to_vec())
}

/// Trains `model` (created on an autodiff device), or continues a checkpoint, on `objective`.
/// `data(rng)` returns one of the objective's batches on that device. All randomness flows
/// from `config.seed`; a resumed run draws exactly what the uninterrupted one would have.
///
/// Before a checkpoint is handed to the hooks, the loss and the weights are checked: a
/// non-finite loss or weight, or a loss `divergence_factor` times the first one, ends the run
/// with an error naming the step, and the last checkpoint written stays the last good one.
pub fn train<M: Module, O: Objective<M>>(
    start: Start<M>,
    objective: &mut O,
    config: &TrainConfig,
    mut data: impl FnMut(&mut ChaCha8Rng) -> O::Batch,
    hooks: &mut impl TrainHooks<M>,
) -> Result<Trained<M>, TrainError> {
    config.validate()?;
    let (mut model, mut s) = Loop::start(start, config, objective)?;
    objective.accepts(&model)?;
    let first = s.losses.len();
    let mut stopped_at = None;
    for step in first..config.steps {
        let batch = data(&mut s.rng);
        // The forward pass in the configured precision; the backward pass follows its casts.
        let loss = autocast(config.precision, || {
            objective.loss(&model, batch, &mut s.rng)
        });
        let value: f32 = loss.clone().into_scalar();
        check_loss(config, step + 1, value, s.losses.first().copied())?;
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        if let Some(max_norm) = config.grad_clip_norm {
            grads = clip_grad_norm(&model, grads, max_norm);
        }
        let lr = config.lr_at(step);
        model = objective.after_step(s.optim.step(lr, model, grads));
        if let Some(ema) = s.ema.as_mut() {
            ema.update(&model);
        }
        s.losses.push(value);
        hooks.on_step(step + 1, value, lr)?;
        let done = step + 1 == config.steps;
        let stop = !done && hooks.stop_requested();
        if done
            || stop
            || (config.checkpoint_every > 0 && (step + 1) % config.checkpoint_every == 0)
        {
            hooks.on_checkpoint(&s.checkpoint(&model, objective)?)?;
        }
        if stop {
            stopped_at = Some(step + 1);
            break;
        }
    }
    Ok(Trained {
        model: model.valid(),
        ema: s.ema.map(Ema::into_model),
        losses: s.losses,
        stopped_at,
    })
}

/// A non-finite loss, or one `divergence_factor` times the run's first, ends the run.
fn check_loss(
    config: &TrainConfig,
    step: usize,
    value: f32,
    first: Option<f32>,
) -> Result<(), TrainError> {
    if !value.is_finite() {
        return Err(TrainError::NonFiniteLoss { step, value });
    }
    if let (Some(factor), Some(first)) = (config.divergence_factor, first)
        && f64::from(value) > factor * f64::from(first.abs()).max(1.0)
    {
        return Err(TrainError::Diverged {
            step,
            value,
            first,
            factor,
        });
    }
    Ok(())
}

/// A batch of `batch` points drawn uniformly with replacement from `points` (row-major, `dim`
/// columns), as a [batch, dim] tensor.
pub fn random_batch(
    points: &[f32],
    dim: usize,
    batch: usize,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Tensor<2> {
    let n = points.len() / dim;
    let mut data = Vec::with_capacity(batch * dim);
    for _ in 0..batch {
        let i = rng.random_range(0..n);
        data.extend_from_slice(&points[i * dim..(i + 1) * dim]);
    }
    Tensor::from_data(TensorData::new(data, [batch, dim]), device)
}
