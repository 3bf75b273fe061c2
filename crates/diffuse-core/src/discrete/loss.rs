//! DDPM's training losses (DDPM Algorithm 1; improved DDPM, Nichol & Dhariwal 2021, sections
//! 3.1-3.3), chosen by [`LossKind`]:
//!
//! - `simple`: ||target - output||^2 (DDPM eq. 14);
//! - `vlb`: the bound L_vlb = L_0 + ... + L_T, estimated at one t per example as T * L_t
//!   (`vlb_term`), in bits/dim;
//! - `hybrid`: L_simple + lambda L_vlb with the mean's gradient stopped in the L_vlb term, so the
//!   bound trains only the variance (improved DDPM eq. 16; lambda = 0.001 there).
//!
//! With a learned variance the network outputs twice the channels of x (dimension 1): the first
//! half is the parameterization's output, the second the interpolation v of
//! [`crate::discrete::bound::learned_range_log_variance`] ([`crate::discrete::bound::split_output`]). t is drawn
//! uniformly ([`sample_timesteps`]) or importance-sampled ([`crate::discrete::importance`]).

use burn::tensor::Tensor;
use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

use crate::discrete::bound::{ReverseVariance, reverse_mean, split_output, vlb_term};
use crate::discrete::param::{NoiseLevel, Prediction};
use crate::discrete::schedule::NoiseSchedule;
use crate::error::CoreError;
use crate::gaussian::Decoder;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LossKind {
    #[default]
    Simple,
    Vlb,
    Hybrid {
        lambda: f64,
    },
}

impl LossKind {
    /// How plots and logs name the loss.
    pub fn label(&self) -> String {
        match self {
            Self::Simple => "L_simple".into(),
            Self::Vlb => "L_vlb: T x L_t, bits/dim".into(),
            Self::Hybrid { lambda } => format!("L_hybrid = L_simple + {lambda} L_vlb"),
        }
    }
}

/// What the trainer optimizes, and how it draws t.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    pub objective: LossKind,
    pub variance: ReverseVariance,
    /// The data, for the decoder term of the bound.
    pub decoder: Decoder,
    /// Draw t with probability proportional to sqrt(E[L_t^2]) (improved DDPM eq. 17) once every
    /// t has 10 recorded losses; uniform until then.
    pub importance_sampling: bool,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            objective: LossKind::Simple,
            variance: ReverseVariance::FixedSmall,
            decoder: Decoder::Continuous,
            importance_sampling: false,
        }
    }
}

impl LossConfig {
    pub fn validate(&self) -> Result<(), CoreError> {
        let bad = |reason: &str| Err(CoreError::InvalidObjective(reason.into()));
        match self.objective {
            LossKind::Simple if self.variance == ReverseVariance::LearnedRange => bad(
                "a learned variance needs the vlb or hybrid objective (L_simple has no gradient for it)",
            ),
            LossKind::Hybrid { lambda } if !(lambda > 0.0 && lambda.is_finite()) => {
                bad("hybrid lambda must be positive")
            }
            _ => Ok(()),
        }
    }

    /// Channels (dimension 1) the network outputs for data with `channels` channels.
    pub fn output_channels(&self, channels: usize) -> usize {
        if self.variance == ReverseVariance::LearnedRange {
            2 * channels
        } else {
            channels
        }
    }
}

/// t ~ Uniform({0, ..., T-1}) for each of `batch` items.
pub fn sample_timesteps(rng: &mut impl Rng, num_timesteps: usize, batch: usize) -> Vec<usize> {
    (0..batch)
        .map(|_| rng.random_range(0..num_timesteps))
        .collect()
}

/// Per-example mean squared error over all but the batch dimension: shape [B].
pub fn per_example_mse<const D: usize>(output: Tensor<D>, target: Tensor<D>) -> Tensor<1> {
    let batch = output.dims()[0];
    (output - target)
        .powi_scalar(2)
        .reshape([batch as i64, -1])
        .mean_dim(1)
        .reshape([batch])
}

/// The per-example training loss ([B]) for clean `x0`, noise `eps` and the `output` of the
/// network at x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps.
#[allow(clippy::too_many_arguments)]
pub fn training_loss<const D: usize>(
    schedule: &NoiseSchedule,
    prediction: Prediction,
    config: &LossConfig,
    x0: Tensor<D>,
    x_t: Tensor<D>,
    eps: Tensor<D>,
    t: &[usize],
    output: Tensor<D>,
) -> Tensor<1> {
    let device = x0.device();
    let (out, log_variance) = split_output(schedule, config.variance, output, t);
    let dims: usize = x0.dims()[1..].iter().product();
    let vlb_bits = |mean_source: Tensor<D>, log_variance: Tensor<D>| {
        let (mean, _) = reverse_mean(schedule, prediction, mean_source, x_t.clone(), t, None);
        vlb_term(
            schedule,
            x0.clone(),
            x_t.clone(),
            t,
            mean,
            log_variance,
            config.decoder,
        )
        .mul_scalar(
            (schedule.num_timesteps() as f64 / (dims as f64 * std::f64::consts::LN_2)) as f32,
        )
    };
    match config.objective {
        LossKind::Simple => {
            let level = NoiseLevel::at(schedule, t, &device);
            per_example_mse(out, prediction.target(x0.clone(), eps, &level))
        }
        LossKind::Vlb => vlb_bits(out, log_variance),
        LossKind::Hybrid { lambda } => {
            let level = NoiseLevel::at(schedule, t, &device);
            let mse = per_example_mse(out.clone(), prediction.target(x0.clone(), eps, &level));
            // Stop-gradient on the mean: the bound trains only the variance.
            mse + vlb_bits(out.detach(), log_variance).mul_scalar(lambda as f32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coef::randn;
    use crate::discrete::process::q_sample;
    use crate::discrete::schedule::ScheduleConfig;
    use burn::tensor::{Device, TensorData};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn learned_variance_needs_the_bound() {
        let c = LossConfig {
            variance: ReverseVariance::LearnedRange,
            ..Default::default()
        };
        assert!(c.validate().is_err());
        assert_eq!(c.output_channels(3), 6);
        let c = LossConfig {
            objective: LossKind::Hybrid { lambda: 0.001 },
            ..c
        };
        assert!(c.validate().is_ok());
    }

    /// The hybrid loss is L_simple plus lambda times the vlb loss, and its vlb part sends no
    /// gradient to the mean: with a fixed variance its gradient equals L_simple's.
    #[test]
    fn hybrid_is_simple_plus_lambda_vlb_with_the_mean_stopped() {
        let device = Device::default().autodiff();
        let s = ScheduleConfig::default().build().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let t = vec![0usize, 10, 500, 999];
        let x0 = randn::<2>(&mut rng, [4, 2], &device);
        let eps = randn::<2>(&mut rng, [4, 2], &device);
        let x_t = q_sample(&s, x0.clone(), &t, eps.clone());
        let output = randn::<2>(&mut rng, [4, 2], &device).require_grad();
        let loss = |objective| {
            let c = LossConfig {
                objective,
                ..Default::default()
            };
            training_loss(
                &s,
                Prediction::Epsilon,
                &c,
                x0.clone(),
                x_t.clone(),
                eps.clone(),
                &t,
                output.clone(),
            )
        };
        let (simple, vlb, hybrid) = (
            loss(LossKind::Simple),
            loss(LossKind::Vlb),
            loss(LossKind::Hybrid { lambda: 0.5 }),
        );
        let v = |x: Tensor<1>| -> Vec<f32> { x.inner().into_data().try_to_vec().unwrap() };
        for ((a, b), h) in v(simple.clone()).iter().zip(v(vlb)).zip(v(hybrid.clone())) {
            assert!(
                (a + 0.5 * b - h).abs() <= 1e-4 * h.abs().max(1.0),
                "{a} {b} {h}"
            );
        }
        let g_simple = simple.sum().backward();
        let g_hybrid = hybrid.sum().backward();
        let gs: Vec<f32> = output
            .grad(&g_simple)
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        let gh: Vec<f32> = output
            .grad(&g_hybrid)
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        assert_eq!(gs, gh);
    }

    #[test]
    fn per_example_mse_matches_hand_computation() {
        let device = Device::default();
        let out = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 0.0, 0.0], [2, 2]),
            &device,
        );
        let tgt = Tensor::<2>::from_data(
            TensorData::new(vec![0.0f32, 0.0, 3.0, 1.0], [2, 2]),
            &device,
        );
        let v: Vec<f32> = per_example_mse(out.clone(), tgt.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(v, vec![2.5, 5.0]);
    }
}
