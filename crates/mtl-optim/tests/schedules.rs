//! Learning-rate schedules at named steps, warm-up composition,
//! reduce-on-plateau through the scheduler, and checkpoint resume.

use mtl_optim::{LrScheduler, OptimError, PlateauConfig, ScheduleConfig};

/// Rates at steps `0..n` from a fresh scheduler.
fn rates(schedule: ScheduleConfig, base: f64, n: u64) -> Vec<f64> {
    let mut s = LrScheduler::new(schedule, base).unwrap();
    let mut out = vec![s.lr()];
    for _ in 1..n {
        out.push(s.step(None).unwrap());
    }
    out
}

/// Cosine values go through libm's `cos`, which is faithful to about 1 ulp;
/// a few ulps of the base rate 1.
const COS_TOL: f64 = 1e-15;

#[test]
fn step_decays_every_step_size() {
    // γ₀ · 0.5^⌊t/3⌋ with γ₀ = 0.8: dyadic, so exact.
    let r = rates(
        ScheduleConfig::Step {
            step_size: 3,
            gamma: 0.5,
        },
        0.8,
        10,
    );
    assert_eq!(r, [0.8, 0.8, 0.8, 0.4, 0.4, 0.4, 0.2, 0.2, 0.2, 0.1]);
}

#[test]
fn multi_step_decays_at_milestones() {
    // γ₀ · 0.25^(milestones ≤ t), milestones 2 and 5.
    let r = rates(
        ScheduleConfig::MultiStep {
            milestones: vec![2, 5],
            gamma: 0.25,
        },
        1.0,
        7,
    );
    assert_eq!(r, [1.0, 1.0, 0.25, 0.25, 0.25, 0.0625, 0.0625]);
}

#[test]
fn exponential_multiplies_every_step() {
    // 2 · 0.5ᵗ.
    let r = rates(ScheduleConfig::Exponential { gamma: 0.5 }, 2.0, 4);
    assert_eq!(r, [2.0, 1.0, 0.5, 0.25]);
}

#[test]
fn cosine_anneals_to_the_minimum_and_stays() {
    // 0.1 + 0.9 (1 + cos(π t/4))/2:
    // t = 1: 0.1 + 0.45 (1 + √2/2) = 0.86819805…, t = 2: 0.55,
    // t = 3: 0.1 + 0.45 (1 − √2/2) = 0.23180194…, t ≥ 4: 0.1.
    let r = rates(
        ScheduleConfig::Cosine {
            t_max: 4,
            min_lr: 0.1,
        },
        1.0,
        8,
    );
    let half_root2 = std::f64::consts::FRAC_1_SQRT_2;
    let expected = [
        1.0,
        0.1 + 0.45 * (1.0 + half_root2),
        0.55,
        0.1 + 0.45 * (1.0 - half_root2),
        0.1,
        0.1,
        0.1,
        0.1,
    ];
    for (t, (got, want)) in r.iter().zip(expected).enumerate() {
        assert!((got - want).abs() <= COS_TOL, "t = {t}: {got} vs {want}");
    }
}

#[test]
fn warmup_composes_with_any_schedule() {
    // t < 4: γ₀ (0.25 + 0.75 t/4); then step(2, 0.5) counted from t − 4.
    let warm_step = ScheduleConfig::Warmup {
        steps: 4,
        start_factor: 0.25,
        then: Box::new(ScheduleConfig::Step {
            step_size: 2,
            gamma: 0.5,
        }),
    };
    assert_eq!(
        rates(warm_step, 1.0, 9),
        [0.25, 0.4375, 0.625, 0.8125, 1.0, 1.0, 0.5, 0.5, 0.25]
    );
    // Warm-up then cosine: the cosine starts at γ₀ when the warm-up ends.
    let warm_cos = ScheduleConfig::Warmup {
        steps: 2,
        start_factor: 0.0,
        then: Box::new(ScheduleConfig::Cosine {
            t_max: 2,
            min_lr: 0.0,
        }),
    };
    let r = rates(warm_cos, 0.2, 6);
    assert_eq!(&r[..3], [0.0, 0.1, 0.2]);
    assert!((r[3] - 0.1).abs() <= COS_TOL);
    assert_eq!(&r[4..], [0.0, 0.0]);
}

#[test]
fn plateau_after_warmup_needs_metrics_only_once_active() {
    let schedule = ScheduleConfig::Warmup {
        steps: 2,
        start_factor: 0.5,
        then: Box::new(ScheduleConfig::Plateau(PlateauConfig {
            patience: 1,
            factor: 0.5,
            ..PlateauConfig::default()
        })),
    };
    let mut s = LrScheduler::new(schedule, 1.0).unwrap();
    assert_eq!(s.lr(), 0.5);
    assert_eq!(s.step(None), Ok(0.75)); // t = 1, warm-up, metric not needed
    assert_eq!(s.step(None), Err(OptimError::MissingMetric)); // t = 2: plateau
    assert_eq!(s.steps_taken(), 1, "a refused step changes nothing");
    // Metrics 3 (best), 3 (bad 1), 3 (bad 2 > patience: 1 → 0.5), 2 (best).
    let lrs: Vec<f64> = [3.0, 3.0, 3.0, 2.0]
        .into_iter()
        .map(|m| s.step(Some(m)).unwrap())
        .collect();
    assert_eq!(lrs, [1.0, 1.0, 0.5, 0.5]);
}

#[test]
fn scheduler_resumes_from_json_bit_identically() {
    let schedule = ScheduleConfig::Plateau(PlateauConfig {
        patience: 2,
        factor: 0.3,
        cooldown: 1,
        ..PlateauConfig::default()
    });
    let metrics = [5.0, 4.0, 4.5, 4.4, 4.3, 4.2, 4.1, 4.05, 4.0, 3.99, 4.2, 4.3];
    let mut straight = LrScheduler::new(schedule.clone(), 0.1).unwrap();
    let expected: Vec<f64> = metrics
        .iter()
        .map(|&m| straight.step(Some(m)).unwrap())
        .collect();
    assert!(
        expected.iter().any(|&lr| lr < 0.1),
        "the metrics must trigger a reduction for this test to mean anything"
    );
    let mut first = LrScheduler::new(schedule, 0.1).unwrap();
    let mut got: Vec<f64> = metrics[..5]
        .iter()
        .map(|&m| first.step(Some(m)).unwrap())
        .collect();
    let json = serde_json::to_string(&first).unwrap();
    let mut resumed: LrScheduler = serde_json::from_str(&json).unwrap();
    got.extend(metrics[5..].iter().map(|&m| resumed.step(Some(m)).unwrap()));
    assert_eq!(got, expected);
    assert_eq!(resumed, straight);
}

#[test]
fn schedule_configs_parse_from_toml_and_refuse_unknown_keys() {
    #[derive(Debug, serde::Deserialize)]
    struct Run {
        schedule: ScheduleConfig,
    }
    let run: Run =
        toml::from_str(r#"schedule = { name = "multi_step", milestones = [10, 20], gamma = 0.5 }"#)
            .unwrap();
    assert_eq!(
        run.schedule,
        ScheduleConfig::MultiStep {
            milestones: vec![10, 20],
            gamma: 0.5
        }
    );
    let run: Run =
        toml::from_str(r#"schedule = { name = "plateau", mode = "max", patience = 3 }"#).unwrap();
    assert!(matches!(
        run.schedule,
        ScheduleConfig::Plateau(PlateauConfig { patience: 3, .. })
    ));
    let err = toml::from_str::<Run>(r#"schedule = { name = "cosine", t_max = 5, eta_min = 0.1 }"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("eta_min"), "{err}");
    let err = toml::from_str::<Run>(
        r#"schedule = { name = "warmup", steps = 5, then = { name = "step", step_size = 2, size = 1 } }"#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("size"), "{err}");
}
