//! The VDM's noise schedule gamma(t) = -log SNR(t) on t in [0, 1] (Kingma et al. 2021), and the
//! network that wraps a noise predictor with it.
//!
//! Learned, gamma is monotone by construction, as the paper's `NoiseSchedule_NNet`: a monotone
//! network of positive weights (absolute values of its parameters),
//!
//! ```text
//! g(t) = |w1| t + (1/F) sum_j |w3_j| (2 sigmoid(|w2_j| (2t - 1) + b2_j) - 1)
//! gamma(t) = gamma_0 + (gamma_1 - gamma_0) (g(t) - g(0)) / (g(1) - g(0))
//! ```
//!
//! with gamma_0 and gamma_1 = gamma_0 + softplus(r) learned (the paper's endpoints, kept in
//! order), and gamma'(t) from the same parameters in closed form. Fixed, gamma is the paper's
//! linear log-SNR schedule from gamma_min to gamma_max.

use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Tensor, TensorData, activation};
use serde::{Deserialize, Serialize};

/// What the schedule is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GammaKind {
    /// The monotone network with learned endpoints.
    Learned,
    /// gamma(t) = gamma_min + (gamma_max - gamma_min) t, nothing learned.
    FixedLinear,
}

/// The schedule's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GammaConfig {
    pub kind: GammaKind,
    /// gamma at t = 0 and t = 1 before training (the paper's -13.3 and 5); also the range the
    /// noise predictor's conditioning is normalized by.
    pub gamma_min: f64,
    pub gamma_max: f64,
    /// F, the width of the monotone network's hidden layer (the paper: 1024).
    pub features: usize,
}

impl Default for GammaConfig {
    fn default() -> Self {
        Self {
            kind: GammaKind::Learned,
            gamma_min: -13.3,
            gamma_max: 5.0,
            features: 1024,
        }
    }
}

impl GammaConfig {
    /// A fresh schedule equal to the linear one from gamma_min to gamma_max at initialization
    /// up to its network's small curvature (w1 = 1, the hidden weights N(0, 1) as the paper's).
    pub fn init(&self, device: &Device) -> Gamma {
        let f = self.features.max(1);
        let normal = |n: usize| {
            Param::from_tensor(Tensor::<1>::random(
                [n],
                Distribution::Normal(0.0, 1.0),
                device,
            ))
        };
        let scalar = |v: f64| {
            Param::from_tensor(Tensor::<1>::from_data(
                TensorData::new(vec![v as f32], [1]),
                device,
            ))
        };
        let range = self.gamma_max - self.gamma_min;
        Gamma {
            w1: scalar(1.0),
            w2: normal(f),
            b2: normal(f),
            w3: normal(f),
            gamma_0: scalar(self.gamma_min),
            // softplus(r) = range.
            r: scalar(range + (-(-range).exp()).ln_1p()),
            learned: self.kind == GammaKind::Learned,
            gamma_min: self.gamma_min,
            gamma_max: self.gamma_max,
        }
    }
}

/// gamma(t) (see the module docs).
#[derive(Module, Debug)]
pub struct Gamma {
    w1: Param<Tensor<1>>,
    w2: Param<Tensor<1>>,
    b2: Param<Tensor<1>>,
    w3: Param<Tensor<1>>,
    gamma_0: Param<Tensor<1>>,
    r: Param<Tensor<1>>,
    learned: bool,
    gamma_min: f64,
    gamma_max: f64,
}

impl Gamma {
    pub fn is_learned(&self) -> bool {
        self.learned
    }

    /// The fixed normalization of the noise predictor's conditioning: gamma_min and gamma_max.
    pub fn range(&self) -> (f64, f64) {
        (self.gamma_min, self.gamma_max)
    }

    /// g(t) and g'(t) for t of shape [B] ([B] each); `detach`: no gradient to the network.
    fn unnormalized(&self, t: Tensor<1>, detach: bool) -> (Tensor<1>, Tensor<1>) {
        let f = self.w2.dims()[0];
        let n = t.dims()[0];
        let val = |p: &Param<Tensor<1>>| if detach { p.val().detach() } else { p.val() };
        let w1 = val(&self.w1).abs();
        let w2 = val(&self.w2).abs().reshape([1, f]);
        let w3 = val(&self.w3).abs().reshape([f, 1]);
        let a = t.clone().mul_scalar(2.0).sub_scalar(1.0).reshape([n, 1]) * w2.clone()
            + val(&self.b2).reshape([1, f]);
        let s = activation::sigmoid(a);
        let h = s.clone().mul_scalar(2.0).sub_scalar(1.0);
        let g = t * w1.clone() + h.matmul(w3.clone()).reshape([n]).div_scalar(f as f32);
        // d/dt: |w1| + (1/F) sum_j |w3_j| 2 s (1 - s) 2 |w2_j|.
        let ds = (s.clone() * s.neg().add_scalar(1.0)).mul_scalar(4.0) * w2;
        let dg = w1 + ds.matmul(w3).reshape([n]).div_scalar(f as f32);
        (g, dg)
    }

    /// gamma(0) and gamma(1), [1] each.
    pub fn endpoints(&self) -> (Tensor<1>, Tensor<1>) {
        self.endpoints_with(false)
    }

    fn endpoints_with(&self, detach: bool) -> (Tensor<1>, Tensor<1>) {
        if !self.learned {
            let device = self.w1.val().device();
            let c = |v: f64| Tensor::<1>::from_data(TensorData::new(vec![v as f32], [1]), &device);
            return (c(self.gamma_min), c(self.gamma_max));
        }
        let (g0, r) = match detach {
            true => (self.gamma_0.val().detach(), self.r.val().detach()),
            false => (self.gamma_0.val(), self.r.val()),
        };
        let g1 = g0.clone() + activation::softplus(r, 1.0);
        (g0, g1)
    }

    /// gamma(t) and gamma'(t) for t of shape [B].
    pub fn forward(&self, t: Tensor<1>) -> (Tensor<1>, Tensor<1>) {
        self.forward_with(t, None)
    }

    /// [`Gamma::forward`] with no gradient to one part of the schedule: its interior (the
    /// monotone network) or its endpoints (gamma_0, gamma_1).
    pub fn forward_with(
        &self,
        t: Tensor<1>,
        detach: Option<diffuse_core::vdm::SchedulePart>,
    ) -> (Tensor<1>, Tensor<1>) {
        use diffuse_core::vdm::SchedulePart;
        let n = t.dims()[0];
        let (g0, g1) = self.endpoints_with(detach == Some(SchedulePart::Endpoints));
        let range = g1 - g0.clone();
        if !self.learned {
            return (t * range.clone() + g0, range.expand([n]));
        }
        let interior = detach == Some(SchedulePart::Interior);
        let device = t.device();
        let ends = Tensor::<1>::from_data(TensorData::new(vec![0.0f32, 1.0], [2]), &device);
        let (g_ends, _) = self.unnormalized(ends, interior);
        let (g, dg) = self.unnormalized(t, interior);
        let g_at0 = g_ends.clone().narrow(0, 0, 1);
        let span = g_ends.narrow(0, 1, 1) - g_at0.clone();
        let scale = range / span;
        ((g - g_at0) * scale.clone() + g0, dg * scale)
    }

    /// gamma at each of `t` on the host (no gradient).
    pub fn values(&self, t: &[f64], device: &Device) -> Vec<f64> {
        let t = Tensor::<1>::from_data(
            TensorData::new(t.iter().map(|&v| v as f32).collect(), [t.len()]),
            device,
        );
        self.forward(t)
            .0
            .into_data()
            .convert::<f64>()
            .try_into_vec::<f64>()
            .unwrap_or_default()
    }

    /// What the noise predictor is told for gamma: 999 (gamma - gamma_min) / (gamma_max -
    /// gamma_min), on the scale of a timestep (the VDM code's normalization of gamma, times
    /// the 999 this project's networks are told at t = 1).
    pub fn condition(&self, gamma: Tensor<1>) -> Tensor<1> {
        gamma
            .sub_scalar(self.gamma_min as f32)
            .mul_scalar((999.0 / (self.gamma_max - self.gamma_min)) as f32)
    }
}

/// A noise predictor (the MLP, the U-Net) with its VDM schedule: what a VDM run trains, saves
/// and samples with.
#[derive(Module, Debug)]
pub struct Vdm<N: Module> {
    pub net: N,
    pub gamma: Gamma,
}

impl<const D: usize, N: Module + diffuse_core::Denoiser<D>> diffuse_core::vdm::VdmModel<D>
    for Vdm<N>
{
    fn gamma(&self, t: Tensor<1>) -> (Tensor<1>, Tensor<1>) {
        self.gamma.forward(t)
    }

    fn gamma_without(
        &self,
        t: Tensor<1>,
        part: diffuse_core::vdm::SchedulePart,
    ) -> (Tensor<1>, Tensor<1>) {
        self.gamma.forward_with(t, Some(part))
    }

    fn learned_interior(&self) -> bool {
        self.gamma.is_learned()
    }

    fn gamma_endpoints(&self) -> (Tensor<1>, Tensor<1>) {
        self.gamma.endpoints()
    }

    fn noise(&self, z: Tensor<D>, gamma: Tensor<1>) -> Tensor<D> {
        self.net.denoise(z, self.gamma.condition(gamma))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(x: Tensor<1>) -> Vec<f64> {
        x.into_data()
            .convert::<f64>()
            .try_into_vec::<f64>()
            .unwrap()
    }

    /// gamma is increasing on a fine grid for random weights, meets its endpoints, and its
    /// closed-form derivative agrees with central differences.
    #[test]
    fn learned_gamma_is_monotone_with_the_right_derivative() {
        let device = Device::default();
        for seed in 0..4 {
            device.seed(seed);
            let config = GammaConfig {
                features: 64,
                ..GammaConfig::default()
            };
            let gamma = config.init(&device);
            // Sharper hidden units than the init's, so the curve is far from linear.
            let gamma = Gamma {
                w2: gamma.w2.map(|w| w.mul_scalar(8.0)),
                ..gamma
            };
            let n = 2001;
            let t: Vec<f32> = (0..n).map(|i| i as f32 / (n - 1) as f32).collect();
            let tt = Tensor::<1>::from_data(TensorData::new(t.clone(), [n]), &device);
            let (g, dg) = gamma.forward(tt);
            let (g, dg) = (host(g), host(dg));
            assert!(
                (g[0] + 13.3).abs() < 1e-4 && (g[n - 1] - 5.0).abs() < 1e-3,
                "{} {}",
                g[0],
                g[n - 1]
            );
            assert!(
                g.windows(2).all(|w| w[1] >= w[0]),
                "not monotone (seed {seed})"
            );
            assert!(dg.iter().all(|&d| d > 0.0));
            let h = 1e-3f64;
            for &i in &[100usize, 700, 1500] {
                let at = |x: f64| {
                    host(
                        gamma
                            .forward(Tensor::from_data(
                                TensorData::new(vec![x as f32], [1]),
                                &device,
                            ))
                            .0,
                    )[0]
                };
                let fd = (at(t[i] as f64 + h) - at(t[i] as f64 - h)) / (2.0 * h);
                assert!(
                    (fd - dg[i]).abs() < 2e-2 * dg[i].abs().max(1.0),
                    "t {}: {fd} vs {}",
                    t[i],
                    dg[i]
                );
            }
        }
    }

    #[test]
    fn fixed_gamma_is_linear() {
        let device = Device::default();
        let gamma = GammaConfig {
            kind: GammaKind::FixedLinear,
            ..GammaConfig::default()
        }
        .init(&device);
        let v = gamma.values(&[0.0, 0.5, 1.0], &device);
        assert!(
            (v[0] + 13.3).abs() < 1e-5 && (v[1] + 4.15).abs() < 1e-5 && (v[2] - 5.0).abs() < 1e-5
        );
    }

    /// The variance-minimizing gradient (`vdm_terms_scaled` with c = 2 L / d, after a pass
    /// without gradients) gives the schedule's interior the gradient of mean((L / d)^2) and its
    /// endpoints the gradient of the bound, each computed the plain way.
    #[test]
    fn variance_minimization_gives_the_interior_the_gradient_of_the_squared_loss() {
        use diffuse_core::vdm::{DataModel, DiffusionTime, vdm_terms, vdm_terms_scaled};
        use rand::SeedableRng;
        let ad = Device::default().autodiff();
        ad.seed(3);
        let model = Vdm {
            net: crate::MlpConfig {
                hidden_width: 16,
                hidden_layers: 1,
                time_embed_dim: 8,
                ..Default::default()
            }
            .init(&ad)
            .unwrap(),
            gamma: GammaConfig {
                features: 8,
                ..GammaConfig::default()
            }
            .init(&ad),
        };
        let x = Tensor::<2>::from_data(
            TensorData::new(vec![0.5f32, -1.0, 1.5, 0.2, -0.3, 0.9], [3, 2]),
            &ad,
        );
        let times = [0.2, 0.55, 0.9];
        let d = 2.0f32;
        let grads_of = |loss: Tensor<1>| {
            let g = loss.backward();
            let get = |p: &Param<Tensor<1>>| host(p.val().grad(&g).unwrap());
            (get(&model.gamma.w2), get(&model.gamma.gamma_0))
        };
        // The trick.
        let quiet = model.clone().no_grad();
        let rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let c = vdm_terms(
            &quiet,
            x.clone(),
            &times,
            DiffusionTime::Continuous,
            DataModel::Continuous,
            &mut rng.clone(),
        )
        .diffusion
        .detach()
        .mul_scalar(2.0 / d);
        let trick = vdm_terms_scaled(
            &model,
            x.clone(),
            &times,
            DiffusionTime::Continuous,
            DataModel::Continuous,
            &mut rng.clone(),
            Some(c),
        )
        .total()
        .mean()
        .div_scalar(d);
        let (interior, ends) = grads_of(trick);
        // The plain gradients: of mean((L_diff / d)^2) for the interior, of the bound for the
        // endpoints.
        let plain = |square: bool| {
            let t = vdm_terms(
                &model,
                x.clone(),
                &times,
                DiffusionTime::Continuous,
                DataModel::Continuous,
                &mut rng.clone(),
            );
            if square {
                t.diffusion.div_scalar(d).powi_scalar(2).mean()
            } else {
                t.total().mean().div_scalar(d)
            }
        };
        let (want_interior, _) = grads_of(plain(true));
        let (_, want_ends) = grads_of(plain(false));
        for (a, b) in interior
            .iter()
            .zip(&want_interior)
            .chain(ends.iter().zip(&want_ends))
        {
            assert!((a - b).abs() < 1e-4 * b.abs().max(1e-2), "{a} vs {b}");
        }
        assert!(want_interior.iter().any(|g| g.abs() > 1e-6));
    }
}
