//! Adaptive Dormand-Prince RK5(4) (Dormand & Prince 1980; the method of scipy's `RK45`, which
//! score_sde uses for its probability-flow ODE), with scipy's error norm and step-size control.
//!
//! The state is any [`OdeState`]: a tensor for sampling, a tensor plus a log-density for the
//! likelihood. The whole batch is one system, as in score_sde: one step size for all items.

use burn::tensor::Tensor;

use crate::error::CoreError;

/// A vector the integrator can combine and measure.
pub trait OdeState: Clone {
    /// self + sum_k c_k v_k.
    fn add_scaled(&self, terms: &[(f64, &Self)]) -> Self;
    /// max(|self_i|, |other_i|), element by element.
    fn abs_max(&self, other: &Self) -> Self;
    /// Sum of squares and element count of self_i / (atol + rtol |by_i|): scipy's error norm
    /// with `by` = max(|y|, |y_new|), and its initial-step estimate with `by` = y.
    fn scaled_sum(&self, by: &Self, rtol: f64, atol: f64) -> (f64, usize);
}

impl<const D: usize> OdeState for Tensor<D> {
    fn add_scaled(&self, terms: &[(f64, &Self)]) -> Self {
        terms.iter().fold(self.clone(), |acc, (c, v)| {
            if *c == 0.0 {
                acc
            } else {
                acc + (*v).clone().mul_scalar(*c as f32)
            }
        })
    }

    fn abs_max(&self, other: &Self) -> Self {
        self.clone().abs().max_pair(other.clone().abs())
    }

    fn scaled_sum(&self, by: &Self, rtol: f64, atol: f64) -> (f64, usize) {
        let scale = by
            .clone()
            .abs()
            .mul_scalar(rtol as f32)
            .add_scalar(atol as f32);
        let r = self.clone().div(scale);
        (
            r.clone().mul(r).sum().into_scalar::<f64>(),
            self.shape().num_elements(),
        )
    }
}

/// Tolerances and limits of one integration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
    /// Accepted plus rejected steps before giving up.
    pub max_steps: usize,
}

impl Default for Tolerance {
    /// score_sde's `ode_sampler` and likelihood defaults: rtol = atol = 1e-5.
    fn default() -> Self {
        Self {
            rtol: 1e-5,
            atol: 1e-5,
            max_steps: 10_000,
        }
    }
}

/// Dormand-Prince tableau: nodes, stages, 5th-order weights, and the error weights b - b*.
const C: [f64; 6] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0];
const A: [&[f64]; 6] = [
    &[],
    &[1.0 / 5.0],
    &[3.0 / 40.0, 9.0 / 40.0],
    &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
    &[
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
    ],
    &[
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
    ],
];
const B: [f64; 6] = [
    35.0 / 384.0,
    0.0,
    500.0 / 1113.0,
    125.0 / 192.0,
    -2187.0 / 6784.0,
    11.0 / 84.0,
];
const E: [f64; 7] = [
    71.0 / 57600.0,
    0.0,
    -71.0 / 16695.0,
    71.0 / 1920.0,
    -17253.0 / 339200.0,
    22.0 / 525.0,
    -1.0 / 40.0,
];

/// What an integration cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OdeStats {
    /// Evaluations of the right-hand side (network evaluations for a model ODE).
    pub nfe: usize,
    pub accepted: usize,
    pub rejected: usize,
}

/// Integrates dy/ds = f(s, y) from s0 to s1 (either direction). `f` may fail; `observe(nfe)`
/// sees every evaluation. The reported `sigma` of a step-limit error is exp(s).
pub fn rk45<S: OdeState>(
    f: &mut dyn FnMut(f64, &S) -> Result<S, CoreError>,
    s0: f64,
    s1: f64,
    y0: S,
    tol: Tolerance,
    observe: &mut dyn FnMut(usize),
) -> Result<(S, OdeStats), CoreError> {
    let mut stats = OdeStats {
        nfe: 0,
        accepted: 0,
        rejected: 0,
    };
    let mut eval = |s: f64, y: &S, stats: &mut OdeStats| {
        stats.nfe += 1;
        observe(stats.nfe);
        f(s, y)
    };
    let dir = (s1 - s0).signum();
    let (mut s, mut y) = (s0, y0);
    let mut k1 = eval(s, &y, &mut stats)?;
    let mut h = initial_step(&mut |s, y: &S| eval(s, y, &mut stats), s, &y, &k1, dir, tol)?
        .min((s1 - s0).abs());
    while dir * (s1 - s) > 0.0 {
        if stats.accepted + stats.rejected >= tol.max_steps {
            return Err(CoreError::OdeStepLimit {
                max: tol.max_steps,
                h,
                sigma: s.exp(),
            });
        }
        h = h.min((s1 - s).abs());
        let mut k: Vec<S> = vec![k1.clone()];
        for stage in 1..6 {
            let terms: Vec<(f64, &S)> = A[stage]
                .iter()
                .zip(&k)
                .map(|(a, ki)| (dir * h * a, ki))
                .collect();
            let y_stage = y.add_scaled(&terms);
            k.push(eval(s + dir * h * C[stage], &y_stage, &mut stats)?);
        }
        let terms: Vec<(f64, &S)> = B.iter().zip(&k).map(|(b, ki)| (dir * h * b, ki)).collect();
        let y_new = y.add_scaled(&terms);
        let k7 = eval(s + dir * h, &y_new, &mut stats)?;
        k.push(k7);
        let zero = y.add_scaled(&[(-1.0, &y)]);
        let terms: Vec<(f64, &S)> = E.iter().zip(&k).map(|(e, ki)| (dir * h * e, ki)).collect();
        let err = zero.add_scaled(&terms);
        let (sum, count) = err.scaled_sum(&y.abs_max(&y_new), tol.rtol, tol.atol);
        let norm = (sum / count as f64).sqrt();
        if !norm.is_finite() {
            return Err(CoreError::NonFiniteAtSigma {
                step: stats.accepted + 1,
                sigma: s.exp(),
            });
        }
        if norm <= 1.0 {
            s += dir * h;
            y = y_new;
            k1 = k.pop().expect("seven stages");
            stats.accepted += 1;
            let factor = if norm == 0.0 {
                10.0
            } else {
                (0.9 * norm.powf(-0.2)).clamp(0.2, 10.0)
            };
            h *= factor;
        } else {
            stats.rejected += 1;
            h *= (0.9 * norm.powf(-0.2)).max(0.2);
        }
    }
    Ok((y, stats))
}

/// scipy's `select_initial_step` (Hairer, Norsett & Wanner, section II.4): one extra evaluation.
fn initial_step<S: OdeState>(
    eval: &mut dyn FnMut(f64, &S) -> Result<S, CoreError>,
    s: f64,
    y: &S,
    f0: &S,
    dir: f64,
    tol: Tolerance,
) -> Result<f64, CoreError> {
    let rms = |(sum, n): (f64, usize)| (sum / n as f64).sqrt();
    let d0 = rms(y.scaled_sum(y, tol.rtol, tol.atol));
    let d1 = rms(f0.scaled_sum(y, tol.rtol, tol.atol));
    let h0 = if d0 < 1e-5 || d1 < 1e-5 {
        1e-6
    } else {
        0.01 * d0 / d1
    };
    let y1 = y.add_scaled(&[(dir * h0, f0)]);
    let f1 = eval(s + dir * h0, &y1)?;
    let diff = f1.add_scaled(&[(-1.0, f0)]);
    let d2 = rms(diff.scaled_sum(y, tol.rtol, tol.atol)) / h0;
    let h1 = if d1 <= 1e-15 && d2 <= 1e-15 {
        (h0 * 1e-3).max(1e-6)
    } else {
        (0.01 / d1.max(d2)).powf(0.2)
    };
    Ok((100.0 * h0).min(h1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    /// dy/ds = -y y from 0 to 2: y = 1 / (1 + s) for y(0) = 1; and the growth y' = y.
    #[test]
    fn matches_closed_forms_within_tolerance() {
        let device = Device::default();
        let y0 = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 2.0], [2]), &device);
        let mut f = |_s: f64, y: &Tensor<1>| Ok(y.clone().mul(y.clone()).neg());
        let (y, stats) = rk45(
            &mut f,
            0.0,
            2.0,
            y0,
            Tolerance {
                rtol: 1e-6,
                atol: 1e-6,
                max_steps: 1000,
            },
            &mut |_| {},
        )
        .unwrap();
        let y: Vec<f32> = y.into_data().try_to_vec().unwrap();
        assert!(
            (y[0] - 1.0 / 3.0).abs() < 1e-5 && (y[1] - 2.0 / 5.0).abs() < 1e-5,
            "{y:?}"
        );
        assert!(stats.nfe > 6 && stats.nfe < 500, "{stats:?}");
        // Backwards in s: y' = y from 1 to 0 gives y(0) = y(1) / e.
        let y1 = Tensor::<1>::from_data(TensorData::new(vec![1.0f32], [1]), &device);
        let mut g = |_s: f64, y: &Tensor<1>| Ok(y.clone());
        let (y, _) = rk45(&mut g, 1.0, 0.0, y1, Tolerance::default(), &mut |_| {}).unwrap();
        let y: f32 = y.into_scalar();
        assert!((y as f64 - (-1.0f64).exp()).abs() < 1e-4, "{y}");
    }
}
