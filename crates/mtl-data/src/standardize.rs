//! [`Standardizer`]: per-column mean and standard deviation fitted on the
//! training rows, saved with the run and applied unchanged at prediction.

use mtl_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// Per-column standardisation `z = (x - mean) / std`, fitted on training rows.
///
/// Missing values (NaN) are ignored when fitting and replaced by the training
/// mean when applying (mean imputation), so a missing value becomes `z = 0`
/// in a standardised column. A column whose training values are constant
/// keeps `std = 1`, so it maps to zero instead of dividing by zero. Columns
/// with `standardized[j] == false` (one-hot indicators) are only imputed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Standardizer {
    /// Training mean of each column.
    pub mean: Vec<f32>,
    /// Training standard deviation (population, divisor n) of each column.
    pub std: Vec<f32>,
    /// Whether each column is standardised (else only imputed).
    pub standardized: Vec<bool>,
}

impl Standardizer {
    /// Fits every column of `features` (`[n, ...]`, one row per example) on
    /// rows `train`.
    pub fn fit(features: &Tensor, train: &[usize]) -> Result<Self> {
        let width = row_width(features)?;
        Self::fit_columns(features, train, &vec![true; width])
    }

    /// Fits on rows `train`, standardising only the columns where `mask` is
    /// true. Fails when `train` is empty, an index is out of range, or a
    /// column has no observed training value.
    pub fn fit_columns(features: &Tensor, train: &[usize], mask: &[bool]) -> Result<Self> {
        let width = row_width(features)?;
        let rows = features.shape()[0];
        if mask.len() != width {
            return Err(DataError::invalid(
                "standardizer mask",
                format!("{} entries for {width} columns", mask.len()),
            ));
        }
        if train.is_empty() {
            return Err(DataError::invalid(
                "standardizer",
                "no training rows to fit on",
            ));
        }
        let data = features.data();
        let mut sum = vec![0.0f64; width];
        let mut count = vec![0usize; width];
        for &i in train {
            if i >= rows {
                return Err(DataError::invalid(
                    "standardizer",
                    format!("training row {i} is out of range for {rows} rows"),
                ));
            }
            for (j, &v) in data[i * width..(i + 1) * width].iter().enumerate() {
                if !v.is_nan() {
                    sum[j] += f64::from(v);
                    count[j] += 1;
                }
            }
        }
        if let Some(j) = count.iter().position(|&c| c == 0) {
            return Err(DataError::invalid(
                "standardizer",
                format!("feature column {j} has no observed value in the training rows"),
            ));
        }
        let mean: Vec<f64> = sum.iter().zip(&count).map(|(s, &c)| s / c as f64).collect();
        let mut sq = vec![0.0f64; width];
        for &i in train {
            for (j, &v) in data[i * width..(i + 1) * width].iter().enumerate() {
                if !v.is_nan() {
                    sq[j] += (f64::from(v) - mean[j]).powi(2);
                }
            }
        }
        let std = sq
            .iter()
            .zip(&count)
            .map(|(s, &c)| {
                let sd = (s / c as f64).sqrt();
                if sd > 0.0 {
                    sd as f32
                } else {
                    1.0
                }
            })
            .collect();
        Ok(Standardizer {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
            standardized: mask.to_vec(),
        })
    }

    /// The number of columns.
    pub fn width(&self) -> usize {
        self.mean.len()
    }

    /// Imputes and standardises every row of `features` in place.
    pub fn apply(&self, features: &mut Tensor) -> Result<()> {
        let width = row_width(features)?;
        if width != self.width() || self.std.len() != width || self.standardized.len() != width {
            return Err(DataError::invalid(
                "standardizer",
                format!(
                    "fitted on {} columns, applied to rows of {width}",
                    self.width()
                ),
            ));
        }
        if width == 0 {
            // No feature columns (a file read for its targets only).
            return Ok(());
        }
        for row in features.data_mut().chunks_exact_mut(width) {
            for (j, v) in row.iter_mut().enumerate() {
                if v.is_nan() {
                    *v = self.mean[j];
                }
                if self.standardized[j] {
                    *v = (*v - self.mean[j]) / self.std[j];
                }
            }
        }
        Ok(())
    }

    /// Maps standardised values of column `j` back to the original scale.
    pub fn invert_column(&self, j: usize, z: f32) -> f32 {
        if self.standardized[j] {
            z * self.std[j] + self.mean[j]
        } else {
            z
        }
    }
}

fn row_width(features: &Tensor) -> Result<usize> {
    match features.shape() {
        [] => Err(DataError::invalid(
            "standardizer",
            "features have no rows axis",
        )),
        [_, row @ ..] => Ok(row.iter().product()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f32 standardisation of small integers is exact to a few ulps.
    const TOL: f32 = 1e-6;

    #[test]
    fn fits_on_training_rows_only_and_imputes_the_training_mean() {
        // Column 0: train rows 0,1 hold 1 and 3 (mean 2, std 1); row 2 (not
        // training) holds 100 and must not move the fit.
        let mut x = Tensor::from_vec(vec![1.0, 5.0, 3.0, 5.0, 100.0, f32::NAN], &[3, 2]).unwrap();
        let s = Standardizer::fit(&x, &[0, 1]).unwrap();
        assert_eq!(s.mean, vec![2.0, 5.0]);
        assert_eq!(s.std, vec![1.0, 1.0], "constant column keeps std 1");
        s.apply(&mut x).unwrap();
        let want = [-1.0, 0.0, 1.0, 0.0, 98.0, 0.0];
        for (a, b) in x.data().iter().zip(want) {
            assert!((a - b).abs() < TOL, "{a} vs {b}");
        }
        assert!((s.invert_column(0, 98.0) - 100.0).abs() < TOL);
    }

    #[test]
    fn masked_columns_are_only_imputed() {
        let mut x = Tensor::from_vec(vec![0.0, 2.0, 1.0, f32::NAN, 1.0, 4.0], &[3, 2]).unwrap();
        let s = Standardizer::fit_columns(&x, &[0, 1, 2], &[false, true]).unwrap();
        s.apply(&mut x).unwrap();
        assert_eq!(x.data()[0], 0.0);
        assert!((x.data()[2] - 1.0).abs() < TOL);
        assert_eq!(x.data()[3], 0.0, "a missing value becomes the mean, z = 0");
        assert!(Standardizer::fit(&x, &[]).is_err());
        assert!(Standardizer::fit(&x, &[7]).is_err());
    }
}
