//! The few numeric kernels where the time goes: matrix products, row-wise
//! softmax, im2col for convolutions and max-pooling.
//!
//! Everything above these kernels (the tape, the layers) is plain bookkeeping.

mod conv;
mod conv_direct;
#[cfg(target_arch = "x86_64")]
mod gemm_avx2;
#[cfg(target_arch = "x86_64")]
mod gemm_avx512;
#[cfg(target_arch = "x86_64")]
mod gemm_packed;
mod matmul;
mod pool;
#[cfg(target_arch = "x86_64")]
mod simd;
mod softmax;

pub use conv::{col2im, im2col, ConvGeometry};
pub use conv_direct::{
    conv2d_direct, conv2d_direct_applies, conv2d_direct_input_grad, conv2d_direct_weight_grad,
};
pub use matmul::{gemm, SINGLE_PASS_K};
pub use pool::{max_pool2d, max_pool2d_backward, PoolGeometry};
pub use softmax::{log_softmax_and_probs, log_softmax_rows, softmax_rows};

/// A mask of the first `n` (at most 16) lanes of a 16-lane vector.
#[cfg(target_arch = "x86_64")]
#[inline]
fn lanes(n: usize) -> u16 {
    ((1u32 << n.min(16)) - 1) as u16
}

/// The `part`-th of `parts` near-equal contiguous shares of `0..len` (how
/// the hand-written kernels cut their work).
#[cfg(target_arch = "x86_64")]
fn share(len: usize, parts: usize, part: usize) -> std::ops::Range<usize> {
    let (base, extra) = (len / parts, len % parts);
    let start = part * base + part.min(extra);
    start..start + base + usize::from(part < extra)
}

/// Whether this CPU has AVX-512F, which the direct convolution, 2 × 2 max
/// pooling and the matrix product's widest tile need.
#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512() -> bool {
    false
}

/// Whether this CPU has AVX2 and FMA, which the matrix product's tile, the
/// direct convolution and 2 × 2 max pooling on CPUs without AVX-512 need.
#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2() -> bool {
    false
}
