//! The training loop: DDPM Algorithm 1 with Adam/AdamW, warm-up, global-norm clipping and EMA.
//!
//! repeat: x_0 ~ q(x_0); t ~ Uniform({0..T-1}); eps ~ N(0, I);
//!         take a gradient step on ||target - net(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t)||^2
//!
//! or, with `config.loss`, on L_vlb or L_hybrid (improved DDPM), with t optionally
//! importance-sampled (`diffuse_core::objective`).

use burn::module::Module;
use burn::optim::{
    AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, decay::WeightDecayConfig,
};
use burn::tensor::{Device, Tensor, TensorData};
use diffuse_core::coef::{randn, timestep_tensor};
use diffuse_core::loss::sample_timesteps;
use diffuse_core::objective::{ImportanceSampler, training_loss};
use diffuse_core::process::q_sample;
use diffuse_core::{Denoiser, NoiseSchedule, Prediction};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{OptimizerKind, TrainConfig};
use crate::error::TrainError;
use crate::params::{Ema, clip_grad_norm};

/// What the caller sees of a run: progress and checkpoints. Only the binary prints.
pub trait TrainHooks<M> {
    /// After step `step` (1-based) with its loss and learning rate.
    fn on_step(&mut self, _step: usize, _loss: f32, _lr: f64) -> Result<(), TrainError> {
        Ok(())
    }
    /// Every `checkpoint_every` steps and at the end, with the weights sampling should use
    /// (the EMA where enabled) and the raw weights.
    fn on_checkpoint(&mut self, _step: usize, _sampling: &M, _raw: &M) -> Result<(), TrainError> {
        Ok(())
    }
}

impl<M> TrainHooks<M> for () {}

/// The outcome of a run: weights without autodiff, and the loss at every step.
pub struct Trained<M> {
    pub model: M,
    pub ema: Option<M>,
    pub losses: Vec<f32>,
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

/// Trains `model` (created on an autodiff device) with L_simple. `data(rng)` returns a batch of
/// clean x_0 on that device. All randomness flows from `config.seed`.
pub fn train<const D: usize, M>(
    mut model: M,
    schedule: &NoiseSchedule,
    prediction: Prediction,
    config: &TrainConfig,
    mut data: impl FnMut(&mut ChaCha8Rng) -> Tensor<D>,
    hooks: &mut impl TrainHooks<M>,
) -> Result<Trained<M>, TrainError>
where
    M: Module + Denoiser<D>,
{
    config.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut optim = optimizer(config);
    let mut ema = config.ema_decay.map(|d| Ema::new(&model, d));
    let mut losses = Vec::with_capacity(config.steps);
    let mut importance = config
        .loss
        .importance_sampling
        .then(|| ImportanceSampler::new(schedule.num_timesteps()));
    for step in 0..config.steps {
        let x0 = data(&mut rng);
        let device = x0.device();
        let shape: [usize; D] = x0.dims();
        let (t, weights) = match &importance {
            Some(sampler) => {
                let (t, w) = sampler.sample(&mut rng, shape[0]);
                (t, Some(w))
            }
            None => (
                sample_timesteps(&mut rng, schedule.num_timesteps(), shape[0]),
                None,
            ),
        };
        let eps = randn(&mut rng, shape, &device);
        let x_t = q_sample(schedule, x0.clone(), &t, eps.clone());
        let output = model.denoise(x_t.clone(), timestep_tensor(&t, &device));
        let per_example =
            training_loss(schedule, prediction, &config.loss, x0, x_t, eps, &t, output);
        if let Some(sampler) = importance.as_mut() {
            let values: Vec<f32> = per_example
                .clone()
                .inner()
                .into_data()
                .try_to_vec()
                .unwrap_or_default();
            sampler.update(&t, &values);
        }
        let loss = match weights {
            Some(w) => {
                let w: Vec<f32> = w.iter().map(|&v| v as f32).collect();
                let n = w.len();
                (per_example * Tensor::<1>::from_data(TensorData::new(w, [n]), &device)).mean()
            }
            None => per_example.mean(),
        };
        let value: f32 = loss.clone().into_scalar();
        if !value.is_finite() {
            return Err(TrainError::NonFiniteLoss {
                step: step + 1,
                value,
            });
        }
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        if let Some(max_norm) = config.grad_clip_norm {
            grads = clip_grad_norm(&model, grads, max_norm);
        }
        let lr = config.lr_at(step);
        model = optim.step(lr, model, grads);
        if let Some(ema) = ema.as_mut() {
            ema.update(&model);
        }
        losses.push(value);
        hooks.on_step(step + 1, value, lr)?;
        let done = step + 1 == config.steps;
        if done || (config.checkpoint_every > 0 && (step + 1) % config.checkpoint_every == 0) {
            let raw = model.valid();
            hooks.on_checkpoint(step + 1, ema.as_ref().map_or(&raw, Ema::model), &raw)?;
        }
    }
    Ok(Trained {
        model: model.valid(),
        ema: ema.map(Ema::into_model),
        losses,
    })
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
