//! Adamax, the infinity-norm variant of Adam (Kingma & Ba, 2015, section 7).

use serde::{Deserialize, Serialize};

use crate::config::check_adam_family;
use crate::elementwise::flush_subnormal;
use crate::error::Result;
use crate::group::ParamGroup;
use crate::optimizer::{core_accessors, Core, Optimizer};
use crate::state::OptimizerState;

/// Hyperparameters of [`Adamax`]; defaults are PyTorch's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamaxConfig {
    /// Learning rate γ (default 2e-3).
    pub lr: f64,
    /// Decay rates (β₁, β₂) (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// ε added to |g| in the infinity norm (default 1e-8).
    pub eps: f64,
    /// L2 penalty λ added to the gradient (default 0).
    pub weight_decay: f64,
}

impl Default for AdamaxConfig {
    fn default() -> Self {
        Self {
            lr: 2e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl AdamaxConfig {
    /// Checks every value: `lr > 0`, `0 <= β < 1`, `eps > 0`,
    /// `weight_decay >= 0` (all finite).
    pub fn validate(&self) -> Result<()> {
        check_adam_family(self.lr, self.betas, self.eps, self.weight_decay)
    }

    /// Validates and builds the optimizer over `groups`.
    pub fn build(&self, groups: Vec<ParamGroup>) -> Result<Adamax> {
        Adamax::new(self.clone(), groups)
    }
}

/// Adamax as documented for `torch.optim.Adamax`. For gradient `g_t` at step
/// `t`:
///
/// ```text
/// g ← g_t + λ θ_{t-1}                 (if λ ≠ 0)
/// m_t ← β₁ m_{t-1} + (1 − β₁) g
/// u_t ← max(β₂ u_{t-1}, |g| + ε)
/// θ_t ← θ_{t-1} − γ/(1 − β₁ᵗ) · m_t / u_t
/// ```
///
/// Buffers are saved as `exp_avg` and `exp_inf`. `u_t >= ε` never becomes
/// subnormal; `m_t` below `f32::MIN_POSITIVE` is stored as zero (see the
/// crate docs).
#[derive(Debug, Clone)]
pub struct Adamax {
    config: AdamaxConfig,
    core: Core,
    exp_avg: Vec<f32>,
    exp_inf: Vec<f32>,
}

const EXP_AVG: &str = "exp_avg";
const EXP_INF: &str = "exp_inf";

impl Adamax {
    /// Validates `config` and `groups`.
    pub fn new(config: AdamaxConfig, groups: Vec<ParamGroup>) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            core: Core::new(config.lr, config.weight_decay, groups)?,
            config,
            exp_avg: Vec::new(),
            exp_inf: Vec::new(),
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &AdamaxConfig {
        &self.config
    }
}

impl Optimizer for Adamax {
    fn name(&self) -> &'static str {
        "adamax"
    }

    fn step(&mut self, params: &mut [f32], grads: &[f32]) -> Result<()> {
        let t = (self.core.step + 1) as i32;
        let (beta1, beta2) = self.config.betas;
        let bias_correction = 1.0 - beta1.powi(t);
        let (b1, b2) = (beta1 as f32, beta2 as f32);
        let one_minus_b1 = (1.0 - beta1) as f32;
        let eps = self.config.eps as f32;
        let buffers = [(EXP_AVG, &mut self.exp_avg), (EXP_INF, &mut self.exp_inf)];
        self.core.step(params, grads, buffers, 0.0, |group| {
            let clr = (group.lr / bias_correction) as f32;
            let wd = group.weight_decay as f32;
            move |p: &mut [f32], g: &[f32], [m, u]: [&mut [f32]; 2]| {
                for (((p, &g), m), u) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(u.iter_mut()) {
                    let g = g + wd * *p;
                    *m = flush_subnormal(b1 * *m + one_minus_b1 * g);
                    *u = (b2 * *u).max(g.abs() + eps);
                    *p -= clr * *m / *u;
                }
            }
        })
    }

    core_accessors!();

    fn state(&self) -> OptimizerState {
        let buffers = [(EXP_AVG, &self.exp_avg), (EXP_INF, &self.exp_inf)];
        self.core.save(self.name(), &buffers)
    }

    fn load_state(&mut self, state: OptimizerState) -> Result<()> {
        let name = self.name();
        let mut buffers = [(EXP_AVG, &mut self.exp_avg), (EXP_INF, &mut self.exp_inf)];
        self.core.load(state, name, &mut buffers)
    }
}
