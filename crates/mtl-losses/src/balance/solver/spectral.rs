//! Symmetric eigendecomposition of a Gram matrix, sorted by decreasing
//! eigenvalue, with a numerical rank and pseudo-inverse solves.
//!
//! Used by IMTL-G and ConFIG (`N⁻¹C⁺1` on the cosine matrix, through
//! [`equal_projection`]) and Aligned-MTL (`B = √λ_s V_r Λ_r^{-1/2} V_rᵀ`).

use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// Relative rank cut of Aligned-MTL (Senushkin et al. 2023): eigenvalues
/// `λ ≤ λ_max · T · ε_f32` are dropped. The Gram is built from `f32`
/// gradients, so smaller eigenvalues are rounding noise of the inputs.
pub const F32_EPSILON: f64 = f32::EPSILON as f64;

/// A symmetric eigendecomposition with eigenvalues in decreasing order.
#[derive(Debug, Clone)]
pub struct SortedEigen {
    /// Eigenvalues `λ_1 ≥ λ_2 ≥ … ≥ λ_T`.
    pub values: DVector<f64>,
    /// Orthonormal eigenvectors, column `k` for `values[k]`.
    pub vectors: DMatrix<f64>,
}

impl SortedEigen {
    /// Decomposes the symmetric matrix `m`. Eigenvalues of equal size keep
    /// nalgebra's order (ties make the basis, not the projectors, arbitrary).
    pub fn new(m: &DMatrix<f64>) -> Self {
        let eig = SymmetricEigen::new(m.clone());
        let n = m.nrows();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
        let values = DVector::from_fn(n, |k, _| eig.eigenvalues[order[k]]);
        let vectors = DMatrix::from_fn(n, n, |i, k| eig.eigenvectors[(i, order[k])]);
        SortedEigen { values, vectors }
    }

    /// Number of eigenvalues above `λ_max · relative` (0 for a zero matrix).
    pub fn rank(&self, relative: f64) -> usize {
        let top = self.values.iter().copied().fold(0.0f64, f64::max);
        if top <= 0.0 {
            return 0;
        }
        self.values.iter().filter(|&&v| v > top * relative).count()
    }

    /// `M⁺ b` restricted to the leading `rank` eigenpairs.
    pub fn pinv_solve(&self, rank: usize, b: &DVector<f64>) -> DVector<f64> {
        let mut x = DVector::zeros(b.len());
        for k in 0..rank {
            let v = self.vectors.column(k);
            x += v * (v.dot(b) / self.values[k]);
        }
        x
    }
}

/// The rank cut used for pseudo-inverses of a `T × T` Gram of `f32`
/// gradients: `T · ε_f32` relative to the largest eigenvalue.
pub fn gram_rank_tolerance(tasks: usize) -> f64 {
    tasks as f64 * F32_EPSILON
}

/// Below this `unit_norm2 / T` ([`EqualProjection::unit_norm2`], where one
/// task gives 1) the equal-projection direction is rounding noise: the unit
/// gradients cancel.
pub const DEGENERATE_UNIT_NORM2: f64 = 1e-12;

/// Weights of the direction with equal projections on the unit gradients.
///
/// With `N = diag‖g_i‖` and the cosine matrix `C = N⁻¹GN⁻¹`, `y = C⁺1` and
/// `v = N⁻¹y` give `u_i·(Jᵀv) = (Cy)_i = 1` for every `i` when the non-zero
/// gradients are independent. The pseudo-inverse is cut on `C`, whose
/// spectrum does not depend on the per-task scales, so a task with a small
/// gradient keeps its place (a cut on `G` would drop it as noise). Zero rows
/// get weight 0.
#[derive(Debug, Clone, PartialEq)]
pub struct EqualProjection {
    /// `v = N⁻¹ C⁺ 1` (the weights on the raw rows, up to scale).
    pub weights: DVector<f64>,
    /// `yᵀCy = ‖Σ_i y_i u_i‖²`, the squared norm of the direction in
    /// unit-gradient terms (`T'` for `T'` orthogonal non-zero gradients);
    /// close to 0 when the unit gradients cancel and no such direction exists.
    pub unit_norm2: f64,
}

/// [`EqualProjection`] of the Gram matrix `gram`.
pub fn equal_projection(gram: &DMatrix<f64>) -> EqualProjection {
    let t = gram.nrows();
    let norms: Vec<f64> = (0..t).map(|i| gram[(i, i)].max(0.0).sqrt()).collect();
    let inv = |i: usize| if norms[i] > 0.0 { 1.0 / norms[i] } else { 0.0 };
    let cosine = DMatrix::from_fn(t, t, |i, j| gram[(i, j)] * inv(i) * inv(j));
    let eig = SortedEigen::new(&cosine);
    let ones = DVector::from_fn(t, |i, _| if norms[i] > 0.0 { 1.0 } else { 0.0 });
    let y = eig.pinv_solve(eig.rank(gram_rank_tolerance(t)), &ones);
    EqualProjection {
        unit_norm2: y.dot(&(&cosine * &y)),
        weights: DVector::from_fn(t, |i, _| y[i] * inv(i)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Eigen-solves of 3 × 3 well-conditioned matrices are exact to ~1e-15.
    const EIGEN_TOL: f64 = 1e-12;

    #[test]
    fn sorted_and_reconstructs() {
        let m = DMatrix::from_row_slice(3, 3, &[1.0, 1.0, 0.0, 1.0, 5.0, 2.0, 0.0, 2.0, 10.0]);
        let e = SortedEigen::new(&m);
        // AL-3 eigenvalues of J3's Gram.
        for (v, expect) in e.values.iter().zip([10.713006, 4.548143, 0.738851]) {
            assert!((v - expect).abs() < 1e-6);
        }
        let back = &e.vectors * DMatrix::from_diagonal(&e.values) * e.vectors.transpose();
        assert!((back - &m).amax() < EIGEN_TOL);
        let b = DVector::from_vec(vec![1.0, 2.0, 3.0]);
        let x = e.pinv_solve(3, &b);
        assert!((&m * x - b).amax() < EIGEN_TOL);
    }

    #[test]
    fn rank_of_a_singular_gram() {
        // Rows (1,0),(2,0): Gram [[1,2],[2,4]] has rank 1 (AL-4).
        let m = DMatrix::from_row_slice(2, 2, &[1.0, 2.0, 2.0, 4.0]);
        let e = SortedEigen::new(&m);
        assert_eq!(e.rank(gram_rank_tolerance(2)), 1);
        assert_eq!(SortedEigen::new(&DMatrix::zeros(2, 2)).rank(1e-7), 0);
    }
}
