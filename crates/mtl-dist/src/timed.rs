//! [`Timed`]: any [`Communicator`] with a stopwatch and a byte counter on
//! every collective.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::comm_stats::{Collective, CommStats};
use crate::communicator::Communicator;
use crate::error::Result;

/// A [`Communicator`] that forwards every collective to `inner` and records,
/// per [`Collective`] kind, the calls, the payload bytes (see
/// [`crate::CollectiveStats::bytes`]) and the wall time from entry to
/// return. Results, errors and bits are those of `inner`.
///
/// The counters live behind a [`StatsHandle`] that can be cloned before the
/// communicator is handed to a trainer (which takes it by value), so a
/// benchmark reads what a training step spent communicating:
///
/// ```
/// use mtl_dist::{Collective, Communicator, ThreadGroup, Timed};
///
/// let bytes = ThreadGroup::new(2)?.run(|comm| {
///     let timed = Timed::new(comm);
///     let stats = timed.handle();
///     let mut grad = vec![1.0f32; 100];
///     timed.all_reduce_sum_f32(&mut grad)?;
///     assert_eq!(grad[0], 2.0);
///     Ok::<_, mtl_dist::DistError>(stats.take().get(Collective::AllReduceF32).bytes)
/// })?;
/// for b in bytes {
///     assert_eq!(b?, 400);
/// }
/// # Ok::<(), mtl_dist::DistError>(())
/// ```
///
/// [`Communicator::agree`] is not overridden: it runs through this wrapper's
/// all-reduce and broadcast and is recorded as those. The cost of the
/// recording is one lock of an uncontended mutex and two clock reads per
/// collective.
#[derive(Debug)]
pub struct Timed<C> {
    inner: C,
    stats: StatsHandle,
}

/// A shared view of a [`Timed`] communicator's counters; clones see the
/// same counters.
#[derive(Debug, Clone, Default)]
pub struct StatsHandle {
    stats: Arc<Mutex<CommStats>>,
}

impl StatsHandle {
    /// The totals recorded so far.
    pub fn snapshot(&self) -> CommStats {
        *self.lock()
    }

    /// The totals recorded so far, and zero for the next.
    pub fn take(&self) -> CommStats {
        std::mem::take(&mut *self.lock())
    }

    fn record(&self, kind: Collective, bytes: usize, time: Duration) {
        self.lock().record(kind, bytes as u64, time);
    }

    /// The counters; a panic elsewhere while they were locked leaves them
    /// consistent (each update is one call of `record`), so a poisoned lock
    /// is used as it is.
    fn lock(&self) -> std::sync::MutexGuard<'_, CommStats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<C: Communicator> Timed<C> {
    /// Wraps `inner`, with all counters at zero.
    pub fn new(inner: C) -> Self {
        Self {
            inner,
            stats: StatsHandle::default(),
        }
    }

    /// A handle on the counters, valid after this communicator is moved.
    pub fn handle(&self) -> StatsHandle {
        self.stats.clone()
    }

    /// The wrapped communicator.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// The wrapped communicator, unwrapped.
    pub fn into_inner(self) -> C {
        self.inner
    }

    /// Runs `op`, records its wall time and `bytes()` (read after the call,
    /// so a broadcast counts the message it received) under `kind`.
    fn timed<T>(
        &self,
        kind: Collective,
        op: impl FnOnce(&C) -> Result<T>,
        bytes: impl FnOnce() -> usize,
    ) -> Result<T> {
        let start = Instant::now();
        let out = op(&self.inner);
        let elapsed = start.elapsed();
        self.stats.record(kind, bytes(), elapsed);
        out
    }
}

impl<C: Communicator> Communicator for Timed<C> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }

    fn size(&self) -> usize {
        self.inner.size()
    }

    fn all_reduce_sum_f32(&self, values: &mut [f32]) -> Result<()> {
        let bytes = std::mem::size_of_val(values);
        self.timed(
            Collective::AllReduceF32,
            |c| c.all_reduce_sum_f32(values),
            || bytes,
        )
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        let bytes = std::mem::size_of_val(values);
        self.timed(
            Collective::AllReduceF64,
            |c| c.all_reduce_sum_f64(values),
            || bytes,
        )
    }

    fn broadcast_bytes(&self, root: usize, bytes: &mut Vec<u8>) -> Result<()> {
        let start = Instant::now();
        let out = self.inner.broadcast_bytes(root, bytes);
        self.stats
            .record(Collective::Broadcast, bytes.len(), start.elapsed());
        out
    }

    fn barrier(&self) -> Result<()> {
        self.timed(Collective::Barrier, |c| c.barrier(), || 0)
    }

    fn reduce_scatter_sum_f32(
        &self,
        send: &[f32],
        counts: &[usize],
        recv: &mut [f32],
    ) -> Result<()> {
        self.timed(
            Collective::ReduceScatterF32,
            |c| c.reduce_scatter_sum_f32(send, counts, recv),
            || std::mem::size_of_val(send),
        )
    }

    fn all_gather_f32(&self, send: &[f32], counts: &[usize], recv: &mut [f32]) -> Result<()> {
        let bytes = std::mem::size_of_val(recv);
        self.timed(
            Collective::AllGatherF32,
            |c| c.all_gather_f32(send, counts, recv),
            || bytes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comm_stats::CollectiveStats;
    use crate::{SingleProcess, ThreadGroup};

    /// How long rank 0 sleeps before the barrier in the timing test, and the
    /// least the other ranks must have waited there: the threads start
    /// within a few milliseconds of each other, far less than the margin.
    const SLEEP: Duration = Duration::from_millis(60);
    const LEAST_WAIT: Duration = Duration::from_millis(30);

    /// One scripted series of collectives on 3 ranks; returns each rank's
    /// results and counters.
    fn script(comm: &dyn Communicator) -> Result<(Vec<f32>, Vec<f32>, Vec<u8>)> {
        let r = comm.rank() as f32;
        let mut a = vec![r, 1.0, 2.0, 3.0, 4.0];
        comm.all_reduce_sum_f32(&mut a)?;
        comm.all_reduce_sum_f32(&mut a[..2])?;
        let mut g = vec![f64::from(r); 3];
        comm.all_reduce_sum_f64(&mut g)?;
        let counts = [1, 2, 3];
        let send: Vec<f32> = (0..6).map(|i| i as f32 + r).collect();
        let mut mine = vec![0.0f32; counts[comm.rank()]];
        comm.reduce_scatter_sum_f32(&send, &counts, &mut mine)?;
        let mut all = vec![0.0f32; 6];
        comm.all_gather_f32(&mine, &counts, &mut all)?;
        let mut msg = if comm.rank() == 1 {
            b"seven!!".to_vec()
        } else {
            Vec::new()
        };
        comm.broadcast_bytes(1, &mut msg)?;
        comm.barrier()?;
        assert_eq!(comm.agree(None)?, None);
        Ok((a, all, msg))
    }

    #[test]
    fn counts_and_bytes_are_exact_and_results_unchanged() {
        let group = ThreadGroup::new(3).unwrap();
        let plain = group.run(|c| script(c).unwrap()).unwrap();
        let timed = group
            .run(|c| {
                let t = Timed::new(c);
                let out = script(&t).unwrap();
                (out, t.handle().snapshot())
            })
            .unwrap();
        for (rank, (p, (t, stats))) in plain.iter().zip(&timed).enumerate() {
            assert_eq!(p, t, "rank {rank}");
            let expect = |kind, calls, bytes| {
                let s = stats.get(kind);
                assert_eq!((s.calls, s.bytes), (calls, bytes), "rank {rank}, {kind:?}");
            };
            // 5 + 2 values of f32.
            expect(Collective::AllReduceF32, 2, 4 * 7);
            // 3 values of f64, and agree's 3 flags.
            expect(Collective::AllReduceF64, 2, 8 * 3 + 8 * 3);
            expect(Collective::ReduceScatterF32, 1, 4 * 6);
            expect(Collective::AllGatherF32, 1, 4 * 6);
            expect(Collective::Broadcast, 1, 7);
            expect(Collective::Barrier, 1, 0);
            assert_eq!(stats.total().calls, 8);
            assert_eq!(stats.total().bytes, 28 + 48 + 24 + 24 + 7);
        }
        assert_eq!(timed[0].0 .2, b"seven!!");
    }

    #[test]
    fn waiting_for_a_slow_rank_is_timed() {
        let waits = ThreadGroup::new(3)
            .unwrap()
            .run(|c| {
                let t = Timed::new(c);
                if t.rank() == 0 {
                    std::thread::sleep(SLEEP);
                }
                t.barrier().unwrap();
                t.handle().take().get(Collective::Barrier)
            })
            .unwrap();
        for w in &waits[1..] {
            assert_eq!(w.calls, 1);
            assert!(w.time >= LEAST_WAIT, "waited {:?}", w.time);
        }
    }

    #[test]
    fn take_resets_and_handles_share_counters() {
        let t = Timed::new(SingleProcess);
        let h = t.handle();
        let mut v = [1.0f32; 10];
        t.all_reduce_sum_f32(&mut v).unwrap();
        let boxed: Box<dyn Communicator + Send> = Box::new(t);
        boxed.all_reduce_sum_f32(&mut v).unwrap();
        assert_eq!(h.clone().snapshot().get(Collective::AllReduceF32).calls, 2);
        assert_eq!(h.take().get(Collective::AllReduceF32).bytes, 80);
        assert_eq!(h.snapshot(), CommStats::default());
        assert_eq!(
            h.snapshot().get(Collective::Barrier),
            CollectiveStats::default()
        );
    }

    #[test]
    fn errors_pass_through_and_are_counted() {
        let t = Timed::new(SingleProcess);
        let mut out = [0.0f32; 2];
        let err = t.all_gather_f32(&[1.0], &[3], &mut out).unwrap_err();
        assert_eq!(
            Err(err),
            SingleProcess.all_gather_f32(&[1.0], &[3], &mut out)
        );
        assert_eq!(t.handle().snapshot().get(Collective::AllGatherF32).calls, 1);
    }
}
