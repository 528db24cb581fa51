//! The error type of `mtl-core`.

/// Everything that can go wrong in tensor construction, graph building and
/// back-propagation.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CoreError {
    /// The number of elements does not match the requested shape.
    #[error("{op}: {len} elements cannot fill shape {shape:?}")]
    ElementCount {
        /// The operation that was asked.
        op: &'static str,
        /// The number of elements supplied.
        len: usize,
        /// The requested shape.
        shape: Vec<usize>,
    },
    /// Two operands have incompatible shapes.
    #[error("{op}: incompatible shapes {lhs:?} and {rhs:?}")]
    ShapeMismatch {
        /// The operation that was asked.
        op: &'static str,
        /// Shape of the first operand.
        lhs: Vec<usize>,
        /// Shape of the second operand.
        rhs: Vec<usize>,
    },
    /// An operand has the wrong rank or an invalid shape for the operation.
    #[error("{op}: invalid shape {shape:?}: {reason}")]
    InvalidShape {
        /// The operation that was asked.
        op: &'static str,
        /// The offending shape.
        shape: Vec<usize>,
        /// Why it is invalid.
        reason: String,
    },
    /// An axis is out of range for the tensor's rank.
    #[error("{op}: axis {axis} out of range for rank {rank}")]
    Axis {
        /// The operation that was asked.
        op: &'static str,
        /// The requested axis.
        axis: usize,
        /// The tensor's rank.
        rank: usize,
    },
    /// An index (row, class, parameter) is out of range.
    #[error("{op}: index {index} out of range for length {len}")]
    Index {
        /// The operation that was asked.
        op: &'static str,
        /// The offending index.
        index: usize,
        /// The valid length.
        len: usize,
    },
    /// A hyperparameter or argument is invalid.
    #[error("{what}: {reason}")]
    InvalidArgument {
        /// The argument or hyperparameter.
        what: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A variable does not belong to this graph (for example after `reset`).
    #[error("variable {var} is not in the graph (it holds {len} nodes)")]
    UnknownVar {
        /// The variable index.
        var: usize,
        /// The number of nodes in the graph.
        len: usize,
    },
    /// A parameter name is unknown or used twice.
    #[error("parameter {name:?}: {reason}")]
    Parameter {
        /// The parameter's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Result type of `mtl-core`.
pub type Result<T> = std::result::Result<T, CoreError>;
