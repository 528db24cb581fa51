//! DB-MTL, Dual-Balancing Multi-Task Learning, Lin, Ye, Zhang & Kwok (2023, arXiv 2308.12029).
//!
//! Two balancing steps:
//!
//! * **Loss scale.** Every task is trained on `log(L_t + ε)` (ε = 10⁻⁸, as in
//!   LibMTL), so its gradient is `ĝ_t = g_t / (L_t + ε)`: the raw gradient
//!   rows `g_t` and losses given to [`Balancer::balance`] are transformed here.
//! * **Gradient magnitude.** An exponential moving average of each task's
//!   log-loss gradient, `buf_t ← (1 − β_k) ĝ_t + β_k buf_t` with
//!   `β_k = β / k^σ` at step `k = 1, 2, …` (buffers start at 0, no bias
//!   correction), is rescaled to the largest norm:
//!   `α_t = max_j ‖buf_j‖ / ‖buf_t‖`, `d = Σ_t α_t buf_t`. Every task then
//!   contributes a vector of norm `max_j ‖buf_j‖`. A task whose buffer is
//!   exactly zero contributes nothing.
//!
//! **Scale.** The paper's `d` is a sum over tasks; the returned direction is
//! `d / T` (mean scale). The returned weights are `1 / (T (L_t + ε))`: head
//! `t` receives `w_t ∇_{θ_t} L_t = ∇_{θ_t} log(L_t + ε) / T`, the mean of the
//! log-losses, as LibMTL trains the heads on the unweighted log-losses.
//!
//! **Cost.** `O(TP)` per step and a `T × P` buffer (the saved state contains
//! it). From [`PARALLEL_EMA_MIN_ENTRIES`] entries the buffer update runs one
//! row per rayon task and the combination one block of columns per task; both
//! keep the summation order fixed, so results do not depend on the thread count.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{
    check_parameter, parse_state, require_tasks, to_state, Balancer, Combined, GradRows,
    GradientSource, MethodConfig, MethodState, RowBalancer, RowMethod, RowStep,
};
use crate::error::{Error, Result};

/// Added to every loss before the logarithm, as in LibMTL.
const LOG_GUARD: f64 = 1e-8;

/// Size (`T·P` entries) from which the buffer update and the combination run
/// in parallel. Measured with `benches/benches/balancers_weighting.rs` on a
/// 2-core machine: parallel was slower at 8·10⁴ entries (134 µs vs 86 µs),
/// even at 3.2·10⁵ (474 µs vs 525 µs) and faster from 2·10⁶ on
/// (3.0 ms vs 3.8 ms; 16 ms vs 34 ms at 8·10⁶).
pub const PARALLEL_EMA_MIN_ENTRIES: usize = 1_000_000;

/// Columns per block when combining the buffers into the direction: 4096
/// floats (16 KiB) of output stay in L1 while the `T` buffer rows stream by.
const DIRECTION_BLOCK: usize = 4096;

/// Configuration of [`DbMtl`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DbMtlConfig {
    /// EMA coefficient `β` of the gradient buffers.
    pub beta: f64,
    /// Decay exponent `σ` of the EMA coefficient, `β_k = β / k^σ`.
    pub beta_sigma: f64,
}

impl Default for DbMtlConfig {
    fn default() -> Self {
        Self {
            beta: 0.9,
            beta_sigma: 0.0,
        }
    }
}

impl MethodConfig for DbMtlConfig {
    const NAME: &'static str = "db-mtl";
    const SUMMARY: &'static str =
        "DB-MTL: log-losses plus EMA gradients rescaled to the largest norm (Lin et al. 2023)";
    const NEEDS: GradientSource = GradientSource::SharedParameters;
    const PARAMS: &'static [(&'static str, &'static str)] = &[
        ("beta", "EMA coefficient of the per-task gradient buffers"),
        (
            "beta_sigma",
            "decay exponent of the EMA coefficient, beta_k = beta / k^sigma",
        ),
    ];

    fn build(&self, num_tasks: usize, _seed: u64) -> Result<Box<dyn Balancer>> {
        RowBalancer::boxed(num_tasks, DbMtl::new(num_tasks, self)?)
    }
}

/// One task's buffer, gradient row, loss and presence in the EMA update.
type TaskRow<'a> = (&'a mut [f32], (&'a [f32], (&'a f32, &'a bool)));

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DbMtlState {
    /// Steps taken (`k` of the last step).
    step: u64,
    /// Row-major `T × P` EMA buffers (empty until the first step fixes `P`).
    buffers: Vec<f32>,
}

/// DB-MTL; owns the `T × P` EMA buffers of the log-loss gradients.
#[derive(Debug, Clone)]
pub struct DbMtl {
    num_tasks: usize,
    config: DbMtlConfig,
    state: DbMtlState,
}

impl DbMtl {
    /// DB-MTL for `num_tasks` tasks.
    ///
    /// # Errors
    /// [`Error::NoTasks`], or [`Error::InvalidParameter`] for `beta` outside
    /// `[0, 1)` or a negative `beta_sigma`.
    pub fn new(num_tasks: usize, config: &DbMtlConfig) -> Result<Self> {
        require_tasks(num_tasks)?;
        let name = DbMtlConfig::NAME;
        check_parameter(
            name,
            "beta",
            config.beta,
            (0.0..1.0).contains(&config.beta),
            "must lie in [0, 1)",
        )?;
        check_parameter(
            name,
            "beta_sigma",
            config.beta_sigma,
            config.beta_sigma >= 0.0,
            "must be >= 0",
        )?;
        Ok(Self {
            num_tasks,
            config: config.clone(),
            state: DbMtlState {
                step: 0,
                buffers: Vec::new(),
            },
        })
    }

    /// The EMA buffers as gradient rows (`None` before the first step).
    pub fn buffers(&self) -> Option<GradRows<'_>> {
        if self.state.buffers.is_empty() {
            return None;
        }
        let cols = self.state.buffers.len() / self.num_tasks;
        GradRows::new(&self.state.buffers, self.num_tasks, cols).ok()
    }
}

impl MethodState for DbMtl {
    fn state(&self) -> serde_json::Value {
        to_state(&self.state)
    }

    fn load_state(&mut self, balancer: &'static str, state: &serde_json::Value) -> Result<()> {
        let loaded: DbMtlState = parse_state(balancer, state)?;
        if !loaded.buffers.len().is_multiple_of(self.num_tasks) {
            return Err(Error::State {
                balancer,
                reason: format!(
                    "{} buffer values are not {} equal rows",
                    loaded.buffers.len(),
                    self.num_tasks
                ),
            });
        }
        self.state = loaded;
        Ok(())
    }

    fn reset(&mut self) {
        self.state = DbMtlState {
            step: 0,
            buffers: Vec::new(),
        };
    }

    fn learnable(&self) -> Vec<(String, f32)> {
        self.buffers()
            .map(|rows| {
                rows.row_norms()
                    .into_iter()
                    .enumerate()
                    .map(|(t, n)| (format!("buffer_norm[{t}]"), n as f32))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl RowMethod for DbMtl {
    type Config = DbMtlConfig;

    /// An absent task's buffer is not updated and takes no part in the
    /// largest norm nor in the direction; the mean is over present tasks.
    fn combine(&mut self, grads: &GradRows<'_>, step: &RowStep<'_>) -> Result<Combined> {
        let t = self.num_tasks;
        let p = grads.cols();
        let losses = step.losses;
        let present = step.present;
        let t_present = step.present_count() as f64;
        if let Some(task) = (0..t).find(|&i| present[i] && f64::from(losses[i]) + LOG_GUARD <= 0.0)
        {
            return Err(Error::LossOutOfDomain {
                balancer: DbMtlConfig::NAME,
                task,
                value: f64::from(losses[task]),
                bound: -LOG_GUARD,
            });
        }
        if let Some((task, norm)) = grads
            .row_norms()
            .into_iter()
            .enumerate()
            .find(|(_, n)| !n.is_finite())
        {
            return Err(Error::NonFiniteGradient { task, norm });
        }
        if self.state.buffers.is_empty() {
            self.state.buffers = vec![0.0; t * p];
        } else if self.state.buffers.len() != t * p {
            return Err(Error::CountMismatch {
                what: "gradient columns (DB-MTL buffers were sized on the first step)",
                expected: self.state.buffers.len() / t,
                got: p,
            });
        }

        let k = self.state.step + 1;
        let beta_k = self.config.beta / (k as f64).powf(self.config.beta_sigma);
        let parallel = t * p >= PARALLEL_EMA_MIN_ENTRIES;
        // buf ← (1 − β_k) g/(L + ε) + β_k buf, one row per task.
        let update = |(buf, (row, (&loss, &here))): TaskRow<'_>| {
            if !here {
                return;
            }
            let new_share = ((1.0 - beta_k) / (f64::from(loss) + LOG_GUARD)) as f32;
            let keep = beta_k as f32;
            for (b, &g) in buf.iter_mut().zip(row) {
                *b = new_share * g + keep * *b;
            }
        };
        let rows: Vec<&[f32]> = grads.iter().collect();
        if parallel {
            self.state
                .buffers
                .par_chunks_mut(p.max(1))
                .zip(
                    rows.par_iter()
                        .copied()
                        .zip(losses.par_iter().zip(present.par_iter())),
                )
                .for_each(update);
        } else {
            self.state
                .buffers
                .chunks_mut(p.max(1))
                .zip(rows.iter().copied().zip(losses.iter().zip(present)))
                .for_each(update);
        }
        self.state.step = k;

        let norms: Vec<f64> = GradRows::new(&self.state.buffers, t, p)?
            .row_norms()
            .into_iter()
            .zip(present)
            .map(|(n, &here)| if here { n } else { 0.0 })
            .collect();
        let max = norms.iter().copied().fold(0.0, f64::max);
        // d = (1/T) Σ_t (max/‖buf_t‖) buf_t; a zero buffer contributes nothing.
        let scales: Vec<f32> = norms
            .iter()
            .map(|&n| {
                if n > 0.0 {
                    (max / n / t_present) as f32
                } else {
                    0.0
                }
            })
            .collect();
        let buffers = &self.state.buffers;
        // Each block of columns sums the tasks in task order, so the result
        // does not depend on how blocks are spread over threads.
        let combine = |(block, out): (usize, &mut [f32])| {
            let start = block * DIRECTION_BLOCK;
            let end = start + out.len();
            for (buf, &scale) in buffers.chunks_exact(p.max(1)).zip(&scales) {
                for (d, &b) in out.iter_mut().zip(&buf[start..end]) {
                    *d += scale * b;
                }
            }
        };
        let mut direction = vec![0.0f32; p];
        if parallel {
            direction
                .par_chunks_mut(DIRECTION_BLOCK)
                .enumerate()
                .for_each(combine);
        } else {
            direction
                .chunks_mut(DIRECTION_BLOCK)
                .enumerate()
                .for_each(combine);
        }
        let weights = losses
            .iter()
            .zip(present)
            .map(|(&l, &here)| {
                if here {
                    f64::from(1.0 / (t_present * (f64::from(l) + LOG_GUARD)) as f32)
                } else {
                    0.0
                }
            })
            .collect();
        Ok(Combined { direction, weights })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::BalanceInput;
    use proptest::prelude::*;

    /// f32 buffers against 6-decimal ground truths; the 1e-8 log guard and
    /// f32 rounding of O(1) values stay below 1e-6.
    const CLOSED_FORM: f32 = 1e-6;

    fn run(config: DbMtlConfig, rows: &[f32], losses: &[f32], steps: usize) -> Vec<Vec<f32>> {
        let t = losses.len();
        let grads = GradRows::new(rows, t, rows.len() / t).unwrap();
        let mut db = RowBalancer::new(t, DbMtl::new(t, &config).unwrap()).unwrap();
        (0..steps)
            .map(|_| {
                let out = db
                    .balance(&BalanceInput::from_losses(losses).with_grads(grads))
                    .unwrap();
                // Back to LibMTL's sum scale for comparison with the ground truths.
                out.direction()
                    .unwrap()
                    .iter()
                    .map(|d| d * t as f32)
                    .collect()
            })
            .collect()
    }

    fn assert_close(got: &[f32], want: &[f32]) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < CLOSED_FORM, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn db_1_constant_gradients_sigma_zero() {
        // ĝ = [(1,0),(0,3)] (losses 1 ⇒ ĝ = g), β = 0.9: updates (0.3,0.3),
        // (0.57,0.57), (0.813,0.813).
        let d = run(
            DbMtlConfig::default(),
            &[1.0, 0.0, 0.0, 3.0],
            &[1.0, 1.0],
            3,
        );
        assert_close(&d[0], &[0.3, 0.3]);
        assert_close(&d[1], &[0.57, 0.57]);
        assert_close(&d[2], &[0.813, 0.813]);
    }

    #[test]
    fn db_2_decaying_beta() {
        // σ = 0.5, β_k = 0.9/√k: (0.3,0.3), (1.281731,…), (2.107161,…).
        let config = DbMtlConfig {
            beta: 0.9,
            beta_sigma: 0.5,
        };
        let d = run(config, &[1.0, 0.0, 0.0, 3.0], &[1.0, 1.0], 3);
        assert_close(&d[0], &[0.3, 0.3]);
        assert_close(&d[1], &[1.281731, 1.281731]);
        assert_close(&d[2], &[2.107161, 2.107161]);
    }

    #[test]
    fn db_3_log_transform_and_head_weights() {
        // L = 2, ∇L = (2, 0) ⇒ ĝ = (1, 0); first buffer 0.1·ĝ.
        let rows = [2.0f32, 0.0];
        let grads = GradRows::new(&rows, 1, 2).unwrap();
        let mut db = RowBalancer::new(1, DbMtl::new(1, &DbMtlConfig::default()).unwrap()).unwrap();
        let out = db
            .balance(&BalanceInput::from_losses(&[2.0]).with_grads(grads))
            .unwrap();
        assert_close(out.direction().unwrap(), &[0.1, 0.0]);
        // Heads: 1/(T (L + ε)).
        assert_close(out.weights(), &[0.5]);
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut db = RowBalancer::new(2, DbMtl::new(2, &DbMtlConfig::default()).unwrap()).unwrap();
        assert!(matches!(
            db.balance(&BalanceInput::from_losses(&[1.0, 1.0])),
            Err(Error::MissingGradients { .. })
        ));
        let rows = [1.0f32, f32::INFINITY, 0.0, 1.0];
        let grads = GradRows::new(&rows, 2, 2).unwrap();
        assert!(matches!(
            db.balance(&BalanceInput::from_losses(&[1.0, 1.0]).with_grads(grads)),
            Err(Error::NonFiniteGradient { task: 0, .. })
        ));
        let rows = [1.0f32, 0.0, 0.0, 1.0];
        let grads = GradRows::new(&rows, 2, 2).unwrap();
        assert!(matches!(
            db.balance(&BalanceInput::from_losses(&[1.0, -0.5]).with_grads(grads)),
            Err(Error::LossOutOfDomain { task: 1, .. })
        ));
        db.balance(&BalanceInput::from_losses(&[1.0, 1.0]).with_grads(grads))
            .unwrap();
        let wider = [0.0f32; 6];
        let grads = GradRows::new(&wider, 2, 3).unwrap();
        assert!(matches!(
            db.balance(&BalanceInput::from_losses(&[1.0, 1.0]).with_grads(grads)),
            Err(Error::CountMismatch {
                expected: 2,
                got: 3,
                ..
            })
        ));
        assert!(DbMtl::new(
            2,
            &DbMtlConfig {
                beta: 1.0,
                beta_sigma: 0.0
            }
        )
        .is_err());
    }

    #[test]
    fn state_round_trip_continues_identically() {
        let rows = [
            [0.3f32, -1.0, 2.0, 0.5, 0.1, -0.2],
            [0.2, -0.8, 1.5, 0.4, 0.3, -0.1],
        ];
        let losses = [2.0f32, 0.4];
        let mut a = RowBalancer::new(2, DbMtl::new(2, &DbMtlConfig::default()).unwrap()).unwrap();
        let g0 = GradRows::new(&rows[0], 2, 3).unwrap();
        a.balance(&BalanceInput::from_losses(&losses).with_grads(g0))
            .unwrap();
        let text = serde_json::to_string(&a.state()).unwrap();
        let mut b = RowBalancer::new(2, DbMtl::new(2, &DbMtlConfig::default()).unwrap()).unwrap();
        b.load_state(&serde_json::from_str(&text).unwrap()).unwrap();
        let g1 = GradRows::new(&rows[1], 2, 3).unwrap();
        assert_eq!(
            a.balance(&BalanceInput::from_losses(&losses).with_grads(g1))
                .unwrap(),
            b.balance(&BalanceInput::from_losses(&losses).with_grads(g1))
                .unwrap()
        );
        b.reset();
        assert!(b.method().buffers().is_none());
    }

    #[test]
    fn parallel_and_sequential_paths_agree_bit_for_bit() {
        // One step above the threshold (parallel update and combination),
        // checked column by column against the sequential formula, including
        // the columns on both sides of a block boundary.
        let (t, p) = (3, PARALLEL_EMA_MIN_ENTRIES / 2);
        let rows: Vec<f32> = (0..t * p)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let losses = [0.5f32, 1.5, 4.0];
        let grads = GradRows::new(&rows, t, p).unwrap();
        let mut db = RowBalancer::new(t, DbMtl::new(t, &DbMtlConfig::default()).unwrap()).unwrap();
        let out = db
            .balance(&BalanceInput::from_losses(&losses).with_grads(grads))
            .unwrap();
        let bufs = db.method().buffers().unwrap();
        let norms = bufs.row_norms();
        let max = norms.iter().copied().fold(0.0, f64::max);
        for col in [0, 1, DIRECTION_BLOCK - 1, DIRECTION_BLOCK, p - 1] {
            let mut d = 0.0f32;
            for task in 0..t {
                let g = rows[task * p + col];
                let share = ((1.0 - 0.9) / (f64::from(losses[task]) + LOG_GUARD)) as f32;
                let b = share * g + 0.9f32 * 0.0;
                assert_eq!(bufs.row(task).unwrap()[col], b);
                d += (max / norms[task] / t as f64) as f32 * b;
            }
            assert_eq!(out.direction().unwrap()[col], d, "column {col}");
        }
    }

    proptest! {
        #[test]
        fn every_task_contributes_the_largest_buffer_norm(
            rows in proptest::collection::vec(-5.0f32..5.0, 12),
            losses in proptest::collection::vec(0.1f32..10.0, 3),
        ) {
            // T = 3, P = 4, one step: buf_t = 0.1 ĝ_t and T·d = Σ_t max‖buf‖ buf_t/‖buf_t‖.
            let grads = GradRows::new(&rows, 3, 4).unwrap();
            let mut db = RowBalancer::new(3, DbMtl::new(3, &DbMtlConfig::default()).unwrap()).unwrap();
            let out = db.balance(&BalanceInput::from_losses(&losses).with_grads(grads)).unwrap();
            let bufs = db.method().buffers().unwrap();
            let norms = bufs.row_norms();
            let max = norms.iter().copied().fold(0.0, f64::max);
            for (t, row) in bufs.iter().enumerate() {
                let expected_row: Vec<f64> = rows[t * 4..(t + 1) * 4]
                    .iter()
                    .map(|&g| 0.1 * f64::from(g) / (f64::from(losses[t]) + LOG_GUARD))
                    .collect();
                for (b, e) in row.iter().zip(&expected_row) {
                    prop_assert!((f64::from(*b) - e).abs() < 1e-5 * (1.0 + e.abs()));
                }
            }
            for p in 0..4 {
                let want: f64 = (0..3)
                    .filter(|&t| norms[t] > 0.0)
                    .map(|t| max / norms[t] * f64::from(bufs.row(t).unwrap()[p]))
                    .sum();
                let got = 3.0 * f64::from(out.direction().unwrap()[p]);
                prop_assert!((got - want).abs() < 1e-4 * (1.0 + want.abs()));
            }
        }
    }
}
