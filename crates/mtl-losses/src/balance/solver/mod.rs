//! Small dense solvers on the `T × T` Gram matrix, written once and shared by
//! the gradient-manipulation balancers.
//!
//! All of them work in `f64` on a Gram matrix `G = J Jᵀ` that is first divided
//! by its mean diagonal ([`normalized`]); the problems solved here are
//! invariant to that scale (or the result is un-scaled explicitly), and the
//! normalisation makes absolute tolerances meaningful whatever the size of the
//! gradients.
//!
//! * [`box_qp`]: exact active-set solver of `min ½xᵀHx + cᵀx` s.t. `x ≥ l`
//!   (optionally `Σx = 1`), the workhorse below.
//! * [`min_norm`]: the min-norm point of the convex hull of the gradients
//!   (MGDA; Désidéri 2012, Sener & Koltun 2018): two-task closed form,
//!   Frank–Wolfe, and the exact QP.
//! * [`dual_cone`]: projection of `Jᵀu` onto the dual cone `{y : Jy ≥ 0}`
//!   through its weights (UPGrad; Quinton & Rey 2024).
//! * [`cagrad_dual`]: the dual of CAGrad's conflict-averse problem
//!   (Liu et al. 2021).
//! * [`nash_bargaining`]: the Nash bargaining solution `Gα = 1/α`
//!   (Navon et al. 2022) by damped Newton.
//! * [`simplex`]: Euclidean projection onto the probability simplex and
//!   the softmax map into it (MoDo, SDMGrad, MoCo, ExcessMTL).
//! * [`spectral`]: sorted symmetric eigendecomposition, numerical rank and
//!   pseudo-inverse solves (IMTL-G, Aligned-MTL, ConFIG).

pub mod box_qp;
pub mod cagrad_dual;
pub mod dual_cone;
pub mod min_norm;
pub mod nash_bargaining;
pub mod simplex;
pub mod spectral;

use nalgebra::DMatrix;

/// `G / s` with `s = trace(G)/T`, and `s`. A Gram matrix with a zero (or
/// non-finite-free but vanishing) diagonal returns `s = 0` and `G` unchanged:
/// every gradient is zero and callers treat that case on its own.
pub fn normalized(gram: &DMatrix<f64>) -> (DMatrix<f64>, f64) {
    let tasks = gram.nrows().max(1);
    let scale = gram.trace() / tasks as f64;
    if scale > 0.0 && scale.is_finite() {
        (gram / scale, scale)
    } else {
        (gram.clone(), 0.0)
    }
}
