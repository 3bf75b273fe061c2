//! pytorch-fid's Inception network for FID (`pytorch_fid.inception.InceptionV3` with
//! `use_fid_inception=True`: the 2015-12-05 TensorFlow graph's Inception v3, Szegedy et al.
//! 2016, as ported to PyTorch), loaded from `pt_inception-2015-12-05-6726825d.pth` as
//! pytorch-fid downloads it.
//!
//! Input: images in [0, 1], [N, 3, H, W] (grayscale repeated to three channels beforehand, as
//! PIL's `convert("RGB")`), resized to 299 x 299 ([`resize_bilinear`], `F.interpolate(...,
//! mode="bilinear", align_corners=False)`) and mapped to [-1, 1]. Output: the features
//! pytorch-fid offers (`--dims`): 64 (after the first max pool), 192 (after the second), 768
//! (Mixed_6e, what feeds the auxiliary classifier), 2048 (pool3, the final average pool), each
//! averaged over space as pytorch-fid's `adaptive_avg_pool2d`; and the 1008 logits of the
//! classifier for the Inception Score, `pool3 . fc.weight^T` without the bias, as the original
//! Inception Score code (Salimans et al. 2016) and torch-fidelity's `logits_unbiased`.

mod blocks;
mod pool;
pub mod weights;

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};

use crate::NnError;
use blocks::{
    BasicConv, Builder, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE, convs,
    max_pool, spec,
};
pub use weights::{NamedTensor, TensorMap};

/// The file pytorch-fid downloads, and where from.
pub const WEIGHTS_FILE: &str = "pt_inception-2015-12-05-6726825d.pth";
pub const WEIGHTS_URL: &str = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth";
/// The SHA-256 of the published weights, as torch-fidelity publishes its copy of the same
/// network under the same hash prefix (`weights-inception-2015-12-05-6726825d.pth`, 95,628,359
/// bytes; torch.hub names a file by the start of its SHA-256). Both files hold the same tensor
/// names, and both load here.
pub const WEIGHTS_SHA256: &str = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2";

/// The side images are resized to.
pub const SIDE: usize = 299;
const CLASSES: usize = 1008;

/// Feature widths pytorch-fid's `--dims` offers, by the block whose output they average.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dims {
    D64,
    D192,
    D768,
    D2048,
}

impl Dims {
    pub const ALL: [Dims; 4] = [Dims::D64, Dims::D192, Dims::D768, Dims::D2048];

    pub fn width(self) -> usize {
        match self {
            Dims::D64 => 64,
            Dims::D192 => 192,
            Dims::D768 => 768,
            Dims::D2048 => 2048,
        }
    }

    pub fn from_width(width: usize) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.width() == width)
    }
}

/// What one forward pass returns: the features asked for (each [N, width], row-major) and,
/// when asked, the logits ([N, 1008]).
#[derive(Debug, Clone, Default)]
pub struct InceptionOutput {
    pub features: Vec<(Dims, Vec<f32>)>,
    pub logits: Option<Vec<f32>>,
}

/// The network, its batch norms folded into its convolutions.
#[derive(Debug)]
pub struct Inception {
    stem: [BasicConv; 5],
    mixed_5: [InceptionA; 3],
    mixed_6a: InceptionB,
    mixed_6: [InceptionC; 4],
    mixed_7a: InceptionD,
    mixed_7: [InceptionE; 2],
    /// fc.weight, [1008, 2048] row-major, as a [2048, 1008] tensor.
    fc_t: Tensor<2>,
}

impl Inception {
    /// Reads a PyTorch `state_dict` (or a safetensors file of the same names) and builds the
    /// network. A file without one of the network's tensors, with one of another shape, or with
    /// tensors the network does not have (torchvision's Inception, whose `AuxLogits` and
    /// 1000-way `fc` pytorch-fid's file lacks) is refused, by name.
    pub fn load(path: &Path, device: &Device) -> Result<Self, NnError> {
        let tensors = TensorMap::read(path)?;
        Self::from_tensors(tensors, device).map_err(|reason| NnError::Weights {
            path: path.into(),
            reason: format!("not pytorch-fid's FID Inception ({WEIGHTS_FILE}): {reason}"),
        })
    }

    /// The network from tensors by name (those of pytorch-fid's `fid_inception_v3()`'s
    /// `state_dict`).
    pub fn from_tensors(mut tensors: TensorMap, device: &Device) -> Result<Self, String> {
        let network = Self::build(&mut Builder::Load {
            tensors: &mut tensors,
            device,
        })?
        .expect("loading builds every layer");
        if !tensors.tensors.is_empty() {
            let names: Vec<&str> = tensors.tensors.keys().map(String::as_str).take(5).collect();
            return Err(format!(
                "it has {} tensors the network does not, such as {}",
                tensors.tensors.len(),
                names.join(", ")
            ));
        }
        Ok(network)
    }

    /// The name and shape of every tensor the network reads, in the order it reads them.
    pub fn parameter_shapes() -> Vec<(String, Vec<usize>)> {
        let mut list = Vec::new();
        let built = Self::build(&mut Builder::Names(&mut list)).expect("listing cannot fail");
        debug_assert!(built.is_none());
        list
    }

    #[allow(non_snake_case)] // the convolutions are named as in the file
    fn build(b: &mut Builder) -> Result<Option<Self>, String> {
        let stem = convs!(b, "", {
            Conv2d_1a_3x3: spec(3, 32, 3).stride(2),
            Conv2d_2a_3x3: spec(32, 32, 3),
            Conv2d_2b_3x3: spec(32, 64, 3).pad(1, 1),
            Conv2d_3b_1x1: spec(64, 80, 1),
            Conv2d_4a_3x3: spec(80, 192, 3),
        });
        let mixed_5 = [
            InceptionA::build(b, "Mixed_5b", 192, 32)?,
            InceptionA::build(b, "Mixed_5c", 256, 64)?,
            InceptionA::build(b, "Mixed_5d", 288, 64)?,
        ];
        let mixed_6a = InceptionB::build(b, "Mixed_6a", 288)?;
        let mixed_6 = [
            InceptionC::build(b, "Mixed_6b", 768, 128)?,
            InceptionC::build(b, "Mixed_6c", 768, 160)?,
            InceptionC::build(b, "Mixed_6d", 768, 160)?,
            InceptionC::build(b, "Mixed_6e", 768, 192)?,
        ];
        let mixed_7a = InceptionD::build(b, "Mixed_7a", 768)?;
        let mixed_7 = [
            InceptionE::build(b, "Mixed_7b", 1280, false)?,
            InceptionE::build(b, "Mixed_7c", 2048, true)?,
        ];
        let fc_t = match b {
            Builder::Names(list) => {
                list.push(("fc.weight".into(), vec![CLASSES, 2048]));
                list.push(("fc.bias".into(), vec![CLASSES]));
                return Ok(None);
            }
            Builder::Load { tensors, device } => {
                let w = tensors.take("fc.weight", &[CLASSES, 2048])?;
                // The bias is in the file; the Inception Score's logits leave it out.
                tensors.take("fc.bias", &[CLASSES])?;
                Tensor::<2>::from_data(TensorData::new(w, [CLASSES, 2048]), *device).transpose()
            }
        };
        let (c1a, c2a, c2b, c3b, c4a) = some(stem);
        Ok(Some(Self {
            stem: [c1a, c2a, c2b, c3b, c4a],
            mixed_5: mixed_5.map(some),
            mixed_6a: some(mixed_6a),
            mixed_6: mixed_6.map(some),
            mixed_7a: some(mixed_7a),
            mixed_7: mixed_7.map(some),
            fc_t,
        }))
    }

    /// The features in `dims` and, when `logits`, the logits, of images already resized to
    /// 299 x 299 and mapped to [-1, 1] ([`preprocess`]). Runs only as far as the widest output
    /// asked for needs.
    pub fn forward(&self, x: Tensor<4>, dims: &[Dims], logits: bool) -> InceptionOutput {
        let mut out = InceptionOutput::default();
        let last = if logits {
            Dims::D2048
        } else {
            match dims.iter().max() {
                Some(&d) => d,
                None => return out,
            }
        };
        let mut keep = |d: Dims, x: &Tensor<4>| {
            if dims.contains(&d) {
                out.features.push((d, to_vec(spatial_mean(x.clone()))));
            }
        };
        let [c1a, c2a, c2b, c3b, c4a] = &self.stem;
        let x = max_pool(c2b.forward(c2a.forward(c1a.forward(x))), 2, 0);
        keep(Dims::D64, &x);
        if last == Dims::D64 {
            return out;
        }
        let x = max_pool(c4a.forward(c3b.forward(x)), 2, 0);
        keep(Dims::D192, &x);
        if last == Dims::D192 {
            return out;
        }
        let mut x = x;
        for block in &self.mixed_5 {
            x = block.forward(x);
        }
        x = self.mixed_6a.forward(x);
        for block in &self.mixed_6 {
            x = block.forward(x);
        }
        keep(Dims::D768, &x);
        if last == Dims::D768 {
            return out;
        }
        x = self.mixed_7a.forward(x);
        for block in &self.mixed_7 {
            x = block.forward(x);
        }
        let pool3 = spatial_mean(x);
        if dims.contains(&Dims::D2048) {
            out.features.push((Dims::D2048, to_vec(pool3.clone())));
        }
        if logits {
            out.logits = Some(to_vec(pool3.matmul(self.fc_t.clone())));
        }
        out
    }
}

fn some<T>(x: Option<T>) -> T {
    x.expect("loading builds every layer")
}

/// [N, C, H, W] to [N, C], each plane's mean (pytorch-fid's `adaptive_avg_pool2d` to 1 x 1).
fn spatial_mean(x: Tensor<4>) -> Tensor<2> {
    let [n, c, _, _] = x.dims();
    x.mean_dim(3).mean_dim(2).reshape([n, c])
}

fn to_vec(x: Tensor<2>) -> Vec<f32> {
    x.into_data()
        .try_to_vec::<f32>()
        .expect("the network computes in float32")
}

/// One image [C, H, W] in [0, 1] resized to [C, 299, 299] as PyTorch's
/// `F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)` (no antialiasing;
/// coordinates in float32, as its CPU kernel computes them): output pixel o reads source
/// coordinate max(0, (o + 0.5) in / out - 0.5) between its two nearest pixels.
pub fn resize_bilinear(image: &[f32], channels: usize, h: usize, w: usize) -> Vec<f32> {
    let taps = |size: usize| -> Vec<(usize, usize, f32, f32)> {
        let scale = size as f32 / SIDE as f32;
        (0..SIDE)
            .map(|o| {
                let src = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
                let i0 = (src.floor() as usize).min(size - 1);
                let i1 = (i0 + 1).min(size - 1);
                let l1 = (src - i0 as f32).clamp(0.0, 1.0);
                (i0, i1, 1.0 - l1, l1)
            })
            .collect()
    };
    let (rows, cols) = (taps(h), taps(w));
    let mut out = Vec::with_capacity(channels * SIDE * SIDE);
    for plane in image.chunks_exact(h * w) {
        for &(r0, r1, h0, h1) in &rows {
            let (top, bottom) = (&plane[r0 * w..(r0 + 1) * w], &plane[r1 * w..(r1 + 1) * w]);
            for &(c0, c1, w0, w1) in &cols {
                out.push(
                    h0 * (w0 * top[c0] + w1 * top[c1]) + h1 * (w0 * bottom[c0] + w1 * bottom[c1]),
                );
            }
        }
    }
    out
}

/// One 8-bit image [C, H, W] (C = 1 or 3) as the network reads it, [3, 299, 299]: to [0, 1] as
/// `ToTensor`, resized, mapped to [-1, 1], grayscale repeated to RGB (PIL's `convert("RGB")`
/// copies the gray value into each channel, and resizing commutes with that copy).
pub fn input_image(pixels: &[u8], c: usize, h: usize, w: usize) -> Vec<f32> {
    assert!(c == 1 || c == 3, "images have 1 or 3 channels");
    assert_eq!(pixels.len(), c * h * w, "pixels must be C x H x W");
    let unit: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
    let resized: Vec<f32> = resize_bilinear(&unit, c, h, w)
        .into_iter()
        .map(|v| 2.0 * v - 1.0)
        .collect();
    resized.repeat(3 / c)
}

/// A batch of same-sized 8-bit images [N, C, H, W] as the network's input ([`input_image`]).
pub fn preprocess(pixels: &[u8], [n, c, h, w]: [usize; 4], device: &Device) -> Tensor<4> {
    assert_eq!(pixels.len(), n * c * h * w, "pixels must be N x C x H x W");
    let input: Vec<f32> = pixels
        .chunks_exact(c * h * w)
        .flat_map(|image| input_image(image, c, h, w))
        .collect();
    Tensor::from_data(TensorData::new(input, [n, 3, SIDE, SIDE]), device)
}
