//! Adagrad (Duchi, Hazan & Singer, 2011).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{check_non_negative, check_positive};
use crate::elementwise::update;
use crate::error::Result;
use crate::group::ParamGroup;
use crate::optimizer::{Core, Optimizer};
use crate::state::{ensure_len, OptimizerState};

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
            core: Core::new(config.lr, groups)?,
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
        self.core.groups.check_step(params, grads)?;
        let len = params.len();
        let init = self.config.initial_accumulator_value as f32;
        ensure_len(&mut self.sum, SUM, len, init)?;
        let eps = self.config.eps as f32;
        let decay = 1.0 + self.core.step as f64 * self.config.lr_decay;
        let sum_all = &mut self.sum;
        self.core.groups.for_each(len, |group| {
            let clr = (self.core.lr * group.lr_scale / decay) as f32;
            let wd = group.weight_decay.unwrap_or(self.config.weight_decay) as f32;
            let r = group.range.clone();
            let kernel = |p: &mut [f32], g: &[f32], [s]: [&mut [f32]; 1]| {
                for ((p, &g), s) in p.iter_mut().zip(g).zip(s.iter_mut()) {
                    let g = g + wd * *p;
                    *s += g * g;
                    let std = s.sqrt() + eps;
                    *p -= clr * g / std;
                }
            };
            update(
                &mut params[r.clone()],
                &grads[r.clone()],
                [&mut sum_all[r]],
                &kernel,
            );
        });
        self.core.step += 1;
        Ok(())
    }

    fn lr(&self) -> f64 {
        self.core.lr
    }

    fn set_lr(&mut self, lr: f64) -> Result<()> {
        self.core.set_lr(lr)
    }

    fn groups(&self) -> &[ParamGroup] {
        self.core.groups.as_slice()
    }

    fn steps_taken(&self) -> u64 {
        self.core.step
    }

    fn state(&self) -> OptimizerState {
        let mut buffers = BTreeMap::new();
        if self.core.step > 0 {
            buffers.insert(SUM.to_owned(), self.sum.clone());
        }
        OptimizerState {
            optimizer: self.name().to_owned(),
            step: self.core.step,
            lr: self.core.lr,
            buffers,
        }
    }

    fn load_state(&mut self, state: OptimizerState) -> Result<()> {
        let (step, lr, [sum]) = state.into_parts(self.name(), [SUM])?;
        self.core.step = step;
        self.core.lr = lr;
        self.sum = sum;
        Ok(())
    }
}
