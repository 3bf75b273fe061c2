//! Winograd's minimal filtering F(2x2, 3x3) for the 3x3 convolutions with stride 1 and one
//! pixel of padding on every side (Lavin and Gray, "Fast Algorithms for Convolutional Neural
//! Networks", 2016): most of a U-Net's arithmetic.
//!
//! A 2x2 block of output pixels (a tile) is `A^T [(G g G^T) ⊙ (B^T d B)] A`, with d the 4x4
//! input patch it reads and g a 3x3 kernel: 16 products per tile and channel pair, where im2col
//! and gemm take 36. Summed over input channels, each of the 16 positions ξ of the transformed
//! tile is one gemm:
//!
//! - forward: `M[ξ] = U[ξ] V[ξ]` with `U = G g G^T` (C_out x C_in) and `V = B^T d B`
//!   (C_in x tiles), then `y = A^T M A + b`;
//! - input gradient: the forward pass on dy with the weight flipped and its channels swapped
//!   (`Geometry::transposed`, a convolution of the same kind);
//! - weight gradient: `dU[ξ] = Z[ξ] V[ξ]^T` with `Z = A dY A^T` (C_out x tiles), summed over the
//!   batch, then `dW = G^T dU G`.
//!
//! The data stay NCHW. A channel's transforms run over all its tiles at once, as long
//! contiguous loops the compiler vectorizes (pulp picks the CPU's instructions): the image is
//! first copied into zero-padded rows of 2 l columns, its even rows and its odd rows apart,
//! and each row of tiles gets one slot more than it has tiles (l slots), a slot straddling
//! the right edge whose values nobody reads (the output transform skips it, and its Z is
//! zero). Small images are grouped so that a gemm sees at least [`MIN_SLOTS`] slots; the groups
//! are a fixed number of images from the start of the batch, so the bits do not depend on the
//! thread count.
//!
//! Images of odd height are stacked: a group's images are transformed together, one above the
//! other with a zero row between them, so that the loops run over the whole group (a 7x7 image
//! alone has 20 slots). An odd height H has (H + 1) / 2 rows of tiles, the last one's lower
//! output row being junk; with a zero row between images, each image starts on a row of tiles,
//! and the slots come out in the same order as image by image. The junk row reads the next
//! image's first row, which reaches only that row (A^T's first row takes V's rows 0 to 2, from
//! input rows 0 to 2) and, in the weight gradient, Z's last row, which is zero. For these,
//! the forward pass and the input gradient go through Winograd, and the weight gradient through
//! im2col (`conv`), which was faster at 7x7 than Winograd's gemms over 4-image tasks.

use super::Geometry;
use crate::cpu::{
    inner_parallelism, matmul, per_task, small_matmul, sum_f64, sum_in_order, with_scratch,
};
use gemm::Parallelism;
use rayon::prelude::*;
use std::cell::RefCell;
use std::mem::MaybeUninit;

/// Slots a gemm's tile dimension holds at least, small images being grouped to reach it.
const MIN_SLOTS: usize = 192;

/// The same for images of odd height, transformed together ([`Winograd::stacked`]): a 7x7
/// image has 20 slots, and 8 of them make 160 (a batch of 64 splits evenly over the threads;
/// 192 would make groups of 10).
const MIN_STACKED_SLOTS: usize = 160;

thread_local! {
    /// Each thread's transform scratch, kept between calls: fresh pages for every call cost as
    /// much as the transforms.
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// G of F(2x2, 3x3): U = G g G^T.
const G: [[f32; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// A of F(2x2, 3x3): y = A^T M A.
const A: [[f32; 2]; 4] = [[1.0, 0.0], [1.0, 1.0], [1.0, -1.0], [0.0, -1.0]];

/// One convolution's sizes, in the terms of its tiles.
#[derive(Clone, Copy, Debug)]
pub(super) struct Winograd {
    batch: usize,
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    /// Rows of tiles.
    th: usize,
    /// Slots per row of tiles: the tiles, and one more.
    l: usize,
}

/// Per-thread buffers of one image channel's transform (of a stack of images' channel, for
/// odd heights).
struct Scratch {
    /// The zero-padded image's even and its odd rows, each (th + 1) rows of 2 l columns, and
    /// two zeros more; a stack of s images takes s th + 1 rows.
    padded: [Vec<f32>; 2],
    /// The row transform (`d B`, its columns 0 to 3) of the even and of the odd padded rows:
    /// [even 0, .., even 3, odd 0, .., odd 3], each as many rows of `l` as `padded`'s.
    rows: [Vec<f32>; 8],
    /// Four values per slot (output pixels, or dy gathered by parity).
    quad: [Vec<f32>; 4],
    /// An image channel's even and odd columns, row after row (even widths): one long loop
    /// instead of one per row, too short for the vector unit.
    halves: [Vec<f32>; 2],
}

impl Winograd {
    /// The convolutions it covers: 3x3, stride 1, one pixel of padding on every side, at least
    /// 8 channels in and out (with fewer, im2col's gemm is as short), and at least 8 pixels a
    /// side or an odd height (stacked, see the module docs). Image by image, 7x7 lost to
    /// im2col (its transforms' loops ran over 20 slots); stacked, its forward pass takes
    /// 1.27-1.30 ms against 1.45 (64 channels, batch 64; benchmarks/README.md).
    pub(super) fn new(g: &Geometry) -> Option<Self> {
        let same = g.kh == 3
            && g.kw == 3
            && g.stride == [1, 1]
            && g.pad == [1, 1]
            && g.h_out == g.h
            && g.w_out == g.w;
        let size = (g.h >= 8 && g.w >= 8) || (g.h % 2 == 1 && g.w >= 3);
        (same && g.c_in >= 8 && g.c_out >= 8 && size).then_some(Self {
            batch: g.batch,
            c_in: g.c_in,
            c_out: g.c_out,
            h: g.h,
            w: g.w,
            th: g.h.div_ceil(2),
            l: g.w.div_ceil(2) + 1,
        })
    }

    fn plane(&self) -> usize {
        self.h * self.w
    }

    /// Slots per image.
    fn slots(&self) -> usize {
        self.th * self.l
    }

    /// Columns of the transformed matrices of `images` images: their slots, rounded up to a
    /// multiple of 8. gemm copies (packs) an operand whose row count is not one: a 28x28
    /// image's 210 slots ran the forward gemms at 60-75 GFLOP/s a core, 216 at 85-89.
    fn columns(&self, images: usize) -> usize {
        (images * self.slots()).next_multiple_of(8)
    }

    /// Images per gemm.
    fn group(&self) -> usize {
        if self.stacked() {
            MIN_STACKED_SLOTS.div_ceil(self.slots())
        } else {
            MIN_SLOTS.div_ceil(self.slots())
        }
    }

    /// Whether the images of a gemm group are transformed together, one above the other
    /// (odd heights; see the module docs).
    pub(super) fn stacked(&self) -> bool {
        self.h % 2 == 1
    }

    /// Images transformed together in groups of `group`.
    fn stack(&self, group: usize) -> usize {
        if self.stacked() { group } else { 1 }
    }

    /// `f` with buffers of `lengths` ([`with_scratch`]: they hold whatever an earlier call
    /// left) and a scratch for stacks of up to `stack` images, taken from this thread's pool
    /// and given back to it in the order it was taken, so that each buffer comes back to the
    /// same use and size. The scratch's padded rows and quads are zeros, and the transforms
    /// write the same elements of them for every channel, so the rest stays zero (the
    /// padding).
    fn with_buffers<const N: usize, R>(
        &self,
        stack: usize,
        lengths: [usize; N],
        f: impl FnOnce([&mut [f32]; N], &mut Scratch) -> R,
    ) -> R {
        let mut scratch = POOL.with_borrow_mut(|pool| {
            let mut take = |len: usize, zero: bool| {
                let mut buffer = pool.pop().unwrap_or_default();
                buffer.resize(len, 0.0);
                if zero {
                    buffer.fill(0.0);
                }
                buffer
            };
            let rows = (stack * self.th + 1) * self.l;
            Scratch {
                padded: std::array::from_fn(|_| take(2 * rows + 2, true)),
                rows: std::array::from_fn(|_| take(rows, false)),
                quad: std::array::from_fn(|_| take(stack * self.slots(), true)),
                halves: std::array::from_fn(|_| take(self.plane() / 2, false)),
            }
        });
        let result = with_scratch(lengths, |buffers| f(buffers, &mut scratch));
        let Scratch {
            padded,
            rows,
            quad,
            halves,
        } = scratch;
        POOL.with_borrow_mut(|pool| {
            let mut buffers: Vec<_> = padded
                .into_iter()
                .chain(rows)
                .chain(quad)
                .chain(halves)
                .collect();
            buffers.reverse();
            pool.extend(buffers);
        });
        result
    }

    /// y = conv(x, weight) [+ bias], for the whole batch.
    pub(super) fn forward(&self, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
        let (c_in, c_out) = (self.c_in, self.c_out);
        let (image_in, image_out) = (c_in * self.plane(), c_out * self.plane());
        let u = self.weight_transform(weight);
        let group = self.group();
        let groups = self.batch.div_ceil(group);
        let parallelism = inner_parallelism(groups);
        // Each thread an equal run of whole groups.
        let per = per_task(groups) * group;
        let most = 16 * self.columns(group);
        let stack = self.stack(group);
        // Not zeroed first: the output transform writes every element (a zero-filling pass
        // cost 3-4% of this function).
        let len = self.batch * image_out;
        let mut y = Vec::with_capacity(len);
        let task = |(y, x): (&mut [MaybeUninit<f32>], &[f32])| {
            self.with_buffers(stack, [most * c_in, most * c_out], |[v, m], scratch| {
                for (y, x) in y
                    .chunks_mut(group * image_out)
                    .zip(x.chunks(group * image_in))
                {
                    let images = x.len() / image_in;
                    let n = self.columns(images);
                    let (v, m) = (&mut v[..16 * c_in * n], &mut m[..16 * c_out * n]);
                    for (i, x) in x.chunks(stack * image_in).enumerate() {
                        self.input_transform(x, v, n, i * stack * self.slots(), scratch);
                    }
                    zero_tails(v, n, images * self.slots());
                    for (xi, m) in m.chunks_exact_mut(c_out * n).enumerate() {
                        let u = &u[xi * c_out * c_in..][..c_out * c_in];
                        let v = &v[xi * c_in * n..][..c_in * n];
                        let dims = (c_out, n, c_in);
                        if matches!(parallelism, Parallelism::None) {
                            small_matmul(dims, m, false, (u, [c_in, 1]), v);
                        } else {
                            matmul(dims, m, false, u, [c_in, 1], v, [n, 1], parallelism);
                        }
                    }
                    for (i, y) in y.chunks_mut(stack * image_out).enumerate() {
                        let offset = i * stack * self.slots();
                        self.output_transform(m, n, offset, bias, y, scratch);
                    }
                }
            })
        };
        y.spare_capacity_mut()[..len]
            .par_chunks_mut(per * image_out)
            .zip(x.par_chunks(per * image_in))
            .for_each(task);
        // SAFETY: the output transform wrote all `len` elements, every image's every pixel
        // (`OutputTransform`).
        unsafe { y.set_len(len) };
        y
    }

    /// The weight's and the bias's gradients given the output's, over tasks of `per` images
    /// whose sums are added in task order.
    pub(super) fn parameter_gradients(
        &self,
        x: &[f32],
        dy: &[f32],
        per: usize,
    ) -> (Vec<f32>, Vec<f64>) {
        let (c_in, c_out) = (self.c_in, self.c_out);
        let (image_in, image_out) = (c_in * self.plane(), c_out * self.plane());
        let group = self.group().min(per);
        let parallelism = inner_parallelism(self.batch.div_ceil(per));
        let most = 16 * self.columns(group);
        let stack = self.stack(group);
        let zero_sums = || (vec![0.0f32; 16 * c_out * c_in], vec![0.0f64; c_out]);
        let task = |(x, dy): (&[f32], &[f32])| {
            let (mut du, mut db) = zero_sums();
            // V[ξ] transposed (n x c_in), for gemm to read without a gather.
            let transposed = if transposable(c_in) { most * c_in } else { 0 };
            let lengths = [most * c_in, most * c_out, transposed];
            self.with_buffers(stack, lengths, |[v, z, vt], scratch| {
                for (x, dy) in x.chunks(group * image_in).zip(dy.chunks(group * image_out)) {
                    let images = x.len() / image_in;
                    let n = self.columns(images);
                    let (v, z) = (&mut v[..16 * c_in * n], &mut z[..16 * c_out * n]);
                    for (i, (x, dy)) in x
                        .chunks(stack * image_in)
                        .zip(dy.chunks(stack * image_out))
                        .enumerate()
                    {
                        self.input_transform(x, v, n, i * stack * self.slots(), scratch);
                        self.output_adjoint(dy, z, n, i * stack * self.slots(), scratch);
                    }
                    for dy in dy.chunks_exact(image_out) {
                        for (sum, plane) in db.iter_mut().zip(dy.chunks_exact(self.plane())) {
                            *sum += sum_f64(plane);
                        }
                    }
                    zero_tails(v, n, images * self.slots());
                    zero_tails(z, n, images * self.slots());
                    // dU[ξ] += Z[ξ] V[ξ]^T: (c_out x n) (n x c_in). Both operands run along
                    // the slots; gemm wants the one it walks by rows (V^T, after its own
                    // transposition of the problem) contiguous along c_in, and gathered it
                    // element by element otherwise (a third of the gemm's time).
                    for (xi, du) in du.chunks_exact_mut(c_out * c_in).enumerate() {
                        let z = &z[xi * c_out * n..][..c_out * n];
                        let v = &v[xi * c_in * n..][..c_in * n];
                        let (v, v_strides) = if vt.is_empty() {
                            (v, [1, n])
                        } else {
                            let vt = &mut vt[..c_in * n];
                            transpose(v, c_in, n, vt);
                            if matches!(parallelism, Parallelism::None) {
                                small_matmul((c_out, c_in, n), du, true, (z, [n, 1]), vt);
                                continue;
                            }
                            (&*vt, [c_in, 1])
                        };
                        matmul(
                            (c_out, c_in, n),
                            du,
                            true,
                            z,
                            [n, 1],
                            v,
                            v_strides,
                            parallelism,
                        );
                    }
                }
            });
            (du, db)
        };
        let partials: Vec<_> = x
            .par_chunks(per * image_in)
            .zip(dy.par_chunks(per * image_out))
            .map(task)
            .collect();
        let (du, db) = sum_in_order(partials, zero_sums());
        (self.weight_adjoint(&du), db)
    }

    /// U[ξ][c_out][c_in] = (G g G^T)[ξ] for every kernel g of `weight` (C_out x C_in x 3 x 3).
    /// Computed kernel by kernel, then laid out by ξ, both by the rayon threads: on the calling
    /// thread alone, with the others waiting, the transforms and their adjoints were 1% of a
    /// U-Net training step.
    fn weight_transform(&self, weight: &[f32]) -> Vec<f32> {
        let pairs = self.c_out * self.c_in;
        let mut by_pair = vec![0.0f32; 16 * pairs];
        by_pair
            .par_chunks_mut(16)
            .zip(weight.par_chunks_exact(9))
            .for_each(|(u, g)| {
                // G g (4 x 3), then (G g) G^T.
                let gg: [[f32; 3]; 4] = std::array::from_fn(|i| {
                    std::array::from_fn(|b| (0..3).map(|a| G[i][a] * g[a * 3 + b]).sum())
                });
                for (xi, [i, j]) in positions() {
                    u[xi] = (0..3).map(|b| gg[i][b] * G[j][b]).sum();
                }
            });
        let mut u = vec![0.0f32; 16 * pairs];
        u.par_chunks_mut(pairs).enumerate().for_each(|(xi, row)| {
            for (pair, u) in row.iter_mut().enumerate() {
                *u = by_pair[pair * 16 + xi];
            }
        });
        u
    }

    /// dW = G^T dU G for every channel pair, dU being [ξ][c_out][c_in].
    fn weight_adjoint(&self, du: &[f32]) -> Vec<f32> {
        let pairs = self.c_out * self.c_in;
        let mut dw = vec![0.0f32; 9 * pairs];
        dw.par_chunks_mut(9).enumerate().for_each(|(pair, dw)| {
            for (xi, [i, j]) in positions() {
                let d = du[xi * pairs + pair];
                for a in 0..3 {
                    for b in 0..3 {
                        dw[a * 3 + b] += G[i][a] * d * G[j][b];
                    }
                }
            }
        });
        dw
    }

    /// V = B^T d B for every tile of one image (channels x H x W), or of a stack of them, into
    /// the slots from `offset` on of the [ξ][channel][n] matrix `v`.
    #[inline(never)]
    fn input_transform(&self, x: &[f32], v: &mut [f32], n: usize, offset: usize, s: &mut Scratch) {
        pulp::Arch::new().dispatch(InputTransform {
            wg: self,
            x,
            v,
            n,
            offset,
            s,
        });
    }

    /// y = A^T M A [+ bias] for one image (C_out x H x W), or a stack of them, from its slots
    /// of `m`; every element of `y` written.
    #[inline(never)]
    fn output_transform(
        &self,
        m: &[f32],
        n: usize,
        offset: usize,
        bias: Option<&[f32]>,
        y: &mut [MaybeUninit<f32>],
        s: &mut Scratch,
    ) {
        pulp::Arch::new().dispatch(OutputTransform {
            wg: self,
            m,
            n,
            offset,
            bias,
            y,
            s,
        });
    }

    /// Z = A dY A^T for every tile of one image's output gradient (C_out x H x W), or a
    /// stack's, zero in the slots past each row's last tile and in an odd height's last row.
    #[inline(never)]
    fn output_adjoint(&self, dy: &[f32], z: &mut [f32], n: usize, offset: usize, s: &mut Scratch) {
        pulp::Arch::new().dispatch(OutputAdjoint {
            wg: self,
            dy,
            z,
            n,
            offset,
            s,
        });
    }

    /// Copies one channel into its zero-padded even and odd rows: padded pixel (r, c) is
    /// input pixel (r - 1, c - 1), and goes to `padded[r % 2]` at (r / 2) 2 l + c. Only the
    /// image's pixels are written: the padding keeps the zeros `with_buffers` left.
    #[inline(always)]
    fn pad_rows(&self, plane: &[f32], image: usize, padded: &mut [Vec<f32>; 2]) {
        let width = 2 * self.l;
        for (iy, row) in plane.chunks_exact(self.w).enumerate() {
            let r = iy + 1;
            let at = (image * self.th + r / 2) * width + 1;
            copy_inline(row, &mut padded[r % 2][at..][..self.w]);
        }
    }
}

/// Asks the CPU to bring `data` into its caches while it works on something else.
#[inline(always)]
fn prefetch(data: &[f32]) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
    #[cfg(target_arch = "x86_64")]
    for line in data.chunks(16) {
        // SAFETY: a prefetch reads nothing and cannot fault; the address is inside `data`.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr().cast(),
            );
        }
    }
}

/// `dst.copy_from_slice(src)` in eight-element blocks the compiler inlines: for rows of a few
/// dozen elements, a call to `memcpy` per row cost as much as the copy.
#[inline(always)]
fn copy_inline(src: &[f32], dst: &mut [f32]) {
    let ((src_blocks, src_rest), (dst_blocks, dst_rest)) =
        (src.as_chunks::<8>(), dst.as_chunks_mut::<8>());
    for (d, s) in dst_blocks.iter_mut().zip(src_blocks) {
        *d = *s;
    }
    for (d, s) in dst_rest.iter_mut().zip(src_rest) {
        *d = *s;
    }
}

/// Whether [`transpose`] takes matrices of `rows` rows (of a multiple of 8 columns) in 8x8
/// blocks of AVX registers; elsewhere gemm gathers.
fn transposable(rows: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        rows.is_multiple_of(8) && std::arch::is_x86_feature_detected!("avx")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = rows;
        false
    }
}

/// dst (cols x rows) = src (rows x cols) transposed, both row-major, in 8x8 blocks; rows and
/// cols multiples of 8, on a CPU with AVX ([`transposable`]).
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    assert!(transposable(rows) && cols.is_multiple_of(8));
    assert!(src.len() == rows * cols && dst.len() == rows * cols);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX is present (`transposable`), and every 8x8 block's loads and stores stay
    // inside the slices, whose lengths are asserted.
    unsafe {
        transpose_avx(src, rows, cols, dst);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_avx(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    for r in (0..rows).step_by(8) {
        for c in (0..cols).step_by(8) {
            // SAFETY: rows r..r + 8 and columns c..c + 8 exist in `src`, and the transposed
            // block in `dst`.
            unsafe {
                let row = |i: usize| _mm256_loadu_ps(src.as_ptr().add((r + i) * cols + c));
                let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
                let (r4, r5, r6, r7) = (row(4), row(5), row(6), row(7));
                let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
                let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
                let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
                let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
                let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let out = dst.as_mut_ptr();
                let store = |j: usize, v: __m256| _mm256_storeu_ps(out.add((c + j) * rows + r), v);
                store(0, _mm256_permute2f128_ps::<0x20>(s0, s4));
                store(1, _mm256_permute2f128_ps::<0x20>(s1, s5));
                store(2, _mm256_permute2f128_ps::<0x20>(s2, s6));
                store(3, _mm256_permute2f128_ps::<0x20>(s3, s7));
                store(4, _mm256_permute2f128_ps::<0x31>(s0, s4));
                store(5, _mm256_permute2f128_ps::<0x31>(s1, s5));
                store(6, _mm256_permute2f128_ps::<0x31>(s2, s6));
                store(7, _mm256_permute2f128_ps::<0x31>(s3, s7));
            }
        }
    }
}

/// Zeros in the columns [used, n) of every row of `matrix` (n columns): no transform writes
/// them, and the weight gradient's sums would take whatever they held.
fn zero_tails(matrix: &mut [f32], n: usize, used: usize) {
    for row in matrix.chunks_exact_mut(n) {
        row[used..].fill(0.0);
    }
}

/// a[k] = src[2 k] and b[k] = src[2 k + 1] for the whole pairs of `src`, and its last element
/// when its length is odd.
#[inline(always)]
fn deinterleave(src: &[f32], a: &mut [f32], b: &mut [f32]) -> Option<f32> {
    let n = src.len() / 2;
    let (pairs, a, b) = (&src[..2 * n], &mut a[..n], &mut b[..n]);
    for k in 0..n {
        a[k] = pairs[2 * k];
        b[k] = pairs[2 * k + 1];
    }
    (src.len() % 2 == 1).then(|| src[2 * n])
}

/// dst[2 k] = a[k] + add and dst[2 k + 1] = b[k] + add, dst's last element from `a` when its
/// length is odd: every element of `dst` written.
#[inline(always)]
fn interleave(a: &[f32], b: &[f32], add: f32, dst: &mut [MaybeUninit<f32>]) {
    let (pairs, rest) = dst.as_chunks_mut::<2>();
    let n = pairs.len();
    let (a2, b2) = (&a[..n], &b[..n]);
    for (k, pair) in pairs.iter_mut().enumerate() {
        *pair = [MaybeUninit::new(a2[k] + add), MaybeUninit::new(b2[k] + add)];
    }
    if let [last] = rest {
        *last = MaybeUninit::new(a[n] + add);
    }
}

/// The 16 positions ξ = 4 i + j of a transformed tile, with their row and column.
fn positions() -> impl Iterator<Item = (usize, [usize; 2])> {
    (0..16).map(|xi| (xi, [xi / 4, xi % 4]))
}

/// Row k of B^T (rows (1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)) applied to
/// four values per slot: e[q], o[q], e[q + apart], o[q + apart]. Along the row transforms of
/// the even and the odd padded rows (`apart` = l, a row of tiles reading padded rows
/// 2 ty .. 2 ty + 3) it gives row k of B^T d B.
#[inline(always)]
fn b_transpose_step(k: usize, e: &[f32], o: &[f32], apart: usize, out: &mut [f32]) {
    let len = out.len();
    let (e0, e1) = (&e[..len], &e[apart..len + apart]);
    let (o0, o1) = (&o[..len], &o[apart..len + apart]);
    match k {
        0 => out
            .iter_mut()
            .zip(e0.iter().zip(e1))
            .for_each(|(r, (a, b))| *r = a - b),
        1 => out
            .iter_mut()
            .zip(o0.iter().zip(e1))
            .for_each(|(r, (a, b))| *r = a + b),
        2 => out
            .iter_mut()
            .zip(e1.iter().zip(o0))
            .for_each(|(r, (a, b))| *r = a - b),
        _ => out
            .iter_mut()
            .zip(o0.iter().zip(o1))
            .for_each(|(r, (a, b))| *r = a - b),
    }
}

/// `d B` for every slot of a run of padded rows (`padded`, rows of 2 l columns): slot q of
/// a row reads its columns 2q .. 2q + 3, (a, b, c, d), and B^T's rows (1, 0, -1, 0),
/// (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1) give `out[0..4][q]`. Over the flattened rows,
/// slot i reads padded elements 2i .. 2i + 3: one loop over all the rows.
#[inline(always)]
fn row_transform(padded: &[f32], out: &mut [Vec<f32>], rows: usize) {
    let (pairs, _) = padded[..2 * rows + 2].as_chunks::<2>();
    let (here, next) = (&pairs[..rows], &pairs[1..=rows]);
    let [o0, o1, o2, o3] = out else {
        unreachable!("four columns of d B")
    };
    let (o0, o1, o2, o3) = (
        &mut o0[..rows],
        &mut o1[..rows],
        &mut o2[..rows],
        &mut o3[..rows],
    );
    for i in 0..rows {
        let ([a, b], [c, d]) = (here[i], next[i]);
        o0[i] = a - c;
        o1[i] = b + c;
        o2[i] = c - b;
        o3[i] = b - d;
    }
}

/// [`Winograd::input_transform`] inside pulp's function for the CPU's instruction set. The
/// three transforms are structs with an `#[inline(always)]` `with_simd` rather than closures
/// passed to `dispatch`: closures this large were not inlined into pulp's AVX function, and
/// compiled without a single 256-bit instruction (checked in the disassembly).
struct InputTransform<'a> {
    wg: &'a Winograd,
    x: &'a [f32],
    v: &'a mut [f32],
    n: usize,
    offset: usize,
    s: &'a mut Scratch,
}

impl pulp::WithSimd for InputTransform<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Self {
            wg,
            x,
            v,
            n,
            offset,
            s,
        } = self;
        let (channels, plane) = (wg.c_in, wg.plane());
        let images = x.len() / (channels * plane);
        let (slots, rows) = (images * wg.slots(), (images * wg.th + 1) * wg.l);
        for c in 0..channels {
            for k in 0..images {
                let at = (k * channels + c) * plane;
                if let Some(next) = x.get(at + plane..at + 2 * plane) {
                    prefetch(next);
                }
                wg.pad_rows(&x[at..][..plane], k, &mut s.padded);
            }
            if wg.stacked() {
                // The odd padded row below the last image: after a group of more images, it
                // holds one of their rows. Only the last output row (junk, its dY zero) reads
                // it, but a stack reads nothing but its own images and zeros.
                s.padded[1][images * wg.th * 2 * wg.l..][..2 * wg.l].fill(0.0);
            }
            let (even, odd) = s.rows.split_at_mut(4);
            row_transform(&s.padded[0], even, rows);
            row_transform(&s.padded[1], odd, rows);
            for j in 0..4 {
                for i in 0..4 {
                    let out = &mut v[((4 * i + j) * channels + c) * n + offset..][..slots];
                    b_transpose_step(i, &even[j], &odd[j], wg.l, out);
                }
            }
        }
    }
}

/// [`Winograd::output_transform`] inside pulp's function for the CPU's instruction set.
struct OutputTransform<'a> {
    wg: &'a Winograd,
    m: &'a [f32],
    n: usize,
    offset: usize,
    bias: Option<&'a [f32]>,
    y: &'a mut [MaybeUninit<f32>],
    s: &'a mut Scratch,
}

impl pulp::WithSimd for OutputTransform<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Self {
            wg,
            m,
            n,
            offset,
            bias,
            y,
            s,
        } = self;
        let (plane_len, w, l) = (wg.plane(), wg.w, wg.l);
        let images = y.len() / (wg.c_out * plane_len);
        let slots = images * wg.slots();
        for co in 0..wg.c_out {
            let t: [&[f32]; 16] =
                std::array::from_fn(|xi| &m[(xi * wg.c_out + co) * n + offset..][..slots]);
            let [y00, y01, y10, y11] = &mut s.quad;
            let (y00, y01, y10, y11) = (
                &mut y00[..slots],
                &mut y01[..slots],
                &mut y10[..slots],
                &mut y11[..slots],
            );
            // A^T = ((1, 1, 1, 0), (0, 1, -1, -1)), down the tile's rows and then across.
            for q in 0..slots {
                let v: [f32; 16] = std::array::from_fn(|xi| t[xi][q]);
                let top = |j: usize| v[j] + v[4 + j] + v[8 + j];
                let bottom = |j: usize| v[4 + j] - v[8 + j] - v[12 + j];
                y00[q] = top(0) + top(1) + top(2);
                y01[q] = top(1) - top(2) - top(3);
                y10[q] = bottom(0) + bottom(1) + bottom(2);
                y11[q] = bottom(1) - bottom(2) - bottom(3);
            }
            let b = bias.map_or(0.0, |b| b[co]);
            for k in 0..images {
                let plane = &mut y[(k * wg.c_out + co) * plane_len..][..plane_len];
                let (y00, y01, y10, y11) = (
                    &y00[k * wg.slots()..],
                    &y01[k * wg.slots()..],
                    &y10[k * wg.slots()..],
                    &y11[k * wg.slots()..],
                );
                if w.is_multiple_of(2) && wg.h.is_multiple_of(2) {
                    // Compacted row by row, then interleaved in one loop.
                    let [left, right] = &mut s.halves;
                    let half = w / 2;
                    let rows = left
                        .chunks_exact_mut(half)
                        .zip(right.chunks_exact_mut(half));
                    for (row, (left, right)) in rows.enumerate() {
                        let ty = row / 2;
                        let from = if row % 2 == 0 { (y00, y01) } else { (y10, y11) };
                        copy_inline(&from.0[ty * l..][..half], left);
                        copy_inline(&from.1[ty * l..][..half], right);
                    }
                    interleave(left, right, b, plane);
                } else {
                    for (ty, rows) in plane.chunks_mut(2 * w).enumerate() {
                        let (upper, lower) = rows.split_at_mut(w);
                        let tiles = ty * l..(ty + 1) * l;
                        for (line, (left, right)) in
                            [upper, lower].into_iter().zip([(y00, y01), (y10, y11)])
                        {
                            interleave(&left[tiles.clone()], &right[tiles.clone()], b, line);
                        }
                    }
                }
            }
        }
    }
}

/// [`Winograd::output_adjoint`] inside pulp's function for the CPU's instruction set.
struct OutputAdjoint<'a> {
    wg: &'a Winograd,
    dy: &'a [f32],
    z: &'a mut [f32],
    n: usize,
    offset: usize,
    s: &'a mut Scratch,
}

impl pulp::WithSimd for OutputAdjoint<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Self {
            wg,
            dy,
            z,
            n,
            offset,
            s,
        } = self;
        let (plane_len, w, l, c_out) = (wg.plane(), wg.w, wg.l, wg.c_out);
        let images = dy.len() / (c_out * plane_len);
        let slots = images * wg.slots();
        for co in 0..c_out {
            // dY by parity: p[2 a + b][ty l + tx] = dy[2 ty + a][2 tx + b], image k's from
            // slot k slots() on, zero outside. What is not written here keeps the zeros
            // `with_buffers` left.
            for k in 0..images {
                let plane = &dy[(k * c_out + co) * plane_len..][..plane_len];
                let [p00, p01, p10, p11] = &mut s.quad;
                let base = k * wg.slots();
                let (p00, p01, p10, p11) = (
                    &mut p00[base..],
                    &mut p01[base..],
                    &mut p10[base..],
                    &mut p11[base..],
                );
                if w.is_multiple_of(2) {
                    // Split in one loop, then spread row by row.
                    let [left, right] = &mut s.halves;
                    let half = w / 2;
                    deinterleave(plane, left, right);
                    let rows = left.chunks_exact(half).zip(right.chunks_exact(half));
                    for (row, (left, right)) in rows.enumerate() {
                        let ty = row / 2;
                        let to = if row % 2 == 0 {
                            (&mut *p00, &mut *p01)
                        } else {
                            (&mut *p10, &mut *p11)
                        };
                        copy_inline(left, &mut to.0[ty * l..][..half]);
                        copy_inline(right, &mut to.1[ty * l..][..half]);
                    }
                } else {
                    for (ty, rows) in plane.chunks(2 * w).enumerate() {
                        let (upper, lower) = rows.split_at(w.min(rows.len()));
                        for (line, (left, right)) in [upper, lower]
                            .into_iter()
                            .zip([(&mut *p00, &mut *p01), (&mut *p10, &mut *p11)])
                        {
                            let (left, right) =
                                (&mut left[ty * l..][..l], &mut right[ty * l..][..l]);
                            if let Some(last) = deinterleave(line, left, right) {
                                left[w / 2] = last;
                            }
                        }
                    }
                }
            }
            // Z[i][j] = sum over a, b of A[i][a] A[j][b] dY[a][b], one position at a time.
            let [p00, p01, p10, p11] = &s.quad;
            let (p00, p01, p10, p11) = (&p00[..slots], &p01[..slots], &p10[..slots], &p11[..slots]);
            for (z, (_, [i, j])) in z.chunks_exact_mut(c_out * n).zip(positions()) {
                let c = [
                    A[i][0] * A[j][0],
                    A[i][0] * A[j][1],
                    A[i][1] * A[j][0],
                    A[i][1] * A[j][1],
                ];
                let out = &mut z[co * n + offset..][..slots];
                for q in 0..slots {
                    out[q] = c[0] * p00[q] + c[1] * p01[q] + c[2] * p10[q] + c[3] * p11[q];
                }
            }
        }
    }
}
