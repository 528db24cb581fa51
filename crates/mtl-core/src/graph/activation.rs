//! Element-wise non-linearities and the row-wise softmax family.

use super::{Graph, Op, Var};
use crate::error::{CoreError, Result};

/// `sqrt(2 / π)`, the constant of the tanh approximation of GELU.
pub(crate) const GELU_C: f32 = 0.797_884_6;
/// The cubic coefficient of the tanh approximation of GELU.
pub(crate) const GELU_A: f32 = 0.044_715;

/// GELU, tanh approximation: `0.5 x (1 + tanh(c (x + a x³)))`.
pub(crate) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + (GELU_C * (x + GELU_A * x * x * x)).tanh())
}

/// Derivative of [`gelu`].
pub(crate) fn gelu_grad(x: f32) -> f32 {
    let u = GELU_C * (x + GELU_A * x * x * x);
    let t = u.tanh();
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * x * x)
}

/// The logistic function, computed without overflow for large `|x|`.
pub(crate) fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

impl Graph {
    /// `f` applied to every element of `a`'s value, into a recycled buffer.
    fn map_value(&mut self, a: Var, f: impl Fn(f32) -> f32 + Sync) -> Result<crate::Tensor> {
        let len = self.value(a)?.len();
        let out = self.buffer(len);
        Ok(self.value(a)?.map_into(f, out))
    }

    /// `max(a, 0)`.
    pub fn relu(&mut self, a: Var) -> Result<Var> {
        let value = self.map_value(a, |x| x.max(0.0))?;
        Ok(self.push(value, Op::Relu(a)))
    }

    /// Leaky ReLU with negative `slope`.
    pub fn leaky_relu(&mut self, a: Var, slope: f32) -> Result<Var> {
        let value = self.map_value(a, |x| if x > 0.0 { x } else { slope * x })?;
        Ok(self.push(value, Op::LeakyRelu(a, slope)))
    }

    /// GELU (tanh approximation, Hendrycks & Gimpel, 2016).
    pub fn gelu(&mut self, a: Var) -> Result<Var> {
        let value = self.map_value(a, gelu)?;
        Ok(self.push(value, Op::Gelu(a)))
    }

    /// `tanh(a)`.
    pub fn tanh(&mut self, a: Var) -> Result<Var> {
        let value = self.map_value(a, f32::tanh)?;
        Ok(self.push(value, Op::Tanh(a)))
    }

    /// The logistic sigmoid.
    pub fn sigmoid(&mut self, a: Var) -> Result<Var> {
        let value = self.map_value(a, sigmoid)?;
        Ok(self.push(value, Op::Sigmoid(a)))
    }

    /// `e^a`.
    pub fn exp(&mut self, a: Var) -> Result<Var> {
        let value = self.map_value(a, f32::exp)?;
        Ok(self.push(value, Op::Exp(a)))
    }

    /// `ln a`.
    pub fn log(&mut self, a: Var) -> Result<Var> {
        let value = self.map_value(a, f32::ln)?;
        Ok(self.push(value, Op::Log(a)))
    }

    fn check_rows(&self, a: Var, op: &'static str) -> Result<()> {
        let shape = self.shape(a)?;
        if shape.is_empty() || *shape.last().unwrap_or(&0) == 0 {
            return Err(CoreError::InvalidShape {
                op,
                shape: shape.to_vec(),
                reason: "needs a non-empty last axis".into(),
            });
        }
        Ok(())
    }

    /// Softmax along the last axis (stable).
    pub fn softmax(&mut self, a: Var) -> Result<Var> {
        self.check_rows(a, "softmax")?;
        let value = self.value(a)?.softmax();
        Ok(self.push(value, Op::Softmax(a)))
    }

    /// Log-softmax along the last axis (stable).
    pub fn log_softmax(&mut self, a: Var) -> Result<Var> {
        self.check_rows(a, "log_softmax")?;
        let value = self.value(a)?.log_softmax();
        Ok(self.push(value, Op::LogSoftmax(a)))
    }
}
