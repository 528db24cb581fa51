//! What a balancer receives each step: the task losses, optional gradient
//! rows, and the position in training.

use nalgebra::{DMatrixView, Dyn};
use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::{Error, Result};

/// Which per-task gradients a balancer needs, so a trainer computes only those.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GradientSource {
    /// Losses only: the trainer back-propagates `Σ_t w_t L_t` once.
    None,
    /// Rows `∇_θ L_t` over all shared parameters (`T` partial backward passes).
    SharedParameters,
    /// Rows `∇_W L_t` over the last shared layer `W` only (GradNorm).
    LastSharedLayer,
    /// Rows `∇_z L_t` over the shared representation `z` (batch × features), one
    /// trunk backward in total.
    Representation,
}

impl GradientSource {
    /// A short human-readable name.
    pub fn as_str(self) -> &'static str {
        match self {
            GradientSource::None => "none",
            GradientSource::SharedParameters => "shared parameters",
            GradientSource::LastSharedLayer => "last shared layer",
            GradientSource::Representation => "shared representation",
        }
    }
}

impl fmt::Display for GradientSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `T × P` matrix of per-task gradient rows, stored row-major in one slice:
/// row `t` (`data[t*P..(t+1)*P]`) is `g_t = ∇ L_t`.
#[derive(Debug, Clone, Copy)]
pub struct GradRows<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
}

impl<'a> GradRows<'a> {
    /// Views `data` as `rows` rows of `cols` values.
    ///
    /// # Errors
    /// [`Error::GradientShape`] if `data.len() != rows * cols` (or the product overflows).
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Result<Self> {
        match rows.checked_mul(cols) {
            Some(n) if n == data.len() => Ok(Self { data, rows, cols }),
            _ => Err(Error::GradientShape {
                rows,
                cols,
                len: data.len(),
            }),
        }
    }

    /// Number of rows `T` (tasks).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns `P` (parameters or representation entries).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `t`, or `None` if `t >= rows`.
    pub fn row(&self, t: usize) -> Option<&'a [f32]> {
        if t < self.rows {
            Some(&self.data[t * self.cols..(t + 1) * self.cols])
        } else {
            None
        }
    }

    /// Iterates over the rows in task order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [f32]> + 'a {
        let (data, cols) = (self.data, self.cols);
        (0..self.rows).map(move |t| &data[t * cols..(t + 1) * cols])
    }

    /// The whole row-major buffer.
    pub fn as_slice(&self) -> &'a [f32] {
        self.data
    }

    /// The Jacobian `J` as a `T × P` nalgebra view (row stride `P`, no copy).
    pub fn as_matrix(&self) -> DMatrixView<'a, f32, Dyn, Dyn> {
        DMatrixView::from_slice_with_strides_generic(
            self.data,
            Dyn(self.rows),
            Dyn(self.cols),
            Dyn(self.cols.max(1)),
            Dyn(1),
        )
    }

    /// `Jᵀ` as a contiguous `P × T` column-major nalgebra view: column `t` is
    /// `g_t`. This is the fast layout for `G = JJᵀ = (Jᵀ)ᵀ Jᵀ` and `d = Jᵀ w`.
    pub fn as_transposed_matrix(&self) -> DMatrixView<'a, f32> {
        DMatrixView::from_slice(self.data, self.cols, self.rows)
    }

    /// Euclidean norm of every row, accumulated in `f64`.
    pub fn row_norms(&self) -> Vec<f64> {
        self.iter()
            .map(|row| {
                row.iter()
                    .map(|&x| f64::from(x) * f64::from(x))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect()
    }
}

/// Everything a balancer may use at one training step.
#[derive(Debug, Clone, Copy)]
pub struct BalanceInput<'a> {
    /// The `T` task losses `L_t` of the current mini-batch.
    pub losses: &'a [f32],
    /// The gradient rows the balancer asked for with [`Balancer::needs`](super::Balancer::needs),
    /// `None` when it asked for [`GradientSource::None`].
    pub grads: Option<GradRows<'a>>,
    /// Global optimisation step, starting at 0.
    pub step: u64,
    /// Epoch, starting at 0.
    pub epoch: u64,
}

impl<'a> BalanceInput<'a> {
    /// An input with losses only, at step 0 of epoch 0.
    pub fn from_losses(losses: &'a [f32]) -> Self {
        Self {
            losses,
            grads: None,
            step: 0,
            epoch: 0,
        }
    }

    /// The same input with gradient rows attached.
    pub fn with_grads(self, grads: GradRows<'a>) -> Self {
        Self {
            grads: Some(grads),
            ..self
        }
    }

    /// The same input at another step and epoch.
    pub fn at(self, step: u64, epoch: u64) -> Self {
        Self {
            step,
            epoch,
            ..self
        }
    }

    /// Checks the losses (count and finiteness) and, when present, the number
    /// of gradient rows against `num_tasks`.
    ///
    /// # Errors
    /// [`Error::CountMismatch`] naming both counts, or [`Error::NonFiniteLoss`]
    /// naming the first bad task.
    pub fn validate(&self, num_tasks: usize) -> Result<()> {
        check_losses(self.losses, num_tasks)?;
        if let Some(grads) = &self.grads {
            if grads.rows() != num_tasks {
                return Err(Error::CountMismatch {
                    what: "gradient rows",
                    expected: num_tasks,
                    got: grads.rows(),
                });
            }
        }
        Ok(())
    }

    /// The gradient rows, or [`Error::MissingGradients`] naming `balancer` and what it needs.
    pub fn require_grads(
        &self,
        balancer: &'static str,
        needs: GradientSource,
    ) -> Result<GradRows<'a>> {
        self.grads.ok_or(Error::MissingGradients {
            balancer,
            needs: needs.as_str(),
        })
    }
}

/// Checks that there are `num_tasks` losses and that each is finite.
///
/// # Errors
/// [`Error::CountMismatch`] naming both counts, or [`Error::NonFiniteLoss`]
/// naming the first bad task.
pub fn check_losses(losses: &[f32], num_tasks: usize) -> Result<()> {
    if losses.len() != num_tasks {
        return Err(Error::CountMismatch {
            what: "losses",
            expected: num_tasks,
            got: losses.len(),
        });
    }
    match losses.iter().position(|l| !l.is_finite()) {
        Some(task) => Err(Error::NonFiniteLoss {
            task,
            value: losses[task],
        }),
        None => Ok(()),
    }
}
