//! Shared measurement helpers for the `mtl` benchmarks, and the training
//! workloads they run ([`workloads`]).
//!
//! Every benchmark in `benches/` reports a throughput figure (GFLOP/s or GB/s) so
//! that results can be compared across machines and with PyTorch in the same run.
//!
//! ```
//! assert_eq!(mtl_benches::matmul_flops(2, 3, 4), 48);
//! ```
#![warn(missing_docs)]

pub mod workloads;

/// Floating-point operations of one `m x k` by `k x n` matrix product (one multiply
/// and one add per inner-product term).
pub fn matmul_flops(m: usize, k: usize, n: usize) -> u64 {
    2 * m as u64 * k as u64 * n as u64
}
