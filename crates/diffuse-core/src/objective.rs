//! Training objectives beyond L_simple (improved DDPM, Nichol & Dhariwal 2021, sections 3.1-3.3):
//!
//! - `simple`: ||target - output||^2 (DDPM eq. 14);
//! - `vlb`: the bound L_vlb = L_0 + ... + L_T, estimated at one t per example as T * L_t
//!   (`vlb_term`), in bits/dim;
//! - `hybrid`: L_simple + lambda L_vlb with the mean's gradient stopped in the L_vlb term, so the
//!   bound trains only the variance (improved DDPM eq. 16; lambda = 0.001 there).
//!
//! With a learned variance the network outputs twice the channels of x (dimension 1): the first
//! half is the parameterization's output, the second the interpolation v of
//! [`learned_range_log_variance`]. Optional importance sampling of t (improved DDPM eq. 17) keeps
//! the last 10 values of L_t^2 for each t.

use std::collections::VecDeque;

use burn::tensor::Tensor;
use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::loss::per_example_mse;
use crate::param::{NoiseLevel, Prediction};
use crate::schedule::NoiseSchedule;
use crate::vlb::{
    Decoder, ReverseVariance, fixed_log_variance, learned_range_log_variance, reverse_mean,
    vlb_term,
};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Objective {
    #[default]
    Simple,
    Vlb,
    Hybrid {
        lambda: f64,
    },
}

impl Objective {
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
    pub objective: Objective,
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
            objective: Objective::Simple,
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
            Objective::Simple if self.variance == ReverseVariance::LearnedRange => bad(
                "a learned variance needs the vlb or hybrid objective (L_simple has no gradient for it)",
            ),
            Objective::Hybrid { lambda } if !(lambda > 0.0 && lambda.is_finite()) => {
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

/// Splits a network output into (parameterization output, log-variance of p(x_{t-1} | x_t)).
pub fn split_output<const D: usize>(
    schedule: &NoiseSchedule,
    variance: ReverseVariance,
    output: Tensor<D>,
    t: &[usize],
) -> (Tensor<D>, Tensor<D>) {
    let device = output.device();
    match variance {
        ReverseVariance::LearnedRange => {
            let c = output.dims()[1] / 2;
            let v = output.clone().narrow(1, c, c);
            (
                output.narrow(1, 0, c),
                learned_range_log_variance(schedule, v, t),
            )
        }
        fixed => {
            let shape = output.dims();
            (
                output,
                fixed_log_variance::<D>(schedule, fixed, t, &device).expand(shape),
            )
        }
    }
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
        Objective::Simple => {
            let level = NoiseLevel::at(schedule, t, &device);
            per_example_mse(out, prediction.target(x0.clone(), eps, &level))
        }
        Objective::Vlb => vlb_bits(out, log_variance),
        Objective::Hybrid { lambda } => {
            let level = NoiseLevel::at(schedule, t, &device);
            let mse = per_example_mse(out.clone(), prediction.target(x0.clone(), eps, &level));
            // Stop-gradient on the mean: the bound trains only the variance.
            mse + vlb_bits(out.detach(), log_variance).mul_scalar(lambda as f32)
        }
    }
}

/// How many recent L_t^2 values each t keeps (improved DDPM).
const HISTORY: usize = 10;
/// Probability mass spread uniformly over all t, so no t is starved.
const UNIFORM_MASS: f64 = 0.001;

/// t ~ p_t with p_t proportional to sqrt(E[L_t^2]); weights 1 / (T p_t) keep the loss unbiased.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportanceSampler {
    history: Vec<VecDeque<f64>>,
}

impl ImportanceSampler {
    pub fn new(num_timesteps: usize) -> Self {
        Self {
            history: vec![VecDeque::with_capacity(HISTORY); num_timesteps],
        }
    }

    /// True once every t has a full history (before that, t is drawn uniformly).
    pub fn warmed_up(&self) -> bool {
        self.history.iter().all(|h| h.len() == HISTORY)
    }

    /// p_t for every t.
    pub fn probabilities(&self) -> Vec<f64> {
        let n = self.history.len();
        if !self.warmed_up() {
            return vec![1.0 / n as f64; n];
        }
        let raw: Vec<f64> = self
            .history
            .iter()
            .map(|h| (h.iter().sum::<f64>() / h.len() as f64).sqrt())
            .collect();
        let total: f64 = raw.iter().sum();
        raw.iter()
            .map(|w| (1.0 - UNIFORM_MASS) * w / total + UNIFORM_MASS / n as f64)
            .collect()
    }

    /// `batch` timesteps and their weights 1 / (T p_t).
    pub fn sample(&self, rng: &mut impl Rng, batch: usize) -> (Vec<usize>, Vec<f64>) {
        let p = self.probabilities();
        let n = p.len();
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for &pi in &p {
            acc += pi;
            cdf.push(acc);
        }
        (0..batch)
            .map(|_| {
                let u: f64 = rng.random::<f64>() * acc;
                let t = cdf.partition_point(|&c| c <= u).min(n - 1);
                (t, 1.0 / (n as f64 * p[t]))
            })
            .unzip()
    }

    /// Checks a history read back from a checkpoint against the chain it is to sample: one
    /// entry per timestep, at most [`HISTORY`] values each, every value a finite L_t^2 >= 0,
    /// and, once warmed up, some t with a positive mean (else every p_t is 0 / 0).
    pub fn check(&self, num_timesteps: usize) -> Result<(), String> {
        if self.history.len() != num_timesteps {
            return Err(format!(
                "has {} timesteps but the schedule has {num_timesteps}",
                self.history.len()
            ));
        }
        for (t, h) in self.history.iter().enumerate() {
            if h.len() > HISTORY {
                return Err(format!(
                    "holds {} losses at t = {t}, more than the {HISTORY} it keeps",
                    h.len()
                ));
            }
            if let Some(v) = h.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
                return Err(format!(
                    "holds {v} at t = {t}; squared losses are finite and >= 0"
                ));
            }
            // Their mean is taken: a sum that overflows would make every p_t NaN.
            if !h.iter().sum::<f64>().is_finite() {
                return Err(format!("holds losses at t = {t} whose sum overflows"));
            }
        }
        if self.warmed_up() && self.history.iter().all(|h| h.iter().all(|v| *v == 0.0)) {
            return Err("holds only zero losses, which give no distribution over t".into());
        }
        Ok(())
    }

    /// Records the per-example losses at their timesteps.
    pub fn update(&mut self, t: &[usize], losses: &[f32]) {
        for (&ti, &l) in t.iter().zip(losses) {
            let h = &mut self.history[ti];
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back((l as f64).powi(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coef::randn;
    use crate::process::q_sample;
    use crate::schedule::ScheduleConfig;
    use burn::tensor::Device;
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
            objective: Objective::Hybrid { lambda: 0.001 },
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
            loss(Objective::Simple),
            loss(Objective::Vlb),
            loss(Objective::Hybrid { lambda: 0.5 }),
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
    fn importance_sampler_favours_large_losses_and_reweights() {
        let mut sampler = ImportanceSampler::new(4);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (t, w) = sampler.sample(&mut rng, 8);
        assert!(
            w.iter().all(|&w| (w - 1.0).abs() < 1e-12),
            "uniform before warm-up"
        );
        assert!(t.iter().all(|&t| t < 4));
        for _ in 0..HISTORY {
            sampler.update(&[0, 1, 2, 3], &[1.0, 1.0, 1.0, 9.0]);
        }
        assert!(sampler.warmed_up());
        let p = sampler.probabilities();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // sqrt(E[L^2]) = 1, 1, 1, 9: p_3 = 0.75 (up to the uniform mass).
        assert!((p[3] - 0.75).abs() < 1e-3, "{p:?}");
        let (t, w) = sampler.sample(&mut rng, 4000);
        let share = t.iter().filter(|&&t| t == 3).count() as f64 / 4000.0;
        assert!((share - 0.75).abs() < 0.03, "{share}");
        // E[w] over the draws is 1 (unbiased weighting).
        let mean_w = w.iter().sum::<f64>() / w.len() as f64;
        assert!((mean_w - 1.0).abs() < 0.05, "{mean_w}");
        // A history that does not fit the chain, or holds what no training writes, is refused.
        sampler.check(4).unwrap();
        assert!(sampler.check(5).unwrap_err().contains("4 timesteps"));
        let mut bad = sampler.clone();
        bad.history[2].push_back(f64::NAN);
        bad.history[2].pop_front();
        assert!(bad.check(4).unwrap_err().contains("NaN"));
        let mut long = sampler.clone();
        long.history[0].push_back(1.0);
        assert!(long.check(4).unwrap_err().contains("11 losses"));
        let zeros = ImportanceSampler {
            history: vec![VecDeque::from(vec![0.0; HISTORY]); 4],
        };
        assert!(zeros.check(4).unwrap_err().contains("zero"));
        let huge = ImportanceSampler {
            history: vec![VecDeque::from(vec![f64::MAX; HISTORY]); 4],
        };
        assert!(huge.check(4).unwrap_err().contains("overflows"));
    }
}
