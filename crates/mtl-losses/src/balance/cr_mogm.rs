//! CR-MOGM, a modifier that smooths the weights of any other method with an
//! exponential moving average (Zhou, Zhang, Jiang, Shi & Zhou 2022, "On the
//! Convergence of Stochastic Multi-Objective Gradient Manipulation and
//! Beyond", NeurIPS; torchjd `CRMOGMWeighting`).
//!
//! With `λ̂_k` the weights of the inner method at step `k`,
//!
//! ```text
//! λ_k = α λ_{k−1} + (1 − α) λ̂_k,   λ_0 = λ̂_1,
//! d = Jᵀ λ_k,
//! ```
//!
//! so the first output equals the inner method's. `α = 0` returns the inner
//! weights unchanged, `α = 1` freezes them at the first step's (torchjd's
//! default `α = 0.9`). The smoothing makes stochastic MGDA-like methods
//! convergent (the paper's Corollary 1 lets `α_k → 1` with the learning
//! rate; here `α` is fixed).
//!
//! The direction is always `Jᵀλ_k`, so for an inner method whose direction
//! is not the combination of the rows by its reported weights (GradDrop,
//! TrimmedMean, MoCo, DB-MTL) the modifier changes more than the weights.
//! The weights keep the inner method's scale.

use serde::{Deserialize, Serialize};

use super::{
    check_parameter, gram, parse_state, require_tasks, to_state, BalanceInput, Balanced, Balancer,
    BalancerConfig, GradientSource, MethodConfig,
};
use crate::error::{Error, Result};

/// `α·prev + (1 − α)·hat`, or `hat` when there is no previous value.
pub fn smooth(prev: Option<&[f64]>, hat: &[f64], alpha: f64) -> Vec<f64> {
    match prev {
        Some(p) if p.len() == hat.len() => p
            .iter()
            .zip(hat)
            .map(|(p, h)| alpha * p + (1.0 - alpha) * h)
            .collect(),
        _ => hat.to_vec(),
    }
}

/// The method CR-MOGM smooths: a registry name with default parameters
/// (`inner = "mgda"`) or a full configuration
/// (`inner = { name = "upgrad", reg_eps = 0.0 }`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InnerMethod {
    /// A method name, with its default parameters.
    Name(String),
    /// A method with its parameters.
    Config(Box<BalancerConfig>),
}

impl InnerMethod {
    /// The configuration of the inner method.
    ///
    /// # Errors
    /// [`Error::UnknownBalancer`] for an unknown name.
    pub fn config(&self) -> Result<BalancerConfig> {
        match self {
            InnerMethod::Name(name) => BalancerConfig::default_for(name),
            InnerMethod::Config(config) => Ok((**config).clone()),
        }
    }
}

/// Configuration of [`CrMogm`] (registry name `cr-mogm`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrMogmConfig {
    /// The method whose weights are smoothed (default `"mgda"`).
    pub inner: InnerMethod,
    /// The weight `α ∈ [0, 1]` of the previous weights (default 0.9).
    pub alpha: f64,
}

impl Default for CrMogmConfig {
    fn default() -> Self {
        Self {
            inner: InnerMethod::Name("mgda".to_owned()),
            alpha: 0.9,
        }
    }
}

impl MethodConfig for CrMogmConfig {
    const NAME: &'static str = "cr-mogm";
    const SUMMARY: &'static str =
        "moving average of the weights of an inner method, default MGDA (Zhou et al. 2022)";
    /// The default inner method's (MGDA); a built balancer reports its inner method's.
    const NEEDS: GradientSource = GradientSource::SharedParameters;
    const PARAMS: &'static [(&'static str, &'static str)] = &[
        (
            "inner",
            "the smoothed method: a name or a configuration table",
        ),
        ("alpha", "weight α in [0, 1] of the previous weights"),
    ];

    fn build(&self, num_tasks: usize, seed: u64) -> Result<Box<dyn Balancer>> {
        require_tasks(num_tasks)?;
        check_parameter(
            Self::NAME,
            "alpha",
            self.alpha,
            (0.0..=1.0).contains(&self.alpha),
            "must be in [0, 1]",
        )?;
        let inner = self.inner.config()?.build(num_tasks, seed)?;
        Ok(Box::new(CrMogm {
            inner,
            alpha: self.alpha,
            lambda: vec![None; num_tasks],
        }))
    }
}

/// The saved state of [`CrMogm`]: the inner method's and the averages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CrMogmState {
    inner: serde_json::Value,
    lambda: Vec<Option<f64>>,
}

/// CR-MOGM around an inner balancer; see the module documentation. Every
/// hook (needs, second batch, look-ahead, losses after the step, epoch
/// ends, shards) is the inner method's. An absent task's average is kept
/// and its weight for the step is 0.
pub struct CrMogm {
    inner: Box<dyn Balancer>,
    alpha: f64,
    lambda: Vec<Option<f64>>,
}

impl Balancer for CrMogm {
    fn name(&self) -> &'static str {
        CrMogmConfig::NAME
    }

    fn num_tasks(&self) -> usize {
        self.inner.num_tasks()
    }

    fn needs(&self) -> GradientSource {
        self.inner.needs()
    }

    fn balance(&mut self, input: &BalanceInput<'_>) -> Result<Balanced> {
        let out = self.inner.balance(input)?;
        let hat: Vec<f64> = out.weights().iter().map(|&w| f64::from(w)).collect();
        let mut weights = vec![0.0f64; hat.len()];
        for (t, (slot, &h)) in self.lambda.iter_mut().zip(&hat).enumerate() {
            if input.is_present(t) {
                let prev: Option<[f64; 1]> = slot.map(|p| [p]);
                let s = smooth(prev.as_ref().map(|p| &p[..]), &[h], self.alpha)[0];
                *slot = Some(s);
                weights[t] = s;
            }
        }
        let unchanged = weights
            .iter()
            .zip(out.weights())
            .all(|(&w, &h)| w == f64::from(h));
        if unchanged {
            // The first step (or α = 0): the inner result itself, whose
            // direction was combined from unrounded weights.
            return Ok(out);
        }
        match out {
            Balanced::Weights(_) => Ok(Balanced::Weights(
                weights.iter().map(|&w| w as f32).collect(),
            )),
            Balanced::Direction { .. } => {
                let grads = input.require_grads(self.name(), self.needs())?;
                Ok(Balanced::Direction {
                    direction: gram::direction(&grads, &weights),
                    weights: weights.iter().map(|&w| w as f32).collect(),
                })
            }
        }
    }

    fn end_epoch(&mut self, mean_losses: &[f32]) -> Result<()> {
        self.inner.end_epoch(mean_losses)
    }

    fn needs_losses_after_step(&self) -> bool {
        self.inner.needs_losses_after_step()
    }

    fn observe_after_step(&mut self, new_losses: &[f32]) -> Result<()> {
        self.inner.observe_after_step(new_losses)
    }

    fn state(&self) -> serde_json::Value {
        to_state(&CrMogmState {
            inner: self.inner.state(),
            lambda: self.lambda.clone(),
        })
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let loaded: CrMogmState = parse_state(self.name(), state)?;
        if loaded.lambda.len() != self.lambda.len() {
            return Err(Error::State {
                balancer: self.name(),
                reason: format!(
                    "expected {} averages, got {}",
                    self.lambda.len(),
                    loaded.lambda.len()
                ),
            });
        }
        self.inner.load_state(&loaded.inner)?;
        self.lambda = loaded.lambda;
        Ok(())
    }

    fn reset(&mut self) {
        self.inner.reset();
        self.lambda.iter_mut().for_each(|l| *l = None);
    }

    fn supports_column_shards(&self) -> bool {
        self.inner.supports_column_shards()
    }

    fn needs_second_batch(&self) -> bool {
        self.inner.needs_second_batch()
    }

    fn lookahead_weights(&self) -> Option<Vec<f32>> {
        self.inner.lookahead_weights()
    }

    fn learnable(&self) -> Vec<(String, f32)> {
        let mut values = self.inner.learnable();
        for (t, l) in self.lambda.iter().enumerate() {
            if let Some(l) = l {
                values.push((format!("ema_weight[{t}]"), *l as f32));
            }
        }
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ground_truth() {
        assert_eq!(smooth(None, &[0.2, 0.8], 0.9), vec![0.2, 0.8]);
        let s = smooth(Some(&[0.2, 0.8]), &[1.0, 0.0], 0.75);
        assert!(
            (s[0] - 0.4).abs() < 1e-15 && (s[1] - 0.6).abs() < 1e-15,
            "{s:?}"
        );
        assert_eq!(smooth(Some(&[0.2, 0.8]), &[1.0, 0.0], 0.0), vec![1.0, 0.0]);
        assert_eq!(smooth(Some(&[0.2, 0.8]), &[1.0, 0.0], 1.0), vec![0.2, 0.8]);
    }
}
