//! [`Array`]: a typed n-dimensional array as NPY and IDX files hold it.

use mtl_core::Tensor;

use crate::error::{DataError, Result};

/// The elements of an [`Array`], in C (row-major) order.
#[derive(Clone, Debug, PartialEq)]
pub enum ArrayData {
    /// 32-bit floats (`<f4`).
    F32(Vec<f32>),
    /// 64-bit floats (`<f8`).
    F64(Vec<f64>),
    /// Bytes (`|u1`).
    U8(Vec<u8>),
    /// 64-bit signed integers (`<i8`; narrower integer files are widened).
    I64(Vec<i64>),
    /// Booleans (`|b1`): yes/no labels.
    Bool(Vec<bool>),
}

impl ArrayData {
    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            ArrayData::F32(v) => v.len(),
            ArrayData::F64(v) => v.len(),
            ArrayData::U8(v) => v.len(),
            ArrayData::I64(v) => v.len(),
            ArrayData::Bool(v) => v.len(),
        }
    }

    /// Whether there is no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The numpy dtype name: `float32`, `float64`, `uint8`, `int64` or `bool`.
    pub fn dtype(&self) -> &'static str {
        match self {
            ArrayData::F32(_) => "float32",
            ArrayData::F64(_) => "float64",
            ArrayData::U8(_) => "uint8",
            ArrayData::I64(_) => "int64",
            ArrayData::Bool(_) => "bool",
        }
    }
}

/// A shape and its elements.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// The shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// The elements, `shape.iter().product()` of them.
    pub data: ArrayData,
}

impl Array {
    /// An array; fails when the element count does not fill the shape.
    pub fn new(shape: Vec<usize>, data: ArrayData) -> Result<Self> {
        let want = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if want != Some(data.len()) {
            return Err(DataError::invalid(
                "array",
                format!("{} elements cannot fill shape {shape:?}", data.len()),
            ));
        }
        Ok(Array { shape, data })
    }

    /// The elements converted to f32 (f64 is rounded, integers converted).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            ArrayData::F32(v) => v.clone(),
            ArrayData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::U8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            ArrayData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::Bool(v) => v.iter().map(|&x| f32::from(u8::from(x))).collect(),
        }
    }

    /// The array as an f32 [`Tensor`] of the same shape.
    pub fn to_tensor(&self) -> Result<Tensor> {
        Ok(Tensor::from_vec(self.to_f32(), &self.shape)?)
    }

    /// The elements as non-negative integers (class labels); fails on a
    /// negative or fractional value.
    pub fn to_labels(&self) -> Result<Vec<usize>> {
        let bad = |i: usize, v: String| {
            DataError::invalid(
                "labels",
                format!("element {i} = {v} is not a non-negative integer"),
            )
        };
        match &self.data {
            ArrayData::U8(v) => Ok(v.iter().map(|&x| usize::from(x)).collect()),
            ArrayData::Bool(v) => Ok(v.iter().map(|&x| usize::from(x)).collect()),
            ArrayData::I64(v) => v
                .iter()
                .enumerate()
                .map(|(i, &x)| usize::try_from(x).map_err(|_| bad(i, x.to_string())))
                .collect(),
            ArrayData::F32(v) => float_labels(v.iter().map(|&x| f64::from(x)), bad),
            ArrayData::F64(v) => float_labels(v.iter().copied(), bad),
        }
    }
}

fn float_labels(
    values: impl Iterator<Item = f64>,
    bad: impl Fn(usize, String) -> DataError,
) -> Result<Vec<usize>> {
    values
        .enumerate()
        .map(|(i, x)| {
            if x >= 0.0 && x.fract() == 0.0 && x < usize::MAX as f64 {
                Ok(x as usize)
            } else {
                Err(bad(i, x.to_string()))
            }
        })
        .collect()
}

impl From<&Tensor> for Array {
    fn from(t: &Tensor) -> Self {
        Array {
            shape: t.shape().to_vec(),
            data: ArrayData::F32(t.data().to_vec()),
        }
    }
}
