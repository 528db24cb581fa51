//! Coordinate-wise trimmed mean, a Byzantine-robust aggregation (Yin, Chen,
//! Ramchandran & Bartlett 2018, "Byzantine-Robust Distributed Learning:
//! Towards Optimal Statistical Rates", ICML; torchjd `TrimmedMean`).
//!
//! In every column the `k` = `trim_number` largest and `k` smallest of the
//! `T` values are dropped and the remaining `T − 2k` averaged:
//!
//! ```text
//! d_j = (1/(T − 2k)) Σ_{i ∈ kept(j)} g_ij.
//! ```
//!
//! The direction is not a fixed combination of the rows; the reported task
//! weights (for the heads and the logs) are `1/T` each, the weights of the
//! mean it replaces, so that they are the same on every column shard.
//!
//! * **Scale.** Mean scale (`k = 0` is the mean gradient).
//! * **Column shards.** Supported: each column is trimmed on its own.
//!
//! **Few tasks.** torchjd requires `T ≥ 2k + 1`; here `k` is lowered to
//! `⌊(T' − 1)/2⌋` when only `T'` tasks are present, so that at least one
//! value per column remains (for `T' ≤ 2` this is the mean).

use serde::{Deserialize, Serialize};

use super::{
    Balancer, Combined, GradRows, GradientSource, MethodConfig, MethodState, RowBalancer,
    RowMethod, RowStep,
};
use crate::error::Result;

/// The trimmed mean of the `rows` (each `cols` values long), column by
/// column; `trim` is the requested `k`, lowered to `⌊(T − 1)/2⌋` for few rows.
pub fn trimmed_mean(rows: &[&[f32]], cols: usize, trim: usize) -> Vec<f32> {
    let t = rows.len();
    if t == 0 {
        return vec![0.0; cols];
    }
    let k = trim.min((t - 1) / 2);
    let kept = t - 2 * k;
    let mut column: Vec<f32> = Vec::with_capacity(t);
    (0..cols)
        .map(|j| {
            column.clear();
            column.extend(rows.iter().map(|r| r[j]));
            column.sort_by(f32::total_cmp);
            let sum: f64 = column[k..k + kept].iter().map(|&v| f64::from(v)).sum();
            (sum / kept as f64) as f32
        })
        .collect()
}

/// Configuration of [`TrimmedMean`] (registry name `trimmed-mean`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrimmedMeanConfig {
    /// Values `k` dropped at each end of every column (default 1; lowered
    /// to `⌊(T' − 1)/2⌋` for few present tasks).
    pub trim_number: usize,
}

impl Default for TrimmedMeanConfig {
    fn default() -> Self {
        Self { trim_number: 1 }
    }
}

impl MethodConfig for TrimmedMeanConfig {
    const NAME: &'static str = "trimmed-mean";
    const SUMMARY: &'static str = "coordinate-wise trimmed mean of the gradients (Yin et al. 2018)";
    const NEEDS: GradientSource = GradientSource::SharedParameters;
    const PARAMS: &'static [(&'static str, &'static str)] = &[(
        "trim_number",
        "values dropped at each end of every column (lowered for few tasks)",
    )];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        RowBalancer::boxed(num_tasks, TrimmedMean(self.clone()))
    }
}

/// TrimmedMean; see the module documentation. Absent tasks are left out of
/// every column.
#[derive(Debug, Clone)]
pub struct TrimmedMean(TrimmedMeanConfig);

impl MethodState for TrimmedMean {}

impl RowMethod for TrimmedMean {
    type Config = TrimmedMeanConfig;

    fn combine(&mut self, rows: &GradRows<'_>, step: &RowStep<'_>) -> Result<Combined> {
        let present: Vec<&[f32]> = rows
            .iter()
            .zip(step.present)
            .filter_map(|(r, &p)| p.then_some(r))
            .collect();
        let share = 1.0 / present.len() as f64;
        Ok(Combined {
            direction: trimmed_mean(&present, rows.cols(), self.0.trim_number),
            weights: step
                .present
                .iter()
                .map(|&p| if p { share } else { 0.0 })
                .collect(),
        })
    }

    fn supports_column_shards(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ground_truths() {
        // Columns (1, 5, 100), (−3, 0, 2): k = 1 keeps the middle values.
        let rows: [&[f32]; 3] = [&[1.0, -3.0], &[5.0, 0.0], &[100.0, 2.0]];
        assert_eq!(trimmed_mean(&rows, 2, 1), vec![5.0, 0.0]);
        // k = 0 is the mean.
        let d = trimmed_mean(&rows, 2, 0);
        assert!((d[0] - 106.0 / 3.0).abs() < 1e-5 && (d[1] + 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn five_rows_trim_two_and_few_rows_lower_k() {
        let rows: [&[f32]; 5] = [&[9.0], &[-7.0], &[1.0], &[2.0], &[3.0]];
        assert_eq!(trimmed_mean(&rows, 1, 2), vec![2.0]);
        assert_eq!(trimmed_mean(&rows, 1, 1), vec![2.0]);
        // Two rows with k = 1: lowered to k = 0, the mean.
        let rows: [&[f32]; 2] = [&[1.0], &[3.0]];
        assert_eq!(trimmed_mean(&rows, 1, 1), vec![2.0]);
    }
}
