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
pub fn on_flex_f32<const D: usize>(x: &Tensor<D>) -> bool {
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

/// c (m x n) = [c +] a (m x k) b (k x n), b and c row-major and contiguous, for the small
/// products of Winograd's transformed tiles and of the linear layers. When n is a multiple of
/// 8, on a CPU with AVX2 and FMA, a register-blocked kernel of its own reads the operands where
/// they lie: 8 rows of c by 32 columns at a time with AVX-512 (6 by 16 with AVX2), the panel
/// of b kept in L1 across the rows. gemm copies (packs) both operands first, which at these
/// sizes (m and k up to a few hundred) is a tenth of the product: in a loop, 109-116 GFLOP/s
/// a core against gemm's 87-105 (AVX2 kernel: 94-108). Elsewhere, [`matmul`].
///
/// a is given by its row and column strides: a transposed matrix, [1, rows], is read in place
/// (the kernel's broadcasts of a column of a are then contiguous).
pub(crate) fn small_matmul(
    (m, n, k): (usize, usize, usize),
    c: &mut [f32],
    accumulate: bool,
    (a, a_strides): (&[f32], [usize; 2]),
    b: &[f32],
) {
    assert!(c.len() >= m * n && b.len() >= k * n);
    assert!(m == 0 || k == 0 || a.len() > (m - 1) * a_strides[0] + (k - 1) * a_strides[1]);
    #[cfg(target_arch = "x86_64")]
    if let Some(kernel) = small::kernel().filter(|_| n.is_multiple_of(8)) {
        // SAFETY: `kernel` is for instructions the CPU has, n is a multiple of 8, and the
        // asserts keep every block inside the slices.
        unsafe { kernel((m, n, k), c.as_mut_ptr(), accumulate, (a, a_strides), b) };
        return;
    }
    let dims = (m, n, k);
    matmul(
        dims,
        c,
        accumulate,
        a,
        a_strides,
        b,
        [n, 1],
        Parallelism::None,
    );
}

/// c = a b as [`small_matmul`] does it, into memory not yet written.
pub(crate) fn small_matmul_uninit(
    (m, n, k): (usize, usize, usize),
    c: &mut [MaybeUninit<f32>],
    (a, a_strides): (&[f32], [usize; 2]),
    b: &[f32],
) {
    assert!(c.len() >= m * n && b.len() >= k * n);
    assert!(m == 0 || k == 0 || a.len() > (m - 1) * a_strides[0] + (k - 1) * a_strides[1]);
    #[cfg(target_arch = "x86_64")]
    if let Some(kernel) = small::kernel().filter(|_| n.is_multiple_of(8)) {
        // SAFETY: as in `small_matmul`; without accumulating, the kernel writes c's m x n
        // elements without reading them.
        unsafe { kernel((m, n, k), c.as_mut_ptr().cast(), false, (a, a_strides), b) };
        return;
    }
    matmul_uninit((m, n, k), c, (a, a_strides), (b, [n, 1]), Parallelism::None);
}

#[cfg(target_arch = "x86_64")]
mod small {
    use std::arch::x86_64::*;

    /// A kernel of [`super::small_matmul`]: (m, n, k), c, accumulate, (a, its row and column
    /// strides), b.
    pub(super) type Kernel =
        unsafe fn((usize, usize, usize), *mut f32, bool, (&[f32], [usize; 2]), &[f32]);

    /// The widest kernel this CPU runs, if any.
    pub(super) fn kernel() -> Option<Kernel> {
        let has = |feature| match feature {
            "avx512f" => std::arch::is_x86_feature_detected!("avx512f"),
            "avx2" => std::arch::is_x86_feature_detected!("avx2"),
            _ => std::arch::is_x86_feature_detected!("fma"),
        };
        if !(has("avx2") && has("fma")) {
            return None;
        }
        Some(if has("avx512f") { avx512 } else { avx2 })
    }

    /// One block's (k, n, a, a's strides, b, c, accumulate): a at its first row, b at its
    /// first column, c at its first element.
    type Args = (
        usize,
        usize,
        *const f32,
        [usize; 2],
        *const f32,
        *mut f32,
        bool,
    );

    /// # Safety
    /// AVX2 and FMA are present, n is a multiple of 8, a and b hold m x k (as its strides
    /// reach them) and k x n elements, and c points to m x n that nothing else accesses
    /// (initialized when accumulating).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2(
        (m, n, k): (usize, usize, usize),
        c: *mut f32,
        accumulate: bool,
        (a, a_strides): (&[f32], [usize; 2]),
        b: &[f32],
    ) {
        let (a, b) = (a.as_ptr(), b.as_ptr());
        let mut j = 0;
        while j < n {
            let vectors = ((n - j) / 8).min(2);
            let mut i = 0;
            while i < m {
                let rows = (m - i).min(6);
                // SAFETY: rows i..i + rows and columns j..j + 8 vectors are inside the
                // matrices.
                let args = unsafe {
                    let a = a.add(i * a_strides[0]);
                    (k, n, a, a_strides, b.add(j), c.add(i * n + j), accumulate)
                };
                // SAFETY: as above, with AVX2 and FMA present.
                unsafe {
                    if vectors == 2 {
                        rows_of::<__m256, 2>(rows, args)
                    } else {
                        rows_of::<__m256, 1>(rows, args)
                    }
                }
                i += rows;
            }
            j += 8 * vectors;
        }
    }

    /// # Safety
    /// AVX-512F, AVX2 and FMA are present, n is a multiple of 8, a and b hold m x k (as its
    /// strides reach them) and k x n elements, and c points to m x n that nothing else
    /// accesses (initialized when accumulating).
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn avx512(
        (m, n, k): (usize, usize, usize),
        c: *mut f32,
        accumulate: bool,
        (a, a_strides): (&[f32], [usize; 2]),
        b: &[f32],
    ) {
        let (a, b) = (a.as_ptr(), b.as_ptr());
        let mut j = 0;
        while j < n {
            // Columns this block takes: 32, 16, or the last 8.
            let cols = match n - j {
                32.. => 32,
                16.. => 16,
                _ => 8,
            };
            let mut i = 0;
            while i < m {
                let rows = (m - i).min(8);
                // SAFETY: rows i..i + rows and columns j..j + cols are inside the matrices.
                let args = unsafe {
                    let a = a.add(i * a_strides[0]);
                    (k, n, a, a_strides, b.add(j), c.add(i * n + j), accumulate)
                };
                // SAFETY: as above, with AVX-512F, AVX2 and FMA present.
                unsafe {
                    match cols {
                        32 => rows_of::<__m512, 2>(rows, args),
                        16 => rows_of::<__m512, 1>(rows, args),
                        _ => rows_of::<__m256, 1>(rows, args),
                    }
                }
                i += rows;
            }
            j += cols;
        }
    }

    /// `rows` (1 to 8) rows of V vectors of `L`, one block per row count.
    #[inline(always)]
    unsafe fn rows_of<L: Lanes, const V: usize>(rows: usize, args: Args) {
        // SAFETY: the caller's.
        unsafe {
            match rows {
                8 => block::<L, 8, V>(args),
                7 => block::<L, 7, V>(args),
                6 => block::<L, 6, V>(args),
                5 => block::<L, 5, V>(args),
                4 => block::<L, 4, V>(args),
                3 => block::<L, 3, V>(args),
                2 => block::<L, 2, V>(args),
                _ => block::<L, 1, V>(args),
            }
        }
    }

    /// c[R x W V] = [c +] a[R x k] b[k x W V] with W = `L::WIDTH`, a's rows a_row and its
    /// columns a_col apart, rows of b and c n apart: R V accumulators, one broadcast of a and
    /// V loads of b per step of k.
    #[inline(always)]
    unsafe fn block<L: Lanes, const R: usize, const V: usize>(
        (k, n, a, [a_row, a_col], b, c, accumulate): Args,
    ) {
        // SAFETY: the caller keeps rows 0..R and columns 0..W V inside the matrices, and the
        // CPU has L's instructions.
        unsafe {
            let mut sum = [[L::zero(); V]; R];
            for p in 0..k {
                let bv: [L; V] = std::array::from_fn(|v| L::load(b.add(p * n + L::WIDTH * v)));
                for (r, sum) in sum.iter_mut().enumerate() {
                    let av = L::splat(*a.add(r * a_row + p * a_col));
                    for v in 0..V {
                        sum[v] = L::mul_add(av, bv[v], sum[v]);
                    }
                }
            }
            for (r, sum) in sum.iter().enumerate() {
                for (v, &s) in sum.iter().enumerate() {
                    let dst = c.add(r * n + L::WIDTH * v);
                    L::store(
                        dst,
                        if accumulate {
                            L::add(L::load(dst), s)
                        } else {
                            s
                        },
                    );
                }
            }
        }
    }

    /// A vector register of floats, as the kernels use it.
    trait Lanes: Copy {
        const WIDTH: usize;
        unsafe fn zero() -> Self;
        unsafe fn load(from: *const f32) -> Self;
        unsafe fn splat(value: f32) -> Self;
        /// a b + c.
        unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self;
        unsafe fn add(a: Self, b: Self) -> Self;
        unsafe fn store(to: *mut f32, value: Self);
    }

    // SAFETY (both impls): callers run them only where the CPU has the instructions, on
    // pointers to WIDTH floats.
    impl Lanes for __m256 {
        const WIDTH: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> Self {
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn load(from: *const f32) -> Self {
            unsafe { _mm256_loadu_ps(from) }
        }
        #[inline(always)]
        unsafe fn splat(value: f32) -> Self {
            unsafe { _mm256_set1_ps(value) }
        }
        #[inline(always)]
        unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn store(to: *mut f32, value: Self) {
            unsafe { _mm256_storeu_ps(to, value) }
        }
    }

    impl Lanes for __m512 {
        const WIDTH: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> Self {
            unsafe { _mm512_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn load(from: *const f32) -> Self {
            unsafe { _mm512_loadu_ps(from) }
        }
        #[inline(always)]
        unsafe fn splat(value: f32) -> Self {
            unsafe { _mm512_set1_ps(value) }
        }
        #[inline(always)]
        unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn store(to: *mut f32, value: Self) {
            unsafe { _mm512_storeu_ps(to, value) }
        }
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

    /// The small-product kernels (AVX-512 and AVX2, as this CPU has them) against gemm, on
    /// every block shape and edge: rows 1 to 19, columns 8 to 72, with and without
    /// accumulating, a row-major and transposed. The same multiply-adds in another order:
    /// within 1e-5 of the largest value.
    #[test]
    fn small_products_match_gemms() {
        #[cfg(target_arch = "x86_64")]
        let kernels: Vec<small::Kernel> = {
            let has = |f: &str| match f {
                "avx512f" => std::arch::is_x86_feature_detected!("avx512f"),
                _ => {
                    std::arch::is_x86_feature_detected!("avx2")
                        && std::arch::is_x86_feature_detected!("fma")
                }
            };
            let mut kernels: Vec<small::Kernel> = Vec::new();
            if has("avx2") {
                kernels.push(small::avx2);
            }
            if has("avx2") && has("avx512f") {
                kernels.push(small::avx512);
            }
            kernels
        };
        #[cfg(not(target_arch = "x86_64"))]
        let kernels: Vec<
            fn((usize, usize, usize), *mut f32, bool, (&[f32], [usize; 2]), &[f32]),
        > = vec![];
        if kernels.is_empty() {
            eprintln!("skipped: no AVX2 here; small_matmul is gemm");
        }
        let value =
            |i: usize, seed: usize| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.0 - 1.0;
        for kernel in kernels {
            for (m, n, k) in [
                (1, 8, 1),
                (19, 72, 37),
                (8, 40, 216),
                (6, 16, 5),
                (13, 56, 64),
            ] {
                let a: Vec<f32> = (0..m * k).map(|i| value(i, 1)).collect();
                let b: Vec<f32> = (0..k * n).map(|i| value(i, 2)).collect();
                for accumulate in [false, true] {
                    let start: Vec<f32> = (0..m * n).map(|i| value(i, 3)).collect();
                    let mut expected = start.clone();
                    let dims = (m, n, k);
                    let strides = ([k, 1], [n, 1]);
                    matmul(
                        dims,
                        &mut expected,
                        accumulate,
                        &a,
                        strides.0,
                        &b,
                        strides.1,
                        Parallelism::None,
                    );
                    // a as it is, and a transposed copy read through its strides.
                    let a_t: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
                    for (a, strides) in [(&a, [k, 1]), (&a_t, [1, m])] {
                        let mut got = if accumulate {
                            start.clone()
                        } else {
                            vec![f32::NAN; m * n]
                        };
                        // SAFETY: the kernel is for this CPU, n is a multiple of 8, and the
                        // slices have the sizes the kernel reads and writes.
                        unsafe { kernel(dims, got.as_mut_ptr(), accumulate, (a, strides), &b) };
                        let scale = expected.iter().fold(0.0f32, |s, v| s.max(v.abs()));
                        let err = got
                            .iter()
                            .zip(&expected)
                            .fold(0.0f32, |e, (g, x)| e.max((g - x).abs()));
                        assert!(
                            err <= 1e-5 * scale,
                            "{m}x{n}x{k}, accumulate {accumulate}, a strides {strides:?}: {err}"
                        );
                    }
                }
            }
        }
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
