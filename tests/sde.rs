//! The VP, sub-VP and VE SDEs against score_sde's definitions, and their reverse SDE and
//! probability-flow ODE, given the exact score of Gaussian data, drawing that Gaussian.
//!
//! Fixture: `python3 scripts/reference/sde.py` writes tests/fixtures/sde.json.

use burn::tensor::{Device, Tensor, TensorData};
use diffuse_core::coef::randn;
use diffuse_core::level::Time;
use diffuse_core::sde::Sde;
use diffuse_core::sde::pc::{Pc, Predictor, corrector_step, predictor_step};
use diffuse_core::solver::rk45::{Tolerance, rk45};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::common::{floats, json_fixture};

fn sde_named(name: &str) -> Sde {
    match name {
        "vp" => Sde::vp(),
        "sub_vp" => Sde::sub_vp(),
        _ => Sde::ve(),
    }
}

/// f(t), g(t), mean(t), std(t) within 1e-12 relative; prior log-density within 1e-5 (z is held
/// in float32); VP's discrete betas within 1e-15.
#[test]
fn sdes_match_score_sde() {
    let fixture = json_fixture("sde.json", "scripts/reference/sde.py");
    let z = floats(&fixture["z"]);
    let z = Tensor::<2>::from_data(
        TensorData::new(z.iter().map(|&v| v as f32).collect(), [2, 3]),
        &Device::default(),
    );
    for entry in fixture["sdes"].as_array().unwrap() {
        let name = entry["sde"].as_str().unwrap();
        let sde = sde_named(name);
        for row in entry["rows"].as_array().unwrap() {
            let t = Time(row["t"].as_f64().unwrap());
            let (f, g) = sde.coefficients(t);
            let (mean, std) = sde.marginal(t);
            for (what, got, want) in [
                ("f", f, &row["f"]),
                ("g", g, &row["g"]),
                ("mean", mean, &row["mean"]),
                ("std", std, &row["std"]),
            ] {
                let want = want.as_f64().unwrap();
                assert!(
                    (got - want).abs() <= 1e-12 * want.abs().max(1e-300),
                    "{name} {what} at {t:?}: {got} vs {want}"
                );
            }
        }
        for (got, want) in sde
            .prior_logp(z.clone())
            .iter()
            .zip(floats(&entry["prior_logp"]))
        {
            assert!(
                (got - want).abs() < 1e-5 * want.abs(),
                "{name} prior_logp {got} vs {want}"
            );
        }
        if let Some(betas) = entry.get("discrete_betas") {
            for (a, b) in sde.discrete_betas(1000).unwrap().iter().zip(floats(betas)) {
                assert!((a - b).abs() < 1e-15);
            }
        }
    }
}

/// score_sde's `discretize` (VP: DDPM's chain; VE: SMLD's; sub-VP: Euler-Maruyama), the reverse
/// SDE's and the probability-flow ODE's drifts, and one step of the reverse-diffusion and
/// Euler-Maruyama predictors and of the Langevin corrector (snr 0.16), at four times for N =
/// 1000 and N = 100, given the exact score of Gaussian data and the same noise: within 2e-5 of
/// the largest of 1 and the value (diffuse computes in float32, the reference in float64).
#[test]
fn discretization_reverse_drift_and_pc_steps_match_score_sde() {
    let fixture = json_fixture("sde.json", "scripts/reference/sde.py");
    let device = Device::default();
    let tensor = |key: &str| {
        let v = floats(&fixture[key]);
        Tensor::<2>::from_data(
            TensorData::new(v.iter().map(|&a| a as f32).collect(), [2, 3]),
            &device,
        )
    };
    let (x, z) = (tensor("x"), tensor("noise"));
    assert_eq!(fixture["data_mean"].as_f64(), Some(MEAN));
    assert_eq!(fixture["data_std"].as_f64(), Some(STD));
    let close = |what: &str, got: Tensor<2>, want: &serde_json::Value| {
        let got: Vec<f32> = got.into_data().try_to_vec().unwrap();
        for (g, w) in got.iter().zip(floats(want)) {
            assert!(
                (*g as f64 - w).abs() <= 2e-5 * w.abs().max(1.0),
                "{what}: {g} vs {w}"
            );
        }
    };
    let mut checked = 0;
    for entry in fixture["sdes"].as_array().unwrap() {
        let name = entry["sde"].as_str().unwrap();
        let sde = sde_named(name);
        for step in entry["steps"].as_array().unwrap() {
            let n = step["n"].as_u64().unwrap() as usize;
            let t = Time(step["t"].as_f64().unwrap());
            let at = format!("{name} N={n} t={}", t.0);
            let (f, g) = sde.discretize(t, n);
            let want_g = step["G"].as_f64().unwrap();
            assert!(
                (g - want_g).abs() <= 1e-12 * want_g,
                "{at} G: {g} vs {want_g}"
            );
            close(
                &format!("{at} f"),
                x.clone().mul_scalar(f as f32),
                &step["f"],
            );
            let s = score(&sde, x.clone(), t);
            for (key, pf) in [("reverse_drift", false), ("ode_drift", true)] {
                let drift = sde.reverse_drift(x.clone(), t, s.clone(), pf);
                close(&format!("{at} {key}"), drift, &step[key]);
            }
            for (key, predictor) in [
                ("reverse_diffusion", Predictor::ReverseDiffusion),
                ("euler_maruyama", Predictor::EulerMaruyama),
            ] {
                let pc = Pc {
                    predictor,
                    corrector_steps: 1,
                    snr: 0.16,
                    steps: n,
                    eps: 1e-3,
                };
                let (next, mean) = predictor_step(&sde, &pc, t, x.clone(), s.clone(), z.clone());
                close(&format!("{at} {key} x"), next, &step[key][0]);
                close(&format!("{at} {key} x_mean"), mean, &step[key][1]);
                if predictor == Predictor::ReverseDiffusion {
                    let next = corrector_step(&sde, &pc, t, x.clone(), s.clone(), z.clone());
                    close(&format!("{at} langevin"), next, &step["langevin"][0]);
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 3 * 2 * 4);
}

const MEAN: f64 = 0.7;
const STD: f64 = 0.5;

/// The exact score of the marginal at t of N(MEAN, STD^2) data: N(mean MEAN, mean^2 STD^2 + std^2).
fn score(sde: &Sde, x: Tensor<2>, t: Time) -> Tensor<2> {
    let (mean, std) = sde.marginal(t);
    let var = mean * mean * STD * STD + std * std;
    x.sub_scalar((mean * MEAN) as f32).div_scalar(-var as f32)
}

fn check(name: &str, x: Tensor<2>) {
    let n = x.dims()[0] as f64;
    let v: Vec<f32> = x.into_data().try_to_vec().unwrap();
    let mean = v.iter().map(|&a| a as f64).sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
    let (se_mean, se_var) = (STD / (2.0 * n).sqrt(), STD * STD * (2.0 / (2.0 * n)).sqrt());
    assert!((mean - MEAN).abs() < 4.0 * se_mean, "{name}: mean {mean}");
    assert!((var - STD * STD).abs() < 4.0 * se_var, "{name}: var {var}");
}

/// From the prior at t = 1 to t = 1e-5, the probability-flow ODE (RK45) and the reverse SDE
/// (Euler-Maruyama, 1000 steps) carry exact scores to the data's mean and variance, within 4
/// standard errors at 20,000 points (two coordinates each).
#[test]
fn reverse_sde_and_ode_with_the_exact_score_draw_the_data() {
    let device = Device::default();
    let eps = 1e-5;
    for sde in [Sde::vp(), Sde::sub_vp(), Sde::ve()] {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let x1 = sde.prior_sample(&mut rng, [20_000, 2], &device);
        let mut f = |t: f64, x: &Tensor<2>| {
            let s = score(&sde, x.clone(), Time(t));
            Ok(sde.reverse_drift(x.clone(), Time(t), s, true))
        };
        let (x0, stats) = rk45(
            &mut f,
            1.0,
            eps,
            x1.clone(),
            Tolerance::default(),
            &mut |_| {},
        )
        .unwrap();
        check(&format!("{sde:?} ODE ({} evaluations)", stats.nfe), x0);

        let n = 1000;
        let dt = (1.0 - eps) / n as f64;
        let mut x = x1;
        for i in 0..n {
            let t = Time(1.0 - i as f64 * dt);
            let drift = sde.reverse_drift(x.clone(), t, score(&sde, x.clone(), t), false);
            let (_, g) = sde.coefficients(t);
            x = x - drift.mul_scalar(dt as f32)
                + randn(&mut rng, [20_000, 2], &device).mul_scalar((g * dt.sqrt()) as f32);
        }
        check(&format!("{sde:?} reverse SDE"), x);
    }
}
