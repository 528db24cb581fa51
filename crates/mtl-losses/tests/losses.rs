//! Task losses through `Task::loss`: values against hand-computed numbers,
//! gradients against central finite differences, and bad batches.

use mtl_core::{Graph, Targets, TaskKind, TaskSpec, Tensor, Var};
use mtl_losses::loss::{
    kl_to_target, target_distribution, BceWithLogits, CrossEntropy, Dec, Loss, RegressionLoss,
};
use mtl_losses::task::{Prediction, Task};
use mtl_losses::Error;

/// Step of the central differences. The losses are smooth on the test points
/// (kinks of L1 and Huber lie ≥ 0.2 away), so the truncation error is
/// O(h²·f''') ≈ 1e-4, and `f32` rounding of a loss near 1 divided by 2h adds
/// ≈ 1e-5.
const FD_STEP: f32 = 1e-2;
/// Agreement of analytic and finite-difference gradients: ten times the
/// finite-difference error estimated above, relative to max(1, |g|).
const FD_TOL: f32 = 2e-3;
/// Hand-computed values are evaluated in `f64`; the loss comes back as `f32`
/// (relative rounding ≈ 6e-8 on values of order 1).
const VALUE_TOL: f64 = 1e-6;

fn spec(name: &str, kind: TaskKind) -> TaskSpec {
    TaskSpec {
        name: name.into(),
        kind,
    }
}

fn tensor(data: &[f32], rows: usize) -> Tensor {
    Tensor::from_vec(data.to_vec(), &[rows, data.len() / rows]).unwrap()
}

/// The loss value and its gradient at the head output `x`.
fn loss_and_grad(task: &Task, x: &Tensor, targets: &Targets) -> (f32, Tensor) {
    let mut g = Graph::new(0);
    let v = g.param_value(x.clone());
    let loss = task.loss(&mut g, v, targets).unwrap();
    let grads = g.backward(&[(loss, 1.0)]).unwrap();
    (
        g.value(loss).unwrap().item().unwrap(),
        grads.get(v).unwrap().clone(),
    )
}

/// Central differences of `f` at `x`, one coordinate at a time.
fn finite_differences(x: &Tensor, f: impl Fn(&Tensor) -> f32) -> Vec<f32> {
    (0..x.len())
        .map(|i| {
            let (mut up, mut down) = (x.clone(), x.clone());
            up.data_mut()[i] += FD_STEP;
            down.data_mut()[i] -= FD_STEP;
            (f(&up) - f(&down)) / (2.0 * FD_STEP)
        })
        .collect()
}

fn assert_close_grads(analytic: &[f32], numeric: &[f32]) {
    assert_eq!(analytic.len(), numeric.len());
    for (i, (a, n)) in analytic.iter().zip(numeric).enumerate() {
        assert!(
            (a - n).abs() <= FD_TOL * a.abs().max(1.0),
            "coordinate {i}: analytic {a}, finite difference {n}"
        );
    }
}

/// Checks the gradient of `task.loss` at `x` against finite differences.
fn check_gradient(task: &Task, x: &Tensor, targets: &Targets) {
    let (_, grad) = loss_and_grad(task, x, targets);
    let numeric = finite_differences(x, |p| loss_and_grad(task, p, targets).0);
    assert_close_grads(grad.data(), &numeric);
}

#[test]
fn cross_entropy_options_reach_the_loss_value() {
    // Logits [1, 2, 0] for class 1, weights [1, 2, 1], ε = 0.1.
    let task = Task::new(
        spec("digit", TaskKind::Classification { classes: 3 }),
        Loss::CrossEntropy(CrossEntropy {
            label_smoothing: 0.1,
            class_weights: Some(vec![1.0, 2.0, 1.0]),
        }),
    )
    .unwrap();
    let lse = (1f64.exp() + 2f64.exp() + 1.0).ln();
    let nll = [lse - 1.0, lse - 2.0, lse]; // −log p_k
    let weights = [1.0, 2.0, 1.0];
    let smooth: f64 = nll.iter().zip(weights).map(|(l, w)| l * w).sum();
    // ℓ = (1−ε)·w_y·nll_y + (ε/K)·Σ_k w_k·nll_k, divided by w_y.
    let expected = (0.9 * 2.0 * nll[1] + 0.1 / 3.0 * smooth) / 2.0;
    let (value, _) = loss_and_grad(
        &task,
        &tensor(&[1.0, 2.0, 0.0], 1),
        &Targets::Classes(vec![1]),
    );
    assert!(
        (value as f64 - expected).abs() < VALUE_TOL,
        "{value} vs {expected}"
    );
}

#[test]
fn cross_entropy_gradient_matches_finite_differences() {
    let task = Task::new(
        spec("digit", TaskKind::Classification { classes: 4 }),
        Loss::CrossEntropy(CrossEntropy {
            label_smoothing: 0.2,
            class_weights: Some(vec![0.5, 1.0, 2.0, 1.5]),
        }),
    )
    .unwrap();
    let logits = tensor(
        &[
            0.3, -1.2, 2.0, 0.1, 1.5, 0.2, -0.4, -2.0, -0.7, 0.9, 0.0, 1.1,
        ],
        3,
    );
    check_gradient(&task, &logits, &Targets::Classes(vec![2, 0, 3]));
}

#[test]
fn bce_gradient_matches_finite_differences_for_multilabel() {
    let task = Task::new(
        spec("tags", TaskKind::Multilabel { labels: 3 }),
        Loss::BceWithLogits(BceWithLogits),
    )
    .unwrap();
    let logits = tensor(&[0.5, -2.0, 3.0, -0.3, 1.2, 0.0], 2);
    let targets = Targets::Values(tensor(&[1.0, 0.0, 1.0, 1.0, 0.0, 0.0], 2));
    check_gradient(&task, &logits, &targets);
    // σ(z) − t over 6 entries: at z = 0, t = 0 the gradient is ½ / 6.
    let (_, grad) = loss_and_grad(&task, &logits, &targets);
    assert!((grad.data()[5] - 0.5 / 6.0).abs() < 1e-7);
}

#[test]
fn regression_losses_match_values_and_finite_differences() {
    let pred = tensor(&[0.5, 2.0, -1.0, 3.5], 2);
    let targets = Targets::Values(tensor(&[0.0, 1.0, 1.0, 3.2], 2));
    // d = [0.5, 1.0, −2.0, 0.3]
    let cases = [
        (RegressionLoss::Mse, (0.25 + 1.0 + 4.0 + 0.09) / 4.0),
        (RegressionLoss::L1, (0.5 + 1.0 + 2.0 + 0.3) / 4.0),
        // δ = 0.8: ½d² for |d| < δ, δ(|d| − ½δ) beyond.
        (
            RegressionLoss::Huber { delta: 0.8 },
            (0.125 + 0.8 * 0.6 + 0.8 * 1.6 + 0.045) / 4.0,
        ),
    ];
    for (loss, expected) in cases {
        let task = Task::new(
            spec("mpg", TaskKind::Regression { outputs: 2 }),
            Loss::Regression(loss),
        )
        .unwrap();
        let (value, _) = loss_and_grad(&task, &pred, &targets);
        assert!(
            (value as f64 - expected).abs() < VALUE_TOL,
            "{}: {value} vs {expected}",
            loss.name()
        );
        check_gradient(&task, &pred, &targets);
    }
}

fn q_example() -> Tensor {
    tensor(&[0.6, 0.4, 0.2, 0.8], 2)
}

#[test]
fn dec_target_distribution_and_kl_match_hand_computation() {
    // f = (0.8, 1.2). Row 1: q²/f = (0.45, 0.1333), sum 0.58333 → (27/35, 8/35).
    // Row 2: q²/f = (0.05, 0.5333), sum 0.58333 → (3/35, 32/35).
    let p_hand = [27.0 / 35.0, 8.0 / 35.0, 3.0 / 35.0, 32.0 / 35.0];
    let q = [0.6, 0.4, 0.2, 0.8];
    let p = target_distribution(&q_example()).unwrap();
    for (a, b) in p.data().iter().zip(p_hand) {
        assert!((*a as f64 - b).abs() < VALUE_TOL);
    }
    let kl: f64 = p_hand
        .iter()
        .zip(q)
        .map(|(p, q)| p * (p / q).ln())
        .sum::<f64>()
        / 2.0;
    let task =
        Task::with_default_loss(spec("groups", TaskKind::Clustering { clusters: 2 })).unwrap();
    let (value, grad) = loss_and_grad(
        &task,
        &q_example(),
        &Targets::Unsupervised { reference: None },
    );
    assert!((value as f64 - kl).abs() < VALUE_TOL, "{value} vs {kl}");
    // P is held constant: ∂L/∂q_ij = −p_ij / (B·q_ij).
    for ((g, p), q) in grad.data().iter().zip(p_hand).zip(q) {
        assert!((*g as f64 + p / (2.0 * q)).abs() < VALUE_TOL, "{g}");
    }
}

/// Embeddings and centroids of the clustering head test.
fn dec_point() -> (Tensor, Tensor) {
    let z = tensor(&[0.2, 1.0, -0.5, 0.3, 1.4, -0.8, 0.0, 0.1], 4);
    let mu = tensor(&[0.5, 0.5, -0.6, -0.2, 1.0, -1.0], 3);
    (z, mu)
}

/// Gradients at `z` and `mu` of the task's loss of the Student-t head.
fn dec_grads(task: &Task, z: &Tensor, mu: &Tensor, alpha: f32) -> (Tensor, Tensor) {
    let mut g = Graph::new(0);
    let (zv, mv) = (g.param_value(z.clone()), g.param_value(mu.clone()));
    let q = g.student_t(zv, mv, alpha).unwrap();
    let loss = task
        .loss(&mut g, q, &Targets::Unsupervised { reference: None })
        .unwrap();
    let grads = g.backward(&[(loss, 1.0)]).unwrap();
    (
        grads.get(zv).unwrap().clone(),
        grads.get(mv).unwrap().clone(),
    )
}

/// KL(p‖q(z, mu)) with `p` given (fixed), or recomputed from q when `None`.
fn dec_value(z: &Tensor, mu: &Tensor, alpha: f32, p: Option<&Tensor>) -> f32 {
    let mut g = Graph::new(0);
    let (zv, mv): (Var, Var) = (g.input(z.clone()), g.input(mu.clone()));
    let q = g.student_t(zv, mv, alpha).unwrap();
    let p = match p {
        Some(p) => p.clone(),
        None => target_distribution(g.value(q).unwrap()).unwrap(),
    };
    let loss = kl_to_target(&mut g, q, &p).unwrap();
    g.value(loss).unwrap().item().unwrap()
}

#[test]
fn dec_gradient_holds_the_target_constant() {
    let alpha = 1.0;
    let task = Task::new(
        spec("groups", TaskKind::Clustering { clusters: 3 }),
        Loss::Dec(Dec),
    )
    .unwrap();
    let (z, mu) = dec_point();
    let (gz, gmu) = dec_grads(&task, &z, &mu, alpha);
    let mut g = Graph::new(0);
    let (zv, mv) = (g.input(z.clone()), g.input(mu.clone()));
    let q = g.student_t(zv, mv, alpha).unwrap();
    let p0 = target_distribution(g.value(q).unwrap()).unwrap();

    // With P fixed at its value at the point, the gradients agree.
    let fd_z = finite_differences(&z, |zz| dec_value(zz, &mu, alpha, Some(&p0)));
    let fd_mu = finite_differences(&mu, |mm| dec_value(&z, mm, alpha, Some(&p0)));
    assert_close_grads(gz.data(), &fd_z);
    assert_close_grads(gmu.data(), &fd_mu);

    // Letting P follow q gives another derivative: the detaching is real.
    let moving = finite_differences(&z, |zz| dec_value(zz, &mu, alpha, None));
    let gap = gz
        .data()
        .iter()
        .zip(&moving)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(gap > 10.0 * FD_TOL, "largest gap {gap}");
}

#[test]
fn bad_batches_are_errors_naming_the_task() {
    let regression =
        Task::with_default_loss(spec("mpg", TaskKind::Regression { outputs: 1 })).unwrap();
    let classify =
        Task::with_default_loss(spec("digit", TaskKind::Classification { classes: 3 })).unwrap();
    let cluster =
        Task::with_default_loss(spec("groups", TaskKind::Clustering { clusters: 2 })).unwrap();
    let named = |task: &Task, out: Tensor, targets: Targets| -> Error {
        let mut g = Graph::new(0);
        let v = g.param_value(out);
        let e = task.loss(&mut g, v, &targets).unwrap_err();
        match &e {
            Error::InTask { task: name, .. } => assert_eq!(name, task.name()),
            other => panic!("expected an error naming the task, got {other:?}"),
        }
        assert!(e.to_string().contains(task.name()), "{e}");
        e
    };
    // An infinite regression target (a NaN row marks a missing label).
    let e = named(
        &regression,
        tensor(&[1.0, 2.0], 2),
        Targets::Values(tensor(&[0.5, f32::INFINITY], 2)),
    );
    assert!(e.to_string().contains("inf"), "{e}");
    // A NaN head output.
    let e = named(
        &regression,
        tensor(&[f32::NAN, 2.0], 2),
        Targets::Values(tensor(&[0.5, 1.0], 2)),
    );
    assert!(
        e.to_string().contains("head output at index 0 is NaN"),
        "{e}"
    );
    // Three targets for two output rows.
    let e = named(
        &classify,
        tensor(&[0.0; 6], 2),
        Targets::Classes(vec![0, 1, 2]),
    );
    assert!(
        e.to_string().contains("[3, 3]") && e.to_string().contains("[2, 3]"),
        "{e}"
    );
    // A class index beyond the class count.
    named(&classify, tensor(&[0.0; 3], 1), Targets::Classes(vec![3]));
    // Targets of another kind.
    named(
        &classify,
        tensor(&[0.0; 3], 1),
        Targets::Values(tensor(&[1.0], 1)),
    );
    // A clustering output that is not a soft assignment.
    let e = named(
        &cluster,
        tensor(&[0.9, 0.6], 1),
        Targets::Unsupervised { reference: None },
    );
    assert!(e.to_string().contains("row sum"), "{e}");
    // A loss that does not fit the kind.
    let e = Task::new(
        spec("mpg", TaskKind::Regression { outputs: 1 }),
        Loss::Dec(Dec),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("\"mpg\"") && e.to_string().contains("dec"),
        "{e}"
    );
}

#[test]
fn predictions_follow_the_kind() {
    let out = tensor(&[0.1, 0.7, 0.2, 0.5, 0.4, 0.1], 2);
    let classify =
        Task::with_default_loss(spec("c", TaskKind::Classification { classes: 3 })).unwrap();
    assert_eq!(
        classify.predict(&out).unwrap(),
        Prediction::Classes(vec![1, 0])
    );
    let cluster = Task::with_default_loss(spec("k", TaskKind::Clustering { clusters: 3 })).unwrap();
    assert_eq!(
        cluster.predict(&out).unwrap(),
        Prediction::Clusters(vec![1, 0])
    );
    let binary = Task::with_default_loss(spec("b", TaskKind::Binary)).unwrap();
    let probs = binary.predict(&tensor(&[0.0, 2.0, -1.0], 3)).unwrap();
    let Prediction::Probabilities(p) = &probs else {
        panic!("expected probabilities, got {probs:?}");
    };
    // σ(0) = ½, σ(2) = 0.880797, σ(−1) = 0.268941.
    for (a, b) in p.data().iter().zip([0.5, 0.880_797, 0.268_941]) {
        assert!((a - b).abs() < 1e-6);
    }
    assert_eq!(probs.labels(), Some(vec![1, 1, 0]));
    let e = binary.predict(&tensor(&[0.0, 1.0], 1)).unwrap_err();
    assert!(e.to_string().contains("\"b\""), "{e}");
}

/// Rows of `P` are normalised in `f64` and stored as `f32`: a row sums to 1
/// within a few `f32` ulps per entry.
const ROW_SUM_TOL: f64 = 1e-5;

proptest::proptest! {
    #[test]
    fn dec_target_rows_are_distributions_and_the_loss_is_non_negative(
        raw in proptest::collection::vec(0.05f32..1.0, 2 * 3..=8 * 3),
    ) {
        let k = 3;
        let rows = raw.len() / k;
        let mut q = raw[..rows * k].to_vec();
        for row in q.chunks_mut(k) {
            let s: f32 = row.iter().sum();
            row.iter_mut().for_each(|v| *v /= s);
        }
        let q = Tensor::from_vec(q, &[rows, k]).unwrap();
        let p = target_distribution(&q).unwrap();
        for row in p.data().chunks(k) {
            let s: f64 = row.iter().map(|&v| v as f64).sum();
            proptest::prop_assert!((s - 1.0).abs() < ROW_SUM_TOL);
            proptest::prop_assert!(row.iter().all(|&v| v > 0.0 && v <= 1.0));
        }
        let task = Task::with_default_loss(spec("groups", TaskKind::Clustering { clusters: 3 }))
            .unwrap();
        let (value, _) = loss_and_grad(&task, &q, &Targets::Unsupervised { reference: None });
        // KL(P‖Q) ≥ 0 (Gibbs); f32 rounding can leave a tiny negative.
        proptest::prop_assert!(value as f64 >= -VALUE_TOL);
    }
}

#[test]
fn uniform_assignment_is_its_own_target() {
    // q_ij = 1/K: f_j = B/K, so p_ij ∝ (1/K²)/(B/K) is uniform again and KL = 0.
    let q = Tensor::filled(&[4, 2], 0.5);
    assert_eq!(target_distribution(&q).unwrap(), q);
    let task =
        Task::with_default_loss(spec("groups", TaskKind::Clustering { clusters: 2 })).unwrap();
    let (value, _) = loss_and_grad(&task, &q, &Targets::Unsupervised { reference: None });
    assert!((value as f64).abs() < VALUE_TOL, "{value}");
}
