//! What a balancer returns each step.

use serde::{Deserialize, Serialize};

use super::GradRows;
use crate::error::{Error, Result};

/// The result of one balancing step. Weights are on the **mean scale** (see the
/// [module docs](super)): for inputs where a method reduces to equal weighting
/// they are `1/T` each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balanced {
    /// Loss weights `w`: the trainer back-propagates `Σ_t w_t L_t`, so the
    /// shared parameters receive `Σ_t w_t g_t` and head `t` receives
    /// `w_t ∇_{θ_t} L_t`.
    Weights(Vec<f32>),
    /// A combined descent direction `d` (to be subtracted, like a gradient) for
    /// the gradient rows the balancer asked for, with the per-task weights it
    /// implies (`d = Σ_t w_t g_t` for weighted aggregators). The trainer writes
    /// `d` into the shared gradient (or back-propagates it from the shared
    /// representation) and head `t` receives `w_t ∇_{θ_t} L_t`.
    Direction {
        /// The combined direction, one entry per gradient column.
        direction: Vec<f32>,
        /// The task weights used for the heads and for logging.
        weights: Vec<f32>,
    },
}

impl Balanced {
    /// The task weights (both variants carry them).
    pub fn weights(&self) -> &[f32] {
        match self {
            Balanced::Weights(w) => w,
            Balanced::Direction { weights, .. } => weights,
        }
    }

    /// The combined direction, if the balancer produced one.
    pub fn direction(&self) -> Option<&[f32]> {
        match self {
            Balanced::Weights(_) => None,
            Balanced::Direction { direction, .. } => Some(direction),
        }
    }

    /// The shared direction this result implies for `grads`: the returned
    /// direction itself, or `d = Jᵀw = Σ_t w_t g_t` for plain weights
    /// (accumulated in `f64`).
    ///
    /// # Errors
    /// [`Error::CountMismatch`] if the rows or columns disagree with the result.
    pub fn shared_direction(&self, grads: &GradRows<'_>) -> Result<Vec<f32>> {
        self.clone().into_shared_direction(grads)
    }

    /// [`Balanced::shared_direction`], handing over a returned direction
    /// instead of copying it.
    ///
    /// # Errors
    /// As [`Balanced::shared_direction`].
    pub fn into_shared_direction(self, grads: &GradRows<'_>) -> Result<Vec<f32>> {
        match self {
            Balanced::Direction { direction, .. } => {
                if direction.len() != grads.cols() {
                    return Err(Error::CountMismatch {
                        what: "direction entries vs. gradient columns",
                        expected: grads.cols(),
                        got: direction.len(),
                    });
                }
                Ok(direction)
            }
            Balanced::Weights(w) => {
                if w.len() != grads.rows() {
                    return Err(Error::CountMismatch {
                        what: "weights vs. gradient rows",
                        expected: grads.rows(),
                        got: w.len(),
                    });
                }
                let mut acc = vec![0.0f64; grads.cols()];
                for (row, &wt) in grads.iter().zip(&w) {
                    let wt = f64::from(wt);
                    for (a, &g) in acc.iter_mut().zip(row) {
                        *a += wt * f64::from(g);
                    }
                }
                Ok(acc.into_iter().map(|a| a as f32).collect())
            }
        }
    }
}
