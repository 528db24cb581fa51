//! Cross-entropy for classification heads that output class logits.

use mtl_core::{Graph, Var};

use crate::error::{Error, Result};

/// Cross-entropy of class logits `z` `[B, K]` against class indices `y`, through
/// the fused, stable log-softmax of `mtl-core` ([`Graph::cross_entropy`]):
///
/// `ℓ_i = (1−ε)·w_{y_i}·(−log p_{i,y_i}) + (ε/K)·Σ_k w_k·(−log p_{i,k})`,
/// `L = Σ_i ℓ_i / Σ_i w_{y_i}`, with `p_i = softmax(z_i)`.
///
/// `ε` is the label smoothing (Szegedy et al., 2016, "Rethinking the Inception
/// architecture"), `w` the class weights (`w ≡ 1` without them, giving the
/// plain mean). These are PyTorch's `CrossEntropyLoss` conventions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CrossEntropy {
    /// Label smoothing `ε` in `[0, 1)`; default 0.
    pub label_smoothing: f32,
    /// Optional weight per class, non-negative, not all zero; default none.
    pub class_weights: Option<Vec<f32>>,
}

impl CrossEntropy {
    /// Checks the options for a task of `classes` classes.
    pub fn validate(&self, classes: usize) -> Result<()> {
        let eps = self.label_smoothing;
        if !(0.0..1.0).contains(&eps) {
            return Err(Error::TaskOption {
                option: "label_smoothing",
                value: eps.to_string(),
                reason: "must lie in [0, 1)".into(),
            });
        }
        if let Some(w) = &self.class_weights {
            if w.len() != classes {
                return Err(Error::TaskOption {
                    option: "class_weights",
                    value: format!("{w:?}"),
                    reason: format!("needs one weight per class: {classes}, got {}", w.len()),
                });
            }
            if w.iter().any(|v| !v.is_finite() || *v < 0.0) || w.iter().all(|v| *v == 0.0) {
                return Err(Error::TaskOption {
                    option: "class_weights",
                    value: format!("{w:?}"),
                    reason: "weights must be finite, non-negative and not all zero".into(),
                });
            }
        }
        Ok(())
    }

    /// The loss of `logits` `[B, K]` against `classes` (one index per row).
    pub fn apply(&self, g: &mut Graph, logits: Var, classes: &[usize]) -> Result<Var> {
        Ok(g.cross_entropy(
            logits,
            classes,
            self.class_weights.as_deref(),
            self.label_smoothing,
        )?)
    }
}
