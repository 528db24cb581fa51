//! The error type of the `mtl` command: a training error, a mistake on the
//! command line, or a plot that could not be drawn. Every failure names its
//! culprit (file, key, flag, task, step) so a user can act on it.

use std::path::PathBuf;

use mtl_train::TrainError;

/// Everything that can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Reading data, building, training, evaluating or checkpointing failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// A command-line argument is invalid.
    #[error("{flag}: {message}")]
    Usage {
        /// The flag or argument, e.g. `--split`.
        flag: String,
        /// What is wrong with it.
        message: String,
    },
    /// A plot could not be drawn.
    #[error("plot {path}: {message}")]
    Plot {
        /// The image file.
        path: PathBuf,
        /// The drawing backend's reason.
        message: String,
    },
}

impl CliError {
    /// The exit status: 1 for a failure during training (divergence) or of
    /// a plot, 2 for bad input (command line, configuration, data file,
    /// checkpoint).
    pub fn exit_status(&self) -> u8 {
        match self {
            CliError::Train(TrainError::Diverged { .. }) | CliError::Plot { .. } => 1,
            // Data parallelism: the status every rank agreed on.
            CliError::Train(TrainError::Rank(f)) => u8::try_from(f.failure.exit_code).unwrap_or(2),
            _ => 2,
        }
    }

    /// A usage error for `flag`.
    pub fn usage(flag: &str, message: impl Into<String>) -> Self {
        CliError::Usage {
            flag: flag.into(),
            message: message.into(),
        }
    }
}

macro_rules! via_train_error {
    ($($t:ty),*) => {$(
        impl From<$t> for CliError {
            fn from(e: $t) -> Self {
                CliError::Train(e.into())
            }
        }
    )*};
}

via_train_error!(
    mtl_core::CoreError,
    mtl_losses::Error,
    mtl_optim::OptimError,
    mtl_data::DataError
);

/// Result type of `mtl-cli`.
pub type Result<T> = std::result::Result<T, CliError>;

/// Attaches the path to an I/O error.
pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CliError {
    let io = mtl_train::error::io(path);
    move |source| CliError::Train(io(source))
}
