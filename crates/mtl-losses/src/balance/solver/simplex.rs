//! The probability simplex `Δ = {x ∈ R^T : x ≥ 0, Σx = 1}`: Euclidean
//! projection onto it (MoDo, SDMGrad) and the softmax map into it (MoCo,
//! ExcessMTL), both in `f64`.

/// The Euclidean projection of `y` onto the probability simplex,
/// `argmin_{x ∈ Δ} ‖x − y‖`, by sorting (Held, Wolfe & Crowder 1974; Duchi
/// et al. 2008): with `u` sorted in decreasing order, `ρ` the largest `k`
/// with `u_k − (Σ_{j≤k} u_j − 1)/k > 0` and `θ = (Σ_{j≤ρ} u_j − 1)/ρ`,
/// `x_i = max(y_i − θ, 0)`. An empty `y` gives an empty result.
pub fn project(y: &[f64]) -> Vec<f64> {
    if y.is_empty() {
        return Vec::new();
    }
    let mut u = y.to_vec();
    u.sort_by(|a, b| b.total_cmp(a));
    let mut cumulative = 0.0;
    let mut theta = 0.0;
    for (k, &uk) in u.iter().enumerate() {
        cumulative += uk;
        let candidate = (cumulative - 1.0) / (k + 1) as f64;
        if uk - candidate > 0.0 {
            theta = candidate;
        }
    }
    y.iter().map(|&v| (v - theta).max(0.0)).collect()
}

/// `softmax(z)_i = exp(z_i − max z) / Σ_j exp(z_j − max z)`, shifted by the
/// largest entry so that no exponent overflows.
pub fn softmax(z: &[f64]) -> Vec<f64> {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|&v| (v - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sums and differences of a handful of `f64` values.
    const TOL: f64 = 1e-12;

    #[test]
    fn projection_ground_truths() {
        // A point of the simplex is its own projection.
        assert_eq!(project(&[0.2, 0.3, 0.5]), vec![0.2, 0.3, 0.5]);
        // (1, 1) → (1/2, 1/2): subtract θ = 1/2.
        let p = project(&[1.0, 1.0]);
        assert!((p[0] - 0.5).abs() < TOL && (p[1] - 0.5).abs() < TOL);
        // (2, 0, −1): θ = 1, only the first stays positive.
        assert_eq!(project(&[2.0, 0.0, -1.0]), vec![1.0, 0.0, 0.0]);
        // (0.5, 0.4, −0.3): θ = (0.9 − 1)/2 = −0.05 → (0.55, 0.45, 0).
        let p = project(&[0.5, 0.4, -0.3]);
        for (a, b) in p.iter().zip([0.55, 0.45, 0.0]) {
            assert!((a - b).abs() < TOL, "{p:?}");
        }
        assert!(project(&[]).is_empty());
    }

    #[test]
    fn projection_is_the_nearest_point_of_the_simplex() {
        // Optimality: (y − x)·(z − x) ≤ 0 for every vertex z of the simplex.
        let y = [0.7, -1.2, 3.1, 0.05, 2.9];
        let x = project(&y);
        assert!((x.iter().sum::<f64>() - 1.0).abs() < TOL);
        assert!(x.iter().all(|&v| v >= 0.0));
        for vertex in 0..y.len() {
            let inner: f64 = (0..y.len())
                .map(|i| (y[i] - x[i]) * (f64::from(u8::from(i == vertex)) - x[i]))
                .sum();
            assert!(inner <= TOL, "vertex {vertex}: {inner}");
        }
    }

    #[test]
    fn softmax_is_shift_invariant_and_does_not_overflow() {
        let a = softmax(&[1.0, 2.0, 3.0]);
        let b = softmax(&[1001.0, 1002.0, 1003.0]);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < TOL);
        }
        let e = [1.0f64.exp(), 2.0f64.exp(), 3.0f64.exp()];
        let s: f64 = e.iter().sum();
        for (x, y) in a.iter().zip(e) {
            assert!((x - y / s).abs() < TOL);
        }
    }
}
