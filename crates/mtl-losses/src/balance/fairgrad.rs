//! FairGrad, α-fair allocation of the update among the tasks (Ban & Ji 2024,
//! "Fair Resource Allocation in Multi-Task Learning", ICML; torchjd
//! `FairGrad`, LibMTL `FairGrad`).
//!
//! The update `d = Jᵀw` maximises `Σ_i u_α(g_iᵀd)` over a ball, with the
//! α-fair utility `u_α(x) = x^{1−α}/(1−α)` (`log x` for `α = 1`); its
//! weights solve
//!
//! ```text
//! G w = w^{−1/α}   (w > 0),
//! ```
//!
//! (eq. 4 of the paper; `α = 1` is Nash-MTL's `Gw = 1/w`, `α → ∞` tends to
//! MGDA's max-min, `α = 0` is linear scalarisation with `w = 1/T`). torchjd
//! and LibMTL find `w` with `scipy.optimize.least_squares` from `1/T`; here
//! it is the minimiser of the strictly convex
//! `φ(w) = ½wᵀGw − Σ_i h(w_i)`, `h' = w^{−1/α}`, found by Newton's method
//! with a line search that keeps `w > 0`, on the Gram divided by its mean
//! diagonal `s` (the solution of the scaled problem is multiplied back by
//! `s^{−α/(α+1)}`).
//!
//! * **Scale.** Not the mean scale: like torchjd and Nash-MTL the weights are
//!   the raw solution, which scales as `‖g‖^{−2α/(α+1)}`.
//! * **Non-conflicting:** yes when the solution exists (`g_iᵀd = w_i^{−1/α} > 0`).
//! * **Rows with zero norm** get weight 0 and are left out of the solve (the
//!   equation has no solution for them, and they add nothing to `d`;
//!   torchjd returns whatever large value its solver stops at).
//! * **Pareto-stationary inputs** (a non-negative combination of the rows
//!   vanishes): no solution exists; after [`MAX_NEWTON_STEPS`] the method
//!   returns zero weights (no update), as Nash-MTL does here.

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

use super::{
    check_parameter, require_tasks, Balancer, GradientSource, GramBalancer, GramMethod, GramStep,
    MethodConfig, MethodState,
};
use crate::error::Result;

/// Newton steps before the solve is declared without solution.
pub const MAX_NEWTON_STEPS: usize = 100;

/// Largest relative residual `max_i |w_i^{1/α} (Gw)_i − 1|` accepted as a
/// solution: Newton's quadratic convergence reaches `f64` rounding well
/// before this.
const RESIDUAL_TOL: f64 = 1e-9;

/// Newton decrement `gradᵀH⁻¹grad ≈ ‖w − w*‖²_H`, relative to `1 + |φ|`,
/// at which the minimiser is reached to about 1e-10 (the residual test
/// usually stops first; this one ends the iteration where cancellation in
/// `Gw` keeps the residual above its tolerance).
const DECREMENT_TOL: f64 = 1e-20;

/// Largest residual accepted when the iteration ends on the decrement: far
/// above the rounding floor of large weights, far below the residual of an
/// iterate running off to infinity where no solution exists (order 1).
const DECREMENT_RESIDUAL_TOL: f64 = 1e-3;

/// Newton decrement, relative to `1 + |φ|`, below which full Newton steps
/// are taken without a line search.
const NEWTON_REGION: f64 = 1e-8;

/// FairGrad's weights for the Gram matrix and `alpha ≥ 0` (see the module
/// docs): `1/T` each for `alpha = 0`, zero weights when no solution exists.
pub fn fairgrad_weights(gram: &DMatrix<f64>, alpha: f64) -> Vec<f64> {
    let t = gram.nrows();
    if t == 0 {
        return Vec::new();
    }
    if alpha == 0.0 {
        return vec![1.0 / t as f64; t];
    }
    // Only an exactly zero row is left out: a row of tiny norm (1e-6 of
    // the largest) is a legitimate task whose weight is large.
    let live: Vec<usize> = (0..t).filter(|&i| gram[(i, i)] > 0.0).collect();
    let mut w = vec![0.0; t];
    if live.is_empty() {
        return w;
    }
    let n = live.len();
    let scale = live.iter().map(|&i| gram[(i, i)]).sum::<f64>() / n as f64;
    let g = DMatrix::from_fn(n, n, |i, j| gram[(live[i], live[j])] / scale);
    if let Some(x) = solve(&g, alpha) {
        let back = scale.powf(-alpha / (alpha + 1.0));
        for (k, &i) in live.iter().enumerate() {
            w[i] = x[k] * back;
        }
    }
    w
}

/// `h(x)` with `h'(x) = x^{−1/α}`.
fn utility(x: f64, alpha: f64) -> f64 {
    if alpha == 1.0 {
        x.ln()
    } else {
        let e = 1.0 - 1.0 / alpha;
        x.powf(e) / e
    }
}

/// `φ(x) = ½xᵀGx − Σ h(x_i)`.
fn objective(g: &DMatrix<f64>, x: &DVector<f64>, alpha: f64) -> f64 {
    0.5 * x.dot(&(g * x)) - x.iter().map(|&v| utility(v, alpha)).sum::<f64>()
}

/// Damped Newton on `φ` from `x = 1`: converged when the residual falls
/// below [`RESIDUAL_TOL`] or the Newton decrement `gradᵀH⁻¹grad` below
/// [`DECREMENT_TOL`]` · (1 + |φ|)` (the floor of `f64` rounding when the
/// weights are large and `Gw` cancels); `None` when neither happens within
/// [`MAX_NEWTON_STEPS`] (no minimiser: `φ` is unbounded below and the
/// decrement stays large).
fn solve(g: &DMatrix<f64>, alpha: f64) -> Option<Vec<f64>> {
    let n = g.nrows();
    let mut x = DVector::from_element(n, 1.0);
    for _ in 0..MAX_NEWTON_STEPS {
        let gx = g * &x;
        let residual = (0..n)
            .map(|i| (x[i].powf(1.0 / alpha) * gx[i] - 1.0).abs())
            .fold(0.0, f64::max);
        if residual < RESIDUAL_TOL {
            return Some(x.iter().copied().collect());
        }
        let grad = DVector::from_fn(n, |i, _| gx[i] - x[i].powf(-1.0 / alpha));
        let mut hessian = g.clone();
        for i in 0..n {
            hessian[(i, i)] += x[i].powf(-1.0 / alpha - 1.0) / alpha;
        }
        let step = hessian.cholesky()?.solve(&(-&grad));
        let f0 = objective(g, &x, alpha);
        let slope = grad.dot(&step);
        if -slope <= DECREMENT_TOL * (1.0 + f0.abs()) {
            // Where no minimiser exists, φ runs off to −∞ and the decrement
            // relative to it shrinks too: only a near-solution counts.
            return (residual < DECREMENT_RESIDUAL_TOL).then(|| x.iter().copied().collect());
        }
        // Stay inside w > 0: at most 99 % of the way to the boundary.
        let mut s: f64 = 1.0;
        for i in 0..n {
            if step[i] < 0.0 {
                s = s.min(0.99 * x[i] / -step[i]);
            }
        }
        // Armijo backtracking on φ, far from the minimiser. Close to it
        // (small decrement) the decrease falls below the rounding of φ, so
        // the Newton step is taken as it is: it converges quadratically there.
        if -slope > NEWTON_REGION * (1.0 + f0.abs()) {
            loop {
                let trial = &x + s * &step;
                if objective(g, &trial, alpha) <= f0 + 1e-4 * s * slope || s < 1e-12 {
                    break;
                }
                s *= 0.5;
            }
        }
        x = &x + s * &step;
        if !x.iter().all(|v| v.is_finite() && *v > 0.0) {
            return None;
        }
    }
    None
}

/// Configuration of [`FairGrad`] (registry name `fairgrad`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FairGradConfig {
    /// The fairness `α ≥ 0` (default 1, LibMTL's; `α = 1` is proportional
    /// fairness, larger approaches max-min fairness).
    pub alpha: f64,
}

impl Default for FairGradConfig {
    fn default() -> Self {
        Self { alpha: 1.0 }
    }
}

impl MethodConfig for FairGradConfig {
    const NAME: &'static str = "fairgrad";
    const SUMMARY: &'static str = "α-fair allocation of the update, G w = w^(−1/α) (Ban & Ji 2024)";
    const NEEDS: GradientSource = GradientSource::SharedParameters;
    const PARAMS: &'static [(&'static str, &'static str)] = &[(
        "alpha",
        "fairness α ≥ 0 (0 = mean, 1 = proportional, large = max-min)",
    )];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        require_tasks(num_tasks)?;
        check_parameter(
            Self::NAME,
            "alpha",
            self.alpha,
            self.alpha >= 0.0,
            "must be finite and ≥ 0",
        )?;
        GramBalancer::boxed(num_tasks, FairGrad(self.clone()))
    }
}

/// FairGrad; see the module documentation. Absent tasks are left out.
#[derive(Debug, Clone)]
pub struct FairGrad(FairGradConfig);

impl MethodState for FairGrad {}

impl GramMethod for FairGrad {
    type Config = FairGradConfig;

    fn weights(&mut self, gram: &DMatrix<f64>, _step: &GramStep<'_>) -> Result<Vec<f64>> {
        Ok(fairgrad_weights(gram, self.0.alpha))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Newton converges to `f64` rounding of the residual.
    const TOL: f64 = 1e-9;

    fn residual(gram: &DMatrix<f64>, w: &[f64], alpha: f64) -> f64 {
        let w = DVector::from_column_slice(w);
        let gw = gram * &w;
        (0..w.len())
            .map(|i| (gw[i] - w[i].powf(-1.0 / alpha)).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn orthogonal_rows_closed_form() {
        // G = diag(a): a_i w_i = w_i^{−1/α} ⇒ w_i = a_i^{−α/(α+1)}.
        let g = DMatrix::from_diagonal(&DVector::from_vec(vec![4.0, 0.25]));
        for alpha in [0.5, 1.0, 2.0, 7.0] {
            let w = fairgrad_weights(&g, alpha);
            let e = -alpha / (alpha + 1.0);
            assert!((w[0] - 4.0f64.powf(e)).abs() < TOL, "α={alpha}: {w:?}");
            assert!((w[1] - 0.25f64.powf(e)).abs() < TOL, "α={alpha}: {w:?}");
        }
    }

    #[test]
    fn equal_rows_closed_form_and_alpha_zero() {
        // G = s·11ᵀ (T = 3): 3 s w = w^{−1/α} ⇒ w = (3s)^{−α/(α+1)}.
        let g = DMatrix::from_element(3, 3, 2.0);
        let w = fairgrad_weights(&g, 1.0);
        for x in &w {
            assert!((x - 6.0f64.powf(-0.5)).abs() < TOL, "{w:?}");
        }
        assert_eq!(fairgrad_weights(&g, 0.0), vec![1.0 / 3.0; 3]);
    }

    #[test]
    fn conflicting_rows_solve_the_equation() {
        let g = DMatrix::from_row_slice(3, 3, &[2.0, -0.5, 0.3, -0.5, 1.0, 0.2, 0.3, 0.2, 3.0]);
        for alpha in [0.5, 1.0, 2.0] {
            let w = fairgrad_weights(&g, alpha);
            assert!(w.iter().all(|&x| x > 0.0));
            assert!(residual(&g, &w, alpha) < 1e-8, "α={alpha}: {w:?}");
        }
    }

    #[test]
    fn norms_six_orders_apart_keep_every_task() {
        // G = diag(1e-6, 1e6): w_i = G_ii^{−1/2} for α = 1.
        let g = DMatrix::from_diagonal(&DVector::from_vec(vec![1e-6, 1e6]));
        let w = fairgrad_weights(&g, 1.0);
        assert!(
            (w[0] / 1e3 - 1.0).abs() < TOL && (w[1] / 1e-3 - 1.0).abs() < TOL,
            "{w:?}"
        );
    }

    #[test]
    fn zero_rows_and_stationary_inputs() {
        // A zero row gets weight 0; the others solve their own system.
        let g = DMatrix::from_row_slice(2, 2, &[4.0, 0.0, 0.0, 0.0]);
        let w = fairgrad_weights(&g, 1.0);
        assert!((w[0] - 0.5).abs() < TOL && w[1] == 0.0, "{w:?}");
        // g and −g: no solution, zero weights.
        let g = DMatrix::from_row_slice(2, 2, &[1.0, -1.0, -1.0, 1.0]);
        assert_eq!(fairgrad_weights(&g, 1.0), vec![0.0, 0.0]);
        assert_eq!(fairgrad_weights(&DMatrix::zeros(2, 2), 1.0), vec![0.0, 0.0]);
    }
}
