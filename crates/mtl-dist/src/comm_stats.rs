//! What a rank spent in collectives: calls, bytes and wall time per kind of
//! collective ([`CommStats`]), as a [`crate::Timed`] communicator records
//! them.

use std::time::Duration;

/// The kinds of collective a [`crate::Communicator`] offers.
///
/// [`crate::Communicator::agree`] is not a kind of its own: it is made of an
/// all-reduce of `size()` `f64` flags (and a broadcast of the message when
/// some rank failed), recorded as those collectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Collective {
    /// [`crate::Communicator::all_reduce_sum_f32`].
    AllReduceF32,
    /// [`crate::Communicator::all_reduce_sum_f64`].
    AllReduceF64,
    /// [`crate::Communicator::reduce_scatter_sum_f32`].
    ReduceScatterF32,
    /// [`crate::Communicator::all_gather_f32`].
    AllGatherF32,
    /// [`crate::Communicator::broadcast_bytes`].
    Broadcast,
    /// [`crate::Communicator::barrier`].
    Barrier,
}

impl Collective {
    /// Every kind, in the order of the enum.
    pub const ALL: [Collective; 6] = [
        Collective::AllReduceF32,
        Collective::AllReduceF64,
        Collective::ReduceScatterF32,
        Collective::AllGatherF32,
        Collective::Broadcast,
        Collective::Barrier,
    ];

    /// A short name for tables (`"all_reduce_f32"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Collective::AllReduceF32 => "all_reduce_f32",
            Collective::AllReduceF64 => "all_reduce_f64",
            Collective::ReduceScatterF32 => "reduce_scatter_f32",
            Collective::AllGatherF32 => "all_gather_f32",
            Collective::Broadcast => "broadcast",
            Collective::Barrier => "barrier",
        }
    }

    /// Bytes one rank sends for a collective of `bytes` payload bytes (as
    /// [`CollectiveStats::bytes`] counts them) on `size` ranks, under the
    /// bandwidth-optimal algorithms: with `f = (size − 1)/size`, an
    /// all-reduce sends `2f·bytes` (ring, or reduce-scatter then all-gather
    /// as every backend of this crate does), a reduce-scatter or an
    /// all-gather `f·bytes`, a broadcast `f·bytes` on average over the ranks
    /// (a chain: every rank but the last forwards the message once), a
    /// barrier nothing. Equal shares are assumed, which uneven counts miss
    /// by at most one element per rank and segment.
    pub fn sent_per_rank(self, bytes: f64, size: usize) -> f64 {
        let f = (size.max(1) - 1) as f64 / size.max(1) as f64;
        match self {
            Collective::AllReduceF32 | Collective::AllReduceF64 => 2.0 * f * bytes,
            Collective::ReduceScatterF32 | Collective::AllGatherF32 | Collective::Broadcast => {
                f * bytes
            }
            Collective::Barrier => 0.0,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Totals of one kind of collective.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CollectiveStats {
    /// Number of calls.
    pub calls: u64,
    /// Payload bytes, summed over the calls: the size of the whole vector
    /// the collective works on, the same on every rank. For an all-reduce
    /// the buffer (`4·len` or `8·len`); for a reduce-scatter the summed
    /// vector (`4·Σ counts`, what each rank passes as `send`); for an
    /// all-gather the gathered vector (`4·Σ counts`, the `recv` buffer); for
    /// a broadcast the message (its length after the call); a barrier moves
    /// none. What a rank sends over the wire follows from the algorithm:
    /// [`Collective::sent_per_rank`].
    pub bytes: u64,
    /// Wall time spent in the calls, from entry to return on this rank
    /// (waiting for slower ranks included).
    pub time: Duration,
}

impl CollectiveStats {
    /// Adds one call of `bytes` payload bytes that took `time`.
    fn record(&mut self, bytes: u64, time: Duration) {
        self.calls += 1;
        self.bytes += bytes;
        self.time += time;
    }

    /// The sum of these totals and `other`'s.
    fn plus(&self, other: &CollectiveStats) -> CollectiveStats {
        CollectiveStats {
            calls: self.calls + other.calls,
            bytes: self.bytes + other.bytes,
            time: self.time + other.time,
        }
    }

    /// These totals less `earlier`'s (saturating at zero).
    fn since(&self, earlier: &CollectiveStats) -> CollectiveStats {
        CollectiveStats {
            calls: self.calls.saturating_sub(earlier.calls),
            bytes: self.bytes.saturating_sub(earlier.bytes),
            time: self.time.saturating_sub(earlier.time),
        }
    }
}

/// Calls, payload bytes and wall time of one rank's collectives, per
/// [`Collective`] kind.
///
/// ```
/// use std::time::Duration;
/// use mtl_dist::{Collective, CommStats};
///
/// let mut stats = CommStats::default();
/// stats.record(Collective::AllReduceF32, 400, Duration::from_micros(30));
/// stats.record(Collective::Barrier, 0, Duration::from_micros(5));
/// assert_eq!(stats.get(Collective::AllReduceF32).bytes, 400);
/// assert_eq!(stats.total().calls, 2);
/// assert_eq!(stats.total().time, Duration::from_micros(35));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommStats {
    kinds: [CollectiveStats; Collective::ALL.len()],
}

impl CommStats {
    /// Adds one call of `kind` that moved `bytes` payload bytes (see
    /// [`CollectiveStats::bytes`]) and took `time`.
    pub fn record(&mut self, kind: Collective, bytes: u64, time: Duration) {
        self.kinds[kind.index()].record(bytes, time);
    }

    /// The totals of one kind.
    pub fn get(&self, kind: Collective) -> CollectiveStats {
        self.kinds[kind.index()]
    }

    /// Every kind with its totals, in the order of [`Collective::ALL`].
    pub fn iter(&self) -> impl Iterator<Item = (Collective, CollectiveStats)> + '_ {
        Collective::ALL.into_iter().map(|k| (k, self.get(k)))
    }

    /// The totals over all kinds.
    pub fn total(&self) -> CollectiveStats {
        self.kinds
            .iter()
            .fold(CollectiveStats::default(), |acc, s| acc.plus(s))
    }

    /// Adds `other`'s figures to these (e.g. the records of several
    /// repetitions).
    pub fn add(&mut self, other: &CommStats) {
        for (mine, theirs) in self.kinds.iter_mut().zip(&other.kinds) {
            *mine = mine.plus(theirs);
        }
    }

    /// Bytes this rank sent on `size` ranks, summed over the kinds with
    /// [`Collective::sent_per_rank`].
    pub fn sent_per_rank(&self, size: usize) -> f64 {
        self.iter()
            .map(|(k, s)| k.sent_per_rank(s.bytes as f64, size))
            .sum()
    }

    /// What was recorded after `earlier`, a snapshot of the same counters
    /// (each figure less `earlier`'s, saturating at zero).
    pub fn since(&self, earlier: &CommStats) -> CommStats {
        let mut out = CommStats::default();
        for (o, (now, then)) in out
            .kinds
            .iter_mut()
            .zip(self.kinds.iter().zip(&earlier.kinds))
        {
            *o = now.since(then);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_index_their_own_slot() {
        let mut s = CommStats::default();
        for (i, k) in Collective::ALL.into_iter().enumerate() {
            s.record(k, i as u64, Duration::from_nanos(10 * i as u64));
        }
        for (i, (k, st)) in s.iter().enumerate() {
            assert_eq!(k, Collective::ALL[i]);
            assert_eq!(
                st,
                CollectiveStats {
                    calls: 1,
                    bytes: i as u64,
                    time: Duration::from_nanos(10 * i as u64)
                }
            );
        }
        assert_eq!(s.total().bytes, 15);
        assert_eq!(s.total().time, Duration::from_nanos(150));
    }

    #[test]
    fn since_subtracts_an_earlier_snapshot() {
        let mut s = CommStats::default();
        s.record(Collective::AllGatherF32, 8, Duration::from_micros(2));
        let earlier = s;
        s.record(Collective::AllGatherF32, 12, Duration::from_micros(3));
        s.record(Collective::Broadcast, 5, Duration::from_micros(1));
        let d = s.since(&earlier);
        assert_eq!(
            d.get(Collective::AllGatherF32),
            CollectiveStats {
                calls: 1,
                bytes: 12,
                time: Duration::from_micros(3)
            }
        );
        assert_eq!(d.get(Collective::Broadcast).calls, 1);
        assert_eq!(d.total().calls, 2);
        assert_eq!(earlier.since(&s), CommStats::default());
        let mut sum = earlier;
        sum.add(&d);
        assert_eq!(sum, s);
    }

    #[test]
    fn sent_bytes_follow_the_ring_formulas() {
        // W = 4: f = 3/4.
        assert_eq!(Collective::AllReduceF32.sent_per_rank(1000.0, 4), 1500.0);
        assert_eq!(Collective::ReduceScatterF32.sent_per_rank(1000.0, 4), 750.0);
        assert_eq!(Collective::AllGatherF32.sent_per_rank(1000.0, 4), 750.0);
        assert_eq!(Collective::Barrier.sent_per_rank(1000.0, 4), 0.0);
        // One rank sends nothing.
        assert_eq!(Collective::AllReduceF64.sent_per_rank(1000.0, 1), 0.0);
        let mut s = CommStats::default();
        s.record(Collective::AllReduceF32, 400, Duration::ZERO);
        s.record(Collective::ReduceScatterF32, 800, Duration::ZERO);
        // W = 2: all-reduce sends its payload once, reduce-scatter half.
        assert_eq!(s.sent_per_rank(2), 400.0 + 400.0);
    }
}
