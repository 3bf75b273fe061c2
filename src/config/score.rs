//! The score SDE family's section of a run config (`[score]`, with `family = "score"`): the
//! SDE (Song et al. 2021: VP, sub-VP or VE), how it is trained in continuous time, and its
//! predictor-corrector sampler.

use anyhow::{Result, bail};
use diffuse_core::sde::Sde;
use diffuse_core::sde::pc::{Pc, Predictor};
use diffuse_core::solver::adapter::NoiseConditional;
use serde::{Deserialize, Serialize};

use crate::axes::KindName;

/// Which SDE (`--sde`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SdeName {
    /// Variance preserving: DDPM's chain in continuous time.
    Vp,
    /// Sub-variance preserving: VP's drift with less noise (its best likelihoods).
    Subvp,
    /// Variance exploding: NCSN's levels in continuous time.
    Ve,
}

impl SdeName {
    pub fn name(self) -> &'static str {
        match self {
            SdeName::Vp => "vp",
            SdeName::Subvp => "subvp",
            SdeName::Ve => "ve",
        }
    }
}

/// The score SDE family's settings (score_sde's defaults where they apply). VE's `sigma_max`,
/// unset, is filled from the training data when a run starts (NCSNv2's Technique 1: the largest
/// pairwise distance, as score_sde's 50 for CIFAR-10 comes from) and written into the run
/// config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreConfig {
    pub sde: SdeName,
    /// VP and sub-VP: beta(0) and beta(1) (0.1 and 20).
    #[serde(default = "beta_min")]
    pub beta_min: f64,
    #[serde(default = "beta_max")]
    pub beta_max: f64,
    /// VE: sigma(0) and sigma(1) (model space; 0.01, and the data's largest distance).
    #[serde(default = "sigma_min")]
    pub sigma_min: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_max: Option<f64>,
    /// Training draws t ~ U(eps, 1) (score_sde: 1e-5).
    #[serde(default = "train_eps")]
    pub eps: f64,
    /// lambda(t) = g(t)^2 instead of std(t)^2 (score_sde's `likelihood_weighting`).
    #[serde(default)]
    pub likelihood_weighting: bool,
    /// The data's standard deviation (model space): the network sees x_t scaled to unit
    /// variance (`Sde::input_scale`); unset, x_t as it is (score_sde).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_data: Option<f64>,
    /// Sampling: N time steps from t = 1 to `sample_eps` (score_sde: 1000, 1e-3).
    pub steps: usize,
    #[serde(default = "sample_eps")]
    pub sample_eps: f64,
    /// Langevin corrector steps per time step of `--sampler pc`, at this signal-to-noise ratio
    /// (score_sde: 1 and 0.16; 0.05 for points, see [`ScoreConfig::for_kind`]).
    #[serde(default = "one")]
    pub corrector_steps: usize,
    #[serde(default = "snr")]
    pub snr: f64,
}

fn beta_min() -> f64 {
    0.1
}
fn beta_max() -> f64 {
    20.0
}
fn sigma_min() -> f64 {
    0.01
}
fn train_eps() -> f64 {
    1e-5
}
fn sample_eps() -> f64 {
    1e-3
}
fn one() -> usize {
    1
}
fn snr() -> f64 {
    0.16
}

impl ScoreConfig {
    /// The defaults for an SDE and a kind of data: 1,000 PC steps for points, 500 for images
    /// (a CPU budget: score_sde takes 1,000 on CIFAR-10), the input scaled by the data's spread
    /// (1 for standardized points, 0.5 for images in [-1, 1]) as the NCSN family's. The
    /// corrector's snr is score_sde's 0.16 for images and 0.05 for points: measured on the
    /// swiss roll (20,000 samples against the floor), 0.16 left VP at 1.79x and VE at 2.14x,
    /// 0.05 at 1.67x and 1.19x, 0.02 at 1.63x and 1.53x; after 3,000 training steps 0.16
    /// pulled the samples into a ring (2.2x at 2,000 points, 1.3x without the corrector).
    pub fn for_kind(sde: SdeName, kind: KindName) -> Self {
        Self {
            sde,
            beta_min: beta_min(),
            beta_max: beta_max(),
            sigma_min: sigma_min(),
            sigma_max: None,
            eps: train_eps(),
            likelihood_weighting: false,
            sigma_data: Some(match kind {
                KindName::Points => 1.0,
                KindName::Images => 0.5,
            }),
            steps: match kind {
                KindName::Points => 1000,
                KindName::Images => 500,
            },
            sample_eps: sample_eps(),
            corrector_steps: one(),
            snr: match kind {
                KindName::Points => 0.05,
                KindName::Images => snr(),
            },
        }
    }

    pub fn validate(&self) -> Result<()> {
        let positive = |name: &str, v: f64| -> Result<()> {
            if v.is_nan() || v <= 0.0 {
                bail!("score.{name} must be positive, got {v}");
            }
            Ok(())
        };
        match self.sde {
            SdeName::Vp | SdeName::Subvp => {
                positive("beta_min", self.beta_min)?;
                if self.beta_max.is_nan() || self.beta_max < self.beta_min {
                    bail!(
                        "score.beta_max ({}) must be at least score.beta_min ({})",
                        self.beta_max,
                        self.beta_min
                    );
                }
                if self.sigma_max.is_some() {
                    bail!("score.sigma_max applies to the VE SDE (score.sde = \"ve\")");
                }
            }
            SdeName::Ve => {
                positive("sigma_min", self.sigma_min)?;
                if let Some(max) = self.sigma_max
                    && (max.is_nan() || max <= self.sigma_min)
                {
                    bail!(
                        "score.sigma_max ({max}) must be above score.sigma_min ({})",
                        self.sigma_min
                    );
                }
            }
        }
        for (name, v) in [("eps", self.eps), ("sample_eps", self.sample_eps)] {
            if !(v > 0.0 && v < 1.0) {
                bail!("score.{name} must be in (0, 1), got {v}");
            }
        }
        if self.steps < 2 {
            bail!("score.steps must be at least 2, got {}", self.steps);
        }
        positive("snr", self.snr)?;
        if matches!(self.sde, SdeName::Vp | SdeName::Subvp) && self.steps as f64 <= self.beta_max {
            bail!(
                "score.steps ({}) must be above score.beta_max ({}): the VP chain's betas beta_max / steps must stay below 1",
                self.steps,
                self.beta_max
            );
        }
        if let Some(s) = self.sigma_data {
            positive("sigma_data", s)?;
        }
        Ok(())
    }

    /// Fills VE's sigma_max from the data's largest pairwise distance where unset.
    pub fn fill(&mut self, max_distance: f64) {
        if self.sde == SdeName::Ve && self.sigma_max.is_none() {
            self.sigma_max = Some(max_distance.max(2.0 * self.sigma_min));
        }
    }

    /// The SDE of a filled config.
    pub fn sde(&self) -> Result<Sde> {
        let sde = match self.sde {
            SdeName::Vp => Sde::Vp {
                beta_min: self.beta_min,
                beta_max: self.beta_max,
            },
            SdeName::Subvp => Sde::SubVp {
                beta_min: self.beta_min,
                beta_max: self.beta_max,
            },
            SdeName::Ve => {
                let Some(sigma_max) = self.sigma_max else {
                    bail!("score.sigma_max is unset (the run was not started)");
                };
                Sde::Ve {
                    sigma_min: self.sigma_min,
                    sigma_max,
                }
            }
        };
        sde.validate()?;
        Ok(sde)
    }

    /// How the run's network is read.
    pub fn net(&self) -> Result<NoiseConditional> {
        Ok(NoiseConditional {
            sde: self.sde()?,
            sigma_data: self.sigma_data,
        })
    }

    /// The run's own predictor-corrector sampler.
    pub fn pc(&self) -> Pc {
        Pc {
            predictor: Predictor::ReverseDiffusion,
            corrector_steps: self.corrector_steps,
            snr: self.snr,
            steps: self.steps,
            eps: self.sample_eps,
        }
    }
}
