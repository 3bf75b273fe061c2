//! What the CPU kernels share: which tensors they take, gemm on slices, and how a batch is split
//! over threads.

use std::borrow::Cow;
use std::cell::RefCell;
use std::mem::MaybeUninit;

use burn::tensor::{DType, Tensor, TensorData};
use burn_flex::FlexTensor;
use gemm::Parallelism;
use rayon::iter::{IndexedParallelIterator, ParallelExtend, ParallelIterator};
use rayon::slice::ParallelSliceMut;

/// Whether `x` takes the fused CPU kernels: float32 on a burn-flex device, with or without
/// autodiff.
pub(crate) fn on_flex_f32<const D: usize>(x: &Tensor<D>) -> bool {
    #[allow(unreachable_patterns)] // Only flex is compiled in by default.
    let flex = matches!(
        x.device().inner().as_dispatch(),
        burn::backend::DispatchDevice::Flex(_)
    );
    flex && x.dtype() == DType::F32
}

/// dst (m x n, row-major) = [dst +] lhs (m x k) rhs (k x n), each operand given by its row and
/// column strides.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    dims: (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    lhs_strides: [usize; 2],
    rhs: &[f32],
    rhs_strides: [usize; 2],
    parallelism: Parallelism,
) {
    // SAFETY: `dst` is initialized, so it may be read when accumulating.
    unsafe {
        gemm_into(
            dims,
            (dst.as_mut_ptr(), dst.len()),
            accumulate,
            (lhs, lhs_strides),
            (rhs, rhs_strides),
            parallelism,
        )
    }
}

/// dst (m x n, row-major) = lhs (m x k) rhs (k x n), as [`matmul`], into memory not yet
/// written: gemm writes every element of dst's m x n without reading it.
pub(crate) fn matmul_uninit(
    dims: (usize, usize, usize),
    dst: &mut [MaybeUninit<f32>],
    lhs: (&[f32], [usize; 2]),
    rhs: (&[f32], [usize; 2]),
    parallelism: Parallelism,
) {
    // SAFETY: gemm does not read dst when it does not accumulate.
    unsafe {
        gemm_into(
            dims,
            (dst.as_mut_ptr().cast(), dst.len()),
            false,
            lhs,
            rhs,
            parallelism,
        )
    }
}

/// # Safety
/// `dst` points to `len` floats that nothing else accesses; they must be initialized when
/// `accumulate` is true.
unsafe fn gemm_into(
    (m, n, k): (usize, usize, usize),
    (dst, len): (*mut f32, usize),
    accumulate: bool,
    (lhs, [lhs_rs, lhs_cs]): (&[f32], [usize; 2]),
    (rhs, [rhs_rs, rhs_cs]): (&[f32], [usize; 2]),
    parallelism: Parallelism,
) {
    assert!(len >= m * n);
    assert!(m == 0 || k == 0 || lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    assert!(n == 0 || k == 0 || rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    // SAFETY: the asserts keep every index the strides reach inside the slices and `dst`'s
    // `len` elements, which alias neither operand (the caller's contract).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// A vector of `len` floats, each written by `init` before anything reads it, without zeroing
/// it first (a fresh buffer's memset had been 5% of a 2-D training step).
///
/// # Safety
/// `init` writes every one of the `len` elements it is handed.
pub(crate) unsafe fn written(len: usize, init: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    init(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: `init` wrote all `len` elements (the caller's contract).
    unsafe { v.set_len(len) };
    v
}

/// `values` as initialized floats.
///
/// # Safety
/// Every element has been written.
pub(crate) unsafe fn assume_written(values: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: MaybeUninit<f32> has f32's layout, and every element is initialized (the
    // caller's contract).
    unsafe { &mut *(values as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Runs `f` on a worker of a rayon pool of one thread per core (as rayon's global pool) and
/// waits for it. The kernels' parallel loops then start on a worker, which takes a share of
/// the work itself while the others wake up, rather than on the main thread, which hands all
/// of it over and sleeps until the last task wakes it: on small tensors the handover cost as
/// much as the work (the 2-D MLP trained 6-43% faster over five alternating runs). The
/// workers get the main thread's usual 8 MiB of stack (std gives spawned threads 2 MiB).
/// Where no pool can be built, `f` runs here.
pub fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match rayon::ThreadPoolBuilder::new().stack_size(8 << 20).build() {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}

/// Items (images, rows) per task: the batch split evenly over the threads, one task per thread.
pub(crate) fn per_task(batch: usize) -> usize {
    batch.div_ceil(rayon::current_num_threads()).max(1)
}

/// gemm runs on one thread inside a task, unless there are fewer items than threads.
pub(crate) fn inner_parallelism(batch: usize) -> Parallelism {
    let threads = rayon::current_num_threads();
    if batch >= threads {
        Parallelism::None
    } else {
        Parallelism::Rayon(threads)
    }
}

/// `len` zeros, written by the rayon threads rather than by the caller's thread alone when
/// there are many (a large buffer's memset on the calling thread kept the other cores
/// waiting).
pub(crate) fn zeros(len: usize) -> Vec<f32> {
    if len < 1 << 18 {
        return vec![0.0; len];
    }
    let mut zeros = Vec::with_capacity(len);
    zeros.par_extend(rayon::iter::repeat_n(0.0f32, len));
    zeros
}

thread_local! {
    /// Each thread's scratch buffers for [`with_scratch`].
    static SCRATCH: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// `f` with N buffers of the given lengths, kept by this thread between calls and handed back
/// in the order they were taken (so each comes back to the same use): their contents are
/// whatever an earlier call left, for kernels that write every element before they read it.
/// Fresh zeroed buffers for every task of a convolution had cost a memset each.
pub(crate) fn with_scratch<const N: usize, R>(
    lengths: [usize; N],
    f: impl FnOnce([&mut [f32]; N]) -> R,
) -> R {
    let mut buffers: [Vec<f32>; N] =
        SCRATCH.with_borrow_mut(|pool| std::array::from_fn(|_| pool.pop().unwrap_or_default()));
    for (buffer, &len) in buffers.iter_mut().zip(&lengths) {
        if buffer.len() < len {
            buffer.resize(len, 0.0);
        }
    }
    let result = {
        let mut slices = buffers.iter_mut().zip(lengths);
        f(std::array::from_fn(|_| {
            let (buffer, len) = slices.next().expect("N buffers");
            &mut buffer[..len]
        }))
    };
    SCRATCH.with_borrow_mut(|pool| pool.extend(buffers.into_iter().rev()));
    result
}

/// The sums of `term(a[i], b[i])` (two at once) in f64, over [`LANES`] independent running
/// sums that are added in a fixed order at the end: a single running sum waits on the latency
/// of every addition, and cannot be vectorized. Compiled for the CPU's widest SIMD (pulp).
pub(crate) fn lane_sums(a: &[f32], b: &[f32], term: impl Fn(f64, f64) -> [f64; 2]) -> [f64; 2] {
    pulp::Arch::new().dispatch(LaneSums { a, b, term })
}

/// [`lane_sums`] inside pulp's function for the CPU's instruction set: a struct rather than a
/// closure passed to `dispatch`, which was compiled on its own, without the vector
/// instructions (its samples fell in `FnOnce::call_once`, outside pulp's function).
struct LaneSums<'a, F> {
    a: &'a [f32],
    b: &'a [f32],
    term: F,
}

impl<F: Fn(f64, f64) -> [f64; 2]> pulp::WithSimd for LaneSums<'_, F> {
    type Output = [f64; 2];

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> [f64; 2] {
        let Self { a, b, term } = self;
        let mut lanes = [[0.0f64; LANES]; 2];
        let ((a_chunks, a_rest), (b_chunks, b_rest)) =
            (a.as_chunks::<LANES>(), b.as_chunks::<LANES>());
        for (a, b) in a_chunks.iter().zip(b_chunks) {
            for i in 0..LANES {
                let [t0, t1] = term(a[i] as f64, b[i] as f64);
                lanes[0][i] += t0;
                lanes[1][i] += t1;
            }
        }
        let mut sums = lanes.map(|lanes| lanes.iter().sum::<f64>());
        for (&a, &b) in a_rest.iter().zip(b_rest) {
            let [t0, t1] = term(a as f64, b as f64);
            sums[0] += t0;
            sums[1] += t1;
        }
        sums
    }
}

/// Running sums in [`lane_sums`].
const LANES: usize = 8;

/// The sum of `values` in f64 ([`lane_sums`]).
pub(crate) fn sum_f64(values: &[f32]) -> f64 {
    lane_sums(values, values, |v, _| [v, 0.0])[0]
}

/// A float32 tensor's elements in row-major order, copied only when it is strided.
pub(crate) fn f32s(t: &FlexTensor) -> Cow<'_, [f32]> {
    if let Some(s) = t.as_slice::<f32>() {
        return Cow::Borrowed(s);
    }
    Cow::Owned(gather_blocks(t).unwrap_or_else(|| {
        t.to_contiguous()
            .as_slice::<f32>()
            .expect("contiguous")
            .to_vec()
    }))
}

/// A strided tensor whose trailing dimensions are contiguous blocks (a slice along the
/// channels of an NCHW tensor, as the gradient of a concatenation is) copied block by block
/// by the rayon threads; None for other layouts and for blocks too small to be worth it.
/// burn-flex's copy runs on the calling thread alone.
fn gather_blocks(t: &FlexTensor) -> Option<Vec<f32>> {
    let layout = t.layout();
    let (dims, strides) = (layout.shape().as_slice(), layout.strides());
    // The trailing dimensions laid out contiguously, and the elements they hold.
    let mut block = 1usize;
    let mut inner = dims.len();
    while inner > 0 && strides[inner - 1] == block as isize {
        block *= dims[inner - 1];
        inner -= 1;
    }
    let outer = &dims[..inner];
    if inner == 0 || block < 1 << 12 || strides[..inner].iter().any(|&s| s < 0) {
        return None;
    }
    let storage = t.storage::<f32>();
    let start = layout.start_offset();
    let copy = |out: &mut [MaybeUninit<f32>]| {
        out.par_chunks_mut(block)
            .enumerate()
            .for_each(|(mut i, out)| {
                // The block's offset: its index over the outer dimensions, last fastest.
                let mut offset = start;
                for d in (0..inner).rev() {
                    offset += (i % outer[d]) * strides[d] as usize;
                    i /= outer[d];
                }
                for (out, &v) in out.iter_mut().zip(&storage[offset..offset + block]) {
                    *out = MaybeUninit::new(v);
                }
            })
    };
    // SAFETY: the blocks cover the whole tensor, and each is copied in full.
    Some(unsafe { written(dims.iter().product(), copy) })
}

pub(crate) fn tensor(values: Vec<f32>, shape: impl Into<burn::tensor::Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.into()))
}

/// The sum of per-task (weight gradient, bias gradient) pairs, added in the order given. The
/// weight gradients are summed by the rayon threads, a run of elements each (every element
/// still adds the tasks in order): one thread summing sixteen 64-channel Winograd gradients
/// had kept the others waiting.
pub(crate) fn sum_in_order(
    partials: Vec<(Vec<f32>, Vec<f64>)>,
    (mut dw, mut db): (Vec<f32>, Vec<f64>),
) -> (Vec<f32>, Vec<f64>) {
    const RUN: usize = 1 << 14;
    let add_run = |(i, dw): (usize, &mut [f32])| {
        for (dw2, _) in &partials {
            dw.iter_mut()
                .zip(&dw2[i * RUN..])
                .for_each(|(a, b)| *a += b);
        }
    };
    // A small gradient (a linear layer's) on the calling thread.
    if dw.len() <= RUN {
        add_run((0, &mut dw));
    } else {
        dw.par_chunks_mut(RUN).enumerate().for_each(add_run);
    }
    for (_, db2) in &partials {
        db.iter_mut().zip(db2).for_each(|(a, b)| *a += b);
    }
    (dw, db)
}

/// What the kernels' tests share.
#[cfg(test)]
pub(crate) mod testing {
    use burn::tensor::Tensor;

    /// max |a - b| / max |b| (the scale at least 1e-6).
    pub(crate) fn max_relative<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        let scale = b.clone().abs().max().into_scalar::<f32>().max(1e-6);
        (a - b).abs().max().into_scalar::<f32>() / scale
    }

    /// The bits of a float32 tensor's elements.
    pub(crate) fn bits<const D: usize>(t: Tensor<D>) -> Vec<u32> {
        let values: Vec<f32> = t.into_data().try_to_vec().unwrap();
        values.iter().map(|v| v.to_bits()).collect()
    }

    /// `f` run on a rayon pool of `threads` threads.
    pub(crate) fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `on_worker` runs its closure on a worker of a pool as large as rayon's global one, and
    /// hands back what it returns.
    #[test]
    fn on_worker_runs_on_a_worker_of_a_full_pool() {
        let threads = rayon::current_num_threads();
        let (index, pool_threads, value) = on_worker(|| {
            (
                rayon::current_thread_index(),
                rayon::current_num_threads(),
                42,
            )
        });
        assert!(index.is_some(), "not on a worker");
        assert_eq!((pool_threads, value), (threads, 42));
    }

    /// Strided tensors come out in row-major order, through the block copy (channel slices of
    /// NCHW, with and without an offset) and through burn-flex's (a slice of one channel, too
    /// small a block, and a transposed view).
    #[test]
    fn strided_tensors_are_read_in_row_major_order() {
        let (b, c, h, w) = (3, 7, 48, 47);
        let values: Vec<f32> = (0..b * c * h * w).map(|i| i as f32).collect();
        let x = tensor(values, [b, c, h, w]);
        for (start, len, blocks) in [(0, 4, true), (4, 3, true), (2, 1, false)] {
            let slice = x.narrow(1, start, len);
            assert!(slice.as_slice::<f32>().is_none());
            let by_blocks = gather_blocks(&slice).is_some();
            assert_eq!(by_blocks, blocks, "{start}..{}", start + len);
            let expected = slice.to_contiguous().as_slice::<f32>().unwrap().to_vec();
            assert_eq!(
                f32s(&slice).into_owned(),
                expected,
                "{start}..{}",
                start + len
            );
        }
        let transposed = x.transpose(2, 3);
        assert!(gather_blocks(&transposed).is_none());
        let expected = transposed
            .to_contiguous()
            .as_slice::<f32>()
            .unwrap()
            .to_vec();
        assert_eq!(f32s(&transposed).into_owned(), expected);
    }
}
