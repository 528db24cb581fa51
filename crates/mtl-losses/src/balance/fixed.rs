//! Fixed weights: `w_t = c_t`, user constants.
//!
//! `L = Σ_t c_t L_t`; the shared update is `d = Σ_t c_t g_t` and head `t`
//! receives `c_t ∇_{θ_t} L_t`. The constants are returned exactly as
//! configured: `c_t = 1/T` reproduces [`EqualWeighting`](super::EqualWeighting),
//! `c_t = 1` the summed loss.

use serde::{Deserialize, Serialize};

use super::{
    check_parameter, require_tasks, BalanceInput, Balanced, Balancer, GradientSource, MethodConfig,
};
use crate::error::{Error, Result};

/// Configuration of [`FixedWeights`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FixedConfig {
    /// One non-negative weight per task (required).
    pub weights: Vec<f32>,
}

impl MethodConfig for FixedConfig {
    const NAME: &'static str = "fixed";
    const SUMMARY: &'static str = "fixed user weights, w_t = c_t (returned as given)";
    const NEEDS: GradientSource = GradientSource::None;
    const PARAMS: &'static [(&'static str, &'static str)] = &[(
        "weights",
        "one non-negative weight per task, in task order (required)",
    )];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        Ok(Box::new(FixedWeights::new(
            num_tasks,
            self.weights.clone(),
        )?))
    }
}

/// Fixed weights: returns the configured constants every step.
#[derive(Debug, Clone)]
pub struct FixedWeights {
    weights: Vec<f32>,
}

impl FixedWeights {
    /// Fixed `weights` for `num_tasks` tasks.
    ///
    /// # Errors
    /// [`Error::NoTasks`], [`Error::CountMismatch`] if `weights.len() != num_tasks`,
    /// [`Error::InvalidParameter`] for a negative or non-finite weight.
    pub fn new(num_tasks: usize, weights: Vec<f32>) -> Result<Self> {
        require_tasks(num_tasks)?;
        if weights.len() != num_tasks {
            return Err(Error::CountMismatch {
                what: "fixed weights",
                expected: num_tasks,
                got: weights.len(),
            });
        }
        for &w in &weights {
            check_parameter(
                FixedConfig::NAME,
                "weights",
                f64::from(w),
                w >= 0.0,
                "every weight must be finite and non-negative",
            )?;
        }
        Ok(Self { weights })
    }
}

impl Balancer for FixedWeights {
    fn name(&self) -> &'static str {
        FixedConfig::NAME
    }

    fn num_tasks(&self) -> usize {
        self.weights.len()
    }

    fn needs(&self) -> GradientSource {
        GradientSource::None
    }

    fn balance(&mut self, input: &BalanceInput<'_>) -> Result<Balanced> {
        input.validate(self.weights.len())?;
        let weights: Vec<f64> = self.weights.iter().map(|&w| f64::from(w)).collect();
        Ok(Balanced::Weights(input.present_weights(&weights, false)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::GradRows;

    /// Products and sums of small integers in f32: exact.
    const EXACT: f32 = 1e-6;

    #[test]
    fn fix_1_weights_one_two_on_j_base() {
        // balancers.md FIX-1: weights (1,2) on J_base ⇒ d = (8,3,3).
        let rows = [-4.0, 1.0, 1.0, 6.0, 1.0, 1.0];
        let grads = GradRows::new(&rows, 2, 3).unwrap();
        let mut fixed = FixedWeights::new(2, vec![1.0, 2.0]).unwrap();
        let out = fixed
            .balance(&BalanceInput::from_losses(&[5.0, 0.1]))
            .unwrap();
        assert_eq!(out.weights(), &[1.0, 2.0]);
        let d = out.shared_direction(&grads).unwrap();
        for (a, b) in d.iter().zip([8.0, 3.0, 3.0]) {
            assert!((a - b).abs() < EXACT, "{d:?}");
        }
    }

    #[test]
    fn wrong_count_and_negative_weight_are_rejected() {
        let err = FixedWeights::new(3, vec![1.0, 2.0]).unwrap_err();
        assert_eq!(
            err,
            Error::CountMismatch {
                what: "fixed weights",
                expected: 3,
                got: 2
            }
        );
        let err = FixedWeights::new(2, vec![1.0, -0.5]).unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidParameter {
                parameter: "weights",
                ..
            }
        ));
        assert!(err.to_string().contains("-0.5"));
    }
}
