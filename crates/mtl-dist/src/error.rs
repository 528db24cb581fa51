//! The error type of the crate.

/// Everything that can go wrong in `mtl-dist`.
///
/// Every variant names the rank, length or count at fault so that a caller can
/// report it in one line without further context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DistError {
    /// A global batch has fewer rows than there are ranks, so some rank
    /// would get an empty shard.
    #[error("{size} ranks but only {rows} rows in a global batch: every rank needs at least one row (use fewer ranks or a larger batch)")]
    MoreRanksThanRows {
        /// Number of ranks.
        size: usize,
        /// Rows in the global batch.
        rows: usize,
    },
    /// A rank index is not below the number of ranks.
    #[error("rank {rank} is out of range for {size} ranks")]
    RankOutOfRange {
        /// The rank given.
        rank: usize,
        /// Number of ranks.
        size: usize,
    },
    /// A group of zero ranks was requested.
    #[error("a communicator needs at least one rank")]
    EmptyGroup,
    /// The per-rank counts of a collective do not have one entry per rank.
    #[error("`{op}` got {found} per-rank counts for {size} ranks")]
    CountsLength {
        /// The collective.
        op: &'static str,
        /// Entries given.
        found: usize,
        /// Number of ranks.
        size: usize,
    },
    /// A buffer's length does not match what the collective needs.
    #[error("`{op}`: {buffer} buffer has length {found}, expected {expected}")]
    BufferLength {
        /// The collective.
        op: &'static str,
        /// Which buffer (`send`, `receive`, `rows`, ...).
        buffer: &'static str,
        /// Length given.
        found: usize,
        /// Length expected.
        expected: usize,
    },
    /// Ranks called the same collective with different lengths.
    #[error("`{op}`: rank {rank} contributed {found} values but rank {reference} contributed {expected}")]
    LengthDisagreement {
        /// The collective.
        op: &'static str,
        /// The first rank whose length differs.
        rank: usize,
        /// Its length.
        found: usize,
        /// The rank compared against.
        reference: usize,
        /// That rank's length.
        expected: usize,
    },
    /// A count does not fit the MPI count type (`int`).
    #[error("`{op}`: {count} values exceed the MPI count limit of {limit}")]
    CountTooLarge {
        /// The collective.
        op: &'static str,
        /// The count.
        count: usize,
        /// The largest count MPI accepts.
        limit: usize,
    },
    /// Another rank of the group stopped (its thread ended or panicked)
    /// before taking part in a collective.
    #[error("rank {rank} left the group during `{op}`")]
    PeerGone {
        /// The collective.
        op: &'static str,
        /// The rank that is gone.
        rank: usize,
    },
    /// Ranks of a [`crate::ThreadGroup`] called different collectives at the
    /// same point of their programs.
    #[error("rank {rank} called another collective while this rank was in `{op}`")]
    CollectiveMismatch {
        /// The collective this rank was in.
        op: &'static str,
        /// The rank whose message did not match.
        rank: usize,
    },
    /// A rank of a [`crate::ThreadGroup`] panicked.
    #[error("rank {rank} panicked: {message}")]
    RankPanicked {
        /// The rank.
        rank: usize,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// The run configuration differs between ranks.
    #[error("rank {rank} has configuration hash {found:016x} but rank 0 has {expected:016x}: every rank must run the same configuration")]
    ConfigMismatch {
        /// The lowest rank whose hash differs from rank 0's.
        rank: usize,
        /// Its hash.
        found: u64,
        /// Rank 0's hash.
        expected: u64,
    },
    /// Parameters differ between ranks (their checksums disagree).
    #[error(
        "parameters diverged: rank {rank} has checksum {found:016x} but rank 0 has {expected:016x}"
    )]
    ParametersDiverged {
        /// The lowest rank whose checksum differs from rank 0's.
        rank: usize,
        /// Its checksum.
        found: u64,
        /// Rank 0's checksum.
        expected: u64,
    },
    /// MPI was initialised already, or could not be initialised.
    #[error("MPI could not be initialised: {reason}")]
    MpiInit {
        /// Why.
        reason: String,
    },
    /// A message received during error agreement could not be decoded.
    #[error("malformed failure message from rank {rank}")]
    MalformedFailure {
        /// The rank that sent it.
        rank: usize,
    },
}

/// Result type of the crate.
pub type Result<T> = std::result::Result<T, DistError>;
