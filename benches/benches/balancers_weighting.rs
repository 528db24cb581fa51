//! Per-step cost of the loss-weighting balancers of `mtl-losses`.
//!
//! Loss-only methods (equal, fixed, uncertainty, DWA, RLW, FAMO) never see the
//! gradient rows, so their cost depends on `T` only; GradNorm (last-shared-layer
//! rows) and DB-MTL (shared-parameter rows) read one `T × P` matrix per step
//! and are measured for `T ∈ {2, 8, 32}` and `P ∈ {1e4, 1e6}`. One iteration is one training
//! step of the balancer: `balance` (plus `observe_after_step` for FAMO and an
//! `end_epoch` every step for DWA, its worst case).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mtl_losses::balance::{BalanceInput, BalancerConfig, FixedConfig, GradRows};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TASKS: [usize; 3] = [2, 8, 32];
const PARAMS: [usize; 2] = [10_000, 1_000_000];

fn losses(t: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..t).map(|_| rng.gen_range(0.1f32..3.0)).collect()
}

fn loss_only(c: &mut Criterion) {
    let mut group = c.benchmark_group("balancer_step_losses_only");
    for &t in &TASKS {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let before = losses(t, &mut rng);
        let after: Vec<f32> = before.iter().map(|l| l * 0.99).collect();
        let configs = [
            "equal".parse::<BalancerConfig>().unwrap(),
            BalancerConfig::Fixed(FixedConfig {
                weights: vec![1.0; t],
            }),
            "uncertainty".parse().unwrap(),
            "dwa".parse().unwrap(),
            "rlw".parse().unwrap(),
            "famo".parse().unwrap(),
        ];
        for config in configs {
            let mut balancer = config.build(t, 7).unwrap();
            let name = balancer.name();
            group.bench_with_input(BenchmarkId::new(name, t), &t, |b, _| {
                b.iter(|| {
                    let out = balancer
                        .balance(&BalanceInput::from_losses(black_box(&before)))
                        .unwrap();
                    if name == "famo" {
                        balancer.observe_after_step(&after).unwrap();
                    }
                    if name == "dwa" {
                        balancer.end_epoch(&after).unwrap();
                    }
                    black_box(out)
                })
            });
        }
    }
    group.finish();
}

fn with_gradient_rows(c: &mut Criterion) {
    for method in ["gradnorm", "db-mtl"] {
        let mut group = c.benchmark_group(format!("balancer_step_{method}"));
        group.sample_size(10);
        for &p in &PARAMS {
            for &t in &TASKS {
                let mut rng = ChaCha8Rng::seed_from_u64(2);
                let rows: Vec<f32> = (0..t * p).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
                let grads = GradRows::new(&rows, t, p).unwrap();
                let l = losses(t, &mut rng);
                let mut balancer = method
                    .parse::<BalancerConfig>()
                    .unwrap()
                    .build(t, 7)
                    .unwrap();
                group.throughput(Throughput::Bytes((t * p * 4) as u64));
                group.bench_with_input(BenchmarkId::new(format!("T{t}"), p), &p, |b, _| {
                    b.iter(|| {
                        balancer
                            .balance(&BalanceInput::from_losses(&l).with_grads(black_box(grads)))
                            .unwrap()
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, loss_only, with_gradient_rows);
criterion_main!(benches);
