//! MoCo, stochastic multi-objective descent with tracked gradients and a
//! corrected min-norm weighting (Fernando, Shen, Liu, Chaudhury, Murugesan &
//! Chen 2023, "Mitigating Gradient Bias in Multi-objective Learning: A
//! Provably Convergent Approach", ICLR; LibMTL `MoCo`).
//!
//! At step `k = 1, 2, …` every task's gradient is normalised and scaled by
//! its loss, `ĝ_t = L_t g_t/(‖g_t‖ + 10⁻⁸)`; a tracking variable follows it,
//! and the weights take a projected-gradient step on the min-norm objective
//! of the tracked gradients, through a softmax (LibMTL's form):
//!
//! ```text
//! y_t ← y_t − β_k (y_t − ĝ_t),            β_k = β / k^{σ_β},
//! λ  ← softmax(λ − γ_k (Y Yᵀ + ρ I) λ),    γ_k = γ / k^{σ_γ},
//! d  = Yᵀ λ,
//! ```
//!
//! with `y = 0` and `λ = 1/T` at the start. Defaults are LibMTL's
//! (`β = 0.5`, `σ_β = 0.5`, `γ = 0.1`, `σ_γ = 0.5`, `ρ = 0`).
//!
//! * **Scale.** `λ` lies on the simplex (mean scale); `d` is a combination
//!   of loss-scaled unit gradients, not of the raw rows.
//! * **State.** `Y` is one `f32` per gradient entry (`T × P`), saved with
//!   the checkpoint; the method needs the full rows (no column shards).

/// The norm offset of the normalisation (LibMTL's `1e-8`).
pub const NORM_EPS: f64 = 1e-8;

/// One tracking step `y ← y − rate (y − L g/(‖g‖ + 10⁻⁸))` for one task.
pub fn track(y: &mut [f32], g: &[f32], loss: f32, rate: f64) {
    let norm = g
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt();
    let factor = f64::from(loss) / (norm + NORM_EPS);
    for (yv, &gv) in y.iter_mut().zip(g) {
        let target = factor * f64::from(gv);
        let current = f64::from(*yv);
        *yv = (current - rate * (current - target)) as f32;
    }
}

/// One weight step `softmax(λ − rate (Y Yᵀ + ρ I) λ)` from the Gram `YYᵀ`
/// (row-major `T × T`).
pub fn weight_step(
    lambda: &[f64],
    y_gram: &nalgebra::DMatrix<f64>,
    rate: f64,
    rho: f64,
) -> Vec<f64> {
    let t = lambda.len();
    let z: Vec<f64> = (0..t)
        .map(|i| {
            let g: f64 = (0..t).map(|j| y_gram[(i, j)] * lambda[j]).sum::<f64>() + rho * lambda[i];
            lambda[i] - rate * g
        })
        .collect();
    super::solver::simplex::softmax(&z)
}

/// The decayed rate `base / k^decay` at step `k ≥ 1`.
pub fn decayed(base: f64, decay: f64, k: u64) -> f64 {
    base / (k as f64).powf(decay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DMatrix;

    /// A handful of `f64` operations rounded to `f32`.
    const TOL: f64 = 1e-6;

    #[test]
    fn tracking_ground_truth() {
        // g = (3, 4), ‖g‖ = 5, L = 2: ĝ = (1.2, 1.6); from y = 0 with rate 0.5: (0.6, 0.8).
        let mut y = vec![0.0f32; 2];
        track(&mut y, &[3.0, 4.0], 2.0, 0.5);
        assert!((f64::from(y[0]) - 0.6).abs() < TOL && (f64::from(y[1]) - 0.8).abs() < TOL);
        // Rate 1 jumps to ĝ.
        track(&mut y, &[0.0, -2.0], 1.0, 1.0);
        assert!(
            f64::from(y[0]).abs() < TOL && (f64::from(y[1]) + 1.0).abs() < TOL,
            "{y:?}"
        );
    }

    #[test]
    fn weight_step_ground_truth() {
        // YYᵀ = diag(1, 0), λ = (1/2, 1/2), rate 1, ρ = 0:
        // z = (1/2 − 1/2, 1/2) ⇒ softmax(0, 1/2).
        let g = DMatrix::from_row_slice(2, 2, &[1.0, 0.0, 0.0, 0.0]);
        let w = weight_step(&[0.5, 0.5], &g, 1.0, 0.0);
        let e = 0.5f64.exp();
        assert!((w[0] - 1.0 / (1.0 + e)).abs() < 1e-12 && (w[1] - e / (1.0 + e)).abs() < 1e-12);
        assert!((decayed(0.5, 0.5, 4) - 0.25).abs() < 1e-15);
    }
}
