//! MultiMNIST: two MNIST digits overlaid on one canvas, after Sener and
//! Koltun (NeurIPS 2018, §4.1), built from the 5,000 bundled MNIST digits.
//!
//! Construction, exactly:
//! 1. The 5,000 source digits (500 per class) are split into disjoint pools
//!    stratified by digit: 4,000 for training and 1,000 for test (400 and 100
//!    per class), by a ChaCha8 generator seeded with `seed` (stream 0).
//! 2. Each example draws, from its pool, a left digit uniformly and a right
//!    digit uniformly among the other digits of the pool, then four shifts
//!    `dy_l, dx_l, dy_r, dx_r`, each uniform in `0..=4` (training examples
//!    from stream 1, test examples from stream 2, in example order).
//! 3. On a 36x36 canvas the left digit's 28x28 image is placed with its top
//!    left corner at `(dy_l, dx_l)` and the right digit's at
//!    `(8 - dy_r, 8 - dx_r)`: the left digit sits toward the top left, the
//!    right one toward the bottom right, and they overlap in at least the
//!    central 20x20 pixels.
//! 4. Each pixel is the maximum of the two images there, divided by 255.
//!
//! Rows `0..train` are the training examples and the next `test` rows the
//! test examples; the predefined split has no validation part (carve one
//! from training with [`crate::Split::carve_validation`]). Features are
//! `[n, 1, 36, 36]`. Tasks: `left` and `right` (10 classes each) and, when
//! [`MultiMnist::sum_task`] is set, `sum` = left + right (regression, 0..18).
//!
//! The defaults, 20,000 training and 5,000 test examples, hold 130 MB of
//! features and take a fraction of a second to build; an epoch of a small MLP
//! over them runs in seconds on a laptop CPU. Smaller settings train faster.

use mtl_core::{Targets, TaskKind, TaskSpec, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::embedded;
use crate::csv::read_csv_from;
use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::schema::{CsvSchema, TaskColumn};
use crate::split::{stratified, Split};

/// Side of a source MNIST image.
pub const SOURCE_SIDE: usize = 28;
/// Side of the MultiMNIST canvas.
pub const CANVAS: usize = 36;
/// Largest shift of either digit, in pixels (`CANVAS - SOURCE_SIDE` is 8).
pub const MAX_SHIFT: usize = 4;

/// Fraction of the source digits in the test pool.
const TEST_POOL_FRACTION: f64 = 0.2;

/// MultiMNIST settings (see the module docs for the construction).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiMnist {
    /// Number of training examples (default 20,000).
    pub train: usize,
    /// Number of test examples (default 5,000).
    pub test: usize,
    /// Include the `sum` regression task (default true).
    pub sum_task: bool,
}

impl Default for MultiMnist {
    fn default() -> Self {
        MultiMnist {
            train: 20_000,
            test: 5_000,
            sum_task: true,
        }
    }
}

/// The bundled source digits: `[5000, 784]` pixels 0..255 and the labels.
pub(crate) fn source_digits() -> Result<(Tensor, Vec<usize>)> {
    let text = embedded::gunzip(embedded::MNIST_5K, "mnist_5k.csv.gz")?;
    let mut schema = CsvSchema::new(vec![TaskColumn::Classification {
        name: "digit".into(),
        column: 784.into(),
        classes: Some(10),
        labels: None,
    }]);
    schema.header = false;
    schema.standardize = false;
    let table = read_csv_from(&text[..], "mnist_5k.csv.gz", "mnist", &schema)?;
    let labels = table.dataset.class_labels("digit")?.to_vec();
    Ok((table.dataset.features()?.clone(), labels))
}

/// How one example was composed: which source digits (rows of the bundled
/// file) and where their top-left corners sit on the canvas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Composition {
    /// Source row of the left digit.
    pub left_source: usize,
    /// Source row of the right digit.
    pub right_source: usize,
    /// `(row, column)` of the left digit's top-left corner, each in `0..=4`.
    pub left_at: (usize, usize),
    /// `(row, column)` of the right digit's top-left corner, each in `4..=8`.
    pub right_at: (usize, usize),
}

impl MultiMnist {
    /// Which source digits (rows of the bundled file) form the training and
    /// test pools for `seed`.
    pub fn pools(seed: u64) -> Result<Split> {
        let (_, labels) = source_digits()?;
        Self::pools_of(&labels, seed)
    }

    fn pools_of(labels: &[usize], seed: u64) -> Result<Split> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        stratified(labels, 0.0, TEST_POOL_FRACTION, rng.gen())
    }

    /// How every example of the data set built from `seed` is composed, in
    /// row order (training examples first).
    pub fn compositions(&self, seed: u64) -> Result<Vec<Composition>> {
        let (_, labels) = source_digits()?;
        self.compose(&Self::pools_of(&labels, seed)?, seed)
    }

    fn compose(&self, pools: &Split, seed: u64) -> Result<Vec<Composition>> {
        if self.train == 0 || self.test == 0 {
            return Err(DataError::invalid(
                "multimnist",
                format!(
                    "needs at least one training and one test example (got {} and {})",
                    self.train, self.test
                ),
            ));
        }
        let side = CANVAS - SOURCE_SIDE;
        let mut out = Vec::with_capacity(self.train + self.test);
        for (stream, pool, count) in [(1, &pools.train, self.train), (2, &pools.test, self.test)] {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(stream);
            for _ in 0..count {
                let a = rng.gen_range(0..pool.len());
                let mut b = rng.gen_range(0..pool.len() - 1);
                if b >= a {
                    b += 1;
                }
                let s: [usize; 4] = std::array::from_fn(|_| rng.gen_range(0..=MAX_SHIFT));
                out.push(Composition {
                    left_source: pool[a],
                    right_source: pool[b],
                    left_at: (s[0], s[1]),
                    right_at: (side - s[2], side - s[3]),
                });
            }
        }
        Ok(out)
    }

    /// Builds the data set from `seed`.
    pub fn build(&self, seed: u64) -> Result<Dataset> {
        let (pixels, labels) = source_digits()?;
        let compositions = self.compose(&Self::pools_of(&labels, seed)?, seed)?;
        let n = compositions.len();
        let mut features = vec![0.0f32; n * CANVAS * CANVAS];
        for (canvas, c) in features
            .chunks_exact_mut(CANVAS * CANVAS)
            .zip(&compositions)
        {
            overlay(canvas, source(&pixels, c.left_source), c.left_at);
            overlay(canvas, source(&pixels, c.right_source), c.right_at);
        }
        features.iter_mut().for_each(|p| *p /= 255.0);
        let left: Vec<usize> = compositions.iter().map(|c| labels[c.left_source]).collect();
        let right: Vec<usize> = compositions
            .iter()
            .map(|c| labels[c.right_source])
            .collect();
        let sum: Vec<f32> = left
            .iter()
            .zip(&right)
            .map(|(l, r)| (l + r) as f32)
            .collect();
        let class = |name: &str, values: Vec<usize>| {
            (
                TaskSpec {
                    name: name.into(),
                    kind: TaskKind::Classification { classes: 10 },
                },
                Targets::Classes(values),
            )
        };
        let mut tasks = vec![class("left", left), class("right", right)];
        if self.sum_task {
            tasks.push((
                TaskSpec {
                    name: "sum".into(),
                    kind: TaskKind::Regression { outputs: 1 },
                },
                Targets::Values(Tensor::from_vec(sum, &[n, 1])?),
            ));
        }
        let x = Tensor::from_vec(features, &[n, 1, CANVAS, CANVAS])?;
        Dataset::new("multimnist", x, tasks)?.with_split(Split {
            train: (0..self.train).collect(),
            validation: Vec::new(),
            test: (self.train..n).collect(),
        })
    }
}

fn source(pixels: &Tensor, row: usize) -> &[f32] {
    let len = SOURCE_SIDE * SOURCE_SIDE;
    &pixels.data()[row * len..(row + 1) * len]
}

/// Writes `digit` onto `canvas` with its top-left corner at `(top, left)`,
/// keeping the larger value where pixels overlap.
fn overlay(canvas: &mut [f32], digit: &[f32], (top, left): (usize, usize)) {
    for (r, src) in digit.chunks_exact(SOURCE_SIDE).enumerate() {
        let start = (top + r) * CANVAS + left;
        for (dst, &v) in canvas[start..start + SOURCE_SIDE].iter_mut().zip(src) {
            *dst = dst.max(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_canvas_is_the_pixelwise_max_of_its_two_placed_digits() {
        let config = MultiMnist {
            train: 150,
            test: 50,
            sum_task: false,
        };
        let ds = config.build(9).unwrap();
        let comps = config.compositions(9).unwrap();
        let (pixels, labels) = source_digits().unwrap();
        let per = CANVAS * CANVAS;
        for (i, (c, canvas)) in comps
            .iter()
            .zip(ds.features().unwrap().data().chunks(per))
            .enumerate()
        {
            let mut alone_left = vec![0.0f32; per];
            overlay(&mut alone_left, source(&pixels, c.left_source), c.left_at);
            let mut alone_right = vec![0.0f32; per];
            overlay(
                &mut alone_right,
                source(&pixels, c.right_source),
                c.right_at,
            );
            let both: Vec<f32> = alone_left
                .iter()
                .zip(&alone_right)
                .map(|(a, b)| a.max(*b) / 255.0)
                .collect();
            assert_eq!(canvas, &both[..], "example {i}");
            // The overlay differs from either digit alone.
            let scaled = |v: &[f32]| v.iter().map(|p| p / 255.0).collect::<Vec<f32>>();
            assert_ne!(canvas, &scaled(&alone_left)[..], "example {i}");
            assert_ne!(canvas, &scaled(&alone_right)[..], "example {i}");
            assert_eq!(ds.class_labels("left").unwrap()[i], labels[c.left_source]);
            assert_eq!(ds.class_labels("right").unwrap()[i], labels[c.right_source]);
        }
    }
}
