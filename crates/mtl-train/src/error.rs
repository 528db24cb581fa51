//! [`TrainError`], the one error type of the training API: it wraps the
//! errors of every `mtl` crate, and every failure names its culprit (file,
//! key, task, step) so a user can act on it.

use std::path::PathBuf;

/// Everything that can stop training, evaluation or a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's reason.
        source: std::io::Error,
    },
    /// The run configuration is invalid (TOML syntax, unknown key, bad value).
    #[error("{path}: {message}")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong and where.
        message: String,
    },
    /// A loss or gradient became NaN or infinite.
    #[error("training diverged at step {step}: {what} is {value}")]
    Diverged {
        /// The optimisation step (from 0).
        step: u64,
        /// The task's loss or the gradient that went bad.
        what: String,
        /// The offending value.
        value: f32,
    },
    /// A checkpoint is missing, damaged or does not fit the configuration.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint directory or file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Pieces of a trainer that do not fit together (a balancer built for
    /// another number of tasks, a model without the representation a
    /// balancer needs, a checkpoint of another model).
    #[error("{what}: {message}")]
    Mismatch {
        /// The piece that does not fit.
        what: String,
        /// How it does not fit.
        message: String,
    },
    /// A training hook asked to stop with an error.
    #[error("hook {hook}: {message}")]
    Hook {
        /// The hook's name.
        hook: String,
        /// What went wrong.
        message: String,
    },
    /// An error from the tensors, graph or architectures.
    #[error(transparent)]
    Core(#[from] mtl_core::CoreError),
    /// An error from the tasks, losses, metrics or balancers.
    #[error(transparent)]
    Losses(#[from] mtl_losses::Error),
    /// An error from the optimizers or schedules.
    #[error(transparent)]
    Optim(#[from] mtl_optim::OptimError),
    /// An error from the data readers and loaders.
    #[error(transparent)]
    Data(#[from] mtl_data::DataError),
    /// The run would not fit in memory, or its sizes overflow.
    #[error("memory budget: {0}")]
    Budget(#[from] mtl_core::budget::BudgetError),
    /// An error of the collective communication between ranks.
    #[error(transparent)]
    Dist(#[from] mtl_dist::DistError),
    /// A failure on one rank of a data-parallel run, agreed by every rank.
    #[error("{0}")]
    Rank(mtl_dist::RankFailure),
}

/// Result type of `mtl-train`.
pub type Result<T> = std::result::Result<T, TrainError>;

/// Attaches the path to an I/O error.
pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.into();
    move |source| TrainError::Io { path, source }
}
