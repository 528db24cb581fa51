//! Regression metrics: MAE, RMSE and R².

use super::input::{check_finite, check_pair};
use crate::error::{Error, Result};

fn check(metric: &'static str, predicted: &[f32], target: &[f32]) -> Result<()> {
    check_pair(metric, predicted.len(), target.len())?;
    check_finite("predictions", predicted)?;
    check_finite("targets", target)
}

/// Mean absolute error `(1/n) Σ_i |ŷ_i − y_i|` over every value.
pub fn mae(predicted: &[f32], target: &[f32]) -> Result<f64> {
    check("mae", predicted, target)?;
    let total: f64 = predicted
        .iter()
        .zip(target)
        .map(|(&p, &t)| (p as f64 - t as f64).abs())
        .sum();
    Ok(total / target.len() as f64)
}

/// Root mean squared error `√((1/n) Σ_i (ŷ_i − y_i)²)` over every value.
pub fn rmse(predicted: &[f32], target: &[f32]) -> Result<f64> {
    check("rmse", predicted, target)?;
    let total: f64 = predicted
        .iter()
        .zip(target)
        .map(|(&p, &t)| (p as f64 - t as f64).powi(2))
        .sum();
    Ok((total / target.len() as f64).sqrt())
}

/// Coefficient of determination, per output column and averaged uniformly
/// over the `outputs` columns (scikit-learn's `r2_score` default), values laid
/// out row-major `[examples, outputs]`:
///
/// `R²_o = 1 − Σ_i (ŷ_io − y_io)² / Σ_i (y_io − ȳ_o)²`.
///
/// 1 for a perfect predictor, 0 for the constant prediction `ȳ_o`, negative
/// for worse. Undefined (an error) for a column of constant targets.
pub fn r2(predicted: &[f32], target: &[f32], outputs: usize) -> Result<f64> {
    check("r2", predicted, target)?;
    if outputs == 0 || !target.len().is_multiple_of(outputs) {
        return Err(Error::CountMismatch {
            what: "values (expected a multiple of the output count)",
            expected: outputs,
            got: target.len(),
        });
    }
    let rows = target.len() / outputs;
    let mut total = 0.0;
    for o in 0..outputs {
        let column = |v: &[f32]| -> Vec<f64> {
            v.iter()
                .skip(o)
                .step_by(outputs)
                .map(|&x| x as f64)
                .collect()
        };
        let (p, t) = (column(predicted), column(target));
        let mean = t.iter().sum::<f64>() / rows as f64;
        let ss_tot: f64 = t.iter().map(|y| (y - mean).powi(2)).sum();
        let ss_res: f64 = p.iter().zip(&t).map(|(a, b)| (a - b).powi(2)).sum();
        if ss_tot == 0.0 {
            return Err(Error::Metric {
                metric: "r2",
                reason: format!("the targets of output {o} are constant"),
            });
        }
        total += 1.0 - ss_res / ss_tot;
    }
    Ok(total / outputs as f64)
}
