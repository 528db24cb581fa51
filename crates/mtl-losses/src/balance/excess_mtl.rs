//! ExcessMTL, task weights driven by excess-risk estimates (He, Zhou, Zhao &
//! Li 2024, "Robust Multi-Task Learning with Excess Risks", ICML; torchjd
//! `ExcessMTL`, LibMTL `ExcessMTL`).
//!
//! Each step, with `S_t ← S_t + g_t²` the running sum of squared gradients
//! (element-wise, an AdaGrad estimate of the diagonal Hessian, eq. 7), the
//! excess risk of task `t` is approximated by (eq. 6)
//!
//! ```text
//! e_t = Σ_k g_tk² / √(S_tk + 10⁻⁷),
//! ```
//!
//! divided by a baseline `e_t⁰`, and the weights take an exponentiated
//! gradient step (eq. 9) on the simplex:
//!
//! ```text
//! w ← softmax(log w + η e/e⁰),   w₀ = 1/T.
//! ```
//!
//! As in torchjd: with `n_warmup_steps = 0` the first step's `e` is the
//! baseline and that step uses `e` undivided (the official code's
//! behaviour); with `n_warmup_steps = N > 0` the first `N` steps keep
//! `w = 1/T` and average `e`, which becomes the baseline (the paper's
//! appendix C.1), and later steps use `e/(e⁰ + 10⁻⁷)`. The returned weights
//! are those after the step's update (torchjd's).
//!
//! * **Scale.** Mean scale: the weights lie on the simplex (`1/T` at the
//!   start). LibMTL's weights sum to `T` (it starts from 1) and its default
//!   `η` is `0.01`; torchjd's default `η = 1` is kept here.
//! * **State.** `S` is one `f32` per gradient entry (`T × P`), saved with
//!   the checkpoint; the method needs the full rows (no column shards).

/// The offset under the square root of the excess-risk proxy (torchjd's and
/// the official code's `1e-7`).
pub const HESSIAN_EPS: f64 = 1e-7;

/// Adds `row²` to `sq_sum` element-wise and returns the excess-risk proxy
/// `Σ_k g_k² / √(S_k + 10⁻⁷)` with the updated `S`.
pub fn excess_risk(row: &[f32], sq_sum: &mut [f32]) -> f64 {
    let mut e = 0.0f64;
    for (&g, s) in row.iter().zip(sq_sum.iter_mut()) {
        let g2 = f64::from(g) * f64::from(g);
        *s += (g2) as f32;
        e += g2 / (f64::from(*s) + HESSIAN_EPS).sqrt();
    }
    e
}

/// The exponentiated-gradient step `softmax(log w + η r)`.
pub fn exponentiated_step(weights: &[f64], risks: &[f64], step_size: f64) -> Vec<f64> {
    let z: Vec<f64> = weights
        .iter()
        .zip(risks)
        .map(|(&w, &r)| w.ln() + step_size * r)
        .collect();
    super::solver::simplex::softmax(&z)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few `f64` operations on `f32` inputs.
    const TOL: f64 = 1e-9;

    #[test]
    fn excess_risk_ground_truth() {
        // First step: S = g², e = Σ g²/√(g² + 1e-7) ≈ Σ |g|.
        let mut s = vec![0.0f32; 2];
        let e = excess_risk(&[3.0, -4.0], &mut s);
        let expect = 9.0 / (9.0f64 + 1e-7).sqrt() + 16.0 / (16.0f64 + 1e-7).sqrt();
        assert!((e - expect).abs() < TOL, "{e}");
        assert_eq!(s, vec![9.0, 16.0]);
        // Second step with the same row: S = 2g², e = Σ g²/√(2g²) = Σ|g|/√2.
        let e = excess_risk(&[3.0, -4.0], &mut s);
        let expect = 9.0 / (18.0f64 + 1e-7).sqrt() + 16.0 / (32.0f64 + 1e-7).sqrt();
        assert!((e - expect).abs() < TOL, "{e}");
    }

    #[test]
    fn exponentiated_step_ground_truth() {
        // From uniform weights, r = (0, ln 3): w ∝ (1, 3).
        let w = exponentiated_step(&[0.5, 0.5], &[0.0, 3.0f64.ln()], 1.0);
        assert!(
            (w[0] - 0.25).abs() < TOL && (w[1] - 0.75).abs() < TOL,
            "{w:?}"
        );
        // Equal risks leave the weights unchanged.
        let w = exponentiated_step(&[0.2, 0.8], &[5.0, 5.0], 0.3);
        assert!(
            (w[0] - 0.2).abs() < TOL && (w[1] - 0.8).abs() < TOL,
            "{w:?}"
        );
    }
}
