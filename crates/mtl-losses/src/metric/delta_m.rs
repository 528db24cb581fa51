//! The multi-task score Δm%: the mean relative change of every task's metric
//! against a single-task baseline.

use super::Metric;
use crate::error::{Error, Result};

/// One task's value of one metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    /// Name of the task.
    pub task: String,
    /// The metric.
    pub metric: Metric,
    /// Its value.
    pub value: f64,
}

impl Score {
    /// A score of `task` on `metric`.
    pub fn new(task: impl Into<String>, metric: Metric, value: f64) -> Score {
        Score {
            task: task.into(),
            metric,
            value,
        }
    }
}

/// The multi-task performance Δm%, in percent (Maninis, Radosavovic &
/// Kokkinos, 2019; as used by Liu et al., 2021, "Conflict-averse gradient
/// descent"):
///
/// `Δm = (1/T) Σ_t (−1)^{l_t} · (M_t − B_t) / B_t · 100`,
///
/// with `M_t` the multi-task model's value, `B_t` the baseline's (usually a
/// single-task model), and `l_t = 1` when lower is better for the metric
/// ([`Metric::higher_is_better`]), 0 otherwise. Positive is better than the
/// baselines.
///
/// `scores` and `baselines` hold one entry per task and metric, matched by
/// task name and metric, in any order; `T` counts the entries, so a task
/// scored on two metrics counts twice. Errors: the two lists differ in length,
/// an entry has no baseline, a value is not finite, or a baseline is zero
/// (the relative change is undefined).
///
/// The relative change assumes a positive baseline, which every metric here
/// has for a model better than chance; R² and ARI can be negative, and a
/// negative baseline flips the sign of its term.
pub fn delta_m(scores: &[Score], baselines: &[Score]) -> Result<f64> {
    if scores.len() != baselines.len() {
        return Err(Error::CountMismatch {
            what: "baseline scores (expected one per score)",
            expected: scores.len(),
            got: baselines.len(),
        });
    }
    if scores.is_empty() {
        return Err(Error::Metric {
            metric: "delta_m",
            reason: "there are no scores".into(),
        });
    }
    let mut total = 0.0;
    for s in scores {
        let bad = |reason: String| Error::DeltaM {
            task: s.task.clone(),
            reason,
        };
        let base = baselines
            .iter()
            .find(|b| b.task == s.task && b.metric == s.metric)
            .ok_or_else(|| bad(format!("no baseline of {}", s.metric)))?;
        if !s.value.is_finite() || !base.value.is_finite() {
            return Err(bad(format!(
                "{} is {} against a baseline of {}; both must be finite",
                s.metric, s.value, base.value
            )));
        }
        if base.value == 0.0 {
            return Err(bad(format!(
                "the baseline of {} is 0, so the relative change is undefined",
                s.metric
            )));
        }
        let sign = if s.metric.higher_is_better() {
            1.0
        } else {
            -1.0
        };
        total += sign * (s.value - base.value) / base.value;
    }
    Ok(100.0 * total / scores.len() as f64)
}
