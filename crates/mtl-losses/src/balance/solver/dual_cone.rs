//! Projection onto the dual cone of the task gradients, through weights.
//!
//! The dual cone is `C = {y ∈ R^P : g_i·y ≥ 0 ∀i}` (the directions that
//! conflict with no task). Quinton & Rey 2024 ("Jacobian Descent for
//! Multi-Objective Optimization", Prop. 1) show that for a preference
//! `u ∈ R^T_{≥0}`
//!
//! ```text
//! π_C(Jᵀu) = Jᵀ w(u),    w(u) = argmin_{v ⪰ u} vᵀ G v
//! ```
//!
//! so the projection is a `T`-dimensional QP on the Gram matrix. The QP
//! objective is invariant to the scale of `G`; it is solved exactly on the
//! normalised Gram by the active-set method of [`super::box_qp`].

use nalgebra::{DMatrix, DVector};

use super::box_qp::BoxQp;
use super::normalized;
use crate::error::Result;

/// `w(u) = argmin_{v ⪰ u} vᵀ(G + reg·I)v`, where `G` is first divided by
/// its trace (torchjd's convention, so that `reg` is relative; `reg = 0`
/// is the exact projection). An all-zero Gram returns `u` (every `v ⪰ u`
/// gives the zero vector).
///
/// # Errors
///
/// Propagates a QP failure (non-finite Gram).
pub fn project_weights(gram: &DMatrix<f64>, u: &DVector<f64>, reg: f64) -> Result<DVector<f64>> {
    let t = gram.nrows();
    let (mut g, scale) = normalized(gram);
    if scale == 0.0 {
        return Ok(u.clone());
    }
    g /= t as f64;
    for i in 0..t {
        g[(i, i)] += reg;
    }
    let zeros = DVector::zeros(t);
    let qp = BoxQp {
        h: &g,
        c: &zeros,
        lower: u,
        on_simplex: false,
    };
    qp.solve(u.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact projection, checked against float64 closed forms.
    const EXACT_TOL: f64 = 1e-9;

    #[test]
    fn projection_of_a_conflicting_row_on_j_base() {
        // J_base: g1=(−4,1,1), g2=(6,1,1), G=[[18,−22],[−22,38]].
        // π_C(g1) = g1 − (g1·g2/‖g2‖²) g2 ⇒ w = (1, 22/38).
        let g = DMatrix::from_row_slice(2, 2, &[18.0, -22.0, -22.0, 38.0]);
        let w = project_weights(&g, &DVector::from_vec(vec![1.0, 0.0]), 0.0).unwrap();
        assert!((w[0] - 1.0).abs() < EXACT_TOL);
        assert!((w[1] - 22.0 / 38.0).abs() < EXACT_TOL);
        // The projection is orthogonal to g2: (Gw)_2 = 0, and g1·d ≥ 0.
        let gw = &g * &w;
        assert!(gw[1].abs() < EXACT_TOL * 38.0);
        assert!(gw[0] >= 0.0);
    }

    #[test]
    fn a_row_inside_the_cone_is_unchanged() {
        // J3 has no conflicting pair: every row lies in the dual cone.
        let g = DMatrix::from_row_slice(3, 3, &[1.0, 1.0, 0.0, 1.0, 5.0, 2.0, 0.0, 2.0, 10.0]);
        for i in 0..3 {
            let mut u = DVector::zeros(3);
            u[i] = 1.0;
            let w = project_weights(&g, &u, 0.0).unwrap();
            assert!((w - u).amax() < EXACT_TOL);
        }
    }

    #[test]
    fn kkt_of_the_projection() {
        // Stationarity: Gw = λ ≥ 0 with λ_i = 0 where w_i > u_i.
        let g = DMatrix::from_row_slice(3, 3, &[2.0, -1.5, 0.3, -1.5, 3.0, -2.0, 0.3, -2.0, 4.0]);
        let u = DVector::from_vec(vec![0.2, 0.5, 0.3]);
        let w = project_weights(&g, &u, 0.0).unwrap();
        let gw = &g * &w;
        for i in 0..3 {
            assert!(w[i] >= u[i] - EXACT_TOL);
            assert!(gw[i] >= -EXACT_TOL, "non-conflicting for task {i}");
            if w[i] > u[i] + EXACT_TOL {
                assert!(gw[i].abs() < EXACT_TOL, "complementary slackness, task {i}");
            }
        }
    }
}
