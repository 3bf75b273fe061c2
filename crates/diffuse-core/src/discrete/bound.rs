//! The variational bound on the negative log-likelihood (DDPM eq. 5; improved DDPM, section 2):
//!
//!   L = L_T + sum_{t=2}^{T} L_{t-1} + L_0, with (1-based t as in the papers, 0-based in code)
//!   L_T     = KL(q(x_T | x_0) || N(0, I))                         the prior term, [`prior_kl`]
//!   L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))      Gaussians, analytic, [`normal_kl`]
//!   L_0     = -log p(x_0 | x_1)                                    the decoder, [`decoder_nll`]
//!
//! All terms are in nats, summed over every dimension of an example; divide by (dims x ln 2) for
//! bits/dim. The decoder is the discretized Gaussian over 256 bins for 8-bit images in [-1, 1]
//! (DDPM section 3.3) or the Gaussian density for continuous data.
//!
//! p(x_{t-1} | x_t) = N(mu_theta, Sigma_theta): the mean comes from the network output through the
//! parameterization ([`reverse_mean`]); the log-variance is fixed ([`ReverseVariance::FixedSmall`]:
//! beta-tilde_t; [`ReverseVariance::FixedLarge`]: beta_t) or learned as an interpolation
//! between the two in log space ([`learned_range_log_variance`], improved DDPM eq. 15).

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::coef::{Coef, per_item};
use crate::discrete::param::{NoiseLevel, Prediction};
use crate::discrete::process::q_posterior;
use crate::discrete::schedule::NoiseSchedule;
use crate::error::CoreError;
use crate::gaussian::{Decoder, decoder_nll, normal_kl, sum_per_example};

/// The variance of p(x_{t-1} | x_t), for training, the bound and the DDPM sampler alike
/// (which calls it [`crate::discrete::sampler::VarianceType`], diffusers' name). The one place a learned
/// variance is chosen: such a network outputs twice the channels of x (dimension 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReverseVariance {
    /// beta-tilde_t, the posterior variance, optimal for a deterministic x_0 (in the bound, at
    /// t = 0, beta-tilde_1: beta-tilde_0 is 0).
    #[default]
    FixedSmall,
    /// beta_t, optimal for x_0 ~ N(0, I) (in the bound, at t = 0, beta-tilde_1, as improved
    /// DDPM's code, so the decoder is not too wide).
    FixedLarge,
    /// exp(v log beta_t + (1 - v) log beta-tilde_t), v = (output + 1) / 2 from the second half
    /// of the network's output (improved DDPM eq. 15; diffusers' `learned_range`).
    LearnedRange,
}

/// log beta-tilde_t (clipped at t = 0) and log beta_t (with t = 0 as beta-tilde_1): the ends of
/// the learned range, and the two fixed choices.
fn log_variance_bounds(schedule: &NoiseSchedule, t: usize) -> (f64, f64) {
    let small = schedule.posterior_log_variance_clipped[t];
    let large = if t == 0 && schedule.num_timesteps() > 1 {
        schedule.posterior_variance[1].ln()
    } else {
        schedule.betas[t].ln()
    };
    (small, large)
}

/// The fixed log-variance per item, shape [B, 1, ..., 1].
pub fn fixed_log_variance<const D: usize>(
    schedule: &NoiseSchedule,
    variance: ReverseVariance,
    t: &[usize],
    device: &burn::tensor::Device,
) -> Tensor<D> {
    per_item(
        t,
        |ti| {
            let (small, large) = log_variance_bounds(schedule, ti);
            match variance {
                ReverseVariance::FixedLarge => large,
                _ => small,
            }
        },
        device,
    )
}

/// Improved DDPM eq. 15: log Sigma = v log beta_t + (1 - v) log beta-tilde_t with
/// v = (output + 1) / 2, so output -1 gives exactly beta-tilde_t and +1 exactly beta_t.
pub fn learned_range_log_variance<const D: usize>(
    schedule: &NoiseSchedule,
    output: Tensor<D>,
    t: &[usize],
) -> Tensor<D> {
    let device = output.device();
    let small: Tensor<D> = per_item(t, |ti| log_variance_bounds(schedule, ti).0, &device);
    let large: Tensor<D> = per_item(t, |ti| log_variance_bounds(schedule, ti).1, &device);
    let frac = output.add_scalar(1.0).mul_scalar(0.5);
    frac.clone() * large + frac.neg().add_scalar(1.0) * small
}

/// The mean of p(x_{t-1} | x_t) implied by a network output: x_0 from the parameterization
/// (clamped to [-r, r] with `clip_x0`, as a sampler with `clip_sample` does), then the posterior
/// mean mu-tilde_t(x_t, x_0) (DDPM eq. 7). Returns (mean, the x_0 estimate used).
pub fn reverse_mean<const D: usize>(
    schedule: &NoiseSchedule,
    prediction: Prediction,
    output: Tensor<D>,
    x_t: Tensor<D>,
    t: &[usize],
    clip_x0: Option<f64>,
) -> (Tensor<D>, Tensor<D>) {
    let device = x_t.device();
    let level = NoiseLevel::at(schedule, t, &device);
    let (x0, _) = prediction.split(output, x_t.clone(), &level);
    let x0 = match clip_x0 {
        Some(r) => x0.clamp(-r as f32, r as f32),
        None => x0,
    };
    let posterior = q_posterior(schedule, x0.clone(), x_t, t);
    (posterior.mean, x0)
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

/// The bound's term at each item's t (nats per example): L_0 = -log p(x_0 | x_1) where t = 0,
/// else L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || N(mean, exp(log_variance))).
pub fn vlb_term<const D: usize>(
    schedule: &NoiseSchedule,
    x0: Tensor<D>,
    x_t: Tensor<D>,
    t: &[usize],
    mean: Tensor<D>,
    log_variance: Tensor<D>,
    decoder: Decoder,
) -> Tensor<1> {
    let device = x0.device();
    let posterior = q_posterior(schedule, x0.clone(), x_t, t);
    let shape = x0.dims();
    let kl = sum_per_example(normal_kl(
        posterior.mean,
        posterior.log_variance_clipped.expand(shape),
        mean.clone(),
        log_variance.clone().expand(shape),
    ));
    let nll = decoder_nll(x0, mean, log_variance.expand(shape), decoder);
    let at_zero: Vec<bool> = t.iter().map(|&ti| ti == 0).collect();
    let mask = Tensor::<1, burn::tensor::Bool>::from_data(
        burn::tensor::TensorData::new(at_zero, [t.len()]),
        &device,
    );
    kl.mask_where(mask, nll)
}

/// L_T = KL(q(x_T | x_0) || N(0, I)) per example (nats), with x_T at the last timestep.
pub fn prior_kl<const D: usize>(schedule: &NoiseSchedule, x0: Tensor<D>) -> Tensor<1> {
    let last = schedule.num_timesteps() - 1;
    let abar = schedule.alphas_cumprod[last];
    let mean = Coef::<D>::Scalar(abar.sqrt()).mul(x0);
    let logvar = mean.zeros_like().add_scalar((1.0 - abar).ln() as f32);
    sum_per_example(normal_kl(
        mean.clone(),
        logvar,
        mean.zeros_like(),
        mean.zeros_like(),
    ))
}

/// The bound evaluated on a batch: per-example totals and the mean of each term.
#[derive(Debug, Clone)]
pub struct BoundEstimate {
    /// L_T + sum over the visited t of weight_t L_t for each example (nats): the whole bound when
    /// every t is visited with weight 1, an estimate of it otherwise.
    pub per_example: Vec<f64>,
    /// Mean over examples of L_t (index t, 0-based: t = 0 is the decoder term L_0), for the
    /// timesteps visited (NaN where not visited).
    pub per_t: Vec<f64>,
    /// Mean over examples of L_T.
    pub prior: f64,
}

/// How a network's output is read as p(x_{t-1} | x_t) when the bound is evaluated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReverseProcess {
    pub prediction: Prediction,
    /// How the variance is read (a learned one from the second half of the output).
    pub variance: ReverseVariance,
    pub decoder: Decoder,
    /// Clamp the x_0 estimate to [-r, r] before forming the mean, as a sampler with
    /// `clip_sample` does (DDPM's and improved DDPM's `clip_denoised`); `None`: the mean the
    /// network defines.
    pub clip_x0: Option<f64>,
}

/// Evaluates the bound of `model`, read as `process`, on the examples `x0` (one batch): for each
/// (t, weight) in `timesteps` (every t with weight 1 for the whole bound), x_t ~ q(x_t | x_0) with
/// noise from `rng`, the model's mean and variance, and the term L_t. `progress(i)` is called
/// after each timestep. A network that does not read timesteps is an error.
pub fn evaluate_bound<const D: usize, M: crate::Denoiser<D> + ?Sized>(
    model: &M,
    schedule: &NoiseSchedule,
    process: ReverseProcess,
    x0: Tensor<D>,
    timesteps: &[(usize, f64)],
    rng: &mut impl rand::Rng,
    mut progress: impl FnMut(usize),
) -> Result<BoundEstimate, CoreError> {
    crate::model::check_time_input(model, crate::model::TimeInput::Timesteps)?;
    let device = x0.device();
    let shape: [usize; D] = x0.dims();
    let n = shape[0];
    let big_t = schedule.num_timesteps();
    let prior: Vec<f32> = prior_kl(schedule, x0.clone())
        .into_data()
        .try_to_vec()
        .unwrap_or_default();
    let mut per_example: Vec<f64> = prior.iter().map(|&v| v as f64).collect();
    let mut per_t = vec![f64::NAN; big_t];
    for (i, &(t, weight)) in timesteps.iter().enumerate() {
        let t_batch = vec![t; n];
        let eps = crate::coef::randn(rng, shape, &device);
        let x_t = crate::discrete::process::q_sample(schedule, x0.clone(), &t_batch, eps);
        let output = model.denoise(x_t.clone(), crate::coef::timestep_tensor(&t_batch, &device));
        let (out, log_variance) = split_output(schedule, process.variance, output, &t_batch);
        let (mean, _) = reverse_mean(
            schedule,
            process.prediction,
            out,
            x_t.clone(),
            &t_batch,
            process.clip_x0,
        );
        let term: Vec<f32> = vlb_term(
            schedule,
            x0.clone(),
            x_t,
            &t_batch,
            mean,
            log_variance,
            process.decoder,
        )
        .into_data()
        .try_to_vec()
        .unwrap_or_default();
        per_t[t] = term.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        for (acc, &v) in per_example.iter_mut().zip(&term) {
            *acc += weight * v as f64;
        }
        progress(i + 1);
    }
    Ok(BoundEstimate {
        per_example,
        per_t,
        prior: prior.iter().map(|&v| v as f64).sum::<f64>() / n as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coef::randn;
    use crate::discrete::schedule::ScheduleConfig;
    use burn::tensor::{Device, TensorData};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn values<const D: usize>(x: Tensor<D>) -> Vec<f32> {
        x.into_data().try_to_vec().unwrap()
    }

    #[test]
    fn learned_range_extremes_are_exactly_beta_tilde_and_beta() {
        let device = Device::default();
        let s = ScheduleConfig::default().build().unwrap();
        let t = [0usize, 1, 500, 999];
        let ones = Tensor::<2>::ones([4, 3], &device);
        let low = values(learned_range_log_variance(&s, ones.clone().neg(), &t));
        let high = values(learned_range_log_variance(&s, ones, &t));
        for (i, &ti) in t.iter().enumerate() {
            let beta_tilde = s.posterior_log_variance_clipped[ti] as f32;
            let beta = if ti == 0 {
                s.posterior_variance[1].ln() as f32
            } else {
                s.betas[ti].ln() as f32
            };
            for j in 0..3 {
                assert_eq!(low[i * 3 + j], beta_tilde, "t = {ti}");
                assert_eq!(high[i * 3 + j], beta, "t = {ti}");
            }
        }
        // The fixed choices are the two ends.
        let small: Tensor<2> = fixed_log_variance(&s, ReverseVariance::FixedSmall, &t, &device);
        let large: Tensor<2> = fixed_log_variance(&s, ReverseVariance::FixedLarge, &t, &device);
        assert_eq!(
            values(small)[2],
            s.posterior_log_variance_clipped[500] as f32
        );
        assert_eq!(values(large)[2], s.betas[500].ln() as f32);
    }

    /// With `clip_x0`, an x_0 estimate of 10 is read as 1: the bound equals that of a model that
    /// predicts 1, and differs from the unclamped one.
    #[test]
    fn clip_x0_clamps_the_estimate_before_the_mean() {
        let device = Device::default();
        let s = ScheduleConfig::default().build().unwrap();
        let x0 = randn::<2>(&mut ChaCha8Rng::seed_from_u64(3), [8, 2], &device).clamp(-1.0, 1.0);
        let ts: Vec<(usize, f64)> = [0usize, 1, 40, 700].iter().map(|&t| (t, 1.0)).collect();
        let bound = |value: f32, clip_x0: Option<f64>| {
            let model = |x_t: Tensor<2>, _t: Tensor<1>| x_t.zeros_like().add_scalar(value);
            let process = ReverseProcess {
                prediction: Prediction::Sample,
                variance: ReverseVariance::FixedSmall,
                decoder: Decoder::Discretized,
                clip_x0,
            };
            let mut rng = ChaCha8Rng::seed_from_u64(5);
            evaluate_bound(&model, &s, process, x0.clone(), &ts, &mut rng, |_| {})
                .unwrap()
                .per_example
        };
        assert_eq!(bound(10.0, Some(1.0)), bound(1.0, None));
        assert_eq!(bound(10.0, Some(1e9)), bound(10.0, None));
        let (clamped, raw) = (bound(10.0, Some(1.0)), bound(10.0, None));
        assert!(clamped.iter().zip(&raw).all(|(c, r)| c < r));
    }

    /// The whole bound, E over x_0 of L_T + sum_t L_t, for a 1-D Gaussian x_0 ~ N(m, s^2) and the
    /// exact reverse process p(x_{t-1} | x_t) = q(x_{t-1} | x_t) (Gaussian, closed form). Then
    /// E[L] = H(q(x_0)) + KL(q(x_T) || N(0, 1)) exactly (chain rule of KL), an upper bound on the
    /// true NLL H = ln(2 pi e s^2) / 2 that is close to it. Monte Carlo with one x_t per (x_0, t).
    /// `var_scale` widens the model's variances: the bound must then rise above the truth.
    fn gaussian_bound(var_scale: f64) -> (f64, f64, f64, f64) {
        let device = Device::default();
        let s = ScheduleConfig {
            num_train_timesteps: 200,
            beta_start: 1e-4,
            beta_end: 0.05,
            ..Default::default()
        }
        .build()
        .unwrap();
        let (m, sd) = (0.7f64, 0.5f64);
        let n = 20_000;
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let x0 = randn::<2>(&mut rng, [n, 1], &device)
            .mul_scalar(sd as f32)
            .add_scalar(m as f32);
        let var_at = |abar: f64| abar * sd * sd + 1.0 - abar;
        let mut total = prior_kl(&s, x0.clone());
        for t in 0..s.num_timesteps() {
            let ts = vec![t; n];
            let eps = randn(&mut rng, [n, 1], &device);
            let x_t = crate::discrete::process::q_sample(&s, x0.clone(), &ts, eps);
            let abar_prev = s.alphas_cumprod_prev[t];
            let (v_prev, v_t) = (var_at(abar_prev), var_at(s.alphas_cumprod[t]));
            let gain = s.alphas[t].sqrt() * v_prev / v_t;
            let mean = (x_t.clone() - s.sqrt_alphas_cumprod[t] * m)
                .mul_scalar(gain as f32)
                .add_scalar((abar_prev.sqrt() * m) as f32);
            let var = (v_prev - s.alphas[t] * v_prev * v_prev / v_t) * var_scale;
            let log_var =
                Tensor::<2>::from_data(TensorData::new(vec![var.ln() as f32; n], [n, 1]), &device);
            total = total + vlb_term(&s, x0.clone(), x_t, &ts, mean, log_var, Decoder::Continuous);
        }
        let per_example: Vec<f64> = values(total).iter().map(|&v| v as f64).collect();
        let mean = per_example.iter().sum::<f64>() / n as f64;
        let var = per_example.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let entropy = 0.5 * (2.0 * std::f64::consts::PI * std::f64::consts::E * sd * sd).ln();
        let a2 = s.alphas_cumprod[s.num_timesteps() - 1];
        let (mu_t, var_t) = (a2.sqrt() * m, var_at(a2));
        let kl_t = 0.5 * (var_t + mu_t * mu_t - 1.0 - var_t.ln());
        (mean, (var / n as f64).sqrt(), entropy, kl_t)
    }

    #[test]
    fn bound_of_the_exact_reverse_process_is_the_entropy_plus_the_prior_gap() {
        let (bound, se, entropy, kl_t) = gaussian_bound(1.0);
        eprintln!(
            "bound {bound:.4} +- {se:.4} nats; true NLL {entropy:.4}; expected {:.4}",
            entropy + kl_t
        );
        assert!(se < 0.012, "standard error {se}");
        assert!((bound - (entropy + kl_t)).abs() < 4.0 * se, "bound {bound}");
        assert!(
            kl_t < 0.01,
            "the prior gap {kl_t} should be small for this schedule"
        );
        // A worse model (variances 1.5x too wide) is caught: its bound is clearly higher.
        let (worse, se_w, _, _) = gaussian_bound(1.5);
        assert!(worse > entropy + kl_t + 10.0 * se_w, "{worse}");
    }
}
