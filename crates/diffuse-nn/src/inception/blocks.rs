//! The blocks of torchvision's `Inception3` as pytorch-fid patches them for FID (`FIDInceptionA`,
//! `FIDInceptionC`, `FIDInceptionE_1`, `FIDInceptionE_2`; `InceptionB` and `InceptionD` as they
//! are). Every convolution is a `BasicConv2d` (convolution without bias, batch norm with eps
//! 0.001, ReLU), its batch norm folded into the convolution's weight and bias when loaded.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor, TensorData};
use diffuse_kernels::conv::conv2d;

use super::pool::{Pool, pool3x3};
use super::weights::TensorMap;

/// TensorFlow's batch-norm epsilon, which torchvision's `BasicConv2d` keeps.
const BN_EPS: f64 = 0.001;

/// A `BasicConv2d`: relu(bn(conv(x))) as one convolution with a bias.
#[derive(Debug)]
pub struct BasicConv {
    conv: Conv2d,
}

/// The shape of one `BasicConv2d`.
#[derive(Debug, Clone, Copy)]
pub struct ConvSpec {
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: [usize; 2],
    pub stride: usize,
    pub padding: [usize; 2],
}

/// A spec with square kernel `k`, stride 1 and no padding (the builder methods change them).
pub const fn spec(c_in: usize, c_out: usize, k: usize) -> ConvSpec {
    ConvSpec {
        c_in,
        c_out,
        kernel: [k, k],
        stride: 1,
        padding: [0, 0],
    }
}

impl ConvSpec {
    pub const fn kernel(mut self, kh: usize, kw: usize) -> Self {
        self.kernel = [kh, kw];
        self
    }
    pub const fn stride(mut self, s: usize) -> Self {
        self.stride = s;
        self
    }
    pub const fn pad(mut self, ph: usize, pw: usize) -> Self {
        self.padding = [ph, pw];
        self
    }
}

/// Where a block's layers are built from: the file's tensors, taken by name, or their names
/// and shapes only (`Inception::parameter_shapes`).
pub enum Builder<'a> {
    Load {
        tensors: &'a mut TensorMap,
        device: &'a Device,
    },
    Names(&'a mut Vec<(String, Vec<usize>)>),
}

impl Builder<'_> {
    /// Conv `name` (`name.conv.weight` and `name.bn.*`), its batch norm folded in: the weight
    /// scaled by gamma / sqrt(var + eps) per output channel, the bias beta - mean that scale.
    pub fn conv(&mut self, name: &str, s: ConvSpec) -> Result<Option<BasicConv>, String> {
        let [kh, kw] = s.kernel;
        let weight_shape = vec![s.c_out, s.c_in, kh, kw];
        let bn = ["weight", "bias", "running_mean", "running_var"];
        let (tensors, device) = match self {
            Builder::Names(list) => {
                list.push((format!("{name}.conv.weight"), weight_shape));
                list.extend(bn.map(|p| (format!("{name}.bn.{p}"), vec![s.c_out])));
                return Ok(None);
            }
            Builder::Load { tensors, device } => (tensors, *device),
        };
        let mut weight = tensors.take(&format!("{name}.conv.weight"), &weight_shape)?;
        let [gamma, beta, mean, var] =
            bn.map(|p| tensors.take(&format!("{name}.bn.{p}"), &[s.c_out]));
        let (gamma, beta, mean, var) = (gamma?, beta?, mean?, var?);
        // Present in files saved by PyTorch 0.4 and later; never read.
        tensors
            .tensors
            .remove(&format!("{name}.bn.num_batches_tracked"));
        let per_out = s.c_in * kh * kw;
        let mut bias = vec![0.0f32; s.c_out];
        for o in 0..s.c_out {
            let scale = gamma[o] as f64 / (var[o] as f64 + BN_EPS).sqrt();
            weight[o * per_out..(o + 1) * per_out]
                .iter_mut()
                .for_each(|w| *w = (*w as f64 * scale) as f32);
            bias[o] = (beta[o] as f64 - mean[o] as f64 * scale) as f32;
        }
        let [ph, pw] = s.padding;
        let mut conv = Conv2dConfig::new([s.c_in, s.c_out], s.kernel)
            .with_stride([s.stride, s.stride])
            .with_padding(PaddingConfig2d::Explicit(ph, pw, ph, pw))
            .with_bias(true)
            .init(device);
        let w = TensorData::new(weight, [s.c_out, s.c_in, kh, kw]);
        conv.weight = burn::module::Param::from_tensor(Tensor::from_data(w, device));
        conv.bias = Some(burn::module::Param::from_tensor(Tensor::from_data(
            TensorData::new(bias, [s.c_out]),
            device,
        )));
        Ok(Some(BasicConv { conv }))
    }
}

impl BasicConv {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        burn::tensor::activation::relu(conv2d(&self.conv, x))
    }
}

/// Builds the named convolutions of one block; None while only listing names.
macro_rules! convs {
    ($b:expr, $prefix:expr, { $($field:ident: $spec:expr),* $(,)? }) => {{
        $(
            #[allow(non_snake_case)]
            let $field = $b.conv(&$crate::inception::blocks::join($prefix, stringify!($field)), $spec)?;
        )*
        match ($($field,)*) {
            ($(Some($field),)*) => Some(($($field,)*)),
            _ => None,
        }
    }};
}
pub(crate) use convs;

/// `prefix.field`, or `field` at the top level.
pub fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

pub fn max_pool(x: Tensor<4>, stride: usize, pad: usize) -> Tensor<4> {
    pool3x3(x, Pool::Max, stride, pad)
}

/// TensorFlow's 3x3 average pool with one pixel of padding, which does not count the padded
/// zeros (pytorch-fid's patch: `count_include_pad=False`).
fn tf_avg_pool(x: Tensor<4>) -> Tensor<4> {
    pool3x3(x, Pool::Mean, 1, 1)
}

/// `FIDInceptionA` (Mixed_5b, 5c, 5d).
#[derive(Debug)]
pub struct InceptionA {
    convs: (
        BasicConv,
        BasicConv,
        BasicConv,
        BasicConv,
        BasicConv,
        BasicConv,
        BasicConv,
    ),
}

impl InceptionA {
    pub fn build(
        b: &mut Builder,
        name: &str,
        c: usize,
        pool: usize,
    ) -> Result<Option<Self>, String> {
        let convs = convs!(b, name, {
            branch1x1: spec(c, 64, 1),
            branch5x5_1: spec(c, 48, 1),
            branch5x5_2: spec(48, 64, 5).pad(2, 2),
            branch3x3dbl_1: spec(c, 64, 1),
            branch3x3dbl_2: spec(64, 96, 3).pad(1, 1),
            branch3x3dbl_3: spec(96, 96, 3).pad(1, 1),
            branch_pool: spec(c, pool, 1),
        });
        Ok(convs.map(|convs| Self { convs }))
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let (b1, b5_1, b5_2, d1, d2, d3, pool) = &self.convs;
        let branch1x1 = b1.forward(x.clone());
        let branch5x5 = b5_2.forward(b5_1.forward(x.clone()));
        let branch3x3dbl = d3.forward(d2.forward(d1.forward(x.clone())));
        let branch_pool = pool.forward(tf_avg_pool(x));
        Tensor::cat(vec![branch1x1, branch5x5, branch3x3dbl, branch_pool], 1)
    }
}

/// `InceptionB` (Mixed_6a): the grid reduction from 35x35 to 17x17.
#[derive(Debug)]
pub struct InceptionB {
    convs: (BasicConv, BasicConv, BasicConv, BasicConv),
}

impl InceptionB {
    pub fn build(b: &mut Builder, name: &str, c: usize) -> Result<Option<Self>, String> {
        let convs = convs!(b, name, {
            branch3x3: spec(c, 384, 3).stride(2),
            branch3x3dbl_1: spec(c, 64, 1),
            branch3x3dbl_2: spec(64, 96, 3).pad(1, 1),
            branch3x3dbl_3: spec(96, 96, 3).stride(2),
        });
        Ok(convs.map(|convs| Self { convs }))
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let (b3, d1, d2, d3) = &self.convs;
        let branch3x3 = b3.forward(x.clone());
        let branch3x3dbl = d3.forward(d2.forward(d1.forward(x.clone())));
        let branch_pool = max_pool(x, 2, 0);
        Tensor::cat(vec![branch3x3, branch3x3dbl, branch_pool], 1)
    }
}

/// `FIDInceptionC` (Mixed_6b to 6e): factorized 7x7 convolutions.
#[derive(Debug)]
pub struct InceptionC {
    convs: [BasicConv; 10],
}

impl InceptionC {
    pub fn build(b: &mut Builder, name: &str, c: usize, c7: usize) -> Result<Option<Self>, String> {
        let convs = convs!(b, name, {
            branch1x1: spec(c, 192, 1),
            branch7x7_1: spec(c, c7, 1),
            branch7x7_2: spec(c7, c7, 1).kernel(1, 7).pad(0, 3),
            branch7x7_3: spec(c7, 192, 1).kernel(7, 1).pad(3, 0),
            branch7x7dbl_1: spec(c, c7, 1),
            branch7x7dbl_2: spec(c7, c7, 1).kernel(7, 1).pad(3, 0),
            branch7x7dbl_3: spec(c7, c7, 1).kernel(1, 7).pad(0, 3),
            branch7x7dbl_4: spec(c7, c7, 1).kernel(7, 1).pad(3, 0),
            branch7x7dbl_5: spec(c7, 192, 1).kernel(1, 7).pad(0, 3),
            branch_pool: spec(c, 192, 1),
        });
        Ok(convs.map(|(a, b, c, d, e, f, g, h, i, j)| Self {
            convs: [a, b, c, d, e, f, g, h, i, j],
        }))
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b1, s1, s2, s3, d1, d2, d3, d4, d5, pool] = &self.convs;
        let branch1x1 = b1.forward(x.clone());
        let branch7x7 = s3.forward(s2.forward(s1.forward(x.clone())));
        let mut dbl = d1.forward(x.clone());
        for conv in [d2, d3, d4, d5] {
            dbl = conv.forward(dbl);
        }
        let branch_pool = pool.forward(tf_avg_pool(x));
        Tensor::cat(vec![branch1x1, branch7x7, dbl, branch_pool], 1)
    }
}

/// `InceptionD` (Mixed_7a): the grid reduction from 17x17 to 8x8.
#[derive(Debug)]
pub struct InceptionD {
    convs: [BasicConv; 6],
}

impl InceptionD {
    pub fn build(b: &mut Builder, name: &str, c: usize) -> Result<Option<Self>, String> {
        let convs = convs!(b, name, {
            branch3x3_1: spec(c, 192, 1),
            branch3x3_2: spec(192, 320, 3).stride(2),
            branch7x7x3_1: spec(c, 192, 1),
            branch7x7x3_2: spec(192, 192, 1).kernel(1, 7).pad(0, 3),
            branch7x7x3_3: spec(192, 192, 1).kernel(7, 1).pad(3, 0),
            branch7x7x3_4: spec(192, 192, 3).stride(2),
        });
        Ok(convs.map(|(a, b, c, d, e, f)| Self {
            convs: [a, b, c, d, e, f],
        }))
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [s1, s2, t1, t2, t3, t4] = &self.convs;
        let branch3x3 = s2.forward(s1.forward(x.clone()));
        let branch7x7x3 = t4.forward(t3.forward(t2.forward(t1.forward(x.clone()))));
        let branch_pool = max_pool(x, 2, 0);
        Tensor::cat(vec![branch3x3, branch7x7x3, branch_pool], 1)
    }
}

/// `FIDInceptionE_1` (Mixed_7b, average pool) and `FIDInceptionE_2` (Mixed_7c, whose pool
/// branch takes a 3x3 max pool: the 2015 graph's quirk, kept by pytorch-fid).
#[derive(Debug)]
pub struct InceptionE {
    convs: [BasicConv; 9],
    max_pool: bool,
}

impl InceptionE {
    pub fn build(
        b: &mut Builder,
        name: &str,
        c: usize,
        max_pool: bool,
    ) -> Result<Option<Self>, String> {
        let convs = convs!(b, name, {
            branch1x1: spec(c, 320, 1),
            branch3x3_1: spec(c, 384, 1),
            branch3x3_2a: spec(384, 384, 1).kernel(1, 3).pad(0, 1),
            branch3x3_2b: spec(384, 384, 1).kernel(3, 1).pad(1, 0),
            branch3x3dbl_1: spec(c, 448, 1),
            branch3x3dbl_2: spec(448, 384, 3).pad(1, 1),
            branch3x3dbl_3a: spec(384, 384, 1).kernel(1, 3).pad(0, 1),
            branch3x3dbl_3b: spec(384, 384, 1).kernel(3, 1).pad(1, 0),
            branch_pool: spec(c, 192, 1),
        });
        Ok(convs.map(|(a, b, c, d, e, f, g, h, i)| Self {
            convs: [a, b, c, d, e, f, g, h, i],
            max_pool,
        }))
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b1, s1, s2a, s2b, d1, d2, d3a, d3b, pool] = &self.convs;
        let branch1x1 = b1.forward(x.clone());
        let s = s1.forward(x.clone());
        let branch3x3 = Tensor::cat(vec![s2a.forward(s.clone()), s2b.forward(s)], 1);
        let d = d2.forward(d1.forward(x.clone()));
        let branch3x3dbl = Tensor::cat(vec![d3a.forward(d.clone()), d3b.forward(d)], 1);
        let pooled = if self.max_pool {
            max_pool(x, 1, 1)
        } else {
            tf_avg_pool(x)
        };
        let branch_pool = pool.forward(pooled);
        Tensor::cat(vec![branch1x1, branch3x3, branch3x3dbl, branch_pool], 1)
    }
}
