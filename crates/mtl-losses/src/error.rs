//! The error type of `mtl-losses`.

use thiserror::Error;

/// Every failure of this crate. Each variant names the offending value, count
/// or task so the message alone locates the problem.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// A task loss is NaN or infinite.
    #[error("loss of task {task} is {value}, expected a finite number")]
    NonFiniteLoss {
        /// Index of the task.
        task: usize,
        /// The offending value.
        value: f32,
    },
    /// Two counts that must agree do not (losses vs. tasks, gradient rows vs. tasks, ...).
    #[error("{what}: expected {expected}, got {got}")]
    CountMismatch {
        /// What was counted, e.g. `"losses"` or `"gradient rows"`.
        what: &'static str,
        /// The count the balancer was built for.
        expected: usize,
        /// The count that was supplied.
        got: usize,
    },
    /// A flat gradient buffer does not have `rows * cols` entries.
    #[error("gradient buffer of {len} values cannot be {rows} rows of {cols} columns")]
    GradientShape {
        /// Requested number of rows (tasks).
        rows: usize,
        /// Requested number of columns (parameters).
        cols: usize,
        /// Length of the buffer.
        len: usize,
    },
    /// A balancer needs gradient rows but the input carried none.
    #[error("balancer `{balancer}` needs gradient rows of the {needs} but none were given")]
    MissingGradients {
        /// Name of the balancer.
        balancer: &'static str,
        /// The gradient source it declared.
        needs: &'static str,
    },
    /// A gradient row contains a NaN or infinite entry.
    #[error("gradient row of task {task} is not finite (its norm is {norm})")]
    NonFiniteGradient {
        /// Index of the task.
        task: usize,
        /// The norm that came out non-finite.
        norm: f64,
    },
    /// A loss lies outside the domain a balancer needs (e.g. a logarithm of a non-positive value).
    #[error("balancer `{balancer}`: loss of task {task} is {value}, must be greater than {bound}")]
    LossOutOfDomain {
        /// Name of the balancer.
        balancer: &'static str,
        /// Index of the task.
        task: usize,
        /// The offending value.
        value: f64,
        /// The exclusive lower bound.
        bound: f64,
    },
    /// A balancer was asked for zero tasks.
    #[error("a balancer needs at least one task, got 0")]
    NoTasks,
    /// No balancer of that name exists.
    #[error("unknown balancer `{name}`; valid names: {valid}")]
    UnknownBalancer {
        /// The name that was asked for.
        name: String,
        /// The valid names, comma separated.
        valid: String,
    },
    /// A configuration could not be parsed (unknown parameter, wrong type). The
    /// message lists the valid names.
    #[error("invalid balancer configuration: {0}")]
    Config(String),
    /// A hyperparameter has an invalid value.
    #[error("balancer `{balancer}`: parameter `{parameter}` = {value} is invalid: {reason}")]
    InvalidParameter {
        /// Name of the balancer.
        balancer: &'static str,
        /// Name of the parameter.
        parameter: &'static str,
        /// The offending value, formatted.
        value: String,
        /// What a valid value looks like.
        reason: &'static str,
    },
    /// A saved state does not fit the balancer it is loaded into.
    #[error("balancer `{balancer}`: cannot load state: {reason}")]
    State {
        /// Name of the balancer.
        balancer: &'static str,
        /// What is wrong with the state.
        reason: String,
    },
    /// The trainer called a balancer's hooks out of order (e.g. FAMO's
    /// `observe_after_step` without a preceding `balance`).
    #[error("balancer `{balancer}`: {reason}")]
    CallOrder {
        /// Name of the balancer.
        balancer: &'static str,
        /// Which call came out of order.
        reason: &'static str,
    },
    /// A numerical solver inside a balancer failed (non-finite data or no
    /// convergence within its iteration limit).
    #[error("solver `{solver}` failed: {reason}")]
    Solver {
        /// Name of the solver.
        solver: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// A graph op of the tensor engine refused its inputs.
    #[error(transparent)]
    Core(#[from] mtl_core::CoreError),
    /// A failure in the loss, prediction or evaluation of the named task.
    #[error("task {task:?}: {source}")]
    InTask {
        /// Name of the task.
        task: String,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
    /// A task option is invalid or does not apply to the task's kind or loss.
    #[error("option `{option}` = {value} is invalid: {reason}")]
    TaskOption {
        /// Name of the option, as written in the configuration.
        option: &'static str,
        /// The offending value, formatted.
        value: String,
        /// What a valid value looks like.
        reason: String,
    },
    /// A head output or target array has the wrong shape.
    #[error("{what} has shape {got:?}, expected {expected:?}")]
    Shape {
        /// What was checked, e.g. `"head output"`.
        what: &'static str,
        /// The expected shape.
        expected: Vec<usize>,
        /// The shape that was supplied.
        got: Vec<usize>,
    },
    /// A prediction, target or head output value is NaN, infinite or out of its range.
    #[error("{what} at index {index} is {value}, expected {expected}")]
    BadValue {
        /// What holds the value, e.g. `"scores"`.
        what: &'static str,
        /// Flat index of the value.
        index: usize,
        /// The offending value.
        value: f64,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// A metric is undefined on its inputs (a single class for ROC-AUC, constant targets for R²).
    #[error("metric `{metric}` is undefined here: {reason}")]
    Metric {
        /// Name of the metric.
        metric: &'static str,
        /// Why it cannot be computed.
        reason: String,
    },
    /// The multi-task score Δm% cannot be computed for a task (no baseline, zero baseline).
    #[error("Δm% for task {task:?}: {reason}")]
    DeltaM {
        /// Name of the task.
        task: String,
        /// What is wrong with its entry.
        reason: String,
    },
}

/// The result type of `mtl-losses`.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The same error with a task index `i` of a subset of the tasks
    /// replaced by the global index `tasks[i]` (for methods that run on the
    /// present tasks only).
    pub(crate) fn with_global_task(self, tasks: &[usize]) -> Self {
        let global = |i: usize| tasks.get(i).copied().unwrap_or(i);
        match self {
            Error::LossOutOfDomain {
                balancer,
                task,
                value,
                bound,
            } => Error::LossOutOfDomain {
                balancer,
                task: global(task),
                value,
                bound,
            },
            Error::NonFiniteLoss { task, value } => Error::NonFiniteLoss {
                task: global(task),
                value,
            },
            other => other,
        }
    }
}
