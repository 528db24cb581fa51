//! Shape ops: reshape, concatenation, narrowing and splitting, row gathering.

use super::{Graph, Op, Var};
use crate::error::{CoreError, Result};
use crate::Tensor;

/// Copies `len` entries along `axis` starting at `start` from `src` into a new tensor.
pub(crate) fn narrow_tensor(src: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor> {
    let (outer, n, inner) = src.axis_split("narrow", axis)?;
    if start + len > n {
        return Err(CoreError::Index {
            op: "narrow",
            index: start + len,
            len: n,
        });
    }
    let mut data = Vec::with_capacity(outer * len * inner);
    for o in 0..outer {
        let base = (o * n + start) * inner;
        data.extend_from_slice(&src.data()[base..base + len * inner]);
    }
    let mut shape = src.shape().to_vec();
    shape[axis] = len;
    Tensor::from_vec(data, &shape)
}

impl Graph {
    /// The same elements with a new shape.
    pub fn reshape(&mut self, a: Var, shape: &[usize]) -> Result<Var> {
        let value = self.value(a)?.reshape(shape)?;
        Ok(self.push(value, Op::Reshape(a)))
    }

    /// `inputs` joined along `axis`; all other axes must agree.
    pub fn concat(&mut self, inputs: &[Var], axis: usize) -> Result<Var> {
        self.check(inputs)?;
        let first = inputs.first().ok_or_else(|| CoreError::InvalidArgument {
            what: "concat".into(),
            reason: "needs at least one input".into(),
        })?;
        let base = self.shape(*first)?.to_vec();
        if axis >= base.len() {
            return Err(CoreError::Axis {
                op: "concat",
                axis,
                rank: base.len(),
            });
        }
        let mut total = 0;
        for v in inputs {
            let s = self.shape(*v)?;
            let same = s.len() == base.len()
                && s.iter()
                    .zip(&base)
                    .enumerate()
                    .all(|(i, (a, b))| i == axis || a == b);
            if !same {
                return Err(CoreError::ShapeMismatch {
                    op: "concat",
                    lhs: base.clone(),
                    rhs: s.to_vec(),
                });
            }
            total += s[axis];
        }
        let outer: usize = base[..axis].iter().product();
        let inner: usize = base[axis + 1..].iter().product();
        let mut data = Vec::with_capacity(outer * total * inner);
        for o in 0..outer {
            for v in inputs {
                let t = &self.nodes()[v.0].value;
                let n = t.shape()[axis];
                data.extend_from_slice(&t.data()[o * n * inner..(o + 1) * n * inner]);
            }
        }
        let mut shape = base;
        shape[axis] = total;
        let value = Tensor::from_vec(data, &shape)?;
        Ok(self.push(
            value,
            Op::Concat {
                inputs: inputs.to_vec(),
                axis,
            },
        ))
    }

    /// `len` entries of `a` along `axis`, starting at `start`.
    pub fn narrow(&mut self, a: Var, axis: usize, start: usize, len: usize) -> Result<Var> {
        let value = narrow_tensor(self.value(a)?, axis, start, len)?;
        Ok(self.push(value, Op::Narrow { a, axis, start }))
    }

    /// Splits `a` along `axis` into consecutive pieces of the given sizes.
    pub fn split(&mut self, a: Var, axis: usize, sizes: &[usize]) -> Result<Vec<Var>> {
        let n = *self.shape(a)?.get(axis).ok_or(CoreError::Axis {
            op: "split",
            axis,
            rank: self.shape(a)?.len(),
        })?;
        let total: usize = sizes.iter().sum();
        if total != n {
            return Err(CoreError::InvalidArgument {
                what: "split sizes".into(),
                reason: format!("sizes {sizes:?} add to {total}, axis {axis} has {n}"),
            });
        }
        let mut start = 0;
        let mut out = Vec::with_capacity(sizes.len());
        for &len in sizes {
            out.push(self.narrow(a, axis, start, len)?);
            start += len;
        }
        Ok(out)
    }

    /// Rows of the first axis picked by `indices`, in that order.
    pub fn gather_rows(&mut self, a: Var, indices: &[usize]) -> Result<Var> {
        let value = self.value(a)?.gather_rows(indices)?;
        Ok(self.push(
            value,
            Op::GatherRows {
                a,
                indices: indices.to_vec(),
            },
        ))
    }
}
