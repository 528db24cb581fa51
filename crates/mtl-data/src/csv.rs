//! Reading delimited text files with a [`CsvSchema`], streaming record by
//! record with the `csv` crate.
//!
//! A read gives a [`CsvTable`]: the raw data set (categories encoded, missing
//! values handled by the policy, imputable ones kept as NaN) and the resolved
//! schema, with the feature list and every category or label list written
//! out. Standardisation and imputation are fitted afterwards on the training
//! rows only ([`CsvTable::fit_transform`]), and the fitted
//! [`Standardizer`] is applied unchanged to new data ([`CsvTable::transform`]).

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::Path;

use mtl_core::{Targets, TaskKind, TaskSpec, Tensor, MISSING_CLASS};

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::schema::{
    CategoryEncoding, Column, CsvSchema, MissingPolicy, MissingTargets, TaskColumn,
};
use crate::standardize::Standardizer;

/// The result of reading a file with a schema.
#[derive(Clone, Debug, PartialEq)]
pub struct CsvTable {
    /// Features (not yet standardised; NaN where a value is to be imputed)
    /// and targets.
    pub dataset: Dataset,
    /// The schema with `features` and every category and label list filled
    /// in: save it with the run so prediction reads new files the same way.
    pub schema: CsvSchema,
    /// One name per feature column (`color=red` for a one-hot column).
    pub feature_names: Vec<String>,
    /// Which feature columns standardisation applies to.
    pub standardize_mask: Vec<bool>,
    /// One-based line numbers of rows dropped for missing values.
    pub dropped_lines: Vec<u64>,
}

impl CsvTable {
    /// Fits the standardisation and mean imputation on rows `train` and
    /// applies them to every row; the returned data set keeps the fitted
    /// [`Standardizer`] ([`Dataset::standardizer`]).
    pub fn fit_transform(self, train: &[usize]) -> Result<Dataset> {
        let standardizer =
            Standardizer::fit_columns(self.dataset.features()?, train, &self.standardize_mask)?;
        self.transform(standardizer)
    }

    /// Applies a saved standardisation (prediction on new data).
    pub fn transform(self, standardizer: Standardizer) -> Result<Dataset> {
        let mut dataset = self.dataset;
        dataset.apply_standardizer(standardizer)?;
        Ok(dataset)
    }
}

/// Reads the file at `path` with `schema`; the data set is named after the
/// file stem.
pub fn read_csv(path: impl AsRef<Path>, schema: &CsvSchema) -> Result<CsvTable> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let name = path
        .file_stem()
        .map_or_else(|| "csv".to_string(), |s| s.to_string_lossy().into_owned());
    read_csv_from(file, &path.display().to_string(), &name, schema)
}

/// Reads delimited text from `reader` with `schema`; `source` names it in
/// errors and `name` names the data set.
///
/// ```
/// use mtl_core::Targets;
/// use mtl_data::{read_csv_from, Column, CsvSchema, TaskColumn};
///
/// let text = "x,colour,y\n1.0,red,a\n2.0,blue,b\n3.0,red,a\n";
/// let mut schema = CsvSchema::new(vec![TaskColumn::Classification {
///     name: "y".into(), column: Column::from("y"), classes: None, labels: None,
/// }]);
/// schema.categorical.push(mtl_data::Categorical {
///     column: "colour".into(), encoding: Default::default(), categories: None,
/// });
/// let table = read_csv_from(text.as_bytes(), "inline.csv", "inline", &schema).unwrap();
/// assert_eq!(table.feature_names, ["x", "colour=blue", "colour=red"]);
/// assert_eq!(table.dataset.targets()[0], Targets::Classes(vec![0, 1, 0]));
/// let ds = table.fit_transform(&[0, 1, 2]).unwrap();
/// // x standardised on all three rows: mean 2, std sqrt(2/3).
/// let z = ds.features().unwrap().data()[0];
/// assert!((z + 1.5f32.sqrt()).abs() < 1e-6);
/// ```
pub fn read_csv_from<R: Read>(
    reader: R,
    source: &str,
    name: &str,
    schema: &CsvSchema,
) -> Result<CsvTable> {
    let streamed = stream_rows(reader, source, schema, usize::MAX, |_, _| Ok(()))?;
    let Streamed {
        layout,
        rest,
        rows,
        dropped_lines,
    } = streamed;
    rest.finish(&layout, schema, source, name, rows, dropped_lines)
}

/// What [`stream_rows`] leaves: the layout, the rows not yet flushed, the
/// number of rows kept and the lines dropped.
pub(crate) struct Streamed {
    pub layout: Layout,
    pub rest: Accumulator,
    pub rows: usize,
    pub dropped_lines: Vec<u64>,
}

/// Reads the records of `reader` with `schema`, with every check and error
/// of a CSV read, into an [`Accumulator`]; every `chunk` kept rows, calls
/// `flush` with it (which may take its rows). Fails on a file without data
/// rows.
pub(crate) fn stream_rows<R: Read>(
    reader: R,
    source: &str,
    schema: &CsvSchema,
    chunk: usize,
    mut flush: impl FnMut(&mut Accumulator, &Layout) -> Result<()>,
) -> Result<Streamed> {
    schema.validate()?;
    let mut rdr = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(::csv::Trim::All)
        .delimiter(schema.delimiter as u8)
        .from_reader(reader);
    let table_err = |line: Option<u64>, reason: String| DataError::Table {
        source_name: source.to_string(),
        line,
        reason,
    };
    let csv_err = |e: ::csv::Error| {
        let line = e.position().map(|p| p.line());
        table_err(line, format!("unreadable record: {e}"))
    };
    let mut record = ::csv::StringRecord::new();
    if !rdr.read_record(&mut record).map_err(csv_err)? {
        return Err(table_err(None, "the file is empty".into()));
    }
    let width = record.len();
    let names: Option<Vec<String>> = schema
        .header
        .then(|| record.iter().map(str::to_string).collect());
    if let Some(names) = &names {
        for (j, n) in names.iter().enumerate() {
            if let Some(i) = names[..j].iter().position(|m| m == n) {
                return Err(table_err(
                    Some(1),
                    format!(
                        "column name {} appears twice in the header (columns {i} and {j})",
                        shown(n)
                    ),
                ));
            }
        }
    }
    let first_data_read = !schema.header;
    let layout = Layout::resolve(schema, names.as_deref(), width, &record, source)?;

    let mut state = Accumulator::new(&layout, schema);
    let mut rows = 0usize;
    let mut pending = 0usize;
    let mut dropped_lines = Vec::new();
    let mut have = first_data_read;
    loop {
        if !have && !rdr.read_record(&mut record).map_err(csv_err)? {
            break;
        }
        have = false;
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != width {
            return Err(table_err(
                Some(line),
                format!(
                    "row has {} fields, expected {width}{}",
                    record.len(),
                    if schema.header {
                        " (as many as the header)"
                    } else {
                        " (as many as the first row)"
                    }
                ),
            ));
        }
        let cell = |col: usize| Cell {
            text: &record[col],
            missing: is_missing(&record[col], &schema.missing_values),
            col,
        };
        let checked = if schema.missing_targets == MissingTargets::Mask {
            &layout.feature_columns
        } else {
            &layout.used
        };
        if schema.missing == MissingPolicy::Drop && checked.iter().any(|&c| cell(c).missing) {
            dropped_lines.push(line);
            continue;
        }
        state
            .push_row(&layout, &cell)
            .map_err(|(c, reason)| DataError::Cell {
                source_name: source.to_string(),
                line,
                column: layout.column_label(c),
                reason,
            })?;
        rows += 1;
        pending += 1;
        if pending == chunk {
            flush(&mut state, &layout)?;
            pending = 0;
        }
    }
    if rows == 0 {
        let reason = if !dropped_lines.is_empty() {
            "no rows left after dropping rows with missing values"
        } else if schema.header {
            "the file has a header but no data rows"
        } else {
            "the file has no data rows"
        };
        return Err(table_err(None, reason.into()));
    }
    Ok(Streamed {
        layout,
        rest: state,
        rows,
        dropped_lines,
    })
}

/// Longest field text quoted whole in an error message.
const SHOWN_MAX: usize = 40;

/// `text` quoted for an error message, cut short (with its length) when it
/// is long, so that a huge field does not flood the message.
fn shown(text: &str) -> String {
    if text.len() <= SHOWN_MAX {
        return format!("{text:?}");
    }
    let mut end = SHOWN_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}... ({} bytes)", &text[..end], text.len())
}

/// `text` unquoted, cut short like [`shown`] when it is long.
fn cut(text: &str) -> String {
    if text.len() <= SHOWN_MAX {
        return text.to_string();
    }
    let mut end = SHOWN_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], text.len())
}

fn is_missing(text: &str, tokens: &[String]) -> bool {
    text.is_empty() || tokens.iter().any(|t| t == text)
}

/// One field of the current record.
struct Cell<'r> {
    text: &'r str,
    missing: bool,
    col: usize,
}

/// A feature column and how it is encoded.
#[derive(Clone, Debug)]
enum FeatureKind {
    Numeric,
    Categorical {
        encoding: CategoryEncoding,
        categories: Option<Vec<String>>,
    },
}

/// Column positions resolved against the header.
pub(crate) struct Layout {
    names: Option<Vec<String>>,
    features: Vec<(usize, FeatureKind)>,
    /// Every column that is read (for the drop policy).
    used: Vec<usize>,
    /// The feature columns (for the drop policy when targets are masked).
    feature_columns: Vec<usize>,
    /// Task columns, per task, in schema order.
    tasks: Vec<Vec<usize>>,
}

impl Layout {
    fn resolve(
        schema: &CsvSchema,
        names: Option<&[String]>,
        width: usize,
        first: &::csv::StringRecord,
        source: &str,
    ) -> Result<Layout> {
        let hint = || {
            let line: String = first
                .iter()
                .collect::<Vec<_>>()
                .join(&schema.delimiter.to_string());
            match [',', ';', '\t', ' ', '|'].into_iter().find(|&d| d != schema.delimiter && line.contains(d)) {
                Some(d) if width == 1 => format!(
                    "; the first line has a single field containing {d:?}: is the delimiter {:?} right?",
                    schema.delimiter
                ),
                _ => String::new(),
            }
        };
        let find = |c: &Column| -> Result<usize> {
            let missing = |reason: String| DataError::Table {
                source_name: source.to_string(),
                line: Some(1),
                reason: format!("{reason}{}", hint()),
            };
            match (c, names) {
                (Column::Index(i), _) if *i < width => Ok(*i),
                (Column::Index(i), _) => Err(missing(format!(
                    "column #{i} is out of range: rows have {width} fields"
                ))),
                (Column::Name(n), Some(names)) => {
                    names.iter().position(|h| h == n).ok_or_else(|| {
                        missing(format!(
                            "column {n:?} is not in the header ({})",
                            names.iter().map(|h| cut(h)).collect::<Vec<_>>().join(", ")
                        ))
                    })
                }
                (Column::Name(n), None) => Err(missing(format!(
                    "column {n:?} is given by name but the schema says the file has no header"
                ))),
            }
        };
        let tasks = schema
            .tasks
            .iter()
            .map(|t| {
                t.columns()
                    .into_iter()
                    .map(find)
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let ignored = schema.ignore.iter().map(find).collect::<Result<Vec<_>>>()?;
        let feature_cols = match &schema.features {
            Some(cols) => cols.iter().map(find).collect::<Result<Vec<_>>>()?,
            None => (0..width)
                .filter(|c| !ignored.contains(c) && !tasks.iter().flatten().any(|t| t == c))
                .collect(),
        };
        let mut categorical = HashMap::new();
        for cat in &schema.categorical {
            let col = find(&cat.column)?;
            if !feature_cols.contains(&col) {
                return Err(DataError::invalid(
                    format!("schema categorical column {}", cat.column),
                    "is not one of the feature columns",
                ));
            }
            categorical.insert(
                col,
                FeatureKind::Categorical {
                    encoding: cat.encoding,
                    categories: cat.categories.clone(),
                },
            );
        }
        let features: Vec<(usize, FeatureKind)> = feature_cols
            .iter()
            .map(|c| {
                (
                    *c,
                    categorical.get(c).cloned().unwrap_or(FeatureKind::Numeric),
                )
            })
            .collect();
        let mut used: Vec<usize> = feature_cols
            .iter()
            .chain(tasks.iter().flatten())
            .copied()
            .collect();
        used.sort_unstable();
        used.dedup();
        Ok(Layout {
            names: names.map(<[String]>::to_vec),
            features,
            used,
            feature_columns: feature_cols,
            tasks,
        })
    }

    /// The position among the feature columns of a schema column.
    pub fn feature_position(&self, column: &Column) -> Option<usize> {
        let col = layout_col(self, column)?;
        self.features.iter().position(|(c, _)| *c == col)
    }

    fn column_label(&self, col: usize) -> String {
        match &self.names {
            Some(names) => format!("{col} ({})", shown(&names[col])),
            None => col.to_string(),
        }
    }

    fn column_name(&self, col: usize) -> String {
        match &self.names {
            Some(names) => names[col].clone(),
            None => col.to_string(),
        }
    }
}

/// Sorts discovered categories: numerically when every value is a number,
/// else as text.
pub(crate) fn sorted_categories<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    let set: BTreeSet<&str> = values.collect();
    let mut cats: Vec<String> = set.into_iter().map(str::to_string).collect();
    let numbers: Option<Vec<f64>> = cats.iter().map(|c| c.parse::<f64>().ok()).collect();
    if let Some(numbers) = numbers {
        let mut pairs: Vec<(f64, String)> = numbers.into_iter().zip(cats).collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        cats = pairs.into_iter().map(|(_, c)| c).collect();
    }
    cats
}

/// The values of one feature column, in row order.
pub(crate) enum FeatureStore {
    /// Numbers (NaN: missing, to be imputed).
    Numeric(Vec<f32>),
    /// Category indices into a list (NaN: missing), or raw text while the
    /// list is still to be discovered.
    Categorical {
        encoding: CategoryEncoding,
        categories: Option<Vec<String>>,
        index: Vec<f32>,
        text: Vec<Option<String>>,
    },
}

/// The values of one task, in row order.
pub(crate) enum TaskStore {
    /// Class indices, decoded by a label list or as integers below `classes`.
    Classes {
        labels: Option<Vec<String>>,
        classes: usize,
        values: Vec<usize>,
    },
    /// Raw labels whose list is discovered at the end (classification, or a
    /// clustering task's reference labels).
    /// `None` marks a masked missing label.
    Discover(Vec<Option<String>>),
    /// Real values, `width` per row; `binary` demands 0 or 1.
    Reals { values: Vec<f32>, binary: bool },
    /// A clustering task without reference labels.
    Nothing,
}

type CellError = (usize, String);

/// Values collected while streaming the records.
pub(crate) struct Accumulator {
    pub features: Vec<FeatureStore>,
    pub tasks: Vec<TaskStore>,
    policy: MissingPolicy,
    mask_targets: bool,
}

fn parse_number(cell: &Cell) -> std::result::Result<f32, CellError> {
    let v: f32 = cell.text.parse().map_err(|_| {
        (
            cell.col,
            format!("cannot parse {} as a number", shown(cell.text)),
        )
    })?;
    if !v.is_finite() {
        return Err((
            cell.col,
            format!("value {} is not finite", shown(cell.text)),
        ));
    }
    Ok(v)
}

impl Accumulator {
    fn new(layout: &Layout, schema: &CsvSchema) -> Self {
        let features = layout
            .features
            .iter()
            .map(|(_, kind)| match kind {
                FeatureKind::Numeric => FeatureStore::Numeric(Vec::new()),
                FeatureKind::Categorical {
                    encoding,
                    categories,
                } => FeatureStore::Categorical {
                    encoding: *encoding,
                    categories: categories.clone(),
                    index: Vec::new(),
                    text: Vec::new(),
                },
            })
            .collect();
        let tasks = schema
            .tasks
            .iter()
            .map(|t| match t {
                TaskColumn::Classification {
                    labels: None,
                    classes: None,
                    ..
                } => TaskStore::Discover(Vec::new()),
                TaskColumn::Classification {
                    labels, classes, ..
                } => TaskStore::Classes {
                    classes: labels
                        .as_ref()
                        .map_or_else(|| classes.unwrap_or(0), Vec::len),
                    labels: labels.clone(),
                    values: Vec::new(),
                },
                TaskColumn::Clustering {
                    reference: Some(_), ..
                } => TaskStore::Discover(Vec::new()),
                TaskColumn::Clustering {
                    reference: None, ..
                } => TaskStore::Nothing,
                TaskColumn::Binary { .. } | TaskColumn::Multilabel { .. } => TaskStore::Reals {
                    values: Vec::new(),
                    binary: true,
                },
                TaskColumn::Regression { .. } => TaskStore::Reals {
                    values: Vec::new(),
                    binary: false,
                },
            })
            .collect();
        Accumulator {
            features,
            tasks,
            policy: schema.missing,
            mask_targets: schema.missing_targets == MissingTargets::Mask,
        }
    }

    fn push_row<'r>(
        &mut self,
        layout: &Layout,
        cell: &impl Fn(usize) -> Cell<'r>,
    ) -> std::result::Result<(), CellError> {
        let missing_err =
            |c: &Cell, what: &str, fix: &str| (c.col, format!("missing value in {what}{fix}"));
        for ((col, _), store) in layout.features.iter().zip(&mut self.features) {
            let c = cell(*col);
            if c.missing && self.policy != MissingPolicy::ImputeMean {
                return Err(missing_err(
                    &c,
                    "a feature column",
                    " (the schema's `missing` policy is \"error\"; \"drop\" or \"impute_mean\" allow it)",
                ));
            }
            match store {
                FeatureStore::Numeric(v) => v.push(if c.missing {
                    f32::NAN
                } else {
                    parse_number(&c)?
                }),
                FeatureStore::Categorical {
                    categories: None,
                    text,
                    ..
                } => text.push((!c.missing).then(|| c.text.to_string())),
                FeatureStore::Categorical {
                    categories: Some(cats),
                    index,
                    ..
                } => {
                    if c.missing {
                        index.push(f32::NAN);
                    } else {
                        let i = cats.iter().position(|k| k == c.text).ok_or_else(|| {
                            (
                                c.col,
                                format!("category {} is not one of {cats:?}", shown(c.text)),
                            )
                        })?;
                        index.push(i as f32);
                    }
                }
            }
        }
        for (cols, store) in layout.tasks.iter().zip(&mut self.tasks) {
            let missing = cols.iter().filter(|&&col| cell(col).missing).count();
            if self.mask_targets && missing > 0 && missing == cols.len() {
                match store {
                    TaskStore::Discover(v) => v.push(None),
                    TaskStore::Reals { values, .. } => {
                        values.extend(std::iter::repeat_n(f32::NAN, cols.len()))
                    }
                    TaskStore::Classes { values, .. } => values.push(MISSING_CLASS),
                    TaskStore::Nothing => {}
                }
                continue;
            }
            for &col in cols {
                let c = cell(col);
                if c.missing {
                    let fix = if self.mask_targets {
                        " (with `missing_targets = \"mask\"` a task's columns must be missing together)"
                    } else {
                        " (targets are never imputed; `missing_targets = \"mask\"` leaves the row unlabelled for the task)"
                    };
                    return Err(missing_err(&c, "a task column", fix));
                }
                match store {
                    TaskStore::Discover(v) => v.push(Some(c.text.to_string())),
                    TaskStore::Reals { values, binary } => {
                        let v = parse_number(&c)?;
                        if *binary && v != 0.0 && v != 1.0 {
                            return Err((
                                c.col,
                                format!("binary value {} is not 0 or 1", shown(c.text)),
                            ));
                        }
                        values.push(v);
                    }
                    TaskStore::Classes {
                        labels: Some(labels),
                        values,
                        ..
                    } => {
                        let i = labels.iter().position(|l| l == c.text).ok_or_else(|| {
                            (
                                c.col,
                                format!("class label {} is not one of {labels:?}", shown(c.text)),
                            )
                        })?;
                        values.push(i);
                    }
                    TaskStore::Classes {
                        labels: None,
                        classes,
                        values,
                    } => {
                        let i = c
                            .text
                            .parse::<usize>()
                            .ok()
                            .filter(|i| i < classes)
                            .ok_or_else(|| {
                                (
                                    c.col,
                                    format!(
                                        "class {} is not an integer in 0..{classes}",
                                        shown(c.text)
                                    ),
                                )
                            })?;
                        values.push(i);
                    }
                    TaskStore::Nothing => {}
                }
            }
        }
        Ok(())
    }

    /// The number of rows collected.
    pub fn rows(&self) -> usize {
        let feature_rows = self.features.first().map(|f| match f {
            FeatureStore::Numeric(v) => v.len(),
            FeatureStore::Categorical {
                categories: Some(_),
                index,
                ..
            } => index.len(),
            FeatureStore::Categorical { text, .. } => text.len(),
        });
        let task_rows = self.tasks.iter().find_map(|t| match t {
            TaskStore::Classes { values, .. } => Some(values.len()),
            TaskStore::Discover(v) => Some(v.len()),
            TaskStore::Reals { .. } | TaskStore::Nothing => None,
        });
        feature_rows.or(task_rows).unwrap_or(0)
    }

    /// The rows collected so far, leaving this accumulator empty with the
    /// same columns.
    pub fn take(&mut self) -> Accumulator {
        let features = self
            .features
            .iter_mut()
            .map(|f| match f {
                FeatureStore::Numeric(v) => FeatureStore::Numeric(std::mem::take(v)),
                FeatureStore::Categorical {
                    encoding,
                    categories,
                    index,
                    text,
                } => FeatureStore::Categorical {
                    encoding: *encoding,
                    categories: categories.clone(),
                    index: std::mem::take(index),
                    text: std::mem::take(text),
                },
            })
            .collect();
        let tasks = self
            .tasks
            .iter_mut()
            .map(|t| match t {
                TaskStore::Classes {
                    labels,
                    classes,
                    values,
                } => TaskStore::Classes {
                    labels: labels.clone(),
                    classes: *classes,
                    values: std::mem::take(values),
                },
                TaskStore::Discover(v) => TaskStore::Discover(std::mem::take(v)),
                TaskStore::Reals { values, binary } => TaskStore::Reals {
                    values: std::mem::take(values),
                    binary: *binary,
                },
                TaskStore::Nothing => TaskStore::Nothing,
            })
            .collect();
        Accumulator {
            features,
            tasks,
            policy: self.policy,
            mask_targets: self.mask_targets,
        }
    }

    /// The data set of the collected rows (`rows` of them), and the schema
    /// resolved from them.
    pub fn finish(
        self,
        layout: &Layout,
        schema: &CsvSchema,
        source: &str,
        name: &str,
        rows: usize,
        dropped_lines: Vec<u64>,
    ) -> Result<CsvTable> {
        let mut resolved = schema.clone();
        // Feature columns: names, encodings and the values of each column.
        let mut names = Vec::new();
        let mut mask = Vec::new();
        let mut columns: Vec<Vec<f32>> = Vec::new();
        for ((col, _), store) in layout.features.iter().zip(self.features) {
            let col_name = layout.column_name(*col);
            match store {
                FeatureStore::Numeric(v) => {
                    names.push(col_name);
                    mask.push(schema.standardize);
                    columns.push(v);
                }
                FeatureStore::Categorical {
                    encoding,
                    categories,
                    index,
                    text,
                } => {
                    let (cats, index) = match categories {
                        Some(cats) => (cats, index),
                        None => {
                            let cats = sorted_categories(text.iter().flatten().map(String::as_str));
                            let index = text
                                .iter()
                                .map(|t| {
                                    t.as_ref().map_or(f32::NAN, |t| {
                                        cats.iter().position(|c| c == t).expect("discovered") as f32
                                    })
                                })
                                .collect();
                            (cats, index)
                        }
                    };
                    if let Some(entry) = resolved
                        .categorical
                        .iter_mut()
                        .find(|c| layout_col(layout, &c.column) == Some(*col))
                    {
                        entry.categories = Some(cats.clone());
                    }
                    match encoding {
                        CategoryEncoding::Index => {
                            names.push(col_name);
                            mask.push(false);
                            columns.push(index);
                        }
                        CategoryEncoding::OneHot => {
                            for (k, cat) in cats.iter().enumerate() {
                                names.push(format!("{col_name}={cat}"));
                                mask.push(false);
                                columns.push(
                                    index
                                        .iter()
                                        .map(|&i| {
                                            if i.is_nan() {
                                                f32::NAN
                                            } else {
                                                f32::from(u8::from(i as usize == k))
                                            }
                                        })
                                        .collect(),
                                );
                            }
                        }
                    }
                }
            }
        }
        let width = columns.len();
        let mut data = vec![0.0f32; rows * width];
        for (j, column) in columns.iter().enumerate() {
            for (i, &v) in column.iter().enumerate() {
                data[i * width + j] = v;
            }
        }
        let features = Tensor::from_vec(data, &[rows, width])?;
        resolved.features = Some(
            layout
                .features
                .iter()
                .map(|(c, _)| match &layout.names {
                    Some(n) => Column::Name(n[*c].clone()),
                    None => Column::Index(*c),
                })
                .collect(),
        );

        let mut tasks = Vec::with_capacity(schema.tasks.len());
        for ((task, store), resolved_task) in
            schema.tasks.iter().zip(self.tasks).zip(&mut resolved.tasks)
        {
            let name = task.name().to_string();
            let (kind, targets) = match (task, store) {
                (TaskColumn::Classification { .. }, TaskStore::Discover(text)) => {
                    let labels = sorted_categories(text.iter().flatten().map(String::as_str));
                    if labels.len() < 2 {
                        return Err(DataError::Table {
                            source_name: source.to_string(),
                            line: None,
                            reason: format!(
                                "task {name:?}: the label column holds a single class [{}]",
                                labels
                                    .iter()
                                    .map(|l| shown(l))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        });
                    }
                    let values = discovered_indices(&text, &labels);
                    let classes = labels.len();
                    if let TaskColumn::Classification { labels: l, .. } = resolved_task {
                        *l = Some(labels);
                    }
                    (
                        TaskKind::Classification { classes },
                        Targets::Classes(values),
                    )
                }
                (
                    TaskColumn::Classification { .. },
                    TaskStore::Classes {
                        classes, values, ..
                    },
                ) => (
                    TaskKind::Classification { classes },
                    Targets::Classes(values),
                ),
                (TaskColumn::Clustering { clusters, .. }, TaskStore::Discover(text)) => {
                    let labels = sorted_categories(text.iter().flatten().map(String::as_str));
                    let values = discovered_indices(&text, &labels);
                    (
                        TaskKind::Clustering {
                            clusters: *clusters,
                        },
                        Targets::Unsupervised {
                            reference: Some(values),
                        },
                    )
                }
                (TaskColumn::Clustering { clusters, .. }, _) => (
                    TaskKind::Clustering {
                        clusters: *clusters,
                    },
                    Targets::Unsupervised { reference: None },
                ),
                (t, TaskStore::Reals { values, .. }) => {
                    let width = t.columns().len();
                    let kind = match t {
                        TaskColumn::Binary { .. } => TaskKind::Binary,
                        TaskColumn::Multilabel { .. } => TaskKind::Multilabel { labels: width },
                        _ => TaskKind::Regression { outputs: width },
                    };
                    (
                        kind,
                        Targets::Values(Tensor::from_vec(values, &[rows, width])?),
                    )
                }
                _ => unreachable!("task stores are built from the schema's tasks"),
            };
            tasks.push((TaskSpec { name, kind }, targets));
        }
        Ok(CsvTable {
            dataset: Dataset::new(name, features, tasks)?,
            schema: resolved,
            feature_names: names,
            standardize_mask: mask,
            dropped_lines,
        })
    }
}

/// The index of each label in `labels`; [`MISSING_CLASS`] for a masked one.
fn discovered_indices(text: &[Option<String>], labels: &[String]) -> Vec<usize> {
    text.iter()
        .map(|t| {
            t.as_ref().map_or(MISSING_CLASS, |t| {
                labels.iter().position(|l| l == t).expect("discovered")
            })
        })
        .collect()
}

/// The position of a schema column in the layout, if it resolves.
fn layout_col(layout: &Layout, column: &Column) -> Option<usize> {
    match (column, &layout.names) {
        (Column::Index(i), _) => Some(*i),
        (Column::Name(n), Some(names)) => names.iter().position(|h| h == n),
        (Column::Name(_), None) => None,
    }
}
