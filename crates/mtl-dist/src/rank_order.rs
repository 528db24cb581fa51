//! The one reduction rule every backend follows: contributions summed in rank
//! order, and the checks of per-rank counts that every collective shares.

use std::ops::{Add, Range};

use crate::error::{DistError, Result};

/// Writes into `out` the rank-order sum of `blocks` (one per rank, each of
/// `out.len()` values): `out = ((b₀ + b₁) + b₂) + …`, starting from `b₀`
/// itself so that a single contribution is copied bit for bit (`-0.0`
/// stays `-0.0`).
pub(crate) fn sum_in_rank_order<'a, T, I>(mut blocks: I, out: &mut [T])
where
    T: Copy + Add<Output = T> + 'a,
    I: Iterator<Item = &'a [T]>,
{
    let first = blocks.next().expect("a group has at least one rank");
    out.copy_from_slice(first);
    for block in blocks {
        for (o, v) in out.iter_mut().zip(block) {
            *o = *o + *v;
        }
    }
}

/// Ranges of the consecutive segments of lengths `counts`.
pub(crate) fn segments(counts: &[usize]) -> Vec<Range<usize>> {
    let mut start = 0;
    counts
        .iter()
        .map(|&c| {
            let r = start..start + c;
            start += c;
            r
        })
        .collect()
}

/// Checks that `counts` has one entry per rank and returns `Σ counts`.
pub(crate) fn check_counts(op: &'static str, counts: &[usize], size: usize) -> Result<usize> {
    if counts.len() != size {
        return Err(DistError::CountsLength {
            op,
            found: counts.len(),
            size,
        });
    }
    Ok(counts.iter().sum())
}

/// Checks that a buffer has the length a collective needs.
pub(crate) fn check_len(
    op: &'static str,
    buffer: &'static str,
    found: usize,
    expected: usize,
) -> Result<()> {
    if found == expected {
        Ok(())
    } else {
        Err(DistError::BufferLength {
            op,
            buffer,
            found,
            expected,
        })
    }
}

/// Checks that `root` names a rank.
pub(crate) fn check_rank(rank: usize, size: usize) -> Result<()> {
    if rank < size {
        Ok(())
    } else {
        Err(DistError::RankOutOfRange { rank, size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_order_is_left_to_right() {
        // (1e8 + 1) - 1e8 loses the 1 in f32; 1e8 + (1 - 1e8) would not.
        let blocks: [&[f32]; 3] = [&[1e8], &[1.0], &[-1e8]];
        let mut out = [0.0f32];
        sum_in_rank_order(blocks.into_iter(), &mut out);
        assert_eq!(out[0], 0.0);
        let blocks: [&[f32]; 3] = [&[1.0], &[1e8], &[-1e8]];
        sum_in_rank_order(blocks.into_iter(), &mut out);
        assert_eq!(out[0], 0.0);
        let blocks: [&[f32]; 3] = [&[1e8], &[-1e8], &[1.0]];
        sum_in_rank_order(blocks.into_iter(), &mut out);
        assert_eq!(out[0], 1.0);
    }

    #[test]
    fn single_contribution_keeps_negative_zero() {
        let blocks: [&[f64]; 1] = [&[-0.0]];
        let mut out = [1.0f64];
        sum_in_rank_order(blocks.into_iter(), &mut out);
        assert!(out[0] == 0.0 && out[0].is_sign_negative());
    }

    #[test]
    fn segments_follow_counts() {
        assert_eq!(segments(&[2, 0, 3]), vec![0..2, 2..2, 2..5]);
        assert_eq!(
            check_counts("x", &[1, 2], 3),
            Err(DistError::CountsLength {
                op: "x",
                found: 2,
                size: 3
            })
        );
        assert_eq!(check_counts("x", &[1, 2, 4], 3), Ok(7));
    }
}
