//! The two tasks on Auto MPG: mpg regression (mean squared error on the
//! standardised target) and origin classification (cross-entropy), their
//! losses as candle scalars and their test metrics.

use candle_core::{Tensor, D};

use crate::autompg::{AutoMpg, Split};
use crate::error::Result;
use crate::model::MultiTaskMlp;

/// Output width of each head, in task order: mpg (1), origin (3 logits).
pub const HEAD_OUTPUTS: [usize; 2] = [1, crate::autompg::ORIGINS];
/// Task names, in task order.
pub const NAMES: [&str; 2] = ["mpg", "origin"];

/// The task losses `L_t` of one batch, as candle scalars in task order.
///
/// # Errors
/// A candle error on a shape mismatch.
pub fn losses(outputs: &[Tensor], batch: &Split) -> Result<Vec<Tensor>> {
    let mpg = candle_nn::loss::mse(&outputs[0].squeeze(1)?, &batch.mpg)?;
    let origin = candle_nn::loss::cross_entropy(&outputs[1], &batch.origin)?;
    Ok(vec![mpg, origin])
}

/// The task losses of one batch as plain numbers.
///
/// # Errors
/// A candle error on a shape mismatch.
pub fn loss_values(model: &MultiTaskMlp, batch: &Split) -> Result<Vec<f32>> {
    let outputs = model.heads(&model.representation(&batch.features)?)?;
    losses(&outputs, batch)?
        .iter()
        .map(|l| Ok(l.to_scalar::<f32>()?))
        .collect()
}

/// Test scores: mean absolute error of mpg in miles per gallon, and accuracy of origin.
#[derive(Debug, Clone, Copy)]
pub struct Scores {
    /// Mean absolute error of the predicted mpg.
    pub mpg_mae: f32,
    /// Fraction of cars whose origin is predicted correctly.
    pub origin_accuracy: f32,
}

/// Scores the model on `split`, turning standardised mpg back into miles per gallon.
///
/// # Errors
/// A candle error on a shape mismatch.
pub fn evaluate(model: &MultiTaskMlp, data: &AutoMpg, split: &Split) -> Result<Scores> {
    let outputs = model.heads(&model.representation(&split.features)?)?;
    let mpg_error = (outputs[0].squeeze(1)? - &split.mpg)?.abs()?;
    let mpg_mae = mpg_error.mean_all()?.to_scalar::<f32>()? * data.mpg_std;
    let predicted = outputs[1].argmax(D::Minus1)?;
    let correct = predicted
        .eq(&split.origin)?
        .to_dtype(candle_core::DType::F32)?;
    let origin_accuracy = correct.mean_all()?.to_scalar::<f32>()?;
    Ok(Scores {
        mpg_mae,
        origin_accuracy,
    })
}
