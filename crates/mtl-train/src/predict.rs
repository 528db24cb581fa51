//! Prediction on new files: the preprocessing a run saved (the resolved CSV
//! schema and the standardisation fitted on its training rows), the reading of
//! a `.csv` or `.npy` input through it, and the predictions as CSV.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use mtl_core::Tensor;
use mtl_data::{read_csv, CsvSchema, DataError, Standardizer};
use mtl_losses::task::{Prediction, Task, TaskConfig};
use serde::{Deserialize, Serialize};

use crate::checkpoint;
use crate::error::{io, Result, TrainError};
use crate::fit::BEST_DIR;
use crate::prepare::Prepared;
use crate::run::run_config;
use crate::trainer::Trainer;

/// File name of the saved preprocessing inside a run directory.
pub const PREPROCESSING_FILE: &str = "preprocessing.json";

/// How raw examples become model inputs, as fitted on a run's training rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocessing {
    /// Shape of one example as the model reads it.
    pub feature_shape: Vec<usize>,
    /// For CSV data: the resolved schema without tasks (feature columns,
    /// categories), so new files are read exactly as the training file was.
    pub schema: Option<CsvSchema>,
    /// The standardisation fitted on the training rows, if any.
    pub standardizer: Option<Standardizer>,
    /// The trained tasks in order, as the model's heads were built.
    pub tasks: Vec<TaskConfig>,
    /// The label of each class index of the classification tasks read from
    /// CSV, by task name: predictions are written with these labels.
    #[serde(default)]
    pub class_labels: BTreeMap<String, Vec<String>>,
}

impl Preprocessing {
    /// The preprocessing of a prepared data set.
    pub fn of(prepared: &Prepared) -> Self {
        Preprocessing {
            feature_shape: prepared.dataset.feature_shape().to_vec(),
            schema: prepared.schema.clone(),
            standardizer: prepared.dataset.standardizer().cloned(),
            tasks: prepared
                .tasks
                .iter()
                .cloned()
                .map(TaskConfig::from)
                .collect(),
            class_labels: prepared.class_labels.clone(),
        }
    }

    /// Writes `preprocessing.json` into `run_dir` (temporary file, then
    /// rename, so a reader never sees half of it).
    pub fn save(&self, run_dir: &Path) -> Result<()> {
        let path = run_dir.join(PREPROCESSING_FILE);
        let tmp = run_dir.join(format!("{PREPROCESSING_FILE}.tmp"));
        let json = serde_json::to_string_pretty(self).map_err(|e| TrainError::Checkpoint {
            path: path.clone(),
            message: e.to_string(),
        })?;
        fs::write(&tmp, json).map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// Reads `preprocessing.json` from `run_dir`.
    pub fn load(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(PREPROCESSING_FILE);
        let text = fs::read_to_string(&path).map_err(io(&path))?;
        serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
            path,
            message: e.to_string(),
        })
    }

    fn width(&self) -> usize {
        self.feature_shape.iter().product()
    }

    /// Reads the examples of a `.csv` or `.npy` file and returns them as the
    /// model's inputs `[n, feature_shape...]`, standardised as in training.
    ///
    /// A CSV file of a run trained on CSV data is read with the saved schema
    /// (columns by name; target columns may be absent). For a built-in data
    /// set, a CSV file holds one example per line, every column a feature,
    /// with or without a header line. An NPY file holds `[n, feature_shape...]`
    /// or `[n, width]` numbers.
    pub fn read_input(&self, path: &Path) -> Result<Tensor> {
        let bad = |reason: String| {
            TrainError::Data(DataError::InvalidArgument {
                what: path.display().to_string(),
                reason,
            })
        };
        let extension = path.extension().map(|e| e.to_string_lossy().to_lowercase());
        let (n, mut flat) = match extension.as_deref() {
            Some("npy") => {
                let array = mtl_data::npy::read(path)?;
                let Some(&n) = array.shape.first() else {
                    return Err(bad("a scalar array holds no examples".into()));
                };
                let per: usize = array.shape[1..].iter().product();
                if array.shape[1..] != self.feature_shape[..] && per != self.width() {
                    return Err(bad(format!(
                        "shape {:?}: expected [n, {}] or [n, {}]",
                        array.shape,
                        self.feature_shape
                            .iter()
                            .map(|d| d.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                        self.width()
                    )));
                }
                (n, Tensor::from_vec(array.to_f32(), &[n, self.width()])?)
            }
            Some("csv") | Some("tsv") | Some("txt") => {
                let schema = match &self.schema {
                    Some(s) => s.clone(),
                    None => {
                        let mut s = CsvSchema::new(Vec::new());
                        s.header = first_line_is_header(path)?;
                        s.standardize = false;
                        s
                    }
                };
                let table = read_csv(path, &schema)?;
                let x = table.dataset.features()?.clone();
                let n = x.shape()[0];
                if x.len() != n * self.width() {
                    return Err(bad(format!(
                        "{} feature columns, the model reads {}",
                        x.len() / n.max(1),
                        self.width()
                    )));
                }
                (n, x.reshape(&[n, self.width()])?)
            }
            _ => return Err(bad("unknown input format: give a .csv or .npy file".into())),
        };
        if let Some(s) = &self.standardizer {
            s.apply(&mut flat)?;
        }
        if let Some(row) = flat
            .data()
            .chunks(self.width().max(1))
            .position(|r| r.iter().any(|v| !v.is_finite()))
        {
            return Err(bad(format!(
                "example {row} holds a value that is not a finite number"
            )));
        }
        let mut shape = vec![n];
        shape.extend_from_slice(&self.feature_shape);
        Ok(flat.reshape(&shape)?)
    }
}

/// Rebuilds a run's model with its best parameters and its preprocessing,
/// without reading its training data.
pub fn load_model(run_dir: &Path) -> Result<(Trainer, Preprocessing)> {
    let config = run_config(run_dir)?;
    let pre = Preprocessing::load(run_dir)?;
    let tasks = pre
        .tasks
        .iter()
        .map(TaskConfig::build)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let index = (0..tasks.len()).collect();
    let mut trainer = Trainer::from_config(&config, &pre.feature_shape, tasks, index)?;
    checkpoint::load(&run_dir.join(BEST_DIR), &mut trainer.ps)?;
    Ok((trainer, pre))
}

/// Whether the first line of a delimited file has a field that is not a number.
fn first_line_is_header(path: &Path) -> Result<bool> {
    use std::io::BufRead;
    let file = fs::File::open(path).map_err(io(path))?;
    let mut line = String::new();
    std::io::BufReader::new(file)
        .read_line(&mut line)
        .map_err(io(path))?;
    Ok(line
        .trim()
        .split([',', '\t', ';'])
        .any(|f| !f.trim().is_empty() && f.trim().parse::<f64>().is_err()))
}

/// Example `i` of a prediction as one CSV cell (several values joined by `;`,
/// a class by its label when `labels` has one).
fn cell(p: &Prediction, i: usize, labels: Option<&Vec<String>>) -> String {
    let row = |t: &Tensor| {
        let w = t.shape().get(1).copied().unwrap_or(1);
        t.data()[i * w..(i + 1) * w]
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(";")
    };
    match p {
        Prediction::Classes(c) => match labels.and_then(|l| l.get(c[i])) {
            Some(label) => csv_field(label),
            None => c[i].to_string(),
        },
        Prediction::Clusters(c) => c[i].to_string(),
        Prediction::Probabilities(t) | Prediction::Values(t) => row(t),
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The predictions as CSV: a `row` column holding `ids` (one per example),
/// then one column per task (class label or index, cluster, probabilities or
/// values; several values joined by `;`).
pub fn to_csv(
    tasks: &[Task],
    outputs: &[Tensor],
    ids: &[usize],
    labels: &BTreeMap<String, Vec<String>>,
) -> Result<String> {
    let preds = tasks
        .iter()
        .zip(outputs)
        .map(|(t, o)| t.predict(o))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut text = String::from("row");
    for t in tasks {
        write!(text, ",{}", csv_field(t.name())).expect("writing to a string");
    }
    text.push('\n');
    for (i, id) in ids.iter().enumerate() {
        write!(text, "{id}").expect("writing to a string");
        for (p, t) in preds.iter().zip(tasks) {
            text.push(',');
            text.push_str(&cell(p, i, labels.get(t.name())));
        }
        text.push('\n');
    }
    Ok(text)
}

/// Writes `text` to `output`, or to standard output when none is given.
pub fn write_output(output: Option<PathBuf>, text: &str) -> Result<()> {
    match output {
        Some(path) => fs::write(&path, text).map_err(io(&path)),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}
