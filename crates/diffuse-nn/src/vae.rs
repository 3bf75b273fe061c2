//! The networks of the ELBO family's latent-variable models: a Markovian hierarchical VAE of T
//! levels of MLPs, of which the VAE is the one-level case.
//!
//! - the encoder: q(z_1 | x), then q(z_t | z_{t-1}) for t = 2..T, each a Gaussian whose mean and
//!   log-variance one MLP outputs ([`Hierarchy::encode_level`]);
//! - the decoder: p(x | z_1), whose output the observation model reads
//!   (`diffuse_core::elbo::Observation`), then p(z_t | z_{t+1}) for t = 1..T-1, Gaussians, and
//!   the prior p(z_T) = N(0, I) ([`Hierarchy::decode_level`]).
//!
//! Images are flattened to [B, C H W] between levels. The first level is either MLPs over the
//! flattened image or, for images whose side two stride-2 convolutions halve twice
//! ([`HierarchyConfig::image`]), a convolutional encoder and decoder ([`ConvLevel`]).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use diffuse_kernels::activation::silu;
use diffuse_kernels::conv::conv2d;
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
    /// Images [C, H, W] for a convolutional first level (`None`: MLPs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<[usize; 3]>,
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
        if let Some([c, h, w]) = self.image
            && (c * h * w != self.data_dim || h % 4 != 0 || w % 4 != 0 || h == 0 || w == 0)
        {
            return Err(NnError::Config(format!(
                "a convolutional VAE takes images whose sides are multiples of 4 with C H W = data_dim; got {c} x {h} x {w} for {}",
                self.data_dim
            )));
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
        let (mut up, mut down) = match self.image {
            Some(_) => (Vec::new(), Vec::new()),
            None => (
                vec![perceptron(self.data_dim, 2 * latent, self.input_embed_dim)],
                vec![perceptron(latent, self.output_channels * self.data_dim, 0)],
            ),
        };
        for _ in 1..self.levels {
            up.push(perceptron(latent, 2 * latent, 0));
            down.push(perceptron(latent, 2 * latent, 0));
        }
        let conv = self.image.map(|image| {
            ConvLevel::new(
                image,
                latent,
                self.hidden_width,
                self.output_channels,
                device,
            )
        });
        Ok(Hierarchy {
            up,
            down,
            conv,
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

/// The first level of an image VAE: two stride-2 3x3 convolutions (32 and 64 channels, SiLU)
/// and a hidden layer to the Gaussian q(z_1 | x); back, a hidden layer to 64 maps of a quarter
/// of the side, then twice nearest-neighbour upsampling and a 3x3 convolution (32 channels,
/// SiLU; then the decoder's output channels).
#[derive(Module, Debug)]
pub struct ConvLevel {
    down1: Conv2d,
    down2: Conv2d,
    enc_hidden: Linear,
    enc_out: Linear,
    dec_hidden: Linear,
    dec_maps: Linear,
    up1: Conv2d,
    up2: Conv2d,
    image: [usize; 3],
}

const CONV_WIDTHS: [usize; 2] = [32, 64];

impl ConvLevel {
    fn new(
        image: [usize; 3],
        latent: usize,
        hidden: usize,
        output_channels: usize,
        device: &Device,
    ) -> Self {
        let [c, h, w] = image;
        let [a, b] = CONV_WIDTHS;
        let conv = |i: usize, o: usize, stride: usize| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        let maps = b * (h / 4) * (w / 4);
        Self {
            down1: conv(c, a, 2),
            down2: conv(a, b, 2),
            enc_hidden: LinearConfig::new(maps, hidden).init(device),
            enc_out: LinearConfig::new(hidden, 2 * latent).init(device),
            dec_hidden: LinearConfig::new(latent, hidden).init(device),
            dec_maps: LinearConfig::new(hidden, maps).init(device),
            up1: conv(b, a, 1),
            up2: conv(a, output_channels * c, 1),
            image,
        }
    }

    /// Flattened images [B, C H W] to q(z_1 | x) as [mean | logvar].
    fn encode(&self, x: Tensor<2>) -> Tensor<2> {
        let [c, h, w] = self.image;
        let n = x.dims()[0];
        let x = x.reshape([n, c, h, w]);
        let x = silu(conv2d(&self.down1, x));
        let x = silu(conv2d(&self.down2, x));
        let x = x.reshape([n as i64, -1]);
        linear(&self.enc_out, linear_silu(&self.enc_hidden, x))
    }

    /// z_1 [B, latent] to the decoder's output, flattened [B, output_channels C H W] with the
    /// channels outermost ([mean | log_scale] halves for the Gaussians).
    fn decode(&self, z: Tensor<2>) -> Tensor<2> {
        let [_, h, w] = self.image;
        let n = z.dims()[0];
        let maps = linear_silu(&self.dec_maps, linear_silu(&self.dec_hidden, z));
        let x = maps.reshape([n, CONV_WIDTHS[1], h / 4, w / 4]);
        let nearest = |x: Tensor<4>| {
            let [_, _, a, b] = x.dims();
            interpolate(
                x,
                InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([2 * a, 2 * b]),
            )
        };
        let x = silu(conv2d(&self.up1, nearest(x)));
        conv2d(&self.up2, nearest(x)).reshape([n as i64, -1])
    }
}

/// A Markovian hierarchical VAE (see the module docs); `levels() == 1` is a VAE.
#[derive(Module, Debug)]
pub struct Hierarchy {
    up: Vec<Perceptron>,
    down: Vec<Perceptron>,
    /// A convolutional first level; `up` and `down` then hold levels 2..T.
    conv: Option<ConvLevel>,
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
        self.up.len() + usize::from(self.conv.is_some())
    }

    /// Where level t's MLPs are in `up` and `down`.
    fn mlp(&self, level: usize) -> usize {
        level - 1 - usize::from(self.conv.is_some())
    }

    pub fn latent_dim(&self) -> usize {
        self.latent_dim
    }

    pub fn num_params(&self) -> usize {
        Module::num_params(self)
    }

    /// q(z_t | z_{t-1}) for t = `level` (1-based; z_0 = x, flattened).
    pub fn encode_level(&self, level: usize, below: Tensor<2>) -> Gaussian {
        match (&self.conv, level) {
            (Some(conv), 1) => Gaussian::split(conv.encode(below)),
            _ => Gaussian::split(self.up[self.mlp(level)].forward(below)),
        }
    }

    /// For `level` 1, the decoder's output for p(x | z_1) ([B, output_channels data_dim]); for
    /// `level` t > 1, p(z_{t-1} | z_t) as [mean | logvar].
    pub fn decode_level(&self, level: usize, above: Tensor<2>) -> Tensor<2> {
        match (&self.conv, level) {
            (Some(conv), 1) => conv.decode(above),
            _ => self.down[self.mlp(level)].forward(above),
        }
    }

    /// p(z_{t-1} | z_t) for t = `level` > 1.
    pub fn prior_level(&self, level: usize, above: Tensor<2>) -> Gaussian {
        Gaussian::split(self.decode_level(level, above))
    }
}

impl diffuse_core::elbo::LatentHierarchy for Hierarchy {
    fn levels(&self) -> usize {
        Hierarchy::levels(self)
    }

    fn encode(&self, level: usize, below: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let g = self.encode_level(level, below);
        (g.mean, g.logvar)
    }

    fn decode(&self, level: usize, above: Tensor<2>) -> Tensor<2> {
        self.decode_level(level, above)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffuse_core::elbo::LatentHierarchy;

    fn config(image: Option<[usize; 3]>, data_dim: usize, levels: usize) -> HierarchyConfig {
        HierarchyConfig {
            data_dim,
            latent_dim: 5,
            levels,
            hidden_layers: 1,
            hidden_width: 16,
            input_embed_dim: 0,
            input_embed_scale: 25.0,
            output_channels: 2,
            image,
        }
    }

    /// The convolutional first level maps flattened images of either size to the latent and
    /// back to [mean | log_scale] of the image's coordinates, and levels above it are MLPs.
    #[test]
    fn conv_level_shapes() {
        let device = Device::default();
        for (image, levels) in [([1, 28, 28], 1), ([3, 32, 32], 3)] {
            let dim = image.iter().product();
            let net = config(Some(image), dim, levels).init(&device).unwrap();
            assert_eq!(net.levels(), levels);
            let x = Tensor::<2>::zeros([4, dim], &device);
            let (mean, logvar) = net.encode(1, x);
            assert_eq!((mean.dims(), logvar.dims()), ([4, 5], [4, 5]));
            assert_eq!(net.decode(1, mean.clone()).dims(), [4, 2 * dim]);
            if levels > 1 {
                assert_eq!(net.encode(2, mean.clone()).0.dims(), [4, 5]);
                assert_eq!(net.decode(levels, mean).dims(), [4, 10]);
            }
        }
        let err = config(Some([1, 30, 30]), 900, 1).init(&device).unwrap_err();
        assert!(err.to_string().contains("multiples of 4"), "{err}");
    }
}
