//! What the trainer minimizes: any [`Objective`], the loss of one batch of its own type (clean
//! data x_0 for DDPM and score matching; data with labels or a VAE's inputs later). The
//! trainer owns everything else (the optimizer, warm-up, clipping, EMA, checkpoints,
//! divergence checks, hooks), so score matching or a VAE's ELBO plugs in as one more
//! implementation; an objective that carries state from step to step (improved DDPM's
//! importance history) hands it to the checkpoint as JSON and takes it back on resume.
//!
//! [`Ddpm`] is DDPM Algorithm 1 and improved DDPM's objectives:
//!
//!   t ~ Uniform({0..T-1}) (or importance-sampled); eps ~ N(0, I);
//!   x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps;
//!   loss = L_simple (||target - net(x_t, t)||^2), L_vlb or L_hybrid (`diffuse_core::discrete::loss`).
//!
//! [`Ncsn`] is NCSN's denoising score matching over L noise levels (`diffuse_core::sde::ncsn`):
//!
//!   i ~ Uniform({1..L}); z ~ N(0, I); x = x_0 + sigma_i z;
//!   loss = 1/2 ||net(x, c(sigma_i)) - z||^2, the network predicting the noise (s = -net / sigma).
//!
//! [`ScoreSde`] is the score SDEs' denoising score matching in continuous time (Song et al.
//! 2021, eq. 7; score_sde's `get_sde_loss_fn` with `continuous = True`):
//!
//!   t ~ Uniform(eps, 1); z ~ N(0, I); x_t = mean(t) x_0 + std(t) z;
//!   loss = lambda(t) 1/2 ||s(x_t, t) + z / std(t)||^2 = w(t) 1/2 ||net(c_in x_t, 999 t) - z||^2,
//!   with s = -net / std, lambda(t) = std(t)^2 (w = 1) or g(t)^2 (likelihood weighting,
//!   w = g^2 / std^2).

use burn::tensor::{Tensor, TensorData};
use diffuse_core::coef::per_item;
use diffuse_core::coef::{randn, timestep_tensor};
use diffuse_core::discrete::importance::ImportanceSampler;
use diffuse_core::discrete::loss::{LossConfig, sample_timesteps, training_loss};
use diffuse_core::discrete::process::q_sample;
use diffuse_core::level::Time;
use diffuse_core::model::{TimeInput, check_time_input};
use diffuse_core::sde::ncsn::{NoiseLevels, dsm_loss, input_scale};
use diffuse_core::solver::adapter::NoiseConditional;
use diffuse_core::{Denoiser, NoiseSchedule, Prediction};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::error::TrainError;

/// A training objective for a model `M` over batches of its own [`Objective::Batch`].
pub trait Objective<M> {
    /// One training batch, as the run's data source draws it.
    type Batch;

    /// The scalar loss of one batch (on the batch's autodiff device); every random draw comes
    /// from `rng`, so a resumed run draws what the uninterrupted one would have.
    fn loss(&mut self, model: &M, batch: Self::Batch, rng: &mut ChaCha8Rng) -> Tensor<1>;

    /// The model after an optimizer step, with what the objective keeps outside the gradient
    /// applied (a VQ codebook's moving averages); unchanged by default.
    fn after_step(&mut self, model: M) -> M {
        model
    }

    /// An error when the objective cannot train `model` (checked once, before the first step).
    fn accepts(&self, _model: &M) -> Result<(), TrainError> {
        Ok(())
    }

    /// The state the objective carries from step to step, saved in checkpoints as JSON; `None`
    /// for an objective without one.
    fn state(&self) -> Option<Value> {
        None
    }

    /// An error when a checkpoint's state does not fit this objective (checked before
    /// anything of a resumed run is written, and again by [`Objective::restore`]).
    fn check_state(&self, state: Option<&Value>) -> Result<(), TrainError> {
        match state {
            None => Ok(()),
            Some(_) => Err(TrainError::Resume {
                reason: "the checkpoint holds a state this objective does not keep".into(),
            }),
        }
    }

    /// Takes back the state of a checkpoint, checked by [`Objective::check_state`].
    fn restore(&mut self, state: Option<Value>) -> Result<(), TrainError> {
        self.check_state(state.as_ref())
    }
}

/// The DDPM family of objectives on one noise schedule, for data of rank `D`.
pub struct Ddpm<const D: usize> {
    pub schedule: NoiseSchedule,
    pub prediction: Prediction,
    pub loss: LossConfig,
    importance: Option<ImportanceSampler>,
}

impl<const D: usize> Ddpm<D> {
    pub fn new(schedule: NoiseSchedule, prediction: Prediction, loss: LossConfig) -> Self {
        let importance = loss
            .importance_sampling
            .then(|| ImportanceSampler::new(schedule.num_timesteps()));
        Self {
            schedule,
            prediction,
            loss,
            importance,
        }
    }

    /// The importance history a checkpoint holds (the JSON of an [`ImportanceSampler`]).
    fn parse_history(state: Option<&Value>) -> Result<Option<ImportanceSampler>, TrainError> {
        state
            .map(|v| {
                serde_json::from_value(v.clone()).map_err(|e| TrainError::Resume {
                    reason: format!(
                        "the importance-sampling history in checkpoint/state.json does not parse: {e}"
                    ),
                })
            })
            .transpose()
    }
}

impl<const D: usize, M: Denoiser<D>> Objective<M> for Ddpm<D> {
    /// Clean data x_0.
    type Batch = Tensor<D>;

    /// DDPM's chain tells the network timesteps.
    fn accepts(&self, model: &M) -> Result<(), TrainError> {
        Ok(check_time_input(model, TimeInput::Timesteps)?)
    }

    fn loss(&mut self, model: &M, x0: Tensor<D>, rng: &mut ChaCha8Rng) -> Tensor<1> {
        let device = x0.device();
        let shape: [usize; D] = x0.dims();
        let (t, weights) = match &self.importance {
            Some(sampler) => {
                let (t, w) = sampler.sample(rng, shape[0]);
                (t, Some(w))
            }
            None => (
                sample_timesteps(rng, self.schedule.num_timesteps(), shape[0]),
                None,
            ),
        };
        let eps = randn(rng, shape, &device);
        let x_t = q_sample(&self.schedule, x0.clone(), &t, eps.clone());
        let output = model.denoise(x_t.clone(), timestep_tensor(&t, &device));
        let per_example = training_loss(
            &self.schedule,
            self.prediction,
            &self.loss,
            x0,
            x_t,
            eps,
            &t,
            output,
        );
        if let Some(sampler) = self.importance.as_mut() {
            let values: Vec<f32> = per_example
                .clone()
                .inner()
                .into_data()
                .try_to_vec()
                .unwrap_or_default();
            sampler.update(&t, &values);
        }
        match weights {
            Some(w) => {
                let w: Vec<f32> = w.iter().map(|&v| v as f32).collect();
                let n = w.len();
                (per_example * Tensor::<1>::from_data(TensorData::new(w, [n]), &device)).mean()
            }
            None => per_example.mean(),
        }
    }

    /// improved DDPM's importance history, when t is importance-sampled.
    fn state(&self) -> Option<Value> {
        self.importance
            .as_ref()
            .map(|s| serde_json::to_value(s).expect("an importance history is plain data"))
    }

    fn check_state(&self, state: Option<&Value>) -> Result<(), TrainError> {
        let importance = Self::parse_history(state)?;
        if self.loss.importance_sampling != importance.is_some() {
            return Err(TrainError::Resume {
                reason: "the checkpoint and the config disagree on loss.importance_sampling".into(),
            });
        }
        if let Some(sampler) = &importance {
            sampler
                .check(self.schedule.num_timesteps())
                .map_err(|e| TrainError::Resume {
                    reason: format!("the importance-sampling history in checkpoint/state.json {e}"),
                })?;
        }
        Ok(())
    }

    fn restore(&mut self, state: Option<Value>) -> Result<(), TrainError> {
        <Self as Objective<M>>::check_state(self, state.as_ref())?;
        self.importance = Self::parse_history(state.as_ref())?;
        Ok(())
    }
}

/// NCSN's objective: denoising score matching with lambda(sigma) = sigma^2 at levels drawn
/// uniformly, for data of rank `D`. The network is told the level as
/// [`NoiseLevels::condition`] (0 at sigma_L, 999 at sigma_1) and predicts the noise z.
pub struct Ncsn<const D: usize> {
    pub levels: NoiseLevels,
    /// The data's standard deviation, when the network's input is scaled to unit variance
    /// (`diffuse_core::sde::ncsn::input_scale`).
    pub sigma_data: Option<f64>,
}

impl<const D: usize, M: Denoiser<D>> Objective<M> for Ncsn<D> {
    /// Clean data x_0.
    type Batch = Tensor<D>;

    /// The network reads the level's conditioning value on the timestep clock.
    fn accepts(&self, model: &M) -> Result<(), TrainError> {
        Ok(check_time_input(model, TimeInput::Timesteps)?)
    }

    fn loss(&mut self, model: &M, x0: Tensor<D>, rng: &mut ChaCha8Rng) -> Tensor<1> {
        let device = x0.device();
        let shape: [usize; D] = x0.dims();
        let levels = &self.levels;
        let i = sample_timesteps(rng, levels.len(), shape[0]);
        let z = randn(rng, shape, &device);
        let sigma = per_item::<D, _>(&i, |i| levels.sigmas()[i], &device);
        let x = x0 + z.clone() * sigma;
        let x = match self.sigma_data {
            Some(_) => {
                x * per_item::<D, _>(
                    &i,
                    |i| input_scale(levels.sigmas()[i], self.sigma_data),
                    &device,
                )
            }
            None => x,
        };
        let c: Vec<f32> = i
            .iter()
            .map(|&i| levels.condition(levels.sigmas()[i]) as f32)
            .collect();
        let n = c.len();
        let noise = model.denoise(x, Tensor::<1>::from_data(TensorData::new(c, [n]), &device));
        dsm_loss(noise, z).mean()
    }
}

/// The score SDEs' objective in continuous time (see the module docs), for data of rank `D`.
pub struct ScoreSde<const D: usize> {
    /// The SDE and how the network's input is scaled.
    pub net: NoiseConditional,
    /// The smallest time drawn (score_sde: 1e-5).
    pub eps: f64,
    /// lambda(t) = g(t)^2 instead of std(t)^2 (score_sde's `likelihood_weighting`).
    pub likelihood_weighting: bool,
}

impl<const D: usize, M: Denoiser<D>> Objective<M> for ScoreSde<D> {
    /// Clean data x_0.
    type Batch = Tensor<D>;

    /// The network reads 999 t on the timestep clock.
    fn accepts(&self, model: &M) -> Result<(), TrainError> {
        Ok(check_time_input(model, TimeInput::Timesteps)?)
    }

    fn loss(&mut self, model: &M, x0: Tensor<D>, rng: &mut ChaCha8Rng) -> Tensor<1> {
        let device = x0.device();
        let shape: [usize; D] = x0.dims();
        let batch = shape[0];
        let times: Vec<f64> = (0..batch)
            .map(|_| self.eps + (1.0 - self.eps) * rng.random::<f64>())
            .collect();
        let z = randn(rng, shape, &device);
        let (sde, sigma_data) = (self.net.sde, self.net.sigma_data);
        let mean = per_item::<D, _>(&times, |t| sde.marginal(Time(t)).0, &device);
        let std = per_item::<D, _>(&times, |t| sde.marginal(Time(t)).1, &device);
        let scale = per_item::<D, _>(&times, |t| sde.input_scale(Time(t), sigma_data), &device);
        let x = (x0 * mean + z.clone() * std) * scale;
        let c: Vec<f32> = times
            .iter()
            .map(|&t| NoiseConditional::condition(Time(t)) as f32)
            .collect();
        let noise = model.denoise(
            x,
            Tensor::<1>::from_data(TensorData::new(c, [batch]), &device),
        );
        let loss = dsm_loss(noise, z);
        if self.likelihood_weighting {
            let w: Vec<f32> = times
                .iter()
                .map(|&t| {
                    let (g, std) = (sde.coefficients(Time(t)).1, sde.marginal(Time(t)).1);
                    (g * g / (std * std)) as f32
                })
                .collect();
            (loss * Tensor::<1>::from_data(TensorData::new(w, [batch]), &device)).mean()
        } else {
            loss.mean()
        }
    }
}

/// Classification by cross-entropy (the mean over the batch of -log softmax(logits)[label]),
/// for a network that gives logits by `logits`: a LeNet for the features of FD_LeNet.
pub struct CrossEntropy<M> {
    pub logits: fn(&M, Tensor<4>) -> Tensor<2>,
}

impl<M> Objective<M> for CrossEntropy<M> {
    /// Images and their labels.
    type Batch = (Tensor<4>, burn::tensor::Tensor<1, burn::tensor::Int>);

    fn loss(&mut self, model: &M, (x, labels): Self::Batch, _rng: &mut ChaCha8Rng) -> Tensor<1> {
        let logits = (self.logits)(model, x);
        let [n, _] = logits.dims();
        let log_p = burn::tensor::activation::log_softmax(logits, 1);
        log_p.gather(1, labels.reshape([n, 1])).mean().neg()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffuse_core::ScheduleConfig;
    use diffuse_core::model::ContinuousTime;

    #[test]
    fn ddpm_trains_networks_on_timesteps_only() {
        let schedule = ScheduleConfig::default().build().unwrap();
        let ddpm = Ddpm::<2>::new(schedule, Prediction::Epsilon, LossConfig::default());
        let net = |x: Tensor<2>, _t: Tensor<1>| x;
        let err = ddpm.accepts(&ContinuousTime(net)).unwrap_err();
        assert!(err.to_string().contains("continuous time"), "{err}");
        assert!(ddpm.accepts(&net).is_ok());
    }
}
