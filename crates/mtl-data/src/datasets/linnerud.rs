//! Linnerud (Tenenhaus 1998): 20 middle-aged men.
//!
//! Features: chins, situps and jumps (3 columns), standardised with the
//! statistics of the training part. Tasks: `weight`, `waist` and `pulse`,
//! three one-output regressions in the file's units. Split: 3 validation and
//! 3 test rows (15 % each), seeded.

use crate::csv::read_csv_from;
use crate::dataset::Dataset;
use crate::error::Result;
use crate::schema::{Column, CsvSchema, TaskColumn};
use crate::split::random;

use super::embedded;

/// Fraction of rows in each of the validation and test parts.
const HELD_OUT: f64 = 0.15;

/// Builds Linnerud with the split drawn from `seed`.
pub fn linnerud(seed: u64) -> Result<Dataset> {
    let mut exercise = CsvSchema::new(Vec::new());
    exercise.delimiter = ' ';
    let exercise = read_csv_from(
        embedded::LINNERUD_EXERCISE,
        "linnerud_exercise.csv",
        "linnerud",
        &exercise,
    )?;
    let regression = |name: &str, column: &str| TaskColumn::Regression {
        name: name.into(),
        columns: vec![Column::from(column)],
    };
    let mut physiological = CsvSchema::new(vec![
        regression("weight", "Weight"),
        regression("waist", "Waist"),
        regression("pulse", "Pulse"),
    ]);
    physiological.delimiter = ' ';
    physiological.features = Some(Vec::new());
    let physiological = read_csv_from(
        embedded::LINNERUD_PHYSIOLOGICAL,
        "linnerud_physiological.csv",
        "linnerud",
        &physiological,
    )?;
    let tasks = physiological
        .dataset
        .tasks()
        .iter()
        .zip(physiological.dataset.targets())
        .map(|(spec, targets)| (spec.clone(), targets.clone()))
        .collect();
    let mut dataset = Dataset::new("linnerud", exercise.dataset.features()?.clone(), tasks)?;
    let split = random(dataset.len(), HELD_OUT, HELD_OUT, seed)?;
    dataset.standardize(&split.train)?;
    dataset.with_split(split)
}
