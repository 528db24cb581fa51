//! Optimizer steps as memory traffic: Adam and SGD with momentum over 1e6 and
//! 1e7 parameters, against a plain copy of the same length in the same run.
//!
//! Throughput is the bytes each step reads and writes, 4 bytes per f32:
//! - copy: read 1 + write 1 = 8 B per element;
//! - SGD momentum: finiteness check of g (read 1) + read θ, g, b + write θ, b
//!   = 24 B per parameter;
//! - Adam: check (read 1) + read θ, g, m, v + write θ, m, v = 32 B per
//!   parameter.
//!
//! A second group times an Adam step around the parallel threshold in a
//! 1-thread and a 2-thread pool, to check where threads start to pay.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mtl_optim::{AdamConfig, Optimizer, SgdConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::time::Duration;

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

fn optim(c: &mut Criterion) {
    let mut group = c.benchmark_group("optim");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for len in [1_000_000usize, 10_000_000] {
        let src = random(len, 1);
        let mut dst = vec![0.0f32; len];
        group.throughput(Throughput::Bytes(8 * len as u64));
        group.bench_with_input(BenchmarkId::new("copy", len), &len, |b, _| {
            b.iter(|| dst.copy_from_slice(black_box(&src)))
        });
        group.bench_with_input(BenchmarkId::new("copy_parallel", len), &len, |b, _| {
            b.iter(|| {
                dst.par_chunks_mut(1 << 16)
                    .zip(black_box(&src).par_chunks(1 << 16))
                    .for_each(|(d, s)| d.copy_from_slice(s))
            })
        });

        let grads = random(len, 2);
        let mut params = random(len, 3);
        let mut sgd = SgdConfig {
            lr: 1e-3,
            momentum: 0.9,
            ..SgdConfig::default()
        }
        .build(vec![])
        .unwrap();
        sgd.step(&mut params, &grads).unwrap();
        group.throughput(Throughput::Bytes(24 * len as u64));
        group.bench_with_input(BenchmarkId::new("sgd_momentum", len), &len, |b, _| {
            b.iter(|| sgd.step(&mut params, black_box(&grads)).unwrap())
        });

        let mut adam = AdamConfig::default().build(vec![]).unwrap();
        adam.step(&mut params, &grads).unwrap();
        group.throughput(Throughput::Bytes(32 * len as u64));
        group.bench_with_input(BenchmarkId::new("adam", len), &len, |b, _| {
            b.iter(|| adam.step(&mut params, black_box(&grads)).unwrap())
        });
    }
    group.finish();
}

fn threshold(c: &mut Criterion) {
    let mut group = c.benchmark_group("optim_threshold");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for log2 in [15u32, 16, 17, 18] {
            let len = 1usize << log2;
            let grads = random(len, 2);
            let mut params = random(len, 3);
            let mut adam = AdamConfig::default().build(vec![]).unwrap();
            group.throughput(Throughput::Bytes(32 * len as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("adam_{threads}_threads"), len),
                &len,
                |b, _| b.iter(|| pool.install(|| adam.step(&mut params, &grads).unwrap())),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, optim, threshold);
criterion_main!(benches);
