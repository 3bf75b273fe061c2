//! The NCSN family's section of a run config (`[ncsn]`, with `family = "ncsn"`): its noise
//! levels and its sampler, annealed Langevin dynamics (`diffuse_core::sde::ncsn`).

use anyhow::{Result, bail};
use diffuse_core::sde::ncsn::{NoiseLevels, langevin_step_size};
use serde::{Deserialize, Serialize};

use crate::axes::KindName;

/// NCSN's settings. Unset fields are filled from the training data when a run starts, as NCSNv2
/// recommends, and written into the run config: `sigma_max` by Technique 1 (the largest
/// pairwise distance of the data), `num_levels` by Technique 2 (successive levels overlap).
/// An unset `step_size` is Technique 3's for the Langevin steps sampling takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NcsnConfig {
    /// sigma_1, the largest noise level (model space).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_max: Option<f64>,
    /// sigma_L, the smallest (NCSNv2: 0.01).
    #[serde(default = "sigma_min")]
    pub sigma_min: f64,
    /// L, the number of levels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_levels: Option<usize>,
    /// T, Langevin steps per level when sampling (NCSN Algorithm 1).
    pub langevin_steps: usize,
    /// eps, the Langevin step size at the smallest level (alpha_i = eps sigma_i^2 / sigma_L^2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_size: Option<f64>,
    /// NCSNv2's last step, x + sigma_L^2 s(x, sigma_L): the samples' expected clean value.
    #[serde(default = "yes")]
    pub denoise: bool,
    /// The data's standard deviation (model space): the network sees x / sqrt(sigma_data^2 +
    /// sigma^2), unit variance at every level; unset, x as it is (NCSN as published).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_data: Option<f64>,
}

fn sigma_min() -> f64 {
    0.01
}

fn yes() -> bool {
    true
}

impl NcsnConfig {
    /// The defaults for a kind of data: 50 Langevin steps per level for points (measured with
    /// 60 levels: samples at 1.4x the data-vs-data floor), 10 for images (NCSNv2's CIFAR-10
    /// setting is 5; on the MNIST preset 5 left about half the samples blobs, 10 about a
    /// fifth); the input scaled by the data's spread (1 for standardized points, 0.5 for
    /// images in [-1, 1], Karras et al.'s sigma_data), which brought the swiss roll's samples
    /// from 1.37-1.77x to 1.12-1.66x the floor over three seeds.
    pub fn for_kind(kind: KindName) -> Self {
        Self {
            sigma_max: None,
            sigma_min: sigma_min(),
            num_levels: None,
            langevin_steps: match kind {
                KindName::Points => 50,
                KindName::Images => 10,
            },
            step_size: None,
            denoise: true,
            sigma_data: Some(match kind {
                KindName::Points => 1.0,
                KindName::Images => 0.5,
            }),
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.sigma_min.is_nan() || self.sigma_min <= 0.0 {
            bail!("ncsn.sigma_min must be positive, got {}", self.sigma_min);
        }
        if let Some(max) = self.sigma_max
            && (max.is_nan() || max <= self.sigma_min)
        {
            bail!(
                "ncsn.sigma_max ({max}) must be above ncsn.sigma_min ({})",
                self.sigma_min
            );
        }
        if self.num_levels.is_some_and(|n| !(2..=100_000).contains(&n)) {
            bail!(
                "ncsn.num_levels must be in 2..=100000, got {}",
                self.num_levels.unwrap_or(0)
            );
        }
        if self.langevin_steps == 0 {
            bail!("ncsn.langevin_steps must be at least 1");
        }
        if let Some(eps) = self.step_size
            && (eps.is_nan() || eps <= 0.0)
        {
            bail!("ncsn.step_size must be positive, got {eps}");
        }
        if let Some(s) = self.sigma_data
            && (s.is_nan() || s <= 0.0)
        {
            bail!("ncsn.sigma_data must be positive, got {s}");
        }
        Ok(())
    }

    /// Fills what a fresh run derives from its data: sigma_1 from the largest pairwise distance
    /// (Technique 1) and L for the data's dimension (Technique 2), where the config leaves them
    /// unset.
    pub fn fill(&mut self, max_distance: f64, dims: usize) -> Result<()> {
        let sigma_max = *self.sigma_max.get_or_insert(max_distance);
        if self.num_levels.is_none() {
            let levels = NoiseLevels::recommended(sigma_max, dims, self.sigma_min)?;
            self.num_levels = Some(levels.len());
        }
        Ok(())
    }

    /// The levels of a filled config.
    pub fn levels(&self) -> Result<NoiseLevels> {
        let (Some(sigma_max), Some(n)) = (self.sigma_max, self.num_levels) else {
            bail!("ncsn.sigma_max and ncsn.num_levels are unset (the run was not started)");
        };
        Ok(NoiseLevels::geometric(sigma_max, self.sigma_min, n)?)
    }

    /// The step size for `steps` Langevin steps per level: the config's, or Technique 3's.
    pub fn step_size_for(&self, levels: &NoiseLevels, steps: usize) -> f64 {
        self.step_size
            .unwrap_or_else(|| langevin_step_size(levels, steps))
    }
}
