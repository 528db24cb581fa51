//! FAMO, Fast Adaptive Multitask Optimization, Liu, Feng, Stone & Liu (NeurIPS 2023).
//!
//! Logits `ξ ∈ R^T` (init 0), `z = softmax(ξ)`, and `D_t = L_t − L_t^min + 10⁻⁸`
//! with known lower bounds `L^min` (default 0).
//!
//! * **Parameter step.** FAMO back-propagates `Σ_t z_t log D_t / c` with
//!   `c = Σ_t z_t / D_t` held constant, whose gradient is `Σ_t w_t ∇L_t` with
//!   `w_t = (z_t / D_t) / Σ_j (z_j / D_j)`. [`Balancer::balance`] returns these
//!   `w` (they sum to 1).
//! * **Logit step**, after the optimiser step, with the losses of the same
//!   batch at the new parameters ([`Balancer::observe_after_step`]):
//!   `δ_t = log D_t(θ_k) − log D_t(θ_{k+1})`, `∂/∂ξ_j = z_j (δ_j − Σ_i z_i δ_i)`,
//!   and one Adam step (lr `β_w` = 0.025) with coupled weight decay `γ`.
//!   Tasks whose log-loss fell faster than the `z`-weighted average lose weight.
//!   The centred term is computed as `Σ_i z_i (δ_j − δ_i)`, so equal decreases
//!   give an exactly zero gradient.
//!
//! The official code also clips the shared gradient to norm 1; that clip is
//! the trainer's business and is not applied here.
//!
//! **Scale.** The weights sum to 1 (mean scale); uniform logits and equal
//! losses give `1/T` each.

use serde::{Deserialize, Serialize};

use super::{
    check_losses, check_parameter, parse_state, require_tasks, to_state, BalanceInput, Balanced,
    Balancer, GradientSource, MethodConfig, StateAdam,
};
use crate::error::{Error, Result};

/// Added to `L − L^min` before the logarithm, as in the reference code.
const LOG_GUARD: f64 = 1e-8;

/// Configuration of [`Famo`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FamoConfig {
    /// Learning rate `β_w` of the logits (Adam).
    pub lr: f64,
    /// Coupled L2 weight decay `γ` on the logits.
    pub weight_decay: f64,
    /// Lower bounds `L^min`, one per task (empty: all 0).
    pub min_losses: Vec<f32>,
}

impl Default for FamoConfig {
    fn default() -> Self {
        Self {
            lr: 0.025,
            weight_decay: 1e-3,
            min_losses: Vec::new(),
        }
    }
}

impl MethodConfig for FamoConfig {
    const NAME: &'static str = "famo";
    const SUMMARY: &'static str =
        "FAMO: equalise log-loss decrease rates with learnable logits (Liu et al. 2023)";
    const NEEDS: GradientSource = GradientSource::None;
    const PARAMS: &'static [(&'static str, &'static str)] = &[
        ("lr", "Adam learning rate of the task logits"),
        ("weight_decay", "coupled L2 weight decay on the task logits"),
        (
            "min_losses",
            "known lower bounds of the losses, one per task (empty: all 0)",
        ),
    ];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        Ok(Box::new(Famo::new(num_tasks, self)?))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FamoState {
    logits: Vec<f64>,
    adam: StateAdam,
    /// `log D_t` at the last balanced step, awaiting the post-step losses.
    pending_log_d: Option<Vec<f64>>,
    /// Which tasks were present at that step (absent: not saved when all
    /// were present, as in states written before presence flags existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_present: Option<Vec<bool>>,
}

/// FAMO; owns the logits `ξ`, their Adam state and the last step's log-losses.
#[derive(Debug, Clone)]
pub struct Famo {
    config: FamoConfig,
    min_losses: Vec<f64>,
    state: FamoState,
}

impl Famo {
    /// FAMO for `num_tasks` tasks.
    ///
    /// # Errors
    /// [`Error::NoTasks`], [`Error::InvalidParameter`] for a non-positive `lr`,
    /// a negative `weight_decay` or a non-finite bound, [`Error::CountMismatch`]
    /// if `min_losses` is non-empty and not one per task.
    pub fn new(num_tasks: usize, config: &FamoConfig) -> Result<Self> {
        require_tasks(num_tasks)?;
        let name = FamoConfig::NAME;
        check_parameter(name, "lr", config.lr, config.lr > 0.0, "must be positive")?;
        check_parameter(
            name,
            "weight_decay",
            config.weight_decay,
            config.weight_decay >= 0.0,
            "must be >= 0",
        )?;
        let min_losses: Vec<f64> = if config.min_losses.is_empty() {
            vec![0.0; num_tasks]
        } else if config.min_losses.len() == num_tasks {
            config.min_losses.iter().map(|&l| f64::from(l)).collect()
        } else {
            return Err(Error::CountMismatch {
                what: "FAMO min_losses",
                expected: num_tasks,
                got: config.min_losses.len(),
            });
        };
        for &m in &min_losses {
            check_parameter(name, "min_losses", m, true, "must be finite")?;
        }
        Ok(Self {
            config: config.clone(),
            min_losses,
            state: Self::fresh_state(num_tasks, config),
        })
    }

    fn fresh_state(num_tasks: usize, config: &FamoConfig) -> FamoState {
        FamoState {
            logits: vec![0.0; num_tasks],
            adam: StateAdam::new(num_tasks, config.lr).with_weight_decay(config.weight_decay),
            pending_log_d: None,
            pending_present: None,
        }
    }

    /// The logits `ξ`.
    pub fn logits(&self) -> &[f64] {
        &self.state.logits
    }

    /// The task distribution `z = softmax(ξ)`.
    pub fn task_distribution(&self) -> Vec<f64> {
        let max = self
            .state
            .logits
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let exps: Vec<f64> = self.state.logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f64 = exps.iter().sum();
        exps.iter().map(|e| e / sum).collect()
    }

    /// `log D_t` for each loss, or [`Error::LossOutOfDomain`] if `D_t ≤ 0`.
    /// `log D_t = log(L_t − m_t + ε)` for the present tasks; 0 (unused) for
    /// absent ones.
    fn log_d(&self, losses: &[f32], present: &[bool]) -> Result<Vec<f64>> {
        losses
            .iter()
            .zip(&self.min_losses)
            .zip(present)
            .enumerate()
            .map(|(task, ((&l, &m), &here))| {
                let d = f64::from(l) - m + LOG_GUARD;
                if !here {
                    Ok(0.0)
                } else if d > 0.0 {
                    Ok(d.ln())
                } else {
                    Err(Error::LossOutOfDomain {
                        balancer: FamoConfig::NAME,
                        task,
                        value: f64::from(l),
                        bound: m - LOG_GUARD,
                    })
                }
            })
            .collect()
    }

    /// The task distribution `z = softmax(ξ)` restricted to the present
    /// tasks and renormalised (0 for absent ones).
    fn present_distribution(&self, present: &[bool]) -> Vec<f64> {
        let z = self.task_distribution();
        if !present.contains(&false) {
            return z;
        }
        let kept: f64 = z
            .iter()
            .zip(present)
            .filter(|(_, &p)| p)
            .map(|(z, _)| z)
            .sum();
        z.iter()
            .zip(present)
            .map(|(&zi, &p)| if p && kept > 0.0 { zi / kept } else { 0.0 })
            .collect()
    }
}

impl Balancer for Famo {
    fn name(&self) -> &'static str {
        FamoConfig::NAME
    }

    fn num_tasks(&self) -> usize {
        self.state.logits.len()
    }

    fn needs(&self) -> GradientSource {
        GradientSource::None
    }

    fn needs_losses_after_step(&self) -> bool {
        true
    }

    /// Returns `w_t = (z_t/D_t) / Σ_j z_j/D_j` and remembers `log D` for the logit step.
    /// Absent tasks get weight 0; the present ones share the distribution
    /// `z` renormalised over them.
    fn balance(&mut self, input: &BalanceInput<'_>) -> Result<Balanced> {
        let n = self.state.logits.len();
        input.validate(n)?;
        let present: Vec<bool> = (0..n).map(|t| input.is_present(t)).collect();
        let log_d = self.log_d(input.losses, &present)?;
        let z = self.present_distribution(&present);
        // z_t / D_t = z_t · exp(−log D_t); D_t > 0 was checked above.
        let raw: Vec<f64> = z
            .iter()
            .zip(&log_d)
            .map(|(z, ld)| z * (-ld).exp())
            .collect();
        let sum: f64 = raw.iter().sum();
        self.state.pending_log_d = Some(log_d);
        self.state.pending_present = present.contains(&false).then_some(present);
        Ok(Balanced::Weights(
            raw.iter()
                .map(|r| if sum > 0.0 { (r / sum) as f32 } else { 0.0 })
                .collect(),
        ))
    }

    /// Only the tasks present at the balanced step update the logits (their
    /// post-step losses); the others keep their logits and Adam moments.
    fn observe_after_step(&mut self, new_losses: &[f32]) -> Result<()> {
        let n = self.state.logits.len();
        check_losses(new_losses, n)?;
        let Some(old) = self.state.pending_log_d.as_ref() else {
            return Err(Error::CallOrder {
                balancer: self.name(),
                reason: "observe_after_step called without a preceding balance",
            });
        };
        let present = self
            .state
            .pending_present
            .clone()
            .unwrap_or_else(|| vec![true; n]);
        let new = self.log_d(new_losses, &present)?;
        let delta: Vec<f64> = old.iter().zip(&new).map(|(o, n)| o - n).collect();
        let z = self.present_distribution(&present);
        let grad: Vec<f64> = z
            .iter()
            .zip(&delta)
            .map(|(&zj, &dj)| {
                zj * z
                    .iter()
                    .zip(&delta)
                    .map(|(zi, di)| zi * (dj - di))
                    .sum::<f64>()
            })
            .collect();
        let mask = present.contains(&false).then_some(present.as_slice());
        if present.contains(&true) {
            self.state
                .adam
                .step_active(&mut self.state.logits, &grad, mask);
        }
        self.state.pending_log_d = None;
        self.state.pending_present = None;
        Ok(())
    }

    fn state(&self) -> serde_json::Value {
        to_state(&self.state)
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let loaded: FamoState = parse_state(self.name(), state)?;
        let n = self.state.logits.len();
        let pending_ok = loaded.pending_log_d.as_ref().is_none_or(|p| p.len() == n)
            && loaded.pending_present.as_ref().is_none_or(|p| p.len() == n);
        if loaded.logits.len() != n || !pending_ok {
            return Err(Error::State {
                balancer: self.name(),
                reason: format!("state has {} logits for {n} tasks", loaded.logits.len()),
            });
        }
        self.state = loaded;
        Ok(())
    }

    fn reset(&mut self) {
        self.state = Self::fresh_state(self.state.logits.len(), &self.config);
    }

    fn learnable(&self) -> Vec<(String, f32)> {
        let mut out: Vec<(String, f32)> = self
            .state
            .logits
            .iter()
            .enumerate()
            .map(|(t, &l)| (format!("logit[{t}]"), l as f32))
            .collect();
        out.extend(
            self.task_distribution()
                .into_iter()
                .enumerate()
                .map(|(t, z)| (format!("z[{t}]"), z as f32)),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Closed forms against 6-decimal ground truths; the 1e-8 guard in `D`
    /// perturbs them by ~1e-8.
    const CLOSED_FORM: f64 = 1e-6;

    fn famo(t: usize) -> Famo {
        Famo::new(t, &FamoConfig::default()).unwrap()
    }

    #[test]
    fn fa_1_effective_weights_and_scale_invariance() {
        // z uniform, L = (1, 4) ⇒ (0.8, 0.2); unchanged when all losses ×7.
        let mut f = famo(2);
        let w = f.balance(&BalanceInput::from_losses(&[1.0, 4.0])).unwrap();
        assert!(
            (f64::from(w.weights()[0]) - 0.8).abs() < CLOSED_FORM,
            "{w:?}"
        );
        assert!(
            (f64::from(w.weights()[1]) - 0.2).abs() < CLOSED_FORM,
            "{w:?}"
        );
        let w7 = f.balance(&BalanceInput::from_losses(&[7.0, 28.0])).unwrap();
        for (a, b) in w.weights().iter().zip(w7.weights()) {
            assert!((f64::from(*a) - f64::from(*b)).abs() < CLOSED_FORM);
        }
    }

    #[test]
    fn fa_2_one_logit_step() {
        // ξ = 0, δ = (0.1, 0.2) ⇒ ∇ξ = (−0.025, 0.025); Adam(0.025, γ=1e-3)
        // ⇒ ξ = (0.025, −0.025), z = (0.512497, 0.487503).
        let mut f = famo(2);
        f.balance(&BalanceInput::from_losses(&[1.0, 1.0])).unwrap();
        f.observe_after_step(&[(-0.1f32).exp(), (-0.2f32).exp()])
            .unwrap();
        let xi = f.logits();
        assert!((xi[0] - 0.025).abs() < CLOSED_FORM, "{xi:?}");
        assert!((xi[1] + 0.025).abs() < CLOSED_FORM, "{xi:?}");
        let z = f.task_distribution();
        assert!((z[0] - 0.512497).abs() < CLOSED_FORM, "{z:?}");
        assert!((z[1] - 0.487503).abs() < CLOSED_FORM, "{z:?}");
    }

    #[test]
    fn fa_3_equal_losses_and_decreases_stay_exactly_uniform() {
        let mut f = famo(3);
        let mut loss = 2.0f32;
        for _ in 0..100 {
            let out = f.balance(&BalanceInput::from_losses(&[loss; 3])).unwrap();
            let w = out.weights();
            assert!(w[0] == w[1] && w[1] == w[2], "{w:?}");
            assert!((w[0] - 1.0 / 3.0).abs() <= f32::EPSILON, "{w:?}");
            loss *= 0.97;
            f.observe_after_step(&[loss; 3]).unwrap();
            assert_eq!(f.logits(), &[0.0, 0.0, 0.0]);
        }
    }

    #[test]
    fn hooks_out_of_order_and_bad_losses_are_errors() {
        let mut f = famo(2);
        assert!(matches!(
            f.observe_after_step(&[1.0, 1.0]),
            Err(Error::CallOrder { .. })
        ));
        assert!(matches!(
            f.balance(&BalanceInput::from_losses(&[1.0, -1.0])),
            Err(Error::LossOutOfDomain { task: 1, .. })
        ));
        let config = FamoConfig {
            min_losses: vec![-21.0, -2.1],
            ..FamoConfig::default()
        };
        let mut toy = Famo::new(2, &config).unwrap();
        assert!(toy
            .balance(&BalanceInput::from_losses(&[-20.0, -2.0]))
            .is_ok());
        assert!(matches!(
            Famo::new(3, &config),
            Err(Error::CountMismatch {
                expected: 3,
                got: 2,
                ..
            })
        ));
        assert!(f.needs_losses_after_step());
    }

    #[test]
    fn state_round_trip_continues_identically() {
        let trajectory = [
            ([1.0f32, 3.0], [0.9f32, 2.5]),
            ([0.9, 2.5], [0.85, 2.0]),
            ([0.85, 2.0], [0.7, 1.9]),
            ([0.7, 1.9], [0.65, 1.5]),
        ];
        let mut a = famo(2);
        for (before, after) in &trajectory[..2] {
            a.balance(&BalanceInput::from_losses(before)).unwrap();
            a.observe_after_step(after).unwrap();
        }
        // Save between balance and observe: the pending log-losses travel too.
        a.balance(&BalanceInput::from_losses(&trajectory[2].0))
            .unwrap();
        let text = serde_json::to_string(&a.state()).unwrap();
        let mut b = famo(2);
        b.load_state(&serde_json::from_str(&text).unwrap()).unwrap();
        a.observe_after_step(&trajectory[2].1).unwrap();
        b.observe_after_step(&trajectory[2].1).unwrap();
        let (before, after) = trajectory[3];
        assert_eq!(
            a.balance(&BalanceInput::from_losses(&before)).unwrap(),
            b.balance(&BalanceInput::from_losses(&before)).unwrap()
        );
        a.observe_after_step(&after).unwrap();
        b.observe_after_step(&after).unwrap();
        assert_eq!(a.logits(), b.logits());
    }

    proptest! {
        #[test]
        fn weights_positive_sum_to_one_and_faster_task_loses_weight(
            losses in proptest::collection::vec(0.01f32..50.0, 2..6),
            decrease in proptest::collection::vec(0.5f32..1.0, 6),
        ) {
            let t = losses.len();
            let mut f = famo(t);
            let out = f.balance(&BalanceInput::from_losses(&losses)).unwrap();
            prop_assert!(out.weights().iter().all(|w| w.is_finite() && *w > 0.0));
            prop_assert!((out.weights().iter().sum::<f32>() - 1.0).abs() < 1e-5);
            let after: Vec<f32> = losses.iter().zip(&decrease).map(|(l, d)| l * d).collect();
            f.observe_after_step(&after).unwrap();
            // The logit gradient sums to zero (softmax Jacobian), so without
            // decay the first Adam step keeps Σξ = 0 up to rounding; the task
            // with the smallest factor (fastest decrease) gets the smallest logit.
            let fastest = (0..t).fold(0, |b, i| if decrease[i] < decrease[b] { i } else { b });
            let min_logit = f.logits().iter().copied().fold(f64::INFINITY, f64::min);
            prop_assert!(f.logits()[fastest] <= min_logit + 1e-12);
        }
    }
}
