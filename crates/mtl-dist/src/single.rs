//! The group of one: every collective is a copy or nothing.

use crate::communicator::Communicator;
use crate::error::Result;
use crate::rank_order::{check_counts, check_len, check_rank};

/// The communicator of a run on one process: rank 0 of 1. Reductions return
/// their input, gathers and scatters copy, barriers return at once. Training
/// with it is the case `W = 1` of the data-parallel step, not a second code
/// path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn all_reduce_sum_f32(&self, _values: &mut [f32]) -> Result<()> {
        Ok(())
    }

    fn all_reduce_sum_f64(&self, _values: &mut [f64]) -> Result<()> {
        Ok(())
    }

    fn broadcast_bytes(&self, root: usize, _bytes: &mut Vec<u8>) -> Result<()> {
        check_rank(root, 1)
    }

    fn barrier(&self) -> Result<()> {
        Ok(())
    }

    fn reduce_scatter_sum_f32(
        &self,
        send: &[f32],
        counts: &[usize],
        recv: &mut [f32],
    ) -> Result<()> {
        const OP: &str = "reduce_scatter_sum_f32";
        let total = check_counts(OP, counts, 1)?;
        check_len(OP, "send", send.len(), total)?;
        check_len(OP, "receive", recv.len(), counts[0])?;
        recv.copy_from_slice(send);
        Ok(())
    }

    fn all_gather_f32(&self, send: &[f32], counts: &[usize], recv: &mut [f32]) -> Result<()> {
        const OP: &str = "all_gather_f32";
        let total = check_counts(OP, counts, 1)?;
        check_len(OP, "send", send.len(), counts[0])?;
        check_len(OP, "receive", recv.len(), total)?;
        recv.copy_from_slice(send);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::DistError;

    #[test]
    fn collectives_are_identities() {
        let c = SingleProcess;
        let mut v = vec![1.5f32, -0.0];
        c.all_reduce_sum_f32(&mut v).unwrap();
        assert_eq!(v, [1.5, -0.0]);
        let mut out = vec![0.0f32; 2];
        c.reduce_scatter_sum_f32(&v, &[2], &mut out).unwrap();
        assert_eq!(out, v);
        c.all_gather_f32(&v, &[2], &mut out).unwrap();
        assert_eq!(out, v);
        let mut bytes = b"abc".to_vec();
        c.broadcast_bytes(0, &mut bytes).unwrap();
        assert_eq!(bytes, b"abc");
        assert_eq!(
            c.broadcast_bytes(1, &mut bytes),
            Err(DistError::RankOutOfRange { rank: 1, size: 1 })
        );
        assert!(c.all_gather_f32(&v, &[3], &mut out).is_err());
    }
}
