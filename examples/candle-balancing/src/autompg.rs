//! The bundled UCI Auto MPG data (392 cars, `data/autompg.csv.gz`), read with
//! `flate2` and `csv`, split at random into train and test, and standardised
//! with the training statistics.
//!
//! Columns of the file: cylinders, displacement, horsepower, weight,
//! acceleration, model year, origin (1 = USA, 2 = Europe, 3 = Japan), car
//! name, mpg. The six numeric columns are the inputs; mpg and origin are the
//! two targets.

use candle_core::{Device, Tensor};
use flate2::read::GzDecoder;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// The gzipped CSV, embedded so that the example runs from any directory.
const AUTO_MPG_GZ: &[u8] = include_bytes!("../../../data/autompg.csv.gz");

/// Number of input features (the numeric columns 0..6).
pub const FEATURES: usize = 6;
/// Number of origin classes.
pub const ORIGINS: usize = 3;
/// Columns of the file.
const COLUMNS: usize = 9;
const ORIGIN_COLUMN: usize = 6;
const MPG_COLUMN: usize = 8;

/// One split, as candle tensors on the CPU.
pub struct Split {
    /// Standardised inputs, `n × FEATURES`.
    pub features: Tensor,
    /// Standardised mpg, `n`.
    pub mpg: Tensor,
    /// Origin class `0..ORIGINS`, `n` (`u32`).
    pub origin: Tensor,
    /// Number of rows.
    pub len: usize,
}

impl Split {
    /// The rows at `indices`, in that order.
    ///
    /// # Errors
    /// A candle error if an index is out of range.
    pub fn select(&self, indices: &[u32]) -> Result<Split> {
        let idx = Tensor::new(indices, self.features.device())?;
        Ok(Split {
            features: self.features.index_select(&idx, 0)?,
            mpg: self.mpg.index_select(&idx, 0)?,
            origin: self.origin.index_select(&idx, 0)?,
            len: indices.len(),
        })
    }
}

/// Train and test splits, and the training standard deviation of mpg to turn
/// standardised errors back into miles per gallon.
pub struct AutoMpg {
    /// The training rows.
    pub train: Split,
    /// The held-out rows.
    pub test: Split,
    /// Training standard deviation of mpg.
    pub mpg_std: f32,
}

/// One car: inputs, mpg, origin class.
struct Car {
    features: [f32; FEATURES],
    mpg: f32,
    origin: u32,
}

/// Reads the bundled file, shuffles its rows with `seed`, keeps
/// `test_fraction` of them for the test split and standardises every input
/// and mpg with the statistics of the training rows.
///
/// # Errors
/// [`Error::Csv`] or [`Error::Data`] if the file does not parse.
pub fn load(seed: u64, test_fraction: f64, device: &Device) -> Result<AutoMpg> {
    let mut cars = read_cars()?;
    cars.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let n_test = (cars.len() as f64 * test_fraction).round() as usize;
    let (test, train) = cars.split_at(n_test);

    let mut mean = [0.0f64; FEATURES + 1];
    let mut var = [0.0f64; FEATURES + 1];
    let columns = |car: &Car| {
        let mut c = [0.0f64; FEATURES + 1];
        for (dst, &x) in c.iter_mut().zip(&car.features) {
            *dst = f64::from(x);
        }
        c[FEATURES] = f64::from(car.mpg);
        c
    };
    for car in train {
        for (m, x) in mean.iter_mut().zip(columns(car)) {
            *m += x / train.len() as f64;
        }
    }
    for car in train {
        for ((v, m), x) in var.iter_mut().zip(&mean).zip(columns(car)) {
            *v += (x - m) * (x - m) / train.len() as f64;
        }
    }
    let std: Vec<f64> = var.iter().map(|v| v.sqrt().max(f64::EPSILON)).collect();

    let to_split = |rows: &[Car]| -> Result<Split> {
        let mut features = Vec::with_capacity(rows.len() * FEATURES);
        let mut mpg = Vec::with_capacity(rows.len());
        for car in rows {
            let c = columns(car);
            for j in 0..FEATURES {
                features.push(((c[j] - mean[j]) / std[j]) as f32);
            }
            mpg.push(((c[FEATURES] - mean[FEATURES]) / std[FEATURES]) as f32);
        }
        let origin: Vec<u32> = rows.iter().map(|car| car.origin).collect();
        Ok(Split {
            features: Tensor::from_vec(features, (rows.len(), FEATURES), device)?,
            mpg: Tensor::from_vec(mpg, rows.len(), device)?,
            origin: Tensor::from_vec(origin, rows.len(), device)?,
            len: rows.len(),
        })
    };
    Ok(AutoMpg {
        train: to_split(train)?,
        test: to_split(test)?,
        mpg_std: std[FEATURES] as f32,
    })
}

/// Parses every row of the embedded file.
fn read_cars() -> Result<Vec<Car>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(GzDecoder::new(AUTO_MPG_GZ));
    let mut cars = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record?;
        let row = i + 1;
        if record.len() != COLUMNS {
            return Err(Error::Data {
                row,
                column: record.len(),
                reason: format!("expected {COLUMNS} columns, found {}", record.len()),
            });
        }
        let number = |column: usize| -> Result<f32> {
            let field = &record[column];
            match field.trim().parse::<f32>() {
                Ok(x) if x.is_finite() => Ok(x),
                _ => Err(Error::Data {
                    row,
                    column,
                    reason: format!("`{field}` is not a finite number"),
                }),
            }
        };
        let mut features = [0.0f32; FEATURES];
        for (j, x) in features.iter_mut().enumerate() {
            *x = number(j)?;
        }
        let origin = match record[ORIGIN_COLUMN].trim() {
            "1" => 0,
            "2" => 1,
            "3" => 2,
            other => {
                return Err(Error::Data {
                    row,
                    column: ORIGIN_COLUMN,
                    reason: format!("origin `{other}` is not 1, 2 or 3"),
                })
            }
        };
        cars.push(Car {
            features,
            mpg: number(MPG_COLUMN)?,
            origin,
        });
    }
    Ok(cars)
}
