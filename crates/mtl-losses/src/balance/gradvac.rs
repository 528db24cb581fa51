//! GradVac, gradient vaccine (Wang, Tsvetkov, Firat, Cao 2021, "Gradient
//! Vaccine: Investigating and Improving Multi-task Optimization in Massively
//! Multilingual Models", ICLR).
//!
//! Per parameter group `k` and ordered pair `(i, j ≠ i)`, with `p` the
//! partially corrected `g_i` and `φ = cos(p, g_j)`, `φ̂_ijk` an EMA target
//! (init 0): if `φ < φ̂` then
//!
//! ```text
//! p ← p + c g_j,   c = ‖p‖ (φ̂√(1−φ²) − φ√(1−φ̂²)) / (‖g_j‖ √(1−φ̂²))
//! ```
//!
//! which makes the new cosine exactly `φ̂`; then `φ̂ ← (1−β)φ̂ + βφ`. The `j`
//! are visited in a random order per `i` (LibMTL). With `φ̂ = 0` the
//! correction is PCGrad's projection. The update is the mean (default) or the
//! sum of the corrected rows.
//!
//! Run on the Gram matrix of each group: `p = Σ_m c_m g_m` is tracked by its
//! coefficients, so `p·g_j = (cᵀG)_j` and `‖p‖² = cᵀGc`. One pass over `J`
//! builds every group's Gram, one more forms `d` group by group.
//!
//! Pairs where `‖p‖ = 0` or `‖g_j‖ = 0` are skipped (no correction, no EMA
//! update), as is the correction when `√(1−φ̂²) < 1e-12` (a target of ±1
//! has no finite correction).
//!
//! * **Non-conflicting:** no (it also acts on positively correlated pairs).
//! * **Scaling:** mean scale (no correction gives `1/T` each); `sum` gives
//!   the reference code's scale.
//! * **T = 1:** `d = g_1`.

use nalgebra::DMatrix;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::pcgrad::Reduction;
use super::rng_state::{RngState, SeededRng};
use super::{
    check_parameter, gram, parse_state, require_tasks, to_state, Balancer, Combined, GradRows,
    GradientSource, MethodConfig, MethodState, RowBalancer, RowMethod, RowStep,
};
use crate::error::{Error, Result};

/// Below this `√(1 − φ̂²)` the correction is skipped (it would divide by ~0).
const TARGET_DEGENERATE: f64 = 1e-12;

/// Configuration of [`GradVac`] (registry name `gradvac`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GradVacConfig {
    /// EMA rate `β ∈ [0, 1]` of the cosine targets (default 0.5, LibMTL).
    pub beta: f64,
    /// Sizes of the parameter groups, in column order (default: empty = one
    /// group for the whole row); must sum to the number of columns.
    pub group_sizes: Vec<usize>,
    /// `mean` (default) or `sum` of the corrected rows.
    pub reduction: Reduction,
}

impl Default for GradVacConfig {
    fn default() -> Self {
        Self {
            beta: 0.5,
            group_sizes: Vec::new(),
            reduction: Reduction::Mean,
        }
    }
}

impl MethodConfig for GradVacConfig {
    const NAME: &'static str = "gradvac";
    const SUMMARY: &'static str =
        "raise pairwise gradient cosines to their running targets (Wang et al. 2021)";
    const NEEDS: GradientSource = GradientSource::SharedParameters;
    const PARAMS: &'static [(&'static str, &'static str)] = &[
        ("beta", "EMA rate of the pairwise cosine targets"),
        (
            "group_sizes",
            "column counts of the parameter groups (empty = one group)",
        ),
        (
            "reduction",
            "mean (default) or sum of the corrected gradients",
        ),
    ];

    fn build(&self, num_tasks: usize, seed: u64) -> Result<Box<dyn Balancer>> {
        RowBalancer::boxed(num_tasks, GradVac::new(num_tasks, self.clone(), seed)?)
    }
}

/// The persistent state of [`GradVac`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct GradVacState {
    /// `targets[k][i*T + j]` = `φ̂_ijk`.
    targets: Vec<Vec<f64>>,
    rng: RngState,
}

/// GradVac; see the module documentation.
#[derive(Debug, Clone)]
pub struct GradVac {
    num_tasks: usize,
    config: GradVacConfig,
    targets: Vec<Vec<f64>>,
    rng: SeededRng,
}

impl GradVac {
    /// GradVac for `num_tasks` tasks; `seed` seeds the pair order.
    ///
    /// # Errors
    /// [`Error::NoTasks`]; [`Error::InvalidParameter`] for `β ∉ [0, 1]` or an
    /// empty group.
    pub fn new(num_tasks: usize, config: GradVacConfig, seed: u64) -> Result<Self> {
        require_tasks(num_tasks)?;
        let beta = config.beta;
        check_parameter(
            GradVacConfig::NAME,
            "beta",
            beta,
            (0.0..=1.0).contains(&beta),
            "in [0, 1]",
        )?;
        let smallest = config.group_sizes.iter().copied().min().unwrap_or(1) as f64;
        check_parameter(
            GradVacConfig::NAME,
            "group_sizes",
            smallest,
            smallest >= 1.0,
            "every group needs ≥ 1 column",
        )?;
        let groups = config.group_sizes.len().max(1);
        Ok(Self {
            num_tasks,
            config,
            targets: vec![vec![0.0; num_tasks * num_tasks]; groups],
            rng: SeededRng::new(seed),
        })
    }

    /// The cosine targets `φ̂_ij` of group `k` (row-major `T × T`).
    pub fn targets(&self, group: usize) -> &[f64] {
        &self.targets[group]
    }

    /// The corrected-sum weights of group `group` from its Gram matrix
    /// (draws the orders, updates the targets).
    pub fn weights_from_gram(&mut self, group: usize, gram: &DMatrix<f64>) -> Vec<f64> {
        let tasks: Vec<usize> = (0..gram.nrows()).collect();
        self.weights_for(group, gram, &tasks)
    }

    /// [`weights_from_gram`](Self::weights_from_gram) for the tasks `tasks`
    /// (rows of `gram`): only their pairs' targets are read and updated.
    fn weights_for(&mut self, group: usize, gram: &DMatrix<f64>, tasks: &[usize]) -> Vec<f64> {
        let t = gram.nrows();
        let n = self.num_tasks;
        let beta = self.config.beta;
        let mut total = vec![0.0f64; t];
        let mut coef = vec![0.0f64; t];
        for i in 0..t {
            let mut order: Vec<usize> = (0..t).filter(|&j| j != i).collect();
            order.shuffle(self.rng.rng());
            coef.iter_mut().for_each(|c| *c = 0.0);
            coef[i] = 1.0;
            for j in order {
                let gc: Vec<f64> = (0..t)
                    .map(|m| (0..t).map(|n| coef[n] * gram[(n, m)]).sum())
                    .collect();
                let p_norm = coef
                    .iter()
                    .zip(&gc)
                    .map(|(c, x)| c * x)
                    .sum::<f64>()
                    .max(0.0)
                    .sqrt();
                let g_norm = gram[(j, j)].max(0.0).sqrt();
                if p_norm == 0.0 || g_norm == 0.0 {
                    continue;
                }
                let phi = (gc[j] / (p_norm * g_norm)).clamp(-1.0, 1.0);
                let target = &mut self.targets[group][tasks[i] * n + tasks[j]];
                let root_target = (1.0 - *target * *target).max(0.0).sqrt();
                if phi < *target && root_target >= TARGET_DEGENERATE {
                    let root_phi = (1.0 - phi * phi).max(0.0).sqrt();
                    let c =
                        p_norm * (*target * root_phi - phi * root_target) / (g_norm * root_target);
                    coef[j] += c;
                }
                *target = (1.0 - beta) * *target + beta * phi;
            }
            for (s, c) in total.iter_mut().zip(&coef) {
                *s += c;
            }
        }
        let factor = self.config.reduction.factor(t);
        total.into_iter().map(|w| w * factor).collect()
    }

    /// Column ranges of the groups for rows of `cols` columns.
    fn ranges(&self, cols: usize) -> Result<Vec<std::ops::Range<usize>>> {
        if self.config.group_sizes.is_empty() {
            return Ok(std::iter::once(0..cols).collect());
        }
        let total: usize = self.config.group_sizes.iter().sum();
        if total != cols {
            return Err(Error::CountMismatch {
                what: "gradvac group sizes (sum) vs. gradient columns",
                expected: cols,
                got: total,
            });
        }
        let mut start = 0;
        Ok(self
            .config
            .group_sizes
            .iter()
            .map(|&n| {
                start += n;
                start - n..start
            })
            .collect())
    }

    /// The direction and the mean weights over the groups, for the present
    /// tasks (`tasks`) of `grads`; `shard_gram` replaces the single group's
    /// Gram for a column shard.
    fn combine_groups(
        &mut self,
        grads: &GradRows<'_>,
        tasks: &[usize],
        shard_gram: Option<&DMatrix<f64>>,
    ) -> Result<(Vec<f32>, Vec<f64>)> {
        let (t, cols) = (grads.rows(), grads.cols());
        let ranges = match shard_gram {
            Some(_) => std::iter::once(0..cols).collect(),
            None => self.ranges(cols)?,
        };
        let mut direction = vec![0.0f32; cols];
        let mut mean_weights = vec![0.0f64; t];
        for (k, range) in ranges.iter().enumerate() {
            let g = match shard_gram {
                Some(g) => g.clone(),
                None => {
                    let g = gram::gram_of_columns(grads.as_slice(), t, cols, range.clone());
                    gram::check_diagonal(&g)?;
                    g
                }
            };
            let sub = self.weights_for(k, &gram::restrict(&g, tasks), tasks);
            let mut w = vec![0.0f64; t];
            for (&task, x) in tasks.iter().zip(sub) {
                w[task] = x;
            }
            gram::combine_columns(grads.as_slice(), cols, &w, range.clone(), &mut direction);
            for (m, x) in mean_weights.iter_mut().zip(&w) {
                *m += x / ranges.len() as f64;
            }
        }
        Ok((direction, mean_weights))
    }
}

impl MethodState for GradVac {
    fn state(&self) -> serde_json::Value {
        to_state(&GradVacState {
            targets: self.targets.clone(),
            rng: self.rng.saved(),
        })
    }

    fn load_state(&mut self, balancer: &'static str, state: &serde_json::Value) -> Result<()> {
        let saved: GradVacState = parse_state(balancer, state)?;
        let fits = saved.targets.len() == self.targets.len()
            && saved
                .targets
                .iter()
                .all(|t| t.len() == self.num_tasks * self.num_tasks);
        if !fits {
            return Err(Error::State {
                balancer,
                reason: "saved targets do not match the tasks and groups".into(),
            });
        }
        self.targets = saved.targets;
        self.rng.restore(&saved.rng);
        Ok(())
    }

    fn reset(&mut self) {
        self.targets
            .iter_mut()
            .for_each(|t| t.iter_mut().for_each(|x| *x = 0.0));
        self.rng.reset();
    }
}

impl RowMethod for GradVac {
    type Config = GradVacConfig;

    /// Runs on the Gram of each parameter group; with a column shard (one
    /// group only) on the shard's full Gram.
    fn combine(&mut self, grads: &GradRows<'_>, step: &RowStep<'_>) -> Result<Combined> {
        let tasks: Vec<usize> = (0..grads.rows()).filter(|&i| step.present[i]).collect();
        let shard_gram = step.shard.map(|s| s.gram);
        let (direction, weights) = self.combine_groups(grads, &tasks, shard_gram)?;
        Ok(Combined { direction, weights })
    }

    fn supports_column_shards(&self) -> bool {
        self.config.group_sizes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// balancers.md §19.9 prints six decimals.
    const PRINTED_TOL: f64 = 1e-6;

    #[test]
    fn gv_2_two_steps_on_j_conf() {
        // J_conf rows (1,0), (−1,1); β = 0.5; sum reduction.
        let config = GradVacConfig {
            reduction: Reduction::Sum,
            ..GradVacConfig::default()
        };
        let mut gv = GradVac::new(2, config, 0).unwrap();
        let g = DMatrix::from_row_slice(2, 2, &[1.0, -1.0, -1.0, 2.0]);
        let d = |w: &[f64]| [w[0] - w[1], w[1]];
        let step1 = d(&gv.weights_from_gram(0, &g));
        assert!((step1[0] - 0.5).abs() < PRINTED_TOL && (step1[1] - 1.5).abs() < PRINTED_TOL);
        assert!((gv.targets(0)[1] + 0.353553).abs() < PRINTED_TOL);
        assert!((gv.targets(0)[2] + 0.353553).abs() < PRINTED_TOL);
        let step2 = d(&gv.weights_from_gram(0, &g));
        assert!((step2[0] - 0.311018).abs() < PRINTED_TOL, "{step2:?}");
        assert!((step2[1] - 1.311018).abs() < PRINTED_TOL);
        assert!((gv.targets(0)[1] + 0.530330).abs() < PRINTED_TOL);
    }

    #[test]
    fn gv_1_target_half_sets_the_new_cosine() {
        // One pair g_i = (1,0), g_j = (−1,1) with target 0.5 ⇒ c = 0.788675.
        let mut gv = GradVac::new(2, GradVacConfig::default(), 0).unwrap();
        gv.targets[0][1] = 0.5;
        gv.targets[0][2] = 1.5; // out of range: √(1−φ̂²) = 0 ⇒ task 2 is left alone
        let g = DMatrix::from_row_slice(2, 2, &[1.0, -1.0, -1.0, 2.0]);
        let w = gv.weights_from_gram(0, &g);
        // mean reduction: w = ((1 − 0), (0.788675 + 1))/2 for rows 1 and 2.
        assert!((w[0] - 0.5).abs() < PRINTED_TOL);
        assert!((w[1] - (0.788675 + 1.0) / 2.0).abs() < PRINTED_TOL);
    }
}
