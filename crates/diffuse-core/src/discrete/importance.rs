//! Importance sampling of t (improved DDPM, Nichol & Dhariwal 2021, eq. 17): each t keeps its
//! last 10 values of L_t^2; once every t has them, t is drawn with p_t proportional to
//! sqrt(E[L_t^2]) (with a little uniform mass), and each loss is weighted by 1 / (T p_t) so the
//! objective stays unbiased. The history is part of a run's resume state.

use std::collections::VecDeque;

use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

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
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

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
