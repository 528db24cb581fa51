//! AdamW: Adam with decoupled weight decay (Loshchilov & Hutter, 2019).

use serde::{Deserialize, Serialize};

use crate::adam::{Adam, AdamConfig};
use crate::error::Result;
use crate::group::ParamGroup;

/// Hyperparameters of AdamW; defaults are PyTorch's (note the weight decay
/// default of 1e-2, where Adam's is 0).
///
/// AdamW shrinks the parameters before the Adam update instead of adding an
/// L2 term to the gradient, as documented for `torch.optim.AdamW`:
///
/// ```text
/// θ ← θ_{t-1} (1 − γλ)
/// θ_t ← θ − γ m̂_t / (√v̂_t + ε)      (m̂, v̂ from the undecayed gradient)
/// ```
///
/// so for the same gradients AdamW's parameters differ from Adam's (λ = 0) by
/// exactly the decay term. The optimizer is an [`Adam`] in decoupled mode,
/// named `"adamw"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWConfig {
    /// Learning rate γ (default 1e-3).
    pub lr: f64,
    /// Decay rates (β₁, β₂) of the moments (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// ε added to the denominator (default 1e-8).
    pub eps: f64,
    /// Decoupled weight decay λ (default 1e-2).
    pub weight_decay: f64,
    /// Use the running maximum of the second moment (default false).
    pub amsgrad: bool,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
            amsgrad: false,
        }
    }
}

impl AdamWConfig {
    /// Checks every value, with the same ranges as [`AdamConfig::validate`].
    pub fn validate(&self) -> Result<()> {
        AdamConfig {
            lr: self.lr,
            betas: self.betas,
            eps: self.eps,
            weight_decay: self.weight_decay,
            amsgrad: self.amsgrad,
        }
        .validate()
    }

    /// Validates and builds the optimizer over `groups`.
    pub fn build(&self, groups: Vec<ParamGroup>) -> Result<Adam> {
        Adam::adamw(self.clone(), groups)
    }
}
