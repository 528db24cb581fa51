//! Export of a data set's split to NPY files, so that numpy and PyTorch
//! users load exactly the same data.
//!
//! For each non-empty part `P` of the split (`train`, `validation`, `test`)
//! the directory receives `P_x.npy` (float32 features, shape `[n, ...]`) and
//! one file per task `T`: `P_T.npy` holding int64 class indices `[n]`
//! (classification), float32 values `[n, width]` (binary, multilabel,
//! regression), or int64 reference labels `[n]` (clustering, only when the
//! data has them). In Python: `np.load("train_x.npy")`.
//!
//! Unlabelled rows are written as [`MISSING_LABEL`] (-1) in label files and
//! as rows of `NaN` in value files, as the array reader reads them back by
//! default ([`crate::arrays`]).

use std::fs;
use std::path::{Path, PathBuf};

use mtl_core::{Targets, MISSING_CLASS};

use crate::array::{Array, ArrayData};
use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::npy;
use crate::split::Split;

/// The integer that marks an unlabelled row in an exported label file.
pub const MISSING_LABEL: i64 = -1;

/// Writes the parts of `split` of `dataset` into `dir` (created if needed)
/// and returns the paths written, in order.
pub fn export_npy(dataset: &Dataset, split: &Split, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let dir = dir.as_ref();
    split.check(dataset.len())?;
    fs::create_dir_all(dir).map_err(|source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for (part, rows) in split.parts() {
        if rows.is_empty() {
            continue;
        }
        let batch = dataset.gather(rows)?;
        let path = dir.join(format!("{part}_x.npy"));
        npy::write(&path, &Array::from(&batch.x))?;
        written.push(path);
        for (task, targets) in dataset.tasks().iter().zip(&batch.targets) {
            let array = match targets {
                Targets::Classes(c) | Targets::Unsupervised { reference: Some(c) } => Array::new(
                    vec![c.len()],
                    ArrayData::I64(c.iter().map(|&v| label_to_i64(v)).collect()),
                )?,
                Targets::Values(t) => Array::from(t),
                Targets::Unsupervised { reference: None } => continue,
            };
            let path = dir.join(format!("{part}_{}.npy", task.name));
            npy::write(&path, &array)?;
            written.push(path);
        }
    }
    Ok(written)
}

/// A class index as written to NPY: [`MISSING_CLASS`] (an unlabelled row)
/// becomes [`MISSING_LABEL`].
fn label_to_i64(v: usize) -> i64 {
    if v == MISSING_CLASS {
        MISSING_LABEL
    } else {
        i64::try_from(v).unwrap_or(i64::MAX)
    }
}
