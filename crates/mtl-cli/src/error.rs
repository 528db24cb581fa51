//! The error type of `mtl-cli`: every failure names its culprit (file, key,
//! task, step) so a user can act on it.

use std::path::PathBuf;

/// Everything that can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
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
    /// A plot could not be drawn.
    #[error("plot {path}: {message}")]
    Plot {
        /// The image file.
        path: PathBuf,
        /// The drawing backend's reason.
        message: String,
    },
}

/// Result type of `mtl-cli`.
pub type Result<T> = std::result::Result<T, CliError>;

/// Attaches the path to an I/O error.
pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CliError {
    let path = path.into();
    move |source| CliError::Io { path, source }
}
