//! Per-step cost of the gradient-manipulation balancers of `mtl-losses`.
//!
//! Each method balances a `T × P` matrix of `f32` gradient rows for
//! `T ∈ {2, 8, 32}` and `P ∈ {1e5, 1e6}`; one iteration is one `balance`
//! call, including the shared direction it returns. Throughput is reported
//! in bytes of gradient rows (`4·T·P`) per second. The `read_pass` entry is a
//! plain sum over the same matrix, the cost of one pass over `J`: a method's
//! time divided by it is the number of passes it costs.
//!
//! Measurement times are short (the benchmark machine is small); set
//! `MTL_BENCH_SECONDS` to measure longer.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mtl_losses::balance::{BalanceInput, BalancerConfig, GradRows};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde_json::json;

const TASKS: [usize; 3] = [2, 8, 32];
const PARAMS: [usize; 2] = [100_000, 1_000_000];

fn methods() -> Vec<serde_json::Value> {
    vec![
        json!({ "name": "mgda" }),
        json!({ "name": "pcgrad" }),
        json!({ "name": "graddrop" }),
        json!({ "name": "gradvac" }),
        json!({ "name": "cagrad" }),
        json!({ "name": "imtl" }),
        json!({ "name": "nash-mtl" }),
        json!({ "name": "aligned-mtl" }),
        json!({ "name": "upgrad" }),
        json!({ "name": "config" }),
    ]
}

fn rows(t: usize, p: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    (0..t * p).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

/// One pass over `J`: the sum of all entries, in parallel chunks.
fn read_pass(data: &[f32]) -> f32 {
    data.par_chunks(1 << 15)
        .map(|c| c.iter().sum::<f32>())
        .sum()
}

fn gradient_balancers(c: &mut Criterion) {
    let seconds: f64 = std::env::var("MTL_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let mut group = c.benchmark_group("balancer_step_gradients");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs_f64(0.2 * seconds))
        .measurement_time(Duration::from_secs_f64(seconds));
    for &p in &PARAMS {
        for &t in &TASKS {
            let data = rows(t, p);
            let grads = GradRows::new(&data, t, p).unwrap();
            let losses = vec![1.0f32; t];
            group.throughput(Throughput::Bytes((4 * t * p) as u64));
            let label = format!("T{t}_P{p}");
            group.bench_function(BenchmarkId::new("read_pass", &label), |b| {
                b.iter(|| black_box(read_pass(black_box(&data))))
            });
            for config in methods() {
                let config = BalancerConfig::from_json(&config).unwrap();
                let mut balancer = config.build(t, 7).unwrap();
                let input = BalanceInput::from_losses(&losses).with_grads(grads);
                group.bench_function(BenchmarkId::new(config.name(), &label), |b| {
                    b.iter(|| black_box(balancer.balance(black_box(&input)).unwrap()))
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, gradient_balancers);
criterion_main!(benches);
