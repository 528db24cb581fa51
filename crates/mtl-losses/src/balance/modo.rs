//! MoDo, multi-objective gradient with double sampling (Chen, Fernando,
//! Ying & Chen 2024, "Three-Way Trade-Off in Multi-Objective Learning:
//! Optimization, Generalization and Conflict-Avoidance", JMLR; torchjd
//! `MoDoWeighting`, LibMTL `MoDo`).
//!
//! MGDA's weights follow a stochastic projected-gradient step whose
//! gradient `J_1 J_2ᵀ λ` is an unbiased estimate of `G λ` because the two
//! Jacobians come from two independent mini-batches:
//!
//! ```text
//! λ ← Π_Δ(λ − γ (J_1 J_2ᵀ λ + ρ λ)),   λ₀ = 1/T,
//! d = ½ (J_1 + J_2)ᵀ λ,
//! ```
//!
//! with `Π_Δ` the Euclidean projection onto the simplex. The update uses the
//! mean of both batches (torchjd's two-batch form, eq. 2.9b); LibMTL and
//! the official code's `three_grads` draw a third batch for `d`. The
//! returned weights are the updated `λ` (torchjd's).
//!
//! * **Scale.** Mean scale: `λ` lies on the simplex.
//! * **Defaults.** `γ = 0.1`, `ρ = 0.1` (torchjd; LibMTL uses `γ = 10⁻³`).

use nalgebra::DMatrix;

use super::solver::simplex;

/// One MoDo step `Π_Δ(λ − γ(Cλ + ρλ))` with `C = J_1 J_2ᵀ`.
pub fn modo_step(lambda: &[f64], cross: &DMatrix<f64>, gamma: f64, rho: f64) -> Vec<f64> {
    let t = lambda.len();
    let y: Vec<f64> = (0..t)
        .map(|i| {
            let g: f64 = (0..t).map(|j| cross[(i, j)] * lambda[j]).sum::<f64>() + rho * lambda[i];
            lambda[i] - gamma * g
        })
        .collect();
    simplex::project(&y)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: f64 = 1e-12;

    #[test]
    fn ground_truth() {
        // C = [[2, 0], [0, 0]], λ = (1/2, 1/2), γ = 0.5, ρ = 0:
        // y = (1/2 − 0.5, 1/2) = (0, 1/2) ⇒ Π_Δ = (1/4, 3/4).
        let c = DMatrix::from_row_slice(2, 2, &[2.0, 0.0, 0.0, 0.0]);
        let l = modo_step(&[0.5, 0.5], &c, 0.5, 0.0);
        assert!(
            (l[0] - 0.25).abs() < TOL && (l[1] - 0.75).abs() < TOL,
            "{l:?}"
        );
        // ρ shrinks both equally and changes nothing after the projection.
        let l = modo_step(&[0.5, 0.5], &DMatrix::zeros(2, 2), 0.5, 1.0);
        assert!(
            (l[0] - 0.5).abs() < TOL && (l[1] - 0.5).abs() < TOL,
            "{l:?}"
        );
    }
}
