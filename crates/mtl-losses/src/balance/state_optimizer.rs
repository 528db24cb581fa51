//! The optimiser that updates a balancer's own learnable values (uncertainty
//! weighting's log-variances, GradNorm's weights, FAMO's logits).
//!
//! These few scalars get their own optimiser and learning rate, separate from
//! the network's, as in the papers (GradNorm §5.1 uses Adam with lr 0.025 for
//! its weights; FAMO uses Adam with lr 0.025 and weight decay on its logits).
//! All arithmetic is in `f64`; the state serialises for checkpoints.

use serde::{Deserialize, Serialize};

/// Which update rule a balancer applies to its learnable values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Adam (Kingma & Ba 2015) with β₁ = 0.9, β₂ = 0.999, ε = 1e-8.
    #[default]
    Adam,
    /// Plain gradient descent `x ← x − lr·∇`.
    Sgd,
}

/// Adam on a small `f64` vector, with *coupled* L2 weight decay (the decay
/// `γx` is added to the gradient, as PyTorch's `Adam(weight_decay=γ)` does):
///
/// `g' = ∇ + γx`, `m ← β₁m + (1−β₁)g'`, `v ← β₂v + (1−β₂)g'²`,
/// `x ← x − lr · (m/(1−β₁ᵏ)) / (√(v/(1−β₂ᵏ)) + ε)` at step `k = 1, 2, …`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateAdam {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay β₁.
    pub beta1: f64,
    /// Second-moment decay β₂.
    pub beta2: f64,
    /// Denominator guard ε.
    pub eps: f64,
    /// Coupled L2 weight decay γ.
    pub weight_decay: f64,
    m: Vec<f64>,
    v: Vec<f64>,
    t: u64,
}

impl StateAdam {
    /// Adam for `n` values with learning rate `lr` and PyTorch's defaults
    /// (β₁ = 0.9, β₂ = 0.999, ε = 1e-8, no weight decay).
    pub fn new(n: usize, lr: f64) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        }
    }

    /// The same optimiser with coupled weight decay `gamma`.
    pub fn with_weight_decay(mut self, gamma: f64) -> Self {
        self.weight_decay = gamma;
        self
    }

    /// Number of steps taken.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// One Adam step on `x` with gradient `grad` (same length as `x`).
    pub fn step(&mut self, x: &mut [f64], grad: &[f64]) {
        self.step_active(x, grad, None);
    }

    /// [`step`](Self::step) on the entries where `active` is true only: the
    /// others keep their value and their moments (the step count is shared).
    pub fn step_active(&mut self, x: &mut [f64], grad: &[f64], active: Option<&[bool]>) {
        debug_assert_eq!(x.len(), grad.len());
        debug_assert_eq!(x.len(), self.m.len());
        self.t += 1;
        let bias1 = 1.0 - decayed(self.beta1, self.t);
        let bias2 = 1.0 - decayed(self.beta2, self.t);
        let entries = x.iter_mut().zip(grad).zip(&mut self.m).zip(&mut self.v);
        for (k, (((xi, &gi), mi), vi)) in entries.enumerate() {
            if active.is_some_and(|a| !a.get(k).copied().unwrap_or(false)) {
                continue;
            }
            let g = gi + self.weight_decay * *xi;
            *mi = self.beta1 * *mi + (1.0 - self.beta1) * g;
            *vi = self.beta2 * *vi + (1.0 - self.beta2) * g * g;
            flush_subnormal(mi);
            flush_subnormal(vi);
            *xi -= self.lr * (*mi / bias1) / ((*vi / bias2).sqrt() + self.eps);
        }
    }

    /// Clears the moments and the step count.
    pub fn reset(&mut self) {
        self.m.iter_mut().for_each(|m| *m = 0.0);
        self.v.iter_mut().for_each(|v| *v = 0.0);
        self.t = 0;
    }
}

/// Sets a moment that decayed below the normal `f64` range to exactly 0.
/// With a zero gradient (FAMO with equal loss decreases, a log-variance at its
/// fixed point) the moments shrink geometrically; once subnormal, every
/// further step would run through slow subnormal arithmetic for a value that
/// no longer changes the update.
fn flush_subnormal(x: &mut f64) {
    if x.abs() < f64::MIN_POSITIVE {
        *x = 0.0;
    }
}

/// `β^k`, flushed to exactly 0 once it would leave the normal `f64` range:
/// after ~7000 steps `0.9^k` would otherwise be computed through subnormals,
/// which are slow on x86, for a bias correction that is already exactly 1.
fn decayed(beta: f64, k: u64) -> f64 {
    // e^{−700} ≈ 1e−304 is still a normal double.
    const SMALLEST_KEPT_LN: f64 = -700.0;
    if k as f64 * beta.ln() < SMALLEST_KEPT_LN {
        0.0
    } else {
        beta.powi(k as i32)
    }
}

/// A configured optimiser for a balancer's learnable values, with its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateOptimizer {
    /// Plain gradient descent with this learning rate.
    Sgd {
        /// Learning rate.
        lr: f64,
    },
    /// Adam with its moments.
    Adam(StateAdam),
}

impl StateOptimizer {
    /// An optimiser of `kind` for `n` values with learning rate `lr`.
    pub fn new(kind: OptimizerKind, n: usize, lr: f64) -> Self {
        match kind {
            OptimizerKind::Sgd => StateOptimizer::Sgd { lr },
            OptimizerKind::Adam => StateOptimizer::Adam(StateAdam::new(n, lr)),
        }
    }

    /// One descent step on `x` with gradient `grad`.
    pub fn step(&mut self, x: &mut [f64], grad: &[f64]) {
        self.step_active(x, grad, None);
    }

    /// One step on the entries where `active` is true only (`None`: all);
    /// the others are left exactly as they are, optimiser moments included.
    /// Used for absent tasks, which must not teach the state anything.
    pub fn step_active(&mut self, x: &mut [f64], grad: &[f64], active: Option<&[bool]>) {
        match self {
            StateOptimizer::Sgd { lr } => {
                for (k, (xi, gi)) in x.iter_mut().zip(grad).enumerate() {
                    if active.is_none_or(|a| a.get(k).copied().unwrap_or(false)) {
                        *xi -= *lr * gi;
                    }
                }
            }
            StateOptimizer::Adam(adam) => adam.step_active(x, grad, active),
        }
    }

    /// Clears any moments.
    pub fn reset(&mut self) {
        if let StateOptimizer::Adam(adam) = self {
            adam.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Closed-form arithmetic on a handful of doubles: only rounding differs.
    const EXACT: f64 = 1e-12;

    #[test]
    fn first_adam_step_moves_by_lr_times_sign() {
        // With bias correction the first step is lr·g/(|g| + ε) ≈ lr·sign(g).
        let mut adam = StateAdam::new(2, 0.025);
        let mut x = [0.0, 0.0];
        adam.step(&mut x, &[-0.025, 0.025]);
        assert!(
            (x[0] - 0.025).abs() < 1e-8 && (x[1] + 0.025).abs() < 1e-8,
            "{x:?}"
        );
        assert_eq!(adam.steps(), 1);
    }

    #[test]
    fn weight_decay_is_added_to_the_gradient() {
        // Zero gradient, x = 1, γ = 0.5: g' = 0.5 > 0, so x decreases by ~lr.
        let mut adam = StateAdam::new(1, 0.1).with_weight_decay(0.5);
        let mut x = [1.0];
        adam.step(&mut x, &[0.0]);
        assert!((x[0] - 0.9).abs() < 1e-6, "{x:?}");
    }

    #[test]
    fn bias_correction_powers_flush_to_zero_only_below_the_normal_range() {
        assert_eq!(decayed(0.9, 3), 0.9f64.powi(3));
        assert_eq!(decayed(0.9, 6000), 0.9f64.powi(6000));
        assert!(decayed(0.9, 6000) > f64::MIN_POSITIVE);
        assert_eq!(decayed(0.9, 7000), 0.0);
        assert_eq!(decayed(0.0, 1), 0.0);
        assert_eq!(decayed(0.999, 1), 0.999);
    }

    #[test]
    fn moments_of_a_vanishing_gradient_reach_exact_zero() {
        let mut adam = StateAdam::new(1, 0.01);
        let mut x = [1.0];
        adam.step(&mut x, &[1.0]);
        for _ in 0..8000 {
            adam.step(&mut x, &[0.0]);
        }
        assert_eq!(adam.m[0], 0.0);
        assert!(
            adam.v[0] >= f64::MIN_POSITIVE,
            "v decays slower: {}",
            adam.v[0]
        );
    }

    #[test]
    fn sgd_step_is_lr_times_gradient() {
        let mut opt = StateOptimizer::new(OptimizerKind::Sgd, 2, 0.5);
        let mut x = [1.0, 2.0];
        opt.step(&mut x, &[2.0, -4.0]);
        assert!((x[0] - 0.0).abs() < EXACT && (x[1] - 4.0).abs() < EXACT);
    }
}
