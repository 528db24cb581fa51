//! Symmetric eigendecomposition of a Gram matrix, sorted by decreasing
//! eigenvalue, with a numerical rank and pseudo-inverse solves.
//!
//! Used by IMTL-G (`v = G⁺n`), ConFIG (`y = C⁺1` on the cosine matrix) and
//! Aligned-MTL (`B = √λ_s V_r Λ_r^{-1/2} V_rᵀ`).

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
