//! Equal weighting (EW): `w_t = 1/T`.
//!
//! `L = (1/T) Σ_t L_t`, the "uniform scaling" baseline of Sener & Koltun
//! (2018). The shared update is the mean gradient `g_0 = (1/T) Σ_t g_t`.
//! LibMTL's EW uses weights 1 (the sum); multiply by `T` for that scale.

use serde::{Deserialize, Serialize};

use super::{require_tasks, BalanceInput, Balanced, Balancer, GradientSource, MethodConfig};
use crate::error::Result;

/// Configuration of [`EqualWeighting`]; it has no parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EqualConfig {}

impl MethodConfig for EqualConfig {
    const NAME: &'static str = "equal";
    const SUMMARY: &'static str = "equal weighting, w_t = 1/T (mean of the task losses)";
    const NEEDS: GradientSource = GradientSource::None;
    const PARAMS: &'static [(&'static str, &'static str)] = &[];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        Ok(Box::new(EqualWeighting::new(num_tasks)?))
    }
}

/// Equal weighting: every task gets `1/T`.
#[derive(Debug, Clone)]
pub struct EqualWeighting {
    num_tasks: usize,
}

impl EqualWeighting {
    /// Equal weighting for `num_tasks` tasks.
    ///
    /// # Errors
    /// [`Error::NoTasks`](crate::Error::NoTasks) for zero tasks.
    pub fn new(num_tasks: usize) -> Result<Self> {
        require_tasks(num_tasks)?;
        Ok(Self { num_tasks })
    }
}

impl Balancer for EqualWeighting {
    fn name(&self) -> &'static str {
        EqualConfig::NAME
    }

    fn num_tasks(&self) -> usize {
        self.num_tasks
    }

    fn needs(&self) -> GradientSource {
        GradientSource::None
    }

    fn balance(&mut self, input: &BalanceInput<'_>) -> Result<Balanced> {
        input.validate(self.num_tasks)?;
        let uniform = vec![1.0 / self.num_tasks as f64; self.num_tasks];
        Ok(Balanced::Weights(input.present_weights(&uniform, true)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::GradRows;
    use crate::Error;

    /// `d` is a sum of two f32 products of small integers and halves: exact.
    const EXACT: f32 = 1e-6;

    #[test]
    fn ew_1_mean_of_j_base_is_one_one_one() {
        // balancers.md EW-1: J_base rows (−4,1,1), (6,1,1); weights 1/T ⇒ d = (1,1,1).
        let rows = [-4.0, 1.0, 1.0, 6.0, 1.0, 1.0];
        let grads = GradRows::new(&rows, 2, 3).unwrap();
        let mut ew = EqualWeighting::new(2).unwrap();
        let out = ew.balance(&BalanceInput::from_losses(&[0.3, 7.0])).unwrap();
        assert_eq!(out.weights(), &[0.5, 0.5]);
        let d = out.shared_direction(&grads).unwrap();
        for (a, b) in d.iter().zip([1.0, 1.0, 1.0]) {
            assert!((a - b).abs() < EXACT, "{d:?}");
        }
        // LibMTL's sum scale: T·w = 1 each ⇒ (2,2,2).
        let sum_scale = Balanced::Weights(out.weights().iter().map(|w| w * 2.0).collect());
        let d = sum_scale.shared_direction(&grads).unwrap();
        for (a, b) in d.iter().zip([2.0, 2.0, 2.0]) {
            assert!((a - b).abs() < EXACT, "{d:?}");
        }
    }

    #[test]
    fn bad_input_names_task_and_counts() {
        let mut ew = EqualWeighting::new(3).unwrap();
        let err = ew
            .balance(&BalanceInput::from_losses(&[1.0, f32::NAN, 1.0]))
            .unwrap_err();
        assert!(matches!(err, Error::NonFiniteLoss { task: 1, .. }), "{err}");
        assert!(err.to_string().contains("task 1"));
        let err = ew
            .balance(&BalanceInput::from_losses(&[1.0, 1.0]))
            .unwrap_err();
        assert_eq!(
            err,
            Error::CountMismatch {
                what: "losses",
                expected: 3,
                got: 2
            }
        );
        assert!(err.to_string().contains('3') && err.to_string().contains('2'));
        let rows = [0.0f32; 4];
        let grads = GradRows::new(&rows, 2, 2).unwrap();
        let err = ew
            .balance(&BalanceInput::from_losses(&[1.0, 1.0, 1.0]).with_grads(grads))
            .unwrap_err();
        assert_eq!(
            err,
            Error::CountMismatch {
                what: "gradient rows",
                expected: 3,
                got: 2
            }
        );
        let err = ew
            .balance(&BalanceInput::from_losses(&[1.0, f32::INFINITY, 1.0]))
            .unwrap_err();
        assert!(matches!(err, Error::NonFiniteLoss { task: 1, .. }), "{err}");
    }
}
