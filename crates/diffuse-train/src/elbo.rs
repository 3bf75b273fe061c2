//! The ELBO family's objectives: the negative evidence lower bound of a latent hierarchy (VAE,
//! Markovian HVAE; `diffuse_core::elbo`) and the VDM's bound (`diffuse_core::vdm`), each the
//! mean over the batch in nats per data coordinate.

use burn::tensor::Tensor;
use diffuse_core::elbo::{LatentHierarchy, Observation, elbo_terms};
use diffuse_core::vdm::{
    DataModel, DiffusionTime, VdmModel, draw_times, vdm_terms, vdm_terms_scaled,
};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::error::TrainError;

use crate::objective::Objective;

/// Data of rank D flattened to [B, dims].
pub fn flatten<const D: usize>(x: Tensor<D>) -> Tensor<2> {
    let batch = x.dims()[0];
    x.reshape([batch as i64, -1])
}

/// -ELBO of a VAE or Markovian HVAE, one draw of the latents per example. With a KL warm-up
/// (Sonderby et al. 2016, "Ladder variational autoencoders"), the latent terms (prior matching
/// and consistency) are weighted by beta = min(1, step / kl_warmup) over the first steps, so
/// that the decoder does not learn to ignore the latents before the encoder carries
/// information ("posterior collapse"); from then on the loss is the -ELBO itself. The step is
/// the objective's state, kept in checkpoints.
pub struct Elbo<const D: usize> {
    pub observation: Observation,
    pub kl_warmup: usize,
    pub step: usize,
}

impl<const D: usize> Elbo<D> {
    pub fn new(observation: Observation, kl_warmup: usize) -> Self {
        Self {
            observation,
            kl_warmup,
            step: 0,
        }
    }

    /// beta at the current step.
    pub fn beta(&self) -> f64 {
        if self.kl_warmup == 0 {
            1.0
        } else {
            (self.step as f64 / self.kl_warmup as f64).min(1.0)
        }
    }

    fn parse(state: Option<&Value>) -> Result<usize, TrainError> {
        let reason = || TrainError::Resume {
            reason: "checkpoint/state.json's objective state is not the ELBO's {\"step\": n}"
                .into(),
        };
        match state {
            None => Err(reason()),
            Some(v) => v
                .get("step")
                .and_then(Value::as_u64)
                .map(|s| s as usize)
                .ok_or_else(reason),
        }
    }
}

impl<const D: usize, M: LatentHierarchy> Objective<M> for Elbo<D> {
    type Batch = Tensor<D>;

    fn loss(&mut self, model: &M, x: Tensor<D>, rng: &mut ChaCha8Rng) -> Tensor<1> {
        let x = self.observation.data(flatten(x));
        let dims = x.dims()[1];
        let terms = elbo_terms(model, x, self.observation, rng);
        let beta = self.beta();
        self.step += 1;
        let latent = terms
            .consistency
            .into_iter()
            .fold(terms.prior, |a, c| a + c);
        (terms.reconstruction + latent.mul_scalar(beta as f32))
            .mean()
            .div_scalar(dims as f32)
    }

    fn state(&self) -> Option<Value> {
        Some(serde_json::json!({ "step": self.step }))
    }

    fn check_state(&self, state: Option<&Value>) -> Result<(), TrainError> {
        Self::parse(state).map(drop)
    }

    fn restore(&mut self, state: Option<Value>) -> Result<(), TrainError> {
        self.step = Self::parse(state.as_ref())?;
        Ok(())
    }
}

/// The VDM's bound: prior, reconstruction and diffusion loss at one time per example. With
/// `minimize_variance` and a learned schedule, the schedule's interior is trained on the
/// gradient of E[(L_diffusion / dims)^2] instead of the bound's (the paper's variance
/// minimization; `diffuse_core::vdm::vdm_terms_scaled`): a first pass without gradients gives
/// each example's diffusion loss, the second the loss with the schedule's gradient scaled by it.
/// Per coordinate, so that the schedule's gradient stays on the scale of the network's under
/// global-norm clipping.
pub struct Vdm<const D: usize> {
    pub time: DiffusionTime,
    pub antithetic: bool,
    pub data: DataModel,
    pub minimize_variance: bool,
}

impl<const D: usize, M: VdmModel<D> + burn::module::Module> Objective<M> for Vdm<D> {
    type Batch = Tensor<D>;

    fn loss(&mut self, model: &M, x: Tensor<D>, rng: &mut ChaCha8Rng) -> Tensor<1> {
        let v = &*self;
        let shape = x.dims();
        let dims: usize = shape[1..].iter().product();
        let times = draw_times(shape[0], v.antithetic, v.time, rng);
        let scale = (v.minimize_variance && model.learned_interior()).then(|| {
            let quiet = model.clone().no_grad();
            let mut probe = rng.clone();
            vdm_terms(&quiet, x.clone(), &times, v.time, v.data, &mut probe)
                .diffusion
                .detach()
                .mul_scalar(2.0 / dims as f32)
        });
        vdm_terms_scaled(model, x, &times, v.time, v.data, rng, scale)
            .total()
            .mean()
            .div_scalar(dims as f32)
    }
}
