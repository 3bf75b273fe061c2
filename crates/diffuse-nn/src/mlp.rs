//! The MLP denoiser of the classic 2-D demos: x_t concatenated with a sinusoidal embedding of t,
//! then hidden layers with SiLU, then a linear map back to the data dimension.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use diffuse_core::Denoiser;
use diffuse_kernels::linear::{linear, linear_silu};
use serde::{Deserialize, Serialize};

use crate::embedding::timestep_embedding;
use crate::error::NnError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlpConfig {
    /// Dimension of a data point (2 for the toy sets).
    pub data_dim: usize,
    pub hidden_layers: usize,
    pub hidden_width: usize,
    /// Width of the sinusoidal timestep embedding.
    pub time_embed_dim: usize,
    /// Width of a sinusoidal embedding of each input coordinate, concatenated with the raw
    /// coordinates (0: raw coordinates only). Fourier features let an MLP fit the sharp
    /// low-dimensional densities of the 2-D demos (Tancik et al. 2020).
    pub input_embed_dim: usize,
    /// Coordinates are multiplied by this before their sinusoidal embedding.
    pub input_embed_scale: f64,
    /// Also output the learned-variance interpolation v per coordinate (improved DDPM eq. 15):
    /// 2 x data_dim outputs, the parameterization's first.
    pub learned_variance: bool,
}

impl Default for MlpConfig {
    fn default() -> Self {
        Self {
            data_dim: 2,
            hidden_layers: 3,
            hidden_width: 128,
            time_embed_dim: 64,
            input_embed_dim: 0,
            input_embed_scale: 25.0,
            learned_variance: false,
        }
    }
}

impl MlpConfig {
    pub fn validate(&self) -> Result<(), NnError> {
        for (field, value) in [
            ("data_dim", self.data_dim),
            ("hidden_layers", self.hidden_layers),
            ("hidden_width", self.hidden_width),
            ("time_embed_dim", self.time_embed_dim),
        ] {
            if value == 0 {
                return Err(NnError::ZeroSize { field });
            }
        }
        Ok(())
    }

    /// A freshly initialized MLP (burn's default init: Kaiming-uniform, as PyTorch's `nn.Linear`).
    pub fn init(&self, device: &Device) -> Result<Mlp, NnError> {
        self.validate()?;
        let mut layers = Vec::with_capacity(self.hidden_layers);
        let mut width = self.data_dim * (1 + self.input_embed_dim) + self.time_embed_dim;
        for _ in 0..self.hidden_layers {
            layers.push(LinearConfig::new(width, self.hidden_width).init(device));
            width = self.hidden_width;
        }
        Ok(Mlp {
            layers,
            output: LinearConfig::new(
                width,
                self.data_dim * if self.learned_variance { 2 } else { 1 },
            )
            .init(device),
            time_embed_dim: self.time_embed_dim,
            input_embed_dim: self.input_embed_dim,
            input_embed_scale: self.input_embed_scale,
        })
    }
}

#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    output: Linear,
    time_embed_dim: usize,
    input_embed_dim: usize,
    input_embed_scale: f64,
}

impl Mlp {
    /// # Shapes
    /// - `x_t`: [B, data_dim], `t`: [B] -> [B, data_dim] (with a learned variance [B, 2 data_dim])
    pub fn forward(&self, x_t: Tensor<2>, t: Tensor<1>) -> Tensor<2> {
        let [batch, dim] = x_t.dims();
        let mut parts = vec![x_t.clone()];
        if self.input_embed_dim > 0 {
            for d in 0..dim {
                let coord = x_t.clone().narrow(1, d, 1).reshape([batch]);
                let coord = coord.mul_scalar(self.input_embed_scale as f32);
                parts.push(timestep_embedding(
                    coord,
                    self.input_embed_dim,
                    true,
                    0.0,
                    10_000.0,
                ));
            }
        }
        parts.push(timestep_embedding(
            t,
            self.time_embed_dim,
            true,
            0.0,
            10_000.0,
        ));
        let mut h = Tensor::cat(parts, 1);
        for layer in &self.layers {
            h = linear_silu(layer, h);
        }
        linear(&self.output, h)
    }
}

impl Denoiser<2> for Mlp {
    fn denoise(&self, x_t: Tensor<2>, t: Tensor<1>) -> Tensor<2> {
        self.forward(x_t, t)
    }
}
