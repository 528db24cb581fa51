//! Exact primal active-set solver for the small convex quadratic programs of
//! the balancers:
//!
//! ```text
//! minimise   ½ xᵀ H x + cᵀ x
//! subject to x_i ≥ l_i            for every i,
//!            Σ_i x_i = 1          (only when `on_simplex`)
//! ```
//!
//! with `H` symmetric positive semi-definite (a normalised Gram matrix, of size
//! `T ≤ ~100`). The method is the textbook primal active-set method (Nocedal &
//! Wright 2006, Alg. 16.3): on the current face (bounds in the working set held
//! at equality) solve the equality-constrained QP, step towards its minimiser
//! until a bound blocks, and release the bound with the most negative
//! multiplier once the face minimiser is reached. It terminates in finitely
//! many steps with the exact KKT point (up to rounding).
//!
//! A semi-definite `H` (linearly dependent gradients) makes the face problem
//! singular; a ridge of [`RIDGE`] times each variable's own diagonal entry
//! `H_ii` (the mean diagonal for a zero entry) is added to `H_FF` when solving
//! for the step. Directions in the null space of `H` do not change `Jᵀx`
//! (since `‖Jᵀz‖² = zᵀHz = 0`), so the ridge only picks one of several
//! equally good weight vectors and leaves the combined gradient unchanged.
//! Scaling the ridge per variable keeps it negligible for every task: a
//! ridge on the mean diagonal was as large as the whole problem when the task
//! norms spanned 1e-3 to 1e3 (`H_ii` from 1e-6 to 1e6). For the same reason
//! a multiplier counts as negative only below a tolerance relative to the
//! size of the terms it is summed from, not to 1.

use nalgebra::{DMatrix, DVector};

use crate::error::{Error, Result};

/// Relative ridge added to the face system (times each variable's `H_ii`).
/// Large enough for a stable Cholesky factorisation of a singular `H_FF`
/// (`≫ ε_f64 ≈ 2e-16`), small enough that the KKT point moves by far less
/// than the `1e-9` accuracy the exact ground truths are checked with.
pub const RIDGE: f64 = 1e-11;

/// Refinement steps taken at each face minimiser (see [`BoxQp::solve`]).
const REFINEMENTS: usize = 2;

/// Multipliers above `−MULTIPLIER_TOL · s` count as non-negative, where
/// `s = max_i (Σ_j |H_ij x_j| + |c_i|)` bounds the terms of the gradient
/// `Hx + c`: its rounding noise is ~1e-16·s, so a bound is released only for
/// a clearly negative multiplier (no cycling on noise), whatever the scale.
const MULTIPLIER_TOL: f64 = 1e-12;

/// The problem data; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct BoxQp<'a> {
    /// The symmetric positive semi-definite matrix `H` (`n × n`).
    pub h: &'a DMatrix<f64>,
    /// The linear term `c` (`n`).
    pub c: &'a DVector<f64>,
    /// The lower bounds `l` (`n`).
    pub lower: &'a DVector<f64>,
    /// Whether the equality `Σx = 1` holds as well (requires `Σl ≤ 1`).
    pub on_simplex: bool,
}

impl BoxQp<'_> {
    /// Solves the problem from the feasible point `start` (bounds with
    /// `start_i ≤ l_i` start in the working set). Returns the minimiser.
    ///
    /// # Errors
    ///
    /// [`Error::Solver`] if `start` is infeasible, the data are not finite,
    /// or the iteration limit (`50·n + 100`, never reached on convex data)
    /// is exceeded.
    pub fn solve(&self, start: DVector<f64>) -> Result<DVector<f64>> {
        let n = self.h.nrows();
        let fail = |reason: String| Error::Solver {
            solver: "active-set QP",
            reason,
        };
        if self.h.iter().chain(self.c.iter()).any(|v| !v.is_finite()) {
            return Err(fail("non-finite problem data".into()));
        }
        let mut x = start;
        let feasible_sum = !self.on_simplex || (x.sum() - 1.0).abs() < 1e-9;
        if x.len() != n || !feasible_sum || x.iter().zip(self.lower.iter()).any(|(a, l)| a < l) {
            return Err(fail("infeasible starting point".into()));
        }
        let mean_diag = (self.h.trace() / n.max(1) as f64).max(f64::MIN_POSITIVE);
        let ridge: Vec<f64> = (0..n)
            .map(|i| {
                let d = self.h[(i, i)];
                RIDGE * if d > 0.0 { d } else { mean_diag }
            })
            .collect();
        let mut active: Vec<bool> = x
            .iter()
            .zip(self.lower.iter())
            .map(|(a, l)| a <= l)
            .collect();
        for _ in 0..(50 * n + 100) {
            let free: Vec<usize> = (0..n).filter(|&i| !active[i]).collect();
            let grad = self.h * &x + self.c;
            let (step, _) = self.face_step(&free, &grad, &ridge);
            // Largest feasible fraction of the step.
            let mut alpha = 1.0;
            let mut blocking = None;
            for (k, &i) in free.iter().enumerate() {
                if step[k] < 0.0 {
                    let t = (self.lower[i] - x[i]) / step[k];
                    if t < alpha {
                        alpha = t.max(0.0);
                        blocking = Some(i);
                    }
                }
            }
            for (k, &i) in free.iter().enumerate() {
                x[i] += alpha * step[k];
            }
            if let Some(i) = blocking {
                x[i] = self.lower[i];
                active[i] = true;
                continue;
            }
            // The ridge leaves a residual `ridge · step` in the face's
            // gradient; steps from the new point remove it (iterative
            // refinement), as long as they stay within the bounds.
            for _ in 0..REFINEMENTS {
                let grad = self.h * &x + self.c;
                let (step, _) = self.face_step(&free, &grad, &ridge);
                let inside = free
                    .iter()
                    .enumerate()
                    .all(|(k, &i)| x[i] + step[k] >= self.lower[i]);
                if !inside {
                    break;
                }
                for (k, &i) in free.iter().enumerate() {
                    x[i] += step[k];
                }
            }
            // At the face minimiser: check the multipliers of the active bounds.
            let grad = self.h * &x + self.c;
            let nu = if self.on_simplex && !free.is_empty() {
                free.iter().map(|&i| grad[i]).sum::<f64>() / free.len() as f64
            } else {
                0.0
            };
            let magnitude = (0..n)
                .map(|i| {
                    (0..n).map(|j| (self.h[(i, j)] * x[j]).abs()).sum::<f64>() + self.c[i].abs()
                })
                .fold(0.0f64, f64::max);
            let tol = MULTIPLIER_TOL * magnitude;
            let release = (0..n)
                .filter(|&i| active[i])
                .map(|i| (i, grad[i] - nu))
                .filter(|&(_, m)| m < -tol)
                .min_by(|a, b| a.1.total_cmp(&b.1));
            match release {
                Some((i, _)) => active[i] = false,
                None => return Ok(x),
            }
        }
        Err(fail(format!(
            "no convergence in {} iterations",
            50 * n + 100
        )))
    }

    /// Step `p_F` to the minimiser of the ridged objective on the face of the
    /// free indices (`p_W = 0`; `Σp_F = 0` on the simplex), and the equality
    /// multiplier `ν`.
    fn face_step(&self, free: &[usize], grad: &DVector<f64>, ridge: &[f64]) -> (DVector<f64>, f64) {
        let m = free.len();
        if m == 0 {
            return (DVector::zeros(0), 0.0);
        }
        let k = DMatrix::from_fn(m, m, |a, b| {
            self.h[(free[a], free[b])] + if a == b { ridge[free[a]] } else { 0.0 }
        });
        let g = DVector::from_iterator(m, free.iter().map(|&i| grad[i]));
        let chol = nalgebra::Cholesky::new(k).expect("H_FF + ridge·I is positive definite");
        let y = chol.solve(&g);
        if self.on_simplex {
            let z = chol.solve(&DVector::from_element(m, 1.0));
            let nu = y.sum() / z.sum();
            (-(y - z * nu), nu)
        } else {
            (-y, 0.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact solver reproduces closed forms to rounding; 1e-12 leaves
    /// room for the ridge's ~1e-11 relative shift on singular faces.
    const EXACT_TOL: f64 = 1e-9;

    #[test]
    fn unconstrained_interior_minimiser() {
        // min ½xᵀHx + cᵀx with x ≥ −10 never binding: x = −H⁻¹c.
        let h = DMatrix::from_row_slice(2, 2, &[2.0, 0.5, 0.5, 1.0]);
        let c = DVector::from_vec(vec![-1.0, -1.0]);
        let lower = DVector::from_element(2, -10.0);
        let qp = BoxQp {
            h: &h,
            c: &c,
            lower: &lower,
            on_simplex: false,
        };
        let x = qp.solve(DVector::zeros(2)).unwrap();
        let expect = h.clone().try_inverse().unwrap() * -c;
        assert!((x - expect).amax() < EXACT_TOL);
    }

    #[test]
    fn bound_becomes_active_with_nonnegative_multiplier() {
        // min ½(x1² + x2²) − x1 + x2, x ≥ 0 ⇒ x = (1, 0), multiplier of x2 = 1.
        let h = DMatrix::identity(2, 2);
        let c = DVector::from_vec(vec![-1.0, 1.0]);
        let lower = DVector::zeros(2);
        let qp = BoxQp {
            h: &h,
            c: &c,
            lower: &lower,
            on_simplex: false,
        };
        let x = qp.solve(DVector::from_vec(vec![0.5, 0.5])).unwrap();
        assert!((x - DVector::from_vec(vec![1.0, 0.0])).amax() < EXACT_TOL);
    }

    #[test]
    fn simplex_qp_kkt_on_a_face() {
        // Rows (1,0),(0,1),(1,1): min-norm point (0.5, 0.5, 0) (balancers.md MGDA-4).
        let h = DMatrix::from_row_slice(3, 3, &[1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 2.0]);
        let c = DVector::zeros(3);
        let lower = DVector::zeros(3);
        let qp = BoxQp {
            h: &h,
            c: &c,
            lower: &lower,
            on_simplex: true,
        };
        let x = qp.solve(DVector::from_element(3, 1.0 / 3.0)).unwrap();
        assert!((x - DVector::from_vec(vec![0.5, 0.5, 0.0])).amax() < EXACT_TOL);
    }

    #[test]
    fn infeasible_start_is_an_error() {
        let h = DMatrix::identity(2, 2);
        let c = DVector::zeros(2);
        let lower = DVector::zeros(2);
        let qp = BoxQp {
            h: &h,
            c: &c,
            lower: &lower,
            on_simplex: true,
        };
        assert!(qp.solve(DVector::from_vec(vec![0.7, 0.7])).is_err());
    }
}
