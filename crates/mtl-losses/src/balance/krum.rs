//! Krum and Multi-Krum, Byzantine-robust selection of gradients (Blanchard,
//! El Mhamdi, Guerraoui & Stainer 2017, "Machine Learning with Adversaries:
//! Byzantine Tolerant Gradient Descent", NeurIPS; torchjd `Krum`).
//!
//! With `f` = `n_byzantine` rows that may be adversarial and
//! `D_ij = ‖g_i − g_j‖ = √(G_ii + G_jj − 2G_ij)` (read from the Gram), the
//! score of row `i` is the sum of its `T − f − 2` smallest distances to the
//! other rows. The `m` = `n_selected` rows of smallest score are averaged:
//!
//! ```text
//! w_i = 1/m if i is among the m best scores, else 0;   d = Jᵀw.
//! ```
//!
//! Ties are broken toward the lower task index. The weights sum to 1, so
//! the output is on the mean scale in the sense that `T` equal rows give
//! that row.
//!
//! **Few tasks.** The rule needs `T ≥ f + 3` rows (a neighbourhood of at
//! least one other row); torchjd raises an error below that. Here, with
//! fewer present tasks than `f + 3`, the method falls back to the mean of
//! the present rows (`w = 1/T'`), since no row can be told apart as an
//! outlier. `m` larger than the number of rows selects all of them.

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use super::{
    check_parameter, require_tasks, Balancer, GradientSource, GramBalancer, GramMethod, GramStep,
    MethodConfig, MethodState,
};
use crate::error::Result;

/// Krum's weights from the Gram matrix (see the module docs).
pub fn krum_weights(gram: &DMatrix<f64>, n_byzantine: usize, n_selected: usize) -> Vec<f64> {
    let t = gram.nrows();
    if t == 0 {
        return Vec::new();
    }
    if t < n_byzantine + 3 {
        return vec![1.0 / t as f64; t];
    }
    let neighbours = t - n_byzantine - 2;
    let scores: Vec<f64> = (0..t)
        .map(|i| {
            let mut d: Vec<f64> = (0..t)
                .map(|j| {
                    (gram[(i, i)] + gram[(j, j)] - 2.0 * gram[(i, j)])
                        .max(0.0)
                        .sqrt()
                })
                .collect();
            d.sort_by(f64::total_cmp);
            // d[0] = 0 is the row itself (or an exact duplicate, the same value).
            d[1..=neighbours].iter().sum()
        })
        .collect();
    let mut order: Vec<usize> = (0..t).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    let m = n_selected.clamp(1, t);
    let mut w = vec![0.0; t];
    for &i in &order[..m] {
        w[i] = 1.0 / m as f64;
    }
    w
}

/// Configuration of [`Krum`] (registry name `krum`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KrumConfig {
    /// The number `f` of rows that may be adversarial (default 0).
    pub n_byzantine: usize,
    /// The number `m ≥ 1` of rows averaged (default 1; `m > 1` is Multi-Krum).
    pub n_selected: usize,
}

impl Default for KrumConfig {
    fn default() -> Self {
        Self {
            n_byzantine: 0,
            n_selected: 1,
        }
    }
}

impl MethodConfig for KrumConfig {
    const NAME: &'static str = "krum";
    const SUMMARY: &'static str =
        "Krum, the gradients closest to their neighbours (Blanchard et al. 2017)";
    const NEEDS: GradientSource = GradientSource::SharedParameters;
    const PARAMS: &'static [(&'static str, &'static str)] = &[
        ("n_byzantine", "number f of rows that may be adversarial"),
        (
            "n_selected",
            "number m ≥ 1 of rows of best score averaged (Multi-Krum for m > 1)",
        ),
    ];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        require_tasks(num_tasks)?;
        check_parameter(
            Self::NAME,
            "n_selected",
            self.n_selected as f64,
            self.n_selected >= 1,
            "must be ≥ 1",
        )?;
        GramBalancer::boxed(num_tasks, Krum(self.clone()))
    }
}

/// Krum; see the module documentation. Absent tasks are left out.
#[derive(Debug, Clone)]
pub struct Krum(KrumConfig);

impl MethodState for Krum {}

impl GramMethod for Krum {
    type Config = KrumConfig;

    fn weights(&mut self, gram: &DMatrix<f64>, _step: &GramStep<'_>) -> Result<Vec<f64>> {
        Ok(krum_weights(gram, self.0.n_byzantine, self.0.n_selected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gram_of(rows: &[[f64; 2]]) -> DMatrix<f64> {
        let t = rows.len();
        DMatrix::from_fn(t, t, |i, j| {
            rows[i][0] * rows[j][0] + rows[i][1] * rows[j][1]
        })
    }

    #[test]
    fn the_outlier_is_never_selected() {
        // Three rows near (1, 0) and one far away; f = 1 ⇒ 1 neighbour.
        let g = gram_of(&[[1.0, 0.0], [1.1, 0.0], [0.9, 0.1], [-50.0, 40.0]]);
        let w = krum_weights(&g, 1, 1);
        // Distances: row 0 to 1 = 0.1, to 2 = √0.02 ≈ 0.141; row 1 to 0 = 0.1;
        // scores (nearest only): 0.1, 0.1, 0.141, ~64 ⇒ tie of rows 0 and 1,
        // broken toward row 0.
        assert_eq!(w, vec![1.0, 0.0, 0.0, 0.0]);
        let w = krum_weights(&g, 1, 3);
        let third = 1.0 / 3.0;
        assert_eq!(w, vec![third, third, third, 0.0]);
    }

    #[test]
    fn scores_sum_the_nearest_neighbours() {
        // Rows on a line at 0, 1, 3, 7 (second coordinate 0); f = 0 ⇒ 2
        // neighbours. Scores: 0: 1+3 = 4, 1: 1+2 = 3, 3: 2+3 = 5, 7: 4+6 = 10.
        let g = gram_of(&[[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [7.0, 0.0]]);
        assert_eq!(krum_weights(&g, 0, 1), vec![0.0, 1.0, 0.0, 0.0]);
        assert_eq!(krum_weights(&g, 0, 2), vec![0.5, 0.5, 0.0, 0.0]);
    }

    #[test]
    fn too_few_rows_fall_back_to_the_mean() {
        let g = gram_of(&[[1.0, 0.0], [0.0, 1.0]]);
        assert_eq!(krum_weights(&g, 0, 1), vec![0.5, 0.5]);
        let g = gram_of(&[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]);
        assert_eq!(krum_weights(&g, 1, 1), vec![1.0 / 3.0; 3]);
        assert!(krum_weights(&DMatrix::zeros(0, 0), 0, 1).is_empty());
    }
}
