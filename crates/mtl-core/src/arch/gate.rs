//! [`Gate`]: the softmax gate of mixture-of-experts architectures.

use rand::Rng;

use super::encoder::flatten;
use crate::error::{CoreError, Result};
use crate::nn::{Linear, Module};
use crate::{Graph, ParamGroup, ParamStore, Var};

/// A gate over `experts` experts (Ma et al., 2018):
/// `g(x) = softmax(x W_gᵀ + b_g)`, one weight per expert and example, each row
/// summing to one. The mixture is `f(x) = Σ_e g(x)_e · E_e(x)`.
///
/// The weight is `{name}.weight` `[experts, in]` and the bias `{name}.bias`.
#[derive(Clone, Debug)]
pub struct Gate {
    linear: Linear,
    experts: usize,
}

impl Gate {
    /// Registers a gate reading `in_features` inputs.
    pub fn new<R: Rng + ?Sized>(
        ps: &mut ParamStore,
        name: &str,
        group: ParamGroup,
        in_features: usize,
        experts: usize,
        rng: &mut R,
    ) -> Result<Gate> {
        if experts == 0 {
            return Err(CoreError::InvalidArgument {
                what: format!("gate {name}"),
                reason: "needs at least one expert".into(),
            });
        }
        let linear = Linear::new(ps, name, group, in_features, experts, true, rng)?;
        Ok(Gate { linear, experts })
    }

    /// The number of experts the gate weighs.
    pub fn experts(&self) -> usize {
        self.experts
    }

    /// The gate weights `[B, experts]` for the batch `x` (flattened per example).
    pub fn weights(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<Var> {
        let x = flatten(g, x)?;
        let logits = self.linear.forward(g, ps, x)?;
        g.softmax(logits)
    }

    /// `Σ_e weights[:, e] ⊙ experts[e]`: each expert output `[B, d]` scaled
    /// per example by its gate weight, then summed.
    pub fn mix(g: &mut Graph, weights: Var, experts: &[Var]) -> Result<Var> {
        let shape = g.shape(weights)?.to_vec();
        if shape.len() != 2 || shape[1] != experts.len() {
            return Err(CoreError::InvalidShape {
                op: "gate mix",
                shape,
                reason: format!("expected [batch, {}] gate weights", experts.len()),
            });
        }
        let mut total: Option<Var> = None;
        for (e, &expert) in experts.iter().enumerate() {
            let w = g.narrow(weights, 1, e, 1)?;
            let scaled = g.mul_col(expert, w)?;
            total = Some(match total {
                Some(t) => g.add(t, scaled)?,
                None => scaled,
            });
        }
        total.ok_or_else(|| CoreError::InvalidArgument {
            what: "gate mix".into(),
            reason: "needs at least one expert".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;

    #[test]
    fn mix_is_the_weighted_sum_of_experts() {
        let mut g = Graph::new(0);
        let w = g.input(Tensor::from_vec(vec![0.25, 0.75, 1.0, 0.0], &[2, 2]).unwrap());
        let a = g.input(Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap());
        let b = g.input(Tensor::from_vec(vec![10.0, 20.0, 30.0, 40.0], &[2, 2]).unwrap());
        let m = Gate::mix(&mut g, w, &[a, b]).unwrap();
        // Row 0: 0.25·[1, 2] + 0.75·[10, 20]; row 1: 1·[3, 4] + 0·[30, 40].
        assert_eq!(g.value(m).unwrap().data(), &[7.75, 15.5, 3.0, 4.0]);
        assert!(Gate::mix(&mut g, w, &[a]).is_err());
    }
}
