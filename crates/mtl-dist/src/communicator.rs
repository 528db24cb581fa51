//! The collective-communication seam: [`Communicator`], and the agreement on
//! failures that lets every rank stop with the same status.

use std::fmt;

use crate::error::{DistError, Result};

/// A failure seen by one rank: the process exit status it calls for and a
/// one-line message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Exit status of the process (e.g. 2 for bad input, 1 for divergence).
    pub exit_code: i32,
    /// What went wrong, in one line.
    pub message: String,
}

impl Failure {
    /// A failure with this exit status and message.
    pub fn new(exit_code: i32, message: impl Into<String>) -> Self {
        Self {
            exit_code,
            message: message.into(),
        }
    }
}

/// The failure all ranks agreed on in [`Communicator::agree`]: the one of the
/// lowest failing rank, and how many ranks failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankFailure {
    /// The lowest rank that reported a failure.
    pub rank: usize,
    /// Number of ranks that reported a failure (at least 1).
    pub failed_ranks: usize,
    /// That rank's failure.
    pub failure: Failure,
}

impl fmt::Display for RankFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.failed_ranks {
            1 => write!(f, "rank {}: {}", self.rank, self.failure.message),
            n => write!(
                f,
                "rank {} (and {} other rank{}): {}",
                self.rank,
                n - 1,
                if n == 2 { "" } else { "s" },
                self.failure.message
            ),
        }
    }
}

/// Collective operations over a fixed group of `size` ranks, numbered
/// `0..size`.
///
/// Every method is *collective*: all ranks of the group call it, in the same
/// order, with buffers of the lengths stated below. Implementations:
/// [`crate::SingleProcess`] (one rank, no communication),
/// [`crate::ThreadGroup`] (ranks are threads of one process) and, with the
/// cargo feature `mpi`, `Mpi` (ranks are MPI processes).
///
/// # Determinism
///
/// Sums are taken in **rank order**: element `i` of every reduction is
/// `((v₀[i] + v₁[i]) + v₂[i]) + … + v_{W−1}[i]`, starting from rank 0's value
/// (not from zero, so `-0.0` survives), where `v_r` is rank `r`'s
/// contribution. Each element is summed once, by one rank, and the result is
/// copied to the others, so every rank receives bit-identical values, on
/// every run, whatever the backend: the MPI and thread-group results are the
/// same bits.
///
/// # Errors
///
/// A buffer of the wrong length is an error ([`DistError::BufferLength`],
/// [`DistError::CountsLength`]). Ranks passing *different* lengths to the same
/// call is a programming error: the thread group reports it
/// ([`DistError::LengthDisagreement`]); MPI aborts the job (MPI's default
/// error handler).
pub trait Communicator {
    /// This process's (or thread's) rank, in `0..size()`.
    fn rank(&self) -> usize;

    /// Number of ranks in the group (at least 1).
    fn size(&self) -> usize;

    /// Sums `values` over all ranks, in place, in rank order. Every rank
    /// passes the same length.
    fn all_reduce_sum_f32(&self, values: &mut [f32]) -> Result<()>;

    /// Sums `values` over all ranks, in place, in rank order. Every rank
    /// passes the same length.
    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()>;

    /// Replaces `bytes` on every rank by rank `root`'s `bytes` (any length;
    /// the other ranks' contents and lengths are ignored).
    fn broadcast_bytes(&self, root: usize, bytes: &mut Vec<u8>) -> Result<()>;

    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<()>;

    /// Reduce-scatter with uneven counts: `send` holds `Σ counts` values,
    /// cut into consecutive segments of `counts[0], counts[1], …` values;
    /// rank `r` receives in `recv` (length `counts[r]`) the rank-order sum of
    /// every rank's segment `r`. Every rank passes the same `counts`.
    fn reduce_scatter_sum_f32(
        &self,
        send: &[f32],
        counts: &[usize],
        recv: &mut [f32],
    ) -> Result<()>;

    /// All-gather with uneven counts: rank `r` contributes `send` of length
    /// `counts[r]`; every rank receives in `recv` (length `Σ counts`) the
    /// contributions of ranks `0, 1, …` one after the other. Every rank
    /// passes the same `counts`.
    fn all_gather_f32(&self, send: &[f32], counts: &[usize], recv: &mut [f32]) -> Result<()>;

    /// Collective agreement on failures: every rank passes its own failure
    /// (or `None`), and every rank receives the same answer: `None` when no
    /// rank failed, otherwise the failure of the lowest failing rank and the
    /// number of failing ranks.
    ///
    /// Call it at points every rank reaches (after validating input, once per
    /// step or epoch) and stop with [`RankFailure::failure`]'s exit code on
    /// every rank when it returns `Some`, so that all processes end with one
    /// status and one message. It costs one all-reduce of `size()` values,
    /// plus one broadcast of the message when some rank failed.
    fn agree(&self, local: Option<Failure>) -> Result<Option<RankFailure>> {
        let size = self.size();
        let rank = self.rank();
        let mut flags = vec![0.0f64; size];
        if local.is_some() {
            flags[rank] = 1.0;
        }
        self.all_reduce_sum_f64(&mut flags)?;
        let failed_ranks = flags.iter().filter(|&&f| f > 0.0).count();
        let Some(first) = flags.iter().position(|&f| f > 0.0) else {
            return Ok(None);
        };
        let mut bytes = match (&local, rank == first) {
            (Some(failure), true) => encode_failure(failure),
            _ => Vec::new(),
        };
        self.broadcast_bytes(first, &mut bytes)?;
        let failure = decode_failure(&bytes).ok_or(DistError::MalformedFailure { rank: first })?;
        Ok(Some(RankFailure {
            rank: first,
            failed_ranks,
            failure,
        }))
    }
}

/// A shared reference is a communicator too, so that wrappers such as
/// [`crate::Timed`] can borrow one (e.g. the `&ThreadCommunicator` that
/// [`crate::ThreadGroup::run`] hands out).
impl<C: Communicator + ?Sized> Communicator for &C {
    fn rank(&self) -> usize {
        (**self).rank()
    }

    fn size(&self) -> usize {
        (**self).size()
    }

    fn all_reduce_sum_f32(&self, values: &mut [f32]) -> Result<()> {
        (**self).all_reduce_sum_f32(values)
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        (**self).all_reduce_sum_f64(values)
    }

    fn broadcast_bytes(&self, root: usize, bytes: &mut Vec<u8>) -> Result<()> {
        (**self).broadcast_bytes(root, bytes)
    }

    fn barrier(&self) -> Result<()> {
        (**self).barrier()
    }

    fn reduce_scatter_sum_f32(
        &self,
        send: &[f32],
        counts: &[usize],
        recv: &mut [f32],
    ) -> Result<()> {
        (**self).reduce_scatter_sum_f32(send, counts, recv)
    }

    fn all_gather_f32(&self, send: &[f32], counts: &[usize], recv: &mut [f32]) -> Result<()> {
        (**self).all_gather_f32(send, counts, recv)
    }

    fn agree(&self, local: Option<Failure>) -> Result<Option<RankFailure>> {
        (**self).agree(local)
    }
}

/// Exit code (4 bytes, little endian) followed by the UTF-8 message.
fn encode_failure(failure: &Failure) -> Vec<u8> {
    let mut bytes = failure.exit_code.to_le_bytes().to_vec();
    bytes.extend_from_slice(failure.message.as_bytes());
    bytes
}

/// Inverse of [`encode_failure`]; `None` on a short or non-UTF-8 message.
fn decode_failure(bytes: &[u8]) -> Option<Failure> {
    let code: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    let message = std::str::from_utf8(&bytes[4..]).ok()?;
    Some(Failure::new(i32::from_le_bytes(code), message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ThreadGroup;

    #[test]
    fn failure_round_trips_through_bytes() {
        let f = Failure::new(-7, "loss of task `depth` is NaN at step 12 — ü");
        assert_eq!(decode_failure(&encode_failure(&f)), Some(f));
        assert_eq!(decode_failure(&[1, 2]), None);
    }

    #[test]
    fn no_failure_agrees_on_none() {
        for size in 1..=3 {
            let out = ThreadGroup::new(size)
                .unwrap()
                .run(|c| c.agree(None))
                .unwrap();
            assert!(out.into_iter().all(|r| r.unwrap().is_none()));
        }
    }

    #[test]
    fn every_rank_gets_the_lowest_failing_rank() {
        let out = ThreadGroup::new(3)
            .unwrap()
            .run(|c| {
                let local = match c.rank() {
                    0 => None,
                    1 => Some(Failure::new(2, "bad row 17 in shard")),
                    _ => Some(Failure::new(1, "diverged")),
                };
                c.agree(local)
            })
            .unwrap();
        let expected = RankFailure {
            rank: 1,
            failed_ranks: 2,
            failure: Failure::new(2, "bad row 17 in shard"),
        };
        for r in out {
            assert_eq!(r.unwrap(), Some(expected.clone()));
        }
        assert_eq!(
            expected.to_string(),
            "rank 1 (and 1 other rank): bad row 17 in shard"
        );
    }
}
