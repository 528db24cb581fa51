//! The error type of the crate.

/// Everything that can go wrong in `mtl-optim`.
///
/// Every variant names the offending value, length or index so that a caller
/// can report it without further context.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptimError {
    /// The parameter and gradient slices passed to a step differ in length.
    #[error("parameters have length {params} but gradients have length {grads}")]
    LengthMismatch {
        /// Length of the parameter slice.
        params: usize,
        /// Length of the gradient slice.
        grads: usize,
    },
    /// A parameter group's range runs past the end of the parameter slice.
    #[error("parameter group {group} covers {start}..{end} but there are only {len} parameters")]
    GroupOutOfRange {
        /// Index of the group in the order it was given.
        group: usize,
        /// First index of the range.
        start: usize,
        /// One past the last index of the range.
        end: usize,
        /// Number of parameters.
        len: usize,
    },
    /// A parameter group's range is empty or reversed (`start >= end`).
    #[error("parameter group {group} has an empty range {start}..{end}")]
    EmptyGroup {
        /// Index of the group.
        group: usize,
        /// First index of the range.
        start: usize,
        /// One past the last index of the range.
        end: usize,
    },
    /// Two parameter groups share at least one index.
    #[error("parameter groups {first} and {second} overlap at index {index}")]
    GroupOverlap {
        /// Index of the earlier group (by range start).
        first: usize,
        /// Index of the later group (by range start).
        second: usize,
        /// First shared parameter index.
        index: usize,
    },
    /// A gradient is NaN or infinite; nothing was updated.
    #[error("gradient at index {index} is not finite ({value})")]
    NonFiniteGradient {
        /// Lowest index holding a non-finite gradient.
        index: usize,
        /// The value found there.
        value: f32,
    },
    /// The optimizer's state buffers were sized for a different number of
    /// parameters than the slice passed now (or than a loaded state).
    #[error("optimizer state buffer `{buffer}` has length {found} but {expected} parameters are being optimized")]
    StateLengthMismatch {
        /// Name of the state buffer (`exp_avg`, `momentum_buffer`, …).
        buffer: String,
        /// Number of parameters expected.
        expected: usize,
        /// Length found.
        found: usize,
    },
    /// A loaded state was written by another optimizer or lacks a buffer.
    #[error("optimizer state does not fit: {reason}")]
    StateMismatch {
        /// What did not fit.
        reason: String,
    },
    /// A configuration value is out of its valid range.
    #[error("invalid value {value} for `{key}`: {reason}")]
    InvalidConfig {
        /// The configuration key, as written in a config file.
        key: &'static str,
        /// The rejected value.
        value: f64,
        /// The valid range, in words.
        reason: &'static str,
    },
    /// A reduce-on-plateau schedule was stepped without a metric.
    #[error("the plateau schedule needs a metric value at every step")]
    MissingMetric,
    /// A metric given to a reduce-on-plateau schedule is NaN or infinite.
    #[error("metric value {value} given to the plateau schedule is not finite")]
    NonFiniteMetric {
        /// The rejected value.
        value: f64,
    },
}

/// Result type of the crate.
pub type Result<T> = std::result::Result<T, OptimError>;
