//! GLS, STCH, MoCo, ExcessMTL, FairGrad, MoDo, SDMGrad, DualProj, Krum,
//! TrimmedMean, CR-MOGM, PCD and Auto-Lambda through the registry: their
//! listing, ground truths, bit-identical resume from a saved state, absent
//! tasks, column shards, and the second mini-batch and validation
//! look-ahead they ask for.

use mtl_losses::balance::{
    gram, methods, BalanceInput, Balanced, Balancer, BalancerConfig, ColumnShard, GradRows,
    GradientSource, LookAhead, SecondBatch,
};
use mtl_losses::Error;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde_json::{json, Value};

/// Differences of `f32` outputs computed along two routes (restricted
/// against full rows, shards against whole rows): a few `f32` roundings.
const F32_TOL: f32 = 1e-6;

/// The methods added in this round with their registry names and needs.
const ADDED: [(&str, GradientSource); 13] = [
    ("gls", GradientSource::None),
    ("stch", GradientSource::None),
    ("moco", GradientSource::SharedParameters),
    ("excess-mtl", GradientSource::SharedParameters),
    ("fairgrad", GradientSource::SharedParameters),
    ("modo", GradientSource::SharedParameters),
    ("sdmgrad", GradientSource::SharedParameters),
    ("dualproj", GradientSource::SharedParameters),
    ("krum", GradientSource::SharedParameters),
    ("trimmed-mean", GradientSource::SharedParameters),
    ("cr-mogm", GradientSource::SharedParameters),
    ("pcd", GradientSource::SharedParameters),
    ("auto-lambda", GradientSource::SharedParameters),
];

fn build(config: Value, tasks: usize, seed: u64) -> Box<dyn Balancer> {
    BalancerConfig::from_json(&config)
        .unwrap()
        .build(tasks, seed)
        .unwrap()
}

fn gaussian(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| rng.sample::<f32, _>(StandardNormal))
        .collect()
}

/// Everything one step may need: first and second batch, look-ahead rows.
struct StepData {
    losses: Vec<f32>,
    rows: Vec<f32>,
    rows2: Vec<f32>,
    val: Vec<f32>,
}

fn step_data(t: usize, p: usize, seed: u64) -> StepData {
    let losses = gaussian(t, seed ^ 1)
        .iter()
        .map(|x| 0.5 + x.abs())
        .collect();
    StepData {
        losses,
        rows: gaussian(t * p, seed),
        rows2: gaussian(t * p, seed ^ 2),
        val: gaussian(t * p, seed ^ 3),
    }
}

/// One step with every extra input the balancer asks for.
fn run(
    b: &mut dyn Balancer,
    d: &StepData,
    t: usize,
    p: usize,
    present: Option<&[bool]>,
    epoch: u64,
) -> Balanced {
    let grads = GradRows::new(&d.rows, t, p).unwrap();
    let mut input = BalanceInput::from_losses(&d.losses)
        .with_grads(grads)
        .at(epoch * 10, epoch);
    if let Some(present) = present {
        input = input.with_present(present);
    }
    if b.needs_second_batch() {
        input = input.with_second(SecondBatch {
            losses: &d.losses,
            grads: GradRows::new(&d.rows2, t, p).unwrap(),
        });
    }
    if b.lookahead_weights().is_some() {
        input = input.with_lookahead(LookAhead {
            lr: 0.05,
            losses: &d.losses,
            grads: GradRows::new(&d.val, t, p).unwrap(),
        });
    }
    b.balance(&input)
        .unwrap_or_else(|e| panic!("{}: {e}", b.name()))
}

fn direction(out: &Balanced, d: &StepData, t: usize, p: usize) -> Vec<f32> {
    out.shared_direction(&GradRows::new(&d.rows, t, p).unwrap())
        .unwrap()
}

#[test]
fn thirty_two_methods_are_listed_with_their_needs() {
    let listed = methods();
    assert_eq!(listed.len(), 32);
    for (name, needs) in ADDED {
        let info = listed.iter().find(|m| m.name == name).expect(name);
        assert_eq!(info.needs, needs, "{name}");
        let b = build(json!({ "name": name }), 3, 0);
        assert_eq!(b.needs(), needs, "{name}");
        assert_eq!(b.name(), name);
    }
    let second: Vec<&str> = ADDED
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| build(json!({ "name": n }), 3, 0).needs_second_batch())
        .collect();
    assert_eq!(second, ["modo", "sdmgrad"]);
    let lookahead: Vec<&str> = ADDED
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| {
            build(json!({ "name": n }), 3, 0)
                .lookahead_weights()
                .is_some()
        })
        .collect();
    assert_eq!(lookahead, ["auto-lambda"]);
}

#[test]
fn resume_from_a_saved_state_is_bit_identical() {
    let (t, p) = (3, 7);
    let configs = [
        json!({ "name": "gls" }),
        json!({ "name": "stch", "warmup_epochs": 1, "log_losses": true }),
        json!({ "name": "moco" }),
        json!({ "name": "excess-mtl", "n_warmup_steps": 1 }),
        json!({ "name": "fairgrad" }),
        json!({ "name": "modo" }),
        json!({ "name": "sdmgrad" }),
        json!({ "name": "dualproj" }),
        json!({ "name": "krum" }),
        json!({ "name": "trimmed-mean" }),
        json!({ "name": "cr-mogm", "inner": "rlw", "alpha": 0.5 }),
        json!({ "name": "pcd" }),
        json!({ "name": "auto-lambda", "lr": 0.01 }),
    ];
    let data: Vec<StepData> = (0..6).map(|k| step_data(t, p, 100 + k)).collect();
    for config in configs {
        let mut straight = build(config.clone(), t, 9);
        let mut outputs = Vec::new();
        for (k, d) in data.iter().enumerate() {
            outputs.push(run(straight.as_mut(), d, t, p, None, k as u64 / 2));
        }
        let mut first = build(config.clone(), t, 9);
        for (k, d) in data[..3].iter().enumerate() {
            run(first.as_mut(), d, t, p, None, k as u64 / 2);
        }
        let saved = serde_json::to_string(&first.state()).unwrap();
        let mut resumed = build(config.clone(), t, 9);
        resumed
            .load_state(&serde_json::from_str(&saved).unwrap())
            .unwrap();
        for (k, d) in data.iter().enumerate().skip(3) {
            let out = run(resumed.as_mut(), d, t, p, None, k as u64 / 2);
            assert_eq!(out, outputs[k], "{config} step {k}");
        }
        // A fresh build with the same seed repeats the run exactly.
        let mut again = build(config.clone(), t, 9);
        for (k, d) in data.iter().enumerate() {
            assert_eq!(
                run(again.as_mut(), d, t, p, None, k as u64 / 2),
                outputs[k],
                "{config}"
            );
        }
        // A state of the wrong shape is a typed error, not a panic.
        let mut other = build(config.clone(), t + 1, 9);
        if !first.state().is_null() {
            let err = other.load_state(&first.state());
            assert!(matches!(err, Err(Error::State { .. })), "{config}: {err:?}");
        }
    }
}

#[test]
fn an_absent_task_gets_weight_zero_and_the_rest_is_the_smaller_problem() {
    // T = 3 with task 1 absent (zero row, zero loss) against T = 2 on tasks 0, 2.
    let p = 6;
    let names = [
        json!({ "name": "gls" }),
        json!({ "name": "stch" }),
        json!({ "name": "moco" }),
        json!({ "name": "excess-mtl" }),
        json!({ "name": "fairgrad" }),
        json!({ "name": "modo" }),
        json!({ "name": "sdmgrad" }),
        json!({ "name": "dualproj" }),
        json!({ "name": "krum" }),
        json!({ "name": "trimmed-mean" }),
        json!({ "name": "cr-mogm", "inner": "upgrad" }),
        json!({ "name": "pcd" }),
    ];
    let small = step_data(2, p, 7);
    let mut full = StepData {
        losses: vec![small.losses[0], 0.0, small.losses[1]],
        rows: Vec::new(),
        rows2: Vec::new(),
        val: Vec::new(),
    };
    for (from, to) in [
        (&small.rows, &mut full.rows),
        (&small.rows2, &mut full.rows2),
        (&small.val, &mut full.val),
    ] {
        to.extend_from_slice(&from[..p]);
        to.extend(std::iter::repeat_n(0.0, p));
        to.extend_from_slice(&from[p..]);
    }
    let present = [true, false, true];
    for config in names {
        let mut three = build(config.clone(), 3, 0);
        let mut two = build(config.clone(), 2, 0);
        for _ in 0..3 {
            let a = run(three.as_mut(), &full, 3, p, Some(&present), 0);
            let b = run(two.as_mut(), &small, 2, p, None, 0);
            assert_eq!(a.weights()[1], 0.0, "{config}");
            let (wa, wb) = (a.weights(), b.weights());
            assert!(
                (wa[0] - wb[0]).abs() <= F32_TOL && (wa[2] - wb[1]).abs() <= F32_TOL,
                "{config}: {wa:?} vs {wb:?}"
            );
            let (da, db) = (direction(&a, &full, 3, p), direction(&b, &small, 2, p));
            for (x, y) in da.iter().zip(&db) {
                assert!(
                    (x - y).abs() <= F32_TOL * (1.0 + y.abs()),
                    "{config}: {da:?} vs {db:?}"
                );
            }
        }
    }
    // Auto-Lambda: the absent task keeps its weight untouched.
    let mut b = build(json!({ "name": "auto-lambda", "lr": 0.1 }), 3, 0);
    let before = b.lookahead_weights().unwrap();
    let out = run(b.as_mut(), &full, 3, p, Some(&present), 0);
    let after = b.lookahead_weights().unwrap();
    assert_eq!(out.weights()[1], 0.0);
    assert_eq!(after[1], before[1]);
    assert_ne!(after[0], before[0]);
}

#[test]
fn column_shards_concatenate_to_the_whole_direction() {
    let (t, p, cut) = (4, 9, 4);
    let d = step_data(t, p, 11);
    let full_gram = gram::gram(&d.rows, t, p);
    for name in ["dualproj", "fairgrad", "krum", "pcd", "trimmed-mean"] {
        let mut whole = build(json!({ "name": name }), t, 0);
        assert!(whole.supports_column_shards(), "{name}");
        let expect = direction(&run(whole.as_mut(), &d, t, p, None, 0), &d, t, p);
        let mut pieces = Vec::new();
        for range in [0..cut, cut..p] {
            let slice: Vec<f32> = (0..t)
                .flat_map(|i| d.rows[i * p + range.start..i * p + range.end].to_vec())
                .collect();
            let rows = GradRows::new(&slice, t, range.len()).unwrap();
            let shard = ColumnShard {
                gram: &full_gram,
                offset: range.start,
                total_cols: p,
            };
            let mut b = build(json!({ "name": name }), t, 0);
            let out = b
                .balance(
                    &BalanceInput::from_losses(&d.losses)
                        .with_grads(rows)
                        .with_shard(shard),
                )
                .unwrap();
            pieces.extend(out.shared_direction(&rows).unwrap());
        }
        for (x, y) in pieces.iter().zip(&expect) {
            assert!(
                (x - y).abs() <= F32_TOL * (1.0 + y.abs()),
                "{name}: {pieces:?} vs {expect:?}"
            );
        }
    }
    for name in [
        "moco",
        "excess-mtl",
        "modo",
        "sdmgrad",
        "auto-lambda",
        "gls",
        "stch",
    ] {
        assert!(
            !build(json!({ "name": name }), t, 0).supports_column_shards(),
            "{name}"
        );
    }
}

#[test]
fn missing_second_batch_or_look_ahead_is_a_typed_error() {
    let d = step_data(2, 3, 5);
    let grads = GradRows::new(&d.rows, 2, 3).unwrap();
    for name in ["modo", "sdmgrad", "auto-lambda"] {
        let mut b = build(json!({ "name": name }), 2, 0);
        let err = b
            .balance(&BalanceInput::from_losses(&d.losses).with_grads(grads))
            .unwrap_err();
        assert!(
            matches!(err, Error::MissingGradients { .. }),
            "{name}: {err}"
        );
    }
    // A second batch with the wrong number of columns.
    let short = [1.0f32, 2.0, 3.0, 4.0];
    let mut b = build(json!({ "name": "modo" }), 2, 0);
    let err = b
        .balance(
            &BalanceInput::from_losses(&d.losses)
                .with_grads(grads)
                .with_second(SecondBatch {
                    losses: &d.losses,
                    grads: GradRows::new(&short, 2, 2).unwrap(),
                }),
        )
        .unwrap_err();
    assert!(matches!(err, Error::CountMismatch { .. }), "{err}");
}

#[test]
fn modo_and_sdmgrad_use_the_product_of_the_two_batches() {
    // J_1 = I, J_2 = diag(2, 0): J_1 J_2ᵀ = diag(2, 0). MoDo with γ = 0.25,
    // ρ = 0 from (1/2, 1/2): y = (1/2 − 0.25, 1/2) ⇒ Π_Δ = (3/8, 5/8);
    // d = ½ (J_1 + J_2)ᵀ λ = ½ (3/8 + 3/4, 5/8) = (9/16, 5/16).
    let (j1, j2) = ([1.0f32, 0.0, 0.0, 1.0], [2.0f32, 0.0, 0.0, 0.0]);
    let losses = [1.0f32, 1.0];
    let input = BalanceInput::from_losses(&losses)
        .with_grads(GradRows::new(&j1, 2, 2).unwrap())
        .with_second(SecondBatch {
            losses: &losses,
            grads: GradRows::new(&j2, 2, 2).unwrap(),
        });
    let mut b = build(json!({ "name": "modo", "gamma": 0.25, "rho": 0.0 }), 2, 0);
    let out = b.balance(&input).unwrap();
    assert_eq!(out.weights(), [0.375, 0.625]);
    assert_eq!(out.direction().unwrap(), [0.5625, 0.3125]);
    // SDMGrad with λ = 0 and many iterations: the min-norm point of the
    // cross product's quadratic, all weight on the task it does not grow.
    let mut b = build(
        json!({ "name": "sdmgrad", "lambda": 0.0, "n_iter": 200 }),
        2,
        0,
    );
    let out = b.balance(&input).unwrap();
    assert!(
        out.weights()[0] < 1e-6 && (out.weights()[1] - 1.0).abs() < 1e-6,
        "{out:?}"
    );
}

#[test]
fn auto_lambda_raises_the_weight_of_the_task_that_helps_validation() {
    // Validation gradient v = g_0: the meta-gradient is −η g_tᵀ g_0, which
    // is negative for task 0 (and task 1, aligned) and positive for task 2
    // (opposed), so Adam's first step moves λ by ∓lr.
    let rows = [1.0f32, 0.0, 0.5, 0.5, -1.0, 0.0];
    let val = [1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0];
    let losses = [1.0f32; 3];
    let mut b = build(
        json!({ "name": "auto-lambda", "lr": 0.01, "primary": [0] }),
        3,
        0,
    );
    let w = b.lookahead_weights().unwrap();
    assert_eq!(w, vec![1.0 / 3.0; 3]);
    let out = b
        .balance(
            &BalanceInput::from_losses(&losses)
                .with_grads(GradRows::new(&rows, 3, 2).unwrap())
                .with_lookahead(LookAhead {
                    lr: 0.1,
                    losses: &losses,
                    grads: GradRows::new(&val, 3, 2).unwrap(),
                }),
        )
        .unwrap();
    let w = out.weights();
    let third = 1.0f32 / 3.0;
    assert!((w[0] - (third + 0.01)).abs() < 1e-6, "{w:?}");
    assert!((w[1] - (third + 0.01)).abs() < 1e-6, "{w:?}");
    assert!((w[2] - (third - 0.01)).abs() < 1e-6, "{w:?}");
    assert_eq!(b.lookahead_weights().unwrap(), w);
}

#[test]
fn cr_mogm_is_the_moving_average_of_its_inner_method() {
    // The inner method RLW draws random weights from its seed: a standalone
    // RLW with the same seed gives the λ̂ sequence.
    let t = 3;
    let alpha = 0.75;
    let mut smoothed = build(
        json!({ "name": "cr-mogm", "inner": "rlw", "alpha": alpha }),
        t,
        4,
    );
    let mut inner = build(json!({ "name": "rlw" }), t, 4);
    assert_eq!(smoothed.needs(), GradientSource::None);
    let losses = [1.0f32, 2.0, 3.0];
    let mut ema: Option<Vec<f64>> = None;
    for _ in 0..5 {
        let hat: Vec<f64> = inner
            .balance(&BalanceInput::from_losses(&losses))
            .unwrap()
            .weights()
            .iter()
            .map(|&w| f64::from(w))
            .collect();
        let next = match &ema {
            None => hat,
            Some(prev) => prev
                .iter()
                .zip(&hat)
                .map(|(p, h)| alpha * p + (1.0 - alpha) * h)
                .collect(),
        };
        let got = smoothed
            .balance(&BalanceInput::from_losses(&losses))
            .unwrap();
        for (g, e) in got.weights().iter().zip(&next) {
            assert!((f64::from(*g) - e).abs() < 1e-7, "{got:?} vs {next:?}");
        }
        ema = Some(next);
    }
    // An inner method given as a table, and an unknown inner name.
    let cfg: BalancerConfig = serde_json::from_value(
        json!({ "name": "cr-mogm", "inner": { "name": "upgrad", "reg_eps": 0.0 }, "alpha": 0.5 }),
    )
    .unwrap();
    assert_eq!(cfg.build(2, 0).unwrap().name(), "cr-mogm");
    let bad = BalancerConfig::from_json(&json!({ "name": "cr-mogm", "inner": "mgad" })).unwrap();
    assert!(matches!(
        bad.build(2, 0),
        Err(Error::UnknownBalancer { .. })
    ));
    let bad = BalancerConfig::from_json(&json!({ "name": "cr-mogm", "alpha": 1.5 })).unwrap();
    assert!(matches!(
        bad.build(2, 0),
        Err(Error::InvalidParameter { .. })
    ));
}

#[test]
fn stch_warms_up_then_uses_the_mean_losses_as_ideal_point() {
    let mut b = build(
        json!({ "name": "stch", "warmup_epochs": 2, "log_losses": true, "preference": [1.0, 1.0] }),
        2,
        0,
    );
    let at = |b: &mut Box<dyn Balancer>, losses: &[f32], epoch: u64| -> Vec<f32> {
        b.balance(&BalanceInput::from_losses(losses).at(0, epoch))
            .unwrap()
            .weights()
            .to_vec()
    };
    // Warm-up: w = 1/(T L).
    assert_eq!(at(&mut b, &[0.5, 2.0], 0), [1.0, 0.25]);
    // The last warm-up epoch's mean losses, (1, 4), become the ideal point.
    at(&mut b, &[0.5, 2.0], 1);
    at(&mut b, &[1.5, 6.0], 1);
    // Epoch 2: losses (2, 8) are both twice the ideal point, so
    // log(L/z) ties and w = T · 1 · ½ / L = (1/2, 1/8).
    let w = at(&mut b, &[2.0, 8.0], 2);
    assert!(
        (w[0] - 0.5).abs() < 1e-6 && (w[1] - 0.125).abs() < 1e-6,
        "{w:?}"
    );
    assert_eq!(b.learnable().len(), 2);
}

#[test]
fn loss_domain_and_parameter_errors_are_typed() {
    let mut b = build(json!({ "name": "gls" }), 3, 0);
    let err = b
        .balance(&BalanceInput::from_losses(&[1.0, 0.0, 2.0]))
        .unwrap_err();
    assert!(
        matches!(err, Error::LossOutOfDomain { task: 1, .. }),
        "{err}"
    );
    // An absent task's zero loss is not an error for GLS.
    let out = b
        .balance(&BalanceInput::from_losses(&[1.0, 0.0, 4.0]).with_present(&[true, false, true]))
        .unwrap();
    assert_eq!(out.weights(), [1.0, 0.0, 0.25]);
    for bad in [
        json!({ "name": "stch", "mu": 0.0 }),
        json!({ "name": "fairgrad", "alpha": -1.0 }),
        json!({ "name": "krum", "n_selected": 0 }),
        json!({ "name": "pcd", "tau": 1.5 }),
        json!({ "name": "pcd", "tau": [0.1] }),
        json!({ "name": "pcd", "beta": 1.0 }),
        json!({ "name": "modo", "gamma": 0.0 }),
        json!({ "name": "sdmgrad", "momentum": 1.0 }),
        json!({ "name": "excess-mtl", "robust_step_size": 0.0 }),
        json!({ "name": "moco", "beta": -0.5 }),
        json!({ "name": "auto-lambda", "primary": [3] }),
        json!({ "name": "dualproj", "preference": [1.0] }),
    ] {
        let built = BalancerConfig::from_json(&bad).unwrap().build(3, 0);
        assert!(built.is_err(), "{bad} built");
    }
    // Per-task τ for PCD: one per secondary task.
    assert!(
        BalancerConfig::from_json(&json!({ "name": "pcd", "tau": [0.1, 0.2] }))
            .unwrap()
            .build(3, 0)
            .is_ok()
    );
}
