//! GradNorm, Chen, Badrinarayanan, Lee & Rabinovich (ICML 2018).
//!
//! Learnable weights `w_t` (init 1, kept summing to `T`) are tuned so that the
//! weighted gradient norms at a layer `W` (the last shared layer) train all
//! tasks at a common rate. At step `k`, with `n_t = ‖∇_W L_t‖`:
//!
//! * `G_t = w_t n_t`, `Ḡ = mean_t G_t`;
//! * loss ratio `L̃_t = L_t / L_t(0)`, relative inverse rate `r_t = L̃_t / mean_j L̃_j`;
//! * target `τ_t = Ḡ r_t^α`, held constant;
//! * `L_grad = Σ_t |G_t − τ_t|`, so `∂L_grad/∂w_t = sign(w_t n_t − τ_t) n_t`.
//!
//! The weights take one step of their own optimiser (Adam, lr 0.025 as in the
//! paper's NYUv2 runs), are floored at `1e-8` and renormalised to `Σ w = T`.
//! The network step uses the weights from before this update. `α = 0`
//! equalises the weighted norms: the fixed point is `w_t* = T (1/n_t) / Σ_j 1/n_j`.
//!
//! `L_t(0)` is the loss of the first balanced step unless `initial_losses`
//! gives theoretical values (the paper suggests `log C` for a `C`-class
//! cross-entropy). If every loss ratio is 0 the ratios `r_t` are taken as 1.
//!
//! **Scale.** The paper's weights sum to `T`; the returned weights are
//! `w_t / T` (mean scale, summing to 1). [`Balancer::learnable`] reports the
//! native `w_t`. This is the paper's direct parameterisation, not LibMTL's
//! `T·softmax(logits)` with an epoch of equal weighting first.

use serde::{Deserialize, Serialize};

use nalgebra::DMatrix;

use super::{
    check_parameter, parse_state, require_tasks, to_state, Balancer, GradientSource, GramBalancer,
    GramMethod, GramStep, MethodConfig, MethodState, OptimizerKind, StateOptimizer,
};
use crate::error::{Error, Result};

/// Weights are floored here before renormalising, so a large step cannot make
/// a weight zero or negative.
const MIN_WEIGHT: f64 = 1e-8;

/// Configuration of [`GradNorm`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GradNormConfig {
    /// Asymmetry `α`: strength of the pull toward a common training rate.
    pub alpha: f64,
    /// Learning rate of the weights.
    pub lr: f64,
    /// Optimiser of the weights.
    pub optimizer: OptimizerKind,
    /// Reference losses `L_t(0)`, one per task, all positive (empty: the
    /// losses of the first balanced step).
    pub initial_losses: Vec<f32>,
}

impl Default for GradNormConfig {
    fn default() -> Self {
        Self {
            alpha: 1.5,
            lr: 0.025,
            optimizer: OptimizerKind::Adam,
            initial_losses: Vec::new(),
        }
    }
}

impl MethodConfig for GradNormConfig {
    const NAME: &'static str = "gradnorm";
    const SUMMARY: &'static str =
        "GradNorm: learn weights that balance gradient norms at the last shared layer (Chen et al. 2018)";
    const NEEDS: GradientSource = GradientSource::LastSharedLayer;
    const PARAMS: &'static [(&'static str, &'static str)] = &[
        (
            "alpha",
            "asymmetry: restoring force toward a common training rate",
        ),
        ("lr", "learning rate of the task weights"),
        ("optimizer", "optimiser of the task weights: adam or sgd"),
        (
            "initial_losses",
            "reference losses L(0), one per task (empty: the first step's losses)",
        ),
    ];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        GramBalancer::boxed(num_tasks, GradNorm::new(num_tasks, self)?)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct GradNormState {
    weights: Vec<f64>,
    initial_losses: Option<Vec<f64>>,
    optimizer: StateOptimizer,
}

/// GradNorm; owns the weights `w` (summing to `T`) and the reference losses.
#[derive(Debug, Clone)]
pub struct GradNorm {
    config: GradNormConfig,
    state: GradNormState,
}

impl GradNorm {
    /// GradNorm for `num_tasks` tasks.
    ///
    /// # Errors
    /// [`Error::NoTasks`], [`Error::InvalidParameter`] for a negative `alpha`,
    /// a non-positive `lr` or a non-positive initial loss,
    /// [`Error::CountMismatch`] if `initial_losses` is non-empty and not one per task.
    pub fn new(num_tasks: usize, config: &GradNormConfig) -> Result<Self> {
        require_tasks(num_tasks)?;
        let name = GradNormConfig::NAME;
        check_parameter(
            name,
            "alpha",
            config.alpha,
            config.alpha >= 0.0,
            "must be >= 0",
        )?;
        check_parameter(name, "lr", config.lr, config.lr > 0.0, "must be positive")?;
        if !config.initial_losses.is_empty() && config.initial_losses.len() != num_tasks {
            return Err(Error::CountMismatch {
                what: "GradNorm initial losses",
                expected: num_tasks,
                got: config.initial_losses.len(),
            });
        }
        for &l in &config.initial_losses {
            check_parameter(
                name,
                "initial_losses",
                f64::from(l),
                l > 0.0,
                "every initial loss must be finite and positive",
            )?;
        }
        Ok(Self {
            config: config.clone(),
            state: Self::fresh_state(num_tasks, config),
        })
    }

    fn fresh_state(num_tasks: usize, config: &GradNormConfig) -> GradNormState {
        GradNormState {
            weights: vec![1.0; num_tasks],
            initial_losses: if config.initial_losses.is_empty() {
                None
            } else {
                Some(
                    config
                        .initial_losses
                        .iter()
                        .map(|&l| f64::from(l))
                        .collect(),
                )
            },
            optimizer: StateOptimizer::new(config.optimizer, num_tasks, config.lr),
        }
    }

    /// The native weights `w_t` (summing to `T`).
    pub fn native_weights(&self) -> &[f64] {
        &self.state.weights
    }

    /// The reference losses `L_t(0)`, once known.
    pub fn initial_losses(&self) -> Option<&[f64]> {
        self.state.initial_losses.as_deref()
    }

    /// `∂L_grad/∂w` for gradient norms `norms` and losses `losses` at the
    /// current weights (the reference losses must be set).
    fn weight_gradient(
        &self,
        weights: &[f64],
        norms: &[f64],
        losses: &[f32],
        initial: &[f64],
    ) -> Vec<f64> {
        let t = norms.len() as f64;
        let ratios: Vec<f64> = losses
            .iter()
            .zip(initial)
            .map(|(&l, &l0)| f64::from(l) / l0)
            .collect();
        let mean_ratio = ratios.iter().sum::<f64>() / t;
        let g: Vec<f64> = weights.iter().zip(norms).map(|(w, n)| w * n).collect();
        let g_mean = g.iter().sum::<f64>() / t;
        g.iter()
            .zip(&ratios)
            .zip(norms)
            .map(|((&gi, &ratio), &n)| {
                let r = if mean_ratio > 0.0 {
                    ratio / mean_ratio
                } else {
                    1.0
                };
                let target = g_mean * r.powf(self.config.alpha);
                let diff = gi - target;
                // sign(0) = 0: a task exactly on target is left alone.
                if diff > 0.0 {
                    n
                } else if diff < 0.0 {
                    -n
                } else {
                    0.0
                }
            })
            .collect()
    }
}

impl GradNorm {
    /// The reference losses of `tasks`, recording the current `losses` for
    /// any task seen for the first time (an absent task's reference waits
    /// until it is present; unknown entries are stored as 0).
    fn references(&mut self, tasks: &[usize], losses: &[f32]) -> Result<Vec<f64>> {
        let t_all = self.state.weights.len();
        let known = |init: &Option<Vec<f64>>, t: usize| init.as_ref().is_some_and(|i| i[t] > 0.0);
        for (&t, &l) in tasks.iter().zip(losses) {
            if !known(&self.state.initial_losses, t) && l <= 0.0 {
                return Err(Error::LossOutOfDomain {
                    balancer: GradNormConfig::NAME,
                    task: t,
                    value: f64::from(l),
                    bound: 0.0,
                });
            }
        }
        let initial = self
            .state
            .initial_losses
            .get_or_insert_with(|| vec![0.0; t_all]);
        for (&t, &l) in tasks.iter().zip(losses) {
            if initial[t] <= 0.0 {
                initial[t] = f64::from(l);
            }
        }
        Ok(tasks.iter().map(|&t| initial[t]).collect())
    }
}

impl GramMethod for GradNorm {
    type Config = GradNormConfig;

    /// Only the norms are read.
    fn reads_off_diagonal(&self) -> bool {
        false
    }

    /// The norms `n_t` are the square roots of the Gram's diagonal. Only the
    /// present tasks' weights take the step; they are renormalised to keep
    /// their sum (`T` when every task is present).
    fn weights(&mut self, gram: &DMatrix<f64>, step: &GramStep<'_>) -> Result<Vec<f64>> {
        let tasks = step.tasks;
        let norms: Vec<f64> = (0..tasks.len())
            .map(|i| gram[(i, i)].max(0.0).sqrt())
            .collect();
        let initial = self.references(tasks, step.losses)?;
        let t_all = self.state.weights.len();
        let current: Vec<f64> = tasks.iter().map(|&t| self.state.weights[t]).collect();
        let kept_sum: f64 = current.iter().sum();
        let denominator = if step.all_present() {
            t_all as f64
        } else {
            kept_sum
        };
        let out = current.iter().map(|w| w / denominator).collect();
        let sub_grad = self.weight_gradient(&current, &norms, step.losses, &initial);
        let mut grad = vec![0.0f64; t_all];
        let mut active = vec![false; t_all];
        for (&t, g) in tasks.iter().zip(sub_grad) {
            grad[t] = g;
            active[t] = true;
        }
        let mask = (!step.all_present()).then_some(active.as_slice());
        self.state
            .optimizer
            .step_active(&mut self.state.weights, &grad, mask);
        for &t in tasks {
            self.state.weights[t] = self.state.weights[t].max(MIN_WEIGHT);
        }
        let target = if step.all_present() {
            t_all as f64
        } else {
            kept_sum
        };
        let scale = target / tasks.iter().map(|&t| self.state.weights[t]).sum::<f64>();
        for &t in tasks {
            self.state.weights[t] *= scale;
        }
        Ok(out)
    }
}

impl MethodState for GradNorm {
    fn state(&self) -> serde_json::Value {
        to_state(&self.state)
    }

    fn load_state(&mut self, balancer: &'static str, state: &serde_json::Value) -> Result<()> {
        let loaded: GradNormState = parse_state(balancer, state)?;
        let n = self.state.weights.len();
        let initial_ok = loaded.initial_losses.as_ref().is_none_or(|l| l.len() == n);
        if loaded.weights.len() != n || !initial_ok {
            return Err(Error::State {
                balancer,
                reason: format!("state has {} weights for {n} tasks", loaded.weights.len()),
            });
        }
        self.state = loaded;
        Ok(())
    }

    fn reset(&mut self) {
        self.state = Self::fresh_state(self.state.weights.len(), &self.config);
    }

    fn learnable(&self) -> Vec<(String, f32)> {
        self.state
            .weights
            .iter()
            .enumerate()
            .map(|(t, &w)| (format!("weight[{t}]"), w as f32))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::{BalanceInput, GradRows};
    use proptest::prelude::*;

    /// One closed-form step in f64, compared with 6-decimal ground truths.
    const CLOSED_FORM: f64 = 1e-6;
    /// balancers.md GN-2: Adam/SGD iterates chatter around the fixed point by
    /// ~lr·n; a tail average lies within 1e-2 of it.
    const TAIL_MEAN: f64 = 1e-2;
    /// balancers.md GN-2: relative spread of the tail-averaged weighted norms.
    const NORM_SPREAD: f64 = 2e-2;

    /// Diagonal gradient rows with the given norms (row t = n_t e_t).
    fn diagonal_rows(norms: &[f32]) -> Vec<f32> {
        let t = norms.len();
        let mut rows = vec![0.0; t * t];
        for (i, &n) in norms.iter().enumerate() {
            rows[i * t + i] = n;
        }
        rows
    }

    fn gradnorm(
        alpha: f64,
        lr: f64,
        optimizer: OptimizerKind,
        initial: Vec<f32>,
        t: usize,
    ) -> GramBalancer<GradNorm> {
        let config = GradNormConfig {
            alpha,
            lr,
            optimizer,
            initial_losses: initial,
        };
        GramBalancer::new(t, GradNorm::new(t, &config).unwrap()).unwrap()
    }

    /// Runs `steps` updates on fixed rows and losses and returns the mean of
    /// the last `tail` native weight vectors.
    fn tail_mean(
        gn: &mut GramBalancer<GradNorm>,
        rows: &[f32],
        losses: &[f32],
        steps: usize,
        tail: usize,
    ) -> Vec<f64> {
        let t = losses.len();
        let grads = GradRows::new(rows, t, rows.len() / t).unwrap();
        let mut sum = vec![0.0; t];
        for k in 0..steps {
            gn.balance(&BalanceInput::from_losses(losses).with_grads(grads))
                .unwrap();
            if k >= steps - tail {
                for (s, w) in sum.iter_mut().zip(gn.method().native_weights()) {
                    *s += w;
                }
            }
        }
        sum.iter().map(|s| s / tail as f64).collect()
    }

    #[test]
    fn gn_1_one_paper_step() {
        // n = (1,10), w = (1,1), equal ratios ⇒ ∇w = (−1, 10); SGD 0.025 ⇒
        // (1.025, 0.75) ⇒ renormalised (1.154930, 0.845070).
        let rows = diagonal_rows(&[1.0, 10.0]);
        let grads = GradRows::new(&rows, 2, 2).unwrap();
        let mut gn = gradnorm(1.5, 0.025, OptimizerKind::Sgd, vec![], 2);
        let out = gn
            .balance(&BalanceInput::from_losses(&[0.7, 0.7]).with_grads(grads))
            .unwrap();
        assert_eq!(out.weights(), &[0.5, 0.5]);
        let w = gn.method().native_weights();
        assert!((w[0] - 1.154930).abs() < CLOSED_FORM, "{w:?}");
        assert!((w[1] - 0.845070).abs() < CLOSED_FORM, "{w:?}");
    }

    #[test]
    fn gn_2_alpha_zero_equalises_weighted_norms_within_4000_updates() {
        // Fixed point w* = (20/11, 2/11); Adam lr 0.025, 4000 updates, tail of 500.
        let rows = diagonal_rows(&[1.0, 10.0]);
        let mut gn = gradnorm(0.0, 0.025, OptimizerKind::Adam, vec![], 2);
        let w = tail_mean(&mut gn, &rows, &[1.0, 1.0], 4000, 500);
        assert!((w[0] - 20.0 / 11.0).abs() < TAIL_MEAN, "{w:?}");
        assert!((w[1] - 2.0 / 11.0).abs() < TAIL_MEAN, "{w:?}");
        let (g1, g2) = (w[0] * 1.0, w[1] * 10.0);
        assert!(
            (g1 - g2).abs() / ((g1 + g2) / 2.0) < NORM_SPREAD,
            "{g1} {g2}"
        );
    }

    #[test]
    fn gn_2_small_lr_sgd_also_settles() {
        // SGD lr 1e-3, 20000 updates, tail of 2000 ⇒ (1.818347, 0.181653).
        let rows = diagonal_rows(&[1.0, 10.0]);
        let mut gn = gradnorm(0.0, 1e-3, OptimizerKind::Sgd, vec![], 2);
        let w = tail_mean(&mut gn, &rows, &[1.0, 1.0], 20_000, 2000);
        assert!((w[0] - 20.0 / 11.0).abs() < TAIL_MEAN, "{w:?}");
    }

    #[test]
    fn gn_3_three_tasks_alpha_zero() {
        // n = (1,2,4) ⇒ w* = (12/7, 6/7, 3/7); Adam lr 0.01, 20000 updates.
        let rows = diagonal_rows(&[1.0, 2.0, 4.0]);
        let mut gn = gradnorm(0.0, 0.01, OptimizerKind::Adam, vec![], 3);
        let w = tail_mean(&mut gn, &rows, &[1.0, 1.0, 1.0], 20_000, 2000);
        for (a, b) in w.iter().zip([12.0 / 7.0, 6.0 / 7.0, 3.0 / 7.0]) {
            assert!((a - b).abs() < TAIL_MEAN, "{w:?}");
        }
    }

    #[test]
    fn gn_4_alpha_one_is_exact() {
        // n = (1,1), L̃ = (0.5, 1) ⇒ r = (2/3, 4/3) ⇒ w* = r.
        let rows = diagonal_rows(&[1.0, 1.0]);
        let mut gn = gradnorm(1.0, 0.025, OptimizerKind::Adam, vec![1.0, 1.0], 2);
        let w = tail_mean(&mut gn, &rows, &[0.5, 1.0], 4000, 500);
        assert!((w[0] - 2.0 / 3.0).abs() < TAIL_MEAN, "{w:?}");
        assert!((w[1] - 4.0 / 3.0).abs() < TAIL_MEAN, "{w:?}");
    }

    #[test]
    fn gn_5_general_alpha_settles_at_the_kink_not_the_naive_ratio() {
        // n = (1,4), r = (2/3, 4/3), α = 1.5: the L1 dynamics settle at
        // (1.089318, 0.910682), not at the naive w ∝ r^α/n = (1.1716, 0.8284).
        let rows = diagonal_rows(&[1.0, 4.0]);
        let mut gn = gradnorm(1.5, 0.025, OptimizerKind::Adam, vec![1.0, 1.0], 2);
        let w = tail_mean(&mut gn, &rows, &[0.5, 1.0], 4000, 500);
        assert!((w[0] - 1.089318).abs() < TAIL_MEAN, "{w:?}");
        assert!((w[0] - 1.1716).abs() > 5.0 * TAIL_MEAN, "{w:?}");
    }

    #[test]
    fn first_step_losses_become_the_reference() {
        let rows = diagonal_rows(&[1.0, 2.0]);
        let grads = GradRows::new(&rows, 2, 2).unwrap();
        let mut gn = gradnorm(1.5, 0.025, OptimizerKind::Adam, vec![], 2);
        assert!(gn.method().initial_losses().is_none());
        gn.balance(&BalanceInput::from_losses(&[2.0, 0.5]).with_grads(grads))
            .unwrap();
        assert_eq!(gn.method().initial_losses(), Some(&[2.0, 0.5][..]));
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut gn = gradnorm(1.5, 0.025, OptimizerKind::Adam, vec![], 2);
        let err = gn
            .balance(&BalanceInput::from_losses(&[1.0, 1.0]))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::MissingGradients {
                    balancer: "gradnorm",
                    ..
                }
            ),
            "{err}"
        );
        let rows = [1.0, f32::NAN, 0.0, 1.0];
        let grads = GradRows::new(&rows, 2, 2).unwrap();
        let err = gn
            .balance(&BalanceInput::from_losses(&[1.0, 1.0]).with_grads(grads))
            .unwrap_err();
        assert!(
            matches!(err, Error::NonFiniteGradient { task: 0, .. }),
            "{err}"
        );
        let rows = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let grads = GradRows::new(&rows, 3, 2).unwrap();
        let err = gn
            .balance(&BalanceInput::from_losses(&[1.0, 1.0]).with_grads(grads))
            .unwrap_err();
        assert_eq!(
            err,
            Error::CountMismatch {
                what: "gradient rows",
                expected: 2,
                got: 3
            }
        );
        let rows = diagonal_rows(&[1.0, 1.0]);
        let grads = GradRows::new(&rows, 2, 2).unwrap();
        let err = gn
            .balance(&BalanceInput::from_losses(&[1.0, 0.0]).with_grads(grads))
            .unwrap_err();
        assert!(
            matches!(err, Error::LossOutOfDomain { task: 1, .. }),
            "{err}"
        );
        assert!(GradNorm::new(
            2,
            &GradNormConfig {
                initial_losses: vec![1.0],
                ..GradNormConfig::default()
            }
        )
        .is_err());
    }

    #[test]
    fn state_round_trip_continues_identically() {
        let rows = diagonal_rows(&[1.0, 3.0, 0.5]);
        let grads = GradRows::new(&rows, 3, 3).unwrap();
        let losses = [
            [1.0f32, 2.0, 3.0],
            [0.9, 1.9, 2.5],
            [0.8, 1.7, 2.9],
            [0.7, 1.8, 2.2],
        ];
        let mut a =
            GramBalancer::new(3, GradNorm::new(3, &GradNormConfig::default()).unwrap()).unwrap();
        for l in &losses[..2] {
            a.balance(&BalanceInput::from_losses(l).with_grads(grads))
                .unwrap();
        }
        let text = serde_json::to_string(&a.state()).unwrap();
        let mut b =
            GramBalancer::new(3, GradNorm::new(3, &GradNormConfig::default()).unwrap()).unwrap();
        b.load_state(&serde_json::from_str(&text).unwrap()).unwrap();
        for l in &losses[2..] {
            let wa = a
                .balance(&BalanceInput::from_losses(l).with_grads(grads))
                .unwrap();
            let wb = b
                .balance(&BalanceInput::from_losses(l).with_grads(grads))
                .unwrap();
            assert_eq!(wa, wb);
        }
        assert_eq!(a.method().native_weights(), b.method().native_weights());
        a.reset();
        assert_eq!(a.method().native_weights(), &[1.0, 1.0, 1.0]);
        assert!(a.method().initial_losses().is_none());
    }

    proptest! {
        #[test]
        fn weights_stay_finite_positive_and_sum_to_t(
            norms in proptest::collection::vec(1e-3f32..1e3, 2..6),
            alpha in 0.0f64..3.0,
            lr in 1e-3f64..0.5,
            steps in 1usize..60,
        ) {
            let t = norms.len();
            let rows = diagonal_rows(&norms);
            let grads = GradRows::new(&rows, t, t).unwrap();
            let mut gn = gradnorm(alpha, lr, OptimizerKind::Adam, vec![], t);
            for k in 0..steps {
                let losses: Vec<f32> = (0..t).map(|i| 1.0 + ((i + k) % 3) as f32).collect();
                let out = gn.balance(&BalanceInput::from_losses(&losses).with_grads(grads)).unwrap();
                let sum: f32 = out.weights().iter().sum();
                prop_assert!((sum - 1.0).abs() < 1e-5);
                prop_assert!(out.weights().iter().all(|w| w.is_finite() && *w > 0.0));
                let native: f64 = gn.method().native_weights().iter().sum();
                prop_assert!((native - t as f64).abs() < 1e-9);
            }
        }
    }
}
