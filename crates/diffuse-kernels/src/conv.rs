//! 2-D convolution on the CPU as im2col + gemm, forward and backward, and by Winograd's
//! F(2x2, 3x3) for the 3x3 convolutions with stride 1, one pixel of padding, at least 8
//! channels in and out and at least 8 pixels a side or an odd height (the [`winograd`]
//! module; for odd heights, its images stacked, the weight and bias gradients come from
//! im2col).
//!
//! burn-flex lowers a convolution's backward pass to a transposed convolution (for the input)
//! and a convolution with batch and channels swapped (for the weight), each with its own layout
//! copies and freshly zeroed buffers: about 70% of a U-Net training step went there
//! (benchmarks/README.md, "Profile"). Here each image of the batch, or each group of small
//! images, is one gemm:
//!
//! - forward: `col = im2col(x[n])` (K = C_in kh kw rows, P = H_out W_out columns), then
//!   `y[n] = W col + b` (W is the weight as a C_out x K matrix);
//! - backward, in one pass over the batch: `dW += dy[n] col^T`, `db += rowsum(dy[n])`, and the
//!   input gradient. With stride 1 that is itself a convolution, `dx[n] = W' im2col'(dy[n])`
//!   with the weight flipped in space and its channels swapped (one gemm with K = C_out kh kw);
//!   otherwise `dx[n] = col2im(W^T dy[n])`.
//!
//! An output of fewer than [`MIN_COLUMNS`] pixels (the U-Net's 7x7 1x1 convolutions) is too few
//! columns for gemm to run well, so a few images go side by side in one matrix (columns
//! [i P, (i + 1) P) for the i-th), their dy and dx copied in and out of that layout. A single 1x1
//! convolution with stride 1 and no padding skips im2col (`col` is `x[n]` itself). With stride 1
//! and an output as wide as the input, an im2col row is the image shifted, one copy. The forward
//! pass gives each thread an equal run of groups, counted from the start of the batch; the backward
//! pass runs tasks of a fixed number of images, each with its own weight- and bias-gradient sums,
//! added in task order, so that the bits do not depend on the thread count. A batch smaller than
//! the thread count lets gemm use the threads instead. float32 only, groups 1, dilation 1 and
//! explicit padding (the U-Net's convolutions); anything else, and other devices, take
//! `Conv2d::forward`.

mod winograd;

use crate::cpu::{
    f32s, inner_parallelism, matmul, on_flex_f32, per_task, sum_f64, sum_in_order, tensor,
    with_scratch, zeros,
};
use burn::backend::TensorMetadata;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::{ConvOptions, FloatTensorOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn_flex::FlexTensor;
use rayon::prelude::*;
use winograd::Winograd;

/// `conv.forward(x)`, fused on the CPU for the cases the module docs name (with a bias); in
/// bfloat16 inside an autocast scope ([`crate::amp`]).
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if let Some(low) = crate::amp::product_dtype(&x) {
        return crate::amp::conv2d(conv, x, low);
    }
    let (Some(options), Some(bias)) = (fused_options(conv, &x), &conv.bias) else {
        return conv.forward(x);
    };
    Tensor::from_dispatch(<Dispatch as FusedConv>::fused_conv2d(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        bias.val().into_dispatch(),
        options,
    ))
}

/// The options of the fused convolution, or None where burn's takes `x`.
fn fused_options(conv: &Conv2d, x: &Tensor<4>) -> Option<ConvOptions<2>> {
    let padding = match conv.padding {
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
        PaddingConfig2d::Same => return None,
    };
    let [_, _, h, w] = x.dims();
    let [kh, kw] = conv.kernel_size;
    // burn's convolution says what is wrong with a kernel larger than the padded image.
    let fits = h + padding[0].0 + padding[0].1 >= kh && w + padding[1].0 + padding[1].1 >= kw;
    let plain = conv.groups == 1 && conv.dilation == [1, 1] && conv.bias.is_some();
    (fits && plain && on_flex_f32(x))
        .then(|| ConvOptions::new_with_padding(conv.stride, padding, [1, 1], 1))
}

#[backend_extension(Flex, Autodiff)]
pub trait FusedConv: Backend {
    /// y = conv(x, weight) + bias.
    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;

    /// The gradients of x (when `want_x`), of the weight, and of the bias (when `want_bias`),
    /// given the output's gradient.
    #[allow(clippy::type_complexity)]
    fn fused_conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
        want_x: bool,
        want_bias: bool,
    ) -> (
        Option<FloatTensor<Self>>,
        FloatTensor<Self>,
        Option<FloatTensor<Self>>,
    );
}

/// The sizes of one convolution, all in elements.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    batch: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    stride: [usize; 2],
    /// Rows and columns of zeros before the image.
    pad: [usize; 2],
    h_out: usize,
    w_out: usize,
}

impl Geometry {
    fn new(x: &[usize], weight: &[usize], options: &ConvOptions<2>) -> Self {
        let (&[batch, c_in, h, w], &[c_out, _, kh, kw]) = (x, weight) else {
            unreachable!("Conv2d passes 4-D tensors")
        };
        let [(top, bottom), (left, right)] = options.padding;
        let out = |size: usize, pad: usize, k: usize, s: usize| (size + pad - k) / s + 1;
        Self {
            batch,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            stride: options.stride,
            pad: [top, left],
            h_out: out(h, top + bottom, kh, options.stride[0]),
            w_out: out(w, left + right, kw, options.stride[1]),
        }
    }

    /// With stride 1, the convolution whose output is this one's input gradient: dy convolved
    /// with the weight flipped in space and its channels swapped ([`Geometry::flipped_weight`]),
    /// with k - 1 - pad rows and columns of padding. One gemm with K = C_out kh kw per image,
    /// instead of a gemm with K = C_out and a scatter back through col2im.
    fn transposed(&self) -> Option<Geometry> {
        let pad = [
            (self.kh - 1).checked_sub(self.pad[0])?,
            (self.kw - 1).checked_sub(self.pad[1])?,
        ];
        // Padding at the end: what makes the output as large as the input.
        let end_h = (self.h + self.kh - 1).checked_sub(self.h_out + pad[0])?;
        let end_w = (self.w + self.kw - 1).checked_sub(self.w_out + pad[1])?;
        let fits = end_h < self.kh && end_w < self.kw;
        (self.stride == [1, 1] && !self.pointwise() && fits).then_some(Geometry {
            batch: self.batch,
            c_in: self.c_out,
            h: self.h_out,
            w: self.w_out,
            c_out: self.c_in,
            kh: self.kh,
            kw: self.kw,
            stride: [1, 1],
            pad,
            h_out: self.h,
            w_out: self.w,
        })
    }

    /// W'[c_in][c_out][ky][kx] = W[c_out][c_in][kh - 1 - ky][kw - 1 - kx].
    fn flipped_weight(&self, w: &[f32]) -> Vec<f32> {
        let (kh, kw, taps) = (self.kh, self.kw, self.kh * self.kw);
        let mut flipped = vec![0.0f32; w.len()];
        flipped
            .par_chunks_mut(taps)
            .enumerate()
            .for_each(|(pair, out)| {
                let (ci, co) = (pair / self.c_out, pair % self.c_out);
                let kernel = &w[(co * self.c_in + ci) * taps..][..taps];
                for ky in 0..kh {
                    for kx in 0..kw {
                        out[(kh - 1 - ky) * kw + (kw - 1 - kx)] = kernel[ky * kw + kx];
                    }
                }
            });
        flipped
    }

    /// Rows of the im2col matrix.
    fn k(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    /// Columns of the im2col matrix: output pixels.
    fn p(&self) -> usize {
        self.h_out * self.w_out
    }

    fn image(&self) -> usize {
        self.c_in * self.h * self.w
    }

    /// A 1x1 convolution with stride 1 and no padding: x[n] is its own im2col matrix. (`pad`
    /// holds the padding before the image; the output's size tells of the padding after it.)
    fn pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.stride == [1, 1]
            && self.pad == [0, 0]
            && self.h_out == self.h
            && self.w_out == self.w
    }

    /// Images per gemm in the im2col path: one, or as many as make [`MIN_COLUMNS`] columns.
    fn group(&self) -> usize {
        MIN_COLUMNS.div_ceil(self.p())
    }

    /// Elements of the buffer [`Geometry::col_matrix`] needs for groups of `group` images:
    /// none for one image of a 1x1 convolution, which is its own im2col matrix.
    fn col_len(&self, group: usize) -> usize {
        if group == 1 && self.pointwise() {
            0
        } else {
            self.k() * group * self.p()
        }
    }

    /// The im2col matrix (K rows of `n` columns) of the images of `x`: `x` itself for one
    /// image of a 1x1 convolution, otherwise written into `col`.
    fn col_matrix<'a>(&self, x: &'a [f32], col: &'a mut [f32], n: usize) -> &'a [f32] {
        if n == self.p() && self.pointwise() {
            return x;
        }
        let col = &mut col[..self.k() * n];
        self.im2col(x, col, n);
        col
    }

    /// The im2col matrices of the images of `x` side by side, every entry written: K rows of
    /// `n` columns, image i's in columns [i P, (i + 1) P). A 1x1 convolution's rows are the
    /// channels themselves.
    fn im2col(&self, x: &[f32], col: &mut [f32], n: usize) {
        let p = self.p();
        for (i, x) in x.chunks_exact(self.image()).enumerate() {
            let mut rows = col.chunks_exact_mut(n).map(|row| &mut row[i * p..][..p]);
            if self.pointwise() {
                for (row, channel) in rows.zip(x.chunks_exact(p)) {
                    row.copy_from_slice(channel);
                }
                continue;
            }
            for channel in x.chunks_exact(self.h * self.w) {
                for ky in 0..self.kh {
                    for kx in 0..self.kw {
                        let row = rows.next().expect("K rows");
                        match self.flat_offset(ky, kx) {
                            Some(d) => self.gather_shifted(channel, d, kx, row),
                            None => self.gather(channel, ky, kx, row),
                        }
                    }
                }
            }
        }
    }

    /// Adds the K x P matrix of one image, columns [offset, offset + P) of `col`'s rows of `n`,
    /// back into its gradient: the transpose of im2col. Only the convolutions `transposed`
    /// does not cover come here (strides above 1, padding wider than the kernel), so it goes
    /// output row by output row.
    fn col2im(&self, col: &[f32], n: usize, offset: usize, dx: &mut [f32]) {
        let mut rows = col.chunks_exact(n).map(|row| &row[offset..][..self.p()]);
        for channel in dx.chunks_exact_mut(self.h * self.w) {
            for ky in 0..self.kh {
                for kx in 0..self.kw {
                    let row = rows.next().expect("K rows");
                    self.scatter(row, ky, kx, channel);
                }
            }
        }
    }

    /// With stride 1 and an output as wide as the input, output pixel p at kernel offset
    /// (ky, kx) reads input pixel p + d in the flattened image, d = (ky - top) W + (kx - left):
    /// an im2col row is the image shifted by d, with the columns that wrap around zeroed.
    fn flat_offset(&self, ky: usize, kx: usize) -> Option<isize> {
        (self.stride == [1, 1] && self.w_out == self.w).then(|| {
            let dy = ky as isize - self.pad[0] as isize;
            let dx = kx as isize - self.pad[1] as isize;
            dy * self.w as isize + dx
        })
    }

    /// The range of p with 0 <= p + d < H W, within [0, P).
    fn shifted_range(&self, d: isize) -> (usize, usize) {
        let p = self.p() as isize;
        let lo = (-d).clamp(0, p);
        let hi = ((self.h * self.w) as isize - d).clamp(lo, p);
        (lo as usize, hi as usize)
    }

    /// Zeroes the columns of a shifted row whose input column lies outside the image.
    fn zero_wrapped_columns(&self, kx: usize, row: &mut [f32]) {
        let (lo, hi) = self.valid_columns(kx);
        if lo == 0 && hi == self.w_out {
            return;
        }
        // A column or two per line: element by element, not a call to memset per line.
        for line in row.chunks_exact_mut(self.w_out) {
            let (head, rest) = line.split_at_mut(lo);
            for v in head.iter_mut().chain(&mut rest[hi - lo..]) {
                *v = 0.0;
            }
        }
    }

    fn gather_shifted(&self, channel: &[f32], d: isize, kx: usize, row: &mut [f32]) {
        let (lo, hi) = self.shifted_range(d);
        row[..lo].fill(0.0);
        row[hi..].fill(0.0);
        // No output pixel reads inside the image (a shift of a whole image or more, on the
        // smallest maps): the row is all zeros, and lo + d may lie before the image.
        if lo < hi {
            let start = (lo as isize + d) as usize;
            row[lo..hi].copy_from_slice(&channel[start..start + hi - lo]);
            self.zero_wrapped_columns(kx, row);
        }
    }

    /// One im2col row, output row by output row (any stride).
    fn gather(&self, channel: &[f32], ky: usize, kx: usize, row: &mut [f32]) {
        for (oy, out) in row.chunks_exact_mut(self.w_out).enumerate() {
            match self.source_row(oy, ky) {
                Some(iy) => self.gather_row(&channel[iy * self.w..(iy + 1) * self.w], kx, out),
                None => out.fill(0.0),
            }
        }
    }

    fn scatter(&self, row: &[f32], ky: usize, kx: usize, channel: &mut [f32]) {
        for (oy, line) in row.chunks_exact(self.w_out).enumerate() {
            if let Some(iy) = self.source_row(oy, ky) {
                self.scatter_row(line, kx, &mut channel[iy * self.w..(iy + 1) * self.w]);
            }
        }
    }

    /// The input row that output row `oy` reads at kernel row `ky`, or None in the padding.
    fn source_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride[0] + ky)
            .checked_sub(self.pad[0])
            .filter(|&iy| iy < self.h)
    }

    /// The output columns [lo, hi) whose input column, ox s + kx - pad, lies inside the image.
    fn valid_columns(&self, kx: usize) -> (usize, usize) {
        let s = self.stride[1];
        let lo = self.pad[1].saturating_sub(kx).div_ceil(s);
        // ox s + kx - pad <= w - 1  <=>  ox <= (w - 1 + pad - kx) / s
        let hi = match (self.w + self.pad[1]).checked_sub(kx + 1) {
            Some(last) => (last / s + 1).min(self.w_out),
            None => 0,
        };
        (lo.min(hi), hi)
    }

    fn gather_row(&self, src: &[f32], kx: usize, out: &mut [f32]) {
        let (lo, hi) = self.valid_columns(kx);
        out[..lo].fill(0.0);
        out[hi..].fill(0.0);
        if lo == hi {
            return; // every column of this kernel offset reads the padding
        }
        let first = lo * self.stride[1] + kx - self.pad[1];
        if self.stride[1] == 1 {
            out[lo..hi].copy_from_slice(&src[first..first + hi - lo]);
        } else {
            for (o, v) in out[lo..hi]
                .iter_mut()
                .zip(src[first..].iter().step_by(self.stride[1]))
            {
                *o = *v;
            }
        }
    }

    fn scatter_row(&self, row: &[f32], kx: usize, dst: &mut [f32]) {
        let (lo, hi) = self.valid_columns(kx);
        if lo == hi {
            return;
        }
        let first = lo * self.stride[1] + kx - self.pad[1];
        for (d, v) in dst[first..]
            .iter_mut()
            .step_by(self.stride[1])
            .zip(&row[lo..hi])
        {
            *d += v;
        }
    }
}

/// Images per task in the backward pass.
const IMAGES_PER_BACKWARD_TASK: usize = 4;

/// Columns an im2col gemm has at least, the images of a small output side by side: a 7x7
/// convolution's gemms (49 columns an image) ran at two thirds of the rate they reach with 196
/// (4 images).
const MIN_COLUMNS: usize = 192;

/// Copies `rows` (R rows of n columns, image i in columns [i P, (i + 1) P)) out to `images`
/// (n / P images of R x P).
fn ungroup(rows: &[f32], n: usize, p: usize, images: &mut [f32]) {
    let r = rows.len() / n;
    for (i, image) in images.chunks_exact_mut(r * p).enumerate() {
        for (dst, src) in image.chunks_exact_mut(p).zip(rows.chunks_exact(n)) {
            dst.copy_from_slice(&src[i * p..][..p]);
        }
    }
}

/// The inverse of [`ungroup`]: `images` (n / P images of R x P) side by side into `rows`.
fn regroup(images: &[f32], p: usize, n: usize, rows: &mut [f32]) {
    let r = rows.len() / n;
    for (i, image) in images.chunks_exact(r * p).enumerate() {
        for (src, dst) in image.chunks_exact(p).zip(rows.chunks_exact_mut(n)) {
            dst[i * p..][..p].copy_from_slice(src);
        }
    }
}

impl FusedConv for Flex {
    fn fused_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let g = Geometry::new(x.layout().shape(), weight.layout().shape(), &options);
        let (k, p, c_out) = (g.k(), g.p(), g.c_out);
        let (x, w, bias) = (f32s(&x), f32s(&weight), f32s(&bias));
        if let Some(winograd) = Winograd::new(&g) {
            let y = winograd.forward(&x, &w, Some(&bias));
            return tensor(y, [g.batch, c_out, g.h_out, g.w_out]);
        }
        // Groups of images from the start of the batch, each thread an equal run of them.
        let group = g.group();
        let groups = g.batch.div_ceil(group);
        let parallelism = inner_parallelism(groups);
        let per = per_task(groups) * group;
        let mut y = zeros(g.batch * c_out * p);
        let task = |(y, x): (&mut [f32], &[f32])| {
            // One image is its own im2col matrix (1x1) and writes y itself; a group goes
            // through `col` and `grouped`, its images side by side.
            let single = group == 1;
            let col_len = g.col_len(group);
            let grouped_len = if single { 0 } else { c_out * group * p };
            with_scratch([col_len, grouped_len], |[col, grouped]| {
                for (y, x) in y
                    .chunks_mut(group * c_out * p)
                    .zip(x.chunks(group * g.image()))
                {
                    let n = x.len() / g.image() * p;
                    let col = g.col_matrix(x, col, n);
                    // out = b + W col: (c_out x K) (K x n), into y itself for one image.
                    let out: &mut [f32] = if single {
                        &mut *y
                    } else {
                        &mut grouped[..c_out * n]
                    };
                    for (row, &b) in out.chunks_exact_mut(n).zip(bias.iter()) {
                        row.fill(b);
                    }
                    matmul(
                        (c_out, n, k),
                        out,
                        true,
                        &w,
                        [k, 1],
                        col,
                        [n, 1],
                        parallelism,
                    );
                    if !single {
                        ungroup(&grouped[..c_out * n], n, p, y);
                    }
                }
            })
        };
        y.par_chunks_mut(per * c_out * p)
            .zip(x.par_chunks(per * g.image()))
            .for_each(task);
        tensor(y, [g.batch, c_out, g.h_out, g.w_out])
    }

    fn fused_conv2d_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        options: ConvOptions<2>,
        want_x: bool,
        want_bias: bool,
    ) -> (Option<FlexTensor>, FlexTensor, Option<FlexTensor>) {
        let g = Geometry::new(x.layout().shape(), weight.layout().shape(), &options);
        let (k, p, c_out, image) = (g.k(), g.p(), g.c_out, g.image());
        let (x, w, dy) = (f32s(&x), f32s(&weight), f32s(&grad));
        let finish = |dx: Option<Vec<f32>>, dw: Vec<f32>, db: Vec<f64>| {
            let dx = dx.map(|dx| tensor(dx, [g.batch, g.c_in, g.h, g.w]));
            let db = want_bias.then(|| tensor(db.into_iter().map(|v| v as f32).collect(), [c_out]));
            (dx, tensor(dw, weight.layout().shape().clone()), db)
        };
        let winograd = Winograd::new(&g);
        let winograd_dx = || {
            let transposed = g.transposed().and_then(|gt| Winograd::new(&gt));
            let transposed = transposed.expect("3x3, stride 1 and padding 1 once transposed");
            transposed.forward(&dy, &g.flipped_weight(&w), None)
        };
        if let Some(winograd) = winograd.filter(|wg| !wg.stacked()) {
            let (dw, db) = winograd.parameter_gradients(&x, &dy, IMAGES_PER_BACKWARD_TASK);
            return finish(want_x.then(winograd_dx), dw, db);
        }
        // Stacked images: the input gradient through Winograd, the weight's and the bias's
        // through im2col.
        let stacked_dx = (want_x && winograd.is_some()).then(winograd_dx);
        let want_x = want_x && winograd.is_none();
        // A fixed number of images per task, whatever the thread count, so that the weight
        // and bias gradients (sums over tasks) have the same bits on every machine; within a
        // task, groups of images side by side as in the forward pass.
        let per = IMAGES_PER_BACKWARD_TASK;
        let group = g.group().min(per);
        let parallelism = inner_parallelism(g.batch.div_ceil(per));
        let mut dx = zeros(if want_x { g.batch * image } else { 0 });
        let dx_parts: Vec<&mut [f32]> = if want_x {
            dx.chunks_mut(per * image).collect()
        } else {
            (0..g.batch.div_ceil(per)).map(|_| &mut [][..]).collect()
        };
        // Each task sums the weight and bias gradients of its images; the sums are added up.
        let zero_sums = || (vec![0.0f32; c_out * k], vec![0.0f64; c_out]);
        let transposed = g.transposed().filter(|_| want_x);
        let flipped = transposed.map(|_| g.flipped_weight(&w)).unwrap_or_default();
        // Input pixels of an image: the columns of the input gradient's gemm.
        let plane = g.h * g.w;
        let task = |(t, dx): (usize, &mut [f32])| {
            let (mut dw, mut db) = zero_sums();
            let single = group == 1;
            let col_len = g.col_len(group);
            let dy_len = if single { 0 } else { c_out * group * p };
            let dcol_len = match transposed {
                Some(gt) => gt.k() * group * plane,
                None if want_x && !g.pointwise() => k * group * p,
                None => 0,
            };
            let dx_len = if want_x && !single {
                g.c_in * group * plane
            } else {
                0
            };
            let lengths = [col_len, dy_len, dcol_len, dx_len];
            with_scratch(lengths, |[col, dy_group, dcol, dx_group]| {
                let images = t * per..((t + 1) * per).min(g.batch);
                let (x, dy) = (
                    &x[images.start * image..images.end * image],
                    &dy[images.start * c_out * p..images.end * c_out * p],
                );
                for (j, (x, dy)) in x
                    .chunks(group * image)
                    .zip(dy.chunks(group * c_out * p))
                    .enumerate()
                {
                    let count = x.len() / image;
                    let (n, n_x) = (count * p, count * plane);
                    let col = g.col_matrix(x, col, n);
                    let dy_rows: &[f32] = if single {
                        dy
                    } else {
                        regroup(dy, p, n, &mut dy_group[..c_out * n]);
                        &dy_group[..c_out * n]
                    };
                    // dW += dy col^T: (c_out x n) (n x K).
                    matmul(
                        (c_out, k, n),
                        &mut dw,
                        true,
                        dy_rows,
                        [n, 1],
                        col,
                        [1, n],
                        parallelism,
                    );
                    for dy in dy.chunks_exact(c_out * p) {
                        for (sum, row) in db.iter_mut().zip(dy.chunks_exact(p)) {
                            *sum += sum_f64(row);
                        }
                    }
                    if !want_x {
                        continue;
                    }
                    let dx = &mut dx[j * group * image..][..count * image];
                    // The input gradient's rows (c_in x n_x): dx itself for one image, otherwise
                    // copied out to the images after the gemm.
                    let rows: &mut [f32] = if single {
                        &mut *dx
                    } else {
                        &mut dx_group[..g.c_in * n_x]
                    };
                    if let Some(gt) = transposed {
                        // dx = W' im2col(dy): (c_in x C_out kh kw) (C_out kh kw x n_x).
                        let k_t = gt.k();
                        gt.im2col(dy, &mut dcol[..k_t * n_x], n_x);
                        let dcol = &dcol[..k_t * n_x];
                        let dims = (g.c_in, n_x, k_t);
                        matmul(
                            dims,
                            rows,
                            false,
                            &flipped,
                            [k_t, 1],
                            dcol,
                            [n_x, 1],
                            parallelism,
                        );
                    } else if g.pointwise() {
                        // dx = W^T dy: (c_in x c_out) (c_out x n).
                        let dims = (k, n, c_out);
                        matmul(dims, rows, false, &w, [1, k], dy_rows, [n, 1], parallelism);
                    } else {
                        // dx = col2im(W^T dy): (K x c_out) (c_out x n), image by image.
                        let dcol = &mut dcol[..k * n];
                        let dims = (k, n, c_out);
                        matmul(dims, dcol, false, &w, [1, k], dy_rows, [n, 1], parallelism);
                        for (i, dx) in dx.chunks_exact_mut(image).enumerate() {
                            g.col2im(dcol, n, i * p, dx);
                        }
                        continue;
                    }
                    if !single {
                        ungroup(&dx_group[..g.c_in * n_x], n_x, plane, dx);
                    }
                }
            });
            (dw, db)
        };
        // Collected in task order and added up in that order: the same bits whichever thread
        // finishes first.
        let partials: Vec<_> = dx_parts.into_par_iter().enumerate().map(task).collect();
        let (dw, db) = sum_in_order(partials, zero_sums());
        finish(stacked_dx.or(want_x.then_some(dx)), dw, db)
    }
}
#[derive(Debug)]
struct ConvBackward;

impl<B: Backend + FusedConv> Backward<B, 3> for ConvBackward {
    /// x and the weight, checkpointed, and the options.
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let weight = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(weight_state);
        let (dx, dw, db) = B::fused_conv2d_backward(
            x,
            weight,
            grad,
            options,
            node_x.is_some(),
            node_bias.is_some(),
        );
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_weight {
            grads.register::<B>(node.id, dw);
        }
        if let (Some(node), Some(db)) = (node_bias, db) {
            grads.register::<B>(node.id, db);
        }
    }
}

impl<B: Backend + FusedConv, C: CheckpointStrategy> FusedConv for Autodiff<B, C> {
    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let prepared = ConvBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful();
        match prepared {
            OpsKind::Tracked(mut prep) => {
                let state = (
                    prep.checkpoint(&x),
                    prep.checkpoint(&weight),
                    options.clone(),
                );
                let ((x, _gx), (weight, _gw), (bias, _gb)) =
                    (x.into_parts(), weight.into_parts(), bias.into_parts());
                prep.finish(state, B::fused_conv2d(x, weight, bias, options))
            }
            OpsKind::UnTracked(prep) => {
                let ((x, _gx), (weight, _gw), (bias, _gb)) =
                    (x.into_parts(), weight.into_parts(), bias.into_parts());
                prep.finish(B::fused_conv2d(x, weight, bias, options))
            }
        }
    }

    /// Composed from burn's differentiable ops, for a second derivative (never taken here).
    fn fused_conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
        want_x: bool,
        want_bias: bool,
    ) -> (
        Option<FloatTensor<Self>>,
        FloatTensor<Self>,
        Option<FloatTensor<Self>>,
    ) {
        let dx = want_x.then(|| {
            Self::conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone())
        });
        let dw = Self::conv2d_weight_backward(x, weight, grad.clone(), options);
        let db = want_bias.then(|| {
            let summed = Self::float_sum_dim(Self::float_sum_dim(grad, 3), 2);
            let summed = Self::float_sum_dim(summed, 0);
            let c_out = summed.shape().num_elements();
            Self::float_reshape(summed, [c_out].into())
        });
        (dx, dw, db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::testing::{max_relative, on_threads};
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution, TensorData};

    /// The fused convolution, its input gradient and its parameter gradients against burn's,
    /// over the geometries the U-Net uses and a few it does not.
    #[test]
    fn fused_convolution_and_its_gradients_match_burns() {
        let cases = [
            // (batch, c_in, c_out, h, w, k, stride, padding (top, left, bottom, right))
            (3, 4, 6, 9, 7, 3, 1, PaddingConfig2d::Explicit(1, 1, 1, 1)),
            (2, 5, 3, 8, 8, 1, 1, PaddingConfig2d::Valid),
            (4, 3, 3, 8, 10, 3, 2, PaddingConfig2d::Explicit(0, 0, 1, 1)),
            (2, 3, 4, 7, 9, 3, 2, PaddingConfig2d::Explicit(1, 1, 1, 1)),
            (1, 2, 5, 6, 5, 3, 1, PaddingConfig2d::Explicit(1, 1, 1, 1)),
            (3, 2, 2, 5, 6, 2, 3, PaddingConfig2d::Explicit(2, 0, 1, 2)),
            (2, 3, 2, 6, 7, 5, 1, PaddingConfig2d::Valid),
            // Several images per thread, and 64 input channels.
            (
                12,
                3,
                4,
                28,
                28,
                3,
                1,
                PaddingConfig2d::Explicit(1, 1, 1, 1),
            ),
            (
                2,
                64,
                32,
                14,
                14,
                3,
                1,
                PaddingConfig2d::Explicit(1, 1, 1, 1),
            ),
            // Stride 1 with the output as wide as the input but not as tall (the shifted path).
            (2, 3, 4, 6, 5, 3, 1, PaddingConfig2d::Explicit(0, 2, 0, 0)),
            (2, 2, 3, 5, 6, 3, 1, PaddingConfig2d::Explicit(2, 0, 2, 2)),
            // Winograd: odd sizes (one stack of 3 images), an odd height with an even width (a
            // stack of 2), and 28x28 one image at a time.
            (3, 8, 8, 11, 9, 3, 1, PaddingConfig2d::Explicit(1, 1, 1, 1)),
            (2, 8, 8, 9, 10, 3, 1, PaddingConfig2d::Explicit(1, 1, 1, 1)),
            // Winograd with 12 channels in: the weight gradient's gemm gathers V (the 8x8
            // transposition takes multiples of 8).
            (2, 12, 8, 8, 8, 3, 1, PaddingConfig2d::Explicit(1, 1, 1, 1)),
            // 7x7 through Winograd, images stacked: the forward pass and the input gradient in
            // groups of 8 and 5 (a stack shorter than the one before it), the weight gradient
            // through im2col.
            (13, 8, 16, 7, 7, 3, 1, PaddingConfig2d::Explicit(1, 1, 1, 1)),
            // 7x7 through im2col (4 channels in), images side by side: three groups of 4 and
            // one of 1.
            (13, 4, 16, 7, 7, 3, 1, PaddingConfig2d::Explicit(1, 1, 1, 1)),
            (
                2,
                16,
                8,
                28,
                28,
                3,
                1,
                PaddingConfig2d::Explicit(1, 1, 1, 1),
            ),
        ];
        let mut winograd = 0;
        for (case, &(batch, c_in, c_out, h, w, k, stride, ref padding)) in cases.iter().enumerate()
        {
            let shape = Shape {
                batch,
                c_in,
                c_out,
                h,
                w,
                k: [k, k],
                stride,
            };
            let geometry = compare_with_burn(&format!("case {case}"), shape, padding.clone())
                .expect("the fused path");
            // The input gradient as a convolution of dy, for every stride-1 kernel but 1x1.
            assert_eq!(
                geometry.transposed().is_some(),
                stride == 1 && k > 1,
                "case {case}"
            );
            winograd += Winograd::new(&geometry).is_some() as usize;
        }
        // The 64-channel case, the two odd sizes (stacked, being of odd height), 12 channels
        // in, 7x7 with 8 channels in (stacked) and 28x28.
        assert_eq!(winograd, 6, "cases through Winograd");
    }

    /// The sizes of one convolution a test runs.
    #[derive(Clone, Copy)]
    struct Shape {
        batch: usize,
        c_in: usize,
        c_out: usize,
        h: usize,
        w: usize,
        k: [usize; 2],
        stride: usize,
    }

    /// Runs `conv2d` and burn's `Conv2d::forward` on the same input and compares the outputs,
    /// the input gradient and the parameter gradients (1e-5 relative). Returns the geometry when
    /// the fused path took it, `None` when it handed the case to burn.
    fn compare_with_burn(case: &str, s: Shape, padding: PaddingConfig2d) -> Option<Geometry> {
        let device = Device::default().autodiff();
        let conv = Conv2dConfig::new([s.c_in, s.c_out], s.k)
            .with_stride([s.stride, s.stride])
            .with_padding(padding)
            .init(&device);
        let x = Tensor::<4>::random(
            [s.batch, s.c_in, s.h, s.w],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let geometry = fused_options(&conv, &x).map(|options| {
            Geometry::new(&[s.batch, s.c_in, s.h, s.w], &conv.weight.dims(), &options)
        });
        let (x1, x2) = (x.clone().detach().require_grad(), x.detach().require_grad());
        let (y1, y2) = (conv2d(&conv, x1.clone()), conv.forward(x2.clone()));
        assert_eq!(y1.dims(), y2.dims(), "{case}");
        assert!(
            max_relative(y1.clone(), y2.clone()) < 1e-5,
            "{case}: output"
        );
        // A non-uniform output gradient, through a product with fixed weights.
        // Mean 1: the bias gradient sums these over the batch, and a sum near zero made
        // its relative error a matter of cancellation (the linear layer's check failed in 1
        // of 300 runs of the suite).
        let weights = Tensor::<4>::random(y1.dims(), Distribution::Normal(1.0, 1.0), &device);
        let g1 = (y1 * weights.clone()).sum().backward();
        let g2 = (y2 * weights).sum().backward();
        let dx = max_relative(x1.grad(&g1).unwrap(), x2.grad(&g2).unwrap());
        assert!(dx < 1e-5, "{case}: input gradient {dx}");
        let dw = max_relative(
            conv.weight.grad(&g1).unwrap(),
            conv.weight.grad(&g2).unwrap(),
        );
        assert!(dw < 1e-5, "{case}: weight gradient {dw}");
        let bias = conv.bias.as_ref().unwrap();
        let db = max_relative(bias.grad(&g1).unwrap(), bias.grad(&g2).unwrap());
        assert!(db < 1e-5, "{case}: bias gradient {db}");
        geometry
    }

    /// Every feature map from 1x1 to 9x9 (a U-Net's lowest levels reach 1x1 and 2x2 where
    /// diffusers' does), through every kernel, stride and padding the fused path takes, with 2
    /// channels (im2col) and 8 (Winograd where it applies), against burn's convolution. A 1x1
    /// and a 2x2 image once read a row before the image's start.
    #[test]
    fn every_small_feature_map_matches_burns() {
        let paddings = |p: usize| {
            [
                PaddingConfig2d::Explicit(p, p, p, p),
                PaddingConfig2d::Explicit(p, 0, p + 1, 1),
            ]
        };
        let mut fused = 0;
        for h in 1..=9 {
            for w in 1..=9 {
                for (k, stride, pad) in [
                    ([3, 3], 1, 1),
                    ([3, 3], 2, 1),
                    ([1, 1], 1, 0),
                    ([3, 3], 1, 0),
                    ([2, 2], 2, 0),
                    ([3, 3], 1, 2),
                    ([1, 3], 1, 1),
                ] {
                    for c in [2, 8] {
                        for padding in paddings(pad) {
                            let PaddingConfig2d::Explicit(top, left, bottom, right) = padding
                            else {
                                unreachable!()
                            };
                            if h + top + bottom < k[0] || w + left + right < k[1] {
                                continue; // no output pixel: burn's own output is empty
                            }
                            let shape = Shape {
                                batch: 3,
                                c_in: c,
                                c_out: c,
                                h,
                                w,
                                k,
                                stride,
                            };
                            let case = format!(
                                "{h}x{w}, kernel {k:?}, stride {stride}, {padding:?}, {c} channels"
                            );
                            fused += compare_with_burn(&case, shape, padding).is_some() as usize;
                        }
                    }
                }
            }
        }
        assert!(fused > 1500, "{fused} cases took the fused path");
    }

    /// Stacked geometries (odd heights) take their weight and bias gradients from im2col;
    /// Winograd's, kept for them, must agree.
    #[test]
    fn stacked_winograd_parameter_gradients_match_im2cols() {
        let (batch, c_in, c_out, h, w) = (13, 8, 16, 7, 5);
        let noise = |len: usize, seed: u32| -> Vec<f32> {
            let mut state = seed;
            (0..len)
                .map(|_| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (state >> 8) as f32 / (1 << 24) as f32 - 0.5
                })
                .collect()
        };
        let (x, weight, dy) = (
            noise(batch * c_in * h * w, 1),
            noise(c_out * c_in * 9, 2),
            noise(batch * c_out * h * w, 3),
        );
        let options = ConvOptions::new_with_padding([1, 1], [(1, 1), (1, 1)], [1, 1], 1);
        let g = Geometry::new(&[batch, c_in, h, w], &[c_out, c_in, 3, 3], &options);
        let winograd = Winograd::new(&g).expect("a Winograd geometry");
        assert!(winograd.stacked());
        let (dw, db) = winograd.parameter_gradients(&x, &dy, IMAGES_PER_BACKWARD_TASK);
        let (_, dw_im2col, db_im2col) = <Flex as FusedConv>::fused_conv2d_backward(
            tensor(x, [batch, c_in, h, w]),
            tensor(weight, [c_out, c_in, 3, 3]),
            tensor(dy, [batch, c_out, h, w]),
            options.clone(),
            false,
            true,
        );
        let to_tensor = |v: Vec<f32>, n: usize| {
            Tensor::<1>::from_data(TensorData::new(v, [n]), &Default::default())
        };
        let dw_im2col = f32s(&dw_im2col).into_owned();
        let db_im2col = f32s(&db_im2col.expect("a bias gradient")).into_owned();
        let db: Vec<f32> = db.into_iter().map(|v| v as f32).collect();
        let n = dw.len();
        let dw_error = max_relative(to_tensor(dw, n), to_tensor(dw_im2col, n));
        assert!(dw_error < 1e-5, "weight gradient {dw_error}");
        let db_error = max_relative(to_tensor(db, c_out), to_tensor(db_im2col, c_out));
        assert!(db_error < 1e-5, "bias gradient {db_error}");
        // A stack of one image right after a stack of four NaN images on the same thread:
        // the thread's buffers carry over between calls, and no NaN may (zero times NaN
        // being NaN).
        let one = Geometry::new(&[1, c_in, h, w], &[c_out, c_in, 3, 3], &options);
        let four = Geometry::new(&[4, c_in, h, w], &[c_out, c_in, 3, 3], &options);
        let (one, four) = (Winograd::new(&one).unwrap(), Winograd::new(&four).unwrap());
        let dw = on_threads(1, || {
            let nan = vec![f32::NAN; 4 * c_in * h * w];
            four.parameter_gradients(&nan, &noise(4 * c_out * h * w, 4), 4);
            one.parameter_gradients(&noise(c_in * h * w, 5), &noise(c_out * h * w, 6), 4)
                .0
        });
        assert!(
            dw.iter().all(|v| v.is_finite()),
            "a NaN from an earlier stack"
        );
    }

    #[test]
    fn without_autodiff_or_an_input_gradient() {
        let device = Device::default();
        let conv = Conv2dConfig::new([3, 4], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let x = Tensor::<4>::random([2, 3, 6, 6], Distribution::Normal(0.0, 1.0), &device);
        assert!(fused_options(&conv, &x).is_some());
        assert!(max_relative(conv2d(&conv, x.clone()), conv.forward(x.clone())) < 1e-5);
        // A strided view as input.
        let t = x.swap_dims(2, 3);
        assert!(max_relative(conv2d(&conv, t.clone()), conv.forward(t)) < 1e-5);
        // Under autodiff with a constant input: only the parameters get gradients.
        let ad = Device::default().autodiff();
        let conv = Conv2dConfig::new([3, 4], [3, 3]).init(&ad);
        let x = Tensor::<4>::random([2, 3, 6, 6], Distribution::Normal(0.0, 1.0), &ad);
        let g1 = conv2d(&conv, x.clone()).sum().backward();
        let g2 = conv.forward(x).sum().backward();
        let dw = max_relative(
            conv.weight.grad(&g1).unwrap(),
            conv.weight.grad(&g2).unwrap(),
        );
        assert!(dw < 1e-5, "weight gradient {dw}");
    }
}

#[cfg(test)]
mod determinism {
    use super::*;
    use crate::cpu::testing::{bits, on_threads};
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution};

    /// The gradients have the same bits on one thread and on three: the batch is split into
    /// tasks of a fixed size and their sums added in order. Through im2col (8x8 in groups of 3
    /// images, 7x7 in groups of 4), through Winograd (8x8 with 8 channels in, in groups of 10)
    /// and through both (7x7 with 8 channels in: Winograd's stacks of 8 and 3, im2col's weight
    /// gradient).
    #[test]
    fn gradients_do_not_depend_on_the_thread_count() {
        for (c_in, size) in [(3, 8), (3, 7), (8, 8), (8, 7)] {
            same_bits_on_one_and_three_threads(c_in, size);
        }
    }

    fn same_bits_on_one_and_three_threads(c_in: usize, size: usize) {
        let device = Device::default().autodiff();
        let conv = Conv2dConfig::new([c_in, 8], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let x = Tensor::<4>::random(
            [11, c_in, size, size],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let run = |threads: usize| {
            on_threads(threads, || {
                let x = x.clone().detach().require_grad();
                let grads = conv2d(&conv, x.clone()).powi_scalar(2).sum().backward();
                (
                    bits(x.grad(&grads).unwrap()),
                    bits(conv.weight.grad(&grads).unwrap()),
                )
            })
        };
        assert_eq!(run(1), run(3), "{c_in} channels in, {size}x{size}");
    }
}
