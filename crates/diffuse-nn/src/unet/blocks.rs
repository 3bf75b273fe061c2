//! The building blocks of diffusers' `UNet2DModel`, with its parameter names as field names so
//! its safetensors load by name: `ResnetBlock2D`, `Attention` (with group norm), `Downsample2D`,
//! `Upsample2D`, and the down / mid / up blocks that stack them.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use burn::tensor::{Device, Tensor};
use diffuse_kernels::activation::{silu, softmax_last};
use diffuse_kernels::amp;
use diffuse_kernels::conv::conv2d;
use diffuse_kernels::linear::{linear, linear_3d};
use diffuse_kernels::norm::{group_norm as normalize, group_norm_silu as normalize_silu};

pub(crate) fn conv(
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    padding: PaddingConfig2d,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [k, k])
        .with_stride([stride, stride])
        .with_padding(padding)
        .init(device)
}

pub(crate) fn conv3(c_in: usize, c_out: usize, device: &Device) -> Conv2d {
    conv(
        c_in,
        c_out,
        3,
        1,
        PaddingConfig2d::Explicit(1, 1, 1, 1),
        device,
    )
}

pub(crate) fn group_norm(groups: usize, channels: usize, eps: f64, device: &Device) -> GroupNorm {
    GroupNormConfig::new(groups, channels)
        .with_epsilon(eps)
        .init(device)
}

/// Residual block: norm1 -> SiLU -> conv1, add (or scale-shift by) the projected time embedding,
/// norm2 -> SiLU -> conv2, plus a 1x1 shortcut when the width changes; divided by
/// `output_scale_factor`. Without a time embedding (`temb_channels=None`: the autoencoders'
/// blocks) there is no projection and norm2 takes conv1's output as it is.
#[derive(Module, Debug)]
pub struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
    scale_shift: bool,
    output_scale_factor: f64,
}

/// Widths and norm settings shared by every block of one U-Net (or autoencoder, whose blocks have
/// no time embedding: `temb` is `None`).
#[derive(Debug, Clone, Copy)]
pub struct BlockSettings {
    pub temb: Option<usize>,
    pub groups: usize,
    pub eps: f64,
    pub scale_shift: bool,
}

impl ResnetBlock2D {
    pub fn new(
        c_in: usize,
        c_out: usize,
        s: BlockSettings,
        output_scale_factor: f64,
        device: &Device,
    ) -> Self {
        let temb_out = if s.scale_shift { 2 * c_out } else { c_out };
        Self {
            norm1: group_norm(s.groups, c_in, s.eps, device),
            conv1: conv3(c_in, c_out, device),
            time_emb_proj: s
                .temb
                .map(|temb| LinearConfig::new(temb, temb_out).init(device)),
            norm2: group_norm(s.groups, c_out, s.eps, device),
            conv2: conv3(c_out, c_out, device),
            conv_shortcut: (c_in != c_out)
                .then(|| conv(c_in, c_out, 1, 1, PaddingConfig2d::Valid, device)),
            scale_shift: s.scale_shift,
            output_scale_factor,
        }
    }

    pub fn forward(&self, x: Tensor<4>, temb: Option<&Tensor<2>>) -> Tensor<4> {
        let h = conv2d(&self.conv1, normalize_silu(&self.norm1, x.clone()));
        let (Some(proj), Some(temb)) = (&self.time_emb_proj, temb) else {
            assert!(
                self.time_emb_proj.is_none() && temb.is_none(),
                "a residual block with a time projection needs the time embedding, and only it"
            );
            return self.finish(x, normalize_silu(&self.norm2, h));
        };
        let t = linear(proj, silu(temb.clone()));
        let [b, ch] = t.dims();
        let t = t.reshape([b, ch, 1, 1]);
        let h = if self.scale_shift {
            let half = ch / 2;
            let (scale, shift) = (t.clone().narrow(1, 0, half), t.narrow(1, half, half));
            silu(normalize(&self.norm2, h) * scale.add_scalar(1.0) + shift)
        } else {
            normalize_silu(&self.norm2, h + t)
        };
        self.finish(x, h)
    }

    /// conv2 of the normalized `h`, plus the (projected) input, rescaled.
    fn finish(&self, x: Tensor<4>, h: Tensor<4>) -> Tensor<4> {
        let h = conv2d(&self.conv2, h);
        let x = match &self.conv_shortcut {
            Some(c) => conv2d(c, x),
            None => x,
        };
        rescale(x + h, self.output_scale_factor)
    }
}

/// Multi-head self-attention over the H x W positions, with group norm and a residual connection
/// (diffusers' `Attention` as the U-Net blocks configure it).
#[derive(Module, Debug)]
pub struct Attention {
    group_norm: Option<GroupNorm>,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Vec<Linear>,
    heads: usize,
    rescale_output_factor: f64,
}

impl Attention {
    pub fn new(
        channels: usize,
        head_dim: usize,
        groups: Option<usize>,
        eps: f64,
        rescale: f64,
        device: &Device,
    ) -> Self {
        let linear = || LinearConfig::new(channels, channels).init(device);
        Self {
            group_norm: groups.map(|g| group_norm(g, channels, eps, device)),
            to_q: linear(),
            to_k: linear(),
            to_v: linear(),
            to_out: vec![linear()],
            heads: channels / head_dim,
            rescale_output_factor: rescale,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let n = h * w;
        let d = c / self.heads;
        let normed = match &self.group_norm {
            Some(norm) => normalize(norm, x.clone()),
            None => x.clone(),
        };
        let seq = normed.reshape([b, c, n]).swap_dims(1, 2); // [b, n, c]
        let split = |t: Tensor<3>| t.reshape([b, n, self.heads, d]).swap_dims(1, 2); // [b, heads, n, d]
        let q = split(linear_3d(&self.to_q, seq.clone()));
        let k = split(linear_3d(&self.to_k, seq.clone()));
        let v = split(linear_3d(&self.to_v, seq));
        let scores = amp::matmul(q, k.swap_dims(2, 3)).mul_scalar(1.0 / (d as f32).sqrt());
        let out = amp::matmul(softmax_last(scores), v)
            .swap_dims(1, 2)
            .reshape([b, n, c]);
        let out = linear_3d(&self.to_out[0], out)
            .swap_dims(1, 2)
            .reshape([b, c, h, w]);
        rescale(out + x, self.rescale_output_factor)
    }
}

/// A strided 3x3 convolution halving H and W; padding 0 pads one row and column at the
/// bottom-right first, as diffusers does.
#[derive(Module, Debug)]
pub struct Downsample2D {
    conv: Conv2d,
}

impl Downsample2D {
    pub fn new(channels: usize, padding: usize, device: &Device) -> Self {
        let pad = if padding == 0 {
            PaddingConfig2d::Explicit(0, 0, 1, 1)
        } else {
            PaddingConfig2d::Explicit(padding, padding, padding, padding)
        };
        Self {
            conv: conv(channels, channels, 3, 2, pad, device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv2d(&self.conv, x)
    }
}

/// Nearest-neighbour upsampling by 2, then a 3x3 convolution.
#[derive(Module, Debug)]
pub struct Upsample2D {
    conv: Conv2d,
}

impl Upsample2D {
    pub fn new(channels: usize, device: &Device) -> Self {
        Self {
            conv: conv3(channels, channels, device),
        }
    }

    /// Nearest-neighbour upsampling by 2 (burn's `interpolate`: one parallel pass each way on
    /// the CPU, where two `repeat_dim`s ran on one thread), then the convolution.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let nearest = InterpolateOptions::new(InterpolateMode::Nearest);
        let up = interpolate(x, nearest.with_output_size([2 * h, 2 * w]));
        conv2d(&self.conv, up)
    }
}

/// `DownBlock2D` (no attentions) or `AttnDownBlock2D`: resnets (each followed by its attention),
/// then an optional downsampler. Returns the output and every intermediate for the skips.
#[derive(Module, Debug)]
pub struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Attention>,
    downsamplers: Vec<Downsample2D>,
}

impl DownBlock {
    pub fn new(
        resnets: Vec<ResnetBlock2D>,
        attentions: Vec<Attention>,
        downsamplers: Vec<Downsample2D>,
    ) -> Self {
        Self {
            resnets,
            attentions,
            downsamplers,
        }
    }

    pub fn forward(&self, mut h: Tensor<4>, temb: &Tensor<2>) -> (Tensor<4>, Vec<Tensor<4>>) {
        let mut states = Vec::with_capacity(self.resnets.len() + 1);
        for (i, resnet) in self.resnets.iter().enumerate() {
            h = resnet.forward(h, Some(temb));
            if let Some(attn) = self.attentions.get(i) {
                h = attn.forward(h);
            }
            states.push(h.clone());
        }
        for down in &self.downsamplers {
            h = down.forward(h);
            states.push(h.clone());
        }
        (h, states)
    }

    /// The same block without a time embedding or skips: diffusers' `DownEncoderBlock2D` and
    /// `AttnDownEncoderBlock2D` (an autoencoder's encoder), whose parameters have these names.
    pub fn forward_encoder(&self, mut h: Tensor<4>) -> Tensor<4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            h = resnet.forward(h, None);
            if let Some(attn) = self.attentions.get(i) {
                h = attn.forward(h);
            }
        }
        for down in &self.downsamplers {
            h = down.forward(h);
        }
        h
    }
}

/// `UNetMidBlock2D`: resnet, then (attention, resnet) pairs.
#[derive(Module, Debug)]
pub struct MidBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Attention>,
}

impl MidBlock {
    pub fn new(resnets: Vec<ResnetBlock2D>, attentions: Vec<Attention>) -> Self {
        Self {
            resnets,
            attentions,
        }
    }

    pub fn forward(&self, h: Tensor<4>, temb: Option<&Tensor<2>>) -> Tensor<4> {
        let mut h = self.resnets[0].forward(h, temb);
        for (i, resnet) in self.resnets[1..].iter().enumerate() {
            if let Some(attn) = self.attentions.get(i) {
                h = attn.forward(h);
            }
            h = resnet.forward(h, temb);
        }
        h
    }
}

/// `UpBlock2D` or `AttnUpBlock2D`: each resnet takes the next skip (from the end) concatenated on
/// channels, then its attention; then an optional upsampler.
#[derive(Module, Debug)]
pub struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Attention>,
    upsamplers: Vec<Upsample2D>,
}

impl UpBlock {
    pub fn new(
        resnets: Vec<ResnetBlock2D>,
        attentions: Vec<Attention>,
        upsamplers: Vec<Upsample2D>,
    ) -> Self {
        Self {
            resnets,
            attentions,
            upsamplers,
        }
    }

    pub fn forward(
        &self,
        mut h: Tensor<4>,
        skips: &mut Vec<Tensor<4>>,
        temb: &Tensor<2>,
    ) -> Tensor<4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            let skip = skips.pop().expect("one skip per up-block resnet");
            h = resnet.forward(Tensor::cat(vec![h, skip], 1), Some(temb));
            if let Some(attn) = self.attentions.get(i) {
                h = attn.forward(h);
            }
        }
        for up in &self.upsamplers {
            h = up.forward(h);
        }
        h
    }

    /// The same block without a time embedding or skips: diffusers' `UpDecoderBlock2D` and
    /// `AttnUpDecoderBlock2D` (an autoencoder's decoder).
    pub fn forward_decoder(&self, mut h: Tensor<4>) -> Tensor<4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            h = resnet.forward(h, None);
            if let Some(attn) = self.attentions.get(i) {
                h = attn.forward(h);
            }
        }
        for up in &self.upsamplers {
            h = up.forward(h);
        }
        h
    }
}

/// `x / factor`, skipped for the factor diffusers' blocks default to: dividing by 1 changes no
/// bit, and the division's backward pass was a serial strided pass over every residual's
/// gradient (1-2% of a U-Net training step).
fn rescale(x: Tensor<4>, factor: f64) -> Tensor<4> {
    if factor == 1.0 {
        x
    } else {
        x.div_scalar(factor as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// `interpolate`'s nearest upsampling is each pixel repeated 2 x 2, and its gradient the sum
    /// over each 2 x 2 block: the same values and gradients as with `repeat_dim`, exactly.
    #[test]
    fn nearest_upsampling_repeats_pixels_and_sums_gradients() {
        let device = Device::default().autodiff();
        let x = Tensor::<4>::random([2, 3, 5, 4], Distribution::Normal(0.0, 1.0), &device);
        let weights = Tensor::<4>::random([2, 3, 10, 8], Distribution::Normal(0.0, 1.0), &device);
        let (x1, x2) = (x.clone().require_grad(), x.require_grad());
        let nearest = InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([10, 8]);
        let up1 = interpolate(x1.clone(), nearest);
        let up2 = x2
            .clone()
            .reshape([2, 3, 5, 1, 4, 1])
            .repeat_dim(3, 2)
            .repeat_dim(5, 2)
            .reshape([2, 3, 10, 8]);
        let bits = |t: Tensor<4>| -> Vec<f32> { t.into_data().try_to_vec().unwrap() };
        assert_eq!(bits(up1.clone()), bits(up2.clone()));
        let g1 = (up1 * weights.clone()).sum().backward();
        let g2 = (up2 * weights).sum().backward();
        let (d1, d2) = (x1.grad(&g1).unwrap(), x2.grad(&g2).unwrap());
        let gap: f32 = (d1 - d2).abs().max().into_scalar();
        assert!(gap < 1e-6, "gradients differ by {gap}");
    }
}
