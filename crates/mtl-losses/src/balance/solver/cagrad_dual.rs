//! The dual problem of CAGrad (Liu, Liu, Jin, Stone, Liu 2021,
//! "Conflict-Averse Gradient Descent for Multi-task Learning"):
//!
//! ```text
//! w* = argmin_{w ∈ Δ_T} F(w) = wᵀ a + C √(wᵀ G w),   a = G 1/T,  C = c √(mean(G)) = c‖g_0‖
//! d  = g_0 + λ Jᵀw*,   λ = C / ‖Jᵀw*‖       (effective weights 1/T + λ w*)
//! ```
//!
//! Solved exactly, without a general nonlinear solver, through the identity
//! `√q = min_{s>0} q/(2s) + s/2`:
//!
//! ```text
//! min_w F(w) = min_{s>0} ψ(s),   ψ(s) = min_{w∈Δ} [wᵀa + (C/2s) wᵀGw] + Cs/2
//! ```
//!
//! `q/(2s)` is jointly convex in `(w, s)`, so `ψ` is convex and
//! `ψ'(s) = (C/2)(1 − q(w(s))/s²)` is non-decreasing, where `w(s)` solves the
//! simplex QP with `H = (C/s)G`. The root `q(w(s)) = s²` is bracketed by
//! `s_lo = ‖min-norm point‖` and `s_hi = max_i ‖g_i‖` and found by the
//! Illinois variant of false position, one exact QP per evaluation.
//!
//! At a Pareto-stationary input (`0` in the convex hull, `‖min-norm point‖ =
//! 0`) the dual is still well defined. Whenever some combination of the
//! gradients has a cosine with `g_0` below `−c`, its minimiser has
//! `‖Jᵀw*‖ > 0`; the lower end of the bracket is then found by walking `s`
//! down from `s_hi`. Only when the minimiser has `Jᵀw* = 0` (optimal value
//! 0; always the case for `c ≥ 1`, whose ball contains `d = 0`) is the
//! direction `g_w*/‖g_w*‖` undefined; the solution is then flagged
//! `stationary` with `λ = 0`.

use nalgebra::{DMatrix, DVector};

use super::box_qp::BoxQp;
use super::{min_norm, normalized};
use crate::error::Result;

/// Below this `‖min-norm point‖² / mean‖g_i‖²` the gradients are treated as
/// Pareto-stationary (`0` in their convex hull): 1e-12 is far below any
/// useful conflict yet far above the `~1e-16` rounding of a normalised Gram.
/// The dual is then bracketed from above (see [`solve`]).
pub const STATIONARY_TOL: f64 = 1e-12;

/// At a Pareto-stationary input the lower end of the bracket is searched
/// from `s_hi` down by this factor per step ...
const STATIONARY_S_STEP: f64 = 1e-2;

/// ... until `s_hi · STATIONARY_S_MIN`; below it the minimiser counts as
/// `q(w*) = 0` (the objective is within `c‖g_0‖ · 1e-8 · s_hi` of it).
const STATIONARY_S_MIN: f64 = 1e-8;

/// Relative bracket width at which the root search stops; `ψ` is flat at its
/// minimum, so `s` to 1e-13 gives `w` to ~1e-12.
const ROOT_TOL: f64 = 1e-13;

/// Solution of the dual: `w*` on the simplex and the factor `λ`, so that the
/// effective loss weights are `1/T + λ w*`.
#[derive(Debug, Clone, PartialEq)]
pub struct CagradSolution {
    /// The dual variable `w* ∈ Δ_T`.
    pub w: DVector<f64>,
    /// `λ = c‖g_0‖ / ‖Jᵀw*‖` (0 when `c = 0` or at a Pareto-stationary point).
    pub lambda: f64,
    /// Whether the dual's minimiser has `Jᵀw* = 0` (a Pareto-stationary input
    /// where no combination conflicts with `g_0` by more than `c`), in which
    /// case `λ = 0` and the update is the mean gradient `g_0`.
    pub stationary: bool,
}

impl CagradSolution {
    /// Effective loss weights `1/T + λ w*_i`.
    pub fn effective_weights(&self) -> DVector<f64> {
        let t = self.w.len() as f64;
        self.w.map(|wi| 1.0 / t + self.lambda * wi)
    }
}

/// Solves the CAGrad dual for `c ≥ 0`; see the module documentation.
///
/// # Errors
///
/// Propagates a QP failure (non-finite Gram).
pub fn solve(gram: &DMatrix<f64>, c: f64) -> Result<CagradSolution> {
    let t = gram.nrows();
    let uniform = DVector::from_element(t, 1.0 / t as f64);
    let (g, scale) = normalized(gram);
    let mean = g.mean();
    if c == 0.0 || scale == 0.0 || mean <= 0.0 {
        // c = 0: d = g_0. Zero Gram: every combination is zero. mean(G) ≤ 0:
        // g_0 = 0 so the trust region is the single point d = 0 = g_0.
        return Ok(CagradSolution {
            w: uniform,
            lambda: 0.0,
            stationary: scale == 0.0,
        });
    }
    let big_c = c * mean.sqrt();
    let a = &g * &uniform;
    let alpha = min_norm::exact(gram)?;
    let q_min = alpha.dot(&(&g * &alpha));
    let zeros = DVector::zeros(t);
    let inner = |s: f64, start: &DVector<f64>| -> Result<(DVector<f64>, f64)> {
        let h = &g * (big_c / s);
        let qp = BoxQp {
            h: &h,
            c: &a,
            lower: &zeros,
            on_simplex: true,
        };
        let w = qp.solve(start.clone())?;
        let q = w.dot(&(&g * &w));
        Ok((w, q))
    };
    let s_hi = (0..t).map(|i| g[(i, i)]).fold(0.0f64, f64::max).sqrt();
    let finish = |w: DVector<f64>, q: f64| CagradSolution {
        lambda: big_c / q.sqrt(),
        w,
        stationary: false,
    };
    let stationary = CagradSolution {
        w: uniform,
        lambda: 0.0,
        stationary: true,
    };
    let (s_lo, w_lo, q_lo) = if q_min > STATIONARY_TOL {
        let s_lo = q_min.sqrt();
        let (w_lo, q_lo) = inner(s_lo, &alpha)?;
        (s_lo, w_lo, q_lo)
    } else if c >= 1.0 {
        // The ball contains d = 0 and the hull contains 0, so the optimal
        // worst-task value is exactly 0 (attained by d = 0).
        return Ok(stationary);
    } else {
        // 0 lies in the convex hull (Pareto-stationary). The dual is still
        // well defined: ψ'(s) > 0 at some s > 0 exactly when the minimiser
        // has q(w*) > 0 (some combination of the gradients has a cosine with
        // g_0 below −c). Walk s down from s_hi until ψ' > 0 brackets the root.
        let mut s = s_hi;
        let mut found = None;
        while s > s_hi * STATIONARY_S_MIN {
            let (w, q) = inner(s, &alpha)?;
            if q > s * s && q > STATIONARY_TOL {
                found = Some((s, w, q));
                break;
            }
            s *= STATIONARY_S_STEP;
        }
        match found {
            Some(bracket) => bracket,
            // ψ' ≤ 0 down to s ≈ 0: the minimum is at q(w*) = 0, where
            // F* = 0 and g_w*/‖g_w*‖ is undefined.
            None => return Ok(stationary),
        }
    };
    let mut f_lo = q_lo / (s_lo * s_lo) - 1.0;
    if f_lo <= 0.0 || s_hi <= s_lo * (1.0 + ROOT_TOL) {
        return Ok(finish(w_lo, q_lo));
    }
    let (w_hi, q_hi) = inner(s_hi, &w_lo)?;
    let mut f_hi = q_hi / (s_hi * s_hi) - 1.0;
    if f_hi >= 0.0 {
        return Ok(finish(w_hi, q_hi));
    }
    let (mut lo, mut hi) = (s_lo, s_hi);
    let mut best = (w_hi, q_hi);
    let mut side = 0i8;
    for _ in 0..200 {
        let mut s = (lo * f_hi - hi * f_lo) / (f_hi - f_lo);
        if !(s > lo && s < hi) {
            s = 0.5 * (lo + hi);
        }
        let (w, q) = inner(s, &best.0)?;
        let f = q / (s * s) - 1.0;
        best = (w, q);
        if f.abs() <= ROOT_TOL || hi - lo <= ROOT_TOL * lo {
            break;
        }
        if f > 0.0 {
            lo = s;
            f_lo = f;
            if side == 1 {
                f_hi *= 0.5;
            }
            side = 1;
        } else {
            hi = s;
            f_hi = f;
            if side == -1 {
                f_lo *= 0.5;
            }
            side = -1;
        }
    }
    Ok(finish(best.0, best.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// balancers.md §19.10 prints six decimals.
    const PRINTED_TOL: f64 = 1e-6;

    const J_BASE: [f64; 4] = [18.0, -22.0, -22.0, 38.0];

    #[test]
    fn ca_2_j_base_c_half() {
        let g = DMatrix::from_row_slice(2, 2, &J_BASE);
        let sol = solve(&g, 0.5).unwrap();
        assert!((sol.w[0] - 1.0).abs() < PRINTED_TOL && sol.w[1].abs() < PRINTED_TOL);
        assert!((sol.lambda - 0.204124).abs() < PRINTED_TOL);
        let eff = sol.effective_weights();
        assert!((eff[0] - 0.704124).abs() < PRINTED_TOL && (eff[1] - 0.5).abs() < PRINTED_TOL);
    }

    #[test]
    fn ca_5_large_c_approaches_mgda() {
        let g = DMatrix::from_row_slice(2, 2, &J_BASE);
        let sol = solve(&g, 10.0).unwrap();
        assert!((sol.w[0] - 0.608178).abs() < PRINTED_TOL);
        assert!((sol.w[1] - 0.391822).abs() < PRINTED_TOL);
    }

    #[test]
    fn c_zero_is_the_mean_and_the_dual_is_optimal() {
        let g = DMatrix::from_row_slice(3, 3, &[1.0, 1.0, 0.0, 1.0, 5.0, 2.0, 0.0, 2.0, 10.0]);
        let zero = solve(&g, 0.0).unwrap();
        assert_eq!(
            zero.effective_weights(),
            DVector::from_element(3, 1.0 / 3.0)
        );
        // CA-6: J3, c = 0.5 ⇒ w* = (1, 0, 0).
        let sol = solve(&g, 0.5).unwrap();
        assert!((sol.w.clone() - DVector::from_vec(vec![1.0, 0.0, 0.0])).amax() < PRINTED_TOL);
        // F(w*) is no larger than F at any vertex or the centre of the simplex.
        let big_c = 0.5 * g.mean().sqrt();
        let a = &g * DVector::from_element(3, 1.0 / 3.0);
        let f = |w: &DVector<f64>| w.dot(&a) + big_c * w.dot(&(&g * w)).sqrt();
        let f_star = f(&sol.w);
        for w in [
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, 0.0, 1.0],
            [0.2, 0.3, 0.5],
        ] {
            assert!(f_star <= f(&DVector::from_row_slice(&w)) + 1e-12);
        }
    }

    #[test]
    fn opposite_gradients_still_have_a_dual_optimum() {
        // Rows (1, 0) and (−2, 0): 0 lies in their convex hull, g_0 =
        // (−0.5, 0), radius C = 0.25. By hand: F(w) = −0.25 + 0.75 w_2 for
        // w_2 ≤ 1/3, so w* = (1, 0), ‖g_w*‖ = 1 and λ = 0.25; the direction
        // g_0 + λ g_1 = (−0.25, 0) has worst inner product −0.25, the primal
        // optimum (g_0 itself has −0.5).
        let g = DMatrix::from_row_slice(2, 2, &[1.0, -2.0, -2.0, 4.0]);
        let sol = solve(&g, 0.5).unwrap();
        assert!(!sol.stationary);
        assert!((sol.w[0] - 1.0).abs() < PRINTED_TOL, "{:?}", sol.w);
        assert!((sol.lambda - 0.25).abs() < PRINTED_TOL, "{}", sol.lambda);
    }

    #[test]
    fn orthogonal_cancelling_pair_is_stationary() {
        // Rows (1, 0), (−1, 0), (0, 1): g_0 = (0, 1/3), c = 0.5. No
        // combination has a cosine with g_0 below −c (the first two are
        // orthogonal to it), so the minimiser has Jᵀw* = 0.
        let g = DMatrix::from_row_slice(3, 3, &[1.0, -1.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
        let sol = solve(&g, 0.5).unwrap();
        assert!(sol.stationary);
        assert_eq!(sol.lambda, 0.0);
    }
}
