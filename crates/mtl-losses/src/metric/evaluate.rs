//! Scores a task's head outputs over a split.

use mtl_core::{Targets, TaskKind, Tensor};

use super::{
    accuracy, ari, label_macro_f1, macro_f1, macro_roc_auc, mae, nmi, r2, rmse, roc_auc, Metric,
};
use crate::error::{Error, Result};
use crate::task::{in_task, Prediction, Task};

/// One metric's value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricValue {
    /// The metric.
    pub metric: Metric,
    /// Its value over the split.
    pub value: f64,
    /// The number of rows scored: the split's rows labelled for the task.
    pub rows: usize,
}

/// Scores `task`'s head `outputs` `[n, width]` (all batches of a split, in
/// order) against its `targets` on each of `metrics`
/// ([`Metric::defaults`] gives a kind's usual list), in the order asked.
///
/// Head outputs are read as [`Task::predict`] reads them: argmax for classes
/// and clusters, a yes/no decision at `σ(z) ≥ ½` (`z ≥ 0`) for binary and
/// multilabel. ROC-AUC ranks the logits themselves, which orders examples as
/// the probabilities do without the ties that `σ` rounding to 1 in `f32` would
/// create. Clustering is scored against the reference labels of the targets;
/// without reference labels there is nothing to score against and the result
/// is empty.
///
/// Only rows labelled for the task are scored ([`Targets::labelled_rows`]);
/// each value says how many ([`MetricValue::rows`]). A split with no labelled
/// row for the task gives an empty result.
///
/// Errors, each naming the task: targets that do not fit the kind, outputs of
/// the wrong shape or not finite, a metric that does not apply to the kind, or
/// a metric undefined on the split (ROC-AUC with one class, R² of constant
/// targets).
pub fn evaluate(
    task: &Task,
    outputs: &Tensor,
    targets: &Targets,
    metrics: &[Metric],
) -> Result<Vec<MetricValue>> {
    score(task, outputs, targets, metrics).map_err(|e| in_task(task.name(), e))
}

fn score(
    task: &Task,
    outputs: &Tensor,
    targets: &Targets,
    metrics: &[Metric],
) -> Result<Vec<MetricValue>> {
    targets.check(task.name(), task.kind())?;
    if let Some(&m) = metrics.iter().find(|m| !m.applies_to(task.kind())) {
        return Err(Error::TaskOption {
            option: "metric",
            value: m.name().into(),
            reason: format!("does not apply to a {} task", task.kind().name()),
        });
    }
    let rows = targets
        .len()
        .unwrap_or(outputs.shape().first().copied().unwrap_or(0));
    if let Targets::Unsupervised { reference: None } = targets {
        return Ok(Vec::new());
    }
    task.check_output(outputs, rows)?;
    let labelled = targets.labelled_rows();
    if labelled.is_empty() {
        return Ok(Vec::new());
    }
    let kept;
    let (outputs, targets) = if labelled.len() == rows {
        (outputs, targets)
    } else {
        kept = (outputs.gather_rows(&labelled)?, targets.gather(&labelled)?);
        (&kept.0, &kept.1)
    };
    let prediction = Prediction::from_output(task.kind(), outputs)?;
    metrics
        .iter()
        .map(|&metric| {
            let value = match (&prediction, targets) {
                (Prediction::Classes(p), Targets::Classes(t)) => {
                    let classes = task.output_width();
                    match metric {
                        Metric::Accuracy => accuracy(p, t)?,
                        _ => macro_f1(p, t, classes)?,
                    }
                }
                (Prediction::Probabilities(prob), Targets::Values(t)) => {
                    let truth: Vec<bool> = t.data().iter().map(|&v| v == 1.0).collect();
                    let decided: Vec<bool> = prob.data().iter().map(|&v| v >= 0.5).collect();
                    let labels = task.output_width();
                    match metric {
                        Metric::Accuracy => {
                            let as_index = |v: &[bool]| -> Vec<usize> {
                                v.iter().map(|&b| usize::from(b)).collect()
                            };
                            accuracy(&as_index(&decided), &as_index(&truth))?
                        }
                        Metric::MacroF1 => label_macro_f1(&decided, &truth, labels)?,
                        _ if matches!(task.kind(), TaskKind::Binary) => {
                            roc_auc(outputs.data(), &truth)?
                        }
                        _ => macro_roc_auc(outputs.data(), &truth, labels)?,
                    }
                }
                (Prediction::Values(p), Targets::Values(t)) => match metric {
                    Metric::Mae => mae(p.data(), t.data())?,
                    Metric::Rmse => rmse(p.data(), t.data())?,
                    _ => r2(p.data(), t.data(), task.output_width())?,
                },
                (
                    Prediction::Clusters(p),
                    Targets::Unsupervised {
                        reference: Some(reference),
                    },
                ) => match metric {
                    Metric::Nmi => nmi(reference, p)?,
                    _ => ari(reference, p)?,
                },
                _ => {
                    return Err(Error::Metric {
                        metric: metric.name(),
                        reason: format!("targets do not fit a {} task", task.kind().name()),
                    })
                }
            };
            Ok(MetricValue {
                metric,
                value,
                rows: labelled.len(),
            })
        })
        .collect()
}
