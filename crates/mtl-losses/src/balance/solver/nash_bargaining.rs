//! The Nash bargaining solution of Nash-MTL (Navon et al. 2022, "Multi-Task
//! Learning as a Bargaining Game", Claim 3.1):
//!
//! ```text
//! find α ∈ R^T_{>0} with  G α = 1/α   (elementwise),  i.e. α_i (Gα)_i = 1 ∀i
//! ```
//!
//! `Gα = 1/α` is the stationarity condition of the strictly convex
//! `F(α) = ½αᵀGα − Σ_i log α_i` on `α > 0` (Hessian `G + diag(1/α²) ≻ 0`).
//! We minimise `F` by damped Newton with a fraction-to-boundary rule and
//! Armijo backtracking, on `G/s` (`s` = mean diagonal) and un-scale
//! `α = α_s/√s` at the end, instead of the paper's sequence of conic programs.
//! `F` is unbounded below exactly when `0` lies in the convex hull of the
//! gradients (Pareto-stationary inputs), which is checked first with the
//! min-norm solver.

use nalgebra::{DMatrix, DVector};

use super::{min_norm, normalized};
use crate::error::{Error, Result};

/// Convergence: `max_i |α_i (Gα)_i − 1| ≤ RESIDUAL_TOL` (or its rounding
/// floor, when cancellation makes that unreachable). The residual is
/// scale-free; Newton reaches rounding level (~1e-15) two steps after this.
pub const RESIDUAL_TOL: f64 = 1e-12;

/// Pareto-stationarity threshold on `‖min-norm point‖² / mean‖g_i‖²`; see
/// [`super::cagrad_dual::STATIONARY_TOL`] for the size.
pub const STATIONARY_TOL: f64 = 1e-12;

/// Newton iterations allowed; damped Newton on this self-concordant
/// barrier needs < 30 from a cold start on the property-test inputs.
const MAX_NEWTON: usize = 200;

/// Outcome of [`solve`].
#[derive(Debug, Clone, PartialEq)]
pub enum NashOutcome {
    /// The unique solution `α > 0` of `Gα = 1/α` (original units).
    Solved {
        /// The bargaining weights.
        alpha: DVector<f64>,
        /// Newton iterations used.
        iterations: usize,
        /// The final `max_i |α_i (Gα)_i − 1|`: at most [`RESIDUAL_TOL`] or
        /// its rounding floor when converged, larger when Newton stalled
        /// on a nearly Pareto-stationary input (the best iterate is returned).
        residual: f64,
    },
    /// `0` lies in the convex hull of the gradients: no direction decreases
    /// every loss and `Gα = 1/α` has no solution.
    Stationary,
}

/// Solves `Gα = 1/α`, warm-started from `warm` (original units, used when it
/// has the right length and is positive and finite) or from `1/√diag(G)`.
///
/// Near Pareto-stationary inputs (nearly opposed gradients) `G` is nearly
/// singular, `α` is large and `(Gα)_i` is a small difference of large terms;
/// Newton can stall above [`RESIDUAL_TOL`] there. The best iterate is then
/// returned with its residual (documented fallback; callers log it).
///
/// # Errors
///
/// [`Error::Solver`] for a non-finite Gram matrix.
pub fn solve(gram: &DMatrix<f64>, warm: Option<&DVector<f64>>) -> Result<NashOutcome> {
    let t = gram.nrows();
    if gram.iter().any(|v| !v.is_finite()) {
        return Err(Error::Solver {
            solver: "Nash bargaining (Newton)",
            reason: "non-finite Gram matrix".into(),
        });
    }
    let (g, scale) = normalized(gram);
    if scale == 0.0 {
        return Ok(NashOutcome::Stationary);
    }
    let hull = min_norm::exact(gram)?;
    if hull.dot(&(&g * &hull)) <= STATIONARY_TOL {
        return Ok(NashOutcome::Stationary);
    }
    let root = scale.sqrt();
    let mut alpha = match warm {
        Some(w) if w.len() == t && w.iter().all(|v| v.is_finite() && *v > 0.0) => w * root,
        _ => DVector::from_fn(t, |i, _| 1.0 / g[(i, i)].max(1e-12).sqrt()),
    };
    let objective =
        |a: &DVector<f64>| 0.5 * a.dot(&(&g * a)) - a.iter().map(|v| v.ln()).sum::<f64>();
    let mut best = (f64::INFINITY, alpha.clone());
    for iteration in 0..MAX_NEWTON {
        let g_alpha = &g * &alpha;
        let residual = alpha
            .iter()
            .zip(g_alpha.iter())
            .map(|(a, b)| (a * b - 1.0).abs())
            .fold(0.0f64, f64::max);
        // Rounding floor of the residual: α_i (Gα)_i sums terms of size
        // α_i |G_ij| α_j, so cancellation (nearly opposed gradients, large α)
        // limits its accuracy to a few ulps of the largest such term.
        let floor = (0..t)
            .map(|i| alpha[i] * (0..t).map(|j| g[(i, j)].abs() * alpha[j]).sum::<f64>())
            .fold(0.0f64, f64::max)
            * 64.0
            * f64::EPSILON;
        if residual < best.0 {
            best = (residual, alpha.clone());
        }
        if residual <= RESIDUAL_TOL.max(floor) {
            return Ok(NashOutcome::Solved {
                alpha: alpha / root,
                iterations: iteration,
                residual,
            });
        }
        let grad = DVector::from_fn(t, |i, _| g_alpha[i] - 1.0 / alpha[i]);
        let mut hess = g.clone();
        for i in 0..t {
            hess[(i, i)] += 1.0 / (alpha[i] * alpha[i]);
        }
        let step = nalgebra::Cholesky::new(hess)
            .expect("G + diag(1/α²) is positive definite for α > 0")
            .solve(&grad);
        let mut length = 1.0f64;
        for i in 0..t {
            if step[i] > 0.0 {
                length = length.min(0.99 * alpha[i] / step[i]);
            }
        }
        let f0 = objective(&alpha);
        let slope = grad.dot(&step);
        let mut next = &alpha - &step * length;
        // Near the solution the predicted decrease `slope` (the squared Newton
        // decrement) drops below the rounding of F: take the full step, where
        // Newton converges quadratically, instead of a line search on noise.
        let local = slope <= 1e-12 * (1.0 + f0.abs());
        while !local && objective(&next) > f0 - 1e-4 * length * slope && length > 1e-16 {
            length *= 0.5;
            next = &alpha - &step * length;
        }
        let moved = (&step * length).amax();
        if length <= 1e-16 || moved <= 4.0 * f64::EPSILON * alpha.amax() {
            // No decrease is measurable any more: F is at its rounding floor.
            break;
        }
        alpha = next;
    }
    Ok(NashOutcome::Solved {
        alpha: best.1 / root,
        iterations: MAX_NEWTON,
        residual: best.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// balancers.md §19.12 prints six decimals.
    const PRINTED_TOL: f64 = 1e-6;

    fn solved(gram: &[f64], t: usize, warm: Option<&DVector<f64>>) -> DVector<f64> {
        let g = DMatrix::from_row_slice(t, t, gram);
        match solve(&g, warm).unwrap() {
            NashOutcome::Solved { alpha, .. } => {
                let r = alpha.component_mul(&(&g * &alpha));
                assert!(r.iter().all(|v| (v - 1.0).abs() < 1e-10), "residual {r}");
                alpha
            }
            NashOutcome::Stationary => panic!("unexpected stationary outcome"),
        }
    }

    #[test]
    fn na_1_to_4_ground_truths() {
        let a = solved(&[4.0, 0.0, 0.0, 1.0], 2, None);
        assert!((a[0] - 0.5).abs() < PRINTED_TOL && (a[1] - 1.0).abs() < PRINTED_TOL);
        let a = solved(&[18.0, -22.0, -22.0, 38.0], 2, None);
        assert!((a[0] - 0.591461).abs() < PRINTED_TOL && (a[1] - 0.407071).abs() < PRINTED_TOL);
        // NA-3: the official solver fails from the warm start (1, 1); Newton does not.
        let one = DVector::from_element(2, 1.0);
        let a = solved(&[1.0, -1.0, -1.0, 2.0], 2, Some(&one));
        assert!((a[0] - 1.847759).abs() < PRINTED_TOL && (a[1] - 1.306563).abs() < PRINTED_TOL);
        let a = solved(&[1.0, 1.0, 0.0, 1.0, 5.0, 2.0, 0.0, 2.0, 10.0], 3, None);
        for (x, y) in a.iter().zip([0.849690, 0.327211, 0.285195]) {
            assert!((x - y).abs() < PRINTED_TOL);
        }
    }

    #[test]
    fn na_6_small_gradients_cold_start() {
        let g: Vec<f64> = [18.0, -22.0, -22.0, 38.0]
            .iter()
            .map(|v| v * 1e-6)
            .collect();
        let a = solved(&g, 2, Some(&DVector::from_element(2, 1.0)));
        assert!((a[0] - 591.461).abs() < 1e-3 && (a[1] - 407.071).abs() < 1e-3);
    }

    #[test]
    fn pareto_stationary_has_no_solution() {
        let g = DMatrix::from_row_slice(2, 2, &[1.0, -2.0, -2.0, 4.0]);
        assert_eq!(solve(&g, None).unwrap(), NashOutcome::Stationary);
    }
}
