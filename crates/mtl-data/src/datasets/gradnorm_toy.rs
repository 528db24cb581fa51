//! The synthetic regression problem of GradNorm (Chen et al., ICML 2018, §4).
//!
//! Task `i` maps an input `x ∈ R^250` to `f_i(x) = σ_i · tanh((B + ε_i) x)`
//! in `R^100`, where `B` (shared) and `ε_i` (task-specific) are constant
//! `100 x 250` matrices with i.i.d. entries from `N(0, 10²)` and
//! `N(0, 3.5²)` (standard deviations 10 and 3.5, as in the public
//! re-implementation `LucasBoTang/GradNorm`), and `σ_i` sets the task's
//! output scale. The paper does not give the inputs or the sample count; like
//! that re-implementation we draw `x ~ U(0, 1)^250` and 10,000 samples.
//!
//! Randomness: one ChaCha8 generator seeded with `seed` draws `B`, then each
//! `ε_i` in task order, then the inputs row by row. Targets are computed in
//! f64 one row at a time (in parallel over rows, so the result does not
//! depend on the thread count) and rounded to f32. Split: 10 % validation and
//! 10 % test, seeded with `seed`.

use mtl_core::{Targets, TaskKind, TaskSpec, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};
use rayon::prelude::*;

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::split::random;

/// Standard deviation of the shared matrix `B`.
pub const SHARED_STD: f64 = 10.0;
/// Standard deviation of each task-specific matrix `ε_i`.
pub const TASK_STD: f64 = 3.5;
/// Fraction of rows in each of the validation and test parts.
const HELD_OUT: f64 = 0.1;

/// Settings of the GradNorm toy problem.
#[derive(Clone, Debug, PartialEq)]
pub struct GradNormToy {
    /// Output scale `σ_i` of each task; their number is the number of tasks.
    pub sigmas: Vec<f64>,
    /// Number of examples (default 10,000).
    pub samples: usize,
    /// Input dimension (default 250).
    pub inputs: usize,
    /// Output dimension of each task (default 100).
    pub outputs: usize,
}

impl Default for GradNormToy {
    /// Two tasks with `σ = (1, 100)`, the paper's T = 2 setting.
    fn default() -> Self {
        GradNormToy {
            sigmas: vec![1.0, 100.0],
            samples: 10_000,
            inputs: 250,
            outputs: 100,
        }
    }
}

impl GradNormToy {
    /// Ten tasks with the scales of `LucasBoTang/GradNorm`'s T = 10 run:
    /// 48, 3, 54, 16, 9, 30, 52, 26, 47, 81 (the paper only says they are
    /// drawn from a broad normal distribution).
    pub fn ten_tasks() -> Self {
        GradNormToy {
            sigmas: vec![48.0, 3.0, 54.0, 16.0, 9.0, 30.0, 52.0, 26.0, 47.0, 81.0],
            ..GradNormToy::default()
        }
    }

    /// Builds the data set from `seed`; tasks are named `task_0`, `task_1`, ...
    pub fn build(&self, seed: u64) -> Result<Dataset> {
        if self.sigmas.is_empty() || self.samples == 0 || self.inputs == 0 || self.outputs == 0 {
            return Err(DataError::invalid(
                "gradnorm-toy",
                "needs at least one task, sample, input and output",
            ));
        }
        if let Some(s) = self.sigmas.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(DataError::invalid(
                "gradnorm-toy sigma",
                format!("{s} is not a positive number"),
            ));
        }
        let (d, m) = (self.inputs, self.outputs);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let shared = Normal::new(0.0, SHARED_STD).expect("positive std");
        let specific = Normal::new(0.0, TASK_STD).expect("positive std");
        let b: Vec<f64> = (0..m * d).map(|_| shared.sample(&mut rng)).collect();
        let weights: Vec<Vec<f64>> = self
            .sigmas
            .iter()
            .map(|_| {
                b.iter()
                    .map(|&bij| bij + specific.sample(&mut rng))
                    .collect()
            })
            .collect();
        let uniform = Uniform::new(0.0f32, 1.0);
        let x: Vec<f32> = (0..self.samples * d)
            .map(|_| uniform.sample(&mut rng))
            .collect();
        let mut tasks = Vec::with_capacity(self.sigmas.len());
        for (t, (w, &sigma)) in weights.iter().zip(&self.sigmas).enumerate() {
            let mut y = vec![0.0f32; self.samples * m];
            y.par_chunks_mut(m)
                .zip(x.par_chunks(d))
                .for_each(|(out, xi)| {
                    for (o, row) in out.iter_mut().zip(w.chunks_exact(d)) {
                        let z: f64 = row.iter().zip(xi).map(|(a, &b)| a * f64::from(b)).sum();
                        *o = (sigma * z.tanh()) as f32;
                    }
                });
            tasks.push((
                TaskSpec {
                    name: format!("task_{t}"),
                    kind: TaskKind::Regression { outputs: m },
                },
                Targets::Values(Tensor::from_vec(y, &[self.samples, m])?),
            ));
        }
        let name = if *self == GradNormToy::ten_tasks() {
            "gradnorm-toy-10"
        } else {
            "gradnorm-toy"
        };
        let features = Tensor::from_vec(x, &[self.samples, d])?;
        let split = random(self.samples, HELD_OUT, HELD_OUT, seed)?;
        Dataset::new(name, features, tasks)?.with_split(split)
    }
}
