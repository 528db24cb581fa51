//! How rows of a global batch and coordinates of a parameter vector are cut
//! between ranks.
//!
//! Both use one balanced, contiguous partition: `n` items over `W` ranks, the
//! first `n mod W` ranks get `⌈n/W⌉` items and the others `⌊n/W⌋`, in rank
//! order. Shard sizes therefore differ by at most one.

use std::ops::Range;

use crate::error::{DistError, Result};
use crate::rank_order::check_rank;

/// Sizes of the balanced partition of `total` items over `size` ranks (see
/// the module docs); entries may be 0 when `total < size`.
///
/// # Errors
///
/// [`DistError::EmptyGroup`] when `size` is 0.
pub fn split_counts(total: usize, size: usize) -> Result<Vec<usize>> {
    if size == 0 {
        return Err(DistError::EmptyGroup);
    }
    let base = total / size;
    let extra = total % size;
    Ok((0..size).map(|r| base + usize::from(r < extra)).collect())
}

/// The item range rank `rank` holds in the balanced partition of `total`
/// items over `size` ranks (possibly empty).
fn partition_range(total: usize, rank: usize, size: usize) -> Result<Range<usize>> {
    if size == 0 {
        return Err(DistError::EmptyGroup);
    }
    check_rank(rank, size)?;
    let base = total / size;
    let extra = total % size;
    let start = rank * base + rank.min(extra);
    Ok(start..start + base + usize::from(rank < extra))
}

/// The rows of a global batch of `global_rows` rows that rank `rank` of
/// `size` computes: a contiguous, non-empty shard.
///
/// Task losses on a shard are weighted by `shard.len() / global_rows` (sum
/// of per-row losses divided by `global_rows`) so that their sum over ranks
/// is the mean over the global batch.
///
/// # Errors
///
/// [`DistError::MoreRanksThanRows`] when `size > global_rows` (some shard
/// would be empty), [`DistError::RankOutOfRange`], [`DistError::EmptyGroup`].
pub fn shard_range(global_rows: usize, rank: usize, size: usize) -> Result<Range<usize>> {
    if size > global_rows {
        return Err(DistError::MoreRanksThanRows {
            size,
            rows: global_rows,
        });
    }
    partition_range(global_rows, rank, size)
}

/// The coordinates `0..cols` of a parameter (or gradient) vector that rank
/// `rank` of `size` owns when the task-gradient rows are reduce-scattered.
/// Empty when `cols < size` and `rank ≥ cols`.
///
/// # Errors
///
/// [`DistError::RankOutOfRange`], [`DistError::EmptyGroup`].
pub fn owned_columns(cols: usize, rank: usize, size: usize) -> Result<Range<usize>> {
    partition_range(cols, rank, size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ten_rows_over_three_ranks() {
        assert_eq!(split_counts(10, 3).unwrap(), [4, 3, 3]);
        let shards: Vec<_> = (0..3).map(|r| shard_range(10, r, 3).unwrap()).collect();
        assert_eq!(shards, [0..4, 4..7, 7..10]);
    }

    #[test]
    fn more_ranks_than_rows_is_an_error_for_rows_only() {
        assert_eq!(
            shard_range(2, 0, 3),
            Err(DistError::MoreRanksThanRows { size: 3, rows: 2 })
        );
        assert_eq!(owned_columns(2, 2, 3), Ok(2..2));
        assert_eq!(
            shard_range(5, 5, 5),
            Err(DistError::RankOutOfRange { rank: 5, size: 5 })
        );
        assert_eq!(shard_range(5, 0, 0), Err(DistError::EmptyGroup));
    }

    proptest! {
        #[test]
        fn shards_tile_the_batch_and_differ_by_at_most_one(rows in 1usize..500, size in 1usize..40) {
            prop_assume!(size <= rows);
            let shards: Vec<_> = (0..size).map(|r| shard_range(rows, r, size).unwrap()).collect();
            let counts = split_counts(rows, size).unwrap();
            let mut next = 0;
            for (s, c) in shards.iter().zip(&counts) {
                prop_assert_eq!(s.start, next);
                prop_assert_eq!(s.len(), *c);
                prop_assert!(!s.is_empty());
                next = s.end;
            }
            prop_assert_eq!(next, rows);
            let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            prop_assert!(hi - lo <= 1);
        }
    }
}
