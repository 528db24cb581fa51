//! Arithmetic ops: element-wise, scalar, broadcast, matrix product, reductions.

use super::{Graph, Op, Var};
use crate::error::{CoreError, Result};
use crate::tensor::matmul_dims;
use crate::Tensor;

impl Graph {
    fn binary(
        &mut self,
        a: Var,
        b: Var,
        op: Op,
        f: fn(&Tensor, &Tensor) -> Result<Tensor>,
    ) -> Result<Var> {
        self.check(&[a, b])?;
        let value = f(&self.nodes()[a.0].value, &self.nodes()[b.0].value)?;
        Ok(self.push(value, op))
    }

    /// `a + b` (same shapes).
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(a, b, Op::Add(a, b), Tensor::add)
    }

    /// `a - b` (same shapes).
    pub fn sub(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(a, b, Op::Sub(a, b), Tensor::sub)
    }

    /// `a ⊙ b` (same shapes).
    pub fn mul(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(a, b, Op::Mul(a, b), Tensor::mul)
    }

    /// `a / b` (same shapes).
    pub fn div(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(a, b, Op::Div(a, b), Tensor::div)
    }

    /// `-a`.
    pub fn neg(&mut self, a: Var) -> Result<Var> {
        let value = self.value(a)?.map(|x| -x);
        Ok(self.push(value, Op::Neg(a)))
    }

    /// `a + s`.
    pub fn add_scalar(&mut self, a: Var, s: f32) -> Result<Var> {
        let value = self.value(a)?.map(|x| x + s);
        Ok(self.push(value, Op::AddScalar(a, s)))
    }

    /// `s · a`.
    pub fn mul_scalar(&mut self, a: Var, s: f32) -> Result<Var> {
        let value = self.value(a)?.map(|x| x * s);
        Ok(self.push(value, Op::MulScalar(a, s)))
    }

    /// `a^p` element-wise.
    pub fn powf(&mut self, a: Var, p: f32) -> Result<Var> {
        let value = self.value(a)?.map(|x| x.powf(p));
        Ok(self.push(value, Op::Powf(a, p)))
    }

    /// `op(a) · op(b)` for rank-2 operands; transposition reads with swapped
    /// strides, without a copy.
    pub fn matmul_t(&mut self, a: Var, b: Var, trans_a: bool, trans_b: bool) -> Result<Var> {
        self.check(&[a, b])?;
        let (m, _, n) = matmul_dims(
            &self.nodes()[a.0].value,
            &self.nodes()[b.0].value,
            trans_a,
            trans_b,
        )?;
        let out = self.buffer(m * n);
        let value =
            self.nodes()[a.0]
                .value
                .matmul_into(&self.nodes()[b.0].value, trans_a, trans_b, out)?;
        Ok(self.push(
            value,
            Op::MatMul {
                a,
                b,
                trans_a,
                trans_b,
            },
        ))
    }

    /// `a · b` for rank-2 operands.
    pub fn matmul(&mut self, a: Var, b: Var) -> Result<Var> {
        self.matmul_t(a, b, false, false)
    }

    /// `x + row`, the row vector broadcast over every row of `x` (its last axis).
    pub fn add_row(&mut self, x: Var, row: Var) -> Result<Var> {
        self.check(&[x, row])?;
        let out = self.buffer(self.nodes()[x.0].value.len());
        let value = self.nodes()[x.0]
            .value
            .add_row_into(&self.nodes()[row.0].value, out)?;
        Ok(self.push(value, Op::AddRow(x, row)))
    }

    /// `x ⊙ row`, the row vector broadcast over every row of `x` (its last axis).
    pub fn mul_row(&mut self, x: Var, row: Var) -> Result<Var> {
        self.check(&[x, row])?;
        let (xv, rv) = (&self.nodes()[x.0].value, &self.nodes()[row.0].value);
        let cols = *xv.shape().last().unwrap_or(&1);
        if rv.len() != cols {
            return Err(CoreError::ShapeMismatch {
                op: "mul_row",
                lhs: xv.shape().to_vec(),
                rhs: rv.shape().to_vec(),
            });
        }
        let mut value = xv.clone();
        for chunk in value.data_mut().chunks_mut(cols.max(1)) {
            for (o, &r) in chunk.iter_mut().zip(rv.data()) {
                *o *= r;
            }
        }
        Ok(self.push(value, Op::MulRow(x, row)))
    }

    /// `x ⊙ col`: each row `i` of `x` (first axis) scaled by `col[i]`.
    /// This is how a gate's weight per example scales an expert's output.
    pub fn mul_col(&mut self, x: Var, col: Var) -> Result<Var> {
        self.check(&[x, col])?;
        let (xv, cv) = (&self.nodes()[x.0].value, &self.nodes()[col.0].value);
        let (rows, width) = xv.dims2()?;
        if cv.len() != rows || xv.rank() == 0 {
            return Err(CoreError::ShapeMismatch {
                op: "mul_col",
                lhs: xv.shape().to_vec(),
                rhs: cv.shape().to_vec(),
            });
        }
        let mut value = xv.clone();
        for (chunk, &c) in value.data_mut().chunks_mut(width.max(1)).zip(cv.data()) {
            chunk.iter_mut().for_each(|o| *o *= c);
        }
        Ok(self.push(value, Op::MulCol(x, col)))
    }

    /// Sum of all elements, as a scalar.
    pub fn sum(&mut self, a: Var) -> Result<Var> {
        let value = Tensor::scalar(self.value(a)?.sum());
        Ok(self.push(value, Op::Sum(a)))
    }

    /// Mean of all elements, as a scalar.
    pub fn mean(&mut self, a: Var) -> Result<Var> {
        let value = Tensor::scalar(self.value(a)?.mean());
        Ok(self.push(value, Op::Mean(a)))
    }

    /// Sum along `axis` (removed from the shape).
    pub fn sum_axis(&mut self, a: Var, axis: usize) -> Result<Var> {
        let value = self.value(a)?.sum_axis(axis)?;
        Ok(self.push(value, Op::SumAxis(a, axis)))
    }

    /// Mean along `axis` (removed from the shape).
    pub fn mean_axis(&mut self, a: Var, axis: usize) -> Result<Var> {
        let value = self.value(a)?.mean_axis(axis)?;
        Ok(self.push(value, Op::MeanAxis(a, axis)))
    }
}
