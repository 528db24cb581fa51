//! Optical digits (UCI, Alpaydin and Kaynak 1998, test part): 1,797 8x8
//! images of handwritten digits.
//!
//! Features: `[n, 1, 8, 8]`, pixel counts 0..16 divided by 16. Tasks: `digit`
//! (10 classes) and `groups` (clustering into 10 groups; the digit labels are
//! kept as reference labels for NMI and ARI only). Split: stratified by digit,
//! 15 % validation and 15 % test, seeded.

use mtl_core::{Targets, TaskKind, TaskSpec};

use crate::csv::read_csv_from;
use crate::dataset::Dataset;
use crate::error::Result;
use crate::schema::{CsvSchema, TaskColumn};
use crate::split::stratified;

use super::embedded;

/// Fraction of rows in each of the validation and test parts.
const HELD_OUT: f64 = 0.15;
/// The largest pixel count in the file.
const MAX_COUNT: f32 = 16.0;

/// Builds the digits data set with the split drawn from `seed`.
pub fn digits(seed: u64) -> Result<Dataset> {
    let text = embedded::gunzip(embedded::DIGITS, "digits.csv.gz")?;
    let mut schema = CsvSchema::new(vec![TaskColumn::Classification {
        name: "digit".into(),
        column: 64.into(),
        classes: Some(10),
        labels: None,
    }]);
    schema.header = false;
    schema.standardize = false;
    let table = read_csv_from(&text[..], "digits.csv.gz", "digits", &schema)?;
    let labels = table.dataset.class_labels("digit")?.to_vec();
    let n = labels.len();
    let x = table
        .dataset
        .features()?
        .map(|v| v / MAX_COUNT)
        .reshape(&[n, 1, 8, 8])?;
    let dataset = Dataset::new(
        "digits",
        x,
        vec![
            (
                TaskSpec {
                    name: "digit".into(),
                    kind: TaskKind::Classification { classes: 10 },
                },
                Targets::Classes(labels.clone()),
            ),
            (
                TaskSpec {
                    name: "groups".into(),
                    kind: TaskKind::Clustering { clusters: 10 },
                },
                Targets::Unsupervised {
                    reference: Some(labels.clone()),
                },
            ),
        ],
    )?;
    dataset.with_split(stratified(&labels, HELD_OUT, HELD_OUT, seed)?)
}
