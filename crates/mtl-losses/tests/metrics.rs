//! Metrics against hand-computed values, their algebraic properties, Δm%, the
//! evaluator, and bad input.

use mtl_core::{Targets, TaskKind, TaskSpec, Tensor};
use mtl_losses::metric::{
    accuracy, ari, delta_m, evaluate, label_macro_f1, macro_f1, macro_roc_auc, mae, nmi, r2, rmse,
    roc_auc, Metric, MetricValue, Score,
};
use mtl_losses::task::Task;
use mtl_losses::Error;
use proptest::prelude::*;

/// Metrics are computed in `f64` from small counts; the hand values are exact
/// fractions or logarithms, so only a few ulps of `f64` rounding separate them.
const EXACT_TOL: f64 = 1e-12;
/// Metrics on `f32` inputs convert each value to `f64`; inputs such as 0.1 carry
/// `f32` representation error ≈ 1e-8 relative, far below this.
const F32_INPUT_TOL: f64 = 1e-6;

fn close(a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() <= tol, "{a} vs {b}");
}

#[test]
fn nmi_and_ari_are_one_on_identical_and_permuted_partitions() {
    let truth = [0, 0, 1, 1, 1, 2, 2, 3];
    close(nmi(&truth, &truth).unwrap(), 1.0, EXACT_TOL);
    close(ari(&truth, &truth).unwrap(), 1.0, EXACT_TOL);
    // The same grouping under other names: 0→7, 1→2, 2→0, 3→5.
    let renamed = [7, 7, 2, 2, 2, 0, 0, 5];
    close(nmi(&truth, &renamed).unwrap(), 1.0, EXACT_TOL);
    close(ari(&truth, &renamed).unwrap(), 1.0, EXACT_TOL);
    // One group each: identical, 1 by convention.
    assert_eq!(nmi(&[4, 4, 4], &[1, 1, 1]).unwrap(), 1.0);
    assert_eq!(ari(&[4, 4, 4], &[1, 1, 1]).unwrap(), 1.0);
}

#[test]
fn nmi_and_ari_of_independent_partitions() {
    // Every cell of the 2×2 contingency table holds 1: I(U;V) = 0 exactly.
    // ARI: Σ C(n_ij,2) = 0, Σ C(a_i,2) = Σ C(b_j,2) = 2, C(4,2) = 6,
    // E = 2·2/6 = 2/3, max = 2, so ARI = (0 − 2/3) / (2 − 2/3) = −1/2.
    let (a, b) = ([0, 0, 1, 1], [0, 1, 0, 1]);
    close(nmi(&a, &b).unwrap(), 0.0, EXACT_TOL);
    close(ari(&a, &b).unwrap(), -0.5, EXACT_TOL);

    // 120 examples, a = i mod 3, b = ⌊i/3⌋ mod 4: every cell holds 10.
    // NMI = 0; ARI: Σ C(n_ij,2) = 12·45 = 540, Σ C(a_i,2) = 3·780 = 2340,
    // Σ C(b_j,2) = 4·435 = 1740, C(120,2) = 7140.
    let a: Vec<usize> = (0..120).map(|i| i % 3).collect();
    let b: Vec<usize> = (0..120).map(|i| (i / 3) % 4).collect();
    let expected = 2340.0 * 1740.0 / 7140.0;
    let ari_hand = (540.0 - expected) / ((2340.0 + 1740.0) / 2.0 - expected);
    close(nmi(&a, &b).unwrap(), 0.0, EXACT_TOL);
    close(ari(&a, &b).unwrap(), ari_hand, EXACT_TOL);
    assert!(
        ari(&a, &b).unwrap().abs() < 0.03,
        "independent partitions score near 0"
    );
}

#[test]
fn nmi_and_ari_of_a_partial_match() {
    // Table rows (truth 0, 1) × columns (pred 0, 1, 2): [[2, 1, 0], [0, 1, 2]].
    // I = (2/6)ln 2 + (2/6)ln 2 = (2/3) ln 2; H(U) = ln 2; H(V) = ln 3.
    let truth = [0, 0, 0, 1, 1, 1];
    let pred = [0, 0, 1, 1, 2, 2];
    let nmi_hand = (2.0 / 3.0) * 2f64.ln() / ((2f64.ln() + 3f64.ln()) / 2.0);
    close(nmi(&truth, &pred).unwrap(), nmi_hand, EXACT_TOL);
    // Σ C(n_ij,2) = 2, Σ C(a_i,2) = 6, Σ C(b_j,2) = 3, C(6,2) = 15:
    // E = 18/15 = 1.2, ARI = (2 − 1.2) / (4.5 − 1.2) = 8/33.
    close(ari(&truth, &pred).unwrap(), 8.0 / 33.0, EXACT_TOL);
}

#[test]
fn roc_auc_counts_ties_as_one_half() {
    // Positives {0.4, 0.8, 0.4}, negatives {0.1, 0.4}: of the 6 pairs, 4 are
    // ordered and 2 tied (0.4 vs 0.4), so AUC = (4 + 2·½) / 6 = 5/6.
    let scores = [0.1, 0.4, 0.4, 0.8, 0.4];
    let positive = [false, true, false, true, true];
    close(roc_auc(&scores, &positive).unwrap(), 5.0 / 6.0, EXACT_TOL);
    close(
        roc_auc(&[0.3; 4], &[true, false, true, false]).unwrap(),
        0.5,
        EXACT_TOL,
    );
    close(
        roc_auc(&[0.1, 0.9], &[false, true]).unwrap(),
        1.0,
        EXACT_TOL,
    );
    // Two labels, row-major: label 0 is perfectly ranked, label 1 reversed.
    let scores = [0.9, 0.1, 0.2, 0.8];
    let positive = [true, false, false, true];
    close(
        macro_roc_auc(&scores, &positive, 2).unwrap(),
        1.0,
        EXACT_TOL,
    );
    let positive = [true, true, false, false];
    close(
        macro_roc_auc(&scores, &positive, 2).unwrap(),
        0.5,
        EXACT_TOL,
    );
}

#[test]
fn regression_metrics_match_hand_values() {
    // d = [−1, 0, −2]: MAE = 1, RMSE = √(5/3).
    close(
        mae(&[1.0, 2.0, 3.0], &[2.0, 2.0, 5.0]).unwrap(),
        1.0,
        EXACT_TOL,
    );
    close(
        rmse(&[1.0, 2.0, 3.0], &[2.0, 2.0, 5.0]).unwrap(),
        (5.0f64 / 3.0).sqrt(),
        EXACT_TOL,
    );
    let target = [1.0, 2.0, 3.0, 4.0];
    close(r2(&target, &target, 1).unwrap(), 1.0, EXACT_TOL);
    close(r2(&[2.5; 4], &target, 1).unwrap(), 0.0, EXACT_TOL);
    // SS_res = 1, SS_tot = 5: R² = 0.8.
    close(
        r2(&[1.0, 2.0, 3.0, 5.0], &target, 1).unwrap(),
        0.8,
        EXACT_TOL,
    );
    // Two outputs (row-major), averaged: perfect (1) and the mean (0).
    let target = [1.0, 10.0, 2.0, 20.0, 3.0, 30.0];
    let pred = [1.0, 20.0, 2.0, 20.0, 3.0, 20.0];
    close(r2(&pred, &target, 2).unwrap(), 0.5, EXACT_TOL);
    let e = r2(&[1.0, 2.0], &[3.0, 3.0], 1).unwrap_err();
    assert!(e.to_string().contains("constant"), "{e}");
}

#[test]
fn f1_and_accuracy_match_hand_values() {
    // Class 0: TP 1, FP 1, FN 1 → ½. Class 1: TP 2, FP 1 → 4/5.
    // Class 2: TP 1, FN 1 → 2/3. Mean 59/90.
    let target = [0, 0, 1, 1, 2, 2];
    let pred = [0, 1, 1, 1, 2, 0];
    close(macro_f1(&pred, &target, 3).unwrap(), 59.0 / 90.0, EXACT_TOL);
    close(accuracy(&pred, &target).unwrap(), 4.0 / 6.0, EXACT_TOL);
    // A class absent from targets and predictions is left out of the mean.
    close(macro_f1(&pred, &target, 5).unwrap(), 59.0 / 90.0, EXACT_TOL);
    // Two labels, row-major. Label 0: TP 1, FP 1 → 2/3; label 1: TP 1, FN 1 → 2/3;
    // averaged: 2/3.
    let decided = [true, true, true, false, false, false];
    let truth = [true, true, false, true, false, false];
    close(
        label_macro_f1(&decided, &truth, 2).unwrap(),
        2.0 / 3.0,
        EXACT_TOL,
    );
}

#[test]
fn delta_m_worked_example() {
    // Accuracy 0.80 against 0.75: +6.667%. RMSE 2.0 against 2.5, lower is
    // better: −(2.0 − 2.5)/2.5 = +20%. Mean: +13.333%.
    let scores = [
        Score::new("digit", Metric::Accuracy, 0.80),
        Score::new("mpg", Metric::Rmse, 2.0),
    ];
    let baselines = [
        Score::new("mpg", Metric::Rmse, 2.5),
        Score::new("digit", Metric::Accuracy, 0.75),
    ];
    // (1/15 + 1/5) / 2 · 100 = 40/3.
    let expected = 40.0 / 3.0;
    close(delta_m(&scores, &baselines).unwrap(), expected, EXACT_TOL);
    // Worse on both: negative.
    let worse = [
        Score::new("digit", Metric::Accuracy, 0.70),
        Score::new("mpg", Metric::Rmse, 3.0),
    ];
    assert!(delta_m(&worse, &baselines).unwrap() < 0.0);
    // Equal to the baselines: 0.
    close(delta_m(&baselines, &baselines).unwrap(), 0.0, EXACT_TOL);
}

#[test]
fn delta_m_refuses_zero_baselines_and_mismatched_tasks() {
    let scores = [Score::new("mpg", Metric::Mae, 1.0)];
    let e = delta_m(&scores, &[Score::new("mpg", Metric::Mae, 0.0)]).unwrap_err();
    assert!(
        matches!(&e, Error::DeltaM { task, .. } if task == "mpg"),
        "{e:?}"
    );
    let e = delta_m(&scores, &[Score::new("origin", Metric::Mae, 1.0)]).unwrap_err();
    assert!(
        matches!(&e, Error::DeltaM { task, .. } if task == "mpg"),
        "{e:?}"
    );
    let e = delta_m(&scores, &[]).unwrap_err();
    assert_eq!(
        e,
        Error::CountMismatch {
            what: "baseline scores (expected one per score)",
            expected: 1,
            got: 0
        }
    );
}

#[test]
fn bad_metric_input_is_an_error() {
    let e = roc_auc(&[0.1, f32::NAN], &[false, true]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::BadValue {
                what: "scores",
                index: 1,
                ..
            }
        ),
        "{e:?}"
    );
    let e = mae(&[1.0, 2.0], &[1.0]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::CountMismatch {
                expected: 1,
                got: 2,
                ..
            }
        ),
        "{e:?}"
    );
    let e = nmi(&[0, 1], &[0, 1, 1]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::CountMismatch {
                expected: 3,
                got: 2,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(accuracy(&[], &[]).is_err());
    assert!(roc_auc(&[0.1, 0.2], &[true, true]).is_err());
    let e = macro_f1(&[0, 3], &[0, 1], 3).unwrap_err();
    assert!(matches!(e, Error::BadValue { index: 1, .. }), "{e:?}");
}

#[test]
fn metric_names_and_directions() {
    for m in Metric::ALL {
        assert_eq!(m.name().parse::<Metric>().unwrap(), m);
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            format!("\"{}\"", m.name())
        );
    }
    assert!(!Metric::Rmse.higher_is_better() && !Metric::Mae.higher_is_better());
    assert!(Metric::R2.higher_is_better() && Metric::Ari.higher_is_better());
    let e = "f2".parse::<Metric>().unwrap_err().to_string();
    assert!(e.contains("macro_f1") && e.contains("nmi"), "{e}");
    for kind in [
        TaskKind::Classification { classes: 3 },
        TaskKind::Binary,
        TaskKind::Multilabel { labels: 2 },
        TaskKind::Regression { outputs: 1 },
        TaskKind::Clustering { clusters: 2 },
    ] {
        assert!(Metric::defaults(&kind).iter().all(|m| m.applies_to(&kind)));
    }
}

fn task(name: &str, kind: TaskKind) -> Task {
    Task::with_default_loss(TaskSpec {
        name: name.into(),
        kind,
    })
    .unwrap()
}

fn values(metrics: &[MetricValue]) -> Vec<f64> {
    metrics.iter().map(|m| m.value).collect()
}

#[test]
fn evaluate_reads_outputs_per_kind() {
    let t = |d: &[f32], rows: usize| Tensor::from_vec(d.to_vec(), &[rows, d.len() / rows]).unwrap();
    // Classification: argmax [1, 0, 2] against [1, 2, 2].
    let digit = task("digit", TaskKind::Classification { classes: 3 });
    let out = t(&[0.0, 1.0, 0.0, 2.0, 1.0, 0.0, 0.0, 0.0, 3.0], 3);
    let got = evaluate(
        &digit,
        &out,
        &Targets::Classes(vec![1, 2, 2]),
        &[Metric::Accuracy],
    )
    .unwrap();
    close(got[0].value, 2.0 / 3.0, EXACT_TOL);
    // Binary: logits [−1, 2, 0.5, −3] against [0, 1, 0, 1]: decisions [0, 1, 1, 0].
    let binary = task("spam", TaskKind::Binary);
    let out = t(&[-1.0, 2.0, 0.5, -3.0], 4);
    let targets = Targets::Values(t(&[0.0, 1.0, 0.0, 1.0], 4));
    let got = evaluate(&binary, &out, &targets, Metric::defaults(binary.kind())).unwrap();
    // AUC: positive 2 beats both negatives, positive −3 beats none: 2/4.
    // Accuracy 2/4; F1 of the positive class: TP 1, FP 1, FN 1 → ½.
    assert_eq!(got[0].metric, Metric::RocAuc);
    assert_eq!(values(&got), vec![0.5, 0.5, 0.5]);
    // Regression.
    let mpg = task("mpg", TaskKind::Regression { outputs: 1 });
    let got = evaluate(
        &mpg,
        &t(&[1.0, 2.0, 3.0, 5.0], 4),
        &Targets::Values(t(&[1.0, 2.0, 3.0, 4.0], 4)),
        &[Metric::R2, Metric::Mae],
    )
    .unwrap();
    close(got[0].value, 0.8, F32_INPUT_TOL);
    close(got[1].value, 0.25, F32_INPUT_TOL);
    // Clustering against reference labels, and without them.
    let groups = task("groups", TaskKind::Clustering { clusters: 2 });
    let q = t(&[0.9, 0.1, 0.8, 0.2, 0.3, 0.7, 0.4, 0.6], 4);
    let reference = Targets::Unsupervised {
        reference: Some(vec![1, 1, 0, 0]),
    };
    let got = evaluate(&groups, &q, &reference, &[Metric::Nmi, Metric::Ari]).unwrap();
    assert_eq!(values(&got), vec![1.0, 1.0]);
    let none = Targets::Unsupervised { reference: None };
    assert!(evaluate(&groups, &q, &none, &[Metric::Nmi])
        .unwrap()
        .is_empty());
}

#[test]
fn evaluate_errors_name_the_task() {
    let mpg = task("mpg", TaskKind::Regression { outputs: 1 });
    let out = Tensor::from_vec(vec![1.0, f32::NAN], &[2, 1]).unwrap();
    let targets = Targets::Values(Tensor::from_vec(vec![1.0, 2.0], &[2, 1]).unwrap());
    let e = evaluate(&mpg, &out, &targets, &[Metric::Mae]).unwrap_err();
    assert!(
        matches!(&e, Error::InTask { task, .. } if task == "mpg"),
        "{e:?}"
    );
    assert!(e.to_string().contains("NaN"), "{e}");
    let short = Targets::Values(Tensor::from_vec(vec![1.0], &[1, 1]).unwrap());
    let ok = Tensor::from_vec(vec![1.0, 2.0], &[2, 1]).unwrap();
    let e = evaluate(&mpg, &ok, &short, &[Metric::Mae]).unwrap_err();
    assert!(e.to_string().contains("\"mpg\""), "{e}");
    let e = evaluate(&mpg, &ok, &targets, &[Metric::Accuracy]).unwrap_err();
    assert!(
        e.to_string().contains("\"mpg\"") && e.to_string().contains("accuracy"),
        "{e}"
    );
}

/// Brute-force AUC: the share of (positive, negative) pairs ordered correctly,
/// ties counting ½.
fn pairwise_auc(scores: &[f32], positive: &[bool]) -> f64 {
    let mut total = 0.0;
    let mut pairs = 0.0;
    for (s, _) in scores.iter().zip(positive).filter(|(_, &p)| p) {
        for (n, _) in scores.iter().zip(positive).filter(|(_, &p)| !p) {
            total += if s > n {
                1.0
            } else if s == n {
                0.5
            } else {
                0.0
            };
            pairs += 1.0;
        }
    }
    total / pairs
}

proptest! {
    #[test]
    fn rank_auc_equals_pairwise_auc_and_flips_with_the_scores(
        data in prop::collection::vec((0u8..6, any::<bool>()), 2..40)
    ) {
        let scores: Vec<f32> = data.iter().map(|(s, _)| *s as f32 / 4.0).collect();
        let positive: Vec<bool> = data.iter().map(|(_, p)| *p).collect();
        prop_assume!(positive.iter().any(|&p| p) && positive.iter().any(|&p| !p));
        let auc = roc_auc(&scores, &positive).unwrap();
        prop_assert!((auc - pairwise_auc(&scores, &positive)).abs() < EXACT_TOL);
        let negated: Vec<f32> = scores.iter().map(|s| -s).collect();
        prop_assert!((roc_auc(&negated, &positive).unwrap() - (1.0 - auc)).abs() < EXACT_TOL);
    }

    #[test]
    fn nmi_and_ari_are_symmetric_and_ignore_label_names(
        pairs in prop::collection::vec((0usize..4, 0usize..5), 1..50),
        shift in 1usize..100,
    ) {
        let a: Vec<usize> = pairs.iter().map(|p| p.0).collect();
        let b: Vec<usize> = pairs.iter().map(|p| p.1).collect();
        // An injective renaming of b's labels.
        let renamed: Vec<usize> = b.iter().map(|&l| 3 * l + shift).collect();
        let (n, r) = (nmi(&a, &b).unwrap(), ari(&a, &b).unwrap());
        prop_assert!((0.0..=1.0 + EXACT_TOL).contains(&n));
        prop_assert!(r <= 1.0 + EXACT_TOL);
        prop_assert!((nmi(&b, &a).unwrap() - n).abs() < EXACT_TOL);
        prop_assert!((ari(&b, &a).unwrap() - r).abs() < EXACT_TOL);
        prop_assert!((nmi(&a, &renamed).unwrap() - n).abs() < EXACT_TOL);
        prop_assert!((ari(&a, &renamed).unwrap() - r).abs() < EXACT_TOL);
    }
}
