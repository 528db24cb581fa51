//! The min-norm point of the convex hull of the task gradients:
//!
//! ```text
//! α* = argmin_{α ∈ Δ_T} ‖Σ_i α_i g_i‖² = argmin_{α ∈ Δ_T} αᵀGα
//! ```
//!
//! (Désidéri 2012; Sener & Koltun 2018, "Multi-Task Learning as Multi-Objective
//! Optimization"). KKT: `g_i·d ≥ ‖d‖²` for every `i`, with equality where
//! `α_i > 0` (`d = Jᵀα`), so `d = 0` (Pareto-stationary) or `−d` decreases
//! every loss to first order.
//!
//! Three solvers: the two-task closed form ([`two_tasks`]), Frank–Wolfe
//! ([`frank_wolfe`], Sener & Koltun Alg. 2) and the exact QP ([`exact`]).

use nalgebra::{DMatrix, DVector};

use super::box_qp::BoxQp;
use super::normalized;
use crate::error::Result;

/// Two tasks, closed form on `α = (γ, 1−γ)`:
/// `γ* = clip((G22 − G12) / (G11 + G22 − 2G12), 0, 1)`, with the boundary
/// cases decided first (`G12 ≥ G11 ⇒ γ = 1`, `G12 ≥ G22 ⇒ γ = 0`), which also
/// covers identical gradients (a 0/0 interior formula). Exact boundaries
/// (1 and 0), not the 0.999 / 0.001 of the reference Python code.
pub fn two_tasks(g11: f64, g12: f64, g22: f64) -> f64 {
    if g12 >= g11 {
        1.0
    } else if g12 >= g22 {
        0.0
    } else {
        ((g22 - g12) / (g11 + g22 - 2.0 * g12)).clamp(0.0, 1.0)
    }
}

/// The exact min-norm weights `α*` (active-set QP on the normalised Gram; the
/// closed form for `T ≤ 2`). For an all-zero Gram every `α` is optimal and the
/// uniform `1/T` is returned.
///
/// # Errors
///
/// Propagates a QP failure (non-finite Gram).
pub fn exact(gram: &DMatrix<f64>) -> Result<DVector<f64>> {
    let t = gram.nrows();
    let (g, scale) = normalized(gram);
    if t == 1 {
        return Ok(DVector::from_element(1, 1.0));
    }
    if scale == 0.0 {
        return Ok(DVector::from_element(t, 1.0 / t as f64));
    }
    if t == 2 {
        let gamma = two_tasks(g[(0, 0)], g[(0, 1)], g[(1, 1)]);
        return Ok(DVector::from_vec(vec![gamma, 1.0 - gamma]));
    }
    let zeros = DVector::zeros(t);
    let qp = BoxQp {
        h: &g,
        c: &zeros,
        lower: &zeros,
        on_simplex: true,
    };
    qp.solve(DVector::from_element(t, 1.0 / t as f64))
}

/// Frank–Wolfe (Sener & Koltun 2018, Alg. 2): start at `α = 1/T`; repeat
/// `t = argmin_r (Gα)_r` (lowest index on ties), exact line search between
/// `v1 = Jᵀα` and `v2 = g_t` with `a = αᵀGα`, `b = (Gα)_t`, `c = G_tt`
/// (`γ = 1` if `c ≤ b`, `γ = 0` if `a ≤ b`, else `(a − b)/(a + c − 2b)`),
/// `α ← (1−γ)α + γe_t`, until `γ < tol` or `max_iter` steps. Converges
/// slowly when the optimum lies on a face (`O(1/k)`), hence [`exact`] as the
/// default of MGDA.
pub fn frank_wolfe(gram: &DMatrix<f64>, max_iter: usize, tol: f64) -> DVector<f64> {
    let t = gram.nrows();
    let (g, _) = normalized(gram);
    let mut alpha = DVector::from_element(t, 1.0 / t as f64);
    for _ in 0..max_iter {
        let g_alpha = &g * &alpha;
        let (best, _) = g_alpha
            .iter()
            .enumerate()
            .fold(
                (0, f64::INFINITY),
                |acc, (r, &v)| if v < acc.1 { (r, v) } else { acc },
            );
        let a = alpha.dot(&g_alpha);
        let b = g_alpha[best];
        let c = g[(best, best)];
        let gamma = if c <= b {
            1.0
        } else if a <= b {
            0.0
        } else {
            (a - b) / (a + c - 2.0 * b)
        };
        alpha *= 1.0 - gamma;
        alpha[best] += gamma;
        if gamma < tol {
            break;
        }
    }
    alpha
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Closed forms and the exact QP agree with float64 ground truths to
    /// rounding; 1e-9 allows the QP's 1e-11 ridge.
    const EXACT_TOL: f64 = 1e-9;
    /// Frank–Wolfe is stopped by its step size; balancers.md §19 uses 1e-4.
    const FW_TOL: f64 = 1e-4;

    fn gram_of(rows: &[&[f64]]) -> DMatrix<f64> {
        DMatrix::from_fn(rows.len(), rows.len(), |i, j| {
            rows[i].iter().zip(rows[j]).map(|(a, b)| a * b).sum()
        })
    }

    fn close(a: &DVector<f64>, b: &[f64], tol: f64) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < tol)
    }

    #[test]
    fn mgda_1_2_3_two_task_ground_truths() {
        // MGDA-1 J_orth, MGDA-2 J_base and J_conf, MGDA-3 J_dom (boundary).
        let cases: [(&[&[f64]], [f64; 2]); 4] = [
            (&[&[2.0, 0.0], &[0.0, 1.0]], [0.2, 0.8]),
            (&[&[-4.0, 1.0, 1.0], &[6.0, 1.0, 1.0]], [0.6, 0.4]),
            (&[&[1.0, 0.0], &[-1.0, 1.0]], [0.6, 0.4]),
            (&[&[1.0, 0.0], &[2.0, 1.0]], [1.0, 0.0]),
        ];
        for (rows, expect) in cases {
            let g = gram_of(rows);
            assert!(close(&exact(&g).unwrap(), &expect, EXACT_TOL), "{rows:?}");
            assert!(
                close(&frank_wolfe(&g, 100, 1e-9), &expect, FW_TOL),
                "{rows:?}"
            );
        }
    }

    #[test]
    fn mgda_4_three_tasks_interior_and_face() {
        let diag = gram_of(&[&[1.0, 0.0, 0.0], &[0.0, 2.0, 0.0], &[0.0, 0.0, 3.0]]);
        let expect = [36.0 / 49.0, 9.0 / 49.0, 4.0 / 49.0];
        assert!(close(&exact(&diag).unwrap(), &expect, EXACT_TOL));
        assert!(close(&frank_wolfe(&diag, 1000, 1e-9), &expect, FW_TOL));
        let face = gram_of(&[&[1.0, 0.0], &[0.0, 1.0], &[1.0, 1.0]]);
        assert!(close(&exact(&face).unwrap(), &[0.5, 0.5, 0.0], EXACT_TOL));
        let fw = frank_wolfe(&face, 100_000, 1e-12);
        assert!(close(&fw, &[0.5, 0.5, 0.0], FW_TOL), "{fw}");
    }

    #[test]
    fn kkt_holds_on_a_random_like_gram() {
        let rows: [&[f64]; 4] = [
            &[1.0, -2.0, 0.5, 3.0],
            &[-1.0, 1.0, 2.0, 0.0],
            &[0.3, 0.2, -1.0, 1.0],
            &[2.0, 2.0, 2.0, -1.0],
        ];
        let g = gram_of(&rows);
        let alpha = exact(&g).unwrap();
        let g_alpha = &g * &alpha;
        let norm2 = alpha.dot(&g_alpha);
        assert!((alpha.sum() - 1.0).abs() < EXACT_TOL);
        for i in 0..4 {
            assert!(alpha[i] >= 0.0);
            assert!(g_alpha[i] >= norm2 - EXACT_TOL, "g_i·d ≥ ‖d‖² for task {i}");
            if alpha[i] > EXACT_TOL {
                assert!(
                    (g_alpha[i] - norm2).abs() < EXACT_TOL,
                    "equality on the support"
                );
            }
        }
    }
}
