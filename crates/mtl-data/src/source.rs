//! [`BatchSource`]: anything batches can be gathered from. The
//! [`DataLoader`](crate::DataLoader) and the trainer take this trait, so a
//! user's own data trains as the bundled sets do: a [`Dataset`], tensors
//! already in memory ([`InMemory`]), or a closure over row indices
//! ([`FromFn`]).

use mtl_core::{Targets, Tensor};

use crate::dataset::{Batch, Dataset};
use crate::error::{DataError, Result};

/// Examples indexed `0..len()`, each of shape [`feature_shape`](BatchSource::feature_shape),
/// with one target per task in a fixed task order.
///
/// ```
/// use mtl_core::{Targets, Tensor};
/// use mtl_data::{BatchSource, InMemory};
///
/// let x = Tensor::from_vec((0..12).map(|v| v as f32).collect(), &[4, 3]).unwrap();
/// let data = InMemory::new(x, vec![Targets::Classes(vec![0, 1, 1, 0])]).unwrap();
/// let batch = data.gather(&[2, 0]).unwrap();
/// assert_eq!(batch.x.data(), &[6.0, 7.0, 8.0, 0.0, 1.0, 2.0]);
/// assert_eq!(batch.targets[0], Targets::Classes(vec![1, 0]));
/// ```
pub trait BatchSource: Sync {
    /// The number of examples.
    fn len(&self) -> usize;

    /// Whether there is no example.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape of one example's features (`[d]`, or `[C, H, W]` for images).
    fn feature_shape(&self) -> &[usize];

    /// The examples `rows`, in that order, as a batch.
    ///
    /// # Errors
    /// A row out of range, or whatever reading the examples can fail with.
    fn gather(&self, rows: &[usize]) -> Result<Batch>;

    /// A name for error messages.
    fn name(&self) -> &str {
        "data"
    }
}

impl BatchSource for Dataset {
    fn len(&self) -> usize {
        Dataset::len(self)
    }

    fn feature_shape(&self) -> &[usize] {
        Dataset::feature_shape(self)
    }

    fn gather(&self, rows: &[usize]) -> Result<Batch> {
        Dataset::gather(self, rows)
    }

    fn name(&self) -> &str {
        Dataset::name(self)
    }
}

/// Features and targets already in memory: a tensor `[n, ...]` and one
/// [`Targets`] of `n` examples per task.
#[derive(Clone, Debug, PartialEq)]
pub struct InMemory {
    x: Tensor,
    targets: Vec<Targets>,
}

impl InMemory {
    /// Checks that every task's targets hold as many examples as `x`.
    ///
    /// # Errors
    /// [`DataError::Invalid`] naming the task whose count differs, or
    /// features without an example dimension.
    pub fn new(x: Tensor, targets: Vec<Targets>) -> Result<Self> {
        let Some(&n) = x.shape().first() else {
            return Err(DataError::invalid(
                "in-memory features",
                "need a leading example dimension, got a scalar",
            ));
        };
        for (t, target) in targets.iter().enumerate() {
            if let Some(len) = target.len() {
                if len != n {
                    return Err(DataError::invalid(
                        "in-memory targets",
                        format!("task {t} has {len} examples, the features have {n}"),
                    ));
                }
            }
        }
        Ok(InMemory { x, targets })
    }
}

impl BatchSource for InMemory {
    fn len(&self) -> usize {
        self.x.shape()[0]
    }

    fn feature_shape(&self) -> &[usize] {
        &self.x.shape()[1..]
    }

    fn gather(&self, rows: &[usize]) -> Result<Batch> {
        let x = self.x.gather_rows(rows)?;
        let targets = self
            .targets
            .iter()
            .map(|t| t.gather(rows))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Batch {
            x,
            targets,
            indices: rows.to_vec(),
        })
    }

    fn name(&self) -> &str {
        "in-memory data"
    }
}

/// `len` examples of shape `feature_shape` produced by a closure from their
/// row indices (generated data, a database, files read on demand).
///
/// ```
/// use mtl_core::{Targets, Tensor};
/// use mtl_data::{Batch, BatchSource, FromFn};
///
/// // y = 2x, generated on demand.
/// let data = FromFn::new(100, vec![1], |rows: &[usize]| {
///     let x: Vec<f32> = rows.iter().map(|&r| r as f32).collect();
///     let y: Vec<f32> = x.iter().map(|v| 2.0 * v).collect();
///     Ok(Batch {
///         x: Tensor::from_vec(x, &[rows.len(), 1])?,
///         targets: vec![Targets::Values(Tensor::from_vec(y, &[rows.len(), 1])?)],
///         indices: rows.to_vec(),
///     })
/// });
/// assert_eq!(data.gather(&[3]).unwrap().x.data(), &[3.0]);
/// assert!(data.gather(&[100]).is_err());
/// ```
pub struct FromFn<F> {
    len: usize,
    feature_shape: Vec<usize>,
    make: F,
}

impl<F> std::fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FromFn")
            .field("len", &self.len)
            .field("feature_shape", &self.feature_shape)
            .finish()
    }
}

impl<F> FromFn<F>
where
    F: Fn(&[usize]) -> Result<Batch> + Sync,
{
    /// `len` examples of shape `feature_shape`; `make(rows)` builds the batch
    /// of `rows` (each below `len`, checked before the call).
    pub fn new(len: usize, feature_shape: Vec<usize>, make: F) -> Self {
        FromFn {
            len,
            feature_shape,
            make,
        }
    }
}

impl<F> BatchSource for FromFn<F>
where
    F: Fn(&[usize]) -> Result<Batch> + Sync,
{
    fn len(&self) -> usize {
        self.len
    }

    fn feature_shape(&self) -> &[usize] {
        &self.feature_shape
    }

    fn gather(&self, rows: &[usize]) -> Result<Batch> {
        if let Some(&r) = rows.iter().find(|&&r| r >= self.len) {
            return Err(DataError::invalid(
                "rows",
                format!("row {r} is out of range for {} examples", self.len),
            ));
        }
        let batch = (self.make)(rows)?;
        if batch.x.shape().first() != Some(&rows.len()) {
            return Err(DataError::invalid(
                "generated batch",
                format!(
                    "{} rows were asked for, the features have shape {:?}",
                    rows.len(),
                    batch.x.shape()
                ),
            ));
        }
        Ok(batch)
    }
}

/// The rows `rows` of another source, renumbered `0..rows.len()`: a split's
/// training or validation part.
///
/// ```
/// use mtl_data::{datasets, BatchSource, Subset};
///
/// let ds = datasets::load("linnerud", 0).unwrap();
/// let rows = [5, 9, 2];
/// let part = Subset::new(&ds, &rows).unwrap();
/// assert_eq!(part.len(), 3);
/// assert_eq!(part.gather(&[1]).unwrap().x, ds.gather(&[9]).unwrap().x);
/// ```
#[derive(Clone, Copy)]
pub struct Subset<'a> {
    source: &'a dyn BatchSource,
    rows: &'a [usize],
}

impl std::fmt::Debug for Subset<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subset")
            .field("source", &self.source.name())
            .field("rows", &self.rows.len())
            .finish()
    }
}

impl<'a> Subset<'a> {
    /// Rows `rows` of `source`.
    ///
    /// # Errors
    /// [`DataError::Invalid`] for a row out of range.
    pub fn new(source: &'a dyn BatchSource, rows: &'a [usize]) -> Result<Self> {
        if let Some(&r) = rows.iter().find(|&&r| r >= source.len()) {
            return Err(DataError::invalid(
                "rows",
                format!(
                    "row {r} is out of range for {:?} of {} examples",
                    source.name(),
                    source.len()
                ),
            ));
        }
        Ok(Subset { source, rows })
    }

    /// The rows of the underlying source, in order.
    pub fn rows(&self) -> &'a [usize] {
        self.rows
    }
}

impl BatchSource for Subset<'_> {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn feature_shape(&self) -> &[usize] {
        self.source.feature_shape()
    }

    fn gather(&self, rows: &[usize]) -> Result<Batch> {
        let mapped = rows
            .iter()
            .map(|&r| {
                self.rows.get(r).copied().ok_or_else(|| {
                    DataError::invalid(
                        "rows",
                        format!("row {r} is out of range for {} examples", self.rows.len()),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.source.gather(&mapped)
    }

    fn name(&self) -> &str {
        self.source.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_refuses_targets_of_another_length() {
        let x = Tensor::from_vec(vec![0.0; 6], &[3, 2]).unwrap();
        let err = InMemory::new(x, vec![Targets::Classes(vec![0, 1])]).unwrap_err();
        assert!(err.to_string().contains("task 0 has 2"), "{err}");
    }

    #[test]
    fn a_dataset_gathers_the_same_through_the_trait() {
        let ds = crate::datasets::load("linnerud", 0).unwrap();
        let direct = ds.gather(&[4, 1]).unwrap();
        let via: &dyn BatchSource = &ds;
        assert_eq!(via.gather(&[4, 1]).unwrap(), direct);
        assert_eq!(via.len(), 20);
    }
}
