//! Accuracy: the fraction of labels predicted exactly.

use super::input::check_pair;
use crate::error::Result;

/// `accuracy = (1/n) Σ_i [ŷ_i = y_i]`.
///
/// For multilabel tasks the labels are passed flattened, which gives the
/// fraction of correct yes/no decisions (`1 −` Hamming loss).
pub fn accuracy(predicted: &[usize], target: &[usize]) -> Result<f64> {
    check_pair("accuracy", predicted.len(), target.len())?;
    let correct = predicted.iter().zip(target).filter(|(p, t)| p == t).count();
    Ok(correct as f64 / target.len() as f64)
}
