//! Adagrad (Duchi, Hazan & Singer, 2011).

use serde::{Deserialize, Serialize};

use crate::config::{check_non_negative, check_positive};
use crate::error::Result;
use crate::group::ParamGroup;
use crate::optimizer::{core_accessors, Core, Optimizer};
use crate::state::OptimizerState;

/// Hyperparameters of [`Adagrad`]; defaults are PyTorch's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdagradConfig {
    /// Learning rate γ (default 1e-2).
    pub lr: f64,
    /// Learning-rate decay η (default 0).
    pub lr_decay: f64,
    /// L2 penalty λ added to the gradient (default 0).
    pub weight_decay: f64,
    /// Starting value of the squared-gradient sum (default 0).
    pub initial_accumulator_value: f64,
    /// ε added to the denominator (default 1e-10).
    pub eps: f64,
}

impl Default for AdagradConfig {
    fn default() -> Self {
        Self {
            lr: 1e-2,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
        }
    }
}

impl AdagradConfig {
    /// Checks every value: `lr > 0`, `eps > 0`, `lr_decay, weight_decay,
    /// initial_accumulator_value >= 0` (all finite).
    pub fn validate(&self) -> Result<()> {
        check_positive("lr", self.lr)?;
        check_non_negative("lr_decay", self.lr_decay)?;
        check_non_negative("weight_decay", self.weight_decay)?;
        check_non_negative("initial_accumulator_value", self.initial_accumulator_value)?;
        check_positive("eps", self.eps)
    }

    /// Validates and builds the optimizer over `groups`.
    pub fn build(&self, groups: Vec<ParamGroup>) -> Result<Adagrad> {
        Adagrad::new(self.clone(), groups)
    }
}

/// Adagrad as documented for `torch.optim.Adagrad`. For gradient `g_t` at
/// step `t`:
///
/// ```text
/// γ̃ ← γ / (1 + (t − 1) η)
/// g ← g_t + λ θ_{t-1}              (if λ ≠ 0)
/// s_t ← s_{t-1} + g²               (s_0 = initial_accumulator_value)
/// θ_t ← θ_{t-1} − γ̃ g / (√s_t + ε)
/// ```
///
/// The sum is saved as `sum`. It never decays, so it cannot become subnormal.
#[derive(Debug, Clone)]
pub struct Adagrad {
    config: AdagradConfig,
    core: Core,
    sum: Vec<f32>,
}

const SUM: &str = "sum";

impl Adagrad {
    /// Validates `config` and `groups`.
    pub fn new(config: AdagradConfig, groups: Vec<ParamGroup>) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            core: Core::new(config.lr, config.weight_decay, groups)?,
            config,
            sum: Vec::new(),
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &AdagradConfig {
        &self.config
    }
}

impl Optimizer for Adagrad {
    fn name(&self) -> &'static str {
        "adagrad"
    }

    fn step(&mut self, params: &mut [f32], grads: &[f32]) -> Result<()> {
        let init = self.config.initial_accumulator_value as f32;
        let eps = self.config.eps as f32;
        let decay = 1.0 + self.core.step as f64 * self.config.lr_decay;
        let buffers = [(SUM, &mut self.sum)];
        self.core.step(params, grads, buffers, init, |group| {
            let clr = (group.lr / decay) as f32;
            let wd = group.weight_decay as f32;
            move |p: &mut [f32], g: &[f32], [s]: [&mut [f32]; 1]| {
                for ((p, &g), s) in p.iter_mut().zip(g).zip(s.iter_mut()) {
                    let g = g + wd * *p;
                    *s += g * g;
                    let std = s.sqrt() + eps;
                    *p -= clr * g / std;
                }
            }
        })
    }

    core_accessors!();

    fn state(&self) -> OptimizerState {
        self.core.save(self.name(), &[(SUM, &self.sum)])
    }

    fn load_state(&mut self, state: OptimizerState) -> Result<()> {
        let name = self.name();
        self.core.load(state, name, &mut [(SUM, &mut self.sum)])
    }
}
