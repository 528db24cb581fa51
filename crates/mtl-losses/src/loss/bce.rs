//! Binary cross-entropy with logits, for binary and multilabel heads.

use mtl_core::{Graph, Tensor, Var};

use crate::error::Result;

/// Mean binary cross-entropy of logits `z` against 0/1 targets `t` of the same
/// shape, `L = mean(max(z, 0) − z·t + log(1 + e^−|z|))`, which equals
/// `−t·log σ(z) − (1−t)·log(1 − σ(z))` and is stable for any `z`
/// ([`Graph::bce_with_logits`]). Each label of a multilabel task is an
/// independent yes/no decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BceWithLogits;

impl BceWithLogits {
    /// The loss of `logits` `[B, L]` against `targets` `[B, L]`.
    pub fn apply(&self, g: &mut Graph, logits: Var, targets: &Tensor) -> Result<Var> {
        Ok(g.bce_with_logits(logits, targets)?)
    }
}
