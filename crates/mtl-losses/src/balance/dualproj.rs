//! DualProj, the preference-weighted mean of the gradients projected onto
//! the dual cone of the gradients (Lopez-Paz & Ranzato 2017, "Gradient
//! Episodic Memory for Continual Learning", NeurIPS, eq. 11; torchjd
//! `DualProj`).
//!
//! ```text
//! d = π_C(Jᵀu) = Jᵀ w,   w = argmin_{v ⪰ u} vᵀ G v,   C = {y : J y ≥ 0}
//! ```
//!
//! one QP on the Gram matrix ([`solver::dual_cone`](super::solver::dual_cone);
//! Quinton & Rey 2024, Prop. 1), where UPGrad projects every row separately.
//! As in torchjd the Gram is divided by its trace and `reg_eps·I` added
//! (`reg_eps = 0` is the exact projection), and a trace below `norm_eps`
//! returns `u`.
//!
//! * **Non-conflicting:** yes, `J d ≥ 0` exactly for `reg_eps = 0`.
//! * **Scaling:** mean scale (`u = 1/T`); equals the mean gradient when the
//!   mean conflicts with no task. torchjd's default preference is also
//!   `1/T`, so the outputs are the same vector.
//! * **T = 1:** `d = g_1`.

use nalgebra::{DMatrix, DVector};

use super::solver::dual_cone;
use crate::error::Result;

/// The weights `w = argmin_{v ⪰ u} vᵀ(G/tr G + reg_eps·I)v`, or `u` when
/// `tr G < norm_eps`.
///
/// # Errors
/// A QP failure (non-finite Gram).
pub fn dualproj_weights(
    gram: &DMatrix<f64>,
    preference: &DVector<f64>,
    norm_eps: f64,
    reg_eps: f64,
) -> Result<Vec<f64>> {
    if gram.trace() < norm_eps {
        return Ok(preference.iter().copied().collect());
    }
    Ok(dual_cone::project_weights(gram, preference, reg_eps)?
        .iter()
        .copied()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The active-set QP is exact up to `f64` rounding of a 2×2 solve.
    const TOL: f64 = 1e-10;

    #[test]
    fn ground_truths() {
        // Orthogonal rows: the mean conflicts with nobody, w = u.
        let g = DMatrix::from_row_slice(2, 2, &[4.0, 0.0, 0.0, 1.0]);
        let u = DVector::from_element(2, 0.5);
        let w = dualproj_weights(&g, &u, 0.0, 0.0).unwrap();
        assert!(
            (w[0] - 0.5).abs() < TOL && (w[1] - 0.5).abs() < TOL,
            "{w:?}"
        );
        // g1 = (1, 0), g2 = (−2, 1): G = [[1, −2], [−2, 5]]. The mean
        // (−0.5, 0.5) conflicts with g1 (g1·m = −0.5), so the constraint
        // of task 1 binds: (Gw)_1 = 0 with w_2 = 0.5 ⇒ w_1 = 1.
        let g = DMatrix::from_row_slice(2, 2, &[1.0, -2.0, -2.0, 5.0]);
        let w = dualproj_weights(&g, &u, 0.0, 0.0).unwrap();
        assert!(
            (w[0] - 1.0).abs() < TOL && (w[1] - 0.5).abs() < TOL,
            "{w:?}"
        );
        // d = 1·(1, 0) + 0.5·(−2, 1) = (0, 0.5): g1·d = 0, g2·d = 0.5.
    }

    #[test]
    fn tiny_trace_returns_the_preference() {
        let g = DMatrix::from_row_slice(2, 2, &[1e-6, -1e-6, -1e-6, 1e-6]);
        let u = DVector::from_vec(vec![0.25, 0.75]);
        assert_eq!(
            dualproj_weights(&g, &u, 1e-4, 1e-4).unwrap(),
            vec![0.25, 0.75]
        );
    }
}
