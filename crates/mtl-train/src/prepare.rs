//! Turns the `[data]` and `[[tasks]]` tables into a data set, its split and
//! the tasks to train.

use std::collections::BTreeMap;

use mtl_data::{datasets, read_csv, CsvSchema, Dataset, Split, SplitConfig, TaskColumn};
use mtl_losses::task::Task;

use crate::config::RunConfig;
use crate::error::{Result, TrainError};

/// Fraction of the training rows set aside for validation when a data set
/// comes without a validation part.
pub const VALIDATION_FRACTION: f64 = 0.1;

/// A data set ready to train on.
#[derive(Debug)]
pub struct Prepared {
    /// Features and targets (standardised where the data set asks).
    pub dataset: Dataset,
    /// Training, validation and test rows.
    pub split: Split,
    /// The tasks to train, in order.
    pub tasks: Vec<Task>,
    /// For each task, the index of its targets in the data set.
    pub target_index: Vec<usize>,
    /// For CSV data: the resolved schema without its tasks, to read new
    /// files for prediction exactly as the training file was read.
    pub schema: Option<CsvSchema>,
    /// For CSV data: the label of each class index of each classification
    /// task, by task name.
    pub class_labels: BTreeMap<String, Vec<String>>,
}

/// Loads the data set of `config` and matches its tasks.
pub fn prepare(config: &RunConfig) -> Result<Prepared> {
    let mut resolved = None;
    let mut class_labels = BTreeMap::new();
    let (dataset, mut split) = match (&config.data.builtin, &config.data.csv, &config.data.schema) {
        (Some(name), _, _) => {
            let ds = datasets::load(name, config.seed)?;
            let split = match ds.split() {
                Some(s) if !s.validation.is_empty() => s.clone(),
                Some(s) => s.carve_validation(VALIDATION_FRACTION, config.seed)?,
                None => SplitConfig::default().split(&ds)?,
            };
            (ds, split)
        }
        (None, Some(path), Some(schema)) => {
            let table = read_csv(path, schema)?;
            let split = config
                .data
                .split
                .clone()
                .unwrap_or_default()
                .split(&table.dataset)?;
            resolved = Some(table.schema.features_only());
            for column in &table.schema.tasks {
                if let TaskColumn::Classification {
                    name,
                    labels: Some(labels),
                    ..
                } = column
                {
                    class_labels.insert(name.clone(), labels.clone());
                }
            }
            let ds = table.fit_transform(&split.train)?;
            (ds, split)
        }
        _ => {
            return Err(TrainError::Config {
                path: "[data]".into(),
                message: "give `builtin` or `csv` with a schema".into(),
            })
        }
    };
    if let Some(limit) = config.data.limit {
        split.train.truncate(limit);
    }
    let available = || {
        dataset
            .tasks()
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut tasks = Vec::new();
    let mut target_index = Vec::new();
    if config.tasks.is_empty() {
        for (i, spec) in dataset.tasks().iter().enumerate() {
            tasks.push(Task::with_default_loss(spec.clone())?);
            target_index.push(i);
        }
    } else {
        for tc in &config.tasks {
            let task = tc.build()?;
            let Some(i) = dataset.tasks().iter().position(|s| s.name == tc.name) else {
                return Err(TrainError::Config {
                    path: "[[tasks]]".into(),
                    message: format!(
                        "task {:?} is not in data set {:?}; it has: {}",
                        tc.name,
                        dataset.name(),
                        available()
                    ),
                });
            };
            if dataset.tasks()[i].kind != *task.kind() {
                return Err(TrainError::Config {
                    path: "[[tasks]]".into(),
                    message: format!(
                        "task {:?} is {:?} in the configuration but {:?} in the data",
                        tc.name,
                        task.kind(),
                        dataset.tasks()[i].kind
                    ),
                });
            }
            tasks.push(task);
            target_index.push(i);
        }
    }
    if tasks.is_empty() {
        return Err(TrainError::Config {
            path: "[[tasks]]".into(),
            message: format!(
                "no task to train: data set {:?} has none (a CSV file's tasks are listed in [data.schema])",
                dataset.name()
            ),
        });
    }
    Ok(Prepared {
        dataset,
        split,
        tasks,
        target_index,
        schema: resolved,
        class_labels,
    })
}
