//! An in-process group: `W` communicators for `W` threads, talking over
//! channels. Used to test data-parallel code without MPI.

use std::sync::mpsc::{channel, Receiver, Sender};

use crate::communicator::Communicator;
use crate::error::{DistError, Result};
use crate::rank_order::{check_counts, check_len, check_rank, segments, sum_in_rank_order};

/// A message between two ranks of a thread group; the variant names the
/// payload type so that mismatched collectives are detected.
#[derive(Debug)]
enum Message {
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<u8>),
    Barrier,
}

/// A group of `size` ranks living in threads of one process.
///
/// [`ThreadGroup::run`] runs a closure on every rank, each in its own thread,
/// and returns the results in rank order; [`ThreadGroup::communicators`] hands
/// out the communicators for threads of your own. Reductions follow the same
/// rank order as every backend (see [`Communicator`]), so a thread group and
/// an MPI job of the same size produce the same bits.
///
/// ```
/// use mtl_dist::{Communicator, ThreadGroup};
///
/// let sums = ThreadGroup::new(3)?.run(|comm| {
///     let mut v = [comm.rank() as f32, 1.0];
///     comm.all_reduce_sum_f32(&mut v).map(|()| v)
/// })?;
/// for v in sums {
///     assert_eq!(v?, [3.0, 3.0]);
/// }
/// # Ok::<(), mtl_dist::DistError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadGroup {
    size: usize,
}

impl ThreadGroup {
    /// A group of `size ≥ 1` ranks.
    ///
    /// # Errors
    ///
    /// [`DistError::EmptyGroup`] when `size` is 0.
    pub fn new(size: usize) -> Result<Self> {
        if size == 0 {
            return Err(DistError::EmptyGroup);
        }
        Ok(Self { size })
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.size
    }

    /// One communicator per rank, in rank order; move each into its own
    /// thread. A rank whose communicator is dropped counts as gone: the
    /// others' next collective with it returns [`DistError::PeerGone`]
    /// instead of waiting forever.
    pub fn communicators(&self) -> Vec<ThreadCommunicator> {
        let size = self.size;
        // links[src][dst]: the channel from `src` to `dst`.
        let mut senders: Vec<Vec<Option<Sender<Message>>>> = (0..size)
            .map(|_| (0..size).map(|_| None).collect())
            .collect();
        let mut receivers: Vec<Vec<Option<Receiver<Message>>>> = (0..size)
            .map(|_| (0..size).map(|_| None).collect())
            .collect();
        for src in 0..size {
            for dst in 0..size {
                if src != dst {
                    let (tx, rx) = channel();
                    senders[src][dst] = Some(tx);
                    receivers[dst][src] = Some(rx);
                }
            }
        }
        senders
            .into_iter()
            .zip(receivers)
            .enumerate()
            .map(|(rank, (to, from))| ThreadCommunicator {
                rank,
                size,
                to,
                from,
            })
            .collect()
    }

    /// Runs `f` on every rank, each in its own thread, and returns the
    /// results in rank order.
    ///
    /// # Errors
    ///
    /// [`DistError::RankPanicked`] naming the lowest rank that panicked (the
    /// others then see [`DistError::PeerGone`] rather than hanging).
    pub fn run<R, F>(&self, f: F) -> Result<Vec<R>>
    where
        R: Send,
        F: Fn(&ThreadCommunicator) -> R + Sync,
    {
        let f = &f;
        std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .communicators()
                .into_iter()
                .map(|comm| scope.spawn(move || f(&comm)))
                .collect();
            let joined: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
            joined
                .into_iter()
                .enumerate()
                .map(|(rank, r)| {
                    r.map_err(|payload| DistError::RankPanicked {
                        rank,
                        message: payload
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| payload.downcast_ref::<String>().cloned())
                            .unwrap_or_default(),
                    })
                })
                .collect()
        })
    }
}

/// One rank of a [`ThreadGroup`]: channels to and from every other rank.
///
/// Messages are buffered (sending never blocks), and each pair of ranks has
/// its own first-in-first-out channel, so collectives called in the same
/// order on every rank always match up.
#[derive(Debug)]
pub struct ThreadCommunicator {
    rank: usize,
    size: usize,
    /// `to[dst]`: channel to rank `dst` (`None` for this rank).
    to: Vec<Option<Sender<Message>>>,
    /// `from[src]`: channel from rank `src` (`None` for this rank).
    from: Vec<Option<Receiver<Message>>>,
}

impl ThreadCommunicator {
    fn send(&self, op: &'static str, dst: usize, message: Message) -> Result<()> {
        let tx = self.to[dst].as_ref().expect("no channel to self");
        tx.send(message)
            .map_err(|_| DistError::PeerGone { op, rank: dst })
    }

    fn receive(&self, op: &'static str, src: usize) -> Result<Message> {
        let rx = self.from[src].as_ref().expect("no channel from self");
        rx.recv().map_err(|_| DistError::PeerGone { op, rank: src })
    }

    fn receive_f32(&self, op: &'static str, src: usize) -> Result<Vec<f32>> {
        match self.receive(op, src)? {
            Message::F32(v) => Ok(v),
            _ => Err(DistError::CollectiveMismatch { op, rank: src }),
        }
    }

    fn receive_f64(&self, op: &'static str, src: usize) -> Result<Vec<f64>> {
        match self.receive(op, src)? {
            Message::F64(v) => Ok(v),
            _ => Err(DistError::CollectiveMismatch { op, rank: src }),
        }
    }

    fn others(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.size).filter(move |&r| r != self.rank)
    }

    /// Sends `values` to every other rank and returns every rank's
    /// contribution in rank order (this rank's own included), checking that
    /// all have the same length.
    fn exchange_same_length<T: Copy>(
        &self,
        op: &'static str,
        values: &[T],
        wrap: fn(Vec<T>) -> Message,
        unwrap: fn(&Self, &'static str, usize) -> Result<Vec<T>>,
    ) -> Result<Vec<Vec<T>>> {
        for dst in self.others() {
            self.send(op, dst, wrap(values.to_vec()))?;
        }
        let mut all = Vec::with_capacity(self.size);
        for src in 0..self.size {
            let v = if src == self.rank {
                values.to_vec()
            } else {
                unwrap(self, op, src)?
            };
            if v.len() != values.len() {
                return Err(DistError::LengthDisagreement {
                    op,
                    rank: src,
                    found: v.len(),
                    reference: self.rank,
                    expected: values.len(),
                });
            }
            all.push(v);
        }
        Ok(all)
    }
}

impl Communicator for ThreadCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum_f32(&self, values: &mut [f32]) -> Result<()> {
        let all = self.exchange_same_length(
            "all_reduce_sum_f32",
            values,
            Message::F32,
            Self::receive_f32,
        )?;
        sum_in_rank_order(all.iter().map(Vec::as_slice), values);
        Ok(())
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        let all = self.exchange_same_length(
            "all_reduce_sum_f64",
            values,
            Message::F64,
            Self::receive_f64,
        )?;
        sum_in_rank_order(all.iter().map(Vec::as_slice), values);
        Ok(())
    }

    fn broadcast_bytes(&self, root: usize, bytes: &mut Vec<u8>) -> Result<()> {
        const OP: &str = "broadcast_bytes";
        check_rank(root, self.size)?;
        if self.rank == root {
            for dst in self.others() {
                self.send(OP, dst, Message::Bytes(bytes.clone()))?;
            }
        } else {
            match self.receive(OP, root)? {
                Message::Bytes(b) => *bytes = b,
                _ => return Err(DistError::CollectiveMismatch { op: OP, rank: root }),
            }
        }
        Ok(())
    }

    fn barrier(&self) -> Result<()> {
        const OP: &str = "barrier";
        for dst in self.others() {
            self.send(OP, dst, Message::Barrier)?;
        }
        for src in self.others() {
            match self.receive(OP, src)? {
                Message::Barrier => {}
                _ => return Err(DistError::CollectiveMismatch { op: OP, rank: src }),
            }
        }
        Ok(())
    }

    fn reduce_scatter_sum_f32(
        &self,
        send: &[f32],
        counts: &[usize],
        recv: &mut [f32],
    ) -> Result<()> {
        const OP: &str = "reduce_scatter_sum_f32";
        let total = check_counts(OP, counts, self.size)?;
        check_len(OP, "send", send.len(), total)?;
        check_len(OP, "receive", recv.len(), counts[self.rank])?;
        let segs = segments(counts);
        for dst in self.others() {
            self.send(OP, dst, Message::F32(send[segs[dst].clone()].to_vec()))?;
        }
        let mut parts = Vec::with_capacity(self.size);
        for src in 0..self.size {
            let part = if src == self.rank {
                send[segs[src].clone()].to_vec()
            } else {
                self.receive_f32(OP, src)?
            };
            if part.len() != recv.len() {
                return Err(DistError::LengthDisagreement {
                    op: OP,
                    rank: src,
                    found: part.len(),
                    reference: self.rank,
                    expected: recv.len(),
                });
            }
            parts.push(part);
        }
        sum_in_rank_order(parts.iter().map(Vec::as_slice), recv);
        Ok(())
    }

    fn all_gather_f32(&self, send: &[f32], counts: &[usize], recv: &mut [f32]) -> Result<()> {
        const OP: &str = "all_gather_f32";
        let total = check_counts(OP, counts, self.size)?;
        check_len(OP, "send", send.len(), counts[self.rank])?;
        check_len(OP, "receive", recv.len(), total)?;
        for dst in self.others() {
            self.send(OP, dst, Message::F32(send.to_vec()))?;
        }
        for (src, seg) in segments(counts).into_iter().enumerate() {
            if src == self.rank {
                recv[seg].copy_from_slice(send);
                continue;
            }
            let part = self.receive_f32(OP, src)?;
            if part.len() != seg.len() {
                return Err(DistError::LengthDisagreement {
                    op: OP,
                    rank: src,
                    found: part.len(),
                    reference: self.rank,
                    expected: seg.len(),
                });
            }
            recv[seg].copy_from_slice(&part);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic value for rank `r`, element `i`: mixed magnitudes and
    /// signs so that the order of summation shows in the low bits.
    fn value(r: usize, i: usize) -> f32 {
        let x = ((r * 7919 + i * 104_729) % 1000) as f32 / 7.0 - 60.0;
        x * 10f32.powi((i % 5) as i32 - 2)
    }

    #[test]
    fn zero_ranks_is_an_error() {
        assert_eq!(ThreadGroup::new(0), Err(DistError::EmptyGroup));
    }

    #[test]
    fn all_reduce_sums_in_rank_order_on_every_rank() {
        for size in 1..=3 {
            let n = 11;
            let out = ThreadGroup::new(size)
                .unwrap()
                .run(|c| {
                    let mut v: Vec<f32> = (0..n).map(|i| value(c.rank(), i)).collect();
                    c.all_reduce_sum_f32(&mut v).map(|()| v)
                })
                .unwrap();
            let expected: Vec<f32> = (0..n)
                .map(|i| (1..size).fold(value(0, i), |acc, r| acc + value(r, i)))
                .collect();
            for v in out {
                let v = v.unwrap();
                assert_eq!(
                    v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    expected.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                );
            }
        }
    }

    #[test]
    fn all_reduce_f64_is_exact_on_integers() {
        let out = ThreadGroup::new(3)
            .unwrap()
            .run(|c| {
                let mut v = [c.rank() as f64, 1.0, -(c.rank() as f64) * 0.5];
                c.all_reduce_sum_f64(&mut v).map(|()| v)
            })
            .unwrap();
        for v in out {
            assert_eq!(v.unwrap(), [3.0, 3.0, -1.5]);
        }
    }

    #[test]
    fn reduce_scatter_and_all_gather_with_uneven_counts() {
        let counts = [3usize, 0, 2];
        let out = ThreadGroup::new(3)
            .unwrap()
            .run(|c| {
                let send: Vec<f32> = (0..5).map(|i| value(c.rank(), i)).collect();
                let mut mine = vec![0.0f32; counts[c.rank()]];
                c.reduce_scatter_sum_f32(&send, &counts, &mut mine)?;
                let mut all = vec![0.0f32; 5];
                c.all_gather_f32(&mine, &counts, &mut all)?;
                Ok::<_, DistError>((mine, all))
            })
            .unwrap();
        let expected: Vec<f32> = (0..5)
            .map(|i| (value(0, i) + value(1, i)) + value(2, i))
            .collect();
        for (rank, r) in out.into_iter().enumerate() {
            let (mine, all) = r.unwrap();
            assert_eq!(mine, expected[segments(&counts)[rank].clone()]);
            assert_eq!(all, expected);
        }
    }

    #[test]
    fn broadcast_replaces_every_buffer() {
        let out = ThreadGroup::new(3)
            .unwrap()
            .run(|c| {
                let mut b = vec![c.rank() as u8; c.rank() + 1];
                c.barrier()?;
                c.broadcast_bytes(2, &mut b).map(|()| b)
            })
            .unwrap();
        for b in out {
            assert_eq!(b.unwrap(), vec![2u8, 2, 2]);
        }
    }

    #[test]
    fn wrong_lengths_are_errors_not_hangs() {
        let out = ThreadGroup::new(2)
            .unwrap()
            .run(|c| {
                let mut v = vec![1.0f32; 2 + c.rank()];
                c.all_reduce_sum_f32(&mut v)
            })
            .unwrap();
        assert_eq!(
            out[0],
            Err(DistError::LengthDisagreement {
                op: "all_reduce_sum_f32",
                rank: 1,
                found: 3,
                reference: 0,
                expected: 2
            })
        );
        let out = ThreadGroup::new(2)
            .unwrap()
            .run(|c| {
                let mut recv = [0.0f32; 1];
                c.reduce_scatter_sum_f32(&[1.0, 2.0], &[1, 1, 0], &mut recv)
            })
            .unwrap();
        assert!(matches!(
            out[1],
            Err(DistError::CountsLength {
                found: 3,
                size: 2,
                ..
            })
        ));
    }

    #[test]
    fn a_rank_that_leaves_is_reported_not_waited_for() {
        let out = ThreadGroup::new(3)
            .unwrap()
            .run(|c| if c.rank() == 2 { Ok(()) } else { c.barrier() })
            .unwrap();
        assert_eq!(out[2], Ok(()));
        // Ranks 0 and 1 both return. Each names a rank gone before it: rank
        // 2, or the other one when that one returned first (having found
        // rank 2 gone), so which is named depends on the scheduling.
        for (rank, result) in out.iter().enumerate().take(2) {
            match result {
                Err(DistError::PeerGone {
                    op: "barrier",
                    rank: gone,
                }) => {
                    assert_ne!(*gone, rank, "rank {rank} names itself")
                }
                other => panic!("rank {rank}: {other:?}"),
            }
        }
        let gone = DistError::PeerGone {
            op: "barrier",
            rank: 2,
        };
        assert!(out.contains(&Err(gone)), "{out:?}");
    }

    #[test]
    fn a_panicking_rank_is_named() {
        let out = ThreadGroup::new(2).unwrap().run(|c| {
            if c.rank() == 1 {
                panic!("rank one fails");
            }
            c.barrier()
        });
        assert_eq!(
            out.err(),
            Some(DistError::RankPanicked {
                rank: 1,
                message: "rank one fails".into()
            })
        );
    }
}
