//! Collective communication for data-parallel multi-task training.
//!
//! One global batch is cut into contiguous shards, one per rank; every rank
//! holds the whole model and runs the balancer on identical numbers, so
//! parameters never diverge. This crate is the seam the trainer talks to and
//! the building blocks of each balancer's exchange; the trainer never calls
//! MPI itself.
//!
//! - [`Communicator`]: rank, size, all-reduce (sum) of `f32`/`f64` slices,
//!   broadcast of bytes, barrier, reduce-scatter and all-gather of `f32`
//!   slices with uneven counts, and [`Communicator::agree`], the collective
//!   agreement on failures that stops every rank with one status.
//! - Backends: [`SingleProcess`] (rank 0 of 1, no-ops), [`ThreadGroup`]
//!   (ranks are threads, for tests without MPI) and, with the cargo feature
//!   `mpi` (off by default), `Mpi` over the system MPI library through
//!   rsmpi.
//! - Sharding: [`shard_range`] (rows of a global batch), [`owned_columns`]
//!   (coordinates of a parameter vector), [`split_counts`].
//! - [`ShardedRows`]: the shared-parameter exchange (reduce-scatter of the
//!   `T × P` rows, all-reduced `T × T` Gram of the owned slices, all-gather
//!   of the direction).
//! - Consistency: [`config_hash`] and [`check_same_config`] at start,
//!   [`check_identical_parameters`] in tests.
//! - [`launcher_world_size`]: was this process started by `mpirun`/`srun`?
//! - [`Timed`]: any communicator with calls, payload bytes and wall time
//!   recorded per [`Collective`] kind ([`CommStats`]), for benchmarks.
//! - [`MainThread`]: a communicator that must stay on its thread (MPI's)
//!   handed to `Send` owners such as trainers, and shared between them.
//!
//! # Determinism
//!
//! Every backend sums in rank order (`((v₀ + v₁) + v₂) + …`): each element is
//! summed once, by one rank, and copied to the others. All ranks therefore
//! hold the same bits, runs repeat bit for bit, and a [`ThreadGroup`] of `W`
//! threads gives the bits of an MPI job of `W` processes.
//!
//! ```
//! use mtl_dist::{shard_range, Communicator, Failure, ThreadGroup};
//!
//! // Three ranks share a global batch of 10 rows; the loss is a mean over
//! // the global batch, so each rank weights its shard's sum by 1/10.
//! let losses = ThreadGroup::new(3)?.run(|comm| {
//!     let rows = shard_range(10, comm.rank(), comm.size())?;
//!     let per_row = |i: usize| i as f32;
//!     let mut loss = [rows.map(per_row).sum::<f32>() / 10.0];
//!     comm.all_reduce_sum_f32(&mut loss)?;
//!     // Every rank reaches the same verdict.
//!     let local = (!loss[0].is_finite()).then(|| Failure::new(1, "loss diverged"));
//!     assert_eq!(comm.agree(local)?, None);
//!     Ok::<_, mtl_dist::DistError>(loss[0])
//! })?;
//! for loss in losses {
//!     assert_eq!(loss?, 4.5); // mean of 0..10
//! }
//! # Ok::<(), mtl_dist::DistError>(())
//! ```
#![warn(missing_docs)]

mod comm_stats;
mod communicator;
mod consistency;
mod error;
mod launch;
mod main_thread;
#[cfg(feature = "mpi")]
mod mpi_world;
mod rank_order;
mod shard;
mod sharded_rows;
mod single;
mod thread_group;
mod timed;

pub use comm_stats::{Collective, CollectiveStats, CommStats};
pub use communicator::{Communicator, Failure, RankFailure};
pub use consistency::{
    all_gather_u64, check_identical_parameters, check_same_config, config_hash, parameter_checksum,
};
pub use error::{DistError, Result};
pub use launch::{launcher_world_size, LAUNCHER_SIZE_VARIABLES};
pub use main_thread::MainThread;
#[cfg(feature = "mpi")]
pub use mpi_world::Mpi;
pub use shard::{owned_columns, shard_range, split_counts};
pub use sharded_rows::ShardedRows;
pub use single::SingleProcess;
pub use thread_group::{ThreadCommunicator, ThreadGroup};
pub use timed::{StatsHandle, Timed};
