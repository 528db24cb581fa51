//! The shared-parameter exchange: `T × P` task-gradient rows reduced so that
//! each rank owns a slice of the coordinates, the Gram of the owned slices
//! summed over ranks, and the combined direction gathered back.
//!
//! The Gram of summed gradients is not the sum of per-rank Grams:
//! `(Σ_r g_r)·(Σ_r h_r) ≠ Σ_r g_r·h_r`. So the rows are summed first, but
//! not everywhere: a reduce-scatter leaves rank `r` with the summed rows on
//! its own coordinates `C_r` only. Over disjoint coordinates the Gram *is* a
//! sum, `G = Σ_r J[:, C_r] J[:, C_r]ᵀ`, so a `T × T` all-reduce completes it.
//! Every rank then solves the balancer on the same `G`, combines its own
//! slice `d[C_r] = Σ_t w_t J[t, C_r]`, and an all-gather assembles `d`.
//! Per step and rank that sends about `(W−1)/W · 4(T·P + P)` bytes, about
//! half of all-reducing the rows (`2(W−1)/W · 4·T·P`).

use std::ops::Range;

use mtl_losses::balance::gram::{combine_rows, gram};
use nalgebra::DMatrix;

use crate::communicator::Communicator;
use crate::error::Result;
use crate::rank_order::check_len;
use crate::shard::{owned_columns, split_counts};

/// Buffers and layout for reduce-scattering `tasks × cols` gradient rows
/// over the ranks of a communicator; built once, reused every step (no
/// allocation per step).
///
/// ```
/// use mtl_dist::{Communicator, ShardedRows, ThreadGroup};
///
/// // Two tasks, five shared parameters; each rank holds its shard's
/// // gradients (here: rank-dependent numbers).
/// let out = ThreadGroup::new(2)?.run(|comm| {
///     let mut sharded = ShardedRows::new(comm, 2, 5)?;
///     let rows: Vec<f32> = (0..10).map(|i| (i + comm.rank()) as f32).collect();
///     sharded.reduce_scatter(comm, &rows)?;
///     let g = sharded.gram(comm)?;               // Gram of the summed rows
///     let mut mine = vec![0.0; sharded.columns().len()];
///     sharded.combine(&[0.5, 0.5], &mut mine);  // weights from a balancer
///     let mut d = vec![0.0; 5];
///     sharded.all_gather(comm, &mine, &mut d)?;
///     Ok::<_, mtl_dist::DistError>((g, d))
/// })?;
/// let (g, d) = out[0].clone()?;
/// // Summed rows: task 0 = [1, 3, 5, 7, 9], task 1 = [11, 13, 15, 17, 19].
/// assert_eq!(g[(0, 0)], 165.0);
/// assert_eq!(g[(0, 1)], 415.0); // 1·11 + 3·13 + 5·15 + 7·17 + 9·19
/// assert_eq!(d, [6.0, 8.0, 10.0, 12.0, 14.0]);
/// assert_eq!(out[1].clone()?, (g, d));
/// # Ok::<(), mtl_dist::DistError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ShardedRows {
    tasks: usize,
    cols: usize,
    rank: usize,
    /// Columns owned by each rank.
    column_counts: Vec<usize>,
    /// Values sent to each rank in the reduce-scatter: `tasks · column_counts`.
    send_counts: Vec<usize>,
    /// The rows regrouped rank by rank (empty with one rank: no regrouping).
    packed: Vec<f32>,
    /// This rank's summed rows on its columns, `tasks × columns().len()`.
    owned: Vec<f32>,
}

impl ShardedRows {
    /// Layout for `tasks` rows of `cols` values over `comm`'s ranks; rank `r`
    /// owns [`owned_columns`]`(cols, r, W)`.
    ///
    /// # Errors
    ///
    /// Those of [`owned_columns`].
    pub fn new(comm: &dyn Communicator, tasks: usize, cols: usize) -> Result<Self> {
        let size = comm.size();
        let rank = comm.rank();
        let column_counts = split_counts(cols, size)?;
        let mine = owned_columns(cols, rank, size)?;
        let send_counts = column_counts.iter().map(|c| c * tasks).collect();
        let packed = if size > 1 {
            vec![0.0; tasks * cols]
        } else {
            Vec::new()
        };
        Ok(Self {
            tasks,
            cols,
            rank,
            column_counts,
            send_counts,
            packed,
            owned: vec![0.0; tasks * mine.len()],
        })
    }

    /// Number of tasks (rows).
    pub fn tasks(&self) -> usize {
        self.tasks
    }

    /// Number of coordinates (columns) of every row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Columns owned by each rank, in rank order.
    pub fn column_counts(&self) -> &[usize] {
        &self.column_counts
    }

    /// The coordinates this rank owns.
    pub fn columns(&self) -> Range<usize> {
        let start: usize = self.column_counts[..self.rank].iter().sum();
        start..start + self.column_counts[self.rank]
    }

    /// After [`ShardedRows::reduce_scatter`]: the rows summed over ranks,
    /// restricted to [`ShardedRows::columns`], as `tasks` rows of
    /// `columns().len()` values one after the other (the layout of
    /// `mtl_losses::GradRows`).
    pub fn owned(&self) -> &[f32] {
        &self.owned
    }

    /// Sums `rows` (`tasks` rows of `cols` values, row-major: this rank's
    /// share of each task's gradient) over all ranks and keeps this rank's
    /// columns, available as [`ShardedRows::owned`]. Sums are in rank order.
    ///
    /// # Errors
    ///
    /// [`crate::DistError::BufferLength`] when `rows` is not `tasks × cols`;
    /// errors of the communicator.
    pub fn reduce_scatter(&mut self, comm: &dyn Communicator, rows: &[f32]) -> Result<&[f32]> {
        check_len(
            "reduce_scatter_rows",
            "rows",
            rows.len(),
            self.tasks * self.cols,
        )?;
        if comm.size() == 1 {
            self.owned.copy_from_slice(rows);
            return Ok(&self.owned);
        }
        // Regroup: for each destination rank, its columns of every row.
        let mut at = 0;
        let mut start = 0;
        for &count in &self.column_counts {
            for row in rows.chunks_exact(self.cols.max(1)).take(self.tasks) {
                self.packed[at..at + count].copy_from_slice(&row[start..start + count]);
                at += count;
            }
            start += count;
        }
        comm.reduce_scatter_sum_f32(&self.packed, &self.send_counts, &mut self.owned)?;
        Ok(&self.owned)
    }

    /// The `T × T` Gram matrix `G = J Jᵀ` of the summed rows `J`: the Gram of
    /// the owned slice (the kernel of `mtl_losses::balance::gram`),
    /// all-reduced in rank order. With one rank it is bit-identical to that
    /// kernel on the whole rows. Call after [`ShardedRows::reduce_scatter`].
    ///
    /// # Errors
    ///
    /// Errors of the communicator.
    pub fn gram(&self, comm: &dyn Communicator) -> Result<DMatrix<f64>> {
        let mut g = self.partial_gram();
        comm.all_reduce_sum_f64(g.as_mut_slice())?;
        Ok(g)
    }

    /// This rank's term of the Gram, `J[:, C_r] J[:, C_r]ᵀ` over the owned
    /// columns, before the all-reduce: for a caller that fuses it with other
    /// small values (the losses) into one all-reduce. [`ShardedRows::gram`]
    /// is this followed by [`Communicator::all_reduce_sum_f64`] of its
    /// `T²` values.
    pub fn partial_gram(&self) -> DMatrix<f64> {
        gram(&self.owned, self.tasks, self.columns().len())
    }

    /// Writes this rank's slice of the direction, `out[k] = Σ_t w_t J[t, k]`
    /// for the owned columns `k` (`out.len() == columns().len()`), with the
    /// kernel of `mtl_losses::balance::gram::combine_rows`.
    ///
    /// # Panics
    ///
    /// When `weights.len() != tasks()` or `out` has the wrong length (both
    /// fixed by the caller's layout, not by data).
    pub fn combine(&self, weights: &[f64], out: &mut [f32]) {
        assert_eq!(weights.len(), self.tasks, "one weight per task");
        combine_rows(&self.owned, self.columns().len(), weights, out);
    }

    /// Gathers every rank's slice of a per-coordinate vector into
    /// `direction` (length `cols()`), in column order.
    ///
    /// # Errors
    ///
    /// [`crate::DistError::BufferLength`] on wrong lengths; errors of the
    /// communicator.
    pub fn all_gather(
        &self,
        comm: &dyn Communicator,
        owned_direction: &[f32],
        direction: &mut [f32],
    ) -> Result<()> {
        comm.all_gather_f32(owned_direction, &self.column_counts, direction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SingleProcess, ThreadGroup};

    /// Rank `r`'s share of task `t`'s gradient at coordinate `k`.
    fn share(r: usize, t: usize, k: usize) -> f32 {
        let x = ((r * 31 + t * 17 + k * 7) % 23) as f32 - 11.0;
        x / (1.0 + t as f32) + 0.25 * r as f32
    }

    /// The summed rows in rank order, the way every backend sums them.
    fn summed_rows(size: usize, tasks: usize, cols: usize) -> Vec<f32> {
        (0..tasks * cols)
            .map(|i| {
                (1..size).fold(share(0, i / cols, i % cols), |a, r| {
                    a + share(r, i / cols, i % cols)
                })
            })
            .collect()
    }

    /// Relative tolerance between the Gram of slices summed over ranks and
    /// the Gram of whole rows: the same f64 products added in a different
    /// order, ~1e-16 per addition over a few dozen terms.
    const GRAM_REL_TOL: f64 = 1e-12;

    #[test]
    fn owned_gram_and_direction_match_the_whole_rows() {
        let (tasks, cols) = (3, 10);
        for size in 1..=3 {
            let out = ThreadGroup::new(size)
                .unwrap()
                .run(|comm| {
                    let rows: Vec<f32> = (0..tasks * cols)
                        .map(|i| share(comm.rank(), i / cols, i % cols))
                        .collect();
                    let mut s = ShardedRows::new(comm, tasks, cols)?;
                    s.reduce_scatter(comm, &rows)?;
                    let owned = s.owned().to_vec();
                    let g = s.gram(comm)?;
                    let mut mine = vec![0.0f32; s.columns().len()];
                    s.combine(&[0.2, -1.0, 0.5], &mut mine);
                    let mut d = vec![0.0f32; cols];
                    s.all_gather(comm, &mine, &mut d)?;
                    Ok::<_, crate::DistError>((s.columns(), owned, g, d))
                })
                .unwrap();
            let whole = summed_rows(size, tasks, cols);
            let g_ref = gram(&whole, tasks, cols);
            let mut d_ref = vec![0.0f32; cols];
            combine_rows(&whole, cols, &[0.2, -1.0, 0.5], &mut d_ref);
            let mut next = 0;
            let g0 = out[0].as_ref().unwrap().2.clone();
            for r in out {
                let (columns, owned, g, d) = r.unwrap();
                // Uneven split of 10 columns: 10, 5+5, 4+3+3.
                assert_eq!(columns.start, next);
                next = columns.end;
                for t in 0..tasks {
                    let mine = &owned[t * columns.len()..(t + 1) * columns.len()];
                    assert_eq!(
                        mine,
                        &whole[t * cols + columns.start..t * cols + columns.end]
                    );
                }
                assert_eq!(g, g0, "every rank has the same bits");
                for (a, b) in g.iter().zip(g_ref.iter()) {
                    assert!(
                        (a - b).abs() <= GRAM_REL_TOL * b.abs().max(1.0),
                        "{a} vs {b}"
                    );
                }
                if size == 1 {
                    assert_eq!(g, g_ref);
                }
                assert_eq!(
                    d, d_ref,
                    "combine is per column, so slices give the same bits"
                );
            }
            assert_eq!(next, cols);
        }
    }

    #[test]
    fn more_ranks_than_columns_leaves_empty_slices() {
        let out = ThreadGroup::new(3)
            .unwrap()
            .run(|comm| {
                let mut s = ShardedRows::new(comm, 2, 2)?;
                s.reduce_scatter(comm, &[1.0, 2.0, 3.0, 4.0])?;
                let g = s.gram(comm)?;
                Ok::<_, crate::DistError>((s.columns(), g))
            })
            .unwrap();
        let (columns, g) = out[2].clone().unwrap();
        assert!(columns.is_empty());
        // Rows summed over 3 ranks: [3, 6] and [9, 12].
        assert_eq!(g[(0, 0)], 45.0);
        assert_eq!(g[(0, 1)], 27.0 + 72.0);
        assert_eq!(g[(1, 1)], 81.0 + 144.0);
    }

    #[test]
    fn wrong_row_length_is_an_error() {
        let mut s = ShardedRows::new(&SingleProcess, 2, 3).unwrap();
        assert!(s.reduce_scatter(&SingleProcess, &[0.0; 5]).is_err());
    }
}
