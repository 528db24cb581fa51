//! The error type of `mtl-data`.

use std::path::PathBuf;

use mtl_core::CoreError;

/// Everything that can go wrong while reading, building, splitting or
/// loading data. Errors about a file name the file and, where there is one,
/// the line and the column.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// A value in a delimited text file is missing, malformed or unexpected.
    #[error("{source_name}:{line}: column {column}: {reason}")]
    Cell {
        /// The file (or embedded source) being read.
        source_name: String,
        /// One-based line number in the file.
        line: u64,
        /// The column, by name when the file has a header, else by index.
        column: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// A whole row or the whole file is wrong (ragged row, empty file,
    /// missing column, bad encoding).
    #[error("{source_name}{}: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Table {
        /// The file (or embedded source) being read.
        source_name: String,
        /// One-based line number, when the problem has one.
        line: Option<u64>,
        /// What is wrong.
        reason: String,
    },
    /// A binary array file (NPY or IDX) is malformed.
    #[error("{path}: {format}: {reason}")]
    Array {
        /// The file.
        path: PathBuf,
        /// The format: "npy" or "idx".
        format: &'static str,
        /// What is wrong: magic, dtype, shape or length.
        reason: String,
    },
    /// A schema, split, loader or data-set setting is invalid.
    #[error("{what}: {reason}")]
    InvalidArgument {
        /// The setting.
        what: String,
        /// Why it is invalid.
        reason: String,
    },
    /// No built-in data set has this name.
    #[error("unknown data set {name:?}; built-in data sets: {known}")]
    UnknownDataset {
        /// The requested name.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// An error from tensor construction in `mtl-core`.
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl DataError {
    /// An [`DataError::InvalidArgument`] from anything printable.
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        DataError::InvalidArgument {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// Result type of `mtl-data`.
pub type Result<T> = std::result::Result<T, DataError>;
