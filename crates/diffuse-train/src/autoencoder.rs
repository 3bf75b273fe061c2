//! Latent diffusion's first stage: an autoencoder trained on images by its reconstruction error
//! and a KL or VQ regularizer (`diffuse_core::autoencoder`), the mean over the batch; a VQ
//! model's codebook optionally by moving averages instead of its loss term, applied after each
//! optimizer step, its averages the objective's checkpointed state.

use burn::tensor::{Tensor, TensorData};
use diffuse_core::autoencoder::{
    AutoencoderLoss, Autoencoding, CodebookEma, autoencoder_terms, perceptual_distance,
};
use diffuse_core::coef::randn;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::error::TrainError;
use crate::objective::Objective;

/// A fixed network's activations of images (each layer [B, features]), and the weight of their
/// distance in the loss.
pub struct Perceptual {
    pub layers: Box<dyn Fn(Tensor<4>) -> Vec<Tensor<2>>>,
    pub weight: f64,
}

/// The autoencoder's loss; a Gaussian posterior's noise comes from the run's RNG.
pub struct FirstStage {
    pub loss: AutoencoderLoss,
    /// An optional perceptual term: weight x `perceptual_distance` of x and its reconstruction.
    pub perceptual: Option<Perceptual>,
    /// The codebook's moving averages' decay (VQ with `loss.codebook_term` false).
    codebook_decay: Option<f64>,
    ema: Option<CodebookEma>,
    /// The last batch's latent vectors and their entries, for the update after the step.
    pending: Option<(Vec<f32>, Vec<usize>)>,
}

impl FirstStage {
    /// `codebook_decay`: keep a VQ model's codebook by moving averages of this decay (the loss
    /// then has no codebook term).
    pub fn new(loss: AutoencoderLoss, codebook_decay: Option<f64>) -> Self {
        Self {
            loss: AutoencoderLoss {
                codebook_term: loss.codebook_term && codebook_decay.is_none(),
                ..loss
            },
            perceptual: None,
            codebook_decay,
            ema: None,
            pending: None,
        }
    }
}

fn host(t: Tensor<2>) -> Vec<f32> {
    t.inner().into_data().try_to_vec().unwrap_or_default()
}

impl<M: Autoencoding> Objective<M> for FirstStage {
    type Batch = Tensor<4>;

    fn loss(&mut self, model: &M, x: Tensor<4>, rng: &mut ChaCha8Rng) -> Tensor<1> {
        let device = x.device();
        let terms = autoencoder_terms(model, &self.loss, x.clone(), |shape| {
            randn(rng, shape, &device)
        });
        if let (Some(decay), Some(book), Some(chosen)) =
            (self.codebook_decay, model.codebook(), terms.entries.clone())
        {
            let [entries, width] = book.dims();
            // The codebook comes to the host once, when the averages start from it.
            let ema = self
                .ema
                .get_or_insert_with(|| CodebookEma::new(decay, &host(book), width));
            debug_assert!(ema.fits(entries, width));
            let [b, c, h, w] = terms.latents.dims();
            let z = host(
                terms
                    .latents
                    .clone()
                    .permute([0, 2, 3, 1])
                    .reshape([b * h * w, c]),
            );
            // The entries the quantizer chose in this forward pass.
            let k: Vec<usize> = chosen
                .into_data()
                .convert::<i64>()
                .try_to_vec::<i64>()
                .unwrap_or_default()
                .into_iter()
                .map(|i| i as usize)
                .collect();
            self.pending = Some((z, k));
        }
        let total = terms.total();
        let total = match &self.perceptual {
            Some(p) => {
                let target: Vec<Tensor<2>> =
                    (p.layers)(x).into_iter().map(|t| t.detach()).collect();
                let distance = perceptual_distance(&target, &(p.layers)(terms.x_hat));
                total + distance.mul_scalar(p.weight as f32)
            }
            None => total,
        };
        total.mean()
    }

    fn after_step(&mut self, model: M) -> M {
        let (Some(ema), Some((z, k))) = (self.ema.as_mut(), self.pending.take()) else {
            return model;
        };
        let book = ema.update(&z, &k);
        let entries = book.len() / ema.width;
        let Some(old) = model.codebook() else {
            return model;
        };
        let new = Tensor::from_data(TensorData::new(book, [entries, ema.width]), &old.device());
        model.with_codebook(new)
    }

    fn state(&self) -> Option<Value> {
        self.ema.as_ref().and_then(|e| serde_json::to_value(e).ok())
    }

    fn check_state(&self, state: Option<&Value>) -> Result<(), TrainError> {
        let bad = |reason: &str| {
            Err(TrainError::Resume {
                reason: reason.into(),
            })
        };
        match (state, self.codebook_decay) {
            (None, _) => Ok(()),
            (Some(_), None) => bad("the checkpoint holds codebook averages this run does not keep"),
            (Some(v), Some(decay)) => match serde_json::from_value::<CodebookEma>(v.clone()) {
                Ok(e)
                    if e.decay == decay
                        && e.width > 0
                        && e.sums.len() == e.counts.len() * e.width =>
                {
                    Ok(())
                }
                Ok(_) => bad("the checkpoint's codebook averages do not fit this run"),
                Err(e) => bad(&format!("the checkpoint's codebook averages: {e}")),
            },
        }
    }

    fn restore(&mut self, state: Option<Value>) -> Result<(), TrainError> {
        Objective::<M>::check_state(self, state.as_ref())?;
        self.ema = state.and_then(|v| serde_json::from_value(v).ok());
        Ok(())
    }
}
