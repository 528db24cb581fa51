//! Adjusted Rand index of two partitions.

use super::contingency::Contingency;
use crate::error::Result;

/// Number of pairs, `C(m, 2) = m(m−1)/2`.
fn pairs(m: usize) -> f64 {
    m as f64 * (m as f64 - 1.0) / 2.0
}

/// Adjusted Rand index (Hubert & Arabie, 1985) of two labellings of the same
/// examples: the Rand index corrected for chance,
///
/// `ARI = (Σ_ij C(n_ij,2) − E) / (½(Σ_i C(a_i,2) + Σ_j C(b_j,2)) − E)`,
/// `E = Σ_i C(a_i,2) · Σ_j C(b_j,2) / C(n,2)`.
///
/// 1 for identical partitions whatever the label names, about 0 (in
/// expectation) for independent ones, and negative below chance. When no pair
/// of examples is split differently by the two partitions (both put everything
/// in one group, or both in singletons) it is 1, as in scikit-learn.
pub fn ari(a: &[usize], b: &[usize]) -> Result<f64> {
    let table = Contingency::new("ari", a, b)?;
    let together: f64 = table.cells.iter().map(|&m| pairs(m)).sum();
    let rows: f64 = table.rows.iter().map(|&m| pairs(m)).sum();
    let cols: f64 = table.cols.iter().map(|&m| pairs(m)).sum();
    if together == rows && together == cols {
        return Ok(1.0);
    }
    let expected = rows * cols / pairs(table.n);
    Ok((together - expected) / ((rows + cols) / 2.0 - expected))
}
