//! Uncertainty weighting (UW), Kendall, Gal & Cipolla (CVPR 2018).
//!
//! Each task has a learnable log-variance `s_t = log σ_t²` and contributes
//!
//! * regression form (Gaussian likelihood): `½ e^{−s_t} L_t + ½ s_t`,
//! * classification form (softmax with temperature `σ²`, the paper's
//!   approximation): `e^{−s_t} L_t + ½ s_t`,
//! * log-variance form (common re-implementations, no halves): `e^{−s_t} L_t + s_t`.
//!
//! Writing each term as `c_t e^{−s_t} L_t + k_t s_t`, the multiplier of `L_t`
//! is `m_t = c_t e^{−s_t}` and the log-variances follow their own gradient
//! `∂/∂s_t = k_t − c_t e^{−s_t} L_t` with their own optimiser and learning rate
//! (Adam, lr 0.025, as in the Nash-MTL experiments; LibMTL instead trains them
//! with the model's optimiser). The stationary point is `s_t* = log(c_t L_t / k_t)`:
//! `log L` (regression), `log 2L` (classification), `log L` (log-variance), with
//! effective multiplier `1/(2L)`, `1/(2L)` and `1/L`.
//!
//! **Scale.** The returned weight is `m_t / T` (mean scale), so the network
//! receives `1/T` times the gradient of Kendall et al.'s summed objective. The
//! weights are unnormalised: they grow like `1/L_t` as the losses shrink.
//! `s_t` is clamped to `±log_var_bound` so a loss reaching 0 cannot send it to
//! `−∞`.

use serde::{Deserialize, Serialize};

use super::{
    check_parameter, parse_state, require_tasks, to_state, BalanceInput, Balanced, Balancer,
    GradientSource, MethodConfig, OptimizerKind, StateOptimizer,
};
use crate::error::{Error, Result};

/// Which of Kendall et al.'s likelihood forms a task uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UncertaintyForm {
    /// `½ e^{−s} L + ½ s`: Gaussian likelihood (LibMTL uses it for every task).
    #[default]
    Regression,
    /// `e^{−s} L + ½ s`: softmax likelihood with temperature `σ²`.
    Classification,
    /// `e^{−s} L + s`: the form without halves used by many re-implementations.
    LogVariance,
}

impl UncertaintyForm {
    /// `c` in `c e^{−s} L + k s`.
    pub fn loss_coefficient(self) -> f64 {
        match self {
            UncertaintyForm::Regression => 0.5,
            UncertaintyForm::Classification | UncertaintyForm::LogVariance => 1.0,
        }
    }

    /// `k` in `c e^{−s} L + k s`.
    pub fn regulariser_coefficient(self) -> f64 {
        match self {
            UncertaintyForm::Regression | UncertaintyForm::Classification => 0.5,
            UncertaintyForm::LogVariance => 1.0,
        }
    }

    /// The stationary log-variance for a frozen loss, `s* = log(c L / k)`.
    pub fn stationary_log_var(self, loss: f64) -> f64 {
        (self.loss_coefficient() * loss / self.regulariser_coefficient()).ln()
    }
}

/// Configuration of [`Uncertainty`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UncertaintyConfig {
    /// The form used by every task not listed in `forms`.
    pub form: UncertaintyForm,
    /// One form per task (empty: `form` for all). A trainer may also set the
    /// forms from the task kinds with [`Uncertainty::with_forms`].
    pub forms: Vec<UncertaintyForm>,
    /// Initial log-variance `s_t(0)` of every task.
    pub init_log_var: f64,
    /// Learning rate of the log-variances.
    pub lr: f64,
    /// Optimiser of the log-variances.
    pub optimizer: OptimizerKind,
    /// `s_t` is clamped to `[−log_var_bound, log_var_bound]`.
    pub log_var_bound: f64,
}

impl Default for UncertaintyConfig {
    fn default() -> Self {
        Self {
            form: UncertaintyForm::Regression,
            forms: Vec::new(),
            init_log_var: 0.0,
            lr: 0.025,
            optimizer: OptimizerKind::Adam,
            log_var_bound: 20.0,
        }
    }
}

impl MethodConfig for UncertaintyConfig {
    const NAME: &'static str = "uncertainty";
    const SUMMARY: &'static str =
        "uncertainty weighting with learnable log-variances (Kendall et al. 2018)";
    const NEEDS: GradientSource = GradientSource::None;
    const PARAMS: &'static [(&'static str, &'static str)] = &[
        (
            "form",
            "likelihood form for all tasks: regression, classification or log-variance",
        ),
        (
            "forms",
            "one form per task, overriding `form` (empty: use `form`)",
        ),
        ("init_log_var", "initial log-variance s = log sigma^2"),
        ("lr", "learning rate of the log-variances"),
        ("optimizer", "optimiser of the log-variances: adam or sgd"),
        (
            "log_var_bound",
            "log-variances are clamped to [-bound, bound]",
        ),
    ];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        Ok(Box::new(Uncertainty::new(num_tasks, self)?))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct UncertaintyState {
    log_vars: Vec<f64>,
    optimizer: StateOptimizer,
}

/// Uncertainty weighting; owns the log-variances `s`.
#[derive(Debug, Clone)]
pub struct Uncertainty {
    forms: Vec<UncertaintyForm>,
    config: UncertaintyConfig,
    state: UncertaintyState,
}

impl Uncertainty {
    /// Uncertainty weighting for `num_tasks` tasks.
    ///
    /// # Errors
    /// [`Error::NoTasks`], [`Error::CountMismatch`] if `forms` is non-empty and
    /// not one per task, [`Error::InvalidParameter`] for a non-positive `lr` or
    /// `log_var_bound`, or an initial log-variance outside the bound.
    pub fn new(num_tasks: usize, config: &UncertaintyConfig) -> Result<Self> {
        require_tasks(num_tasks)?;
        let name = UncertaintyConfig::NAME;
        check_parameter(name, "lr", config.lr, config.lr > 0.0, "must be positive")?;
        check_parameter(
            name,
            "log_var_bound",
            config.log_var_bound,
            config.log_var_bound > 0.0,
            "must be positive",
        )?;
        check_parameter(
            name,
            "init_log_var",
            config.init_log_var,
            config.init_log_var.abs() <= config.log_var_bound,
            "must lie within [-log_var_bound, log_var_bound]",
        )?;
        let forms = if config.forms.is_empty() {
            vec![config.form; num_tasks]
        } else {
            config.forms.clone()
        };
        let mut uw = Self {
            forms: Vec::new(),
            config: config.clone(),
            state: UncertaintyState {
                log_vars: vec![config.init_log_var; num_tasks],
                optimizer: StateOptimizer::new(config.optimizer, num_tasks, config.lr),
            },
        };
        uw.set_forms(forms)?;
        Ok(uw)
    }

    /// The same balancer with one form per task (e.g. chosen from the task
    /// kinds: classification tasks the classification form, regressions the
    /// regression form).
    ///
    /// # Errors
    /// [`Error::CountMismatch`] if `forms` is not one per task.
    pub fn with_forms(mut self, forms: Vec<UncertaintyForm>) -> Result<Self> {
        self.set_forms(forms)?;
        Ok(self)
    }

    fn set_forms(&mut self, forms: Vec<UncertaintyForm>) -> Result<()> {
        if forms.len() != self.state.log_vars.len() {
            return Err(Error::CountMismatch {
                what: "uncertainty forms",
                expected: self.state.log_vars.len(),
                got: forms.len(),
            });
        }
        self.forms = forms;
        Ok(())
    }

    /// The forms, one per task.
    pub fn forms(&self) -> &[UncertaintyForm] {
        &self.forms
    }

    /// The current log-variances `s_t`.
    pub fn log_vars(&self) -> &[f64] {
        &self.state.log_vars
    }

    /// The multipliers `m_t = c_t e^{−s_t}` of the raw losses in Kendall et
    /// al.'s objective (the returned weights are `m_t / T`).
    pub fn multipliers(&self) -> Vec<f64> {
        self.forms
            .iter()
            .zip(&self.state.log_vars)
            .map(|(f, s)| f.loss_coefficient() * (-s).exp())
            .collect()
    }

    /// The objective `Σ_t c_t e^{−s_t} L_t + k_t s_t` at the current `s`.
    ///
    /// # Errors
    /// Bad losses (count or non-finite).
    pub fn objective(&self, losses: &[f32]) -> Result<f64> {
        super::check_losses(losses, self.forms.len())?;
        Ok(self
            .forms
            .iter()
            .zip(&self.state.log_vars)
            .zip(losses)
            .map(|((f, s), &l)| {
                f.loss_coefficient() * (-s).exp() * f64::from(l) + f.regulariser_coefficient() * s
            })
            .sum())
    }

    /// The gradient of the objective with respect to the log-variances,
    /// `∂/∂s_t = k_t − c_t e^{−s_t} L_t`.
    ///
    /// # Errors
    /// Bad losses (count or non-finite).
    pub fn log_var_gradient(&self, losses: &[f32]) -> Result<Vec<f64>> {
        super::check_losses(losses, self.forms.len())?;
        Ok(self
            .forms
            .iter()
            .zip(&self.state.log_vars)
            .zip(losses)
            .map(|((f, s), &l)| {
                f.regulariser_coefficient() - f.loss_coefficient() * (-s).exp() * f64::from(l)
            })
            .collect())
    }
}

impl Balancer for Uncertainty {
    fn name(&self) -> &'static str {
        UncertaintyConfig::NAME
    }

    fn num_tasks(&self) -> usize {
        self.forms.len()
    }

    fn needs(&self) -> GradientSource {
        GradientSource::None
    }

    /// Returns `m_t / T` at the current `s`, then takes one optimiser step on
    /// `s` with the gradient of the objective at these losses.
    fn balance(&mut self, input: &BalanceInput<'_>) -> Result<Balanced> {
        input.validate(self.forms.len())?;
        let t = self.forms.len() as f64;
        let scaled: Vec<f64> = self.multipliers().into_iter().map(|m| m / t).collect();
        let weights = input.present_weights(&scaled, false);
        let grad = self.log_var_gradient(input.losses)?;
        let bound = self.config.log_var_bound;
        // An absent task's log-variance and its optimiser moments stay put.
        let present: Vec<bool> = (0..self.forms.len()).map(|i| input.is_present(i)).collect();
        let mask = input.present.map(|_| present.as_slice());
        self.state
            .optimizer
            .step_active(&mut self.state.log_vars, &grad, mask);
        for s in &mut self.state.log_vars {
            *s = s.clamp(-bound, bound);
        }
        Ok(Balanced::Weights(weights))
    }

    fn state(&self) -> serde_json::Value {
        to_state(&self.state)
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let loaded: UncertaintyState = parse_state(self.name(), state)?;
        if loaded.log_vars.len() != self.forms.len() {
            return Err(Error::State {
                balancer: self.name(),
                reason: format!(
                    "{} log-variances for {} tasks",
                    loaded.log_vars.len(),
                    self.forms.len()
                ),
            });
        }
        self.state = loaded;
        Ok(())
    }

    fn reset(&mut self) {
        let n = self.forms.len();
        self.state = UncertaintyState {
            log_vars: vec![self.config.init_log_var; n],
            optimizer: StateOptimizer::new(self.config.optimizer, n, self.config.lr),
        };
    }

    fn learnable(&self) -> Vec<(String, f32)> {
        let mut out: Vec<(String, f32)> = self
            .state
            .log_vars
            .iter()
            .enumerate()
            .map(|(t, &s)| (format!("log_var[{t}]"), s as f32))
            .collect();
        out.extend(
            self.multipliers()
                .into_iter()
                .enumerate()
                .map(|(t, m)| (format!("multiplier[{t}]"), m as f32)),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Closed forms evaluated in f64 against 6-decimal ground truths.
    const CLOSED_FORM: f64 = 1e-6;

    fn sgd(form: UncertaintyForm, init: f64, lr: f64, t: usize) -> Uncertainty {
        let config = UncertaintyConfig {
            form,
            init_log_var: init,
            lr,
            optimizer: OptimizerKind::Sgd,
            ..UncertaintyConfig::default()
        };
        Uncertainty::new(t, &config).unwrap()
    }

    #[test]
    // The literals are balancers.md's 6-decimal ground truths (log 2, log 4),
    // kept as printed there rather than replaced by the exact constants.
    #[allow(clippy::approx_constant)]
    fn uw_1_stationary_points_and_effective_weights() {
        // balancers.md UW-1.
        let cases = [
            (UncertaintyForm::Regression, 2.0, 0.693147, 0.25),
            (UncertaintyForm::Classification, 2.0, 1.386294, 0.25),
            (UncertaintyForm::Regression, 0.5, -0.693147, 1.0),
            (UncertaintyForm::Classification, 0.5, 0.0, 1.0),
            (UncertaintyForm::LogVariance, 2.0, 0.693147, 0.5),
        ];
        for (form, loss, s_star, weight) in cases {
            let s = form.stationary_log_var(loss);
            assert!((s - s_star).abs() < CLOSED_FORM, "{form:?} L={loss}: {s}");
            let m = form.loss_coefficient() * (-s).exp();
            assert!((m - weight).abs() < CLOSED_FORM, "{form:?} L={loss}: {m}");
            // The gradient vanishes there.
            let uw = sgd(form, s, 0.1, 1);
            let g = uw.log_var_gradient(&[loss as f32]).unwrap()[0];
            assert!(g.abs() < CLOSED_FORM, "{form:?}: gradient {g}");
        }
    }

    #[test]
    fn uw_2_libmtl_form_gradient_and_weights() {
        // balancers.md UW-2: s = (−0.5, −0.5), L = (2, 0.5), regression form.
        let uw = sgd(UncertaintyForm::Regression, -0.5, 0.1, 2);
        let g = uw.log_var_gradient(&[2.0, 0.5]).unwrap();
        assert!((g[0] + 1.148721).abs() < CLOSED_FORM, "{g:?}");
        assert!((g[1] - 0.087820).abs() < CLOSED_FORM, "{g:?}");
        for m in uw.multipliers() {
            assert!((m - 0.824361).abs() < CLOSED_FORM, "{m}");
        }
    }

    #[test]
    fn uw_3_gradient_descent_converges_to_log_loss() {
        // balancers.md UW-3: frozen L, SGD on s alone ⇒ s → log L (regression).
        // The loss in s is strictly convex with curvature ½e^{−s}L = ½ at the
        // optimum, so SGD with lr 0.5 contracts the error by 3/4 per step:
        // 200 steps shrink an O(1) error far below the tolerance.
        const CONVERGED: f64 = 1e-6;
        let losses = [2.0f32, 0.5, 3.0];
        let mut uw = sgd(UncertaintyForm::Regression, 0.0, 0.5, 3);
        for _ in 0..200 {
            uw.balance(&BalanceInput::from_losses(&losses)).unwrap();
        }
        for (s, l) in uw.log_vars().iter().zip(losses) {
            assert!((s - f64::from(l).ln()).abs() < CONVERGED, "{s} vs ln {l}");
        }
        // At the optimum every weighted term equals ½, i.e. weights are 1/(2L T).
        let out = uw.balance(&BalanceInput::from_losses(&losses)).unwrap();
        for (w, l) in out.weights().iter().zip(losses) {
            assert!((w - 1.0 / (2.0 * l * 3.0)).abs() < 1e-5, "{w} vs L={l}");
        }
    }

    #[test]
    fn classification_form_converges_to_log_two_loss_with_adam() {
        // Adam with lr 0.01 chatters by O(lr) around the optimum; after 3000
        // steps the distance is well inside 5·lr.
        const ADAM_CHATTER: f64 = 0.05;
        let config = UncertaintyConfig {
            forms: vec![UncertaintyForm::Classification, UncertaintyForm::Regression],
            lr: 0.01,
            ..UncertaintyConfig::default()
        };
        let mut uw = Uncertainty::new(2, &config).unwrap();
        for _ in 0..3000 {
            uw.balance(&BalanceInput::from_losses(&[1.5, 0.2])).unwrap();
        }
        let s = uw.log_vars();
        assert!((s[0] - 3.0f64.ln()).abs() < ADAM_CHATTER, "{s:?}");
        assert!((s[1] - 0.2f64.ln()).abs() < ADAM_CHATTER, "{s:?}");
    }

    #[test]
    fn returned_weights_are_pre_update_multipliers_over_t() {
        let mut uw = sgd(UncertaintyForm::Classification, 0.0, 0.1, 2);
        let out = uw.balance(&BalanceInput::from_losses(&[1.0, 3.0])).unwrap();
        // s = 0, classification: multiplier 1, weight 1/T.
        assert_eq!(out.weights(), &[0.5, 0.5]);
        // Then s moves by −lr·(½ − L): +0.05 and +0.25.
        let s = uw.log_vars();
        assert!(
            (s[0] - 0.05).abs() < 1e-12 && (s[1] - 0.25).abs() < 1e-12,
            "{s:?}"
        );
    }

    #[test]
    fn log_variances_are_clamped_when_a_loss_vanishes() {
        let mut uw = sgd(UncertaintyForm::Regression, 0.0, 10.0, 1);
        for _ in 0..100 {
            uw.balance(&BalanceInput::from_losses(&[0.0])).unwrap();
        }
        assert_eq!(uw.log_vars()[0], -20.0);
        let out = uw.balance(&BalanceInput::from_losses(&[0.0])).unwrap();
        assert!(out.weights()[0].is_finite());
    }

    #[test]
    fn state_round_trip_continues_identically() {
        let losses = [[0.7f32, 2.0], [0.6, 1.9], [0.65, 1.7], [0.5, 1.8]];
        let mut a = Uncertainty::new(2, &UncertaintyConfig::default()).unwrap();
        for l in &losses[..2] {
            a.balance(&BalanceInput::from_losses(l)).unwrap();
        }
        let text = serde_json::to_string(&a.state()).unwrap();
        let mut b = Uncertainty::new(2, &UncertaintyConfig::default()).unwrap();
        b.load_state(&serde_json::from_str(&text).unwrap()).unwrap();
        for l in &losses[2..] {
            let wa = a.balance(&BalanceInput::from_losses(l)).unwrap();
            let wb = b.balance(&BalanceInput::from_losses(l)).unwrap();
            assert_eq!(wa, wb);
        }
        assert_eq!(a.log_vars(), b.log_vars());
        // A state for another task count is refused.
        let mut c = Uncertainty::new(3, &UncertaintyConfig::default()).unwrap();
        assert!(matches!(c.load_state(&a.state()), Err(Error::State { .. })));
    }

    #[test]
    fn bad_configuration_and_input_are_errors() {
        let config = UncertaintyConfig {
            forms: vec![UncertaintyForm::Regression; 2],
            ..UncertaintyConfig::default()
        };
        assert_eq!(
            Uncertainty::new(3, &config).unwrap_err(),
            Error::CountMismatch {
                what: "uncertainty forms",
                expected: 3,
                got: 2
            }
        );
        let config = UncertaintyConfig {
            lr: -1.0,
            ..UncertaintyConfig::default()
        };
        assert!(matches!(
            Uncertainty::new(2, &config),
            Err(Error::InvalidParameter {
                parameter: "lr",
                ..
            })
        ));
        let mut uw = Uncertainty::new(2, &UncertaintyConfig::default()).unwrap();
        let err = uw
            .balance(&BalanceInput::from_losses(&[f32::NEG_INFINITY, 1.0]))
            .unwrap_err();
        assert!(matches!(err, Error::NonFiniteLoss { task: 0, .. }));
        // A rejected step leaves the state untouched.
        assert_eq!(uw.log_vars(), &[0.0, 0.0]);
    }

    proptest! {
        #[test]
        fn weights_are_finite_positive_and_follow_multipliers(
            losses in proptest::collection::vec(0.0f32..100.0, 1..6),
            steps in 1usize..50,
        ) {
            let t = losses.len();
            let mut uw = Uncertainty::new(t, &UncertaintyConfig::default()).unwrap();
            for _ in 0..steps {
                let before = uw.multipliers();
                let out = uw.balance(&BalanceInput::from_losses(&losses)).unwrap();
                for (w, m) in out.weights().iter().zip(before) {
                    prop_assert!(w.is_finite() && *w > 0.0);
                    prop_assert!((f64::from(*w) - m / t as f64).abs() <= 1e-6 * m);
                }
            }
        }

        #[test]
        fn stationary_point_zeroes_the_gradient(loss in 1e-3f64..1e3, form_idx in 0usize..3) {
            let form = [
                UncertaintyForm::Regression,
                UncertaintyForm::Classification,
                UncertaintyForm::LogVariance,
            ][form_idx];
            let s = form.stationary_log_var(loss);
            let g = form.regulariser_coefficient() - form.loss_coefficient() * (-s).exp() * loss;
            prop_assert!(g.abs() < 1e-12);
        }
    }
}
