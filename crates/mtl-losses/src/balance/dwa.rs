//! Dynamic Weight Average (DWA), Liu, Johns & Davison (CVPR 2019, MTAN).
//!
//! With `L̄_t(e)` the mean training loss of task `t` over epoch `e`, the
//! weights of epoch `e` are
//!
//! `λ_t(e) = T exp(r_t / τ) / Σ_j exp(r_j / τ)`, `r_t = L̄_t(e−1) / L̄_t(e−2)`,
//!
//! and `λ_t = 1` for the first two epochs. A task whose loss fell less gets
//! more weight; a larger temperature `τ` flattens the weights toward 1.
//! The weights are fixed within an epoch: the trainer reports each epoch's
//! mean losses through [`Balancer::end_epoch`].
//!
//! **Scale.** The paper's `λ` sum to `T`; the returned weights are `λ_t / T`
//! (mean scale, summing to 1). [`Balancer::learnable`] reports `λ`.

use serde::{Deserialize, Serialize};

use super::{
    check_losses, check_parameter, parse_state, require_tasks, to_state, BalanceInput, Balanced,
    Balancer, GradientSource, MethodConfig,
};
use crate::error::{Error, Result};

/// Configuration of [`Dwa`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DwaConfig {
    /// Temperature `τ` of the softmax over loss-descent ratios.
    pub temperature: f64,
}

impl Default for DwaConfig {
    fn default() -> Self {
        Self { temperature: 2.0 }
    }
}

impl MethodConfig for DwaConfig {
    const NAME: &'static str = "dwa";
    const SUMMARY: &'static str =
        "Dynamic Weight Average: softmax of epoch-to-epoch loss ratios (Liu et al. 2019)";
    const NEEDS: GradientSource = GradientSource::None;
    const PARAMS: &'static [(&'static str, &'static str)] = &[(
        "temperature",
        "softmax temperature over loss ratios; larger means flatter weights",
    )];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        Ok(Box::new(Dwa::new(num_tasks, self)?))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DwaState {
    /// Epoch means of the last two epochs, oldest first.
    history: Vec<Vec<f64>>,
    /// Mean-scale weights of the current epoch.
    weights: Vec<f64>,
}

/// DWA; owns the last two epoch-mean losses.
#[derive(Debug, Clone)]
pub struct Dwa {
    temperature: f64,
    state: DwaState,
}

impl Dwa {
    /// DWA for `num_tasks` tasks.
    ///
    /// # Errors
    /// [`Error::NoTasks`], or [`Error::InvalidParameter`] for a non-positive temperature.
    pub fn new(num_tasks: usize, config: &DwaConfig) -> Result<Self> {
        require_tasks(num_tasks)?;
        check_parameter(
            DwaConfig::NAME,
            "temperature",
            config.temperature,
            config.temperature > 0.0,
            "must be positive",
        )?;
        Ok(Self {
            temperature: config.temperature,
            state: Self::fresh_state(num_tasks),
        })
    }

    fn fresh_state(num_tasks: usize) -> DwaState {
        DwaState {
            history: Vec::new(),
            weights: vec![1.0 / num_tasks as f64; num_tasks],
        }
    }

    /// `softmax(r/τ)` for the ratios of the two stored epochs (mean scale).
    fn weights_from_history(&self) -> Vec<f64> {
        let (older, newer) = (&self.state.history[0], &self.state.history[1]);
        let logits: Vec<f64> = newer
            .iter()
            .zip(older)
            .map(|(n, o)| n / o / self.temperature)
            .collect();
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exps: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f64 = exps.iter().sum();
        exps.iter().map(|e| e / sum).collect()
    }
}

impl Balancer for Dwa {
    fn name(&self) -> &'static str {
        DwaConfig::NAME
    }

    fn num_tasks(&self) -> usize {
        self.state.weights.len()
    }

    fn needs(&self) -> GradientSource {
        GradientSource::None
    }

    /// Returns this epoch's weights (`1/T` each during the first two epochs);
    /// absent tasks get 0 and the present ones are rescaled to sum to 1.
    fn balance(&mut self, input: &BalanceInput<'_>) -> Result<Balanced> {
        input.validate(self.state.weights.len())?;
        Ok(Balanced::Weights(
            input.present_weights(&self.state.weights, true),
        ))
    }

    /// Records the epoch means (each must be positive: it becomes a ratio's
    /// denominator) and computes the next epoch's weights.
    fn end_epoch(&mut self, mean_losses: &[f32]) -> Result<()> {
        check_losses(mean_losses, self.state.weights.len())?;
        if let Some(task) = mean_losses.iter().position(|&l| l <= 0.0) {
            return Err(Error::LossOutOfDomain {
                balancer: self.name(),
                task,
                value: f64::from(mean_losses[task]),
                bound: 0.0,
            });
        }
        if self.state.history.len() == 2 {
            self.state.history.remove(0);
        }
        self.state
            .history
            .push(mean_losses.iter().map(|&l| f64::from(l)).collect());
        if self.state.history.len() == 2 {
            self.state.weights = self.weights_from_history();
        }
        Ok(())
    }

    fn state(&self) -> serde_json::Value {
        to_state(&self.state)
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let loaded: DwaState = parse_state(self.name(), state)?;
        let n = self.state.weights.len();
        if loaded.weights.len() != n
            || loaded.history.len() > 2
            || loaded.history.iter().any(|h| h.len() != n)
        {
            return Err(Error::State {
                balancer: self.name(),
                reason: format!("state does not describe {n} tasks and at most two epochs"),
            });
        }
        self.state = loaded;
        Ok(())
    }

    fn reset(&mut self) {
        self.state = Self::fresh_state(self.state.weights.len());
    }

    fn learnable(&self) -> Vec<(String, f32)> {
        let t = self.state.weights.len() as f64;
        self.state
            .weights
            .iter()
            .enumerate()
            .map(|(i, &w)| (format!("lambda[{i}]"), (w * t) as f32))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A softmax of two numbers in f64, rounded to f32 for the output and
    /// compared with 6-decimal ground truths (rounding error ≤ 5e-7).
    const CLOSED_FORM: f64 = 1e-6;

    fn weights(dwa: &mut Dwa) -> Vec<f32> {
        let losses = vec![1.0; dwa.num_tasks()];
        dwa.balance(&BalanceInput::from_losses(&losses))
            .unwrap()
            .weights()
            .to_vec()
    }

    #[test]
    fn dwa_1_two_tasks() {
        // L̄(t−2) = (1,1), L̄(t−1) = (0.8, 0.5), τ = 2 ⇒ λ = (1.074860, 0.925140).
        let mut dwa = Dwa::new(2, &DwaConfig::default()).unwrap();
        dwa.end_epoch(&[1.0, 1.0]).unwrap();
        dwa.end_epoch(&[0.8, 0.5]).unwrap();
        let w = weights(&mut dwa);
        assert!(
            (f64::from(w[0]) - 1.074860 / 2.0).abs() < CLOSED_FORM,
            "{w:?}"
        );
        assert!(
            (f64::from(w[1]) - 0.925140 / 2.0).abs() < CLOSED_FORM,
            "{w:?}"
        );
        let lambda = dwa.learnable();
        assert!((f64::from(lambda[0].1) - 1.074860).abs() < CLOSED_FORM);
    }

    #[test]
    fn dwa_2_first_two_epochs_equal_ratios_and_large_temperature() {
        let mut dwa = Dwa::new(3, &DwaConfig::default()).unwrap();
        assert_eq!(weights(&mut dwa), vec![1.0 / 3.0; 3]);
        dwa.end_epoch(&[3.0, 2.0, 1.0]).unwrap();
        assert_eq!(weights(&mut dwa), vec![1.0 / 3.0; 3]);
        // Equal ratios (all halved) ⇒ equal weights.
        dwa.end_epoch(&[1.5, 1.0, 0.5]).unwrap();
        for w in weights(&mut dwa) {
            assert!((f64::from(w) - 1.0 / 3.0).abs() < CLOSED_FORM);
        }
        // τ → ∞ ⇒ all 1 (mean scale 1/T) even for very different ratios.
        let mut hot = Dwa::new(2, &DwaConfig { temperature: 1e9 }).unwrap();
        hot.end_epoch(&[1.0, 1.0]).unwrap();
        hot.end_epoch(&[0.1, 5.0]).unwrap();
        for w in weights(&mut hot) {
            assert!((f64::from(w) - 0.5).abs() < CLOSED_FORM);
        }
    }

    #[test]
    fn window_slides_over_the_last_two_epochs() {
        let mut dwa = Dwa::new(2, &DwaConfig::default()).unwrap();
        dwa.end_epoch(&[9.0, 9.0]).unwrap();
        dwa.end_epoch(&[1.0, 1.0]).unwrap();
        dwa.end_epoch(&[0.8, 0.5]).unwrap();
        // Only (1,1) → (0.8,0.5) counts: DWA-1 again.
        let w = weights(&mut dwa);
        assert!(
            (f64::from(w[0]) - 1.074860 / 2.0).abs() < CLOSED_FORM,
            "{w:?}"
        );
    }

    #[test]
    fn bad_epoch_means_are_errors() {
        let mut dwa = Dwa::new(2, &DwaConfig::default()).unwrap();
        assert!(matches!(
            dwa.end_epoch(&[1.0, f32::NAN]),
            Err(Error::NonFiniteLoss { task: 1, .. })
        ));
        assert!(matches!(
            dwa.end_epoch(&[0.0, 1.0]),
            Err(Error::LossOutOfDomain { task: 0, .. })
        ));
        assert_eq!(
            dwa.end_epoch(&[1.0]),
            Err(Error::CountMismatch {
                what: "losses",
                expected: 2,
                got: 1
            })
        );
        assert!(Dwa::new(2, &DwaConfig { temperature: 0.0 }).is_err());
    }

    #[test]
    fn state_round_trip_continues_identically() {
        let mut a = Dwa::new(2, &DwaConfig::default()).unwrap();
        a.end_epoch(&[1.0, 2.0]).unwrap();
        let mut b = Dwa::new(2, &DwaConfig::default()).unwrap();
        b.load_state(&serde_json::from_str(&serde_json::to_string(&a.state()).unwrap()).unwrap())
            .unwrap();
        for means in [[0.9f32, 1.2], [0.7, 1.1], [0.6, 1.05]] {
            a.end_epoch(&means).unwrap();
            b.end_epoch(&means).unwrap();
            assert_eq!(weights(&mut a), weights(&mut b));
        }
    }

    proptest! {
        #[test]
        fn weights_positive_and_sum_to_one(
            older in proptest::collection::vec(0.01f32..10.0, 1..8),
            factor in proptest::collection::vec(0.1f32..2.0, 8),
            temperature in 0.1f64..10.0,
        ) {
            let t = older.len();
            let newer: Vec<f32> = older.iter().zip(&factor).map(|(o, f)| o * f).collect();
            let mut dwa = Dwa::new(t, &DwaConfig { temperature }).unwrap();
            dwa.end_epoch(&older).unwrap();
            dwa.end_epoch(&newer).unwrap();
            let w = weights(&mut dwa);
            prop_assert!(w.iter().all(|w| w.is_finite() && *w > 0.0));
            prop_assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            // The task whose loss fell least (largest ratio) gets the largest weight.
            let ratios: Vec<f32> = newer.iter().zip(&older).map(|(n, o)| n / o).collect();
            let argmax = |v: &[f32]| v.iter().enumerate().fold(0, |b, (i, x)| if *x > v[b] { i } else { b });
            let (ri, wi) = (argmax(&ratios), argmax(&w));
            prop_assert!((w[ri] - w[wi]).abs() < 1e-6);
        }
    }
}
