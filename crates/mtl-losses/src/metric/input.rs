//! Checks shared by every metric on its inputs: equal lengths, at least one
//! example, finite values.

use crate::error::{Error, Result};

/// Checks that predictions and targets have the same length, and at least one
/// entry.
pub(crate) fn check_pair(metric: &'static str, predictions: usize, targets: usize) -> Result<()> {
    if predictions != targets {
        return Err(Error::CountMismatch {
            what: "predictions (expected one per target)",
            expected: targets,
            got: predictions,
        });
    }
    if targets == 0 {
        return Err(Error::Metric {
            metric,
            reason: "there are no examples".into(),
        });
    }
    Ok(())
}

/// Checks that every value is finite, naming the first that is not.
pub(crate) fn check_finite(what: &'static str, values: &[f32]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::BadValue {
            what,
            index,
            value: values[index] as f64,
            expected: "a finite number",
        }),
        None => Ok(()),
    }
}
