//! Ground truths of balancers.md §19.6–§19.18 for the gradient-manipulation
//! balancers, run through the public `Balancer` API on `f32` gradient rows.

use mtl_losses::balance::{BalanceInput, BalancerConfig, GradRows};
use serde_json::json;

/// The fixtures are small integers, exact in `f32`; balancers solve in `f64`
/// and return `f32`, so results carry ~1e-7 relative rounding, and the
/// reference values are printed with six decimals (±5e-7). 2e-6 covers both.
const PRINTED_TOL: f64 = 2e-6;

const J_ORTH: (&[f32], usize, usize) = (&[2.0, 0.0, 0.0, 1.0], 2, 2);
const J_BASE: (&[f32], usize, usize) = (&[-4.0, 1.0, 1.0, 6.0, 1.0, 1.0], 2, 3);
const J_CONF: (&[f32], usize, usize) = (&[1.0, 0.0, -1.0, 1.0], 2, 2);
const J_DOM: (&[f32], usize, usize) = (&[1.0, 0.0, 2.0, 1.0], 2, 2);
const J3: (&[f32], usize, usize) = (&[1.0, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 1.0, 3.0], 3, 3);

/// Weights and direction of one step of the configured balancer.
fn run(config: serde_json::Value, fixture: (&[f32], usize, usize)) -> (Vec<f64>, Vec<f64>) {
    run_with_losses(config, fixture, &vec![1.0; fixture.1])
}

fn run_with_losses(
    config: serde_json::Value,
    (rows, t, p): (&[f32], usize, usize),
    losses: &[f32],
) -> (Vec<f64>, Vec<f64>) {
    let config = BalancerConfig::from_json(&config).unwrap();
    let mut balancer = config.build(t, 0).unwrap();
    let grads = GradRows::new(rows, t, p).unwrap();
    let out = balancer
        .balance(&BalanceInput::from_losses(losses).with_grads(grads))
        .unwrap();
    let d = out.shared_direction(&grads).unwrap();
    (
        out.weights().iter().map(|&w| f64::from(w)).collect(),
        d.iter().map(|&x| f64::from(x)).collect(),
    )
}

fn assert_close(got: &[f64], expect: &[f64], what: &str) {
    assert_eq!(got.len(), expect.len(), "{what}");
    for (g, e) in got.iter().zip(expect) {
        assert!(
            (g - e).abs() < PRINTED_TOL,
            "{what}: got {got:?}, expected {expect:?}"
        );
    }
}

/// `J·d`, one entry per task.
fn projections((rows, t, p): (&[f32], usize, usize), d: &[f64]) -> Vec<f64> {
    (0..t)
        .map(|i| (0..p).map(|k| f64::from(rows[i * p + k]) * d[k]).sum())
        .collect()
}

fn scaled((rows, t, p): (&[f32], usize, usize), factors: &[f32]) -> Vec<f32> {
    (0..t * p).map(|k| rows[k] * factors[k / p]).collect()
}

#[test]
fn j_base_cross_method_table() {
    let (w, d) = run(json!({ "name": "mgda" }), J_BASE);
    assert_close(&w, &[0.6, 0.4], "MGDA weights");
    assert_close(&d, &[0.0, 1.0, 1.0], "MGDA d");
    let (w, d) = run(json!({ "name": "pcgrad", "reduction": "sum" }), J_BASE);
    assert_close(&w, &[20.0 / 9.0, 30.0 / 19.0], "PCGrad weights");
    assert_close(&d, &[0.584795, 3.801170, 3.801170], "PCGrad d");
    let exact_upgrad = json!({ "name": "upgrad", "reg_eps": 0.0, "norm_eps": 0.0 });
    let (w, d) = run(exact_upgrad, J_BASE);
    assert_close(&w, &[10.0 / 9.0, 15.0 / 19.0], "UPGrad weights");
    assert_close(&d, &[0.292398, 1.900585, 1.900585], "UPGrad d");
    let (w, d) = run(json!({ "name": "imtl", "mode": "gradient" }), J_BASE);
    assert_close(&w, &[0.592330, 0.407670], "IMTL-G weights");
    assert_close(&d, &[0.076697, 1.0, 1.0], "IMTL-G d");
    let (w, d) = run(json!({ "name": "cagrad", "c": 0.5, "rescale": 0 }), J_BASE);
    assert_close(&w, &[0.704124, 0.5], "CAGrad weights");
    assert_close(&d, &[0.183503, 1.204124, 1.204124], "CAGrad d");
    let (w, d) = run(json!({ "name": "nash-mtl", "max_norm": 0.0 }), J_BASE);
    assert_close(&w, &[0.591461, 0.407071], "Nash-MTL weights");
    assert_close(&d, &[0.076584, 0.998533, 0.998533], "Nash-MTL d");
    let (_, d) = run(json!({ "name": "nash-mtl" }), J_BASE);
    assert_close(&d, &[0.054153, 0.706069, 0.706069], "Nash-MTL clipped d");
    let (w, d) = run(json!({ "name": "aligned-mtl" }), J_BASE);
    assert_close(&w, &[0.559072, 0.408261], "Aligned-MTL mean weights");
    assert_close(&d, &[0.213279, 0.967333, 0.967333], "Aligned-MTL mean d");
    let (w, d) = run(
        json!({ "name": "aligned-mtl", "preference": "sum" }),
        J_BASE,
    );
    assert_close(&w, &[1.118144, 0.816522], "Aligned-MTL sum weights");
    assert_close(&d, &[0.426557, 1.934666, 1.934666], "Aligned-MTL sum d");
}

#[test]
fn j_orth_cross_method_table() {
    let (w, d) = run(json!({ "name": "mgda" }), J_ORTH);
    assert_close(&w, &[0.2, 0.8], "MGDA-1 weights");
    assert_close(&d, &[0.4, 0.8], "MGDA-1 d");
    let (w, d) = run(json!({ "name": "pcgrad", "reduction": "sum" }), J_ORTH);
    assert_close(&w, &[1.0, 1.0], "PCGrad weights");
    assert_close(&d, &[2.0, 1.0], "PCGrad d");
    let (w, d) = run(json!({ "name": "upgrad", "reg_eps": 0.0 }), J_ORTH);
    assert_close(&w, &[0.5, 0.5], "UPGrad weights");
    assert_close(&d, &[1.0, 0.5], "UPGrad d");
    let (w, d) = run(json!({ "name": "imtl", "mode": "gradient" }), J_ORTH);
    assert_close(&w, &[1.0 / 3.0, 2.0 / 3.0], "IM-1 weights");
    assert_close(&d, &[2.0 / 3.0, 2.0 / 3.0], "IM-1 d");
    let (w, d) = run(json!({ "name": "nash-mtl", "max_norm": 0.0 }), J_ORTH);
    assert_close(&w, &[0.5, 1.0], "NA-1 weights");
    assert_close(&d, &[1.0, 1.0], "NA-1 d");
    let (w, d) = run(
        json!({ "name": "aligned-mtl", "preference": "sum" }),
        J_ORTH,
    );
    assert_close(&w, &[0.5, 1.0], "AL-2 weights");
    assert_close(&d, &[1.0, 1.0], "AL-2 d");
    let (w, _) = run(json!({ "name": "cagrad", "c": 0.4, "rescale": 0 }), J_ORTH);
    assert_close(&w, &[0.5, 0.947214], "CAGrad c = 0.4");
    let (w, _) = run(json!({ "name": "cagrad", "c": 0.5, "rescale": 0 }), J_ORTH);
    assert_close(&w, &[0.5, 1.059017], "CAGrad c = 0.5");
}

#[test]
fn mgda_2_3_4_conflicting_boundary_and_three_tasks() {
    let (w, d) = run(json!({ "name": "mgda" }), J_CONF);
    assert_close(&w, &[0.6, 0.4], "MGDA-2 J_conf weights");
    assert_close(&d, &[0.2, 0.4], "MGDA-2 J_conf d");
    assert_close(&projections(J_CONF, &d), &[0.2, 0.2], "MGDA-2 g_i·d = ‖d‖²");
    // MGDA-3: exact boundary, not the reference code's 0.999.
    let (w, d) = run(json!({ "name": "mgda" }), J_DOM);
    assert_close(&w, &[1.0, 0.0], "MGDA-3 weights");
    assert_close(&d, &[1.0, 0.0], "MGDA-3 d");
    let diag: (&[f32], usize, usize) = (&[1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 3.0], 3, 3);
    let (w, d) = run(json!({ "name": "mgda" }), diag);
    assert_close(&w, &[36.0 / 49.0, 9.0 / 49.0, 4.0 / 49.0], "MGDA-4 weights");
    assert_close(&d, &[36.0 / 49.0, 18.0 / 49.0, 12.0 / 49.0], "MGDA-4 d");
    let face: (&[f32], usize, usize) = (&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], 3, 2);
    let (w, _) = run(json!({ "name": "mgda" }), face);
    assert_close(&w, &[0.5, 0.5, 0.0], "MGDA-4 face optimum");
    // The Frank–Wolfe solver reaches the same face optimum within 1e-4.
    let fw =
        json!({ "name": "mgda", "solver": "frank-wolfe", "fw_tol": 1e-12, "fw_max_iter": 100000 });
    let (w, _) = run(fw, face);
    assert!((w[0] - 0.5).abs() < 1e-4 && w[2].abs() < 1e-4, "{w:?}");
}

#[test]
fn mgda_5_normalizations_through_the_balancer() {
    let cases = [
        ("none", [0.4, 0.8]),
        ("l2", [1.0, 0.5]),
        ("loss", [1.6, 0.2]),
        ("loss+", [1.882353, 0.058824]),
    ];
    for (mode, expect) in cases {
        let config = json!({ "name": "mgda", "normalization": mode });
        let (_, d) = run_with_losses(config, J_ORTH, &[4.0, 1.0]);
        assert_close(&d, &expect, mode);
    }
    let libmtl = json!({ "name": "mgda", "normalization": "loss+", "update": "normalized" });
    let (_, d) = run_with_losses(libmtl, J_ORTH, &[4.0, 1.0]);
    assert_close(&d, &[0.235294, 0.058824], "MGDA-5 LibMTL loss+");
}

#[test]
fn pcgrad_ground_truths() {
    let (_, d) = run(json!({ "name": "pcgrad", "reduction": "sum" }), J_CONF);
    assert_close(&d, &[0.5, 1.5], "PC-1 sum");
    let (_, d) = run(json!({ "name": "pcgrad" }), J_CONF);
    assert_close(&d, &[0.25, 0.75], "PC-1 mean");
    let no_conflict: (&[f32], usize, usize) = (&[1.0, 0.0, 1.0, 1.0], 2, 2);
    let (_, d) = run(json!({ "name": "pcgrad", "reduction": "sum" }), no_conflict);
    assert_close(&d, &[2.0, 1.0], "PC-3");
    // PROP-5: ascending order, T = 3, conflicts with task 2.
    let rows: (&[f32], usize, usize) = (&[1.0, 1.0, -1.0, -1.0, 0.0, 1.0, 1.0, -1.0, 0.0], 3, 3);
    let ascending = json!({ "name": "pcgrad", "reduction": "sum", "shuffle": false });
    let (w, d) = run(ascending, rows);
    assert_close(&w, &[5.0 / 3.0, 2.5, 2.0], "PROP-5 weights");
    assert_close(
        &projections(rows, &d),
        &[0.0, -1.0 / 3.0, 1.5],
        "PROP-5 J·d",
    );
    // UPGrad on the same rows does not conflict.
    let (_, d) = run(json!({ "name": "upgrad", "reg_eps": 0.0 }), rows);
    assert_close(
        &projections(rows, &d),
        &[0.111111, 0.055556, 0.166667],
        "PROP-5 UPGrad",
    );
    // PROP-6: the order of the tasks changes the result.
    let orders: [(&[f32], [f64; 2]); 3] = [
        (&[1.0, 0.0, -1.0, 1.0, -1.0, -2.0], [-1.2, -0.9]),
        (&[-1.0, 1.0, 1.0, 0.0, -1.0, -2.0], [-0.2, -1.4]),
        (&[-1.0, -2.0, -1.0, 1.0, 1.0, 0.0], [0.2, -0.7]),
    ];
    for (rows, expect) in orders {
        let config = json!({ "name": "pcgrad", "reduction": "sum", "shuffle": false });
        let (_, d) = run(config, (rows, 3, 2));
        assert_close(&d, &expect, "PROP-6");
    }
}

#[test]
fn graddrop_ground_truths() {
    // GDROP-1: feature 1 is 6 or −4 (sum scale), features 2 and 3 always 2.
    let mut sixes = 0;
    let draws = 4000;
    let config =
        BalancerConfig::from_json(&json!({ "name": "graddrop", "reduction": "sum" })).unwrap();
    let mut balancer = config.build(2, 3).unwrap();
    let grads = GradRows::new(J_BASE.0, 2, 3).unwrap();
    for _ in 0..draws {
        let out = balancer
            .balance(&BalanceInput::from_losses(&[1.0, 1.0]).with_grads(grads))
            .unwrap();
        let d = out.direction().unwrap();
        assert!(d[0] == 6.0 || d[0] == -4.0, "{d:?}");
        assert_eq!(&d[1..], &[2.0, 2.0]);
        sixes += usize::from(d[0] == 6.0);
    }
    // GDROP-3: frequency of 6 is P = 0.6 within 4σ, σ = √(0.24/N).
    let freq = sixes as f64 / draws as f64;
    assert!(
        (freq - 0.6).abs() < 4.0 * (0.24f64 / draws as f64).sqrt(),
        "{freq}"
    );
    // GDROP-2: leak 1 is the plain sum (mean scale: the mean).
    let (_, d) = run(
        json!({ "name": "graddrop", "leak": 1.0, "reduction": "sum" }),
        J_BASE,
    );
    assert_close(&d, &[2.0, 2.0, 2.0], "GDROP-2 sum");
    let (w, d) = run(json!({ "name": "graddrop", "leak": 1.0 }), J_BASE);
    assert_close(&w, &[0.5, 0.5], "GDROP-2 mean weights");
    assert_close(&d, &[1.0, 1.0, 1.0], "GDROP-2 mean");
    // PROP-8: the output leaves the row span.
    let rows: (&[f32], usize, usize) = (&[1.0, 2.0, 0.0, -1.0, 1.0, 1.0], 2, 3);
    let (_, d) = run(json!({ "name": "graddrop", "reduction": "sum" }), rows);
    assert!(d == [1.0, 3.0, 1.0] || d == [-1.0, 3.0, 1.0], "{d:?}");
}

#[test]
fn gradvac_gv_2_through_the_balancer() {
    let config =
        BalancerConfig::from_json(&json!({ "name": "gradvac", "reduction": "sum" })).unwrap();
    let mut balancer = config.build(2, 0).unwrap();
    let grads = GradRows::new(J_CONF.0, 2, 2).unwrap();
    let input = BalanceInput::from_losses(&[1.0, 1.0]).with_grads(grads);
    let d1: Vec<f64> = balancer
        .balance(&input)
        .unwrap()
        .direction()
        .unwrap()
        .iter()
        .map(|&x| f64::from(x))
        .collect();
    assert_close(&d1, &[0.5, 1.5], "GV-2 step 1");
    let d2: Vec<f64> = balancer
        .balance(&input)
        .unwrap()
        .direction()
        .unwrap()
        .iter()
        .map(|&x| f64::from(x))
        .collect();
    assert_close(&d2, &[0.311018, 1.311018], "GV-2 step 2");
    // Per-group targets: two groups of one column each are independent.
    let grouped = json!({ "name": "gradvac", "reduction": "sum", "group_sizes": [1, 1] });
    let (_, d) = run(grouped, J_CONF);
    // Column 1: rows 1 and −1 conflict (cos −1, corrected to 0 each way);
    // column 2: rows 0 and 1 (a zero group gradient is skipped).
    assert_close(&d, &[0.0, 1.0], "GradVac per-group");
    let bad = json!({ "name": "gradvac", "group_sizes": [1, 2] });
    let config = BalancerConfig::from_json(&bad).unwrap();
    let mut b = config.build(2, 0).unwrap();
    assert!(b.balance(&input).is_err());
}

#[test]
fn cagrad_ground_truths() {
    let (_, d) = run(json!({ "name": "cagrad", "c": 0.0 }), J_BASE);
    assert_close(&d, &[1.0, 1.0, 1.0], "CA-1");
    let (_, d) = run(json!({ "name": "cagrad", "c": 0.5, "rescale": 1 }), J_BASE);
    assert_close(&d, &[0.146803, 0.963299, 0.963299], "CA-2 rescale 1");
    let (_, d) = run(json!({ "name": "cagrad", "c": 0.4, "rescale": 0 }), J_BASE);
    assert_close(&d, &[0.346803, 1.163299, 1.163299], "CA-3");
    let worst = projections(J_BASE, &d)
        .into_iter()
        .fold(f64::INFINITY, f64::min);
    assert!(
        (worst - 0.939388).abs() < PRINTED_TOL,
        "CA-3 min g_i·d {worst}"
    );
    let (_, d) = run(json!({ "name": "cagrad", "c": 0.4, "rescale": 0 }), J_CONF);
    assert_close(&d, &[0.2, 0.5], "CA-4");
    let (_, d) = run(json!({ "name": "cagrad", "c": 0.4, "rescale": 1 }), J_CONF);
    assert_close(&d, &[0.172414, 0.431034], "CA-4 rescale 1");
    let (_, d) = run(json!({ "name": "cagrad", "c": 0.5, "rescale": 0 }), J3);
    assert_close(&d, &[1.448403, 1.0, 1.0], "CA-6 c = 0.5");
    let (_, d) = run(json!({ "name": "cagrad", "c": 0.4, "rescale": 0 }), J3);
    assert_close(&d, &[1.292055, 1.0, 1.0], "CA-6 c = 0.4");
}

#[test]
fn imtl_ground_truths() {
    let gradient = json!({ "name": "imtl", "mode": "gradient" });
    let (w, d) = run(gradient.clone(), J3);
    assert_close(&w, &[0.648892, 0.130717, 0.220391], "IM-3 weights");
    assert_close(&d, &[0.779609, 0.481825, 0.661172], "IM-3 d");
    // Equal projections on the unit gradients.
    for (p, row_norm) in projections(J3, &d)
        .iter()
        .zip([1.0, 5f64.sqrt(), 10f64.sqrt()])
    {
        assert!((p / row_norm - 0.779609).abs() < PRINTED_TOL);
    }
    // IM-4: scaling g_2 by 10 changes α, not the direction.
    let big = scaled(J_BASE, &[1.0, 10.0]);
    let (w, d) = run(gradient.clone(), (&big, 2, 3));
    assert_close(&w, &[0.935607, 0.064393], "IM-4 weights");
    let norm = d.iter().map(|x| x * x).sum::<f64>().sqrt();
    let unit: Vec<f64> = d.iter().map(|x| x / norm).collect();
    assert_close(&unit, &[0.054153, 0.706069, 0.706069], "IM-4 direction");
    // IM-6: the reference sign (keep) conflicts with every task; flip does not.
    let rows: (&[f32], usize, usize) = (&[0.0, 1.0, 2.0, -1.0, -1.0, 1.0, 0.0, 0.0, 1.0], 3, 3);
    let (_, d) = run(
        json!({ "name": "imtl", "mode": "gradient", "negative_sum": "keep" }),
        rows,
    );
    assert_close(&d, &[4.741340, -1.156138, -4.897477], "IM-6 keep");
    assert_close(
        &projections(rows, &d),
        &[-10.951092, -8.482679, -4.897477],
        "IM-6 J·d",
    );
    let (_, d) = run(gradient, rows);
    assert!(projections(rows, &d).iter().all(|&p| p > 0.0), "IM-6 flip");
}

#[test]
fn nash_mtl_ground_truths() {
    let exact = json!({ "name": "nash-mtl", "max_norm": 0.0 });
    for (fixture, alpha) in [
        (J_BASE, vec![0.591461, 0.407071]),
        (J_CONF, vec![1.847759, 1.306563]),
        (J3, vec![0.849690, 0.327211, 0.285195]),
    ] {
        let (w, d) = run(exact.clone(), fixture);
        assert_close(&w, &alpha, "NA-2/3/4 α");
        // Fixed point g_i·d = 1/α_i and ‖d‖² = T.
        let inverse: Vec<f64> = w.iter().map(|a| 1.0 / a).collect();
        let proj = projections(fixture, &d);
        for (p, e) in proj.iter().zip(&inverse) {
            assert!((p - e).abs() < 1e-5 * e.max(1.0), "{proj:?} vs {inverse:?}");
        }
        let norm2: f64 = d.iter().map(|x| x * x).sum();
        assert!((norm2 - fixture.1 as f64).abs() < 1e-5, "‖d‖² = {norm2}");
    }
    let (_, d) = run(exact.clone(), J3);
    assert_close(&d, &[1.176900, 0.939617, 0.855585], "NA-4 d");
    // NA-5: scaling a task leaves d unchanged.
    for fixture in [J_BASE, J_CONF, J3] {
        let (_, d) = run(exact.clone(), fixture);
        let mut factors = vec![1.0; fixture.1];
        factors[0] = 10.0;
        let rows = scaled(fixture, &factors);
        let (_, e) = run(exact.clone(), (&rows, fixture.1, fixture.2));
        assert_close(&e, &d, "NA-5");
    }
    // NA-6: tiny gradients (J_base/1000), exact α ×1000.
    let tiny: Vec<f32> = J_BASE.0.iter().map(|x| x * 1e-3).collect();
    let (w, _) = run(exact, (&tiny, 2, 3));
    assert!(
        (w[0] - 591.461).abs() < 2e-3 && (w[1] - 407.071).abs() < 2e-3,
        "{w:?}"
    );
}

#[test]
fn aligned_mtl_ground_truths() {
    let sum = json!({ "name": "aligned-mtl", "preference": "sum" });
    let (w, d) = run(sum.clone(), J3);
    assert_close(&w, &[0.839782, 0.225527, 0.254656], "AL-3 weights");
    assert_close(&d, &[1.065309, 0.705709, 0.763967], "AL-3 d");
    let rank_one: (&[f32], usize, usize) = (&[1.0, 0.0, 2.0, 0.0], 2, 2);
    let (w, d) = run(sum.clone(), rank_one);
    assert_close(&w, &[0.6, 1.2], "AL-4 weights");
    assert_close(&d, &[3.0, 0.0], "AL-4 d");
    // PROP-7: Aligned-MTL can conflict with a task.
    let rows: (&[f32], usize, usize) = (&[0.0, -1.0, 2.0, 1.0, -2.0, -1.0, 0.0, 1.0, 0.0], 3, 3);
    let (w, d) = run(sum, rows);
    assert_close(&w, &[0.379454, 0.521998, 1.289506], "PROP-7 weights");
    assert_close(
        &projections(rows, &d),
        &[0.607763, 0.552974, -0.133943],
        "PROP-7 J·d",
    );
}

#[test]
fn upgrad_ground_truths_and_linearity() {
    let (w, d) = run(json!({ "name": "upgrad" }), J_BASE);
    assert_close(&w, &[1.110921, 0.789431], "UP-1 torchjd-style weights");
    assert_close(&d, &[0.292902, 1.900352, 1.900352], "UP-1 torchjd-style d");
    let exact = json!({ "name": "upgrad", "reg_eps": 0.0 });
    let (w, d) = run(exact.clone(), J_CONF);
    assert_close(&w, &[1.0, 0.75], "UP-2 weights");
    assert_close(&d, &[0.25, 0.75], "UP-2 d");
    let (w, d) = run(exact.clone(), J3);
    assert_close(&w, &[1.0 / 3.0; 3], "UP-3 weights");
    assert_close(&d, &[2.0 / 3.0, 1.0, 1.0], "UP-3 d");
    // PROP-2: linear under scaling; PROP-3: MGDA is not; PROP-4: Nash is invariant.
    let a = scaled(J_BASE, &[2.0, 1.0]);
    let b = scaled(J_BASE, &[3.0, 2.0]);
    let (_, d_a) = run(exact.clone(), (&a, 2, 3));
    let (_, d_b) = run(exact, (&b, 2, 3));
    assert_close(&d_a, &[0.029240, 2.690058, 2.690058], "PROP-2 diag(2,1)");
    assert_close(&d_b, &[0.321637, 4.590643, 4.590643], "PROP-2 diag(3,2)");
    let (_, m_b) = run(json!({ "name": "mgda" }), (&b, 2, 3));
    assert_close(
        &m_b,
        &[0.207612, 2.491349, 2.491349],
        "PROP-3 MGDA diag(3,2)",
    );
    let (_, n_b) = run(json!({ "name": "nash-mtl", "max_norm": 0.0 }), (&b, 2, 3));
    assert_close(
        &n_b,
        &[0.076584, 0.998533, 0.998533],
        "PROP-4 Nash diag(3,2)",
    );
}

#[test]
fn config_values() {
    // Computed from the definition (pinv of the unit rows) in float64.
    let (_, d) = run(json!({ "name": "config" }), J_ORTH);
    assert_close(&d, &[0.75, 0.75], "ConFIG J_orth");
    let (_, d) = run(json!({ "name": "config" }), J_BASE);
    assert_close(&d, &[0.079404, 1.035303, 1.035303], "ConFIG J_base");
    let (_, d) = run(json!({ "name": "config" }), J3);
    assert_close(&d, &[1.015027, 0.627321, 0.860825], "ConFIG J3");
    // Equal projections on the unit gradients: 1.015027 / ‖g_i‖ ·(J·d)_i.
    let proj = projections(J3, &d);
    for (p, n) in proj.iter().zip([1.0, 5f64.sqrt(), 10f64.sqrt()]) {
        assert!((p / n - 1.015027).abs() < PRINTED_TOL, "{proj:?}");
    }
}

#[test]
fn two_task_identities() {
    // (a) PCGrad(sum) = 2 UPGrad; (b) Nash, IMTL-G and u1 + u2 are parallel.
    for fixture in [J_BASE, J_CONF, J_ORTH, J_DOM] {
        let (_, pc) = run(json!({ "name": "pcgrad", "reduction": "sum" }), fixture);
        let (_, up) = run(json!({ "name": "upgrad", "reg_eps": 0.0 }), fixture);
        let twice: Vec<f64> = up.iter().map(|x| 2.0 * x).collect();
        assert_close(&pc, &twice, "PCGrad = 2 UPGrad");
        let unit = |d: &[f64]| {
            let n = d.iter().map(|x| x * x).sum::<f64>().sqrt();
            d.iter().map(|x| x / n).collect::<Vec<f64>>()
        };
        let (_, nash) = run(json!({ "name": "nash-mtl" }), fixture);
        let (_, imtl) = run(json!({ "name": "imtl", "mode": "gradient" }), fixture);
        let p = fixture.2;
        let rows = fixture.0;
        let n1 = (0..p)
            .map(|k| f64::from(rows[k]).powi(2))
            .sum::<f64>()
            .sqrt();
        let n2 = (0..p)
            .map(|k| f64::from(rows[p + k]).powi(2))
            .sum::<f64>()
            .sqrt();
        let bisector: Vec<f64> = (0..p)
            .map(|k| f64::from(rows[k]) / n1 + f64::from(rows[p + k]) / n2)
            .collect();
        assert_close(&unit(&nash), &unit(&bisector), "Nash ∥ u1 + u2");
        assert_close(&unit(&imtl), &unit(&bisector), "IMTL-G ∥ u1 + u2");
    }
}

#[test]
fn every_gradient_method_is_registered_with_documented_parameters() {
    use mtl_losses::balance::{methods, GradientSource};
    let names = [
        "mgda",
        "mgda-ub",
        "pcgrad",
        "graddrop",
        "gradvac",
        "cagrad",
        "imtl",
        "nash-mtl",
        "aligned-mtl",
        "upgrad",
        "config",
    ];
    let listed = methods();
    for name in names {
        let info = listed.iter().find(|m| m.name == name).expect(name);
        let defaults = serde_json::to_value(BalancerConfig::default_for(name).unwrap()).unwrap();
        let mut keys: Vec<&str> = defaults
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .filter(|k| *k != "name")
            .collect();
        keys.sort_unstable();
        let mut documented: Vec<&str> = info.params.iter().map(|p| p.name).collect();
        documented.sort_unstable();
        assert_eq!(keys, documented, "{name}");
        let expected_source = match name {
            "mgda-ub" | "graddrop" => GradientSource::Representation,
            _ => GradientSource::SharedParameters,
        };
        assert_eq!(info.needs, expected_source, "{name}");
    }
    // Missing gradient rows are a typed error, not a panic.
    for name in names {
        let mut b = BalancerConfig::default_for(name)
            .unwrap()
            .build(2, 0)
            .unwrap();
        let err = b
            .balance(&BalanceInput::from_losses(&[1.0, 1.0]))
            .unwrap_err();
        assert!(
            matches!(err, mtl_losses::Error::MissingGradients { .. }),
            "{name}: {err}"
        );
        let nan = [f32::NAN, 0.0, 1.0, 1.0];
        let grads = GradRows::new(&nan, 2, 2).unwrap();
        let err = b
            .balance(&BalanceInput::from_losses(&[1.0, 1.0]).with_grads(grads))
            .unwrap_err();
        assert!(
            matches!(err, mtl_losses::Error::NonFiniteGradient { task: 0, .. }),
            "{name}: {err}"
        );
    }
}
