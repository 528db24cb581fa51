//! Methods whose weights come from the product `J_1 J_2ᵀ` of the Jacobians
//! of two independent mini-batches (MoDo, SDMGrad), and the one wrapper that
//! turns any of them into a [`Balancer`].
//!
//! Because the two batches are independent, `J_1 J_2ᵀ` is an unbiased
//! estimate of the Gram matrix `E[J] E[J]ᵀ`, which a single batch's `J Jᵀ`
//! is not. The wrapper asks the trainer for the second batch
//! ([`Balancer::needs_second_batch`]), forms `J_1 J_2ᵀ` over the present
//! tasks, lets the method turn it into weights, and returns the direction
//! `d = ½ (J_1 + J_2)ᵀ w`, the update on the mean of both batches (torchjd's
//! two-batch form of MoDo).
//!
//! Neither method runs on column shards (the product of two batches is not
//! the full Gram the shard protocol carries); a data-parallel trainer passes
//! full rows. A missing second batch is an [`Error::MissingGradients`].

use nalgebra::DMatrix;

use super::method_state::{delegate_to_method, method_wrapper};
use super::{
    gram, require_tasks, BalanceInput, Balanced, Balancer, GradRows, GradientSource, MethodConfig,
    MethodState,
};
use crate::error::{Error, Result};

/// A method whose weights are a function of `J_1 J_2ᵀ`.
pub trait DoubleSampleMethod: MethodState + Send {
    /// The method's configuration; its `NAME` and `NEEDS` are the balancer's.
    type Config: MethodConfig;

    /// One weight per present task from `cross = J_1 J_2ᵀ` restricted to
    /// the present tasks `tasks` (global indices, ascending). State is
    /// updated here; the returned weights are the updated ones.
    fn weights(&mut self, cross: &DMatrix<f64>, tasks: &[usize]) -> Vec<f64>;

    /// Which rows the method needs (default: the configuration's `NEEDS`).
    fn needs(&self) -> GradientSource {
        Self::Config::NEEDS
    }
}

/// `A Bᵀ` for two sets of `T` rows of the same length, in `f64`: the
/// off-diagonal block of the Gram of the stacked rows (one deterministic
/// pass of [`gram::gram`]).
pub fn cross_gram(a: &GradRows<'_>, b: &GradRows<'_>) -> DMatrix<f64> {
    let t = a.rows();
    stacked_gram(a, b).view((0, t), (t, t)).into_owned()
}

/// The `2T × 2T` Gram of the rows of `a` followed by those of `b`.
fn stacked_gram(a: &GradRows<'_>, b: &GradRows<'_>) -> DMatrix<f64> {
    let mut stacked = Vec::with_capacity(2 * a.as_slice().len());
    stacked.extend_from_slice(a.as_slice());
    stacked.extend_from_slice(b.as_slice());
    gram::gram(&stacked, 2 * a.rows(), a.cols())
}

method_wrapper!(
    /// The [`Balancer`] of any [`DoubleSampleMethod`]; see the module docs.
    DoubleSampleBalancer,
    DoubleSampleMethod
);

impl<M: DoubleSampleMethod> Balancer for DoubleSampleBalancer<M> {
    delegate_to_method!();

    fn needs_second_batch(&self) -> bool {
        true
    }

    fn balance(&mut self, input: &BalanceInput<'_>) -> Result<Balanced> {
        let t = self.num_tasks;
        input.validate(t)?;
        let first = input.require_grads(self.name(), self.needs())?;
        let second = input.second.ok_or(Error::MissingGradients {
            balancer: self.name(),
            needs: "shared parameters of a second, independent mini-batch",
        })?;
        BalanceInput::from_losses(second.losses)
            .with_grads(second.grads)
            .validate(t)?;
        if second.grads.cols() != first.cols() {
            return Err(Error::CountMismatch {
                what: "second mini-batch gradient columns",
                expected: first.cols(),
                got: second.grads.cols(),
            });
        }
        let stacked = stacked_gram(&first, &second.grads);
        gram::check_diagonal(&stacked.view((0, 0), (t, t)).into_owned())?;
        gram::check_diagonal(&stacked.view((t, t), (t, t)).into_owned())?;
        let tasks = input.present_tasks();
        let mut weights = vec![0.0f64; t];
        if !tasks.is_empty() {
            let cross = gram::restrict(&stacked.view((0, t), (t, t)).into_owned(), &tasks);
            for (&i, w) in tasks.iter().zip(self.method.weights(&cross, &tasks)) {
                weights[i] = w;
            }
        }
        let d1 = gram::direction(&first, &weights);
        let d2 = gram::direction(&second.grads, &weights);
        Ok(Balanced::Direction {
            direction: d1.iter().zip(&d2).map(|(a, b)| 0.5 * (a + b)).collect(),
            weights: weights.iter().map(|&w| w as f32).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_gram_ground_truth() {
        // A = [(1, 2), (0, 1)], B = [(3, 0), (1, −1)]: A Bᵀ = [[3, −1], [0, −1]].
        let a = [1.0f32, 2.0, 0.0, 1.0];
        let b = [3.0f32, 0.0, 1.0, -1.0];
        let c = cross_gram(
            &GradRows::new(&a, 2, 2).unwrap(),
            &GradRows::new(&b, 2, 2).unwrap(),
        );
        assert_eq!(c, DMatrix::from_row_slice(2, 2, &[3.0, -1.0, 0.0, -1.0]));
    }
}
