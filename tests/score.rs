//! Score-based models with exact scores: NCSN's denoising score matching loss of the exact
//! score of Gaussian data is its known minimum, and annealed Langevin dynamics and
//! predictor-corrector sampling given the exact score of a Gaussian mixture draw its weights
//! and variances.

use burn::tensor::{Device, Tensor, TensorData};
use diffuse_core::coef::randn;
use diffuse_core::level::Time;
use diffuse_core::sde::Sde;
use diffuse_core::sde::ncsn::{NoiseLevels, annealed_langevin, langevin_step_size};
use diffuse_core::sde::pc::{self, Pc, Predictor};
use diffuse_train::{Ncsn, Objective};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// sigma from a level's conditioning value c (the inverse of `NoiseLevels::condition`).
fn sigma_of(levels: &NoiseLevels, c: f32) -> f64 {
    let (lo, hi) = (levels.sigma_min().ln(), levels.sigma_max().ln());
    (lo + c as f64 / 999.0 * (hi - lo)).exp()
}

/// For data N(0, s^2 I) in D dimensions, the exact noise predictor at sigma is
/// sigma x / (s^2 + sigma^2) (minus sigma times the score of N(0, (s^2 + sigma^2) I)), and the
/// loss 1/2 E||f - z||^2 is then 1/2 D s^2 / (s^2 + sigma^2), averaged over the levels: the
/// part no network can remove. A network 50% off is measurably worse.
#[test]
fn dsm_loss_of_the_exact_score_is_its_known_minimum() {
    let device = Device::default();
    let (s, dims, batch, batches) = (0.7f64, 3usize, 4096usize, 40usize);
    let levels = NoiseLevels::geometric(5.0, 0.05, 12).unwrap();
    let minimum: f64 = levels
        .sigmas()
        .iter()
        .map(|sig| 0.5 * dims as f64 * s * s / (s * s + sig * sig))
        .sum::<f64>()
        / levels.len() as f64;
    let run = |scale: f32| -> (f64, f64) {
        let lv = levels.clone();
        let exact = move |x: Tensor<2>, c: Tensor<1>| {
            let c: Vec<f32> = c.into_data().try_to_vec().unwrap();
            let coef: Vec<f32> = c
                .iter()
                .map(|&c| {
                    let sig = sigma_of(&lv, c);
                    (sig / (s * s + sig * sig)) as f32 * scale
                })
                .collect();
            let n = coef.len();
            let device = x.device();
            x.mul(Tensor::<2>::from_data(
                TensorData::new(coef, [n, 1]),
                &device,
            ))
        };
        let mut objective = Ncsn::<2> {
            levels: levels.clone(),
            sigma_data: None,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let values: Vec<f64> = (0..batches)
            .map(|_| {
                let x0 = randn(&mut rng, [batch, dims], &device).mul_scalar(s as f32);
                Objective::loss(&mut objective, &exact, x0, &mut rng).into_scalar::<f32>() as f64
            })
            .collect();
        let mean = values.iter().sum::<f64>() / batches as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (batches - 1) as f64;
        (mean, (var / batches as f64).sqrt())
    };
    let (loss, se) = run(1.0);
    eprintln!("DSM loss of the exact score {loss:.5} +- {se:.5}, minimum {minimum:.5}");
    assert!(
        (loss - minimum).abs() < 4.0 * se,
        "{loss} vs {minimum} (se {se})"
    );
    let (off, se_off) = run(1.5);
    assert!(off > minimum + 4.0 * se_off, "a network 50% off: {off}");
}

/// A mixture of three tight Gaussians in 2-D: weights 0.2, 0.3, 0.5, std 0.1, far apart.
struct Mixture {
    weights: [f64; 3],
    means: [[f32; 2]; 3],
    std: f64,
}

impl Mixture {
    /// The exact score of the mixture convolved with N(0, sigma^2 I).
    fn score(&self, x: Tensor<2>, sigma: f64) -> Tensor<2> {
        self.score_at(x, 1.0, sigma)
    }

    /// The exact score of x_t = mean x_0 + std z for x_0 drawn from the mixture: each
    /// component's score -(x - mean mu_k) / v, v = mean^2 std_k^2 + std^2, weighted by its
    /// responsibility.
    fn score_at(&self, x: Tensor<2>, scale: f64, sigma: f64) -> Tensor<2> {
        let v = (scale * self.std).powi(2) + sigma * sigma;
        let n = x.dims()[0];
        let device = x.device();
        let mut logits = Vec::new();
        let mut grads = Vec::new();
        for (w, mu) in self.weights.iter().zip(&self.means) {
            let m = Tensor::<2>::from_data(TensorData::new(mu.to_vec(), [1, 2]), &device)
                .mul_scalar(scale as f32);
            let d = x.clone() - m;
            let sq = d.clone().powi_scalar(2).sum_dim(1); // [n, 1]
            logits.push(sq.mul_scalar(-0.5 / v as f32).add_scalar(w.ln() as f32));
            grads.push(d.mul_scalar(-1.0 / v as f32));
        }
        let logits = Tensor::cat(logits, 1); // [n, 3]
        let r = burn::tensor::activation::softmax(logits, 1);
        let mut score = Tensor::<2>::zeros([n, 2], &device);
        for (k, g) in grads.into_iter().enumerate() {
            score = score + g.mul(r.clone().narrow(1, k, 1));
        }
        score
    }
}

/// Annealed Langevin (NCSN Algorithm 1, with the denoising step) given the exact score draws
/// the mixture's weights, means and each component's variance within 4 standard errors (the
/// chain lags the falling levels: its variances came out 1-5% high over seeds 11-13, where the
/// standard error of a variance is 1.4-2.2%).
#[test]
fn annealed_langevin_with_the_exact_score_recovers_a_mixture() {
    let device = Device::default();
    let mix = Mixture {
        weights: [0.2, 0.3, 0.5],
        means: [[-4.0, 0.0], [4.0, 0.0], [0.0, 4.0]],
        std: 0.1,
    };
    let n = 20_000;
    // 100 levels from 8 to 0.01 (a tenth of the components' spread) and 200 steps at each, with
    // Technique 3's eps. With 60 levels down to 0.001 and 60 steps the chain lagged: the
    // weights came out 3 to 4 standard errors off (0.21 for 0.2) and the variances 5-10% high,
    // as the samples froze while the levels fell below the components' spread.
    let levels = NoiseLevels::geometric(8.0, 0.01, 100).unwrap();
    let steps = 200;
    let eps = langevin_step_size(&levels, steps);
    let seed = std::env::var("SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = randn(&mut rng, [n, 2], &device).mul_scalar(levels.sigma_max() as f32);
    let mut score = |x: Tensor<2>, i: usize| Ok(mix.score(x, levels.sigmas()[i]));
    let x = annealed_langevin(
        &mut score,
        &levels,
        steps,
        eps,
        x,
        &mut rng,
        true,
        &mut |_, _| {},
    )
    .unwrap();
    recovers(&mix, x, "annealed Langevin");
}

/// The samples' weights and means within 4 standard errors of the mixture's, and each
/// component's variance within 4 standard errors of its own.
fn recovers(mix: &Mixture, x: Tensor<2>, what: &str) {
    let n = x.dims()[0];
    let pts: Vec<f32> = x.into_data().try_to_vec().unwrap();
    let mut members: [Vec<[f64; 2]>; 3] = Default::default();
    for p in pts.chunks_exact(2) {
        let k = (0..3)
            .min_by(|&a, &b| {
                let d =
                    |k: usize| (p[0] - mix.means[k][0]).powi(2) + (p[1] - mix.means[k][1]).powi(2);
                d(a).total_cmp(&d(b))
            })
            .unwrap();
        members[k].push([p[0] as f64, p[1] as f64]);
    }
    for (k, group) in members.iter().enumerate() {
        let m = group.len() as f64;
        let share = m / n as f64;
        let se = (mix.weights[k] * (1.0 - mix.weights[k]) / n as f64).sqrt();
        eprintln!(
            "component {k}: weight {share:.4} (true {}, se {se:.4})",
            mix.weights[k]
        );
        assert!(
            (share - mix.weights[k]).abs() < 4.0 * se,
            "{what}: component {k}: weight {share}"
        );
        for d in 0..2 {
            let mean = group.iter().map(|p| p[d]).sum::<f64>() / m;
            let var = group.iter().map(|p| (p[d] - mean).powi(2)).sum::<f64>() / (m - 1.0);
            let truth = mix.std * mix.std;
            let se_var = truth * (2.0 / (m - 1.0)).sqrt();
            eprintln!(
                "  dim {d}: mean {mean:.4} (true {}), variance {var:.5} (true {truth}, se {se_var:.5})",
                mix.means[k][d]
            );
            assert!((mean - mix.means[k][d] as f64).abs() < 4.0 * (truth / m).sqrt());
            assert!(
                (var - truth).abs() < 4.0 * se_var,
                "{what}: component {k} dim {d}: variance {var}"
            );
        }
    }
}

/// Predictor-corrector (reverse diffusion + one Langevin step at snr 0.16, 1,000 steps) on the
/// VP and VE SDEs, given the exact score of the mixture's marginals, draws its weights, means
/// and variances within 4 standard errors.
#[test]
fn predictor_corrector_with_the_exact_score_recovers_a_mixture() {
    let device = Device::default();
    let mix = Mixture {
        weights: [0.2, 0.3, 0.5],
        means: [[-4.0, 0.0], [4.0, 0.0], [0.0, 4.0]],
        std: 0.1,
    };
    let pc = Pc {
        predictor: Predictor::ReverseDiffusion,
        corrector_steps: 1,
        snr: 0.16,
        steps: 1000,
        eps: 1e-3,
    };
    for sde in [
        Sde::vp(),
        Sde::Ve {
            sigma_min: 0.01,
            sigma_max: 8.0,
        },
    ] {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let x = sde.prior_sample(&mut rng, [20_000, 2], &device);
        let mut score = |x: Tensor<2>, t: Time| {
            let (mean, std) = sde.marginal(t);
            Ok(mix.score_at(x, mean, std))
        };
        let x = pc::sample(&mut score, &sde, &pc, x, &mut rng, &mut |_, _| {}).unwrap();
        recovers(&mix, x, &format!("PC on {sde:?}"));
    }
}
