//! One property harness for every gradient-manipulation balancer: each method
//! declares exactly what it promises (balancers.md §19.18) and proptest checks
//! those promises on random gradient matrices, plus finiteness on
//! rank-deficient, nearly parallel and zero rows.

use mtl_losses::balance::{BalanceInput, BalancerConfig, GradRows, LookAhead, SecondBatch};
use nalgebra::DMatrix;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde_json::json;

/// Relative tolerance of the checks. Rows are `f32` (relative rounding
/// 6e-8), solves are `f64`, the output is `f32` again; products of a few
/// such values, compared against `‖g_i‖‖d‖`, stay below 1e-5 for the
/// well-conditioned draws used here.
const REL_TOL: f64 = 1e-5;

/// Absolute slack of the non-conflict check, times `max‖g_i‖²`: the exact
/// QPs carry a 1e-11 relative ridge, visible when `d` itself is ~0.
const STATIONARY_FLOOR: f64 = 1e-9;

/// What a method promises; see balancers.md §19.18.
#[derive(Clone, Copy)]
struct Claims {
    /// `J d ≥ 0` for every input (`Always`), only for linearly independent
    /// rows (`FullRank`), only for two tasks (`TwoTasks`), or never.
    non_conflicting: NonConflict,
    /// `A(ΠJ) = A(J)` for every `T`, or only for `T ≤ 2`.
    permutation_invariant: Permutation,
    /// `A(diag(c)J) ∥ A(J)` for `c > 0`.
    scale_invariant_direction: bool,
    /// `A(JQ) = QᵀA(J)` (the weights depend on `G` only).
    gramian: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum NonConflict {
    Always,
    FullRank,
    TwoTasks,
    Never,
}

#[derive(Clone, Copy, PartialEq)]
enum Permutation {
    Always,
    UpToTwoTasks,
    Never,
}

/// Every method under test with the configuration whose promises are checked.
fn methods() -> Vec<(serde_json::Value, Claims)> {
    use NonConflict as N;
    use Permutation as P;
    let c = |nc, perm, si, gramian| Claims {
        non_conflicting: nc,
        permutation_invariant: perm,
        scale_invariant_direction: si,
        gramian,
    };
    vec![
        (
            json!({ "name": "mgda" }),
            c(N::Always, P::Always, false, true),
        ),
        (
            json!({ "name": "mgda-ub" }),
            c(N::Always, P::Always, false, true),
        ),
        (
            json!({ "name": "pcgrad" }),
            c(N::TwoTasks, P::UpToTwoTasks, false, true),
        ),
        (
            json!({ "name": "upgrad", "reg_eps": 0.0, "norm_eps": 0.0 }),
            c(N::Always, P::Always, false, true),
        ),
        (
            json!({ "name": "upgrad" }),
            c(N::Never, P::Always, false, true),
        ),
        (
            json!({ "name": "cagrad" }),
            c(N::Never, P::Always, false, true),
        ),
        (
            json!({ "name": "cagrad", "c": 1.0, "rescale": 0 }),
            c(N::Always, P::Always, false, true),
        ),
        (
            json!({ "name": "imtl", "mode": "gradient" }),
            c(N::FullRank, P::Always, true, true),
        ),
        (
            json!({ "name": "imtl" }),
            c(N::FullRank, P::Always, true, true),
        ),
        (
            json!({ "name": "nash-mtl" }),
            c(N::Always, P::Always, true, true),
        ),
        (
            json!({ "name": "aligned-mtl" }),
            c(N::Never, P::Always, false, true),
        ),
        (
            json!({ "name": "config" }),
            c(N::FullRank, P::Always, true, true),
        ),
        (
            json!({ "name": "graddrop" }),
            c(N::Never, P::Never, false, false),
        ),
        (
            json!({ "name": "gradvac" }),
            c(N::Never, P::Never, false, true),
        ),
        (
            json!({ "name": "dualproj", "reg_eps": 0.0, "norm_eps": 0.0 }),
            c(N::Always, P::Always, false, true),
        ),
        (
            json!({ "name": "dualproj" }),
            c(N::Never, P::Always, false, true),
        ),
        (
            json!({ "name": "fairgrad" }),
            c(N::FullRank, P::Always, true, true),
        ),
        (
            json!({ "name": "fairgrad", "alpha": 2.0 }),
            c(N::FullRank, P::Always, false, true),
        ),
        (json!({ "name": "pcd" }), c(N::Never, P::Never, true, true)),
        (
            json!({ "name": "krum" }),
            c(N::Never, P::Never, false, true),
        ),
        (
            json!({ "name": "krum", "n_byzantine": 1, "n_selected": 2 }),
            c(N::Never, P::Never, false, true),
        ),
        (
            json!({ "name": "trimmed-mean" }),
            c(N::Never, P::Always, false, false),
        ),
        (
            json!({ "name": "excess-mtl" }),
            c(N::Never, P::Always, false, false),
        ),
        (
            json!({ "name": "moco" }),
            c(N::Never, P::Always, false, true),
        ),
        (
            json!({ "name": "modo" }),
            c(N::Never, P::Always, false, true),
        ),
        // SDMGrad's weights depend on the Gram only, but its inner SGD
        // (learning rate 10 on the normalised Gram, momentum, projections)
        // turns rounding-level changes of the rows into visible changes of
        // the weights, so equivariance is not checked.
        (
            json!({ "name": "sdmgrad" }),
            c(N::Never, P::Never, false, false),
        ),
        (
            json!({ "name": "cr-mogm", "inner": "mgda" }),
            c(N::Always, P::Always, false, true),
        ),
        (
            json!({ "name": "auto-lambda" }),
            c(N::Never, P::Always, false, true),
        ),
        (
            json!({ "name": "gls" }),
            c(N::Never, P::Always, false, true),
        ),
        (
            json!({ "name": "stch" }),
            c(N::Never, P::Always, false, true),
        ),
    ]
}

/// One step of a freshly built balancer (seed 0) on `t` rows of `p` values.
/// Methods that ask for a second mini-batch get the same rows again, and
/// those that ask for a validation look-ahead get the rows as validation
/// gradients (learning rate 0.1).
fn step(config: &serde_json::Value, rows: &[f32], t: usize, p: usize) -> Vec<f64> {
    let mut b = BalancerConfig::from_json(config)
        .unwrap()
        .build(t, 0)
        .unwrap();
    let grads = GradRows::new(rows, t, p).unwrap();
    let losses = vec![1.0f32; t];
    let mut input = BalanceInput::from_losses(&losses).with_grads(grads);
    if b.needs_second_batch() {
        input = input.with_second(SecondBatch {
            losses: &losses,
            grads,
        });
    }
    if b.lookahead_weights().is_some() {
        input = input.with_lookahead(LookAhead {
            lr: 0.1,
            losses: &losses,
            grads,
        });
    }
    let out = b
        .balance(&input)
        .unwrap_or_else(|e| panic!("{config}: {e}"));
    let d = out.shared_direction(&grads).unwrap();
    d.iter().map(|&x| f64::from(x)).collect()
}

fn gaussian_rows(t: usize, p: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..t * p)
        .map(|_| rng.sample::<f32, _>(StandardNormal))
        .collect()
}

fn row(rows: &[f32], p: usize, i: usize) -> Vec<f64> {
    rows[i * p..(i + 1) * p]
        .iter()
        .map(|&x| f64::from(x))
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// `d` is `k·g` with `k > 0` (or both vanish).
fn assert_positive_multiple(d: &[f64], g: &[f64], what: &str) {
    let (nd, ng) = (norm(d), norm(g));
    if ng == 0.0 {
        assert!(nd <= REL_TOL, "{what}: zero row gave {d:?}");
        return;
    }
    let k = dot(d, g) / (ng * ng);
    assert!(k > 0.0, "{what}: factor {k}");
    let residual: Vec<f64> = d.iter().zip(g).map(|(x, y)| x - k * y).collect();
    assert!(
        norm(&residual) <= REL_TOL * nd.max(ng),
        "{what}: {d:?} not ∥ {g:?}"
    );
}

fn assert_close(a: &[f64], b: &[f64], scale: f64, what: &str) {
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(diff <= REL_TOL * scale.max(1e-30), "{what}: {a:?} vs {b:?}");
}

/// `λ_min/λ_max` of the Gram matrix above which rows count as independent:
/// 1e-4 keeps the smallest eigenvalue ~100× above the `T·ε_f32` rank cut.
const WELL_CONDITIONED: f64 = 1e-4;

/// `λ_min / λ_max` of `G = JJᵀ` (f64 from the f32 rows).
fn condition_ratio(rows: &[f32], t: usize, p: usize) -> f64 {
    let j = DMatrix::from_fn(t, p, |i, k| f64::from(rows[i * p + k]));
    let eig = (&j * j.transpose()).symmetric_eigen().eigenvalues;
    let max = eig.max();
    if max > 0.0 {
        eig.min() / max
    } else {
        0.0
    }
}

fn check_random(t: usize, p: usize, seed: u64) {
    let rows = gaussian_rows(t, p, seed);
    let factors: Vec<f32> = (0..t).map(|i| 0.25 + i as f32 * 1.5).collect();
    let scaled: Vec<f32> = rows
        .iter()
        .enumerate()
        .map(|(k, x)| x * factors[k / p])
        .collect();
    // Independence as the f32 data can resolve it: the pseudo-inverse
    // methods cut eigenvalues below λ_max·T·ε_f32, so promises that need
    // linearly independent rows are checked on well-conditioned draws.
    let full_rank = p >= t
        && condition_ratio(&rows, t, p) > WELL_CONDITIONED
        && condition_ratio(&scaled, t, p) > WELL_CONDITIONED;
    let scale: f64 = (0..t).map(|i| norm(&row(&rows, p, i))).fold(0.0, f64::max);
    for (config, claims) in methods() {
        let d = step(&config, &rows, t, p);
        assert!(d.iter().all(|x| x.is_finite()), "{config}: {d:?}");
        let nd = norm(&d);
        let promised = match claims.non_conflicting {
            NonConflict::Always => true,
            NonConflict::FullRank => full_rank,
            NonConflict::TwoTasks => t <= 2,
            NonConflict::Never => false,
        };
        if promised {
            for i in 0..t {
                let g = row(&rows, p, i);
                // At a Pareto-stationary input d is 0 up to rounding of the
                // rows' size, so the floor also scales with max‖g_i‖.
                let lower = -REL_TOL * norm(&g) * nd - STATIONARY_FLOOR * scale * scale;
                assert!(
                    dot(&g, &d) >= lower,
                    "{config}: conflicts with task {i}: {}",
                    dot(&g, &d)
                );
            }
        }
        let invariant = match claims.permutation_invariant {
            Permutation::Always => true,
            Permutation::UpToTwoTasks => t <= 2,
            Permutation::Never => false,
        };
        if invariant && t > 1 {
            // Reverse the task order.
            let reversed: Vec<f32> = (0..t)
                .rev()
                .flat_map(|i| rows[i * p..(i + 1) * p].to_vec())
                .collect();
            let e = step(&config, &reversed, t, p);
            assert_close(&d, &e, nd.max(scale), &format!("{config} permutation"));
        }
        if claims.scale_invariant_direction && full_rank {
            let e = step(&config, &scaled, t, p);
            let (ud, ue) = (norm(&d), norm(&e));
            if ud > 0.0 && ue > 0.0 {
                let a: Vec<f64> = d.iter().map(|x| x / ud).collect();
                let b: Vec<f64> = e.iter().map(|x| x / ue).collect();
                // IMTL-G's direction is scale-invariant up to sign only when Σv
                // changes sign; the flip policy keeps it fixed.
                assert_close(&a, &b, 10.0, &format!("{config} scale-invariant direction"));
            }
        }
        if claims.gramian {
            check_rotation(&config, &rows, t, p, seed, &d, nd.max(scale));
        }
    }
}

/// `A(JQ) = QᵀA(J)` for a random orthogonal `Q`.
fn check_rotation(
    config: &serde_json::Value,
    rows: &[f32],
    t: usize,
    p: usize,
    seed: u64,
    d: &[f64],
    scale: f64,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let m = DMatrix::from_fn(p, p, |_, _| rng.sample::<f64, _>(StandardNormal));
    let q = m.qr().q();
    let j = DMatrix::from_fn(t, p, |i, k| f64::from(rows[i * p + k]));
    let jq = &j * &q;
    let rotated: Vec<f32> = (0..t)
        .flat_map(|i| (0..p).map(move |k| (i, k)))
        .map(|(i, k)| jq[(i, k)] as f32)
        .collect();
    let e = step(config, &rotated, t, p);
    let expect: Vec<f64> = (0..p)
        .map(|k| (0..p).map(|l| q[(l, k)] * d[l]).sum())
        .collect();
    // JQ is rounded to f32 once more: allow 10× the usual tolerance.
    assert_close(&e, &expect, 10.0 * scale, &format!("{config} rotation"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn promises_hold_on_random_jacobians(t in 1usize..=5, extra in 0usize..=4, seed in any::<u64>()) {
        check_random(t, t + extra, seed);
    }

    #[test]
    fn wide_and_tall_jacobians(t in 2usize..=6, p in 1usize..=3, seed in any::<u64>()) {
        // P < T: rows are linearly dependent; only the unconditional promises apply.
        check_random(t, p, seed);
    }

    #[test]
    fn equal_rows_give_that_row(t in 1usize..=5, p in 1usize..=6, seed in any::<u64>()) {
        let g: Vec<f32> = gaussian_rows(1, p, seed);
        let rows: Vec<f32> = (0..t).flat_map(|_| g.clone()).collect();
        let g64: Vec<f64> = g.iter().map(|&x| f64::from(x)).collect();
        for (config, _) in methods() {
            let d = step(&config, &rows, t, p);
            assert_positive_multiple(&d, &g64, &format!("{config} equal rows (T = {t})"));
        }
    }

    #[test]
    fn finite_on_degenerate_jacobians(t in 2usize..=5, p in 2usize..=6, seed in any::<u64>(), kind in 0usize..4) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let base = gaussian_rows(2, p, seed);
        let rows: Vec<f32> = match kind {
            // Rank ≤ 2: every row a combination of two base rows.
            0 => (0..t).flat_map(|_| {
                let (a, b): (f32, f32) = (rng.sample(StandardNormal), rng.sample(StandardNormal));
                (0..p).map(|k| a * base[k] + b * base[p + k]).collect::<Vec<_>>()
            }).collect(),
            // Nearly parallel: one row plus 1e-4 relative noise.
            1 => (0..t).flat_map(|_| {
                (0..p).map(|k| base[k] + 1e-4 * rng.sample::<f32, _>(StandardNormal)).collect::<Vec<_>>()
            }).collect(),
            // One zero row among random rows.
            2 => {
                let mut r = gaussian_rows(t, p, seed);
                r[..p].iter_mut().for_each(|x| *x = 0.0);
                r
            }
            // Every row zero.
            _ => vec![0.0; t * p],
        };
        for (config, _) in methods() {
            let d = step(&config, &rows, t, p);
            prop_assert!(d.iter().all(|x| x.is_finite()), "{config} kind {kind}: {d:?}");
        }
    }
}

#[test]
fn stationary_scalar_rows_found_by_proptest() {
    // Three tasks on one parameter with mixed signs: no weights solve
    // FairGrad's equation, and in one task order its Newton iteration ran
    // off to infinity while its decrement, relative to the unbounded
    // objective, looked converged.
    check_random(3, 1, 3_859_331_893_681_529_155);
}

#[test]
fn opposite_rows_are_pareto_stationary() {
    // g and −g: no direction decreases both. Non-conflicting methods must
    // return (numerically) zero.
    let rows = [1.0f32, 2.0, -1.0, -2.0];
    for (config, claims) in methods() {
        let d = step(&config, &rows, 2, 2);
        assert!(d.iter().all(|x| x.is_finite()), "{config}");
        if claims.non_conflicting == NonConflict::Always {
            assert!(norm(&d) < 1e-6, "{config}: {d:?}");
        }
    }
}

#[test]
fn same_seed_gives_bit_identical_steps() {
    let (t, p) = (4, 300_001);
    let rows = gaussian_rows(t, p, 17);
    for (config, _) in methods() {
        let a = step(&config, &rows, t, p);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let b = pool.install(|| step(&config, &rows, t, p));
        assert_eq!(a, b, "{config}");
    }
}
