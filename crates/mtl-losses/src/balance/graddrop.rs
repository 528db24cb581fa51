//! GradDrop, gradient sign dropout (Chen, Ngiam, Huang, Luong, Kretzschmar,
//! Chai, Anguelov 2020, "Just Pick a Sign", NeurIPS).
//!
//! On the rows `∇_i` (gradients at the shared representation; to follow the
//! paper exactly, the caller sign-corrects them by `sign(A)` and sums over the
//! batch before passing them), per column `k`:
//!
//! ```text
//! P_k = ½(1 + Σ_i ∇_ik / Σ_i |∇_ik|)        (P_k = ½ when Σ|∇_ik| = 0)
//! U_k ~ Uniform(0, 1)
//! M_ik = 1[P_k > U_k]·1[∇_ik > 0] + 1[P_k < U_k]·1[∇_ik < 0]
//! d_k = r Σ_i (ℓ + (1 − ℓ) M_ik) ∇_ik       (r = 1/T for the mean, 1 for the sum)
//! ```
//!
//! i.e. per column keep only the positive or only the negative entries,
//! choosing "positive" with probability `P_k`; `ℓ` is the leak (`ℓ = 1` gives
//! the plain mean/sum). This is an elementwise method, not a weighted one: the
//! result generally leaves the row span of `J`.
//!
//! One pass over the rows, in column blocks, parallel above a size threshold.
//! The uniforms of block `b` come from a ChaCha stream `b` seeded by a value
//! drawn from the balancer's generator each step, so the result does not
//! depend on the number of threads.
//!
//! * **Non-conflicting:** no.
//! * **Scaling:** `reduction = mean` (default): weights `1/T` reported for the
//!   heads, `d` is the masked mean; `sum` gives the reference code's masked sum.
//! * **T = 1:** every entry has `P ∈ {0, 1}` and is kept: `d = g_1`.

use rand::distributions::Open01;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::gram::PARALLEL_MIN_VALUES;
use super::pcgrad::Reduction;
use super::rng_state::SeededRng;
use super::{
    check_parameter, parse_state, require_tasks, to_state, Balancer, Combined, GradRows,
    GradientSource, MethodConfig, MethodState, RowBalancer, RowMethod, RowStep,
};
use crate::error::{Error, Result};

/// Columns per block (and per random stream).
const BLOCK_COLUMNS: usize = 4096;

/// Configuration of [`GradDrop`] (registry name `graddrop`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GradDropConfig {
    /// Leak `ℓ ∈ [0, 1]` of the dropped entries (default 0.0, LibMTL).
    pub leak: f64,
    /// `mean` (default) or `sum` of the masked rows.
    pub reduction: Reduction,
}

impl Default for GradDropConfig {
    fn default() -> Self {
        Self {
            leak: 0.0,
            reduction: Reduction::Mean,
        }
    }
}

impl MethodConfig for GradDropConfig {
    const NAME: &'static str = "graddrop";
    const SUMMARY: &'static str =
        "keep one gradient sign per feature, chosen by its purity (Chen et al. 2020)";
    const NEEDS: GradientSource = GradientSource::Representation;
    const PARAMS: &'static [(&'static str, &'static str)] = &[
        (
            "leak",
            "fraction of the dropped entries kept (0 = drop, 1 = plain mean)",
        ),
        ("reduction", "mean (default) or sum of the masked gradients"),
    ];

    fn build(&self, num_tasks: usize, seed: u64) -> Result<Box<dyn Balancer>> {
        RowBalancer::boxed(num_tasks, GradDrop::new(num_tasks, self.clone(), seed)?)
    }
}

/// GradDrop; see the module documentation.
#[derive(Debug, Clone)]
pub struct GradDrop {
    config: GradDropConfig,
    rng: SeededRng,
}

/// Masks and combines one block of columns `start..start + out.len()`.
fn drop_block(
    grads: &GradRows<'_>,
    present: &[bool],
    start: usize,
    out: &mut [f32],
    rng: &mut ChaCha8Rng,
    leak: f64,
    factor: f64,
) {
    let len = out.len();
    let mut signed = vec![0.0f64; len];
    let mut absolute = vec![0.0f64; len];
    for (row, _) in grads.iter().zip(present).filter(|(_, &p)| p) {
        for ((s, a), &x) in signed
            .iter_mut()
            .zip(&mut absolute)
            .zip(&row[start..start + len])
        {
            *s += f64::from(x);
            *a += f64::from(x).abs();
        }
    }
    // Reuse `signed` for the per-column keep-positive decision (1 or 0) and
    // `absolute` for the accumulated result.
    for (s, a) in signed.iter_mut().zip(&mut absolute) {
        let purity = if *a > 0.0 { 0.5 * (1.0 + *s / *a) } else { 0.5 };
        let u: f64 = rng.sample(Open01);
        *s = if purity > u {
            1.0
        } else if purity < u {
            -1.0
        } else {
            0.0
        };
        *a = 0.0;
    }
    for (row, _) in grads.iter().zip(present).filter(|(_, &p)| p) {
        for ((keep, acc), &x) in signed
            .iter()
            .zip(&mut absolute)
            .zip(&row[start..start + len])
        {
            let x = f64::from(x);
            let kept = (*keep > 0.0 && x > 0.0) || (*keep < 0.0 && x < 0.0);
            let m = if kept { 1.0 } else { 0.0 };
            *acc += (leak + (1.0 - leak) * m) * x;
        }
    }
    for (o, acc) in out.iter_mut().zip(&absolute) {
        *o = (acc * factor) as f32;
    }
}

impl GradDrop {
    /// GradDrop for `num_tasks` tasks; `seed` seeds the uniforms.
    ///
    /// # Errors
    /// [`Error::NoTasks`]; [`Error::InvalidParameter`] for a leak outside `[0, 1]`.
    pub fn new(num_tasks: usize, config: GradDropConfig, seed: u64) -> Result<Self> {
        require_tasks(num_tasks)?;
        let leak = config.leak;
        check_parameter(
            GradDropConfig::NAME,
            "leak",
            leak,
            (0.0..=1.0).contains(&leak),
            "in [0, 1]",
        )?;
        Ok(Self {
            config,
            rng: SeededRng::new(seed),
        })
    }

    /// The masked combination of `grads` (draws one step seed), mean over
    /// all rows for `reduction = mean`.
    pub fn direction(&mut self, grads: &GradRows<'_>) -> Vec<f32> {
        let factor = self.config.reduction.factor(grads.rows());
        let present = vec![true; grads.rows()];
        self.direction_at(grads, &present, 0, factor)
    }

    /// The masked combination of `grads`, whose first column is global
    /// column `offset`. The uniform of global column `k` is word pair
    /// `k mod B` of ChaCha stream `k / B` (`B` = [`BLOCK_COLUMNS`]) under the
    /// step seed, so a column shard draws exactly the unsharded values.
    fn direction_at(
        &mut self,
        grads: &GradRows<'_>,
        present: &[bool],
        offset: usize,
        factor: f64,
    ) -> Vec<f32> {
        let step_seed: u64 = self.rng.rng().gen();
        let leak = self.config.leak;
        let mut out = vec![0.0f32; grads.cols()];
        let mut pieces: Vec<(usize, &mut [f32])> = Vec::new();
        let mut rest = out.as_mut_slice();
        let mut local = 0;
        while !rest.is_empty() {
            let global = offset + local;
            let len = (BLOCK_COLUMNS - global % BLOCK_COLUMNS).min(rest.len());
            let (piece, tail) = rest.split_at_mut(len);
            pieces.push((local, piece));
            rest = tail;
            local += len;
        }
        let work = |(start, chunk): (usize, &mut [f32])| {
            let global = offset + start;
            let mut rng = ChaCha8Rng::seed_from_u64(step_seed);
            rng.set_stream((global / BLOCK_COLUMNS) as u64);
            // One f64 uniform per column: two 32-bit words.
            rng.set_word_pos(2 * (global % BLOCK_COLUMNS) as u128);
            drop_block(grads, present, start, chunk, &mut rng, leak, factor);
        };
        if grads.rows() * grads.cols() >= PARALLEL_MIN_VALUES {
            pieces.into_par_iter().for_each(work);
        } else {
            pieces.into_iter().for_each(work);
        }
        out
    }
}

impl MethodState for GradDrop {
    fn state(&self) -> serde_json::Value {
        to_state(&self.rng.saved())
    }

    fn load_state(&mut self, balancer: &'static str, state: &serde_json::Value) -> Result<()> {
        self.rng.restore(&parse_state(balancer, state)?);
        Ok(())
    }

    fn reset(&mut self) {
        self.rng.reset();
    }
}

impl RowMethod for GradDrop {
    type Config = GradDropConfig;

    /// Absent tasks' rows are skipped (they neither change the purity nor
    /// add to the sum); the mean is over the present tasks.
    fn combine(&mut self, grads: &GradRows<'_>, step: &RowStep<'_>) -> Result<Combined> {
        let factor = self.config.reduction.factor(step.present_count());
        let direction = self.direction_at(grads, step.present, step.column_offset(), factor);
        // A NaN or infinite input entry makes its column non-finite (0·∞ and
        // 0·NaN are NaN), so only the output needs checking on the fast path.
        if direction.iter().any(|x| !x.is_finite()) {
            for (task, row) in grads.iter().enumerate() {
                if let Some(x) = row.iter().find(|x| !x.is_finite()) {
                    return Err(Error::NonFiniteGradient {
                        task,
                        norm: f64::from(*x),
                    });
                }
            }
        }
        let weights = step
            .present
            .iter()
            .map(|&p| if p { factor } else { 0.0 })
            .collect();
        Ok(Combined { direction, weights })
    }

    fn supports_column_shards(&self) -> bool {
        true
    }
}
