//! Macro-averaged F1 score.

use super::input::check_pair;
use crate::error::{Error, Result};

/// `F1 = 2·TP / (2·TP + FP + FN)`, the harmonic mean of precision and recall
/// (van Rijsbergen, 1979), from the counts of one class.
fn f1(tp: usize, fp: usize, fn_: usize) -> f64 {
    2.0 * tp as f64 / (2 * tp + fp + fn_) as f64
}

/// Macro-F1 of single-label predictions over `classes` classes: the unweighted
/// mean of the per-class F1, `(1/|C|) Σ_{c∈C} 2TP_c / (2TP_c + FP_c + FN_c)`.
///
/// `C` holds the classes that occur in the targets or the predictions, like
/// scikit-learn's `f1_score(average="macro")` without an explicit label list;
/// a class absent from both has no defined F1 and is left out.
pub fn macro_f1(predicted: &[usize], target: &[usize], classes: usize) -> Result<f64> {
    check_pair("macro_f1", predicted.len(), target.len())?;
    for (what, labels) in [("predicted class", predicted), ("target class", target)] {
        if let Some(index) = labels.iter().position(|&c| c >= classes) {
            return Err(Error::BadValue {
                what,
                index,
                value: labels[index] as f64,
                expected: "a class index below the number of classes",
            });
        }
    }
    let mut tp = vec![0usize; classes];
    let mut fp = vec![0usize; classes];
    let mut fn_ = vec![0usize; classes];
    for (&p, &t) in predicted.iter().zip(target) {
        if p == t {
            tp[t] += 1;
        } else {
            fp[p] += 1;
            fn_[t] += 1;
        }
    }
    let scores: Vec<f64> = (0..classes)
        .filter(|&c| tp[c] + fp[c] + fn_[c] > 0)
        .map(|c| f1(tp[c], fp[c], fn_[c]))
        .collect();
    Ok(scores.iter().sum::<f64>() / scores.len() as f64)
}

/// Macro-F1 of yes/no labels (binary and multilabel tasks): the mean over the
/// `labels` columns of the F1 of the positive class, from 0/1 decisions laid
/// out row-major `[examples, labels]`. A binary task (one column) gets the F1
/// of its positive class.
///
/// A column with no positive in the targets or the predictions has no defined
/// F1 and is left out; an error when that leaves none.
pub fn label_macro_f1(predicted: &[bool], target: &[bool], labels: usize) -> Result<f64> {
    check_pair("macro_f1", predicted.len(), target.len())?;
    if labels == 0 || !target.len().is_multiple_of(labels) {
        return Err(Error::CountMismatch {
            what: "decisions (expected a multiple of the label count)",
            expected: labels,
            got: target.len(),
        });
    }
    let mut counts = vec![(0usize, 0usize, 0usize); labels];
    for (i, (&p, &t)) in predicted.iter().zip(target).enumerate() {
        let (tp, fp, fn_) = &mut counts[i % labels];
        match (p, t) {
            (true, true) => *tp += 1,
            (true, false) => *fp += 1,
            (false, true) => *fn_ += 1,
            (false, false) => {}
        }
    }
    let scores: Vec<f64> = counts
        .iter()
        .filter(|(tp, fp, fn_)| tp + fp + fn_ > 0)
        .map(|&(tp, fp, fn_)| f1(tp, fp, fn_))
        .collect();
    if scores.is_empty() {
        return Err(Error::Metric {
            metric: "macro_f1",
            reason: "no label has a positive in the targets or the predictions".into(),
        });
    }
    Ok(scores.iter().sum::<f64>() / scores.len() as f64)
}
