//! RMSprop (Hinton, 2012, lecture 6e; centered form from Graves, 2013).

use serde::{Deserialize, Serialize};

use crate::config::{check_beta, check_non_negative, check_positive};
use crate::elementwise::flush_subnormal;
use crate::error::Result;
use crate::group::ParamGroup;
use crate::optimizer::{core_accessors, Core, GroupStep, Optimizer};
use crate::state::OptimizerState;

/// Hyperparameters of [`RmsProp`]; defaults are PyTorch's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RmsPropConfig {
    /// Learning rate γ (default 1e-2).
    pub lr: f64,
    /// Smoothing constant α of the squared-gradient average (default 0.99).
    pub alpha: f64,
    /// ε added to the denominator (default 1e-8).
    pub eps: f64,
    /// L2 penalty λ added to the gradient (default 0).
    pub weight_decay: f64,
    /// Momentum factor μ (default 0).
    pub momentum: f64,
    /// Normalise by the estimated variance instead of the raw second moment
    /// (default false).
    pub centered: bool,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        Self {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
        }
    }
}

impl RmsPropConfig {
    /// Checks every value: `lr > 0`, `0 <= alpha < 1`, `eps > 0`,
    /// `weight_decay, momentum >= 0` (all finite).
    pub fn validate(&self) -> Result<()> {
        check_positive("lr", self.lr)?;
        check_beta("alpha", self.alpha)?;
        check_positive("eps", self.eps)?;
        check_non_negative("weight_decay", self.weight_decay)?;
        check_non_negative("momentum", self.momentum)
    }

    /// Validates and builds the optimizer over `groups`.
    pub fn build(&self, groups: Vec<ParamGroup>) -> Result<RmsProp> {
        RmsProp::new(self.clone(), groups)
    }
}

/// RMSprop as documented for `torch.optim.RMSprop`. For gradient `g_t`:
///
/// ```text
/// g ← g_t + λ θ_{t-1}                          (if λ ≠ 0)
/// v_t ← α v_{t-1} + (1 − α) g²
/// ṽ ← v_t
/// a_t ← α a_{t-1} + (1 − α) g;  ṽ ← ṽ − a_t²   (centered)
/// b_t ← μ b_{t-1} + g / (√ṽ + ε);  θ_t ← θ_{t-1} − γ b_t    (if μ > 0)
/// θ_t ← θ_{t-1} − γ g / (√ṽ + ε)                             (otherwise)
/// ```
///
/// Buffers are saved as `square_avg`, `grad_avg` (centered) and
/// `momentum_buffer` (μ > 0); decaying buffers below `f32::MIN_POSITIVE` are
/// stored as zero (see the crate docs).
#[derive(Debug, Clone)]
pub struct RmsProp {
    config: RmsPropConfig,
    core: Core,
    square_avg: Vec<f32>,
    grad_avg: Vec<f32>,
    momentum_buffer: Vec<f32>,
}

const SQUARE_AVG: &str = "square_avg";
const GRAD_AVG: &str = "grad_avg";
const MOMENTUM_BUFFER: &str = "momentum_buffer";

impl RmsProp {
    /// Validates `config` and `groups`.
    pub fn new(config: RmsPropConfig, groups: Vec<ParamGroup>) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            core: Core::new(config.lr, config.weight_decay, groups)?,
            config,
            square_avg: Vec::new(),
            grad_avg: Vec::new(),
            momentum_buffer: Vec::new(),
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &RmsPropConfig {
        &self.config
    }
}

impl Optimizer for RmsProp {
    fn name(&self) -> &'static str {
        "rmsprop"
    }

    fn step(&mut self, params: &mut [f32], grads: &[f32]) -> Result<()> {
        let alpha = self.config.alpha as f32;
        let one_minus_alpha = (1.0 - self.config.alpha) as f32;
        let eps = self.config.eps as f32;
        let mu = self.config.momentum as f32;
        let rates = |group: GroupStep| (group.lr as f32, group.weight_decay as f32);
        let sq = (SQUARE_AVG, &mut self.square_avg);
        let ga = (GRAD_AVG, &mut self.grad_avg);
        let mb = (MOMENTUM_BUFFER, &mut self.momentum_buffer);
        // The four variants differ in which buffers they carry; each kernel is
        // the formula above restricted to its options.
        match (self.config.centered, self.config.momentum > 0.0) {
            (false, false) => self.core.step(params, grads, [sq], 0.0, |group| {
                let (lr, wd) = rates(group);
                move |p: &mut [f32], g: &[f32], [sq]: [&mut [f32]; 1]| {
                    for ((p, &g), sq) in p.iter_mut().zip(g).zip(sq.iter_mut()) {
                        let g = g + wd * *p;
                        *sq = flush_subnormal(alpha * *sq + one_minus_alpha * g * g);
                        let avg = sq.sqrt() + eps;
                        *p -= lr * g / avg;
                    }
                }
            }),
            (true, false) => self.core.step(params, grads, [sq, ga], 0.0, |group| {
                let (lr, wd) = rates(group);
                move |p: &mut [f32], g: &[f32], [sq, ga]: [&mut [f32]; 2]| {
                    for (((p, &g), sq), ga) in
                        p.iter_mut().zip(g).zip(sq.iter_mut()).zip(ga.iter_mut())
                    {
                        let g = g + wd * *p;
                        *sq = flush_subnormal(alpha * *sq + one_minus_alpha * g * g);
                        *ga = flush_subnormal(alpha * *ga + one_minus_alpha * g);
                        let avg = (*sq - *ga * *ga).sqrt() + eps;
                        *p -= lr * g / avg;
                    }
                }
            }),
            (false, true) => self.core.step(params, grads, [sq, mb], 0.0, |group| {
                let (lr, wd) = rates(group);
                move |p: &mut [f32], g: &[f32], [sq, b]: [&mut [f32]; 2]| {
                    for (((p, &g), sq), b) in
                        p.iter_mut().zip(g).zip(sq.iter_mut()).zip(b.iter_mut())
                    {
                        let g = g + wd * *p;
                        *sq = flush_subnormal(alpha * *sq + one_minus_alpha * g * g);
                        let avg = sq.sqrt() + eps;
                        *b = flush_subnormal(mu * *b + g / avg);
                        *p -= lr * *b;
                    }
                }
            }),
            (true, true) => self.core.step(params, grads, [sq, ga, mb], 0.0, |group| {
                let (lr, wd) = rates(group);
                move |p: &mut [f32], g: &[f32], [sq, ga, b]: [&mut [f32]; 3]| {
                    for ((((p, &g), sq), ga), b) in p
                        .iter_mut()
                        .zip(g)
                        .zip(sq.iter_mut())
                        .zip(ga.iter_mut())
                        .zip(b.iter_mut())
                    {
                        let g = g + wd * *p;
                        *sq = flush_subnormal(alpha * *sq + one_minus_alpha * g * g);
                        *ga = flush_subnormal(alpha * *ga + one_minus_alpha * g);
                        let avg = (*sq - *ga * *ga).sqrt() + eps;
                        *b = flush_subnormal(mu * *b + g / avg);
                        *p -= lr * *b;
                    }
                }
            }),
        }
    }

    core_accessors!();

    fn state(&self) -> OptimizerState {
        let mut buffers = vec![(SQUARE_AVG, &self.square_avg)];
        if self.config.centered {
            buffers.push((GRAD_AVG, &self.grad_avg));
        }
        if self.config.momentum > 0.0 {
            buffers.push((MOMENTUM_BUFFER, &self.momentum_buffer));
        }
        self.core.save(self.name(), &buffers)
    }

    fn load_state(&mut self, state: OptimizerState) -> Result<()> {
        let name = self.name();
        let mut buffers = vec![(SQUARE_AVG, &mut self.square_avg)];
        if self.config.centered {
            buffers.push((GRAD_AVG, &mut self.grad_avg));
        }
        if self.config.momentum > 0.0 {
            buffers.push((MOMENTUM_BUFFER, &mut self.momentum_buffer));
        }
        self.core.load(state, name, &mut buffers)
    }
}
