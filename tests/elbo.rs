//! The ELBO family: the bound's pieces against what they must equal, and every family's bound
//! above the true NLL of a 2-D mixture whose density is known.
//!
//! - probabilistic PCA (a linear-Gaussian VAE) has the exact log-likelihood N(x; mu, W W^T +
//!   s^2 I): with the exact posterior as its encoder the ELBO equals it for every draw, and with
//!   a worse encoder the IWAE bound rises towards it as K grows;
//! - the reparameterized gradient of a fixed-noise -ELBO equals its finite differences;
//! - the VDM's T-step diffusion loss tends to its continuous-time loss as T grows, and on DDPM's
//!   linear-beta chain it is DDPM's L_{t-1} term for term, as its prior term is DDPM's L_T.

use burn::tensor::{Device, Tensor, TensorData};
use diffuse_core::Prediction;
use diffuse_core::ScheduleConfig;
use diffuse_core::discrete::bound::{
    ReverseVariance, fixed_log_variance, prior_kl, reverse_mean, vlb_term,
};
use diffuse_core::elbo::{
    LatentHierarchy, Observation, elbo_terms, log_importance_weight, log_mean_exp,
};
use diffuse_core::gaussian::Decoder;
use diffuse_core::vdm::{continuous_diffusion_loss, diffuse, discrete_diffusion_loss, prior_loss};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::common::{diffuse as run_diffuse, scratch, stderr};

fn tensor<const D: usize>(v: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn host(x: Tensor<1>) -> Vec<f64> {
    x.into_data()
        .convert::<f64>()
        .try_into_vec::<f64>()
        .unwrap()
}

/// PPCA in 3-D with a 2-D latent: x = W z + mu + s e. W's columns are orthogonal (1 x 0.4 + 2 x
/// -0.2 + 0 = 0), so the exact
/// posterior's covariance s^2 (W^T W + s^2 I)^-1 is diagonal, as the VAE's encoder is.
struct Ppca {
    w: [[f64; 2]; 3],
    mu: [f64; 3],
    s: f64,
    /// Encoder: the exact posterior, its mean shifted by `shift` and its log-variance by
    /// `logvar_shift` (both 0: optimal).
    shift: f64,
    logvar_shift: f64,
}

impl Ppca {
    fn new(shift: f64, logvar_shift: f64) -> Self {
        Self {
            w: [[1.0, 0.4], [2.0, -0.2], [0.0, 0.5]],
            mu: [0.3, -0.1, 0.2],
            s: 0.3,
            shift,
            logvar_shift,
        }
    }

    /// W^T W's diagonal (its off-diagonal is 0 by the choice of W).
    fn wtw(&self) -> [f64; 2] {
        [0, 1].map(|j| (0..3).map(|i| self.w[i][j] * self.w[i][j]).sum())
    }

    /// log N(x; mu, W W^T + s^2 I), by the 3 x 3 determinant and inverse.
    fn log_likelihood(&self, x: [f64; 3]) -> f64 {
        let c: [[f64; 3]; 3] = std::array::from_fn(|i| {
            std::array::from_fn(|j| {
                (0..2).map(|k| self.w[i][k] * self.w[j][k]).sum::<f64>()
                    + if i == j { self.s * self.s } else { 0.0 }
            })
        });
        let det = c[0][0] * (c[1][1] * c[2][2] - c[1][2] * c[2][1])
            - c[0][1] * (c[1][0] * c[2][2] - c[1][2] * c[2][0])
            + c[0][2] * (c[1][0] * c[2][1] - c[1][1] * c[2][0]);
        let cof = |i: usize, j: usize| {
            let (r, q): (Vec<usize>, Vec<usize>) = (
                (0..3).filter(|&a| a != j).collect(),
                (0..3).filter(|&b| b != i).collect(),
            );
            let m = c[r[0]][q[0]] * c[r[1]][q[1]] - c[r[0]][q[1]] * c[r[1]][q[0]];
            if (i + j).is_multiple_of(2) { m } else { -m }
        };
        let d: Vec<f64> = (0..3).map(|i| x[i] - self.mu[i]).collect();
        let mut quad = 0.0;
        for i in 0..3 {
            for j in 0..3 {
                quad += d[i] * cof(i, j) / det * d[j];
            }
        }
        -0.5 * (3.0 * (2.0 * std::f64::consts::PI).ln() + det.ln() + quad)
    }
}

impl LatentHierarchy for Ppca {
    fn levels(&self) -> usize {
        1
    }

    fn encode(&self, _: usize, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let device = x.device();
        let n = x.dims()[0];
        let m = self.wtw().map(|v| v + self.s * self.s);
        // mean_j = (W^T (x - mu))_j / m_j; variance_j = s^2 / m_j.
        let a: Vec<f32> = (0..3)
            .flat_map(|i| (0..2).map(move |j| (i, j)))
            .map(|(i, j)| (self.w[i][j] / m[j]) as f32)
            .collect();
        let a = tensor(a, [3, 2], &device);
        let mu = tensor(self.mu.map(|v| v as f32).to_vec(), [1, 3], &device);
        let mean = (x - mu).matmul(a).add_scalar(self.shift as f32);
        let logvar: Vec<f32> = (0..n)
            .flat_map(|_| m.map(|m| ((self.s * self.s / m).ln() + self.logvar_shift) as f32))
            .collect();
        (mean, tensor(logvar, [n, 2], &device))
    }

    fn decode(&self, _: usize, z: Tensor<2>) -> Tensor<2> {
        let device = z.device();
        let n = z.dims()[0];
        let wt: Vec<f32> = (0..2)
            .flat_map(|j| (0..3).map(move |i| (i, j)))
            .map(|(i, j)| self.w[i][j] as f32)
            .collect();
        let mean = z.matmul(tensor(wt, [2, 3], &device))
            + tensor(self.mu.map(|v| v as f32).to_vec(), [1, 3], &device);
        let log_scale = Tensor::<2>::full([n, 3], self.s.ln() as f32, &device);
        Tensor::cat(vec![mean, log_scale], 1)
    }
}

fn ppca_points() -> Vec<[f64; 3]> {
    vec![
        [0.5, 1.0, 0.1],
        [-1.0, -2.5, 0.7],
        [2.0, 3.0, -0.4],
        [0.0, 0.0, 0.0],
    ]
}

fn points_tensor(p: &[[f64; 3]], device: &Device) -> Tensor<2> {
    tensor(
        p.iter().flatten().map(|&v| v as f32).collect(),
        [p.len(), 3],
        device,
    )
}

#[test]
fn ppca_elbo_with_the_exact_posterior_is_the_log_likelihood() {
    let device = Device::default();
    let model = Ppca::new(0.0, 0.0);
    let pts = ppca_points();
    let exact: Vec<f64> = pts.iter().map(|&x| model.log_likelihood(x)).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for _ in 0..3 {
        let elbo = host(
            elbo_terms(
                &model,
                points_tensor(&pts, &device),
                Observation::Gaussian,
                &mut rng,
            )
            .total()
            .neg(),
        );
        let w = host(log_importance_weight(
            &model,
            points_tensor(&pts, &device),
            Observation::Gaussian,
            &mut rng,
        ));
        for i in 0..pts.len() {
            // The analytic KL makes the ELBO exact in expectation only; one draw's
            // reconstruction term varies. Each importance weight is exact for every draw.
            assert!(
                (w[i] - exact[i]).abs() < 2e-4,
                "weight {} vs log p {}",
                w[i],
                exact[i]
            );
            assert!(elbo[i] < exact[i] + 5.0, "{} vs {}", elbo[i], exact[i]);
        }
    }
    // The ELBO's mean over many draws is the log-likelihood.
    let n = 4000;
    let many: Vec<[f64; 3]> = (0..n).map(|i| pts[i % pts.len()]).collect();
    let elbo = host(
        elbo_terms(
            &model,
            points_tensor(&many, &device),
            Observation::Gaussian,
            &mut rng,
        )
        .total()
        .neg(),
    );
    for (i, e) in exact.iter().enumerate() {
        let mine: Vec<f64> = elbo.iter().skip(i).step_by(pts.len()).copied().collect();
        let mean = mine.iter().sum::<f64>() / mine.len() as f64;
        let sd =
            (mine.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (mine.len() - 1) as f64).sqrt();
        let se = sd / (mine.len() as f64).sqrt();
        assert!(
            (mean - e).abs() < 4.0 * se + 1e-4,
            "ELBO {mean} +- {se} vs log p {e}"
        );
    }
}

#[test]
fn ppca_iwae_rises_to_the_log_likelihood_as_k_grows() {
    let device = Device::default();
    let model = Ppca::new(0.8, 1.0);
    let pts = ppca_points();
    let exact: f64 = pts.iter().map(|&x| model.log_likelihood(x)).sum::<f64>() / pts.len() as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // Average over 50 repetitions of each K, so that the ordering is not noise.
    let bound = |k: usize, rng: &mut ChaCha8Rng| -> f64 {
        let mut total = 0.0;
        for _ in 0..50 {
            let w: Vec<Vec<f64>> = (0..k)
                .map(|_| {
                    host(log_importance_weight(
                        &model,
                        points_tensor(&pts, &device),
                        Observation::Gaussian,
                        rng,
                    ))
                })
                .collect();
            total += log_mean_exp(&w).iter().sum::<f64>() / pts.len() as f64;
        }
        total / 50.0
    };
    let l: Vec<f64> = [1, 10, 100, 1000]
        .iter()
        .map(|&k| bound(k, &mut rng))
        .collect();
    eprintln!("log p {exact:.4}; IWAE K = 1, 10, 100, 1000: {l:?}");
    assert!(
        l.windows(2).all(|w| w[1] > w[0]),
        "not increasing in K: {l:?}"
    );
    assert!(l[3] < exact + 1e-3, "L_1000 {} above log p {exact}", l[3]);
    assert!(
        exact - l[3] < 0.1 * (exact - l[0]),
        "L_1000 {} not near log p {exact} (L_1 {})",
        l[3],
        l[0]
    );
}

/// d(-ELBO)/d(encoder mean, log-variance) by autodiff through the reparameterization, with the
/// noise fixed by the seed, against central differences of the same function.
#[test]
fn reparameterized_gradient_matches_finite_differences() {
    let ad = Device::default().autodiff();
    let x = vec![0.4f32, -0.3, 1.1];
    let enc = vec![0.2f32, -0.5, -0.7, 0.3]; // mean (2), log-variance (2)
    struct Leaf<'a> {
        enc: Tensor<2>,
        ppca: &'a Ppca,
    }
    impl LatentHierarchy for Leaf<'_> {
        fn levels(&self) -> usize {
            1
        }
        fn encode(&self, _: usize, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
            let n = x.dims()[0];
            (
                self.enc.clone().narrow(1, 0, 2).expand([n, 2]),
                self.enc.clone().narrow(1, 2, 2).expand([n, 2]),
            )
        }
        fn decode(&self, l: usize, z: Tensor<2>) -> Tensor<2> {
            self.ppca.decode(l, z)
        }
    }
    let ppca = Ppca::new(0.0, 0.0);
    let loss = |enc: &[f32], device: &Device, grad: bool| {
        let mut e = tensor(enc.to_vec(), [1, 4], device);
        if grad {
            e = e.require_grad();
        }
        let model = Leaf {
            enc: e.clone(),
            ppca: &ppca,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let l = elbo_terms(
            &model,
            tensor(x.clone(), [1, 3], device),
            Observation::Gaussian,
            &mut rng,
        )
        .total()
        .sum();
        (l, e)
    };
    let (l, e) = loss(&enc, &ad, true);
    let grads = l.backward();
    let g: Vec<f64> = e
        .grad(&grads)
        .unwrap()
        .into_data()
        .convert::<f64>()
        .try_into_vec::<f64>()
        .unwrap();
    let plain = Device::default();
    for i in 0..4 {
        let h = 1e-2f32;
        let (mut up, mut down) = (enc.clone(), enc.clone());
        up[i] += h;
        down[i] -= h;
        let f = |v: &[f32]| host(loss(v, &plain, false).0.reshape([1]))[0];
        let fd = (f(&up) - f(&down)) / (2.0 * h as f64);
        assert!(
            (fd - g[i]).abs() < 2e-2 * g[i].abs().max(1.0),
            "parameter {i}: autodiff {} vs differences {fd}",
            g[i]
        );
    }
}

/// gamma(t) = -6 + 10 t + 2 sin(3 t) (increasing), a smooth noise predictor, one x and eps.
fn vdm_pieces(t: &[f64], device: &Device) -> (Tensor<2>, Tensor<2>, Tensor<1>, Tensor<1>) {
    let n = t.len();
    let g: Vec<f32> = t
        .iter()
        .map(|&t| (-6.0 + 10.0 * t + 2.0 * (3.0 * t).sin()) as f32)
        .collect();
    let dg: Vec<f32> = t
        .iter()
        .map(|&t| (10.0 + 6.0 * (3.0 * t).cos()) as f32)
        .collect();
    let x = tensor([0.7f32, -0.4].repeat(n), [n, 2], device);
    let eps = tensor([0.3f32, 1.2].repeat(n), [n, 2], device);
    (x, eps, tensor(g, [n], device), tensor(dg, [n], device))
}

fn eps_hat(z: Tensor<2>, gamma: Tensor<1>) -> Tensor<2> {
    let n = z.dims()[0];
    z.clone().mul_scalar(0.8).tanh() * burn::tensor::activation::sigmoid(gamma).reshape([n, 1])
}

#[test]
fn vdm_discrete_loss_tends_to_the_continuous_loss() {
    let device = Device::default();
    // The continuous loss by the midpoint rule on 100,000 times.
    let fine = 100_000;
    let t: Vec<f64> = (0..fine).map(|i| (i as f64 + 0.5) / fine as f64).collect();
    let (x, eps, g, dg) = vdm_pieces(&t, &device);
    let z = diffuse(x, g.clone(), eps.clone());
    let integrand = host(continuous_diffusion_loss(dg, eps.clone(), eps_hat(z, g)));
    let continuous = integrand.iter().sum::<f64>() / fine as f64;
    let mut gaps = Vec::new();
    for steps in [10usize, 100, 1000] {
        let ts: Vec<f64> = (1..=steps).map(|i| i as f64 / steps as f64).collect();
        let ss: Vec<f64> = ts.iter().map(|t| t - 1.0 / steps as f64).collect();
        let (x, eps, g, _) = vdm_pieces(&ts, &device);
        let (_, _, gs, _) = vdm_pieces(&ss, &device);
        let z = diffuse(x, g.clone(), eps.clone());
        // Each term is T times the step's share; the sum over the T steps is their mean.
        let terms = host(discrete_diffusion_loss(
            g.clone(),
            gs,
            steps,
            eps,
            eps_hat(z, g),
        ));
        let discrete = terms.iter().sum::<f64>() / steps as f64;
        gaps.push((discrete - continuous).abs());
        eprintln!("T {steps}: {discrete:.6} vs continuous {continuous:.6}");
    }
    // The gap falls as 1/T (exp(d gamma) - 1 = d gamma + d gamma^2 / 2 + ..., and the terms
    // are read at each step's end): a tenth per tenfold T, within a margin.
    assert!(
        gaps[1] < 0.15 * gaps[0] && gaps[2] < 0.15 * gaps[1],
        "{gaps:?}"
    );
    assert!(
        gaps[2] < 0.01 * continuous.abs(),
        "{gaps:?} vs {continuous}"
    );
}

#[test]
fn vdm_on_ddpm_linear_schedule_is_ddpm_bound_term_by_term() {
    let device = Device::default();
    let schedule = ScheduleConfig::default().build().unwrap();
    let abar = &schedule.alphas_cumprod;
    let big_t = abar.len();
    let gamma = |i: usize| ((1.0 - abar[i]) / abar[i]).ln();
    let ts: Vec<usize> = vec![1, 2, 10, 100, 500, 998, 999];
    let n = ts.len();
    let x0 = tensor([0.7f32, -0.4].repeat(n), [n, 2], &device);
    let eps = tensor([0.3f32, 1.2].repeat(n), [n, 2], &device);
    let g_t = tensor(ts.iter().map(|&t| gamma(t) as f32).collect(), [n], &device);
    let g_s = tensor(
        ts.iter().map(|&t| gamma(t - 1) as f32).collect(),
        [n],
        &device,
    );
    let x_t = diffuse(x0.clone(), g_t.clone(), eps.clone());
    let predicted = eps_hat(x_t.clone(), g_t.clone());
    // VDM: one step's term, (exp(gamma_t - gamma_s) - 1) ||eps - eps_hat||^2 / 2.
    let vdm = host(discrete_diffusion_loss(g_t, g_s, 1, eps, predicted.clone()));
    // DDPM: L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)), posterior variance.
    let (mean, _) = reverse_mean(
        &schedule,
        Prediction::Epsilon,
        predicted,
        x_t.clone(),
        &ts,
        None,
    );
    let logvar = fixed_log_variance::<2>(&schedule, ReverseVariance::FixedSmall, &ts, &device);
    let ddpm = host(vlb_term(
        &schedule,
        x0.clone(),
        x_t,
        &ts,
        mean,
        logvar,
        Decoder::Continuous,
    ));
    for i in 0..n {
        let rel = (vdm[i] - ddpm[i]).abs() / ddpm[i].abs().max(1e-6);
        assert!(
            rel < 2e-3,
            "t {}: VDM {} vs DDPM {}",
            ts[i],
            vdm[i],
            ddpm[i]
        );
    }
    // The prior terms: KL(q(x_T | x_0) || N(0, I)) both ways.
    let vdm_prior = host(prior_loss(
        x0.clone(),
        tensor(vec![gamma(big_t - 1) as f32], [1], &device),
    ));
    let ddpm_prior = host(prior_kl(&schedule, x0));
    assert!(
        (vdm_prior[0] - ddpm_prior[0]).abs() < 1e-5 + 1e-3 * ddpm_prior[0].abs(),
        "{vdm_prior:?} vs {ddpm_prior:?}"
    );
}

fn component_mean(k: usize) -> [f64; 2] {
    let a = k as f64 * std::f64::consts::PI / 4.0;
    [2.0 * a.cos(), 2.0 * a.sin()]
}

fn field(dir: &std::path::Path, file: &str, key: &str) -> f64 {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{file} has no {key}: {v}"))
}

/// Each ELBO family trained briefly on the eight Gaussians (std 0.1) and evaluated on 2,000
/// fresh points of the mixture: its bound lies above the true NLL, and the VAE's IWAE bound
/// below its ELBO.
#[test]
fn every_elbo_family_bound_lies_above_the_true_nll() {
    use rand::RngExt;
    use rand_distr::StandardNormal;
    let dir = scratch("elbo-bounds");
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let points: Vec<[f64; 2]> = (0..2000)
        .map(|_| {
            let m = component_mean(rng.random_range(0..8));
            let (a, b): (f64, f64) = (rng.sample(StandardNormal), rng.sample(StandardNormal));
            [m[0] + 0.1 * a, m[1] + 0.1 * b]
        })
        .collect();
    let truth = points
        .iter()
        .map(|x| {
            let p: f64 = (0..8)
                .map(|k| {
                    let m = component_mean(k);
                    let d2 = (x[0] - m[0]).powi(2) + (x[1] - m[1]).powi(2);
                    (-d2 / 0.02).exp() / (2.0 * std::f64::consts::PI * 0.01) / 8.0
                })
                .sum();
            -p.ln()
        })
        .sum::<f64>()
        / 2000.0
        / 2.0
        / std::f64::consts::LN_2;
    let file = dir.join("points.npy");
    let flat: Vec<f32> = points.iter().flatten().map(|&v| v as f32).collect();
    diffuse_data::write_npy(&file, &[2000, 2], &flat).unwrap();
    for (family, steps) in [("vae", "1500"), ("hvae", "1500"), ("vdm", "1500")] {
        let run = dir.join(family);
        let out = run_diffuse(&[
            "train",
            "--family",
            family,
            "--dataset",
            "eight_gaussians",
            "--steps",
            steps,
            "--out",
            run.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{family}: {}", stderr(&out));
        let out = run_diffuse(&[
            "eval",
            "--run",
            run.to_str().unwrap(),
            "--nll",
            "--data",
            file.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{family}: {}", stderr(&out));
        let (bits, ci) = (
            field(&run, "nll_data.json", "bits_per_dim"),
            field(&run, "nll_data.json", "bits_per_dim_ci95"),
        );
        eprintln!("{family}: {bits:.4} +- {ci:.4} bits/dim; true {truth:.4}");
        assert!(
            bits + ci > truth,
            "{family}'s bound {bits} +- {ci} beats the true NLL {truth}"
        );
        if family == "vae" {
            let elbo = field(&run, "nll_data.json", "elbo_bits_per_dim");
            assert!(bits <= elbo, "IWAE {bits} above the ELBO {elbo}");
        }
    }
}

/// A VAE whose KL warm-up spans the interruption resumes to the bytes of an uninterrupted run
/// (the warm-up's step is the objective's checkpointed state).
#[test]
fn vae_resume_keeps_its_kl_warmup() {
    let dir = scratch("elbo-resume");
    let config = format!(
        "family = \"vae\"\n{}[vae]\nkl_warmup = 2500\n",
        crate::reliability::SMALL
    );
    crate::reliability::resume_case(&dir.join("vae"), &config);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Each section and flag of the ELBO family is refused where it does not apply, by name.
#[test]
fn elbo_family_refusals_name_the_field() {
    use crate::common::assert_config_refused;
    let dir = scratch("elbo-refusals");
    assert_config_refused(
        &dir,
        "vdm-on-vae.toml",
        "family = \"vae\"\n[vdm]\nsample_steps = 10\n",
        "`vdm` applies to the vdm family",
    );
    assert_config_refused(
        &dir,
        "levels.toml",
        "family = \"vae\"\n[vae]\nlevels = 3\n",
        "a VAE has one level",
    );
    assert_config_refused(
        &dir,
        "hvae-levels.toml",
        "family = \"hvae\"\n[vae]\nlevels = 1\n",
        "vae.levels must be in 2..=64",
    );
    assert_config_refused(
        &dir,
        "bernoulli-points.toml",
        "family = \"vae\"\n[vae]\nobservation = \"bernoulli\"\n",
        "points take gaussian",
    );
    assert_config_refused(
        &dir,
        "ddpm-field.toml",
        "family = \"vdm\"\n[train.loss]\nimportance_sampling = true\n",
        "train.loss applies to the ddpm family",
    );
    assert_config_refused(
        &dir,
        "gamma-order.toml",
        "family = \"vdm\"\n[vdm.gamma]\ngamma_min = 3.0\ngamma_max = -3.0\n",
        "must be below vdm.gamma.gamma_max",
    );
    // --iwae-k on an hvae run, and --method ode on a VAE run.
    let run = dir.join("hvae");
    let out = run_diffuse(&[
        "train",
        "--family",
        "hvae",
        "--dataset",
        "eight_gaussians",
        "--steps",
        "20",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_diffuse(&[
        "eval",
        "--run",
        run.to_str().unwrap(),
        "--nll",
        "--iwae-k",
        "10",
    ]);
    assert!(
        stderr(&out).contains("--iwae-k applies to the vae family"),
        "{}",
        stderr(&out)
    );
    let out = run_diffuse(&[
        "eval",
        "--run",
        run.to_str().unwrap(),
        "--nll",
        "--method",
        "ode",
    ]);
    assert!(stderr(&out).contains("--method vlb"), "{}", stderr(&out));
    for (flags, expect) in [
        (&["--clip-x0", "1"][..], "--clip-x0 applies to DDPM's bound"),
        (
            &["--t-samples", "10"][..],
            "--t-samples applies to diffusion models",
        ),
    ] {
        let mut argv = vec!["eval", "--run", run.to_str().unwrap(), "--nll"];
        argv.extend_from_slice(flags);
        let out = run_diffuse(&argv);
        assert!(stderr(&out).contains(expect), "{flags:?}: {}", stderr(&out));
    }
    let out = run_diffuse(&[
        "sample",
        "--run",
        run.to_str().unwrap(),
        "--sampler",
        "ddim",
        "--out",
        dir.join("s.npy").to_str().unwrap(),
    ]);
    assert!(
        stderr(&out).contains("draws from its prior and decoder"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("s.npy").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
