//! LeNet-5 (LeCun et al. 1998) as a feature extractor for 28 x 28 grayscale images (MNIST,
//! Fashion-MNIST): two 5x5 convolutions with ReLU and 2x2 max pooling (the first padded to
//! keep 28 x 28, as the usual port of the 32 x 32 original), then 400 -> 120 -> 84 -> 10. Its
//! 84 penultimate activations are the features of a Fréchet distance for data where
//! Inception's ImageNet features say little ("FD_LeNet": what it is, not FID).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor};
use diffuse_kernels::conv::conv2d;
use diffuse_kernels::linear::linear;

/// The input side it takes.
pub const LENET_SIDE: usize = 28;
/// Width of the penultimate features.
pub const LENET_FEATURES: usize = 84;

#[derive(Module, Debug)]
pub struct LeNet {
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
}

impl LeNet {
    /// A fresh network (burn's default initialization, from the device's seed) for `classes`
    /// classes of 1 x 28 x 28 images.
    pub fn new(classes: usize, device: &Device) -> Self {
        Self {
            conv1: Conv2dConfig::new([1, 6], [5, 5])
                .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
                .init(device),
            conv2: Conv2dConfig::new([6, 16], [5, 5]).init(device),
            fc1: LinearConfig::new(16 * 5 * 5, 120).init(device),
            fc2: LinearConfig::new(120, LENET_FEATURES).init(device),
            fc3: LinearConfig::new(LENET_FEATURES, classes).init(device),
        }
    }

    /// The 84 penultimate activations of images [N, 1, 28, 28] in [-1, 1].
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let [.., features] = self.layers(x);
        features
    }

    /// Each stage's activations, flattened per image: the first convolution's (after its
    /// ReLU, 6 x 28 x 28), the second's (16 x 10 x 10) and the 84 penultimate features: what a
    /// perceptual loss compares (`diffuse_core::autoencoder::perceptual_distance`).
    pub fn layers(&self, x: Tensor<4>) -> [Tensor<2>; 3] {
        let pool = || MaxPoolOptions::new([2, 2]);
        let flat = |t: Tensor<4>| {
            let [n, c, h, w] = t.dims();
            t.reshape([n, c * h * w])
        };
        let a1 = relu(conv2d(&self.conv1, x));
        let a2 = relu(conv2d(&self.conv2, max_pool2d(a1.clone(), pool())));
        let x = flat(max_pool2d(a2.clone(), pool()));
        let x = relu(linear(&self.fc1, x));
        [flat(a1), flat(a2), relu(linear(&self.fc2, x))]
    }

    /// The class logits.
    pub fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        linear(&self.fc3, self.features(x))
    }
}
