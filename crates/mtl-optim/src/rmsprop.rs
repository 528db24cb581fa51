//! RMSprop (Hinton, 2012, lecture 6e; centered form from Graves, 2013).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{check_beta, check_non_negative, check_positive};
use crate::elementwise::{flush_subnormal, update};
use crate::error::Result;
use crate::group::ParamGroup;
use crate::optimizer::{Core, Optimizer};
use crate::state::{ensure_len, OptimizerState};

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
            core: Core::new(config.lr, groups)?,
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

    /// Names of the buffers this configuration keeps, in a fixed order.
    fn buffer_names(&self) -> Vec<&'static str> {
        let mut names = vec![SQUARE_AVG];
        if self.config.centered {
            names.push(GRAD_AVG);
        }
        if self.config.momentum > 0.0 {
            names.push(MOMENTUM_BUFFER);
        }
        names
    }
}

impl Optimizer for RmsProp {
    fn name(&self) -> &'static str {
        "rmsprop"
    }

    fn step(&mut self, params: &mut [f32], grads: &[f32]) -> Result<()> {
        self.core.groups.check_step(params, grads)?;
        let len = params.len();
        let centered = self.config.centered;
        let with_momentum = self.config.momentum > 0.0;
        ensure_len(&mut self.square_avg, SQUARE_AVG, len, 0.0)?;
        if centered {
            ensure_len(&mut self.grad_avg, GRAD_AVG, len, 0.0)?;
        }
        if with_momentum {
            ensure_len(&mut self.momentum_buffer, MOMENTUM_BUFFER, len, 0.0)?;
        }
        let alpha = self.config.alpha as f32;
        let one_minus_alpha = (1.0 - self.config.alpha) as f32;
        let eps = self.config.eps as f32;
        let mu = self.config.momentum as f32;
        let (sq_all, ga_all, mb_all) = (
            &mut self.square_avg,
            &mut self.grad_avg,
            &mut self.momentum_buffer,
        );
        self.core.groups.for_each(len, |group| {
            let lr = (self.core.lr * group.lr_scale) as f32;
            let wd = group.weight_decay.unwrap_or(self.config.weight_decay) as f32;
            let r = group.range.clone();
            let (p, g) = (&mut params[r.clone()], &grads[r.clone()]);
            let sq = &mut sq_all[r.clone()];
            // The four variants differ in which buffers they carry; each
            // kernel is the formula above restricted to its options.
            match (centered, with_momentum) {
                (false, false) => {
                    let kernel = |p: &mut [f32], g: &[f32], [sq]: [&mut [f32]; 1]| {
                        for ((p, &g), sq) in p.iter_mut().zip(g).zip(sq.iter_mut()) {
                            let g = g + wd * *p;
                            *sq = flush_subnormal(alpha * *sq + one_minus_alpha * g * g);
                            let avg = sq.sqrt() + eps;
                            *p -= lr * g / avg;
                        }
                    };
                    update(p, g, [sq], &kernel);
                }
                (true, false) => {
                    let kernel = |p: &mut [f32], g: &[f32], [sq, ga]: [&mut [f32]; 2]| {
                        for (((p, &g), sq), ga) in
                            p.iter_mut().zip(g).zip(sq.iter_mut()).zip(ga.iter_mut())
                        {
                            let g = g + wd * *p;
                            *sq = flush_subnormal(alpha * *sq + one_minus_alpha * g * g);
                            *ga = flush_subnormal(alpha * *ga + one_minus_alpha * g);
                            let avg = (*sq - *ga * *ga).sqrt() + eps;
                            *p -= lr * g / avg;
                        }
                    };
                    update(p, g, [sq, &mut ga_all[r]], &kernel);
                }
                (false, true) => {
                    let kernel = |p: &mut [f32], g: &[f32], [sq, b]: [&mut [f32]; 2]| {
                        for (((p, &g), sq), b) in
                            p.iter_mut().zip(g).zip(sq.iter_mut()).zip(b.iter_mut())
                        {
                            let g = g + wd * *p;
                            *sq = flush_subnormal(alpha * *sq + one_minus_alpha * g * g);
                            let avg = sq.sqrt() + eps;
                            *b = flush_subnormal(mu * *b + g / avg);
                            *p -= lr * *b;
                        }
                    };
                    update(p, g, [sq, &mut mb_all[r]], &kernel);
                }
                (true, true) => {
                    let kernel = |p: &mut [f32], g: &[f32], [sq, ga, b]: [&mut [f32]; 3]| {
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
                    };
                    update(p, g, [sq, &mut ga_all[r.clone()], &mut mb_all[r]], &kernel);
                }
            }
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
            for name in self.buffer_names() {
                let buf = match name {
                    SQUARE_AVG => &self.square_avg,
                    GRAD_AVG => &self.grad_avg,
                    _ => &self.momentum_buffer,
                };
                buffers.insert(name.to_owned(), buf.clone());
            }
        }
        OptimizerState {
            optimizer: self.name().to_owned(),
            step: self.core.step,
            lr: self.core.lr,
            buffers,
        }
    }

    fn load_state(&mut self, state: OptimizerState) -> Result<()> {
        let [sq, ga, mb] = [SQUARE_AVG, GRAD_AVG, MOMENTUM_BUFFER];
        let (step, lr, [square_avg, grad_avg, momentum_buffer]) =
            match (self.config.centered, self.config.momentum > 0.0) {
                (false, false) => {
                    let (s, l, [a]) = state.into_parts(self.name(), [sq])?;
                    (s, l, [a, Vec::new(), Vec::new()])
                }
                (true, false) => {
                    let (s, l, [a, b]) = state.into_parts(self.name(), [sq, ga])?;
                    (s, l, [a, b, Vec::new()])
                }
                (false, true) => {
                    let (s, l, [a, c]) = state.into_parts(self.name(), [sq, mb])?;
                    (s, l, [a, Vec::new(), c])
                }
                (true, true) => state.into_parts(self.name(), [sq, ga, mb])?,
            };
        self.core.step = step;
        self.core.lr = lr;
        self.square_avg = square_avg;
        self.grad_avg = grad_avg;
        self.momentum_buffer = momentum_buffer;
        Ok(())
    }
}
