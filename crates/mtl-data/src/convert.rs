//! Streaming conversion of a CSV file to an NPY directory, for data sets
//! too large to read into memory: the file is read with the same
//! [`CsvSchema`], checks and error messages as training on it, and written
//! as `train_x.npy` and `train_<task>.npy`, which
//! [`crate::ArraysConfig`] reads back (with `dir`, and `on_disk = true` to
//! keep the features on disk).
//!
//! Memory stays bounded by [`CHUNK_ROWS`] rows and the distinct category
//! and label texts, in three steps:
//! 1. a pass over the file resolves the schema: category and label lists,
//!    and the number of rows;
//! 2. a second pass writes the rows, chunk by chunk, and accumulates each
//!    feature column's mean and variance;
//! 3. when the schema standardises (the default) or imputes, the features
//!    file is rewritten in place, chunk by chunk: missing values become the
//!    column mean and numeric columns are standardised. Unlike CSV
//!    training, which fits on the training split, the statistics are those
//!    of every row (a converted file has no split yet); the returned
//!    [`Standardizer`] applies the same to new data.
//!
//! Targets: class indices as int64 (-1 for a missing label), binary and
//! multilabel as bool (float32 with `NaN` rows when some are missing),
//! regression as float32 (`NaN` rows for missing targets), clustering
//! reference labels as int64. A clustering task without reference labels
//! has no file.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use mtl_core::{Targets, MISSING_CLASS};

use crate::csv::{
    sorted_categories, stream_rows, Accumulator, FeatureStore, Layout, Streamed, TaskStore,
};
use crate::error::{DataError, Result};
use crate::export::MISSING_LABEL;
use crate::npy::{self, Dtype};
use crate::schema::{CsvSchema, TaskColumn};
use crate::standardize::Standardizer;

/// Rows held in memory at once.
pub const CHUNK_ROWS: usize = 8192;

/// What a conversion wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Converted {
    /// The schema with every category and label list written out: save it
    /// to read new files for prediction the same way.
    pub schema: CsvSchema,
    /// Rows written.
    pub rows: usize,
    /// Rows dropped for missing values (policy `drop`).
    pub dropped: usize,
    /// The standardisation applied to the features, if any.
    pub standardizer: Option<Standardizer>,
    /// The files written: features first, then one per task.
    pub files: Vec<PathBuf>,
}

/// Converts the CSV file at `path`, read with `schema`, into NPY files in
/// `dir` (created if needed). Errors are those of reading the file for
/// training, then those of writing.
pub fn convert_csv(
    path: impl AsRef<Path>,
    schema: &CsvSchema,
    dir: impl AsRef<Path>,
) -> Result<Converted> {
    let path = path.as_ref();
    let dir = dir.as_ref();
    let source = path.display().to_string();
    let open = || {
        File::open(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    // Pass 1: resolve the category and label lists; count rows.
    let mut features_seen: Vec<BTreeSet<String>> = Vec::new();
    let mut tasks_seen: Vec<BTreeSet<String>> = Vec::new();
    let mut missing: Vec<bool> = vec![false; schema.tasks.len()];
    let mut collect = |acc: &mut Accumulator, _: &Layout| -> Result<()> {
        let chunk = acc.take();
        features_seen.resize_with(chunk.features.len(), BTreeSet::new);
        tasks_seen.resize_with(chunk.tasks.len(), BTreeSet::new);
        for (seen, store) in features_seen.iter_mut().zip(&chunk.features) {
            if let FeatureStore::Categorical {
                categories: None,
                text,
                ..
            } = store
            {
                seen.extend(text.iter().flatten().cloned());
            }
        }
        for ((seen, store), missing) in tasks_seen.iter_mut().zip(&chunk.tasks).zip(&mut missing) {
            match store {
                TaskStore::Discover(text) => {
                    *missing |= text.iter().any(Option::is_none);
                    seen.extend(text.iter().flatten().cloned());
                }
                TaskStore::Classes { values, .. } => *missing |= values.contains(&MISSING_CLASS),
                TaskStore::Reals { values, .. } => *missing |= values.iter().any(|v| v.is_nan()),
                TaskStore::Nothing => {}
            }
        }
        Ok(())
    };
    let Streamed {
        layout,
        mut rest,
        rows,
        dropped_lines,
    } = stream_rows(open()?, &source, schema, CHUNK_ROWS, &mut collect)?;
    collect(&mut rest, &layout)?;
    let mut resolved = schema.clone();
    for entry in &mut resolved.categorical {
        if entry.categories.is_none() {
            let at = layout.feature_position(&entry.column);
            if let Some(seen) = at.and_then(|i| features_seen.get(i)) {
                entry.categories = Some(sorted_categories(seen.iter().map(String::as_str)));
            }
        }
    }
    let mut references: Vec<Option<Vec<String>>> = vec![None; schema.tasks.len()];
    for ((task, seen), reference) in resolved
        .tasks
        .iter_mut()
        .zip(&tasks_seen)
        .zip(&mut references)
    {
        let labels = sorted_categories(seen.iter().map(String::as_str));
        match task {
            TaskColumn::Classification {
                name,
                labels: l @ None,
                classes: None,
                ..
            } => {
                if labels.len() < 2 {
                    return Err(DataError::Table {
                        source_name: source.clone(),
                        line: None,
                        reason: format!(
                            "task {name:?}: the label column holds a single class [{}]",
                            labels.join(", ")
                        ),
                    });
                }
                *l = Some(labels);
            }
            TaskColumn::Clustering {
                reference: Some(_), ..
            } => *reference = Some(labels),
            _ => {}
        }
    }

    // Pass 2: write the rows.
    fs::create_dir_all(dir).map_err(|source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut writers: Option<Writers> = None;
    let mut stats: Vec<Moments> = Vec::new();
    let mut mask: Vec<bool> = Vec::new();
    let mut written_schema: Option<CsvSchema> = None;
    let name = path
        .file_stem()
        .map_or_else(|| "csv".to_string(), |s| s.to_string_lossy().into_owned());
    let mut write = |acc: &mut Accumulator, layout: &Layout| -> Result<()> {
        let chunk = acc.take();
        let n = chunk.rows();
        if n == 0 {
            return Ok(());
        }
        // Clustering references by the whole file's label list.
        let mut reference_codes: Vec<Option<Vec<i64>>> = Vec::new();
        for (store, labels) in chunk.tasks.iter().zip(&references) {
            reference_codes.push(match (store, labels) {
                (TaskStore::Discover(text), Some(labels)) => Some(
                    text.iter()
                        .map(|t| {
                            t.as_ref().map_or(MISSING_LABEL, |t| {
                                labels
                                    .iter()
                                    .position(|l| l == t)
                                    .map_or(MISSING_LABEL, |i| i as i64)
                            })
                        })
                        .collect(),
                ),
                _ => None,
            });
        }
        let table = chunk.finish(layout, &resolved, &source, &name, n, Vec::new())?;
        let x = table.dataset.features()?;
        let width = x.shape()[1];
        if writers.is_none() {
            writers = Some(Writers::create(
                dir,
                rows,
                width,
                &table.dataset,
                &resolved,
                &missing,
            )?);
            stats = vec![Moments::default(); width];
            mask = table.standardize_mask.clone();
            written_schema = Some(table.schema.clone());
        }
        let w = writers.as_mut().expect("created above");
        for row in x.data().chunks(width.max(1)) {
            for (m, &v) in stats.iter_mut().zip(row) {
                m.push(v);
            }
        }
        w.x.write_f32(x.data())?;
        for ((file, targets), codes) in w
            .tasks
            .iter_mut()
            .zip(table.dataset.targets())
            .zip(&reference_codes)
        {
            let Some(file) = file else { continue };
            match (targets, codes) {
                (_, Some(codes)) => file.write_i64(codes)?,
                (Targets::Classes(c), _) => file.write_i64(
                    &c.iter()
                        .map(|&v| {
                            if v == MISSING_CLASS {
                                MISSING_LABEL
                            } else {
                                v as i64
                            }
                        })
                        .collect::<Vec<_>>(),
                )?,
                (Targets::Values(t), _) if file.dtype == Dtype::Bool => {
                    file.write_bool(t.data())?
                }
                (Targets::Values(t), _) => file.write_f32(t.data())?,
                (Targets::Unsupervised { .. }, None) => {}
            }
        }
        Ok(())
    };
    let Streamed {
        layout, mut rest, ..
    } = stream_rows(open()?, &source, &resolved, CHUNK_ROWS, &mut write)?;
    write(&mut rest, &layout)?;
    let writers = writers.expect("a file with rows wrote a chunk");
    let files = writers.finish()?;

    // Pass 3: impute and standardise in place.
    let imputes = stats.iter().any(|m| m.missing > 0);
    let standardizer = if imputes || mask.iter().any(|&m| m) {
        let s = Moments::standardizer(&stats, &mask)?;
        rewrite_features(&files[0], rows, &s)?;
        Some(s)
    } else {
        None
    };
    Ok(Converted {
        schema: written_schema.unwrap_or(resolved),
        rows,
        dropped: dropped_lines.len(),
        standardizer,
        files,
    })
}

/// Running mean and variance of one column (Welford, 1962), in f64.
#[derive(Clone, Copy, Debug, Default)]
struct Moments {
    count: u64,
    mean: f64,
    m2: f64,
    missing: u64,
}

impl Moments {
    fn push(&mut self, v: f32) {
        if v.is_nan() {
            self.missing += 1;
            return;
        }
        self.count += 1;
        let x = f64::from(v);
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// The standardisation of these columns, as [`Standardizer::fit_columns`]
    /// computes it (population deviation; 1 for a constant column).
    fn standardizer(stats: &[Moments], mask: &[bool]) -> Result<Standardizer> {
        if let Some(j) = stats.iter().position(|m| m.count == 0) {
            return Err(DataError::invalid(
                "standardizer",
                format!("feature column {j} has no observed value"),
            ));
        }
        Ok(Standardizer {
            mean: stats.iter().map(|m| m.mean as f32).collect(),
            std: stats
                .iter()
                .map(|m| {
                    let sd = (m.m2 / m.count as f64).sqrt();
                    if sd > 0.0 {
                        sd as f32
                    } else {
                        1.0
                    }
                })
                .collect(),
            standardized: mask.to_vec(),
        })
    }
}

/// Applies `s` to the `rows` rows of the float32 features file, chunk by
/// chunk, in place.
fn rewrite_features(path: &Path, rows: usize, s: &Standardizer) -> Result<()> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let overflow = || DataError::invalid(path.display().to_string(), "file offsets overflow");
    let data_offset = header_offset(path)?;
    let width = s.width();
    let row_bytes = width.checked_mul(4).ok_or_else(overflow)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    let mut buffer = Vec::new();
    let mut start = 0usize;
    while start < rows {
        let n = CHUNK_ROWS.min(rows - start);
        let offset = start
            .checked_mul(row_bytes)
            .and_then(|o| o.checked_add(data_offset))
            .and_then(|o| u64::try_from(o).ok())
            .ok_or_else(overflow)?;
        buffer.resize(n.checked_mul(row_bytes).ok_or_else(overflow)?, 0);
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        file.read_exact(&mut buffer).map_err(io)?;
        let values: Vec<f32> = buffer
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("chunk of 4")))
            .collect();
        let mut t = mtl_core::Tensor::from_vec(values, &[n, width])?;
        s.apply(&mut t)?;
        for (out, v) in buffer.chunks_exact_mut(4).zip(t.data()) {
            out.copy_from_slice(&v.to_le_bytes());
        }
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        file.write_all(&buffer).map_err(io)?;
        start += n;
    }
    file.sync_all().map_err(io)
}

/// The byte offset of the data of an NPY file.
fn header_offset(path: &Path) -> Result<usize> {
    let mut prefix = Vec::new();
    File::open(path)
        .and_then(|f| f.take(1 << 20).read_to_end(&mut prefix))
        .map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(npy::parse_header(&prefix, path)?.data_offset)
}

/// An NPY file written row chunk by row chunk.
struct NpyWriter {
    path: PathBuf,
    file: BufWriter<File>,
    dtype: Dtype,
    remaining: usize,
}

impl NpyWriter {
    fn create(path: PathBuf, dtype: Dtype, shape: &[usize]) -> Result<NpyWriter> {
        let io = |source| DataError::Io {
            path: path.clone(),
            source,
        };
        let mut file = BufWriter::new(File::create(&path).map_err(io)?);
        file.write_all(&npy::encode_header(dtype, shape)?)
            .map_err(io)?;
        let remaining = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| DataError::invalid(path.display().to_string(), "shape overflows"))?;
        Ok(NpyWriter {
            path,
            file,
            dtype,
            remaining,
        })
    }

    fn write_bytes(&mut self, count: usize, bytes: impl IntoIterator<Item = u8>) -> Result<()> {
        if count > self.remaining {
            return Err(DataError::invalid(
                self.path.display().to_string(),
                "more values than the header announced",
            ));
        }
        self.remaining -= count;
        let bytes: Vec<u8> = bytes.into_iter().collect();
        self.file.write_all(&bytes).map_err(|source| DataError::Io {
            path: self.path.clone(),
            source,
        })
    }

    fn write_f32(&mut self, v: &[f32]) -> Result<()> {
        self.write_bytes(v.len(), v.iter().flat_map(|x| x.to_le_bytes()))
    }

    fn write_i64(&mut self, v: &[i64]) -> Result<()> {
        self.write_bytes(v.len(), v.iter().flat_map(|x| x.to_le_bytes()))
    }

    fn write_bool(&mut self, v: &[f32]) -> Result<()> {
        self.write_bytes(v.len(), v.iter().map(|&x| u8::from(x == 1.0)))
    }

    fn finish(mut self) -> Result<PathBuf> {
        if self.remaining != 0 {
            return Err(DataError::invalid(
                self.path.display().to_string(),
                format!("{} values fewer than the header announced", self.remaining),
            ));
        }
        let io = |source| DataError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.flush().map_err(io)?;
        self.file.get_ref().sync_all().map_err(io)?;
        Ok(self.path)
    }
}

/// The features file and one file per task (none for a clustering task
/// without reference labels).
struct Writers {
    x: NpyWriter,
    tasks: Vec<Option<NpyWriter>>,
}

impl Writers {
    fn create(
        dir: &Path,
        rows: usize,
        width: usize,
        chunk: &crate::Dataset,
        schema: &CsvSchema,
        missing: &[bool],
    ) -> Result<Writers> {
        let x = NpyWriter::create(dir.join("train_x.npy"), Dtype::F32, &[rows, width])?;
        let mut tasks = Vec::new();
        for ((spec, targets), (column, &missing)) in chunk
            .tasks()
            .iter()
            .zip(chunk.targets())
            .zip(schema.tasks.iter().zip(missing))
        {
            let path = dir.join(format!("train_{}.npy", spec.name));
            tasks.push(match (targets, column) {
                (Targets::Classes(_), _) => Some(NpyWriter::create(path, Dtype::I64, &[rows])?),
                (Targets::Unsupervised { reference: Some(_) }, _) => {
                    Some(NpyWriter::create(path, Dtype::I64, &[rows])?)
                }
                (Targets::Unsupervised { reference: None }, _) => None,
                (Targets::Values(t), TaskColumn::Binary { .. } | TaskColumn::Multilabel { .. })
                    if !missing =>
                {
                    let w = t.shape()[1];
                    let shape = if matches!(column, TaskColumn::Binary { .. }) {
                        vec![rows]
                    } else {
                        vec![rows, w]
                    };
                    Some(NpyWriter::create(path, Dtype::Bool, &shape)?)
                }
                (Targets::Values(t), _) => {
                    Some(NpyWriter::create(path, Dtype::F32, &[rows, t.shape()[1]])?)
                }
            });
        }
        Ok(Writers { x, tasks })
    }

    fn finish(self) -> Result<Vec<PathBuf>> {
        let mut files = vec![self.x.finish()?];
        for w in self.tasks.into_iter().flatten() {
            files.push(w.finish()?);
        }
        Ok(files)
    }
}
