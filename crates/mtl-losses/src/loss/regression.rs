//! Regression losses: MSE, L1 and Huber.

use mtl_core::{Graph, Tensor, Var};

use crate::error::{Error, Result};

/// The loss of a regression head, averaged over every example and output, with
/// `d = prediction − target`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum RegressionLoss {
    /// Mean squared error, `mean(d²)` (the default).
    #[default]
    Mse,
    /// Mean absolute error, `mean(|d|)`: robust to outliers, with a constant
    /// gradient `sign(d)`.
    L1,
    /// Huber loss (Huber, 1964), PyTorch's `HuberLoss`: `½d²` for `|d| < δ`,
    /// `δ(|d| − ½δ)` beyond; quadratic near the target, linear for outliers.
    Huber {
        /// The threshold `δ > 0` between the two regimes (in target units).
        delta: f32,
    },
}

impl RegressionLoss {
    /// The name as written in configurations: `mse`, `l1` or `huber`.
    pub fn name(&self) -> &'static str {
        match self {
            RegressionLoss::Mse => "mse",
            RegressionLoss::L1 => "l1",
            RegressionLoss::Huber { .. } => "huber",
        }
    }

    /// Checks that Huber's `δ` is finite and positive.
    pub fn validate(&self) -> Result<()> {
        match *self {
            RegressionLoss::Huber { delta } if !(delta.is_finite() && delta > 0.0) => {
                Err(Error::TaskOption {
                    option: "delta",
                    value: delta.to_string(),
                    reason: "the Huber threshold must be finite and positive".into(),
                })
            }
            _ => Ok(()),
        }
    }

    /// The loss of `pred` `[B, W]` against `targets` `[B, W]`.
    pub fn apply(&self, g: &mut Graph, pred: Var, targets: &Tensor) -> Result<Var> {
        Ok(match *self {
            RegressionLoss::Mse => g.mse(pred, targets)?,
            RegressionLoss::L1 => g.l1(pred, targets)?,
            RegressionLoss::Huber { delta } => g.huber(pred, targets, delta)?,
        })
    }
}
