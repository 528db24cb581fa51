//! Turns the `[data]` and `[[tasks]]` tables of a validated configuration
//! into a data set, its split and the tasks to train.

use std::collections::BTreeMap;

use mtl_core::TaskSpec;
use mtl_data::{datasets, read_csv, CsvSchema, Dataset, Split, SplitConfig, TaskColumn};
use mtl_losses::task::Task;

use crate::config::{DataSource, ValidRunConfig};
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

/// The split a data set carries (with validation rows carved from the
/// training rows when it has none), or the seeded fractions of `config`.
fn split_of(ds: &Dataset, config: Option<&SplitConfig>, seed: u64) -> Result<Split> {
    Ok(match ds.split() {
        Some(s) if !s.validation.is_empty() => s.clone(),
        Some(s) => s.carve_validation(VALIDATION_FRACTION, seed)?,
        None => config.cloned().unwrap_or_default().split(ds)?,
    })
}

/// Loads the data set of `config` and matches its tasks.
pub fn prepare(config: &ValidRunConfig) -> Result<Prepared> {
    let mut resolved = None;
    let mut class_labels = BTreeMap::new();
    let (dataset, mut split) = match &config.data.source {
        DataSource::Builtin { name } => {
            let ds = datasets::load(name, config.seed)?;
            let split = split_of(&ds, None, config.seed)?;
            (ds, split)
        }
        DataSource::Csv {
            path,
            schema,
            split,
        } => {
            let table = read_csv(path, schema)?;
            let split = split.clone().unwrap_or_default().split(&table.dataset)?;
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
        DataSource::Arrays { arrays, split } => {
            let declared: Vec<TaskSpec> = config.tasks().iter().map(|t| t.spec().clone()).collect();
            let ds = arrays.load(&declared)?;
            let split = split_of(&ds, split.as_ref(), config.seed)?;
            (ds, split)
        }
    };
    if let Some(limit) = config.data.limit {
        split.train.truncate(limit.get());
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
    if config.tasks().is_empty() {
        for (i, spec) in dataset.tasks().iter().enumerate() {
            tasks.push(Task::with_default_loss(spec.clone())?);
            target_index.push(i);
        }
    } else {
        for task in config.tasks() {
            let Some(i) = dataset.tasks().iter().position(|s| s.name == task.name()) else {
                return Err(TrainError::Config {
                    path: "[[tasks]]".into(),
                    message: format!(
                        "task {:?} is not in data set {:?}; it has: {}",
                        task.name(),
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
                        task.name(),
                        task.kind(),
                        dataset.tasks()[i].kind
                    ),
                });
            }
            tasks.push(task.clone());
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
