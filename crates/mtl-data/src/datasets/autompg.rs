//! Auto MPG (UCI, Quinlan 1993): 392 cars with complete records.
//!
//! Features: cylinders, displacement, horsepower, weight, acceleration and
//! model year (6 columns), standardised with the mean and standard deviation
//! of the training part. Tasks: `mpg` (regression, miles per gallon, not
//! standardised) and `origin` (3 classes: 0 = USA, 1 = Europe, 2 = Japan, from
//! the file's codes 1, 2, 3). The car name is ignored. Split: stratified by
//! origin, 15 % validation and 15 % test, seeded.

use crate::csv::read_csv_from;
use crate::dataset::Dataset;
use crate::error::Result;
use crate::schema::{CsvSchema, TaskColumn};
use crate::split::stratified;

use super::embedded;

/// Fraction of rows in each of the validation and test parts.
const HELD_OUT: f64 = 0.15;

/// Builds Auto MPG with the split drawn from `seed`.
pub fn auto_mpg(seed: u64) -> Result<Dataset> {
    let text = embedded::gunzip(embedded::AUTOMPG, "autompg.csv.gz")?;
    let mut schema = CsvSchema::new(vec![
        TaskColumn::Regression {
            name: "mpg".into(),
            columns: vec![8.into()],
        },
        TaskColumn::Classification {
            name: "origin".into(),
            column: 6.into(),
            classes: None,
            labels: Some(vec!["1".into(), "2".into(), "3".into()]),
        },
    ]);
    schema.header = false;
    schema.ignore = vec![7.into()];
    let table = read_csv_from(&text[..], "autompg.csv.gz", "autompg", &schema)?;
    let split = stratified(
        table.dataset.class_labels("origin")?,
        HELD_OUT,
        HELD_OUT,
        seed,
    )?;
    table.fit_transform(&split.train)?.with_split(split)
}
