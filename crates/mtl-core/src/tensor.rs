//! [`Tensor`]: a dense, row-major, contiguous f32 array of any rank.

use rand::Rng;
use rand_distr::{Distribution, Normal, Uniform};
use rayon::prelude::*;

use crate::error::{CoreError, Result};
use crate::kernels;

/// Element count above which element-wise passes run on the rayon pool.
///
/// Below it the cost of waking threads exceeds the work: measured on a 2-core
/// machine, a `relu` over 32 768 floats takes about 5 µs single-threaded, the
/// same order as a rayon fork-join.
pub const PARALLEL_ELEMENTS: usize = 1 << 15;

/// A dense f32 array, row-major and contiguous, of any rank.
///
/// A rank-0 tensor (shape `[]`) holds one scalar.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Self::filled(shape, 0.0)
    }

    /// A tensor with every element equal to `value`.
    pub fn filled(shape: &[usize], value: f32) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: vec![value; numel(shape)],
        }
    }

    /// A rank-0 tensor holding `value`.
    pub fn scalar(value: f32) -> Self {
        Tensor {
            shape: Vec::new(),
            data: vec![value],
        }
    }

    /// Wraps `data` with `shape`; fails when the element counts differ.
    ///
    /// ```
    /// use mtl_core::Tensor;
    /// let t = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
    /// assert_eq!(t.shape(), &[2, 3]);
    /// assert!(Tensor::from_vec(vec![1.0; 5], &[2, 3]).is_err());
    /// ```
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Result<Self> {
        if data.len() != numel(shape) {
            return Err(CoreError::ElementCount {
                op: "from_vec",
                len: data.len(),
                shape: shape.to_vec(),
            });
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            data,
        })
    }

    /// Normal samples with the given mean and standard deviation, drawn from `rng`.
    pub fn randn<R: Rng + ?Sized>(
        shape: &[usize],
        mean: f32,
        std: f32,
        rng: &mut R,
    ) -> Result<Self> {
        let normal = Normal::new(mean, std).map_err(|e| CoreError::InvalidArgument {
            what: "randn std".into(),
            reason: e.to_string(),
        })?;
        let data = (0..numel(shape)).map(|_| normal.sample(rng)).collect();
        Ok(Tensor {
            shape: shape.to_vec(),
            data,
        })
    }

    /// Uniform samples in `[low, high)`, drawn from `rng`.
    pub fn rand_uniform<R: Rng + ?Sized>(
        shape: &[usize],
        low: f32,
        high: f32,
        rng: &mut R,
    ) -> Result<Self> {
        if low.partial_cmp(&high) != Some(std::cmp::Ordering::Less) {
            return Err(CoreError::InvalidArgument {
                what: "rand_uniform bounds".into(),
                reason: format!("low {low} must be below high {high}"),
            });
        }
        let uniform = Uniform::new(low, high);
        let data = (0..numel(shape)).map(|_| uniform.sample(rng)).collect();
        Ok(Tensor {
            shape: shape.to_vec(),
            data,
        })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The rank (number of axes).
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The elements in row-major order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The elements in row-major order, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the tensor and returns its elements.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        if self.data.len() != 1 {
            return Err(CoreError::InvalidShape {
                op: "item",
                shape: self.shape.clone(),
                reason: "expected exactly one element".into(),
            });
        }
        Ok(self.data[0])
    }

    /// The shape read as a matrix `[rows, cols]`: rank 2 as is, rank 1 as one row,
    /// higher ranks as `[first axis, product of the rest]`.
    pub fn dims2(&self) -> Result<(usize, usize)> {
        match self.shape.as_slice() {
            [] => Ok((1, 1)),
            [n] => Ok((1, *n)),
            [r, rest @ ..] => Ok((*r, numel(rest))),
        }
    }

    /// The same elements with a new shape of equal element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.data.len() {
            return Err(CoreError::ShapeMismatch {
                op: "reshape",
                lhs: self.shape.clone(),
                rhs: shape.to_vec(),
            });
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            data: self.data.clone(),
        })
    }

    /// Changes the shape in place (element count must be kept).
    pub fn reshape_in_place(&mut self, shape: &[usize]) -> Result<()> {
        if numel(shape) != self.data.len() {
            return Err(CoreError::ShapeMismatch {
                op: "reshape",
                lhs: self.shape.clone(),
                rhs: shape.to_vec(),
            });
        }
        self.shape = shape.to_vec();
        Ok(())
    }

    /// Rows `indices` of the first axis, in that order (a batch from a data set).
    pub fn gather_rows(&self, indices: &[usize]) -> Result<Tensor> {
        let rows = *self.shape.first().ok_or_else(|| CoreError::InvalidShape {
            op: "gather_rows",
            shape: self.shape.clone(),
            reason: "a scalar has no rows".into(),
        })?;
        let width = self.data.len() / rows.max(1);
        let mut data = Vec::with_capacity(indices.len() * width);
        for &i in indices {
            if i >= rows {
                return Err(CoreError::Index {
                    op: "gather_rows",
                    index: i,
                    len: rows,
                });
            }
            data.extend_from_slice(&self.data[i * width..(i + 1) * width]);
        }
        let mut shape = self.shape.clone();
        shape[0] = indices.len();
        Ok(Tensor { shape, data })
    }

    /// Applies `f` to every element.
    pub fn map(&self, f: impl Fn(f32) -> f32 + Sync) -> Tensor {
        self.map_into(f, vec![0.0; self.data.len()])
    }

    /// [`Tensor::map`] into `data`, a buffer of this tensor's length whose
    /// contents are overwritten.
    pub(crate) fn map_into(&self, f: impl Fn(f32) -> f32 + Sync, mut data: Vec<f32>) -> Tensor {
        data.resize(self.data.len(), 0.0);
        if data.len() >= PARALLEL_ELEMENTS {
            data.par_chunks_mut(PARALLEL_ELEMENTS / 4)
                .zip(self.data.par_chunks(PARALLEL_ELEMENTS / 4))
                .for_each(|(o, i)| o.iter_mut().zip(i).for_each(|(o, &x)| *o = f(x)));
        } else {
            data.iter_mut()
                .zip(&self.data)
                .for_each(|(o, &x)| *o = f(x));
        }
        Tensor {
            shape: self.shape.clone(),
            data,
        }
    }

    /// Combines two tensors of the same shape element by element.
    pub fn zip_map(
        &self,
        other: &Tensor,
        op: &'static str,
        f: impl Fn(f32, f32) -> f32 + Sync,
    ) -> Result<Tensor> {
        let mut out = self.clone();
        out.zip_assign(other, op, f)?;
        Ok(out)
    }

    /// [`Tensor::zip_map`] in place: `self[i] = f(self[i], other[i])`.
    pub(crate) fn zip_assign(
        &mut self,
        other: &Tensor,
        op: &'static str,
        f: impl Fn(f32, f32) -> f32 + Sync,
    ) -> Result<()> {
        if self.shape != other.shape {
            return Err(CoreError::ShapeMismatch {
                op,
                lhs: self.shape.clone(),
                rhs: other.shape.clone(),
            });
        }
        let apply =
            |o: &mut [f32], b: &[f32]| o.iter_mut().zip(b).for_each(|(o, &b)| *o = f(*o, b));
        if self.data.len() >= PARALLEL_ELEMENTS {
            let c = PARALLEL_ELEMENTS / 4;
            self.data
                .par_chunks_mut(c)
                .zip(other.data.par_chunks(c))
                .for_each(|(o, b)| apply(o, b));
        } else {
            apply(&mut self.data, &other.data);
        }
        Ok(())
    }

    /// Element-wise sum.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_map(other, "add", |a, b| a + b)
    }

    /// Element-wise difference.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_map(other, "sub", |a, b| a - b)
    }

    /// Element-wise product.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_map(other, "mul", |a, b| a * b)
    }

    /// Element-wise quotient.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_map(other, "div", |a, b| a / b)
    }

    /// Every element multiplied by `s`.
    pub fn scale(&self, s: f32) -> Tensor {
        self.map(|x| x * s)
    }

    /// Adds `other` into `self` in place (same shape).
    pub fn add_assign(&mut self, other: &Tensor) -> Result<()> {
        if self.shape != other.shape {
            return Err(CoreError::ShapeMismatch {
                op: "add_assign",
                lhs: self.shape.clone(),
                rhs: other.shape.clone(),
            });
        }
        for (a, &b) in self.data.iter_mut().zip(&other.data) {
            *a += b;
        }
        Ok(())
    }

    /// Adds the row vector `row` (length = last axis) to every row.
    pub fn add_row(&self, row: &Tensor) -> Result<Tensor> {
        self.add_row_into(row, Vec::new())
    }

    /// [`Tensor::add_row`] into `out`, whose contents are overwritten: one
    /// pass, split over rows on the rayon pool for large tensors.
    pub(crate) fn add_row_into(&self, row: &Tensor, mut out: Vec<f32>) -> Result<Tensor> {
        let cols = *self.shape.last().unwrap_or(&1);
        if row.len() != cols {
            return Err(CoreError::ShapeMismatch {
                op: "add_row",
                lhs: self.shape.clone(),
                rhs: row.shape.clone(),
            });
        }
        out.resize(self.data.len(), 0.0);
        let cols = cols.max(1);
        let add = |o: &mut [f32], x: &[f32]| {
            for (o_row, x_row) in o.chunks_mut(cols).zip(x.chunks(cols)) {
                for ((o, &x), &b) in o_row.iter_mut().zip(x_row).zip(&row.data) {
                    *o = x + b;
                }
            }
        };
        if out.len() >= PARALLEL_ELEMENTS {
            let chunk = (PARALLEL_ELEMENTS / 4).div_ceil(cols) * cols;
            out.par_chunks_mut(chunk)
                .zip(self.data.par_chunks(chunk))
                .for_each(|(o, x)| add(o, x));
        } else {
            add(&mut out, &self.data);
        }
        Ok(Tensor {
            shape: self.shape.clone(),
            data: out,
        })
    }

    /// Sum of all elements, accumulated in f64.
    pub fn sum(&self) -> f32 {
        self.data.iter().map(|&x| x as f64).sum::<f64>() as f32
    }

    /// Mean of all elements (0 for an empty tensor).
    pub fn mean(&self) -> f32 {
        if self.data.is_empty() {
            0.0
        } else {
            (self.data.iter().map(|&x| x as f64).sum::<f64>() / self.data.len() as f64) as f32
        }
    }

    /// Splits the shape around `axis` into `(outer, axis length, inner)`.
    pub(crate) fn axis_split(
        &self,
        op: &'static str,
        axis: usize,
    ) -> Result<(usize, usize, usize)> {
        if axis >= self.shape.len() {
            return Err(CoreError::Axis {
                op,
                axis,
                rank: self.shape.len(),
            });
        }
        let outer = numel(&self.shape[..axis]);
        let inner = numel(&self.shape[axis + 1..]);
        Ok((outer, self.shape[axis], inner))
    }

    /// Sum along `axis`; the axis is removed from the shape.
    pub fn sum_axis(&self, axis: usize) -> Result<Tensor> {
        let (outer, n, inner) = self.axis_split("sum_axis", axis)?;
        let mut out = vec![0.0f32; outer * inner];
        for o in 0..outer {
            let dst = &mut out[o * inner..(o + 1) * inner];
            for k in 0..n {
                let src = &self.data[(o * n + k) * inner..(o * n + k + 1) * inner];
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d += s;
                }
            }
        }
        let mut shape = self.shape.clone();
        shape.remove(axis);
        Ok(Tensor { shape, data: out })
    }

    /// Mean along `axis`; the axis is removed from the shape.
    pub fn mean_axis(&self, axis: usize) -> Result<Tensor> {
        let n = *self.shape.get(axis).ok_or(CoreError::Axis {
            op: "mean_axis",
            axis,
            rank: self.shape.len(),
        })?;
        Ok(self.sum_axis(axis)?.scale(1.0 / n.max(1) as f32))
    }

    /// Index of the largest element of each row (last axis); ties go to the first.
    pub fn argmax_rows(&self) -> Result<Vec<usize>> {
        let (rows, cols) = self.dims2()?;
        if cols == 0 {
            return Err(CoreError::InvalidShape {
                op: "argmax_rows",
                shape: self.shape.clone(),
                reason: "rows are empty".into(),
            });
        }
        let cols_last = *self.shape.last().unwrap_or(&1);
        let _ = rows;
        Ok(self
            .data
            .chunks(cols_last)
            .map(|r| {
                let mut best = 0;
                for (i, &v) in r.iter().enumerate() {
                    if v > r[best] {
                        best = i;
                    }
                }
                best
            })
            .collect())
    }

    /// Numerically stable softmax along the last axis.
    pub fn softmax(&self) -> Tensor {
        let mut out = self.clone();
        let cols = *self.shape.last().unwrap_or(&1);
        kernels::softmax_rows(&mut out.data, cols.max(1));
        out
    }

    /// Numerically stable log-softmax along the last axis.
    pub fn log_softmax(&self) -> Tensor {
        let mut out = self.clone();
        let cols = *self.shape.last().unwrap_or(&1);
        kernels::log_softmax_rows(&mut out.data, cols.max(1));
        out
    }

    /// Matrix product `op(a) · op(b)` of two rank-2 tensors, where `op` transposes
    /// when asked. Transposition reads with swapped strides: nothing is copied.
    ///
    /// ```
    /// use mtl_core::Tensor;
    /// let a = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    /// let b = Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0], &[2, 2]).unwrap();
    /// let at = a.matmul(&b, true, false).unwrap();
    /// assert_eq!(at.data(), &[1.0, 3.0, 2.0, 4.0]);
    /// ```
    pub fn matmul(&self, other: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
        let (m, _, n) = matmul_dims(self, other, trans_a, trans_b)?;
        self.matmul_into(other, trans_a, trans_b, vec![0.0; m * n])
    }

    /// [`Tensor::matmul`] into `out`, whose contents are overwritten.
    pub(crate) fn matmul_into(
        &self,
        other: &Tensor,
        trans_a: bool,
        trans_b: bool,
        mut out: Vec<f32>,
    ) -> Result<Tensor> {
        let (m, _, n) = matmul_dims(self, other, trans_a, trans_b)?;
        out.resize(m * n, 0.0);
        self.matmul_to(other, trans_a, trans_b, &mut out, false)?;
        Ok(Tensor {
            shape: vec![m, n],
            data: out,
        })
    }

    /// [`Tensor::matmul`] written over `out` (row-major, `m × n` elements),
    /// or added to it when `accumulate` (see [`kernels::SINGLE_PASS_K`] for
    /// when that gives the bits of the product added after).
    pub(crate) fn matmul_to(
        &self,
        other: &Tensor,
        trans_a: bool,
        trans_b: bool,
        out: &mut [f32],
        accumulate: bool,
    ) -> Result<()> {
        let (m, k, n) = matmul_dims(self, other, trans_a, trans_b)?;
        if out.len() != m * n {
            return Err(CoreError::ShapeMismatch {
                op: "matmul output",
                lhs: vec![m, n],
                rhs: vec![out.len()],
            });
        }
        kernels::gemm(
            m,
            k,
            n,
            &self.data,
            trans_a,
            &other.data,
            trans_b,
            out,
            accumulate,
        );
        Ok(())
    }
}

/// Checks the operands of a matrix product and returns `(m, k, n)`.
pub(crate) fn matmul_dims(
    a: &Tensor,
    b: &Tensor,
    trans_a: bool,
    trans_b: bool,
) -> Result<(usize, usize, usize)> {
    let bad = || CoreError::ShapeMismatch {
        op: "matmul",
        lhs: a.shape.clone(),
        rhs: b.shape.clone(),
    };
    if a.rank() != 2 || b.rank() != 2 {
        return Err(bad());
    }
    let (m, ka) = if trans_a {
        (a.shape[1], a.shape[0])
    } else {
        (a.shape[0], a.shape[1])
    };
    let (kb, n) = if trans_b {
        (b.shape[1], b.shape[0])
    } else {
        (b.shape[0], b.shape[1])
    };
    if ka != kb {
        return Err(bad());
    }
    Ok((m, ka, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_vec_names_both_shapes() {
        let err = Tensor::from_vec(vec![0.0; 5], &[2, 3]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains('5') && msg.contains("[2, 3]"), "{msg}");
    }

    #[test]
    fn sum_axis_of_a_3d_tensor() {
        let t = Tensor::from_vec((0..12).map(|x| x as f32).collect(), &[2, 3, 2]).unwrap();
        let s = t.sum_axis(1).unwrap();
        assert_eq!(s.shape(), &[2, 2]);
        assert_eq!(s.data(), &[6.0, 9.0, 24.0, 27.0]);
        let s0 = t.sum_axis(0).unwrap();
        assert_eq!(s0.data(), &[6.0, 8.0, 10.0, 12.0, 14.0, 16.0]);
    }

    #[test]
    fn matmul_with_both_transposes_matches_naive() {
        let a = Tensor::from_vec((0..6).map(|x| x as f32).collect(), &[2, 3]).unwrap();
        let b = Tensor::from_vec((0..12).map(|x| x as f32 * 0.5).collect(), &[4, 3]).unwrap();
        // a · bᵀ, by hand: row i of a dotted with row j of b.
        let c = a.matmul(&b, false, true).unwrap();
        for i in 0..2 {
            for j in 0..4 {
                let want: f32 = (0..3)
                    .map(|k| a.data()[i * 3 + k] * b.data()[j * 3 + k])
                    .sum();
                assert_eq!(c.data()[i * 4 + j], want);
            }
        }
        // aᵀ · a is 3 x 3 and symmetric.
        let g = a.matmul(&a, true, false).unwrap();
        assert_eq!(g.shape(), &[3, 3]);
        assert_eq!(g.data()[1], g.data()[3]);
        assert_eq!(g.data()[0], 0.0 * 0.0 + 3.0 * 3.0);
    }

    #[test]
    fn softmax_is_stable_for_large_logits() {
        let t = Tensor::from_vec(vec![1000.0, 1001.0, 1002.0], &[1, 3]).unwrap();
        let s = t.softmax();
        assert!((s.sum() - 1.0).abs() < 1e-6);
        let l = t.log_softmax();
        assert!((l.data()[2] - (-0.407_605_97)).abs() < 1e-5);
    }

    #[test]
    fn gather_rows_rejects_out_of_range() {
        let t = Tensor::zeros(&[3, 2]);
        assert!(matches!(
            t.gather_rows(&[0, 3]),
            Err(CoreError::Index {
                index: 3,
                len: 3,
                ..
            })
        ));
        assert_eq!(t.gather_rows(&[2, 0, 2]).unwrap().shape(), &[3, 2]);
    }
}
