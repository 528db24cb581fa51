//! `mtl-core` kernels: f32 matrix products (`mtl-core`'s kernel: its own
//! AVX-512 kernel where the CPU has it, nalgebra's `matrixmultiply` with its
//! threading feature elsewhere; beside the `gemm` crate, so the choice of
//! backend stays a measured one), one forward + backward pass of an MLP
//! 784-256-256-10 at batch 256 and the five large products of its training
//! step (operands transposed as the tape has them), and a 256³ product
//! started after 50 µs of serial work, as in a training step, with and
//! without [`mtl_core::workers::keep_awake`].

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mtl_benches::matmul_flops;
use mtl_core::nn::{Mlp, Module};
use mtl_core::workers::keep_awake;
use mtl_core::{kernels, Graph, ParamGroup, ParamStore, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::{Duration, Instant};

fn matmul(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul_f32");
    group.sample_size(10);
    for n in [256usize, 512, 1024, 2048] {
        let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
        let a = Tensor::randn(&[n, n], 0.0, 1.0, &mut rng).unwrap();
        let b = Tensor::randn(&[n, n], 0.0, 1.0, &mut rng).unwrap();
        let mut out = vec![0.0f32; n * n];
        group.throughput(Throughput::Elements(matmul_flops(n, n, n)));
        group.bench_with_input(BenchmarkId::new("mtl_core", n), &n, |bench, &n| {
            bench.iter(|| kernels::gemm(n, n, n, a.data(), false, b.data(), false, &mut out, false))
        });
        group.bench_with_input(BenchmarkId::new("gemm_crate", n), &n, |bench, &n| {
            bench.iter(|| unsafe {
                // SAFETY: all three buffers hold n·n floats in row-major order.
                gemm::gemm(
                    n,
                    n,
                    n,
                    out.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.data().as_ptr(),
                    1,
                    n as isize,
                    b.data().as_ptr(),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(0),
                )
            })
        });
    }
    group.finish();
}

/// The products of a step of the 784-256-256 MLP at batch 256, as the tape
/// runs them (`x · W₁ᵀ`, `h · W₂ᵀ`, `G₂ᵀ · h`, `G₂ · W₂`, `G₁ᵀ · x`): their
/// row-major operands read transposed are packed by register transposes.
fn step_products(c: &mut Criterion) {
    let mut group = c.benchmark_group("step_products");
    group.sample_size(20);
    // (name, m, k, n, op(A) transposed, op(B) transposed)
    let shapes = [
        ("x_w1t", 256, 784, 256, false, true),
        ("h_w2t", 256, 256, 256, false, true),
        ("g2t_h", 256, 256, 256, true, false),
        ("g2_w2", 256, 256, 256, false, false),
        ("g1t_x", 256, 256, 784, true, false),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (name, m, k, n, ta, tb) in shapes {
        let a = Tensor::randn(&[m * k], 0.0, 1.0, &mut rng).unwrap();
        let b = Tensor::randn(&[k * n], 0.0, 1.0, &mut rng).unwrap();
        let mut out = vec![0.0f32; m * n];
        group.throughput(Throughput::Elements(matmul_flops(m, k, n)));
        group.bench_function(name, |bench| {
            keep_awake(|| {
                bench.iter(|| kernels::gemm(m, k, n, a.data(), ta, b.data(), tb, &mut out, false))
            })
        });
    }
    group.finish();
}

fn mlp_step(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut ps = ParamStore::new();
    let mlp = Mlp::builder(&[784, 256, 256, 10])
        .build(&mut ps, "mlp", ParamGroup::Shared, &mut rng)
        .unwrap();
    let x = Tensor::randn(&[256, 784], 0.0, 1.0, &mut rng).unwrap();
    let y: Vec<usize> = (0..256).map(|i| i % 10).collect();
    let mut grads = vec![0.0f32; ps.len()];
    let mut g = Graph::new(0);
    let mut group = c.benchmark_group("mlp_784_256_256_10");
    group.sample_size(20);
    group.throughput(Throughput::Elements(256));
    group.bench_function("forward_backward_b256", |bench| {
        bench.iter(|| {
            g.reset();
            let xv = g.input(x.clone());
            let logits = mlp.forward(&mut g, &mut ps, xv).unwrap();
            let loss = g.cross_entropy(logits, &y, None, 0.0).unwrap();
            grads.fill(0.0);
            let n = ps.len();
            g.backward(&[(loss, 1.0)])
                .unwrap()
                .accumulate_params(&g, 0..n, &mut grads)
                .unwrap();
        })
    });
    group.finish();
}

fn product_after_serial_work(c: &mut Criterion) {
    let n = 256;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let a = Tensor::randn(&[n, n], 0.0, 1.0, &mut rng).unwrap();
    let b = Tensor::randn(&[n, n], 0.0, 1.0, &mut rng).unwrap();
    let mut out = vec![0.0f32; n * n];
    let mut run = || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_micros(50) {
            std::hint::spin_loop();
        }
        kernels::gemm(n, n, n, a.data(), false, b.data(), false, &mut out, false);
    };
    let mut group = c.benchmark_group("product_256_after_50us_serial");
    group.sample_size(20);
    group.bench_function("workers_may_sleep", |bench| {
        rayon::scope(|_| bench.iter(&mut run))
    });
    group.bench_function("keep_awake", |bench| keep_awake(|| bench.iter(&mut run)));
    group.finish();
}

criterion_group!(
    benches,
    matmul,
    step_products,
    mlp_step,
    product_after_serial_work
);
criterion_main!(benches);
