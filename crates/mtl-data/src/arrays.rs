//! Training data from array files: NPY (numpy's `np.save`) or IDX (MNIST's
//! format), one features file and one file per task, or a directory laid
//! out as [`crate::export_npy`] writes it.
//!
//! In a run configuration, under `[data]`:
//!
//! ```toml
//! x = "x.npy"                 # features [N, F] or [N, C, H, W]
//! split_file = "split.npy"    # optional: 0 train, 1 validation, 2 test per row
//! [targets]                   # `[data.targets]` in a run configuration
//! left = "left.npy"
//! ```
//!
//! or `dir = "exported"`, which reads `train_x.npy`, `train_<task>.npy`,
//! and the `validation_` and `test_` files when present, concatenated in
//! that order, with the parts as the data set's predefined split (a
//! directory of training files alone has none: `[split]` applies).
//!
//! Feature dtypes: float32, float64, integers, bool, and uint8, which is
//! divided by 255 (to `[0, 1]`, as torchvision's `ToTensor` does) unless
//! `scale_u8 = false`. With `on_disk = true` the features (NPY only) stay
//! on disk and every batch is read from the files ([`crate::disk`]).
//!
//! Task kinds are inferred where the dtype says it: integer labels `[N]`
//! are classification with `max + 1` classes, bool `[N]` binary, bool
//! `[N, L]` multilabel, floats `[N]` or `[N, W]` regression. A declared
//! task (`[[tasks]]`) overrides the inference, and is required where it
//! is ambiguous (integers `[N, L]`, or labels with a single class).
//!
//! Missing targets: `missing_label` (default -1) in integer files, `NaN`
//! (the whole row) in float files; such rows take part in the other tasks
//! only.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use mtl_core::{Targets, TaskKind, TaskSpec, Tensor, MISSING_CLASS};
use serde::{Deserialize, Serialize};

use crate::array::{Array, ArrayData};
use crate::dataset::Dataset;
use crate::disk::{DiskArray, DiskFeatures};
use crate::error::{DataError, Result};
use crate::split::Split;
use crate::{idx, npy};

/// 2^24: every integer below it is exact in f32, so a float label below it
/// is a class index without rounding.
const F32_EXACT_INTEGERS: f32 = 16_777_216.0;

/// The parts of an exported directory, in row order.
const PARTS: [&str; 3] = ["train", "validation", "test"];

/// Array files as training data: `[data]` with `x` and `[data.targets]`,
/// or `dir`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArraysConfig {
    /// A directory in the layout of `mtl datasets export` (instead of `x`
    /// and `targets`).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// The features file (NPY or IDX), `[N, ...]`.
    #[serde(default)]
    pub x: Option<PathBuf>,
    /// One file per task, by task name, each `[N]` or `[N, W]`.
    #[serde(default)]
    pub targets: BTreeMap<String, PathBuf>,
    /// A file of one integer per row: 0 train, 1 validation, 2 test
    /// (default none: a directory's parts, or the `[split]` fractions).
    #[serde(default)]
    pub split_file: Option<PathBuf>,
    /// Divide uint8 features by 255 (default true).
    #[serde(default = "default_scale_u8")]
    pub scale_u8: bool,
    /// The integer label that marks a row without a label (default -1).
    #[serde(default = "default_missing_label")]
    pub missing_label: i64,
    /// Keep the features on disk and read each batch from the files
    /// (default false; NPY features only).
    #[serde(default)]
    pub on_disk: bool,
}

fn default_scale_u8() -> bool {
    true
}

fn default_missing_label() -> i64 {
    crate::export::MISSING_LABEL
}

impl Default for ArraysConfig {
    fn default() -> Self {
        ArraysConfig {
            dir: None,
            x: None,
            targets: BTreeMap::new(),
            split_file: None,
            scale_u8: default_scale_u8(),
            missing_label: default_missing_label(),
            on_disk: false,
        }
    }
}

/// An error about configuration key `key`.
fn keyed(key: &str, reason: impl Into<String>) -> DataError {
    DataError::invalid(format!("[data] {key}"), reason)
}

/// The same error, said to come from key `key`.
fn at_key(key: &str, e: DataError) -> DataError {
    match e {
        DataError::InvalidArgument { what, reason } if what.starts_with("[data]") => {
            DataError::InvalidArgument { what, reason }
        }
        other => keyed(key, other.to_string()),
    }
}

impl ArraysConfig {
    /// Checks that exactly one of `dir` and `x` is given, and targets only
    /// with `x`.
    pub fn validate(&self) -> Result<()> {
        match (&self.dir, &self.x) {
            (Some(_), Some(_)) => Err(keyed("dir", "give either `dir` or `x`, not both")),
            (None, None) => Err(keyed("x", "give `x` (with [data.targets]) or `dir`")),
            (Some(_), None) if !self.targets.is_empty() => Err(keyed(
                "targets",
                "a directory's targets are its files; give `x` to list them",
            )),
            (None, Some(_)) if self.targets.is_empty() => Err(keyed(
                "targets",
                "no target file; list one per task under [data.targets]",
            )),
            _ => Ok(()),
        }
    }

    /// Reads the data set. `declared` gives the kinds of tasks that the
    /// files cannot tell (`[[tasks]]`); a declared task without a file is an
    /// error. Tasks come in the declared order, then the others by name.
    pub fn load(&self, declared: &[TaskSpec]) -> Result<Dataset> {
        self.validate()?;
        let divisor = if self.scale_u8 { 255.0 } else { 1.0 };
        // (key, paths per part) for the features and each task.
        let (name, x_files, task_files, parts) = match (&self.dir, &self.x) {
            (Some(dir), _) => self.directory(dir)?,
            (None, Some(x)) => (
                stem(x),
                vec![x.clone()],
                self.targets
                    .iter()
                    .map(|(t, p)| (t.clone(), vec![p.clone()]))
                    .collect(),
                None,
            ),
            (None, None) => unreachable!("validated"),
        };
        let x_key = if self.dir.is_some() { "dir" } else { "x" };
        let mut tasks = Vec::new();
        let mut order: Vec<&String> = declared
            .iter()
            .filter_map(|d| task_files.keys().find(|k| **k == d.name))
            .collect();
        if let Some(d) = declared.iter().find(|d| !task_files.contains_key(&d.name)) {
            return Err(keyed(
                "targets",
                format!(
                    "task {:?} is declared but has no file (files: {})",
                    d.name,
                    task_files.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        order.extend(
            task_files
                .keys()
                .filter(|k| !declared.iter().any(|d| d.name == **k)),
        );
        for task in order {
            let key = if self.dir.is_some() {
                "dir".to_string()
            } else {
                format!("targets.{task}")
            };
            let array = read_parts(&task_files[task]).map_err(|e| at_key(&key, e))?;
            let kind = declared.iter().find(|d| d.name == *task).map(|d| &d.kind);
            tasks.push(
                targets_from(array, task, kind, self.missing_label).map_err(|e| at_key(&key, e))?,
            );
        }
        let dataset = if self.on_disk {
            let parts = x_files
                .iter()
                .map(|p| {
                    if !is_npy(p)? {
                        return Err(keyed(
                            "on_disk",
                            format!("{}: features kept on disk must be an NPY file", p.display()),
                        ));
                    }
                    DiskArray::open(p)
                })
                .collect::<Result<Vec<_>>>()
                .map_err(|e| at_key(x_key, e))?;
            let features = DiskFeatures::new(parts, divisor).map_err(|e| at_key(x_key, e))?;
            Dataset::on_disk(name, features, tasks)
        } else {
            let x = read_parts(&x_files).map_err(|e| at_key(x_key, e))?;
            Dataset::new(name, features_from(&x, divisor)?, tasks)
        }
        .map_err(|e| at_key(x_key, e))?;
        let split = match (&self.split_file, parts) {
            (Some(path), _) => {
                Some(read_split(path, dataset.len()).map_err(|e| at_key("split_file", e))?)
            }
            (None, Some(sizes)) => Some(contiguous_split(sizes)),
            (None, None) => None,
        };
        match split {
            Some(s) => dataset.with_split(s).map_err(|e| at_key("split_file", e)),
            None => Ok(dataset),
        }
    }

    /// The files of an exported directory: name, features per part, task
    /// files per part, and the part sizes.
    #[allow(clippy::type_complexity)]
    fn directory(
        &self,
        dir: &Path,
    ) -> Result<(
        String,
        Vec<PathBuf>,
        BTreeMap<String, Vec<PathBuf>>,
        Option<[usize; 3]>,
    )> {
        let mut x_files = Vec::new();
        let mut sizes = [0usize; 3];
        let mut present = Vec::new();
        for (i, part) in PARTS.iter().enumerate() {
            let path = dir.join(format!("{part}_x.npy"));
            if path.is_file() {
                sizes[i] = npy_rows(&path).map_err(|e| at_key("dir", e))?;
                x_files.push(path);
                present.push(*part);
            }
        }
        if x_files.is_empty() {
            return Err(keyed(
                "dir",
                format!(
                    "{}: no train_x.npy, validation_x.npy or test_x.npy",
                    dir.display()
                ),
            ));
        }
        let entries = fs::read_dir(dir).map_err(|source| DataError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| DataError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            let file = entry.file_name().to_string_lossy().into_owned();
            let prefix = format!("{}_", present[0]);
            if let Some(task) = file
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(".npy"))
            {
                if task != "x" {
                    names.push(task.to_string());
                }
            }
        }
        let mut tasks = BTreeMap::new();
        for task in names {
            let files: Vec<PathBuf> = present
                .iter()
                .map(|part| dir.join(format!("{part}_{task}.npy")))
                .collect();
            if let Some(missing) = files.iter().find(|p| !p.is_file()) {
                return Err(keyed(
                    "dir",
                    format!(
                        "{}: missing, but other parts have task {task:?}",
                        missing.display()
                    ),
                ));
            }
            tasks.insert(task, files);
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "arrays".into());
        // Training rows alone (as `convert_csv` writes them) are no split.
        let split = (present.len() > 1 || present[0] != "train").then_some(sizes);
        Ok((name, x_files, tasks, split))
    }
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "arrays".into())
}

/// Whether the file starts with NPY's magic.
fn is_npy(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 6];
    let mut file = fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let n = file.read(&mut magic).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(n == 6 && &magic == b"\x93NUMPY")
}

/// Rows of an NPY file, from its header.
fn npy_rows(path: &Path) -> Result<usize> {
    let a = DiskArray::open(path)?;
    Ok(a.rows())
}

/// Reads an array file, NPY or IDX (plain or gzipped), by its content.
pub fn read_array(path: &Path) -> Result<Array> {
    if is_npy(path)? {
        npy::read(path)
    } else {
        idx::read(path)
    }
}

/// Reads the files and concatenates them along the rows.
fn read_parts(paths: &[PathBuf]) -> Result<Array> {
    let mut arrays = paths
        .iter()
        .map(|p| read_array(p))
        .collect::<Result<Vec<_>>>()?;
    if arrays.len() == 1 {
        return Ok(arrays.pop().expect("one array"));
    }
    let first = &arrays[0];
    if first.shape.is_empty() {
        return Err(DataError::invalid(
            paths[0].display().to_string(),
            "a scalar has no rows",
        ));
    }
    let mut shape = first.shape.clone();
    for (a, p) in arrays.iter().zip(paths).skip(1) {
        if a.shape.get(1..) != first.shape.get(1..) || a.data.dtype() != first.data.dtype() {
            return Err(DataError::invalid(
                p.display().to_string(),
                format!(
                    "{} {:?} does not match {} {:?} of {}",
                    a.data.dtype(),
                    a.shape,
                    first.data.dtype(),
                    first.shape,
                    paths[0].display()
                ),
            ));
        }
        shape[0] = shape[0]
            .checked_add(a.shape[0])
            .ok_or_else(|| DataError::invalid("rows", "row count overflows"))?;
    }
    let data = match first.data {
        ArrayData::F32(_) => ArrayData::F32(concat(&arrays, |d| match d {
            ArrayData::F32(v) => v,
            _ => unreachable!("dtypes checked"),
        })),
        ArrayData::F64(_) => ArrayData::F64(concat(&arrays, |d| match d {
            ArrayData::F64(v) => v,
            _ => unreachable!("dtypes checked"),
        })),
        ArrayData::U8(_) => ArrayData::U8(concat(&arrays, |d| match d {
            ArrayData::U8(v) => v,
            _ => unreachable!("dtypes checked"),
        })),
        ArrayData::I64(_) => ArrayData::I64(concat(&arrays, |d| match d {
            ArrayData::I64(v) => v,
            _ => unreachable!("dtypes checked"),
        })),
        ArrayData::Bool(_) => ArrayData::Bool(concat(&arrays, |d| match d {
            ArrayData::Bool(v) => v,
            _ => unreachable!("dtypes checked"),
        })),
    };
    Array::new(shape, data)
}

fn concat<T: Clone>(arrays: &[Array], get: impl Fn(&ArrayData) -> &Vec<T>) -> Vec<T> {
    arrays
        .iter()
        .flat_map(|a| get(&a.data).iter().cloned())
        .collect()
}

/// Features `[N, ...]` as f32 (`[N]` becomes `[N, 1]`), bytes divided by
/// `divisor`.
fn features_from(x: &Array, divisor: f32) -> Result<Tensor> {
    let mut shape = x.shape.clone();
    match shape.len() {
        0 => return Err(DataError::invalid("features", "a scalar has no rows")),
        1 => shape.push(1),
        _ => {}
    }
    let values = match &x.data {
        ArrayData::U8(v) => v.iter().map(|&b| f32::from(b) / divisor).collect(),
        _ => x.to_f32(),
    };
    Ok(Tensor::from_vec(values, &shape)?)
}

/// A task's targets from its array, of the declared kind or the inferred
/// one.
fn targets_from(
    array: Array,
    name: &str,
    declared: Option<&TaskKind>,
    missing: i64,
) -> Result<(TaskSpec, Targets)> {
    let bad = |reason: String| DataError::invalid(format!("task {name:?}"), reason);
    let (rows, width) = match array.shape[..] {
        [n] => (n, None),
        [n, w] => (n, Some(w)),
        ref s => {
            return Err(bad(format!(
                "targets of shape {s:?}; expected [N] or [N, W]"
            )))
        }
    };
    let w = width.unwrap_or(1);
    let integer = matches!(array.data, ArrayData::I64(_) | ArrayData::U8(_));
    let kind = match (declared, &array.data) {
        (Some(k), _) => k.clone(),
        (None, ArrayData::Bool(_)) => match width {
            None => TaskKind::Binary,
            Some(labels) => TaskKind::Multilabel { labels },
        },
        (None, ArrayData::F32(_) | ArrayData::F64(_)) => TaskKind::Regression { outputs: w },
        (None, _) if width.is_some() => {
            return Err(bad(format!(
                "integer targets of shape {:?} are ambiguous (multilabel or regression?); \
                 declare the task's kind in [[tasks]]",
                array.shape
            )))
        }
        (None, _) => {
            let labels = class_labels(&array, missing).map_err(bad)?;
            let classes = labels
                .iter()
                .filter(|&&c| c != MISSING_CLASS)
                .max()
                .map_or(0, |&m| m.saturating_add(1));
            if classes < 2 {
                return Err(bad(format!(
                    "integer labels with {classes} class(es); declare the task's kind in [[tasks]]"
                )));
            }
            TaskKind::Classification { classes }
        }
    };
    let targets = match &kind {
        TaskKind::Classification { .. } | TaskKind::Clustering { .. } => {
            if width.is_some_and(|w| w != 1) {
                return Err(bad(format!(
                    "{} labels need shape [N], got {:?}",
                    kind.name(),
                    array.shape
                )));
            }
            let labels = class_labels(&array, missing).map_err(bad)?;
            if matches!(kind, TaskKind::Clustering { .. }) {
                Targets::Unsupervised {
                    reference: Some(labels),
                }
            } else {
                Targets::Classes(labels)
            }
        }
        TaskKind::Binary | TaskKind::Multilabel { .. } | TaskKind::Regression { .. } => {
            let mut values = array.to_f32();
            if integer {
                let ints = match &array.data {
                    ArrayData::I64(v) => v.clone(),
                    ArrayData::U8(v) => v.iter().map(|&b| i64::from(b)).collect(),
                    _ => unreachable!("integer data"),
                };
                for (row, chunk) in ints.chunks(w.max(1)).enumerate() {
                    if chunk.iter().all(|&v| v == missing) {
                        values[row * w..(row + 1) * w].fill(f32::NAN);
                    }
                }
            }
            Targets::Values(Tensor::from_vec(values, &[rows, w])?)
        }
    };
    Ok((
        TaskSpec {
            name: name.to_string(),
            kind,
        },
        targets,
    ))
}

/// Class indices of a label array; `missing` (integers) or NaN (floats)
/// marks an unlabelled row.
fn class_labels(array: &Array, missing: i64) -> std::result::Result<Vec<usize>, String> {
    let bad = |i: usize, v: String| format!("element {i} = {v} is not a class index");
    match &array.data {
        ArrayData::I64(v) => v
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                if x == missing {
                    Ok(MISSING_CLASS)
                } else {
                    usize::try_from(x)
                        .ok()
                        .filter(|&c| c != MISSING_CLASS)
                        .ok_or_else(|| bad(i, x.to_string()))
                }
            })
            .collect(),
        ArrayData::F32(_) | ArrayData::F64(_) => array
            .to_f32()
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                if x.is_nan() {
                    Ok(MISSING_CLASS)
                } else if x >= 0.0 && x.fract() == 0.0 && x < F32_EXACT_INTEGERS {
                    Ok(x as usize)
                } else {
                    Err(bad(i, x.to_string()))
                }
            })
            .collect(),
        _ => array.to_labels().map_err(|e| e.to_string()),
    }
}

/// A split file: one integer per row, 0 train, 1 validation, 2 test.
fn read_split(path: &Path, rows: usize) -> Result<Split> {
    let labels = read_array(path)?.to_labels()?;
    if labels.len() != rows {
        return Err(DataError::invalid(
            path.display().to_string(),
            format!("{} entries for {rows} rows", labels.len()),
        ));
    }
    let mut split = Split::default();
    for (i, &part) in labels.iter().enumerate() {
        match part {
            0 => split.train.push(i),
            1 => split.validation.push(i),
            2 => split.test.push(i),
            other => {
                return Err(DataError::invalid(
                    path.display().to_string(),
                    format!(
                        "row {i}: part {other}; expected 0 (train), 1 (validation) or 2 (test)"
                    ),
                ))
            }
        }
    }
    Ok(split)
}

/// Consecutive parts of `sizes` rows: train, validation, test.
fn contiguous_split(sizes: [usize; 3]) -> Split {
    let mut start = 0;
    let mut part = |n: usize| {
        let rows: Vec<usize> = (start..start + n).collect();
        start += n;
        rows
    };
    Split {
        train: part(sizes[0]),
        validation: part(sizes[1]),
        test: part(sizes[2]),
    }
}
