//! The networks of the ELBO family's latent-variable models: a Markovian hierarchical VAE of T
//! levels of MLPs, of which the VAE is the one-level case.
//!
//! - the encoder: q(z_1 | x), then q(z_t | z_{t-1}) for t = 2..T, each a Gaussian whose mean and
//!   log-variance one MLP outputs ([`Hierarchy::encode_level`]);
//! - the decoder: p(x | z_1), whose output the observation model reads
//!   (`diffuse_core::elbo::Observation`), then p(z_t | z_{t+1}) for t = 1..T-1, Gaussians, and
//!   the prior p(z_T) = N(0, I) ([`Hierarchy::decode_level`]).
//!
//! Images are flattened to [B, C H W] before they reach the MLPs.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use diffuse_kernels::linear::{linear, linear_silu};

use crate::embedding::timestep_embedding;
use crate::error::NnError;

/// The sizes of a hierarchy's MLPs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HierarchyConfig {
    /// Coordinates of one example (2 for points, C H W for images).
    pub data_dim: usize,
    /// Coordinates of each latent z_t.
    pub latent_dim: usize,
    /// T: 1 for a VAE.
    pub levels: usize,
    pub hidden_layers: usize,
    pub hidden_width: usize,
    /// Width of a sinusoidal embedding of each data coordinate for the first encoder (0: raw
    /// coordinates only), and the scale of the coordinates before it (as the MLP denoiser's).
    pub input_embed_dim: usize,
    pub input_embed_scale: f64,
    /// The decoder p(x | z_1)'s outputs per data coordinate (2: mean and log-scale; 1: a logit).
    pub output_channels: usize,
}

impl HierarchyConfig {
    pub fn validate(&self) -> Result<(), NnError> {
        for (field, value) in [
            ("data_dim", self.data_dim),
            ("latent_dim", self.latent_dim),
            ("levels", self.levels),
            ("hidden_layers", self.hidden_layers),
            ("hidden_width", self.hidden_width),
            ("output_channels", self.output_channels),
        ] {
            if value == 0 {
                return Err(NnError::ZeroSize { field });
            }
        }
        Ok(())
    }

    /// A freshly initialized hierarchy (burn's default init, as PyTorch's `nn.Linear`).
    pub fn init(&self, device: &Device) -> Result<Hierarchy, NnError> {
        self.validate()?;
        let latent = self.latent_dim;
        let perceptron = |input: usize, output: usize, embed: usize| {
            Perceptron::new(
                input,
                output,
                self.hidden_layers,
                self.hidden_width,
                embed,
                self.input_embed_scale,
                device,
            )
        };
        let mut up = vec![perceptron(self.data_dim, 2 * latent, self.input_embed_dim)];
        let mut down = vec![perceptron(latent, self.output_channels * self.data_dim, 0)];
        for _ in 1..self.levels {
            up.push(perceptron(latent, 2 * latent, 0));
            down.push(perceptron(latent, 2 * latent, 0));
        }
        Ok(Hierarchy {
            up,
            down,
            latent_dim: latent,
        })
    }
}

/// Hidden layers with SiLU, then a linear output; optionally Fourier features of the input.
#[derive(Module, Debug)]
pub struct Perceptron {
    layers: Vec<Linear>,
    output: Linear,
    input_embed_dim: usize,
    input_embed_scale: f64,
}

impl Perceptron {
    fn new(
        input: usize,
        output: usize,
        hidden_layers: usize,
        hidden_width: usize,
        input_embed_dim: usize,
        input_embed_scale: f64,
        device: &Device,
    ) -> Self {
        let mut layers = Vec::with_capacity(hidden_layers);
        let mut width = input * (1 + input_embed_dim);
        for _ in 0..hidden_layers {
            layers.push(LinearConfig::new(width, hidden_width).init(device));
            width = hidden_width;
        }
        Self {
            layers,
            output: LinearConfig::new(width, output).init(device),
            input_embed_dim,
            input_embed_scale,
        }
    }

    /// [B, input] -> [B, output].
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut h = x.clone();
        if self.input_embed_dim > 0 {
            let [batch, dim] = x.dims();
            let mut parts = vec![x.clone()];
            for d in 0..dim {
                let coord = x.clone().narrow(1, d, 1).reshape([batch]);
                parts.push(timestep_embedding(
                    coord.mul_scalar(self.input_embed_scale as f32),
                    self.input_embed_dim,
                    true,
                    0.0,
                    10_000.0,
                ));
            }
            h = Tensor::cat(parts, 1);
        }
        for layer in &self.layers {
            h = linear_silu(layer, h);
        }
        linear(&self.output, h)
    }
}

/// A Markovian hierarchical VAE (see the module docs); `levels() == 1` is a VAE.
#[derive(Module, Debug)]
pub struct Hierarchy {
    up: Vec<Perceptron>,
    down: Vec<Perceptron>,
    latent_dim: usize,
}

/// A Gaussian's mean and log-variance, [B, latent] each.
pub struct Gaussian {
    pub mean: Tensor<2>,
    pub logvar: Tensor<2>,
}

impl Gaussian {
    fn split(out: Tensor<2>) -> Self {
        let c = out.dims()[1] / 2;
        Self {
            mean: out.clone().narrow(1, 0, c),
            logvar: out.narrow(1, c, c),
        }
    }
}

impl Hierarchy {
    pub fn levels(&self) -> usize {
        self.up.len()
    }

    pub fn latent_dim(&self) -> usize {
        self.latent_dim
    }

    pub fn num_params(&self) -> usize {
        Module::num_params(self)
    }

    /// q(z_t | z_{t-1}) for t = `level` (1-based; z_0 = x, flattened).
    pub fn encode_level(&self, level: usize, below: Tensor<2>) -> Gaussian {
        Gaussian::split(self.up[level - 1].forward(below))
    }

    /// For `level` 1, the decoder's output for p(x | z_1) ([B, output_channels data_dim]); for
    /// `level` t > 1, p(z_{t-1} | z_t) as [mean | logvar].
    pub fn decode_level(&self, level: usize, above: Tensor<2>) -> Tensor<2> {
        self.down[level - 1].forward(above)
    }

    /// p(z_{t-1} | z_t) for t = `level` > 1.
    pub fn prior_level(&self, level: usize, above: Tensor<2>) -> Gaussian {
        Gaussian::split(self.decode_level(level, above))
    }
}

impl diffuse_core::elbo::LatentHierarchy for Hierarchy {
    fn levels(&self) -> usize {
        self.up.len()
    }

    fn encode(&self, level: usize, below: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let g = self.encode_level(level, below);
        (g.mean, g.logvar)
    }

    fn decode(&self, level: usize, above: Tensor<2>) -> Tensor<2> {
        self.decode_level(level, above)
    }
}
