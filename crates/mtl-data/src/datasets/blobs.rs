//! Three blobs (shipped by mlxtend): 150 points in the plane.
//!
//! Features: x and y as in the file (2 columns, not standardised). Task:
//! `groups`, clustering into 3 groups, with the file's cluster ids 1..3 kept
//! as reference labels 0..2 for scoring. Split: stratified by group, 15 %
//! validation and 15 % test, seeded.

use crate::csv::read_csv_from;
use crate::dataset::Dataset;
use crate::error::Result;
use crate::schema::{CsvSchema, TaskColumn};
use crate::split::stratified;
use mtl_core::Targets;

use super::embedded;

/// Fraction of rows in each of the validation and test parts.
const HELD_OUT: f64 = 0.15;

/// Builds the three blobs with the split drawn from `seed`.
pub fn blobs(seed: u64) -> Result<Dataset> {
    let text = embedded::gunzip(embedded::THREE_BLOBS, "three_blobs.csv.gz")?;
    let mut schema = CsvSchema::new(vec![TaskColumn::Clustering {
        name: "groups".into(),
        clusters: 3,
        reference: Some(2.into()),
    }]);
    schema.header = false;
    schema.standardize = false;
    let table = read_csv_from(&text[..], "three_blobs.csv.gz", "blobs", &schema)?;
    let dataset = table.dataset;
    let split = match &dataset.targets()[0] {
        Targets::Unsupervised {
            reference: Some(groups),
        } => stratified(groups, HELD_OUT, HELD_OUT, seed)?,
        _ => unreachable!("the schema reads reference labels"),
    };
    dataset.with_split(split)
}
