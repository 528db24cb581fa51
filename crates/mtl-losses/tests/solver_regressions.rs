//! Regression cases for three solver faults, each checked against an exact
//! `f64` computation of the same formula:
//!
//! * IMTL-G dropped a task whose gradient was below the pseudo-inverse's rank
//!   cut on the Gram matrix (norm ratio ~5e-4); the cut is now on the cosine
//!   matrix, so the direction does not depend on per-task scale.
//! * CAGrad returned the mean gradient at every Pareto-stationary input,
//!   although the dual is well defined there; rows `g, −2g, h`.
//! * MGDA's active-set QP added a ridge on the mean diagonal, as large as the
//!   optimum when the task norms span 1e-3..1e3; the KKT residual is checked.

use mtl_losses::balance::solver::{cagrad_dual, min_norm};
use mtl_losses::balance::{
    imtl_g_weights, BalanceInput, BalancerConfig, Cagrad, CagradConfig, GradRows, NegativeSumPolicy,
};
use nalgebra::{DMatrix, DVector};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn gram_of(rows: &DMatrix<f64>) -> DMatrix<f64> {
    rows * rows.transpose()
}

/// IMTL-G in closed form for full-rank `G`: `α ∝ G⁻¹n`, `n_i = ‖g_i‖`,
/// normalised to `Σα = 1` (LU solve in f64).
fn imtl_exact(gram: &DMatrix<f64>) -> DVector<f64> {
    let n = DVector::from_fn(gram.nrows(), |i, _| gram[(i, i)].sqrt());
    let v = gram.clone().lu().solve(&n).expect("full-rank Gram");
    let sum = v.sum();
    v / sum
}

/// Largest relative difference of two weight vectors, entry by entry.
fn max_relative(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(f64::MIN_POSITIVE))
        .fold(0.0, f64::max)
}

/// An f64 solve of the 2 × 2 or 3 × 5 systems below agrees with the
/// pseudo-inverse on the cosine matrix to ~1e-12; 1e-9 leaves margin.
const IMTL_EXACT: f64 = 1e-9;

#[test]
fn imtl_g_keeps_a_task_with_a_tiny_gradient() {
    // Two orthogonal rows, norm ratio 3e-4: α = (3e-4, 1)/(1 + 3e-4), so that
    // d = Σ α_i g_i has equal projections on both unit gradients.
    let rows = DMatrix::from_row_slice(2, 2, &[1.0, 0.0, 0.0, 3e-4]);
    let g = gram_of(&rows);
    let alpha = imtl_g_weights(&g, NegativeSumPolicy::Flip);
    let expect = [3e-4 / (1.0 + 3e-4), 1.0 / (1.0 + 3e-4)];
    assert!(max_relative(&alpha, &expect) < IMTL_EXACT, "{alpha:?}");
    assert!((alpha[1] - 0.9997).abs() < 1e-4);
}

#[test]
fn imtl_g_direction_is_invariant_to_per_task_scale() {
    let mut rng = ChaCha8Rng::seed_from_u64(19);
    let base = DMatrix::from_fn(3, 5, |_, _| rng.gen_range(-1.0..1.0));
    let unit_direction = |rows: &DMatrix<f64>| {
        let alpha = DVector::from_vec(imtl_g_weights(&gram_of(rows), NegativeSumPolicy::Flip));
        let d = rows.transpose() * alpha;
        d.normalize()
    };
    let reference = unit_direction(&base);
    for scale in [1e-6, 3e-4, 1e-2, 1e3, 1e6] {
        let mut rows = base.clone();
        rows.row_mut(1).scale_mut(scale);
        let g = gram_of(&rows);
        let alpha = imtl_g_weights(&g, NegativeSumPolicy::Flip);
        let exact = imtl_exact(&g);
        assert!(
            max_relative(&alpha, exact.as_slice()) < IMTL_EXACT,
            "scale {scale}: {alpha:?} vs {exact:?}"
        );
        let d = unit_direction(&rows);
        assert!((d - &reference).amax() < IMTL_EXACT, "scale {scale}");
    }
}

#[test]
fn imtl_g_through_the_balancer_on_f32_rows() {
    // Rows (1, 0, 0) and (0, 2e-4, 2e-4) as f32: the weights match the f64
    // formula up to the f32 rounding of the inputs (~1e-7 relative).
    let data = [1.0f32, 0.0, 0.0, 0.0, 2e-4, 2e-4];
    let grads = GradRows::new(&data, 2, 3).unwrap();
    let cfg = BalancerConfig::from_json(&serde_json::json!({ "name": "imtl", "mode": "gradient" }))
        .unwrap();
    let mut b = cfg.build(2, 0).unwrap();
    let out = b
        .balance(&BalanceInput::from_losses(&[1.0, 1.0]).with_grads(grads))
        .unwrap();
    let n2 = f64::from(2e-4f32).hypot(f64::from(2e-4f32));
    let expect = [n2 / (1.0 + n2), 1.0 / (1.0 + n2)];
    let got: Vec<f64> = out.weights().iter().map(|&w| f64::from(w)).collect();
    assert!(max_relative(&got, &expect) < 1e-6, "{got:?} vs {expect:?}");
}

/// The CAGrad dual `F(w) = g_wᵀg_0 + C‖g_w‖` over the simplex (rows of `rows`).
fn cagrad_dual_value(rows: &DMatrix<f64>, c: f64, w: &DVector<f64>) -> f64 {
    let t = rows.nrows() as f64;
    let g0: DVector<f64> = rows.row_sum().transpose() / t;
    let gw = rows.transpose() * w;
    gw.dot(&g0) + c * g0.norm() * gw.norm()
}

/// `min_{w ∈ Δ_3} F(w)` by a grid search that zooms in on the best point:
/// F is convex, and 40 rounds of a 41 × 41 grid shrinking by 0.7 reach a
/// window of ~1e-7, far below the tolerance checked.
fn cagrad_optimum(rows: &DMatrix<f64>, c: f64) -> f64 {
    let (mut cx, mut cy, mut half) = (1.0 / 3.0, 1.0 / 3.0, 0.5);
    let mut best = f64::INFINITY;
    for _ in 0..40 {
        let (mut bx, mut by) = (cx, cy);
        for i in 0..=40 {
            for j in 0..=40 {
                let x = cx + half * (f64::from(i) / 20.0 - 1.0);
                let y = cy + half * (f64::from(j) / 20.0 - 1.0);
                if x < 0.0 || y < 0.0 || x + y > 1.0 {
                    continue;
                }
                let f = cagrad_dual_value(rows, c, &DVector::from_vec(vec![x, y, 1.0 - x - y]));
                if f < best {
                    (best, bx, by) = (f, x, y);
                }
            }
        }
        (cx, cy, half) = (bx, by, half * 0.7);
    }
    best
}

#[test]
fn cagrad_at_a_pareto_stationary_input_reaches_the_dual_optimum() {
    // g, −2g, h: 0 = (2/3)g + (1/3)(−2g) lies in the hull, yet h pulls g_0
    // so that a combination has a cosine with g_0 below −c.
    let rows = DMatrix::from_row_slice(3, 2, &[1.0, 0.0, -2.0, 0.0, 0.5, 1.0]);
    let g = gram_of(&rows);
    let c = 0.4;
    let alpha = min_norm::exact(&g).unwrap();
    assert!((rows.transpose() * &alpha).norm() < 1e-9, "not stationary");
    let mut cagrad = Cagrad::new(3, CagradConfig { c, rescale: 0 }).unwrap();
    let w = DVector::from_vec(cagrad.weights_from_gram(&g).unwrap());
    assert!(!cagrad.last_was_stationary());
    let d = rows.transpose() * w;
    let worst = (&rows * &d).min();
    let optimum = cagrad_optimum(&rows, c);
    let g0: DVector<f64> = rows.row_sum().transpose() / 3.0;
    let mean_worst = (&rows * &g0).min();
    // Strong duality: the best worst-task inner product in the ball equals
    // the dual optimum; the grid search is accurate to ~1e-9 here.
    assert!(
        (worst - optimum).abs() < 1e-7,
        "worst {worst} vs optimum {optimum}"
    );
    assert!(worst > mean_worst + 0.05, "{worst} vs g_0's {mean_worst}");
    eprintln!("worst task: {worst:.6} (optimum {optimum:.6}, mean gradient {mean_worst:.6})");
    // The direction stays inside the ball around g_0.
    assert!((d - &g0).norm() <= c * g0.norm() * (1.0 + 1e-9));
    let sol = cagrad_dual::solve(&g, c).unwrap();
    assert!(!sol.stationary && sol.lambda > 0.0);
}

/// `max_i` of the KKT violation of the min-norm problem, each in the units
/// of its own task: `|g_i·d − ‖d‖²| / (‖g_i‖‖d‖)` where `α_i > 0`, and
/// `max(0, ‖d‖² − g_i·d) / (‖g_i‖‖d‖)` where `α_i = 0`.
fn kkt_residual(rows: &DMatrix<f64>, alpha: &DVector<f64>) -> f64 {
    let d = rows.transpose() * alpha;
    let dd = d.norm_squared();
    (0..rows.nrows())
        .map(|i| {
            let gi = rows.row(i).transpose();
            let r = gi.dot(&d) - dd;
            let v = if alpha[i] > 0.0 {
                r.abs()
            } else {
                (-r).max(0.0)
            };
            v / (gi.norm() * d.norm())
        })
        .fold(0.0, f64::max)
}

/// The fault report measured 8e-3 with the old ridge and 2e-5 for an exact
/// solve; these 20 problems (Grams spanning 12 decades) reach 3.5e-6 at
/// most, and the ridge on the mean diagonal fails them.
const KKT_TARGET: f64 = 1e-5;

#[test]
fn mgda_kkt_residual_with_norms_from_1e_minus_3_to_1e3() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let norms = [1e-3, 1e-2, 1.0, 1e2, 1e3];
    let mut largest = 0.0f64;
    for trial in 0..20 {
        let t = 3 + trial % 3;
        let mut rows = DMatrix::from_fn(t, 8, |_, _| rng.gen_range(-1.0..1.0));
        for i in 0..t {
            let scale = norms[(i + trial) % norms.len()] / rows.row(i).norm();
            rows.row_mut(i).scale_mut(scale);
        }
        let alpha = min_norm::exact(&gram_of(&rows)).unwrap();
        assert!((alpha.sum() - 1.0).abs() < 1e-12 && alpha.min() >= 0.0);
        let residual = kkt_residual(&rows, &alpha);
        assert!(residual < KKT_TARGET, "trial {trial}: residual {residual}");
        largest = largest.max(residual);
    }
    eprintln!("largest relative KKT residual: {largest:.2e}");
}
