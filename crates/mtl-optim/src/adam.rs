//! Adam (Kingma & Ba, 2015) with the AMSGrad variant (Reddi et al., 2018),
//! and the update kernel shared with AdamW.

use serde::{Deserialize, Serialize};

use crate::adamw::AdamWConfig;
use crate::config::check_adam_family;
use crate::elementwise::flush_subnormal;
use crate::error::Result;
use crate::group::ParamGroup;
use crate::optimizer::{core_accessors, Core, GroupStep, Optimizer};
use crate::state::OptimizerState;

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
        check_adam_family(self.lr, self.betas, self.eps, self.weight_decay)
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
            core: Core::new(config.lr, config.weight_decay, groups)?,
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
        let t = (self.core.step + 1) as i32;
        let (beta1, beta2) = self.config.betas;
        let bias_correction1 = 1.0 - beta1.powi(t);
        let bias_correction2_sqrt = (1.0 - beta2.powi(t)).sqrt() as f32;
        let (b1, b2) = (beta1 as f32, beta2 as f32);
        let (one_minus_b1, one_minus_b2) = ((1.0 - beta1) as f32, (1.0 - beta2) as f32);
        let eps = self.config.eps as f32;
        let decay = self.decay;
        // The group's L2 factor, parameter shrink factor and step size.
        let coefficients = |group: GroupStep| {
            let (l2, shrink) = match decay {
                Decay::Coupled => (group.weight_decay as f32, 1.0f32),
                Decay::Decoupled => (0.0, (1.0 - group.lr * group.weight_decay) as f32),
            };
            (l2, shrink, (group.lr / bias_correction1) as f32)
        };
        let m = (EXP_AVG, &mut self.exp_avg);
        let v = (EXP_AVG_SQ, &mut self.exp_avg_sq);
        if self.config.amsgrad {
            let vmax = (MAX_EXP_AVG_SQ, &mut self.max_exp_avg_sq);
            self.core.step(params, grads, [m, v, vmax], 0.0, |group| {
                let (l2, shrink, step_size) = coefficients(group);
                move |p: &mut [f32], g: &[f32], [m, v, vmax]: [&mut [f32]; 3]| {
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
                }
            })
        } else {
            self.core.step(params, grads, [m, v], 0.0, |group| {
                let (l2, shrink, step_size) = coefficients(group);
                move |p: &mut [f32], g: &[f32], [m, v]: [&mut [f32]; 2]| {
                    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut())
                    {
                        let g = g + l2 * *p;
                        let theta = *p * shrink;
                        *m = flush_subnormal(b1 * *m + one_minus_b1 * g);
                        *v = flush_subnormal(b2 * *v + one_minus_b2 * g * g);
                        let denom = v.sqrt() / bias_correction2_sqrt + eps;
                        *p = theta - step_size * *m / denom;
                    }
                }
            })
        }
    }

    core_accessors!();

    fn state(&self) -> OptimizerState {
        let mut buffers = vec![(EXP_AVG, &self.exp_avg), (EXP_AVG_SQ, &self.exp_avg_sq)];
        if self.config.amsgrad {
            buffers.push((MAX_EXP_AVG_SQ, &self.max_exp_avg_sq));
        }
        self.core.save(self.name(), &buffers)
    }

    fn load_state(&mut self, state: OptimizerState) -> Result<()> {
        let name = self.name();
        let mut buffers = vec![
            (EXP_AVG, &mut self.exp_avg),
            (EXP_AVG_SQ, &mut self.exp_avg_sq),
        ];
        if self.config.amsgrad {
            buffers.push((MAX_EXP_AVG_SQ, &mut self.max_exp_avg_sq));
        }
        self.core.load(state, name, &mut buffers)
    }
}
