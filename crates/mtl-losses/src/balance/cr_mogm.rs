//! CR-MOGM, a modifier that smooths the weights of any other method with an
//! exponential moving average (Zhou, Zhang, Jiang, Shi & Zhou 2022, "On the
//! Convergence of Stochastic Multi-Objective Gradient Manipulation and
//! Beyond", NeurIPS; torchjd `CRMOGMWeighting`).
//!
//! With `λ̂_k` the weights of the inner method at step `k`,
//!
//! ```text
//! λ_k = α λ_{k−1} + (1 − α) λ̂_k,   λ_0 = λ̂_1,
//! d = Jᵀ λ_k,
//! ```
//!
//! so the first output equals the inner method's. `α = 0` returns the inner
//! weights unchanged, `α = 1` freezes them at the first step's (torchjd's
//! default `α = 0.9`). The smoothing makes stochastic MGDA-like methods
//! convergent (the paper's Corollary 1 lets `α_k → 1` with the learning
//! rate; here `α` is fixed).
//!
//! The direction is always `Jᵀλ_k`, so for an inner method whose direction
//! is not the combination of the rows by its reported weights (GradDrop,
//! TrimmedMean, MoCo, DB-MTL) the modifier changes more than the weights.
//! The weights keep the inner method's scale.

/// `α·prev + (1 − α)·hat`, or `hat` when there is no previous value.
pub fn smooth(prev: Option<&[f64]>, hat: &[f64], alpha: f64) -> Vec<f64> {
    match prev {
        Some(p) if p.len() == hat.len() => p
            .iter()
            .zip(hat)
            .map(|(p, h)| alpha * p + (1.0 - alpha) * h)
            .collect(),
        _ => hat.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ground_truth() {
        assert_eq!(smooth(None, &[0.2, 0.8], 0.9), vec![0.2, 0.8]);
        let s = smooth(Some(&[0.2, 0.8]), &[1.0, 0.0], 0.75);
        assert!(
            (s[0] - 0.4).abs() < 1e-15 && (s[1] - 0.6).abs() < 1e-15,
            "{s:?}"
        );
        assert_eq!(smooth(Some(&[0.2, 0.8]), &[1.0, 0.0], 0.0), vec![1.0, 0.0]);
        assert_eq!(smooth(Some(&[0.2, 0.8]), &[1.0, 0.0], 1.0), vec![0.2, 0.8]);
    }
}
