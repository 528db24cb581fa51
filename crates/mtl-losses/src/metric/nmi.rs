//! Normalised mutual information of two partitions.

use super::contingency::Contingency;
use crate::error::Result;

/// Entropy `H = −Σ_i (a_i/n) ln(a_i/n)` of group sizes, in nats.
fn entropy(sizes: &[usize], n: f64) -> f64 {
    sizes
        .iter()
        .map(|&s| {
            let p = s as f64 / n;
            -p * p.ln()
        })
        .sum()
}

/// Normalised mutual information of two labellings of the same examples
/// (Strehl & Ghosh, 2002; Vinh, Epps & Bailey, 2010), with the arithmetic-mean
/// normalisation, scikit-learn's default (`average_method="arithmetic"`):
///
/// `NMI(U, V) = I(U; V) / ((H(U) + H(V)) / 2)`,
/// `I(U; V) = Σ_ij (n_ij/n) · ln(n·n_ij / (a_i·b_j))`.
///
/// 1 for identical partitions whatever the label names, 0 for independent
/// ones; symmetric in its arguments. When both partitions have a single group
/// (`H(U) = H(V) = 0`) they are identical and the value is 1, as in
/// scikit-learn.
pub fn nmi(a: &[usize], b: &[usize]) -> Result<f64> {
    let table = Contingency::new("nmi", a, b)?;
    let n = table.n as f64;
    let (h_a, h_b) = (entropy(&table.rows, n), entropy(&table.cols, n));
    if h_a == 0.0 && h_b == 0.0 {
        return Ok(1.0);
    }
    // Σ_ij p_ij ln(p_ij / (p_i p_j)) = Σ_ij p_ij ln p_ij + H(U) + H(V).
    let joint = entropy(&table.cells, n);
    let mutual = (h_a + h_b - joint).max(0.0);
    Ok(mutual / ((h_a + h_b) / 2.0))
}
