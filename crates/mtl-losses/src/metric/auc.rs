//! Area under the ROC curve, with ties.

use super::input::{check_finite, check_pair};
use crate::error::{Error, Result};

/// ROC-AUC of `scores` (higher means more likely positive) against yes/no
/// labels, as the Mann–Whitney statistic (Hanley & McNeil, 1982):
///
/// `AUC = (R₊ − n₊(n₊+1)/2) / (n₊·n₋)`,
///
/// where `R₊` is the sum of the ranks of the positives among all scores, tied
/// scores sharing their average rank. This is the probability that a random
/// positive scores above a random negative, a tie counting one half; it equals
/// the trapezoidal area under the ROC curve. Undefined (an error) without both
/// a positive and a negative.
pub fn roc_auc(scores: &[f32], positive: &[bool]) -> Result<f64> {
    check_pair("roc_auc", scores.len(), positive.len())?;
    check_finite("scores", scores)?;
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return Err(Error::Metric {
            metric: "roc_auc",
            reason: format!("needs both classes, got {n_pos} positives and {n_neg} negatives"),
        });
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0f64;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        // Ranks start+1 ..= end share their mean.
        let mean_rank = (start + 1 + end) as f64 / 2.0;
        let tied_positives = order[start..end].iter().filter(|&&i| positive[i]).count();
        rank_sum += mean_rank * tied_positives as f64;
        start = end;
    }
    let (p, n) = (n_pos as f64, n_neg as f64);
    Ok((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Macro ROC-AUC over `labels` columns laid out row-major `[examples, labels]`:
/// the mean of [`roc_auc`] over the columns that have both a positive and a
/// negative; an error when none has.
pub fn macro_roc_auc(scores: &[f32], positive: &[bool], labels: usize) -> Result<f64> {
    check_pair("roc_auc", scores.len(), positive.len())?;
    if labels == 0 || !scores.len().is_multiple_of(labels) {
        return Err(Error::CountMismatch {
            what: "scores (expected a multiple of the label count)",
            expected: labels,
            got: scores.len(),
        });
    }
    let mut total = 0.0;
    let mut used = 0usize;
    for label in 0..labels {
        let col_scores: Vec<f32> = scores.iter().skip(label).step_by(labels).copied().collect();
        let col_pos: Vec<bool> = positive
            .iter()
            .skip(label)
            .step_by(labels)
            .copied()
            .collect();
        let pos = col_pos.iter().filter(|&&p| p).count();
        if pos == 0 || pos == col_pos.len() {
            continue;
        }
        total += roc_auc(&col_scores, &col_pos)?;
        used += 1;
    }
    if used == 0 {
        return Err(Error::Metric {
            metric: "roc_auc",
            reason: "no label has both a positive and a negative example".into(),
        });
    }
    Ok(total / used as f64)
}
