//! Behaviour across modules: groups, errors, Adam vs AdamW, checkpoint
//! resume, thread-count independence, subnormal flushing, and proptest
//! properties of every optimizer.

use mtl_optim::{
    AdagradConfig, AdamConfig, AdamWConfig, AdamaxConfig, OptimError, Optimizer, OptimizerConfig,
    OptimizerState, ParamGroup, RmsPropConfig, SgdConfig,
};
use proptest::prelude::*;

/// One configuration of every optimizer and option, with non-default values
/// so that every buffer and branch is exercised.
fn all_configs() -> Vec<OptimizerConfig> {
    vec![
        OptimizerConfig::Sgd(SgdConfig {
            lr: 0.05,
            ..SgdConfig::default()
        }),
        OptimizerConfig::Sgd(SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            dampening: 0.1,
            weight_decay: 0.01,
            ..SgdConfig::default()
        }),
        OptimizerConfig::Sgd(SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            nesterov: true,
            ..SgdConfig::default()
        }),
        OptimizerConfig::Adam(AdamConfig {
            lr: 0.01,
            weight_decay: 0.01,
            ..AdamConfig::default()
        }),
        OptimizerConfig::Adam(AdamConfig {
            lr: 0.01,
            amsgrad: true,
            ..AdamConfig::default()
        }),
        OptimizerConfig::AdamW(AdamWConfig {
            lr: 0.01,
            amsgrad: true,
            ..AdamWConfig::default()
        }),
        OptimizerConfig::RmsProp(RmsPropConfig {
            lr: 0.01,
            momentum: 0.5,
            centered: true,
            weight_decay: 0.01,
            ..RmsPropConfig::default()
        }),
        OptimizerConfig::RmsProp(RmsPropConfig::default()),
        OptimizerConfig::Adagrad(AdagradConfig {
            lr_decay: 0.01,
            initial_accumulator_value: 0.1,
            ..AdagradConfig::default()
        }),
        OptimizerConfig::Adamax(AdamaxConfig {
            weight_decay: 0.01,
            ..AdamaxConfig::default()
        }),
    ]
}

/// Deterministic pseudo-random gradients in [-1, 1) for step `t` (a
/// 64-bit LCG, so the tests need no RNG crate).
fn grads(len: usize, t: u64) -> Vec<f32> {
    let mut x = t.wrapping_mul(6_364_136_223_846_793_005) ^ 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn run(opt: &mut dyn Optimizer, params: &mut [f32], steps: std::ops::Range<u64>) {
    for t in steps {
        opt.step(params, &grads(params.len(), t)).unwrap();
    }
}

#[test]
fn adam_and_adamw_differ_exactly_by_the_decoupled_decay() {
    // One step from the same θ and g: AdamW = θ(1 − γλ) − u and Adam (λ = 0)
    // = θ − u with the same u, so AdamW − Adam = −γλθ up to one rounding of
    // each side (|θ| ≤ 4, so 1 ulp ≤ 4.8e-7).
    const ONE_ROUNDING_AT_4: f32 = 4.8e-7;
    let (lr, wd) = (0.01, 0.1);
    let theta: Vec<f32> = grads(64, 99).iter().map(|x| 4.0 * x).collect();
    let g = grads(64, 7);
    let mut adam = AdamConfig {
        lr,
        ..AdamConfig::default()
    }
    .build(vec![])
    .unwrap();
    let mut adamw = AdamWConfig {
        lr,
        weight_decay: wd,
        ..AdamWConfig::default()
    }
    .build(vec![])
    .unwrap();
    let (mut a, mut w) = (theta.clone(), theta.clone());
    adam.step(&mut a, &g).unwrap();
    adamw.step(&mut w, &g).unwrap();
    for ((a, w), t) in a.iter().zip(&w).zip(&theta) {
        let decay = -(lr * wd) as f32 * t;
        assert!(
            (w - a - decay).abs() <= 2.0 * ONE_ROUNDING_AT_4,
            "{w} − {a} ≠ {decay}"
        );
    }
    // With λ = 0 the two are the same optimizer, bit for bit.
    let mut adamw0 = AdamWConfig {
        lr,
        weight_decay: 0.0,
        ..AdamWConfig::default()
    }
    .build(vec![])
    .unwrap();
    let mut w0 = theta.clone();
    adamw0.step(&mut w0, &g).unwrap();
    assert_eq!(bits(&w0), bits(&a));
    // Coupled decay is not the same: Adam with λ = 0.1 moves differently.
    let mut adam_l2 = AdamConfig {
        lr,
        weight_decay: wd,
        ..AdamConfig::default()
    }
    .build(vec![])
    .unwrap();
    let mut l2 = theta.clone();
    adam_l2.step(&mut l2, &g).unwrap();
    assert_ne!(bits(&l2), bits(&w));
}

#[test]
fn groups_scale_lr_override_decay_and_skip_the_rest() {
    // SGD: group 0..2 with lr·0.5, group 3..5 with no decay, index 2 in no group.
    let cfg = SgdConfig {
        lr: 0.5,
        weight_decay: 0.5,
        ..SgdConfig::default()
    };
    let mut opt = cfg
        .build(vec![
            ParamGroup::new(0..2).with_lr_scale(0.5),
            ParamGroup::new(3..5).with_weight_decay(0.0),
        ])
        .unwrap();
    let mut p = [1.0f32, 2.0, 3.0, 4.0, 5.0];
    opt.step(&mut p, &[1.0; 5]).unwrap();
    // θ ← θ − γ·s·(g + λθ): 1 − 0.25·1.5 = 0.625, 2 − 0.25·2 = 1.5;
    // untouched 3; θ ← θ − 0.5·1: 3.5, 4.5.
    assert_eq!(p, [0.625, 1.5, 3.0, 3.5, 4.5]);
}

#[test]
fn errors_leave_parameters_and_state_unchanged() {
    for cfg in all_configs() {
        let mut opt = cfg.build(vec![ParamGroup::new(1..4)]).unwrap();
        let mut p = vec![0.5f32; 4];
        run(opt.as_mut(), &mut p, 0..2);
        let (before_p, before_s) = (p.clone(), opt.state());
        let mut g = grads(4, 3);
        g[2] = f32::NAN;
        g[3] = f32::INFINITY;
        assert!(matches!(
            opt.step(&mut p, &g),
            Err(OptimError::NonFiniteGradient { index: 2, .. })
        ));
        assert_eq!(
            opt.step(&mut p, &g[..3]),
            Err(OptimError::LengthMismatch {
                params: 4,
                grads: 3
            })
        );
        assert_eq!(
            opt.step(&mut p[..3], &g[..3]),
            Err(OptimError::GroupOutOfRange {
                group: 0,
                start: 1,
                end: 4,
                len: 3
            })
        );
        assert_eq!(bits(&p), bits(&before_p), "{}", cfg.name());
        assert_eq!(opt.state(), before_s, "{}", cfg.name());
    }
}

#[test]
fn state_buffers_are_sized_once() {
    let mut opt = OptimizerConfig::default().build(vec![]).unwrap();
    opt.step(&mut [0.0; 3], &[1.0; 3]).unwrap();
    assert_eq!(
        opt.step(&mut [0.0; 4], &[1.0; 4]),
        Err(OptimError::StateLengthMismatch {
            buffer: "exp_avg".to_owned(),
            expected: 4,
            found: 3
        })
    );
}

/// Runs `k` steps, saves through JSON, loads into a fresh optimizer and runs
/// the rest; compares with `total` uninterrupted steps.
fn resume_is_bit_identical(len: usize, k: u64, total: u64) {
    for cfg in all_configs() {
        let groups = vec![
            ParamGroup::new(0..len / 2).with_lr_scale(0.5),
            ParamGroup::new(len / 2..len).with_weight_decay(0.0),
        ];
        let start: Vec<f32> = grads(len, 1000);
        let mut straight = cfg.build(groups.clone()).unwrap();
        let mut p_straight = start.clone();
        run(straight.as_mut(), &mut p_straight, 0..total);

        let mut first = cfg.build(groups.clone()).unwrap();
        let mut p = start.clone();
        run(first.as_mut(), &mut p, 0..k);
        let json = serde_json::to_string(&first.state()).unwrap();
        drop(first);
        let mut resumed = cfg.build(groups).unwrap();
        resumed
            .load_state(serde_json::from_str::<OptimizerState>(&json).unwrap())
            .unwrap();
        run(resumed.as_mut(), &mut p, k..total);
        assert_eq!(bits(&p), bits(&p_straight), "{}", cfg.name());
        assert_eq!(resumed.state(), straight.state(), "{}", cfg.name());
    }
}

#[test]
fn resume_from_checkpoint_is_bit_identical() {
    resume_is_bit_identical(7, 3, 6);
}

#[test]
fn resume_from_checkpoint_is_bit_identical_on_the_parallel_path() {
    // 2^18 + 5 parameters: both groups exceed the 2^17 parallel threshold.
    resume_is_bit_identical((1 << 18) + 5, 2, 4);
}

#[test]
fn loading_a_foreign_or_ragged_state_is_refused() {
    let mut adam = OptimizerConfig::default().build(vec![]).unwrap();
    let mut sgd = OptimizerConfig::Sgd(SgdConfig {
        momentum: 0.9,
        ..SgdConfig::default()
    })
    .build(vec![])
    .unwrap();
    sgd.step(&mut [0.0; 3], &[1.0; 3]).unwrap();
    assert!(matches!(
        adam.load_state(sgd.state()),
        Err(OptimError::StateMismatch { .. })
    ));
    let mut state = sgd.state();
    state.buffers.get_mut("momentum_buffer").unwrap().pop();
    let mut fresh = OptimizerConfig::Sgd(SgdConfig {
        momentum: 0.9,
        ..SgdConfig::default()
    })
    .build(vec![])
    .unwrap();
    fresh.load_state(state).unwrap();
    // A loaded buffer of length 2 cannot drive a step over 3 parameters.
    assert!(matches!(
        fresh.step(&mut [0.0; 3], &[1.0; 3]),
        Err(OptimError::StateLengthMismatch { found: 2, .. })
    ));
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    // Above the 2^17 parallel threshold, with an odd tail.
    let len = 3 * (1 << 17) + 11;
    for cfg in all_configs() {
        let result = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut opt = cfg.build(vec![]).unwrap();
                let mut p = grads(len, 500);
                run(opt.as_mut(), &mut p, 0..3);
                let mut g = grads(len, 9);
                let norm = mtl_optim::clip_grad_norm(&mut g, 1.0).unwrap();
                (bits(&p), norm.to_bits(), bits(&g))
            })
        };
        assert_eq!(result(1), result(3), "{}", cfg.name());
    }
}

#[test]
fn decaying_state_never_holds_subnormals() {
    // One unit gradient, then zeros: a momentum or first moment of 0.1·0.9ᵗ
    // is subnormal for t in about 810..950 (and 0 after), so every step up to
    // 1000 is checked; every optimizer's state must hold 0 instead.
    for cfg in all_configs() {
        let mut opt = cfg.build(vec![]).unwrap();
        let mut p = [0.25f32, -0.5];
        opt.step(&mut p, &[1.0, -1.0]).unwrap();
        for t in 0..1000 {
            opt.step(&mut p, &[0.0, 0.0]).unwrap();
            for (name, buf) in opt.state().buffers {
                for x in buf {
                    assert!(
                        !x.is_subnormal(),
                        "{}: {name} holds {x:e} after {t} zero steps",
                        cfg.name()
                    );
                }
            }
        }
    }
}

proptest! {
    #[test]
    fn zero_learning_rate_leaves_parameters_unchanged(
        theta in prop::collection::vec(-100.0f32..100.0, 1..40),
        seed in 0u64..1000,
        which in 0usize..10,
    ) {
        let cfg = &all_configs()[which];
        let mut opt = cfg.build(vec![]).unwrap();
        opt.set_lr(0.0).unwrap();
        let mut p = theta.clone();
        run(opt.as_mut(), &mut p, seed..seed + 3);
        prop_assert_eq!(bits(&p), bits(&theta));
    }

    #[test]
    fn sgd_decreases_a_convex_quadratic(
        diag in prop::collection::vec(0.1f32..10.0, 1..20),
        theta in prop::collection::vec(-10.0f32..10.0, 20),
        momentum in prop_oneof![Just(0.0), 0.0f64..0.9],
    ) {
        // f(θ) = ½ Σ aᵢ θᵢ², ∇f = aθ. Plain SGD with γ = 0.9/max(a) < 2/max(a)
        // decreases f at every step. With heavy-ball momentum μ and
        // γ = 0.9(1 − μ)/max(a) the iteration is stable (γa < 2(1 + μ)) but not
        // necessarily monotone, so those runs need only end below the start.
        let n = diag.len();
        let mut p = theta[..n].to_vec();
        let a_max = diag.iter().cloned().fold(0.0f32, f32::max);
        let lr = f64::from(0.9 / a_max);
        let loss = |p: &[f32]| -> f64 {
            p.iter().zip(&diag).map(|(&t, &a)| 0.5 * f64::from(a) * f64::from(t) * f64::from(t)).sum()
        };
        let mut opt = SgdConfig { lr: lr * (1.0 - momentum), momentum, ..SgdConfig::default() }
            .build(vec![]).unwrap();
        let start = loss(&p);
        let mut prev = start;
        for _ in 0..30 {
            let g: Vec<f32> = p.iter().zip(&diag).map(|(t, a)| a * t).collect();
            opt.step(&mut p, &g).unwrap();
            let now = loss(&p);
            if momentum == 0.0 {
                prop_assert!(now <= prev, "loss rose from {} to {}", prev, now);
            }
            prev = now;
        }
        prop_assert!(prev < start || start == 0.0, "loss {} did not fall below {}", prev, start);
    }
}

proptest! {
    #[test]
    fn state_survives_json_bit_for_bit(
        bits_in in prop::collection::vec(any::<u32>(), 1..200),
        step in 1u64..1_000_000,
        lr in 0.0f64..1.0,
    ) {
        // Any finite f32, subnormals and −0 included.
        let values: Vec<f32> = bits_in
            .into_iter()
            .map(f32::from_bits)
            .filter(|x| x.is_finite())
            .collect();
        let state = OptimizerState {
            optimizer: "adam".to_owned(),
            step,
            lr,
            buffers: [("exp_avg".to_owned(), values.clone())].into_iter().collect(),
        };
        let back: OptimizerState =
            serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        prop_assert_eq!(bits(&back.buffers["exp_avg"]), bits(&values));
        prop_assert_eq!(back.lr.to_bits(), lr.to_bits());
        prop_assert_eq!(back.step, step);
    }
}
