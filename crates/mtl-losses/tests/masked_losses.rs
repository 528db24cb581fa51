//! Rows without a label for a task: the loss is the mean over the labelled
//! rows, its gradient matches finite differences and is zero on unlabelled
//! rows, a batch without any label gives a zero loss and a zero gradient, and
//! metrics score the labelled rows only.

use mtl_core::{Graph, Targets, TaskKind, TaskSpec, Tensor, MISSING_CLASS};
use mtl_losses::loss::{CrossEntropy, Loss, RegressionLoss};
use mtl_losses::metric::{evaluate, Metric};
use mtl_losses::task::Task;

/// Step of the central differences: the losses are smooth at the test points
/// (Huber's kink lies ≥ 0.2 away), so the truncation error is about 1e-4.
const FD_STEP: f32 = 1e-2;
/// Agreement of analytic and finite-difference gradients, relative to
/// max(1, |g|): ten times the finite-difference error.
const FD_TOL: f32 = 2e-3;

const NAN: f32 = f32::NAN;

fn task(name: &str, kind: TaskKind, loss: Option<Loss>) -> Task {
    let spec = TaskSpec {
        name: name.into(),
        kind,
    };
    match loss {
        Some(l) => Task::new(spec, l).unwrap(),
        None => Task::with_default_loss(spec).unwrap(),
    }
}

fn tensor(data: &[f32], rows: usize) -> Tensor {
    Tensor::from_vec(data.to_vec(), &[rows, data.len() / rows]).unwrap()
}

fn loss_and_grad(task: &Task, x: &Tensor, targets: &Targets) -> (f32, Tensor) {
    let mut g = Graph::new(0);
    let v = g.param_value(x.clone());
    let loss = task.loss(&mut g, v, targets).unwrap();
    let grads = g.backward(&[(loss, 1.0)]).unwrap();
    let grad = grads
        .get(v)
        .cloned()
        .unwrap_or_else(|| Tensor::zeros(x.shape()));
    (g.value(loss).unwrap().item().unwrap(), grad)
}

/// Checks, at `x`: the masked loss equals the loss of the labelled rows
/// alone; its gradient matches central differences; the gradient of every
/// unlabelled row is exactly zero.
fn check_masked(task: &Task, x: &Tensor, targets: &Targets) {
    let labelled = targets.labelled_rows();
    let (value, grad) = loss_and_grad(task, x, targets);
    let (alone, _) = loss_and_grad(
        task,
        &x.gather_rows(&labelled).unwrap(),
        &targets.gather(&labelled).unwrap(),
    );
    assert_eq!(value, alone, "mean over the labelled rows");
    for i in 0..x.len() {
        let (mut up, mut down) = (x.clone(), x.clone());
        up.data_mut()[i] += FD_STEP;
        down.data_mut()[i] -= FD_STEP;
        let numeric = (loss_and_grad(task, &up, targets).0 - loss_and_grad(task, &down, targets).0)
            / (2.0 * FD_STEP);
        let analytic = grad.data()[i];
        assert!(
            (analytic - numeric).abs() <= FD_TOL * analytic.abs().max(1.0),
            "coordinate {i}: analytic {analytic}, finite difference {numeric}"
        );
    }
    let width = x.shape()[1];
    for row in (0..x.shape()[0]).filter(|r| !labelled.contains(r)) {
        assert!(grad.data()[row * width..(row + 1) * width]
            .iter()
            .all(|&g| g == 0.0));
    }
}

#[test]
fn cross_entropy_with_class_weights_averages_over_labelled_rows() {
    let ce = Loss::CrossEntropy(CrossEntropy {
        label_smoothing: 0.1,
        class_weights: Some(vec![1.0, 2.0, 0.5]),
    });
    let t = task("digit", TaskKind::Classification { classes: 3 }, Some(ce));
    let x = tensor(
        &[
            0.2, -1.0, 0.7, 1.5, 0.3, -0.4, -0.6, 0.9, 0.1, 0.0, 0.5, -1.2,
        ],
        4,
    );
    let y = Targets::Classes(vec![2, MISSING_CLASS, 1, MISSING_CLASS]);
    check_masked(&t, &x, &y);
    assert_eq!(t.labelled_count(&y, 4), 2);
}

#[test]
fn bce_and_regression_skip_rows_of_nan() {
    let m = task("tags", TaskKind::Multilabel { labels: 2 }, None);
    let x = tensor(&[0.3, -0.8, 1.1, 0.4, -0.2, 0.9], 3);
    let y = Targets::Values(tensor(&[1.0, 0.0, NAN, NAN, 0.0, 1.0], 3));
    check_masked(&m, &x, &y);
    for loss in [
        RegressionLoss::Mse,
        RegressionLoss::L1,
        RegressionLoss::Huber { delta: 1.0 },
    ] {
        let r = task(
            "y",
            TaskKind::Regression { outputs: 1 },
            Some(Loss::Regression(loss)),
        );
        let x = tensor(&[0.5, 3.0, -1.0, 2.2], 4);
        let y = Targets::Values(tensor(&[NAN, 1.0, 0.0, NAN], 4));
        check_masked(&r, &x, &y);
    }
}

#[test]
fn a_batch_without_labels_gives_zero_loss_and_zero_gradient() {
    let t = task("digit", TaskKind::Classification { classes: 3 }, None);
    let x = tensor(&[0.2, -1.0, 0.7, 1.5, 0.3, -0.4], 2);
    let y = Targets::Classes(vec![MISSING_CLASS; 2]);
    let (value, grad) = loss_and_grad(&t, &x, &y);
    assert_eq!(value, 0.0);
    assert!(grad.data().iter().all(|&g| g == 0.0));
    assert_eq!(t.labelled_count(&y, 2), 0);
    let r = task("y", TaskKind::Regression { outputs: 2 }, None);
    let y = Targets::Values(tensor(&[NAN; 6], 3));
    let (value, grad) = loss_and_grad(&r, &tensor(&[1.0; 6], 3), &y);
    assert_eq!(value, 0.0);
    assert!(grad.data().iter().all(|&g| g == 0.0));
}

#[test]
fn metrics_score_and_count_the_labelled_rows_only() {
    let t = task("digit", TaskKind::Classification { classes: 3 }, None);
    // Argmax per row: 2, 0, 1, 0. Labelled rows 0, 1, 3 with truths 2, 1, 0.
    let x = tensor(
        &[0.0, 0.1, 0.9, 0.8, 0.1, 0.0, 0.1, 0.9, 0.0, 0.7, 0.2, 0.1],
        4,
    );
    let y = Targets::Classes(vec![2, 1, MISSING_CLASS, 0]);
    let got = evaluate(&t, &x, &y, &[Metric::Accuracy]).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value, 2.0 / 3.0);
    assert_eq!(got[0].rows, 3);
    let none = Targets::Classes(vec![MISSING_CLASS; 4]);
    assert!(evaluate(&t, &x, &none, &[Metric::Accuracy])
        .unwrap()
        .is_empty());
    let r = task("y", TaskKind::Regression { outputs: 1 }, None);
    let got = evaluate(
        &r,
        &tensor(&[1.0, 5.0, 2.0], 3),
        &Targets::Values(tensor(&[2.0, NAN, 2.0], 3)),
        &[Metric::Mae],
    )
    .unwrap();
    assert_eq!((got[0].value, got[0].rows), (0.5, 2));
}
