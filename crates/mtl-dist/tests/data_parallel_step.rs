//! A small data-parallel training loop built from the crate's pieces, run on
//! 1, 2 and 3 ranks of a thread group: the parameters match the single-rank
//! run and are bit-identical across ranks.
//!
//! Model: two regression tasks sharing a linear map, `ŷ_t = θ_s·x + b_t`,
//! loss `L_t = (1/B) Σ_rows (ŷ_t − y_t)²` over a global batch of `B = 10`
//! rows (uneven shards on 3 ranks: 4, 3, 3). Two balancer needs are
//! exercised: losses only (equal weights, one fused all-reduce of losses and
//! gradient) and shared parameters (gradient rows reduce-scattered, Gram of
//! the owned slices all-reduced, MGDA's two-task min-norm weights from the
//! Gram, direction all-gathered).

use mtl_dist::{
    check_identical_parameters, shard_range, Communicator, DistError, ShardedRows, ThreadGroup,
};

const ROWS: usize = 10;
const FEATURES: usize = 3;
const TASKS: usize = 2;
const STEPS: usize = 25;
const LR: f32 = 0.05;

/// Relative tolerance between the `W`-rank and the one-rank parameters: the
/// same arithmetic with the batch sums split into `W` partial sums added in
/// rank order; f32 rounding of ~1e-7 per operation, grown over 25 steps.
const REL_TOL: f32 = 1e-5;

fn x(row: usize, k: usize) -> f32 {
    ((row * 5 + k * 3) % 7) as f32 / 3.0 - 1.0
}

fn y(row: usize, t: usize) -> f32 {
    let truth: [[f32; FEATURES]; TASKS] = [[1.0, -2.0, 0.5], [0.8, -1.5, 1.0]];
    (0..FEATURES).map(|k| truth[t][k] * x(row, k)).sum::<f32>() + t as f32
}

/// Parameters: `θ_s` (FEATURES values) then `b_0, b_1`.
const PARAMS: usize = FEATURES + TASKS;

#[derive(Clone, Copy)]
enum Need {
    LossesOnly,
    SharedParameters,
}

/// One shard's contribution to a step, every sum already divided by the
/// global `B`.
struct ShardTerms {
    /// `T` losses.
    losses: Vec<f32>,
    /// Shared-gradient rows, `T × FEATURES`.
    shared: Vec<f32>,
    /// Head gradients, one per task.
    heads: Vec<f32>,
}

/// This shard's [`ShardTerms`] at parameters `p`.
fn shard_terms(comm: &dyn Communicator, p: &[f32]) -> Result<ShardTerms, DistError> {
    let rows = shard_range(ROWS, comm.rank(), comm.size())?;
    let mut losses = vec![0.0f32; TASKS];
    let mut shared = vec![0.0f32; TASKS * FEATURES];
    let mut heads = vec![0.0f32; TASKS];
    for row in rows {
        for t in 0..TASKS {
            let pred: f32 = (0..FEATURES).map(|k| p[k] * x(row, k)).sum::<f32>() + p[FEATURES + t];
            let r = pred - y(row, t);
            losses[t] += r * r / ROWS as f32;
            for k in 0..FEATURES {
                shared[t * FEATURES + k] += 2.0 * r * x(row, k) / ROWS as f32;
            }
            heads[t] += 2.0 * r / ROWS as f32;
        }
    }
    Ok(ShardTerms {
        losses,
        shared,
        heads,
    })
}

fn train(comm: &dyn Communicator, need: Need) -> Result<Vec<f32>, DistError> {
    let mut p = vec![0.0f32; PARAMS];
    let mut sharded = ShardedRows::new(comm, TASKS, FEATURES)?;
    let mut slice = vec![0.0f32; sharded.columns().len()];
    for _ in 0..STEPS {
        let ShardTerms {
            losses,
            shared,
            heads,
        } = shard_terms(comm, &p)?;
        let mut grad = vec![0.0f32; PARAMS];
        match need {
            Need::LossesOnly => {
                // One fused all-reduce: T losses, then the gradient of Σ_t L_t / T.
                let mut fused = losses.clone();
                for k in 0..FEATURES {
                    fused.push(
                        (0..TASKS).map(|t| shared[t * FEATURES + k]).sum::<f32>() / TASKS as f32,
                    );
                }
                fused.extend(heads.iter().map(|h| h / TASKS as f32));
                comm.all_reduce_sum_f32(&mut fused)?;
                grad.copy_from_slice(&fused[TASKS..]);
            }
            Need::SharedParameters => {
                sharded.reduce_scatter(comm, &shared)?;
                let g = sharded.gram(comm)?;
                // MGDA for two tasks: α = clamp((G₁₁ − G₀₁) / (G₀₀ + G₁₁ − 2G₀₁)).
                let denom = g[(0, 0)] + g[(1, 1)] - 2.0 * g[(0, 1)];
                let alpha = if denom > 0.0 {
                    ((g[(1, 1)] - g[(0, 1)]) / denom).clamp(0.0, 1.0)
                } else {
                    0.5
                };
                let w = [alpha, 1.0 - alpha];
                sharded.combine(&w, &mut slice);
                sharded.all_gather(comm, &slice, &mut grad[..FEATURES])?;
                let mut head = heads.clone();
                comm.all_reduce_sum_f32(&mut head)?;
                for t in 0..TASKS {
                    grad[FEATURES + t] = w[t] as f32 * head[t];
                }
            }
        }
        for (q, d) in p.iter_mut().zip(&grad) {
            *q -= LR * d;
        }
    }
    check_identical_parameters(comm, &p)?;
    Ok(p)
}

fn run(size: usize, need: Need) -> Vec<f32> {
    let out = ThreadGroup::new(size)
        .unwrap()
        .run(|c| train(c, need))
        .unwrap();
    let params: Vec<Vec<f32>> = out.into_iter().map(Result::unwrap).collect();
    for p in &params[1..] {
        assert_eq!(p, &params[0], "every rank holds the same bits");
    }
    params.into_iter().next().unwrap()
}

fn assert_close(a: &[f32], b: &[f32]) {
    for (x, y) in a.iter().zip(b) {
        assert!(
            (x - y).abs() <= REL_TOL * y.abs().max(1.0),
            "{a:?} vs {b:?}"
        );
    }
}

#[test]
fn losses_only_matches_one_rank() {
    let one = run(1, Need::LossesOnly);
    // The loop trains: the shared weights moved towards the truth.
    assert!(one[0] > 0.3 && one[1] < -0.5, "{one:?}");
    for size in [2, 3] {
        assert_close(&run(size, Need::LossesOnly), &one);
    }
}

#[test]
fn shared_parameters_match_one_rank() {
    let one = run(1, Need::SharedParameters);
    assert!(one[0] > 0.3 && one[1] < -0.5, "{one:?}");
    for size in [2, 3] {
        assert_close(&run(size, Need::SharedParameters), &one);
    }
}

#[test]
fn runs_repeat_bit_for_bit() {
    assert_eq!(
        run(3, Need::SharedParameters),
        run(3, Need::SharedParameters)
    );
}
