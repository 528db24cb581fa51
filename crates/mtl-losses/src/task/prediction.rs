//! What a head's output predicts, per task kind.

use mtl_core::{TaskKind, Tensor};

use crate::error::Result;

/// The prediction read from a head output (see [`super::Task::predict`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Prediction {
    /// Classification: the class of largest logit, per example.
    Classes(Vec<usize>),
    /// Binary and multilabel: `σ(z) = 1 / (1 + e^−z)` of each logit, `[B, L]`;
    /// a label is predicted positive when its probability is at least ½.
    Probabilities(Tensor),
    /// Regression: the head's values, `[B, outputs]`.
    Values(Tensor),
    /// Clustering: the cluster of largest soft assignment, per example.
    Clusters(Vec<usize>),
}

/// `σ(x)` without overflow for large `|x|`.
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

impl Prediction {
    /// Reads `output` `[B, width]` (already checked) for a task of `kind`.
    pub(crate) fn from_output(kind: &TaskKind, output: &Tensor) -> Result<Prediction> {
        Ok(match kind {
            TaskKind::Classification { .. } => Prediction::Classes(output.argmax_rows()?),
            TaskKind::Binary | TaskKind::Multilabel { .. } => {
                Prediction::Probabilities(output.map(sigmoid))
            }
            TaskKind::Regression { .. } => Prediction::Values(output.clone()),
            TaskKind::Clustering { .. } => Prediction::Clusters(output.argmax_rows()?),
        })
    }

    /// Hard labels: class or cluster indices as they are, and, for
    /// probabilities, 1 where `p ≥ ½` and 0 elsewhere (flattened row-major).
    /// Regression values have none.
    pub fn labels(&self) -> Option<Vec<usize>> {
        match self {
            Prediction::Classes(c) | Prediction::Clusters(c) => Some(c.clone()),
            Prediction::Probabilities(p) => {
                Some(p.data().iter().map(|&v| usize::from(v >= 0.5)).collect())
            }
            Prediction::Values(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_is_stable_and_symmetric() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(sigmoid(-200.0), 0.0);
        assert_eq!(sigmoid(200.0), 1.0);
        // σ(2) = 1 / (1 + e^−2) = 0.880797...
        assert!((sigmoid(2.0) - 0.880_797).abs() < 1e-6);
        assert!((sigmoid(-2.0) + sigmoid(2.0) - 1.0).abs() < 1e-6);
    }
}
