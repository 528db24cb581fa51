//! Stochastic gradient descent with momentum, dampening, Nesterov momentum and
//! weight decay.

use serde::{Deserialize, Serialize};

use crate::config::{check_non_negative, check_positive};
use crate::elementwise::flush_subnormal;
use crate::error::{OptimError, Result};
use crate::group::ParamGroup;
use crate::optimizer::{core_accessors, Core, GroupStep, Optimizer};
use crate::state::OptimizerState;

/// Hyperparameters of [`Sgd`]; defaults are PyTorch's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SgdConfig {
    /// Learning rate γ (default 1e-3).
    pub lr: f64,
    /// Momentum factor μ (default 0: plain SGD).
    pub momentum: f64,
    /// Dampening τ of the momentum (default 0).
    pub dampening: f64,
    /// Nesterov momentum (default false; needs μ > 0 and τ = 0).
    pub nesterov: bool,
    /// L2 penalty λ added to the gradient (default 0).
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

impl SgdConfig {
    /// Checks every value: `lr > 0`, `momentum, dampening, weight_decay >= 0`
    /// (all finite), and Nesterov only with momentum and no dampening.
    pub fn validate(&self) -> Result<()> {
        check_positive("lr", self.lr)?;
        check_non_negative("momentum", self.momentum)?;
        check_non_negative("dampening", self.dampening)?;
        check_non_negative("weight_decay", self.weight_decay)?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(OptimError::InvalidConfig {
                key: "nesterov",
                value: self.momentum,
                reason: "Nesterov momentum needs momentum > 0 and dampening = 0",
            });
        }
        Ok(())
    }

    /// Validates and builds the optimizer over `groups`.
    pub fn build(&self, groups: Vec<ParamGroup>) -> Result<Sgd> {
        Sgd::new(self.clone(), groups)
    }
}

/// SGD as documented for `torch.optim.SGD` (Sutskever et al., 2013, for the
/// momentum form). With gradient `g_t`, for each parameter:
///
/// ```text
/// g ← g_t + λ θ_{t-1}                                  (if λ ≠ 0)
/// b_t ← g                      at t = 1                (if μ ≠ 0)
/// b_t ← μ b_{t-1} + (1 − τ) g  at t > 1
/// g ← g + μ b_t  (Nesterov)    or    g ← b_t
/// θ_t ← θ_{t-1} − γ g
/// ```
///
/// The momentum buffer is saved as `momentum_buffer`.
#[derive(Debug, Clone)]
pub struct Sgd {
    config: SgdConfig,
    core: Core,
    momentum_buffer: Vec<f32>,
}

impl Sgd {
    /// Validates `config` and `groups`.
    pub fn new(config: SgdConfig, groups: Vec<ParamGroup>) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            core: Core::new(config.lr, config.weight_decay, groups)?,
            config,
            momentum_buffer: Vec::new(),
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &SgdConfig {
        &self.config
    }
}

const MOMENTUM_BUFFER: &str = "momentum_buffer";

impl Optimizer for Sgd {
    fn name(&self) -> &'static str {
        "sgd"
    }

    fn step(&mut self, params: &mut [f32], grads: &[f32]) -> Result<()> {
        let rates = |group: GroupStep| (group.lr as f32, group.weight_decay as f32);
        let momentum = self.config.momentum as f32;
        if momentum == 0.0 {
            return self.core.step(params, grads, [], 0.0, |group| {
                let (lr, wd) = rates(group);
                move |p: &mut [f32], g: &[f32], []: [&mut [f32]; 0]| {
                    for (p, &g) in p.iter_mut().zip(g) {
                        let d = g + wd * *p;
                        *p -= lr * d;
                    }
                }
            });
        }
        // The branches of the rule become coefficients so that the loop has
        // none: at t = 1 the buffer is zero and b = 0·0 + 1·g = g exactly;
        // the direction is 1·g + μ·b (Nesterov) or 0·g + 1·b = b.
        let (decay, keep) = if self.core.step == 0 {
            (0.0, 1.0)
        } else {
            (momentum, 1.0 - self.config.dampening as f32)
        };
        let (from_grad, from_buffer) = if self.config.nesterov {
            (1.0, momentum)
        } else {
            (0.0, 1.0)
        };
        let buffers = [(MOMENTUM_BUFFER, &mut self.momentum_buffer)];
        self.core.step(params, grads, buffers, 0.0, |group| {
            let (lr, wd) = rates(group);
            move |p: &mut [f32], g: &[f32], [b]: [&mut [f32]; 1]| {
                for ((p, &g), b) in p.iter_mut().zip(g).zip(b.iter_mut()) {
                    let d = g + wd * *p;
                    *b = flush_subnormal(decay * *b + keep * d);
                    *p -= lr * (from_grad * d + from_buffer * *b);
                }
            }
        })
    }

    core_accessors!();

    fn state(&self) -> OptimizerState {
        // Without momentum, or before a step, there is no buffer to save.
        let buffers: &[_] = if self.config.momentum != 0.0 && !self.momentum_buffer.is_empty() {
            &[(MOMENTUM_BUFFER, &self.momentum_buffer)]
        } else {
            &[]
        };
        self.core.save(self.name(), buffers)
    }

    fn load_state(&mut self, state: OptimizerState) -> Result<()> {
        let name = self.name();
        if self.config.momentum != 0.0 {
            let mut buffers = [(MOMENTUM_BUFFER, &mut self.momentum_buffer)];
            self.core.load(state, name, &mut buffers)
        } else {
            self.core.load(state, name, &mut [])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesterov_needs_momentum_without_dampening() {
        let cfg = SgdConfig {
            nesterov: true,
            ..SgdConfig::default()
        };
        assert!(matches!(
            cfg.validate(),
            Err(OptimError::InvalidConfig {
                key: "nesterov",
                ..
            })
        ));
        let cfg = SgdConfig {
            nesterov: true,
            momentum: 0.9,
            dampening: 0.1,
            ..SgdConfig::default()
        };
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn rejects_non_positive_lr_naming_the_key() {
        let cfg = SgdConfig {
            lr: 0.0,
            ..SgdConfig::default()
        };
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "invalid value 0 for `lr`: must be finite and > 0"
        );
    }
}
