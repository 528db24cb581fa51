//! Element-wise passes over parameter, gradient and state slices.
//!
//! Every optimizer step is one pass over equally long slices in which each
//! index is updated independently of the others. Below
//! [`PARALLEL_THRESHOLD`] elements the pass runs on the calling thread; above
//! it the slices are halved recursively (at positions that depend only on the
//! length) down to [`CHUNK`] elements and the halves run under `rayon::join`.
//! Because an element's update never reads another element, the result is
//! bit-identical for every thread count.
//!
//! Reductions (the squared norm, whether a value is non-finite) use the same
//! length-determined split tree, so their rounding is also independent of the
//! thread count.

/// Slices shorter than this are processed on the calling thread.
///
/// Measured with `cargo bench -p mtl-benches --bench optim` (group
/// `optim_threshold`: an Adam step in a 1-thread and in a 2-thread pool) on
/// the shared 2-core development machine. Two threads lost at 2^16
/// parameters (127 µs against 108 µs) and won at 2^17 (217 µs against
/// 334 µs) when the second core was free. They only tied there when it was
/// busy. Below 2^17 threads never paid.
pub(crate) const PARALLEL_THRESHOLD: usize = 1 << 17;

/// Leaf size of the recursive split: 16 Ki elements (64 KiB per slice), small
/// enough for the leaves of all slices of an Adam step to sit in L2 together.
pub(crate) const CHUNK: usize = 1 << 14;

/// Split point of a slice of `len > CHUNK` elements: the middle, rounded down
/// to a multiple of 64 elements so that every leaf starts on a cache line.
fn split_point(len: usize) -> usize {
    (len / 2) & !63
}

/// Applies `kernel` to `params`, `grads` and `N` state buffers of the same
/// length, serially or split across threads (see the module docs).
///
/// The caller guarantees equal lengths; the kernel receives equally long
/// sub-slices covering the same indices.
pub(crate) fn update<const N: usize, F>(
    params: &mut [f32],
    grads: &[f32],
    state: [&mut [f32]; N],
    kernel: &F,
) where
    F: Fn(&mut [f32], &[f32], [&mut [f32]; N]) + Sync,
{
    debug_assert_eq!(params.len(), grads.len());
    debug_assert!(state.iter().all(|s| s.len() == params.len()));
    if params.len() < PARALLEL_THRESHOLD {
        run(kernel, params, grads, state);
    } else {
        update_split(params, grads, state, kernel);
    }
}

/// Calls `kernel` compiled for AVX-512 where the CPU has it (the update
/// loops then run 16 lanes wide instead of SSE's 4), else for AVX2 where it
/// has that (8 lanes). The kernels use only correctly rounded IEEE
/// operations (Rust never contracts a multiply and an add into a fused
/// one), so every build gives the same bits.
#[inline]
fn run<const N: usize, F>(kernel: &F, params: &mut [f32], grads: &[f32], state: [&mut [f32]; N])
where
    F: Fn(&mut [f32], &[f32], [&mut [f32]; N]),
{
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F (checked just above).
        unsafe { run_avx512(kernel, params, grads, state) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { run_avx2(kernel, params, grads, state) };
        return;
    }
    kernel(params, grads, state);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2<const N: usize, F>(
    kernel: &F,
    params: &mut [f32],
    grads: &[f32],
    state: [&mut [f32]; N],
) where
    F: Fn(&mut [f32], &[f32], [&mut [f32]; N]),
{
    kernel(params, grads, state);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512<const N: usize, F>(
    kernel: &F,
    params: &mut [f32],
    grads: &[f32],
    state: [&mut [f32]; N],
) where
    F: Fn(&mut [f32], &[f32], [&mut [f32]; N]),
{
    kernel(params, grads, state);
}

fn update_split<const N: usize, F>(
    params: &mut [f32],
    grads: &[f32],
    state: [&mut [f32]; N],
    kernel: &F,
) where
    F: Fn(&mut [f32], &[f32], [&mut [f32]; N]) + Sync,
{
    if params.len() <= CHUNK {
        run(kernel, params, grads, state);
        return;
    }
    let mid = split_point(params.len());
    let (p_left, p_right) = params.split_at_mut(mid);
    let (g_left, g_right) = grads.split_at(mid);
    let mut halves = state.map(|s| {
        let (left, right) = s.split_at_mut(mid);
        (Some(left), Some(right))
    });
    let s_left: [&mut [f32]; N] =
        std::array::from_fn(|i| halves[i].0.take().expect("each half is taken once"));
    let s_right: [&mut [f32]; N] =
        std::array::from_fn(|i| halves[i].1.take().expect("each half is taken once"));
    rayon::join(
        || update_split(p_left, g_left, s_left, kernel),
        || update_split(p_right, g_right, s_right, kernel),
    );
}

/// Applies `kernel` to `values` in place, serially or split across threads
/// like [`update`].
pub(crate) fn map_in_place<F>(values: &mut [f32], kernel: &F)
where
    F: Fn(&mut [f32]) + Sync,
{
    if values.len() < PARALLEL_THRESHOLD {
        kernel(values);
    } else {
        map_split(values, kernel);
    }
}

fn map_split<F>(values: &mut [f32], kernel: &F)
where
    F: Fn(&mut [f32]) + Sync,
{
    if values.len() <= CHUNK {
        kernel(values);
        return;
    }
    let (left, right) = values.split_at_mut(split_point(values.len()));
    rayon::join(|| map_split(left, kernel), || map_split(right, kernel));
}

/// Reduces `values` with `leaf` on pieces and `combine` over the fixed split
/// tree; serial below [`PARALLEL_THRESHOLD`].
pub(crate) fn reduce<T, L, C>(values: &[f32], leaf: &L, combine: &C) -> T
where
    T: Send,
    L: Fn(&[f32]) -> T + Sync,
    C: Fn(T, T) -> T + Sync,
{
    if values.len() < PARALLEL_THRESHOLD {
        leaf(values)
    } else {
        reduce_split(values, leaf, combine)
    }
}

fn reduce_split<T, L, C>(values: &[f32], leaf: &L, combine: &C) -> T
where
    T: Send,
    L: Fn(&[f32]) -> T + Sync,
    C: Fn(T, T) -> T + Sync,
{
    if values.len() <= CHUNK {
        return leaf(values);
    }
    let (left, right) = values.split_at(split_point(values.len()));
    let (a, b) = rayon::join(
        || reduce_split(left, leaf, combine),
        || reduce_split(right, leaf, combine),
    );
    combine(a, b)
}

/// Index and value of the first NaN or infinite entry of `values`, if any.
///
/// ```
/// assert_eq!(mtl_optim::first_non_finite(&[1.0, f32::NAN, f32::INFINITY]).map(|b| b.0), Some(1));
/// assert_eq!(mtl_optim::first_non_finite(&[0.5; 4]), None);
/// ```
///
/// The common all-finite case is a branch-free pass over the exponent bits
/// (vectorised, 16 lanes wide on AVX-512, split across threads for long
/// slices); the position is only searched for once a bad value is known to
/// exist.
pub fn first_non_finite(values: &[f32]) -> Option<(usize, f32)> {
    if !reduce(values, &any_non_finite, &|a, b| a || b) {
        return None;
    }
    values
        .iter()
        .enumerate()
        .find(|(_, x)| !x.is_finite())
        .map(|(i, &x)| (i, x))
}

/// Whether `xs` holds a NaN or an infinity: the largest of the values' bits
/// with the sign cleared reaches the all-ones exponent. Compiled for
/// AVX-512 or AVX2 where the CPU has it, as the updates are (see [`run`]).
fn any_non_finite(xs: &[f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F (checked just above).
        return unsafe { any_non_finite_avx512(xs) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { any_non_finite_avx2(xs) };
    }
    any_non_finite_portable(xs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn any_non_finite_avx2(xs: &[f32]) -> bool {
    any_non_finite_portable(xs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn any_non_finite_avx512(xs: &[f32]) -> bool {
    any_non_finite_portable(xs)
}

/// The body of [`any_non_finite`].
#[inline(always)]
fn any_non_finite_portable(xs: &[f32]) -> bool {
    /// Bits of an f32 with the sign cleared are at least this for ±inf and NaN.
    const EXPONENT_ALL_ONES: u32 = 0x7f80_0000;
    let largest = xs
        .iter()
        .fold(0u32, |m, x| m.max(x.to_bits() & 0x7fff_ffff));
    largest >= EXPONENT_ALL_ONES
}

/// Sum of squares of `values`, accumulated in f64 in eight interleaved lanes
/// per leaf (so the loop vectorises) and combined over the fixed split tree.
pub(crate) fn sum_of_squares(values: &[f32]) -> f64 {
    let leaf = |xs: &[f32]| -> f64 {
        let mut lanes = [0.0f64; 8];
        let mut blocks = xs.chunks_exact(8);
        for block in &mut blocks {
            for (lane, &x) in lanes.iter_mut().zip(block) {
                *lane += f64::from(x) * f64::from(x);
            }
        }
        let tail: f64 = blocks
            .remainder()
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum();
        lanes.iter().sum::<f64>() + tail
    };
    reduce(values, &leaf, &|a, b| a + b)
}

/// Replaces a subnormal value by zero (see "Subnormal state" in the crate docs).
#[inline(always)]
pub(crate) fn flush_subnormal(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE {
        0.0
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_update_covers_every_index_once() {
        let n = 3 * PARALLEL_THRESHOLD + 77;
        let mut p = vec![0.0f32; n];
        let g: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let mut s = vec![1.0f32; n];
        update(&mut p, &g, [&mut s], &|p, g, [s]| {
            for ((p, g), s) in p.iter_mut().zip(g).zip(s.iter_mut()) {
                *p += g;
                *s += 1.0;
            }
        });
        assert_eq!(p, g);
        assert!(s.iter().all(|&x| x == 2.0));
    }

    #[test]
    fn every_build_of_an_update_gives_the_bits_of_the_portable_one() {
        // An Adam-like update (square root, division, products and sums
        // that a fused multiply-add would round differently), on a length
        // with a tail past every vector width.
        let kernel = |p: &mut [f32], g: &[f32], [m, v]: [&mut [f32]; 2]| {
            for (((p, g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                *m = 0.9 * *m + 0.1 * g;
                *v = 0.999 * *v + 0.001 * g * g;
                *p -= 0.01 * *m / (v.sqrt() + 1e-8);
            }
        };
        let n = 1037;
        let start = |salt: u32| -> Vec<f32> {
            (0..n as u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) ^ salt) % 2001)
                .map(|i| i as f32 / 700.0 - 1.4)
                .collect()
        };
        let g = start(3);
        let mut want = [
            start(1),
            start(2),
            start(4).iter().map(|x| x.abs()).collect(),
        ];
        let [p, m, v] = &mut want;
        kernel(p, &g, [m, v]);
        let bits =
            |x: &[Vec<f32>; 3]| -> Vec<u32> { x.iter().flatten().map(|x| x.to_bits()).collect() };
        let mut builds = 0;
        type Update<'a> = &'a dyn Fn(&mut [f32], &[f32], [&mut [f32]; 2]);
        let mut check = |run: Update| {
            let mut got = [
                start(1),
                start(2),
                start(4).iter().map(|x| x.abs()).collect(),
            ];
            let [p, m, v] = &mut got;
            run(p, &g, [m, v]);
            assert_eq!(bits(&got), bits(&want));
            builds += 1;
        };
        check(&|p, g, s| run(&kernel, p, g, s));
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU supports AVX-512F (checked just above).
                check(&|p, g, s| unsafe { run_avx512(&kernel, p, g, s) });
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2 (checked just above).
                check(&|p, g, s| unsafe { run_avx2(&kernel, p, g, s) });
            }
        }
        assert!(builds >= 1);
    }

    #[test]
    fn finds_first_bad_gradient_in_long_slice() {
        let n = 2 * PARALLEL_THRESHOLD;
        let mut g = vec![1.0f32; n];
        g[n - 5] = f32::INFINITY;
        g[n - 3] = f32::NAN;
        assert_eq!(first_non_finite(&g), Some((n - 5, f32::INFINITY)));
        g[n - 5] = f32::MAX;
        let (i, v) = first_non_finite(&g).unwrap();
        assert_eq!(i, n - 3);
        assert!(v.is_nan());
    }

    #[test]
    fn every_non_finite_value_is_found_and_no_finite_one() {
        let finite = [
            f32::MAX,
            -f32::MAX,
            f32::MIN_POSITIVE,
            1e-45,
            -0.0,
            0.0,
            -1.5,
        ];
        let bad = [
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0x7f80_0001),
            f32::from_bits(0xffff_ffff),
        ];
        // Short slices (one pass on the calling thread, with a tail past
        // the vectors) and long ones (split across threads); the bad value
        // first, last and in the middle.
        for n in [1, 17, 1000, PARALLEL_THRESHOLD + 33] {
            let mut g: Vec<f32> = (0..n).map(|i| finite[i % finite.len()]).collect();
            assert_eq!(first_non_finite(&g), None, "n {n}");
            for &b in &bad {
                for at in [0, n / 2, n - 1] {
                    let keep = g[at];
                    g[at] = b;
                    let (i, v) = first_non_finite(&g).expect("a bad value");
                    assert_eq!((i, v.to_bits()), (at, b.to_bits()), "n {n}");
                    g[at] = keep;
                }
            }
        }
    }

    #[test]
    fn sum_of_squares_of_integers() {
        // Σ_{i=1}^{n} i² = n(n+1)(2n+1)/6 (about 6e15 here): every term and
        // partial sum is an integer below 2^53, so the f64 sum is exact.
        let n = 2 * PARALLEL_THRESHOLD + 3;
        let v: Vec<f32> = (1..=n).map(|i| i as f32).collect();
        let n = n as u128;
        let exact = n * (n + 1) * (2 * n + 1) / 6;
        assert!(exact < 1 << 53);
        assert_eq!(sum_of_squares(&v), exact as f64);
    }

    #[test]
    fn flush_keeps_normals_and_zeroes_subnormals() {
        assert_eq!(flush_subnormal(f32::MIN_POSITIVE), f32::MIN_POSITIVE);
        assert_eq!(flush_subnormal(-f32::MIN_POSITIVE), -f32::MIN_POSITIVE);
        assert_eq!(flush_subnormal(f32::MIN_POSITIVE / 2.0), 0.0);
        assert_eq!(flush_subnormal(-1e-40), 0.0);
        assert_eq!(flush_subnormal(0.5), 0.5);
    }
}
