//! Every registered balancer on column shards (data-parallel training) and
//! with absent tasks.
//!
//! * **Shards.** Random rows are cut into 2 and 3 uneven column slices; each
//!   slice's balancer (same seed) gets its rows, the all-reduced Gram (the
//!   sum of the slices' Grams) and its offset. The weights must be identical
//!   on every slice, and the concatenated slice directions must match the
//!   unsharded run within [`SHARD_TOL`].
//! * **Absent tasks.** With task 1 absent (loss 0, row 0) every method gives
//!   it weight 0, stays finite, and does not change its learnable values;
//!   with every task absent the weights and direction are zero.

use mtl_losses::balance::gram::gram_of_columns;
use mtl_losses::balance::{
    BalanceInput, Balanced, Balancer, BalancerConfig, ColumnShard, GradRows, GradientSource,
    LookAhead, SecondBatch,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::json;

const T: usize = 3;
/// Wider than two GradDrop blocks (4096 columns), so slices start inside,
/// at and across block boundaries.
const P: usize = 9000;
const SEED: u64 = 5;
const STEPS: u64 = 3;

/// Sharded against unsharded, relative to the largest entry: the
/// all-reduced Gram differs from the one-pass Gram by f64 summation order
/// (~1e-16 relative), which the solvers carry into the weights before the
/// f32 cast. Measured: identical for most methods, 4e-13 at worst (IMTL);
/// 1e-6 allows a weight to round to a neighbouring f32 (6e-8) on another
/// platform.
const SHARD_TOL: f64 = 1e-6;

/// Every registered method with default parameters, plus variants that take
/// other code paths.
fn configs() -> Vec<serde_json::Value> {
    let mut out: Vec<serde_json::Value> = BalancerConfig::names()
        .into_iter()
        .map(|name| match name {
            "fixed" => json!({ "name": "fixed", "weights": [0.5, 1.0, 2.0] }),
            _ => json!({ "name": name }),
        })
        .collect();
    out.extend([
        json!({ "name": "imtl", "mode": "gradient" }),
        json!({ "name": "imtl", "mode": "loss" }),
        json!({ "name": "mgda", "normalization": "loss+", "update": "normalized" }),
        json!({ "name": "cagrad", "c": 1.5 }),
        json!({ "name": "pcgrad", "reduction": "sum" }),
        json!({ "name": "nash-mtl", "max_norm": 0.0 }),
        json!({ "name": "gradvac", "group_sizes": [4000, 5000] }),
        json!({ "name": "graddrop", "leak": 0.25 }),
    ]);
    out
}

fn build(config: &serde_json::Value) -> Box<dyn Balancer> {
    BalancerConfig::from_json(config)
        .unwrap()
        .build(T, SEED)
        .unwrap()
}

/// `input` with what `b` asks for besides the rows: the same rows as the
/// second mini-batch (MoDo, SDMGrad) and as validation gradients of the
/// look-ahead (Auto-Lambda).
fn with_extras<'a>(
    b: &dyn Balancer,
    input: BalanceInput<'a>,
    losses: &'a [f32],
    grads: GradRows<'a>,
) -> BalanceInput<'a> {
    let mut input = input;
    if b.needs_second_batch() {
        input = input.with_second(SecondBatch { losses, grads });
    }
    if b.lookahead_weights().is_some() {
        input = input.with_lookahead(LookAhead {
            lr: 0.1,
            losses,
            grads,
        });
    }
    input
}

fn random_rows(seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..T * P)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect()
}

fn losses_of(step: u64) -> [f32; T] {
    [1.0 + 0.1 * step as f32, 0.5, 2.0 - 0.2 * step as f32]
}

/// The rows of columns `range`, as their own `T × len` buffer.
fn slice_rows(rows: &[f32], range: std::ops::Range<usize>) -> Vec<f32> {
    (0..T)
        .flat_map(|t| rows[t * P + range.start..t * P + range.end].to_vec())
        .collect()
}

fn max_abs(v: &[f32]) -> f64 {
    v.iter().map(|x| f64::from(x.abs())).fold(0.0, f64::max)
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = max_abs(want).max(f64::MIN_POSITIVE);
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| f64::from((a - b).abs()))
        .fold(0.0, f64::max);
    assert!(
        worst <= SHARD_TOL * scale,
        "{what}: differs by {worst:e} (scale {scale:e})"
    );
}

fn run_sharded(config: &serde_json::Value, cuts: &[usize]) {
    let name = config.to_string();
    let mut whole = build(config);
    let ranges: Vec<std::ops::Range<usize>> = cuts.windows(2).map(|w| w[0]..w[1]).collect();
    let mut shards: Vec<Box<dyn Balancer>> = ranges.iter().map(|_| build(config)).collect();
    for step in 0..STEPS {
        let rows = random_rows(100 + step);
        let losses = losses_of(step);
        let grads = GradRows::new(&rows, T, P).unwrap();
        let input = BalanceInput::from_losses(&losses)
            .with_grads(grads)
            .at(step, 0);
        let reference = whole.balance(&input).unwrap();
        let mut gram = nalgebra::DMatrix::zeros(T, T);
        for r in &ranges {
            gram += gram_of_columns(&rows, T, P, r.clone());
        }
        let mut direction = Vec::with_capacity(P);
        let mut first_weights: Option<Vec<f32>> = None;
        for (balancer, range) in shards.iter_mut().zip(&ranges) {
            let local = slice_rows(&rows, range.clone());
            let part = GradRows::new(&local, T, range.len()).unwrap();
            let shard = ColumnShard {
                gram: &gram,
                offset: range.start,
                total_cols: P,
            };
            let out = balancer
                .balance(
                    &BalanceInput::from_losses(&losses)
                        .with_grads(part)
                        .with_shard(shard)
                        .at(step, 0),
                )
                .unwrap();
            match &first_weights {
                None => first_weights = Some(out.weights().to_vec()),
                Some(w) => assert_eq!(out.weights(), &w[..], "{name}: weights differ by slice"),
            }
            if let Some(d) = out.direction() {
                assert_eq!(d.len(), range.len(), "{name}: slice direction length");
                direction.extend_from_slice(d);
            }
            if balancer.needs_losses_after_step() {
                balancer.observe_after_step(&losses).unwrap();
            }
        }
        if whole.needs_losses_after_step() {
            whole.observe_after_step(&losses).unwrap();
        }
        let weights = first_weights.unwrap();
        assert_close(&weights, reference.weights(), &format!("{name} weights"));
        match reference {
            Balanced::Direction { direction: d, .. } => {
                assert_close(&direction, &d, &format!("{name} step {step} direction"));
            }
            Balanced::Weights(_) => assert!(direction.is_empty(), "{name}"),
        }
    }
}

#[test]
fn every_shard_capable_method_matches_the_unsharded_run() {
    let mut on_shards = Vec::new();
    for config in configs() {
        let b = build(&config);
        if !b.supports_column_shards() {
            continue;
        }
        assert_ne!(b.needs(), GradientSource::None, "{config}");
        on_shards.push(config["name"].as_str().unwrap().to_owned());
        run_sharded(&config, &[0, 3001, P]);
        run_sharded(&config, &[0, 4100, 4101, P]);
    }
    let expected = [
        "gradnorm",
        "mgda",
        "mgda-ub",
        "pcgrad",
        "graddrop",
        "gradvac",
        "cagrad",
        "imtl",
        "nash-mtl",
        "aligned-mtl",
        "upgrad",
        "config",
    ];
    for name in expected {
        assert!(on_shards.iter().any(|n| n == name), "{name} not on shards");
    }
}

#[test]
fn full_row_methods_declare_it_and_refuse_a_shard() {
    for config in [
        json!({ "name": "db-mtl" }),
        json!({ "name": "gradvac", "group_sizes": [4000, 5000] }),
    ] {
        let mut b = build(&config);
        assert!(!b.supports_column_shards(), "{config}");
        let rows = random_rows(1);
        let local = slice_rows(&rows, 0..100);
        let gram = gram_of_columns(&rows, T, P, 0..P);
        let shard = ColumnShard {
            gram: &gram,
            offset: 0,
            total_cols: P,
        };
        let input = BalanceInput::from_losses(&[1.0; T])
            .with_grads(GradRows::new(&local, T, 100).unwrap())
            .with_shard(shard);
        assert!(b.balance(&input).is_err(), "{config}");
    }
    for name in ["equal", "uncertainty", "dwa", "rlw", "famo"] {
        assert!(!build(&json!({ "name": name })).supports_column_shards());
    }
}

#[test]
fn a_shard_that_does_not_fit_is_an_error() {
    let mut b = build(&json!({ "name": "mgda" }));
    let rows = random_rows(2);
    let gram = gram_of_columns(&rows, T, P, 0..P);
    let local = slice_rows(&rows, 0..100);
    let shard = ColumnShard {
        gram: &gram,
        offset: P - 50,
        total_cols: P,
    };
    let input = BalanceInput::from_losses(&[1.0; T])
        .with_grads(GradRows::new(&local, T, 100).unwrap())
        .with_shard(shard);
    assert!(b.balance(&input).is_err());
}

/// Rows and losses with task 1 absent: its loss and row are 0.
fn with_absent_task(step: u64) -> (Vec<f32>, [f32; T]) {
    let mut rows = random_rows(200 + step);
    rows[P..2 * P].iter_mut().for_each(|x| *x = 0.0);
    let mut losses = losses_of(step);
    losses[1] = 0.0;
    (rows, losses)
}

/// The learnable values that belong to task 1 alone (`name[1]`), except
/// the task distribution `z` of FAMO, a softmax over every task's logit.
fn own_values(b: &dyn Balancer) -> Vec<(String, f32)> {
    b.learnable()
        .into_iter()
        .filter(|(n, _)| n.ends_with("[1]") && !n.starts_with("z["))
        .collect()
}

#[test]
fn an_absent_task_gets_weight_zero_and_teaches_nothing() {
    let present = [true, false, true];
    for config in configs() {
        let mut b = build(&config);
        // One step with every task present, so that state exists.
        let rows = random_rows(300);
        let losses = losses_of(0);
        let grads = GradRows::new(&rows, T, P).unwrap();
        let all = with_extras(
            b.as_ref(),
            BalanceInput::from_losses(&losses).with_grads(grads),
            &losses,
            grads,
        );
        b.balance(&all).unwrap();
        if b.needs_losses_after_step() {
            b.observe_after_step(&losses.map(|l| 0.8 * l)).unwrap();
        }
        let before = own_values(b.as_ref());
        for step in 1..=STEPS {
            let (rows, losses) = with_absent_task(step);
            let grads = GradRows::new(&rows, T, P).unwrap();
            let input = BalanceInput::from_losses(&losses)
                .with_grads(grads)
                .with_present(&present)
                .at(step, 0);
            let input = with_extras(b.as_ref(), input, &losses, grads);
            let out = b.balance(&input).unwrap();
            assert_eq!(out.weights()[1], 0.0, "{config}: {:?}", out.weights());
            assert!(out.weights().iter().all(|w| w.is_finite()), "{config}");
            if let Some(d) = out.direction() {
                assert!(d.iter().all(|x| x.is_finite()), "{config}");
            }
            if b.needs_losses_after_step() {
                let after = losses.map(|l| 0.9 * l);
                b.observe_after_step(&after).unwrap();
            }
        }
        assert_eq!(
            own_values(b.as_ref()),
            before,
            "{config} learned from task 1"
        );
    }
}

/// Methods whose result with task 1 absent is the two-task problem on tasks
/// 0 and 2 (as if task 1 did not exist), step after step.
const SUB_PROBLEM: &[&str] = &[
    "equal",
    "gradnorm",
    "dwa",
    "famo",
    "db-mtl",
    "mgda",
    "mgda-ub",
    "pcgrad",
    "graddrop",
    "gradvac",
    "cagrad",
    "imtl",
    "nash-mtl",
    "aligned-mtl",
    "upgrad",
    "config",
];

/// The solvers see the same numbers in a different arrangement (a 2 × 2
/// restriction of a 3 × 3 Gram); Nash-MTL's warm start also differs.
const SUB_PROBLEM_TOL: f64 = 1e-5;

#[test]
fn an_absent_task_leaves_the_problem_of_the_present_ones() {
    let present = [true, false, true];
    for &name in SUB_PROBLEM {
        let config = json!({ "name": name });
        let mut three = build(&config);
        let mut two = BalancerConfig::from_json(&config)
            .unwrap()
            .build(2, SEED)
            .unwrap();
        for step in 0..STEPS {
            let (rows, losses) = with_absent_task(step);
            let out3 = three
                .balance(
                    &BalanceInput::from_losses(&losses)
                        .with_grads(GradRows::new(&rows, T, P).unwrap())
                        .with_present(&present)
                        .at(step, 0),
                )
                .unwrap();
            let rows2: Vec<f32> = [&rows[..P], &rows[2 * P..]].concat();
            let losses2 = [losses[0], losses[2]];
            let out2 = two
                .balance(
                    &BalanceInput::from_losses(&losses2)
                        .with_grads(GradRows::new(&rows2, 2, P).unwrap())
                        .at(step, 0),
                )
                .unwrap();
            let w3 = [out3.weights()[0], out3.weights()[2]];
            let scale = max_abs(out2.weights()).max(1e-30);
            for (a, b) in w3.iter().zip(out2.weights()) {
                assert!(
                    f64::from((a - b).abs()) <= SUB_PROBLEM_TOL * scale,
                    "{name} step {step}: {:?} vs {:?}",
                    out3.weights(),
                    out2.weights()
                );
            }
            if let (Some(d3), Some(d2)) = (out3.direction(), out2.direction()) {
                let scale = max_abs(d2).max(1e-30);
                let worst = d3
                    .iter()
                    .zip(d2)
                    .map(|(a, b)| f64::from((a - b).abs()))
                    .fold(0.0, f64::max);
                assert!(
                    worst <= SUB_PROBLEM_TOL * scale,
                    "{name} step {step}: {worst:e}"
                );
            }
            if three.needs_losses_after_step() {
                let after = losses.map(|l| 0.9 * l);
                three.observe_after_step(&after).unwrap();
                two.observe_after_step(&[after[0], after[2]]).unwrap();
            }
        }
    }
}

#[test]
fn every_task_absent_gives_zero_weights_and_direction() {
    let present = [false; T];
    let rows = vec![0.0f32; T * P];
    let losses = [0.0f32; T];
    for config in configs() {
        let mut b = build(&config);
        let grads = GradRows::new(&rows, T, P).unwrap();
        let input = BalanceInput::from_losses(&losses)
            .with_grads(grads)
            .with_present(&present);
        let out = b
            .balance(&with_extras(b.as_ref(), input, &losses, grads))
            .unwrap();
        assert!(out.weights().iter().all(|&w| w == 0.0), "{config}: {out:?}");
        if let Some(d) = out.direction() {
            assert!(d.iter().all(|&x| x == 0.0), "{config}");
        }
        if b.needs_losses_after_step() {
            b.observe_after_step(&losses).unwrap();
        }
    }
}

#[test]
fn presence_flags_of_the_wrong_length_are_an_error() {
    let mut b = build(&json!({ "name": "equal" }));
    let input = BalanceInput::from_losses(&[1.0; T]).with_present(&[true, false]);
    assert!(b.balance(&input).is_err());
}

#[test]
fn only_modo_and_sdmgrad_ask_for_a_second_batch_and_only_auto_lambda_for_a_lookahead() {
    for config in configs() {
        let b = build(&config);
        let name = config["name"].as_str().unwrap();
        assert_eq!(
            b.needs_second_batch(),
            matches!(name, "modo" | "sdmgrad"),
            "{config}"
        );
        assert_eq!(
            b.lookahead_weights().is_some(),
            name == "auto-lambda",
            "{config}"
        );
    }
}
