//! The example's one error type: what failed, in candle, in the balancer or
//! in the data.

/// Everything that can go wrong in this example.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A candle tensor operation or backward pass failed.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// The balancer rejected its input or configuration.
    #[error("balancer: {0}")]
    Balance(#[from] mtl_losses::Error),
    /// The bundled Auto MPG file could not be read as CSV.
    #[error("Auto MPG: {0}")]
    Csv(#[from] csv::Error),
    /// A row of the Auto MPG file holds a value that is not what its column expects.
    #[error("Auto MPG row {row}, column {column}: {reason}")]
    Data {
        /// 1-based row of the file.
        row: usize,
        /// 0-based column of the file.
        column: usize,
        /// What is wrong with the value.
        reason: String,
    },
    /// A parameter the step needs has no gradient after a backward pass.
    #[error("no gradient for the {0} after the backward pass")]
    MissingGradient(&'static str),
    /// The balancer returned a combined direction over gradient rows that
    /// this example cannot write back into candle's gradients.
    #[error("balancer `{balancer}` returned a direction over the {rows}, which has no candle gradient to replace")]
    UnsupportedDirection {
        /// Registry name of the balancer.
        balancer: &'static str,
        /// Which rows it was given.
        rows: mtl_losses::GradientSource,
    },
}

/// The example's result type.
pub type Result<T> = std::result::Result<T, Error>;
