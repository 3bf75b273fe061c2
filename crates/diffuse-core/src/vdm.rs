//! The variational diffusion model (Kingma, Salimans, Poole & Ho 2021, "Variational Diffusion
//! Models"): a Markovian hierarchical VAE whose encoder is fixed and linear-Gaussian,
//!
//! ```text
//! q(z_t | x) = N(alpha_t x, sigma_t^2 I),  alpha_t^2 = sigmoid(-gamma(t)),  sigma_t^2 = sigmoid(gamma(t))
//! ```
//!
//! so that SNR(t) = alpha_t^2 / sigma_t^2 = exp(-gamma(t)), with gamma monotone increasing on
//! [0, 1]. Its bound is three terms (VDM eq. 11), every one per example in nats here:
//!
//! - the prior term KL(q(z_1 | x) || N(0, I)) ([`prior_loss`]);
//! - the reconstruction term -log p(x | z_0) ([`reconstruction_loss`]);
//! - the diffusion loss: for T steps, s = t - 1/T (VDM eq. 13, written with the noise
//!   prediction eps_hat as the paper's code does),
//!   `L_T = T/2 E[(exp(gamma(t) - gamma(s)) - 1) ||eps - eps_hat(z_t; t)||^2]`
//!   ([`discrete_diffusion_loss`]), and as T goes to infinity (VDM eq. 17)
//!   `L_inf = 1/2 E_{t ~ U(0, 1)}[gamma'(t) ||eps - eps_hat(z_t; t)||^2]`
//!   ([`continuous_diffusion_loss`]).
//!
//! The discrete loss on a DDPM chain's alphas_cumprod (gamma = ln((1 - abar) / abar)) is DDPM's
//! L_{t-1} term for term, with the posterior variance as the reverse one (tested in
//! `tests/vdm.rs`). The ancestral sampler ([`ancestral_step`]) is p(z_s | z_t) = q(z_s | z_t,
//! x = x_hat).

use burn::tensor::{Int, Tensor, TensorData, activation};

use crate::gaussian::sum_per_example;

/// ln(2 pi) / 2.
const HALF_LN_2PI: f32 = 0.918_938_5;

/// A [B] tensor as [B, 1, ..., 1], broadcasting over examples of rank D.
pub fn per_example<const D: usize>(v: Tensor<1>) -> Tensor<D> {
    let mut shape = [1usize; D];
    shape[0] = v.dims()[0];
    v.reshape(shape)
}

/// alpha_t^2 = sigmoid(-gamma) and sigma_t^2 = sigmoid(gamma).
pub fn alpha_sigma_sq(gamma: Tensor<1>) -> (Tensor<1>, Tensor<1>) {
    (
        activation::sigmoid(gamma.clone().neg()),
        activation::sigmoid(gamma),
    )
}

/// z_t = alpha_t x + sigma_t eps for each example's gamma(t) ([B]).
pub fn diffuse<const D: usize>(x: Tensor<D>, gamma: Tensor<1>, eps: Tensor<D>) -> Tensor<D> {
    let (a2, s2) = alpha_sigma_sq(gamma);
    x * per_example::<D>(a2.sqrt()) + eps * per_example::<D>(s2.sqrt())
}

/// ||eps - eps_hat||^2 per example.
fn squared_error<const D: usize>(eps: Tensor<D>, eps_hat: Tensor<D>) -> Tensor<1> {
    sum_per_example((eps - eps_hat).powi_scalar(2))
}

/// The continuous-time diffusion loss per example: gamma'(t) ||eps - eps_hat||^2 / 2.
pub fn continuous_diffusion_loss<const D: usize>(
    gamma_prime: Tensor<1>,
    eps: Tensor<D>,
    eps_hat: Tensor<D>,
) -> Tensor<1> {
    squared_error(eps, eps_hat) * gamma_prime.mul_scalar(0.5)
}

/// exp(x) - 1 without the cancellation of exp(x) - 1 for small x: 2 tanh(x/2) / (1 - tanh(x/2)).
pub fn expm1(x: Tensor<1>) -> Tensor<1> {
    let h = x.mul_scalar(0.5).tanh();
    h.clone().mul_scalar(2.0) / h.neg().add_scalar(1.0)
}

/// The discrete-time diffusion loss of T steps per example, at each example's t with s = t -
/// 1/T: T (exp(gamma(t) - gamma(s)) - 1) ||eps - eps_hat||^2 / 2, an unbiased estimate of the
/// sum over the T steps when t is drawn uniformly from {1/T, ..., 1}.
pub fn discrete_diffusion_loss<const D: usize>(
    gamma_t: Tensor<1>,
    gamma_s: Tensor<1>,
    steps: usize,
    eps: Tensor<D>,
    eps_hat: Tensor<D>,
) -> Tensor<1> {
    squared_error(eps, eps_hat) * expm1(gamma_t - gamma_s).mul_scalar(0.5 * steps as f32)
}

/// KL(q(z_1 | x) || N(0, I)) per example: sum of (sigma_1^2 + alpha_1^2 x^2 - ln sigma_1^2 - 1)
/// / 2, for gamma(1) of shape [1].
pub fn prior_loss<const D: usize>(x: Tensor<D>, gamma_1: Tensor<1>) -> Tensor<1> {
    let dims: usize = x.dims()[1..].iter().product();
    let (a2, s2) = alpha_sigma_sq(gamma_1.clone());
    let mean_sq = sum_per_example(x.powi_scalar(2)) * a2;
    // ln sigma^2 = ln sigmoid(gamma) = -softplus(-gamma).
    let log_s2 = activation::softplus(gamma_1.neg(), 1.0).neg();
    (mean_sq + (s2 - log_s2).sub_scalar(1.0).mul_scalar(dims as f32)).mul_scalar(0.5)
}

/// How the data is observed from z_0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataModel {
    /// Continuous data: p(x | z_0) = N(x; z_0 / alpha_0, sigma_0^2 / alpha_0^2 = exp(gamma(0))).
    Continuous,
    /// 8-bit data in [-1, 1] (values 2k/255 - 1): p(x = v_k | z_0) proportional to
    /// exp(-(z_0 / alpha_0 - v_k)^2 / (2 exp(gamma(0)))) over the 256 values (the VDM code's
    /// decoder).
    Discretized,
}

/// -log p(x | z_0) per example, z_0 = alpha_0 x + sigma_0 eps, for gamma(0) of shape [1].
pub fn reconstruction_loss<const D: usize>(
    x: Tensor<D>,
    gamma_0: Tensor<1>,
    eps: Tensor<D>,
    data: DataModel,
) -> Tensor<1> {
    let batch = x.dims()[0];
    // z_0 / alpha_0 = x + exp(gamma_0 / 2) eps, since sigma / alpha = exp(gamma / 2).
    let scale = gamma_0.clone().mul_scalar(0.5).exp();
    let rescaled = x.clone() + eps * per_example::<D>(scale.expand([batch]));
    match data {
        DataModel::Continuous => {
            let inv = gamma_0.clone().mul_scalar(-0.5).exp();
            let z = (x - rescaled) * per_example::<D>(inv.expand([batch]));
            let dims: usize = z.dims()[1..].iter().product();
            sum_per_example(z.powi_scalar(2).mul_scalar(0.5))
                + gamma_0
                    .mul_scalar(0.5)
                    .add_scalar(HALF_LN_2PI)
                    .mul_scalar(dims as f32)
        }
        DataModel::Discretized => {
            let device = x.device();
            let n: usize = x.dims().iter().product();
            let per = n / batch;
            let values: Vec<f32> = (0..256).map(|k| 2.0 * k as f32 / 255.0 - 1.0).collect();
            let values = Tensor::<2>::from_data(TensorData::new(values, [1, 256]), &device);
            let inv_var = gamma_0.neg().exp().reshape([1, 1]);
            let logits = (rescaled.reshape([n, 1]) - values)
                .powi_scalar(2)
                .mul(inv_var)
                .mul_scalar(-0.5);
            let log_p = activation::log_softmax(logits, 1);
            let bins: Tensor<2, Int> = x
                .add_scalar(1.0)
                .mul_scalar(127.5)
                .round()
                .clamp(0.0, 255.0)
                .int()
                .reshape([n, 1]);
            log_p
                .gather(1, bins)
                .reshape([batch, per])
                .sum_dim(1)
                .reshape([batch])
                .neg()
        }
    }
}

/// One step of the ancestral sampler from z_t to z_s (s < t), given the network's noise
/// estimate: p(z_s | z_t) = q(z_s | z_t, x = x_hat), x_hat = (z_t - sigma_t eps_hat) / alpha_t,
/// whose mean is (1 - c) alpha_s / alpha_t z_t + c alpha_s x_hat and variance c sigma_s^2, with
/// c = 1 - exp(gamma(s) - gamma(t)). Unclipped this is the VDM code's `sample_step`,
/// alpha_s / alpha_t (z_t - c sigma_t eps_hat) + sigma_s sqrt(c) noise; `clip` clamps x_hat to
/// [-clip, clip] first, as DDPM's sampler does for images (`clip_sample`). `noise` None gives
/// the mean.
pub fn ancestral_step<const D: usize>(
    z_t: Tensor<D>,
    eps_hat: Tensor<D>,
    gamma_t: f64,
    gamma_s: f64,
    clip: Option<f64>,
    noise: Option<Tensor<D>>,
) -> Tensor<D> {
    let sigmoid = |g: f64| 1.0 / (1.0 + (-g).exp());
    let c = -(gamma_s - gamma_t).exp_m1();
    let (a_t, a_s) = (sigmoid(-gamma_t).sqrt(), sigmoid(-gamma_s).sqrt());
    let (s_t, s_s) = (sigmoid(gamma_t).sqrt(), sigmoid(gamma_s).sqrt());
    let mean = match clip {
        None => (z_t - eps_hat.mul_scalar((c * s_t) as f32)).mul_scalar((a_s / a_t) as f32),
        Some(r) => {
            let x_hat = (z_t.clone() - eps_hat.mul_scalar(s_t as f32))
                .div_scalar(a_t as f32)
                .clamp(-r as f32, r as f32);
            z_t.mul_scalar(((1.0 - c) * a_s / a_t) as f32) + x_hat.mul_scalar((c * a_s) as f32)
        }
    };
    match noise {
        Some(noise) => mean + noise.mul_scalar((s_s * c.sqrt()) as f32),
        None => mean,
    }
}

/// The two parts of a learned schedule, whose parameters take different gradients when the
/// schedule minimizes the loss's variance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulePart {
    /// The shape of gamma between its endpoints (the monotone network).
    Interior,
    /// gamma(0) and gamma(1).
    Endpoints,
}

/// A VDM as its bound and sampler see it: the schedule and the noise predictor.
pub trait VdmModel<const D: usize> {
    /// gamma(t) and gamma'(t) for t of shape [B].
    fn gamma(&self, t: Tensor<1>) -> (Tensor<1>, Tensor<1>);
    /// gamma(t) and gamma'(t) with no gradient to `part` of the schedule.
    fn gamma_without(&self, t: Tensor<1>, _part: SchedulePart) -> (Tensor<1>, Tensor<1>) {
        self.gamma(t)
    }
    /// Whether the schedule's interior has parameters to learn.
    fn learned_interior(&self) -> bool {
        false
    }
    /// gamma(0) and gamma(1), [1] each.
    fn gamma_endpoints(&self) -> (Tensor<1>, Tensor<1>);
    /// eps_hat(z_t; gamma_t) for each example's gamma ([B]).
    fn noise(&self, z: Tensor<D>, gamma: Tensor<1>) -> Tensor<D>;
}

/// Continuous time (T -> infinity) or T discrete steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffusionTime {
    Continuous,
    Discrete(usize),
}

/// The times of one batch: t ~ U(0, 1), or antithetic (the paper's low-discrepancy sampler:
/// t_i = (u + i / B) mod 1 for one u ~ U(0, 1), so a batch covers [0, 1] evenly); for T steps,
/// rounded up to {1/T, ..., 1}.
pub fn draw_times(
    batch: usize,
    antithetic: bool,
    time: DiffusionTime,
    rng: &mut impl rand::Rng,
) -> Vec<f64> {
    use rand::RngExt;
    let u0: f64 = rng.random();
    let t = (0..batch).map(|i| {
        if antithetic {
            (u0 + i as f64 / batch as f64).fract()
        } else if i == 0 {
            u0
        } else {
            rng.random()
        }
    });
    match time {
        DiffusionTime::Continuous => t.collect(),
        DiffusionTime::Discrete(steps) => t
            .map(|t| ((t * steps as f64).floor() + 1.0).min(steps as f64) / steps as f64)
            .collect(),
    }
}

/// The bound's three terms per example (nats).
pub struct VdmTerms {
    pub prior: Tensor<1>,
    pub reconstruction: Tensor<1>,
    pub diffusion: Tensor<1>,
}

impl VdmTerms {
    pub fn total(&self) -> Tensor<1> {
        self.prior.clone() + self.reconstruction.clone() + self.diffusion.clone()
    }
}

/// The VDM bound of `x` at `times` (one per example), the noise drawn from `rng`.
pub fn vdm_terms<const D: usize>(
    model: &impl VdmModel<D>,
    x: Tensor<D>,
    times: &[f64],
    time: DiffusionTime,
    data: DataModel,
    rng: &mut impl rand::Rng,
) -> VdmTerms {
    vdm_terms_scaled(model, x, times, time, data, rng, None)
}

/// [`vdm_terms`] whose gradient to the schedule's interior is each example's own times
/// `interior_scale` ([B]): gamma enters the loss as gamma_A + (gamma_I - sg(gamma_I)) c, where
/// gamma_A takes no gradient to the interior and gamma_I none to the endpoints (sg: no
/// gradient), so the values are gamma's, the endpoints and the network get the bound's own
/// gradient and the interior c_i times example i's. With c_i = 2 L_i that is the gradient of
/// E[L^2]: the VDM's variance minimization (Kingma et al. 2021, section 5.2: in continuous time
/// the bound does not depend on the schedule between its endpoints, so the interior is free to
/// minimize the estimator's variance, E[L^2] - E[L]^2, by the gradient of E[L^2]).
pub fn vdm_terms_scaled<const D: usize>(
    model: &impl VdmModel<D>,
    x: Tensor<D>,
    times: &[f64],
    time: DiffusionTime,
    data: DataModel,
    rng: &mut impl rand::Rng,
    interior_scale: Option<Tensor<1>>,
) -> VdmTerms {
    let gamma_at = |t: Tensor<1>| match &interior_scale {
        None => model.gamma(t),
        Some(c) => {
            let (ga, da) = model.gamma_without(t.clone(), SchedulePart::Interior);
            let (gi, di) = model.gamma_without(t, SchedulePart::Endpoints);
            let scaled = |v: Tensor<1>| (v.clone() - v.detach()) * c.clone();
            (ga + scaled(gi), da + scaled(di))
        }
    };
    let device = x.device();
    let shape = x.dims();
    let batch = shape[0];
    let t = Tensor::<1>::from_data(
        TensorData::new(times.iter().map(|&t| t as f32).collect(), [batch]),
        &device,
    );
    let (g0, g1) = model.gamma_endpoints();
    let eps0 = crate::coef::randn(rng, shape, &device);
    let reconstruction = reconstruction_loss(x.clone(), g0, eps0, data);
    let prior = prior_loss(x.clone(), g1);
    let eps = crate::coef::randn(rng, shape, &device);
    let (gamma_t, gamma_prime) = gamma_at(t);
    let z = diffuse(x, gamma_t.clone(), eps.clone());
    let eps_hat = model.noise(z, gamma_t.clone());
    let diffusion = match time {
        DiffusionTime::Continuous => continuous_diffusion_loss(gamma_prime, eps, eps_hat),
        DiffusionTime::Discrete(steps) => {
            let s = Tensor::<1>::from_data(
                TensorData::new(
                    times
                        .iter()
                        .map(|&t| (t - 1.0 / steps as f64) as f32)
                        .collect(),
                    [batch],
                ),
                &device,
            );
            let gamma_s = gamma_at(s).0;
            discrete_diffusion_loss(gamma_t, gamma_s, steps, eps, eps_hat)
        }
    };
    VdmTerms {
        prior,
        reconstruction,
        diffusion,
    }
}

/// Ancestral sampling over `steps` equal steps of t from z_1 = `z` (a draw of N(0, I)) down to
/// z_0, then x = z_0 / alpha_0, the decoder's mean; for 8-bit data each step's x_hat and the
/// result are clamped to [-1, 1] (as DDPM's image sampler).
/// `observe(i, z)` sees z after each step (i = steps - 1 down to 0, z_{i / steps}).
pub fn sample<const D: usize>(
    model: &impl VdmModel<D>,
    mut z: Tensor<D>,
    steps: usize,
    data: DataModel,
    rng: &mut impl rand::Rng,
    mut observe: impl FnMut(usize, &Tensor<D>),
) -> Tensor<D> {
    let device = z.device();
    let shape = z.dims();
    let batch = shape[0];
    let grid = Tensor::<1>::from_data(
        TensorData::new(
            (0..=steps).map(|i| i as f32 / steps as f32).collect(),
            [steps + 1],
        ),
        &device,
    );
    let gammas: Vec<f64> = model
        .gamma(grid)
        .0
        .into_data()
        .convert::<f64>()
        .try_into_vec::<f64>()
        .unwrap_or_default();
    for i in (1..=steps).rev() {
        let (g_t, g_s) = (gammas[i], gammas[i - 1]);
        let eps_hat = model.noise(z.clone(), Tensor::<1>::full([batch], g_t as f32, &device));
        let noise = crate::coef::randn(rng, shape, &device);
        let clip = (data == DataModel::Discretized).then_some(1.0);
        z = ancestral_step(z, eps_hat, g_t, g_s, clip, Some(noise));
        observe(i - 1, &z);
    }
    let alpha_0 = (1.0 / (1.0 + gammas[0].exp())).sqrt();
    let x = z.div_scalar(alpha_0 as f32);
    match data {
        DataModel::Continuous => x,
        DataModel::Discretized => x.clamp(-1.0, 1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn t1(v: &[f32]) -> Tensor<1> {
        Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &Device::default())
    }

    fn host(x: Tensor<1>) -> Vec<f64> {
        x.into_data()
            .try_to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect()
    }

    #[test]
    fn expm1_is_accurate_for_small_and_large_arguments() {
        let got = host(expm1(t1(&[1e-6, -3e-4, 0.5, 4.0])));
        for (g, x) in got.iter().zip([1e-6f64, -3e-4, 0.5, 4.0]) {
            let want = x.exp_m1();
            assert!((g - want).abs() < 1e-6 * want.abs(), "{x}: {g} vs {want}");
        }
    }

    #[test]
    fn prior_loss_is_the_gaussian_kl() {
        let x = Tensor::<2>::from_data(
            TensorData::new(vec![0.5f32, -1.0], [1, 2]),
            &Device::default(),
        );
        let g = 2.0f64;
        let got = host(prior_loss(x, t1(&[g as f32])))[0];
        let (a2, s2) = (1.0 / (1.0 + g.exp()), 1.0 / (1.0 + (-g).exp()));
        let want: f64 = [0.5f64, -1.0]
            .iter()
            .map(|x| 0.5 * (s2 + a2 * x * x - s2.ln() - 1.0))
            .sum();
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    /// With a tiny gamma(0), the discretized decoder puts almost all mass on the data's bin.
    #[test]
    fn discretized_reconstruction_is_near_zero_at_low_noise_and_costly_at_high() {
        let device = Device::default();
        let x = Tensor::<2>::from_data(
            TensorData::new(vec![-1.0f32, 1.0, 2.0 * 100.0 / 255.0 - 1.0], [1, 3]),
            &device,
        );
        let eps = Tensor::<2>::from_data(TensorData::new(vec![0.3f32, -1.0, 0.7], [1, 3]), &device);
        let low = host(reconstruction_loss(
            x.clone(),
            t1(&[-13.0]),
            eps.clone(),
            DataModel::Discretized,
        ))[0];
        let high = host(reconstruction_loss(
            x,
            t1(&[-4.0]),
            eps,
            DataModel::Discretized,
        ))[0];
        assert!(low < 1e-3, "{low}");
        assert!(high > 1.0, "{high}");
    }

    /// Unclipped, the x_hat form of the step is the VDM code's eps form.
    #[test]
    fn ancestral_step_forms_agree() {
        let device = Device::default();
        let z = Tensor::<2>::from_data(
            TensorData::new(vec![0.3f32, -1.2, 2.0, 0.1], [2, 2]),
            &device,
        );
        let eps = Tensor::<2>::from_data(
            TensorData::new(vec![0.5f32, 0.4, -0.9, 1.1], [2, 2]),
            &device,
        );
        let a = ancestral_step(z.clone(), eps.clone(), 1.5, -0.7, None, None);
        let b = ancestral_step(z, eps, 1.5, -0.7, Some(1e9), None);
        let d = (a - b).abs().max().into_scalar::<f32>();
        assert!(d < 1e-5, "{d}");
    }
}
