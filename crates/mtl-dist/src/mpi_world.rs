//! The MPI backend (cargo feature `mpi`): ranks are the processes of
//! `MPI_COMM_WORLD`, through rsmpi.
//!
//! Reductions do not use `MPI_Allreduce` or `MPI_Reduce_scatter`, whose
//! summation order depends on the MPI library, its algorithm choice and the
//! message size. Instead each rank owns a balanced slice of the elements:
//! an `MPI_Alltoallv` brings every rank's contribution to that slice to its
//! owner, the owner sums them in rank order, and an `MPI_Allgatherv` copies
//! the sums to every rank. That moves the same `2(W−1)/W · n` values per rank
//! as a ring all-reduce, and the bits are those of every other backend.

use std::cell::RefCell;
use std::ops::Add;

use mpi::datatype::{Equivalence, Partition, PartitionMut};
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator as _, CommunicatorCollectives, Root};
use mpi::{Count, Threading};

use crate::communicator::Communicator;
use crate::error::{DistError, Result};
use crate::rank_order::{check_counts, check_len, check_rank, segments, sum_in_rank_order};
use crate::shard::split_counts;

/// The processes of an MPI job (`MPI_COMM_WORLD`) as a [`Communicator`].
///
/// Built once per process with [`Mpi::init`]; dropping it finalises MPI, so
/// keep it alive until the end of `main` and let it drop before the process
/// exits (`std::process::exit` skips destructors: drop it first, or MPI's
/// starter reports that the process ended without finalising).
pub struct Mpi {
    // Declared before `universe` so that it is dropped before MPI_Finalize.
    world: SimpleCommunicator,
    _universe: Universe,
    rank: usize,
    size: usize,
    /// Receive buffers of the reductions, kept between calls so that a
    /// training step allocates nothing.
    scratch_f32: RefCell<Vec<f32>>,
    /// As `scratch_f32`, for `f64` reductions.
    scratch_f64: RefCell<Vec<f64>>,
}

/// The element types the reductions handle, each with its scratch buffer.
trait Element: Equivalence + Copy + Default + Add<Output = Self> {
    fn scratch(mpi: &Mpi) -> &RefCell<Vec<Self>>;
}

impl Element for f32 {
    fn scratch(mpi: &Mpi) -> &RefCell<Vec<Self>> {
        &mpi.scratch_f32
    }
}

impl Element for f64 {
    fn scratch(mpi: &Mpi) -> &RefCell<Vec<Self>> {
        &mpi.scratch_f64
    }
}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mpi")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Mpi {
    /// Initialises MPI (thread level *funneled*: only the thread that called
    /// `init` makes MPI calls; compute threads such as rayon's are fine).
    ///
    /// # Errors
    ///
    /// [`DistError::MpiInit`] when MPI was initialised already in this
    /// process.
    pub fn init() -> Result<Self> {
        let (universe, _provided) = mpi::initialize_with_threading(Threading::Funneled)
            .ok_or_else(|| DistError::MpiInit {
                reason: "MPI was already initialised in this process".into(),
            })?;
        let world = universe.world();
        let rank = usize::try_from(world.rank()).expect("MPI ranks are non-negative");
        let size = usize::try_from(world.size()).expect("MPI sizes are positive");
        Ok(Self {
            world,
            _universe: universe,
            rank,
            size,
            scratch_f32: RefCell::new(Vec::new()),
            scratch_f64: RefCell::new(Vec::new()),
        })
    }

    /// The name of the host this rank runs on (`MPI_Get_processor_name`).
    pub fn processor_name(&self) -> String {
        mpi::environment::processor_name().unwrap_or_default()
    }

    /// Wall-clock time in seconds (`MPI_Wtime`), for timing collectives.
    pub fn time(&self) -> f64 {
        mpi::time()
    }

    /// Ends every process of the job with `exit_code` (`MPI_Abort`). The last
    /// resort: prefer [`Communicator::agree`] and a normal exit on every
    /// rank, which lets MPI finalise and the job report one status.
    pub fn abort(&self, exit_code: i32) -> ! {
        self.world.abort(exit_code)
    }

    /// Generic reduce-scatter in rank order (see the module docs); `parts`
    /// (`size · counts[rank]` values) receives every rank's segment for this
    /// rank before they are summed.
    fn reduce_scatter<T: Element>(
        &self,
        op: &'static str,
        send: &[T],
        counts: &[usize],
        parts: &mut [T],
        recv: &mut [T],
    ) -> Result<()> {
        let total = check_counts(op, counts, self.size)?;
        check_len(op, "send", send.len(), total)?;
        let mine = counts[self.rank];
        check_len(op, "receive", recv.len(), mine)?;
        let send_counts = to_counts(op, counts)?;
        let send_displs = displacements(op, counts)?;
        let from_each = vec![mine; self.size];
        let recv_counts = to_counts(op, &from_each)?;
        let recv_displs = displacements(op, &from_each)?;
        check_len(op, "scratch", parts.len(), mine * self.size)?;
        {
            let sendbuf = Partition::new(send, send_counts, send_displs);
            let mut recvbuf = PartitionMut::new(&mut parts[..], recv_counts, recv_displs);
            self.world.all_to_all_varcount_into(&sendbuf, &mut recvbuf);
        }
        if mine > 0 {
            sum_in_rank_order(parts.chunks_exact(mine), recv);
        }
        Ok(())
    }

    /// Generic all-gather with uneven counts.
    fn all_gather<T: Equivalence>(
        &self,
        op: &'static str,
        send: &[T],
        counts: &[usize],
        recv: &mut [T],
    ) -> Result<()> {
        let total = check_counts(op, counts, self.size)?;
        check_len(op, "send", send.len(), counts[self.rank])?;
        check_len(op, "receive", recv.len(), total)?;
        let recv_counts = to_counts(op, counts)?;
        let recv_displs = displacements(op, counts)?;
        let mut recvbuf = PartitionMut::new(recv, recv_counts, recv_displs);
        self.world.all_gather_varcount_into(send, &mut recvbuf);
        Ok(())
    }

    /// All-reduce as reduce-scatter over a balanced split, then all-gather;
    /// the scratch buffer holds the received segments and the summed slice.
    fn all_reduce<T: Element>(&self, op: &'static str, values: &mut [T]) -> Result<()> {
        if self.size == 1 {
            return Ok(());
        }
        let counts = split_counts(values.len(), self.size)?;
        let mine = counts[self.rank];
        let mut scratch = T::scratch(self).borrow_mut();
        scratch.resize(mine * (self.size + 1), T::default());
        let (parts, reduced) = scratch.split_at_mut(mine * self.size);
        self.reduce_scatter(op, values, &counts, parts, reduced)?;
        self.all_gather(op, reduced, &counts, values)
    }
}

/// `counts` as MPI counts.
fn to_counts(op: &'static str, counts: &[usize]) -> Result<Vec<Count>> {
    counts.iter().map(|&c| to_count(op, c)).collect()
}

/// Offsets of consecutive segments of lengths `counts`, as MPI counts.
fn displacements(op: &'static str, counts: &[usize]) -> Result<Vec<Count>> {
    segments(counts)
        .into_iter()
        .map(|s| to_count(op, s.end).and(to_count(op, s.start)))
        .collect()
}

fn to_count(op: &'static str, n: usize) -> Result<Count> {
    Count::try_from(n).map_err(|_| DistError::CountTooLarge {
        op,
        count: n,
        limit: Count::MAX as usize,
    })
}

impl Communicator for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum_f32(&self, values: &mut [f32]) -> Result<()> {
        self.all_reduce("all_reduce_sum_f32", values)
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        self.all_reduce("all_reduce_sum_f64", values)
    }

    fn broadcast_bytes(&self, root: usize, bytes: &mut Vec<u8>) -> Result<()> {
        check_rank(root, self.size)?;
        let root_process = self
            .world
            .process_at_rank(to_count("broadcast_bytes", root)?);
        let mut len = bytes.len() as u64;
        root_process.broadcast_into(&mut len);
        // Every rank checks the same length, so all fail or none does.
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        to_count("broadcast_bytes", len)?;
        bytes.resize(len, 0);
        root_process.broadcast_into(&mut bytes[..]);
        Ok(())
    }

    fn barrier(&self) -> Result<()> {
        self.world.barrier();
        Ok(())
    }

    fn reduce_scatter_sum_f32(
        &self,
        send: &[f32],
        counts: &[usize],
        recv: &mut [f32],
    ) -> Result<()> {
        let mut parts = self.scratch_f32.borrow_mut();
        let needed = counts.get(self.rank).map_or(0, |c| c * self.size);
        parts.resize(needed, 0.0);
        self.reduce_scatter("reduce_scatter_sum_f32", send, counts, &mut parts, recv)
    }

    fn all_gather_f32(&self, send: &[f32], counts: &[usize], recv: &mut [f32]) -> Result<()> {
        self.all_gather("all_gather_f32", send, counts, recv)
    }
}
