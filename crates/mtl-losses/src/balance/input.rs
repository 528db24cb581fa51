//! What a balancer receives each step: the task losses, optional gradient
//! rows, and the position in training.

use nalgebra::{DMatrix, DMatrixView, Dyn};
use rayon::prelude::*;
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

    /// Euclidean norm of every row, accumulated in `f64`. Rows are processed
    /// in parallel (one row per rayon task) when the matrix has at least
    /// [`PARALLEL_NORM_MIN_ENTRIES`] entries; each row is summed the same way
    /// either way, so the result does not depend on the thread count.
    pub fn row_norms(&self) -> Vec<f64> {
        if self.data.len() >= PARALLEL_NORM_MIN_ENTRIES && self.rows > 1 {
            self.data
                .par_chunks(self.cols.max(1))
                .map(|row| squared_norm(row).sqrt())
                .collect()
        } else {
            self.iter().map(|row| squared_norm(row).sqrt()).collect()
        }
    }
}

/// Size (`T·P` entries) from which [`GradRows::row_norms`] runs rows in
/// parallel. Measured on a 2-core machine with the GradNorm step of
/// `benches/benches/balancers_weighting.rs`: at 2·10⁴ entries the parallel
/// version was slower (13.1 µs vs 9.8 µs), at 8·10⁴ already faster
/// (29 µs vs 54 µs), and about 1.5–2× faster from 10⁶ entries on.
pub const PARALLEL_NORM_MIN_ENTRIES: usize = 50_000;

/// Lanes of independent `f64` partial sums in [`squared_norm`]: eight doubles
/// fill one AVX-512 register, and independent lanes let the compiler
/// vectorise without reassociating a single running sum.
const NORM_LANES: usize = 8;

/// `Σ x_i²` in `f64`, summed in [`NORM_LANES`] fixed lanes (a fixed order, so
/// the result is deterministic) and then across lanes.
fn squared_norm(row: &[f32]) -> f64 {
    let mut lanes = [0.0f64; NORM_LANES];
    let chunks = row.chunks_exact(NORM_LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (acc, &x) in lanes.iter_mut().zip(chunk) {
            let x = f64::from(x);
            *acc += x * x;
        }
    }
    for (acc, &x) in lanes.iter_mut().zip(tail) {
        let x = f64::from(x);
        *acc += x * x;
    }
    lanes.iter().sum()
}

/// One process's share of the gradient columns in data-parallel training.
///
/// Each process owns a contiguous slice of the `P` gradient columns; the rows
/// it passes in [`BalanceInput::grads`] are restricted to that slice. The
/// `T × T` Gram matrix over **all** columns is the all-reduced sum of the
/// per-slice Grams ([`gram_of_columns`](super::gram::gram_of_columns) of each
/// slice), computed by the caller in `f64`. A balancer that
/// [supports column shards](super::Balancer::supports_column_shards) returns
/// the same weights on every slice and the direction for its slice only, so
/// concatenating the slices' directions gives the unsharded direction.
#[derive(Debug, Clone, Copy)]
pub struct ColumnShard<'a> {
    /// The Gram matrix `G = J Jᵀ` over all `total_cols` columns (`T × T`).
    pub gram: &'a DMatrix<f64>,
    /// Global index of the slice's first column.
    pub offset: usize,
    /// The total number of columns `P` over all slices.
    pub total_cols: usize,
}

impl ColumnShard<'_> {
    /// Checks the shard against `num_tasks` tasks and a slice of `cols` columns.
    ///
    /// # Errors
    /// [`Error::CountMismatch`] for a Gram that is not `T × T` or a slice that
    /// does not fit in `total_cols`; [`Error::NonFiniteGradient`] for a
    /// non-finite diagonal.
    pub fn validate(&self, num_tasks: usize, cols: usize) -> Result<()> {
        if self.gram.nrows() != num_tasks || self.gram.ncols() != num_tasks {
            return Err(Error::CountMismatch {
                what: "shard Gram rows and columns vs. tasks",
                expected: num_tasks,
                got: self.gram.nrows().max(self.gram.ncols()),
            });
        }
        match self.offset.checked_add(cols) {
            Some(end) if end <= self.total_cols => {}
            _ => {
                return Err(Error::CountMismatch {
                    what: "shard end (offset + columns) vs. total columns",
                    expected: self.total_cols,
                    got: self.offset.saturating_add(cols),
                })
            }
        }
        super::gram::check_diagonal(self.gram)
    }
}

/// The validation look-ahead a balancer asked for with
/// [`Balancer::lookahead_weights`](super::Balancer::lookahead_weights)
/// (Auto-Lambda).
///
/// With `w` the weights the balancer returned from `lookahead_weights` and
/// `g_t` the current training rows ([`BalanceInput::grads`]), the trainer
/// forms the look-ahead parameters `θ' = θ − lr · Σ_t w_t g_t` (a plain SGD
/// step on the shared parameters; task-specific parameters stay at `θ`),
/// evaluates the validation losses at `θ'` and passes their gradients at
/// `θ'`, one row per task, over the same columns as the training rows.
#[derive(Debug, Clone, Copy)]
pub struct LookAhead<'a> {
    /// The learning rate `lr` of the virtual step.
    pub lr: f64,
    /// The validation losses at `θ'`, one per task.
    pub losses: &'a [f32],
    /// `∇_θ L^val_t(θ')` over the training rows' columns, one row per task.
    pub grads: GradRows<'a>,
}

/// Gradients of a second, independent mini-batch (MoDo, SDMGrad), asked for
/// with [`Balancer::needs_second_batch`](super::Balancer::needs_second_batch).
/// The trainer draws the second batch deterministically from its seed and
/// computes the same rows ([`Balancer::needs`](super::Balancer::needs)) on it.
#[derive(Debug, Clone, Copy)]
pub struct SecondBatch<'a> {
    /// The task losses on the second batch.
    pub losses: &'a [f32],
    /// The gradient rows on the second batch, same shape as the first.
    pub grads: GradRows<'a>,
}

/// Everything a balancer may use at one training step.
///
/// Build it with [`from_losses`](Self::from_losses) and the `with_*` methods;
/// new optional fields may be added.
#[derive(Debug, Clone, Copy)]
pub struct BalanceInput<'a> {
    /// The `T` task losses `L_t` of the current mini-batch.
    pub losses: &'a [f32],
    /// The gradient rows the balancer asked for with [`Balancer::needs`](super::Balancer::needs),
    /// `None` when it asked for [`GradientSource::None`]. With a
    /// [`shard`](Self::shard), only the shard's columns.
    pub grads: Option<GradRows<'a>>,
    /// Global optimisation step, starting at 0.
    pub step: u64,
    /// Epoch, starting at 0.
    pub epoch: u64,
    /// Which tasks have labels in this batch (`None`: all of them). An absent
    /// task's loss is 0 and its gradient row is 0; it gets weight 0,
    /// contributes nothing to the direction, and no learnable state learns
    /// from it. With every task absent the direction is zero.
    pub present: Option<&'a [bool]>,
    /// The column shard these rows cover, with the full Gram (`None`: the
    /// rows hold every column).
    pub shard: Option<ColumnShard<'a>>,
    /// The second independent mini-batch, for balancers that need one.
    pub second: Option<SecondBatch<'a>>,
    /// The validation look-ahead, for balancers that ask for one.
    pub lookahead: Option<LookAhead<'a>>,
}

impl<'a> BalanceInput<'a> {
    /// An input with losses only, at step 0 of epoch 0, every task present.
    pub fn from_losses(losses: &'a [f32]) -> Self {
        Self {
            losses,
            grads: None,
            step: 0,
            epoch: 0,
            present: None,
            shard: None,
            second: None,
            lookahead: None,
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

    /// The same input with a presence flag per task.
    pub fn with_present(self, present: &'a [bool]) -> Self {
        Self {
            present: Some(present),
            ..self
        }
    }

    /// The same input for one column shard (the rows must be the shard's).
    pub fn with_shard(self, shard: ColumnShard<'a>) -> Self {
        Self {
            shard: Some(shard),
            ..self
        }
    }

    /// The same input with a second independent mini-batch.
    pub fn with_second(self, second: SecondBatch<'a>) -> Self {
        Self {
            second: Some(second),
            ..self
        }
    }

    /// The same input with a validation look-ahead.
    pub fn with_lookahead(self, lookahead: LookAhead<'a>) -> Self {
        Self {
            lookahead: Some(lookahead),
            ..self
        }
    }

    /// Whether task `t` is present.
    pub fn is_present(&self, t: usize) -> bool {
        self.present
            .is_none_or(|p| p.get(t).copied().unwrap_or(false))
    }

    /// `weights` with absent tasks set to 0, as `f32`. With `renormalise`
    /// the present weights are scaled to keep the total of all `weights`
    /// (a mean-scale method then sums to 1 over the present tasks); without
    /// it they are returned as they are. All absent: zeros.
    pub fn present_weights(&self, weights: &[f64], renormalise: bool) -> Vec<f32> {
        let kept: f64 = (0..weights.len())
            .filter(|&t| self.is_present(t))
            .map(|t| weights[t])
            .sum();
        let total: f64 = weights.iter().sum();
        let factor = if renormalise && kept != 0.0 {
            total / kept
        } else {
            1.0
        };
        weights
            .iter()
            .enumerate()
            .map(|(t, &w)| {
                if self.is_present(t) {
                    (w * factor) as f32
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// The indices of the present tasks, ascending.
    pub fn present_tasks(&self) -> Vec<usize> {
        (0..self.losses.len())
            .filter(|&t| self.is_present(t))
            .collect()
    }

    /// Checks the losses (count and finiteness), the presence flags and, when
    /// given, the number of gradient rows, the shard, the second batch and
    /// the look-ahead against `num_tasks`.
    ///
    /// # Errors
    /// [`Error::CountMismatch`] naming both counts, or [`Error::NonFiniteLoss`]
    /// naming the first bad task; a bad shard (see [`ColumnShard::validate`]).
    pub fn validate(&self, num_tasks: usize) -> Result<()> {
        check_losses(self.losses, num_tasks)?;
        if let Some(present) = self.present {
            if present.len() != num_tasks {
                return Err(Error::CountMismatch {
                    what: "presence flags",
                    expected: num_tasks,
                    got: present.len(),
                });
            }
        }
        if let Some(grads) = &self.grads {
            if grads.rows() != num_tasks {
                return Err(Error::CountMismatch {
                    what: "gradient rows",
                    expected: num_tasks,
                    got: grads.rows(),
                });
            }
            if let Some(shard) = &self.shard {
                shard.validate(num_tasks, grads.cols())?;
            }
        }
        if let Some(second) = &self.second {
            check_losses(second.losses, num_tasks)?;
            check_rows("second-batch gradient rows", &second.grads, num_tasks)?;
        }
        if let Some(lookahead) = &self.lookahead {
            check_losses(lookahead.losses, num_tasks)?;
            check_rows("look-ahead gradient rows", &lookahead.grads, num_tasks)?;
            if let Some(grads) = &self.grads {
                if lookahead.grads.cols() != grads.cols() {
                    return Err(Error::CountMismatch {
                        what: "look-ahead gradient columns vs. training columns",
                        expected: grads.cols(),
                        got: lookahead.grads.cols(),
                    });
                }
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

/// Checks that `rows` has one row per task.
fn check_rows(what: &'static str, rows: &GradRows<'_>, num_tasks: usize) -> Result<()> {
    if rows.rows() == num_tasks {
        Ok(())
    } else {
        Err(Error::CountMismatch {
            what,
            expected: num_tasks,
            got: rows.rows(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_norms_match_a_plain_sum_for_every_tail_length() {
        // Lane sums reorder additions of f64 squares of f32 values; the
        // difference from a sequential sum is a few f64 ulps.
        const REORDER: f64 = 1e-12;
        for p in [0usize, 1, 7, 8, 9, 31, 1000] {
            let data: Vec<f32> = (0..2 * p).map(|i| (i as f32 * 0.37).sin()).collect();
            let rows = GradRows::new(&data, 2, p).unwrap();
            for (t, norm) in rows.row_norms().into_iter().enumerate() {
                let plain: f64 = rows
                    .row(t)
                    .unwrap()
                    .iter()
                    .map(|&x| f64::from(x) * f64::from(x))
                    .sum();
                assert!(
                    (norm - plain.sqrt()).abs() <= REORDER * (1.0 + plain.sqrt()),
                    "P={p}"
                );
            }
        }
    }

    #[test]
    fn parallel_row_norms_are_bit_identical_to_sequential() {
        let (t, p) = (4, PARALLEL_NORM_MIN_ENTRIES / 2);
        let data: Vec<f32> = (0..t * p).map(|i| (i as f32 * 1e-3).cos()).collect();
        let rows = GradRows::new(&data, t, p).unwrap();
        let sequential: Vec<f64> = rows.iter().map(|r| squared_norm(r).sqrt()).collect();
        assert_eq!(rows.row_norms(), sequential);
    }

    #[test]
    fn shape_is_checked_and_views_agree() {
        let data = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(
            GradRows::new(&data, 4, 2).unwrap_err(),
            Error::GradientShape {
                rows: 4,
                cols: 2,
                len: 6
            }
        );
        let rows = GradRows::new(&data, 2, 3).unwrap();
        assert_eq!(rows.row(1), Some(&data[3..]));
        assert_eq!(rows.row(2), None);
        let j = rows.as_matrix();
        let jt = rows.as_transposed_matrix();
        assert_eq!((j.nrows(), j.ncols()), (2, 3));
        for t in 0..2 {
            for p in 0..3 {
                assert_eq!(j[(t, p)], data[t * 3 + p]);
                assert_eq!(jt[(p, t)], data[t * 3 + p]);
            }
        }
    }

    #[test]
    fn second_batch_and_lookahead_are_checked_against_the_tasks() {
        let losses = [1.0f32, 2.0];
        let data = [1.0f32, 0.0, 0.0, 1.0];
        let rows = GradRows::new(&data, 2, 2).unwrap();
        let three = [0.0f32; 6];
        let wide = GradRows::new(&three, 2, 3).unwrap();
        let base = BalanceInput::from_losses(&losses).with_grads(rows);
        let second = SecondBatch {
            losses: &losses,
            grads: rows,
        };
        assert!(base.with_second(second).validate(2).is_ok());
        let short = SecondBatch {
            losses: &losses[..1],
            grads: rows,
        };
        assert!(base.with_second(short).validate(2).is_err());
        let lookahead = LookAhead {
            lr: 0.1,
            losses: &losses,
            grads: rows,
        };
        assert!(base.with_lookahead(lookahead).validate(2).is_ok());
        let mismatched = LookAhead {
            grads: wide,
            ..lookahead
        };
        assert_eq!(
            base.with_lookahead(mismatched).validate(2).unwrap_err(),
            Error::CountMismatch {
                what: "look-ahead gradient columns vs. training columns",
                expected: 2,
                got: 3
            }
        );
    }

    #[test]
    fn present_weights_zero_the_absent_and_keep_the_total() {
        let losses = [1.0f32; 3];
        let flags = [true, false, true];
        let input = BalanceInput::from_losses(&losses).with_present(&flags);
        assert_eq!(input.present_tasks(), vec![0, 2]);
        let w = [0.25, 0.5, 0.25];
        assert_eq!(input.present_weights(&w, true), vec![0.5, 0.0, 0.5]);
        assert_eq!(input.present_weights(&w, false), vec![0.25, 0.0, 0.25]);
        let none = [false; 3];
        let input = BalanceInput::from_losses(&losses).with_present(&none);
        assert_eq!(input.present_weights(&w, true), vec![0.0; 3]);
    }
}
