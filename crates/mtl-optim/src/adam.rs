//! Adam (Kingma & Ba, 2015) with the AMSGrad variant (Reddi et al., 2018),
//! and the update kernel shared with AdamW.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::adamw::AdamWConfig;
use crate::config::{check_beta, check_non_negative, check_positive};
use crate::elementwise::{flush_subnormal, update};
use crate::error::Result;
use crate::group::ParamGroup;
use crate::optimizer::{Core, Optimizer};
use crate::state::{ensure_len, OptimizerState};

/// Hyperparameters of Adam; defaults are PyTorch's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamConfig {
    /// Learning rate γ (default 1e-3).
    pub lr: f64,
    /// Decay rates (β₁, β₂) of the first and second moments (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// ε added to the denominator (default 1e-8).
    pub eps: f64,
    /// L2 penalty λ added to the gradient (default 0).
    pub weight_decay: f64,
    /// Use the running maximum of the second moment (default false).
    pub amsgrad: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
        }
    }
}

impl AdamConfig {
    /// Checks every value: `lr > 0`, `0 <= β < 1`, `eps > 0`,
    /// `weight_decay >= 0` (all finite).
    pub fn validate(&self) -> Result<()> {
        check_positive("lr", self.lr)?;
        check_beta("betas.0", self.betas.0)?;
        check_beta("betas.1", self.betas.1)?;
        check_positive("eps", self.eps)?;
        check_non_negative("weight_decay", self.weight_decay)
    }

    /// Validates and builds the optimizer over `groups`.
    pub fn build(&self, groups: Vec<ParamGroup>) -> Result<Adam> {
        Adam::new(self.clone(), groups)
    }
}

/// How weight decay enters the update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decay {
    /// Adam: λθ is added to the gradient (an L2 penalty).
    Coupled,
    /// AdamW: θ is multiplied by (1 − γλ) before the Adam update.
    Decoupled,
}

/// Adam as documented for `torch.optim.Adam` and, when built from
/// [`AdamWConfig`], AdamW as documented for `torch.optim.AdamW`. For
/// gradient `g_t` at step `t`:
///
/// ```text
/// g ← g_t + λ θ_{t-1}                       (Adam, if λ ≠ 0)
/// θ ← θ_{t-1} (1 − γλ)                      (AdamW)
/// m_t ← β₁ m_{t-1} + (1 − β₁) g
/// v_t ← β₂ v_{t-1} + (1 − β₂) g²
/// v̂_max ← max(v̂_max, v_t)                   (AMSGrad; used for v_t below)
/// θ_t ← θ − γ/(1 − β₁ᵗ) · m_t / (√v_t / √(1 − β₂ᵗ) + ε)
/// ```
///
/// The last line is the arrangement of PyTorch's implementation, equal to the
/// documented `γ m̂_t / (√v̂_t + ε)`. Buffers are saved as `exp_avg`,
/// `exp_avg_sq` and, with AMSGrad, `max_exp_avg_sq`. Moments that fall below
/// `f32::MIN_POSITIVE` are stored as zero (see the crate docs).
#[derive(Debug, Clone)]
pub struct Adam {
    config: AdamConfig,
    decay: Decay,
    core: Core,
    exp_avg: Vec<f32>,
    exp_avg_sq: Vec<f32>,
    max_exp_avg_sq: Vec<f32>,
}

const EXP_AVG: &str = "exp_avg";
const EXP_AVG_SQ: &str = "exp_avg_sq";
const MAX_EXP_AVG_SQ: &str = "max_exp_avg_sq";

impl Adam {
    /// Validates `config` and `groups` and builds Adam (L2 weight decay).
    pub fn new(config: AdamConfig, groups: Vec<ParamGroup>) -> Result<Self> {
        Self::with_decay(config, Decay::Coupled, groups)
    }

    /// Validates `config` and `groups` and builds AdamW (decoupled weight
    /// decay, Loshchilov & Hutter, 2019).
    pub fn adamw(config: AdamWConfig, groups: Vec<ParamGroup>) -> Result<Self> {
        let AdamWConfig {
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
        } = config;
        let config = AdamConfig {
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
        };
        Self::with_decay(config, Decay::Decoupled, groups)
    }

    fn with_decay(config: AdamConfig, decay: Decay, groups: Vec<ParamGroup>) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            core: Core::new(config.lr, groups)?,
            config,
            decay,
            exp_avg: Vec::new(),
            exp_avg_sq: Vec::new(),
            max_exp_avg_sq: Vec::new(),
        })
    }

    /// The hyperparameters (for AdamW, with its weight decay).
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }

    /// Whether weight decay is decoupled (AdamW).
    pub fn is_decoupled(&self) -> bool {
        self.decay == Decay::Decoupled
    }
}

impl Optimizer for Adam {
    fn name(&self) -> &'static str {
        match self.decay {
            Decay::Coupled => "adam",
            Decay::Decoupled => "adamw",
        }
    }

    fn step(&mut self, params: &mut [f32], grads: &[f32]) -> Result<()> {
        self.core.groups.check_step(params, grads)?;
        let len = params.len();
        ensure_len(&mut self.exp_avg, EXP_AVG, len, 0.0)?;
        ensure_len(&mut self.exp_avg_sq, EXP_AVG_SQ, len, 0.0)?;
        if self.config.amsgrad {
            ensure_len(&mut self.max_exp_avg_sq, MAX_EXP_AVG_SQ, len, 0.0)?;
        }
        let t = (self.core.step + 1) as i32;
        let (beta1, beta2) = self.config.betas;
        let bias_correction1 = 1.0 - beta1.powi(t);
        let bias_correction2_sqrt = (1.0 - beta2.powi(t)).sqrt() as f32;
        let (b1, b2) = (beta1 as f32, beta2 as f32);
        let (one_minus_b1, one_minus_b2) = ((1.0 - beta1) as f32, (1.0 - beta2) as f32);
        let eps = self.config.eps as f32;
        let (m_all, v_all, vmax_all) = (
            &mut self.exp_avg,
            &mut self.exp_avg_sq,
            &mut self.max_exp_avg_sq,
        );
        self.core.groups.for_each(len, |group| {
            let lr = self.core.lr * group.lr_scale;
            let wd = group.weight_decay.unwrap_or(self.config.weight_decay);
            let (l2, shrink) = match self.decay {
                Decay::Coupled => (wd as f32, 1.0f32),
                Decay::Decoupled => (0.0, (1.0 - lr * wd) as f32),
            };
            let step_size = (lr / bias_correction1) as f32;
            let r = group.range.clone();
            let (p, g) = (&mut params[r.clone()], &grads[r.clone()]);
            let (m, v) = (&mut m_all[r.clone()], &mut v_all[r.clone()]);
            if self.config.amsgrad {
                let kernel = |p: &mut [f32], g: &[f32], [m, v, vmax]: [&mut [f32]; 3]| {
                    for ((((p, &g), m), v), vmax) in p
                        .iter_mut()
                        .zip(g)
                        .zip(m.iter_mut())
                        .zip(v.iter_mut())
                        .zip(vmax.iter_mut())
                    {
                        let g = g + l2 * *p;
                        let theta = *p * shrink;
                        *m = flush_subnormal(b1 * *m + one_minus_b1 * g);
                        *v = flush_subnormal(b2 * *v + one_minus_b2 * g * g);
                        *vmax = vmax.max(*v);
                        let denom = vmax.sqrt() / bias_correction2_sqrt + eps;
                        *p = theta - step_size * *m / denom;
                    }
                };
                update(p, g, [m, v, &mut vmax_all[r]], &kernel);
            } else {
                let kernel = |p: &mut [f32], g: &[f32], [m, v]: [&mut [f32]; 2]| {
                    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut())
                    {
                        let g = g + l2 * *p;
                        let theta = *p * shrink;
                        *m = flush_subnormal(b1 * *m + one_minus_b1 * g);
                        *v = flush_subnormal(b2 * *v + one_minus_b2 * g * g);
                        let denom = v.sqrt() / bias_correction2_sqrt + eps;
                        *p = theta - step_size * *m / denom;
                    }
                };
                update(p, g, [m, v], &kernel);
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
            buffers.insert(EXP_AVG.to_owned(), self.exp_avg.clone());
            buffers.insert(EXP_AVG_SQ.to_owned(), self.exp_avg_sq.clone());
            if self.config.amsgrad {
                buffers.insert(MAX_EXP_AVG_SQ.to_owned(), self.max_exp_avg_sq.clone());
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
        let name = self.name();
        let (step, lr, m, v, vmax) = if self.config.amsgrad {
            let (step, lr, [m, v, vmax]) =
                state.into_parts(name, [EXP_AVG, EXP_AVG_SQ, MAX_EXP_AVG_SQ])?;
            (step, lr, m, v, vmax)
        } else {
            let (step, lr, [m, v]) = state.into_parts(name, [EXP_AVG, EXP_AVG_SQ])?;
            (step, lr, m, v, Vec::new())
        };
        self.core.step = step;
        self.core.lr = lr;
        self.exp_avg = m;
        self.exp_avg_sq = v;
        self.max_exp_avg_sq = vmax;
        Ok(())
    }
}
