//! PCGrad, gradient surgery (Yu, Kumar, Gupta, Levine, Hausman, Finn 2020,
//! "Gradient Surgery for Multi-Task Learning", NeurIPS).
//!
//! For each task `i`: `p ← g_i`; for `j` in a random order of the other
//! tasks, if `p·g_j < 0` then `p ← p − (p·g_j/‖g_j‖²) g_j` (projection against
//! the original `g_j`, using the current `p`). The update is the mean
//! (default) or the sum of the projected rows.
//!
//! Run on the Gram matrix only (torchjd's weight form): `p = Σ_k c_k g_k` is
//! tracked by its coefficients `c`, so `p·g_j = (cᵀG)_j` and the surgery
//! costs `O(T³)` after the one Gram pass, and `d = Jᵀw` one more pass.
//!
//! * **Non-conflicting:** for `T = 2` only (for `T ≥ 3` the result can
//!   conflict with a task, balancers.md PROP-5).
//! * **Scaling:** `reduction = mean` (default) gives `1/T` each when no pair
//!   conflicts (the mean gradient); `sum` gives 1 each (the reference code).
//!   Linear under per-task scaling for a fixed order; not scale-invariant.
//! * **T = 1:** `d = g_1` (weight 1 for either reduction).
//! * The order is drawn from the balancer's seeded ChaCha generator
//!   (`shuffle = true`, the paper) or is ascending (`shuffle = false`).

use nalgebra::DMatrix;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::rng_state::SeededRng;
use super::{
    parse_state, require_tasks, to_state, Balancer, GradientSource, GramBalancer, GramMethod,
    GramStep, MethodConfig, MethodState,
};
use crate::error::Result;

/// How projected rows are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reduction {
    /// `d = (1/T) Σ_i p_i` (the crate's mean scale).
    #[default]
    Mean,
    /// `d = Σ_i p_i` (official code, LibMTL).
    Sum,
}

impl Reduction {
    /// The factor applied to the summed rows.
    pub fn factor(self, tasks: usize) -> f64 {
        match self {
            Reduction::Mean => 1.0 / tasks as f64,
            Reduction::Sum => 1.0,
        }
    }
}

/// Configuration of [`PcGrad`] (registry name `pcgrad`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PcGradConfig {
    /// `mean` (default) or `sum` of the projected rows.
    pub reduction: Reduction,
    /// Random order of the other tasks for every task and step (default
    /// true, the paper); `false` projects in ascending task order.
    pub shuffle: bool,
}

impl Default for PcGradConfig {
    fn default() -> Self {
        Self {
            reduction: Reduction::Mean,
            shuffle: true,
        }
    }
}

impl MethodConfig for PcGradConfig {
    const NAME: &'static str = "pcgrad";
    const SUMMARY: &'static str =
        "project each gradient off the tasks it conflicts with (Yu et al. 2020)";
    const NEEDS: GradientSource = GradientSource::SharedParameters;
    const PARAMS: &'static [(&'static str, &'static str)] = &[
        (
            "reduction",
            "mean (default) or sum of the projected gradients",
        ),
        (
            "shuffle",
            "random projection order per task and step (false: ascending)",
        ),
    ];

    fn build(&self, num_tasks: usize, seed: u64) -> Result<Box<dyn Balancer>> {
        GramBalancer::boxed(num_tasks, PcGrad::new(num_tasks, self.clone(), seed)?)
    }
}

/// PCGrad; see the module documentation.
#[derive(Debug, Clone)]
pub struct PcGrad {
    config: PcGradConfig,
    rng: SeededRng,
}

/// Weights `w` with `Σ_i p_i = Jᵀw` for the given projection orders
/// (`orders[i]` lists the other tasks in the order task `i` is projected
/// against them). Rows with `‖g_j‖ = 0` are never projected against.
pub fn surgery_weights(gram: &DMatrix<f64>, orders: &[Vec<usize>]) -> Vec<f64> {
    let t = gram.nrows();
    let mut total = vec![0.0f64; t];
    let mut coef = vec![0.0f64; t];
    for (i, order) in orders.iter().enumerate() {
        coef.iter_mut().for_each(|c| *c = 0.0);
        coef[i] = 1.0;
        for &j in order.iter().filter(|&&j| j != i) {
            let dot: f64 = (0..t).map(|k| coef[k] * gram[(k, j)]).sum();
            let norm2 = gram[(j, j)];
            if dot < 0.0 && norm2 > 0.0 {
                coef[j] -= dot / norm2;
            }
        }
        for (s, c) in total.iter_mut().zip(&coef) {
            *s += c;
        }
    }
    total
}

impl PcGrad {
    /// PCGrad for `num_tasks` tasks; `seed` seeds the projection order.
    ///
    /// # Errors
    /// [`Error::NoTasks`](crate::Error::NoTasks).
    pub fn new(num_tasks: usize, config: PcGradConfig, seed: u64) -> Result<Self> {
        require_tasks(num_tasks)?;
        Ok(Self {
            config,
            rng: SeededRng::new(seed),
        })
    }

    /// The weights of one step from the Gram matrix (draws the orders).
    pub fn weights_from_gram(&mut self, gram: &DMatrix<f64>) -> Vec<f64> {
        let t = gram.nrows();
        let orders: Vec<Vec<usize>> = (0..t)
            .map(|i| {
                let mut others: Vec<usize> = (0..t).filter(|&j| j != i).collect();
                if self.config.shuffle {
                    others.shuffle(self.rng.rng());
                }
                others
            })
            .collect();
        let factor = self.config.reduction.factor(t);
        surgery_weights(gram, &orders)
            .into_iter()
            .map(|w| w * factor)
            .collect()
    }
}

impl MethodState for PcGrad {
    fn state(&self) -> serde_json::Value {
        to_state(&self.rng.saved())
    }

    fn load_state(&mut self, balancer: &'static str, state: &serde_json::Value) -> Result<()> {
        self.rng.restore(&parse_state(balancer, state)?);
        Ok(())
    }

    fn reset(&mut self) {
        self.rng.reset();
    }
}

impl GramMethod for PcGrad {
    type Config = PcGradConfig;

    fn weights(&mut self, gram: &DMatrix<f64>, _step: &GramStep<'_>) -> Result<Vec<f64>> {
        Ok(self.weights_from_gram(gram))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// balancers.md §19.7 prints six decimals.
    const PRINTED_TOL: f64 = 1e-6;

    fn gram_of(rows: &[[f64; 2]]) -> DMatrix<f64> {
        DMatrix::from_fn(rows.len(), rows.len(), |i, j| {
            rows[i][0] * rows[j][0] + rows[i][1] * rows[j][1]
        })
    }

    fn combine(rows: &[[f64; 2]], w: &[f64]) -> [f64; 2] {
        let mut d = [0.0; 2];
        for (r, wi) in rows.iter().zip(w) {
            d[0] += wi * r[0];
            d[1] += wi * r[1];
        }
        d
    }

    #[test]
    fn pc_4_order_dependence_for_three_tasks() {
        let rows = [[1.0, 0.0], [-1.0, 1.0], [-1.0, -2.0]];
        let g = gram_of(&rows);
        let ascending = vec![vec![1, 2], vec![0, 2], vec![0, 1]];
        let descending = vec![vec![2, 1], vec![2, 0], vec![1, 0]];
        let up = combine(&rows, &surgery_weights(&g, &ascending));
        let down = combine(&rows, &surgery_weights(&g, &descending));
        for (a, b) in up.iter().zip([-1.2, -0.9]) {
            assert!((a - b).abs() < PRINTED_TOL, "{up:?}");
        }
        for (a, b) in down.iter().zip([0.2, -0.7]) {
            assert!((a - b).abs() < PRINTED_TOL, "{down:?}");
        }
    }

    #[test]
    fn state_round_trip_replays_the_same_orders() {
        let rows = [[1.0, 0.0], [-1.0, 1.0], [-1.0, -2.0]];
        let g = gram_of(&rows);
        let mut a = PcGrad::new(3, PcGradConfig::default(), 9).unwrap();
        a.weights_from_gram(&g);
        let saved = a.state();
        let next: Vec<Vec<f64>> = (0..5).map(|_| a.weights_from_gram(&g)).collect();
        let mut b = PcGrad::new(3, PcGradConfig::default(), 1).unwrap();
        b.load_state("pcgrad", &saved).unwrap();
        let again: Vec<Vec<f64>> = (0..5).map(|_| b.weights_from_gram(&g)).collect();
        assert_eq!(next, again);
    }
}
