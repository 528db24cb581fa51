//! [`TaskEmbeddings`]: a few coordinates per task, from the directions in
//! which the tasks pull the shared parameters.
//!
//! Over an epoch, each sampled step adds every task's shared-parameter
//! gradient scaled to unit length; the mean of those unit vectors is the
//! task's direction for the epoch (shorter when the task's gradient turns
//! from step to step). The directions are centred and projected onto their
//! principal components (an eigendecomposition of the `T x T` Gram matrix,
//! so the cost does not grow with the number of parameters beyond the dot
//! products), giving at most [`EMBEDDING_DIMS`] coordinates per task. Tasks
//! whose gradients agree land near each other; distances are those between
//! the directions, up to the dropped components.

use serde::{Deserialize, Serialize};

/// The most coordinates kept per task.
pub const EMBEDDING_DIMS: usize = 3;

/// Coordinates of every task from the gradients of one epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskEmbeddings {
    /// The epoch (from 1) whose gradients they come from.
    pub epoch: usize,
    /// One row of coordinates per task, every row of the same length.
    pub coords: Vec<Vec<f64>>,
    /// The share of the directions' spread each coordinate carries (sums to
    /// at most 1).
    pub explained: Vec<f64>,
}

impl TaskEmbeddings {
    /// Principal-component coordinates of `directions` (one vector per task,
    /// all of the same length), labelled with `epoch`. Signs are fixed so
    /// that each component's largest entry is positive, so the result is
    /// deterministic.
    pub fn from_directions(directions: &[Vec<f64>], epoch: usize) -> TaskEmbeddings {
        let t = directions.len();
        let dims = EMBEDDING_DIMS.min(t.saturating_sub(1)).max(1);
        let width = directions.first().map_or(0, Vec::len);
        let mean: Vec<f64> = (0..width)
            .map(|k| directions.iter().map(|d| d[k]).sum::<f64>() / t.max(1) as f64)
            .collect();
        let centred: Vec<Vec<f64>> = directions
            .iter()
            .map(|d| d.iter().zip(&mean).map(|(a, m)| a - m).collect())
            .collect();
        let mut gram = vec![0.0f64; t * t];
        for i in 0..t {
            for j in i..t {
                let dot: f64 = centred[i].iter().zip(&centred[j]).map(|(a, b)| a * b).sum();
                gram[i * t + j] = dot;
                gram[j * t + i] = dot;
            }
        }
        let total: f64 = (0..t).map(|i| gram[i * t + i]).sum();
        let (values, vectors) = symmetric_eigen(&gram, t);
        let mut coords = vec![vec![0.0; dims]; t];
        let mut explained = vec![0.0; dims];
        for (d, &lambda) in values.iter().enumerate().take(dims) {
            // Components below rounding noise stay at zero.
            if lambda <= 1e-12 * total || lambda <= 0.0 {
                continue;
            }
            let v: Vec<f64> = (0..t).map(|i| vectors[i * t + d]).collect();
            let lead = v
                .iter()
                .copied()
                .fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
            let sign = if lead < 0.0 { -1.0 } else { 1.0 };
            for (i, row) in coords.iter_mut().enumerate() {
                row[d] = sign * v[i] * lambda.sqrt();
            }
            explained[d] = if total > 0.0 { lambda / total } else { 0.0 };
        }
        TaskEmbeddings {
            epoch,
            coords,
            explained,
        }
    }

    /// The number of coordinates per task.
    pub fn dims(&self) -> usize {
        self.coords.first().map_or(0, Vec::len)
    }

    /// The Euclidean distance between the embeddings of tasks `a` and `b`.
    pub fn distance(&self, a: usize, b: usize) -> f64 {
        self.coords[a]
            .iter()
            .zip(&self.coords[b])
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt()
    }
}

/// Eigenvalues (descending) and eigenvectors (column `k` of the row-major
/// `n x n` result goes with value `k`) of the symmetric row-major matrix `a`,
/// by cyclic Jacobi rotations in a fixed order.
fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let scale: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum::<f64>()
            .sqrt();
        if off <= 1e-15 * scale || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let akp = a[k * n + p];
                    let akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let apk = a[p * n + k];
                    let aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let vkp = v[k * n + p];
                    let vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&x, &y| a[y * n + y].total_cmp(&a[x * n + x]).then(x.cmp(&y)));
    let values: Vec<f64> = order.iter().map(|&k| a[k * n + k]).collect();
    let mut vectors = vec![0.0f64; n * n];
    for (col, &k) in order.iter().enumerate() {
        for i in 0..n {
            vectors[i * n + col] = v[i * n + k];
        }
    }
    (values, vectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_reconstructs_a_symmetric_matrix() {
        let n = 4;
        let a: Vec<f64> = (0..n * n)
            .map(|k| {
                let (i, j) = (k / n, k % n);
                ((i + 1) * (j + 1)) as f64 + if i == j { 3.0 } else { 0.5 }
            })
            .collect();
        let (values, vectors) = symmetric_eigen(&a, n);
        assert!(values.windows(2).all(|w| w[0] >= w[1]));
        for i in 0..n {
            for j in 0..n {
                let r: f64 = (0..n)
                    .map(|k| vectors[i * n + k] * values[k] * vectors[j * n + k])
                    .sum();
                assert!((r - a[i * n + j]).abs() < 1e-9, "({i},{j}) {r}");
            }
        }
    }

    #[test]
    fn two_directions_give_two_clusters() {
        let dirs = vec![
            vec![1.0, 0.1, 0.0],
            vec![0.9, 0.0, 0.1],
            vec![-1.0, 0.0, 0.0],
            vec![-0.9, 0.1, 0.0],
        ];
        let e = TaskEmbeddings::from_directions(&dirs, 1);
        assert_eq!(e.dims(), 3);
        assert!(e.distance(0, 1) < e.distance(0, 2));
        assert!(e.distance(2, 3) < e.distance(1, 3));
        assert!(e.explained[0] > 0.9, "{:?}", e.explained);
        // Distances are kept (three components span the centred points).
        let d = |a: &[f64], b: &[f64]| -> f64 {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        assert!((e.distance(0, 3) - d(&dirs[0], &dirs[3])).abs() < 1e-9);
    }

    #[test]
    fn one_task_has_one_zero_coordinate() {
        let e = TaskEmbeddings::from_directions(&[vec![1.0, 2.0]], 2);
        assert_eq!(e.coords, vec![vec![0.0]]);
    }
}
