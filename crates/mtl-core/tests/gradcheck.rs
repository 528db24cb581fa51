//! Finite-difference checks of every op's backward pass, over random shapes
//! and values drawn by proptest.

use mtl_core::{Graph, Result, Tensor, Var};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Central-difference step. With f32 losses of magnitude ~10, rounding error in
/// `(f(x+h) − f(x−h)) / 2h` is about 1e-6·10 / 2e-2 ≈ 5e-4, and the truncation
/// error `h²·f'''/6` about 2e-5: both well below the tolerance.
const STEP: f32 = 1e-2;
/// Absolute tolerance on a gradient entry (see [`STEP`]).
const ABS_TOL: f32 = 5e-3;
/// Relative tolerance on a gradient entry.
const REL_TOL: f32 = 2e-2;
/// Gradient entries checked per input (all of them for small inputs).
const MAX_ENTRIES: usize = 24;

type Build = dyn Fn(&mut Graph, &[Var]) -> Result<Var>;

fn random(shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec((0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect(), shape).unwrap()
}

/// Values bounded away from zero (|x| ≥ 0.1), for ops with a kink or a pole at 0.
fn away_from_zero(shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor {
    random(shape, rng).map(|x| if x >= 0.0 { x + 0.1 } else { x - 0.1 })
}

/// Distinct values 0.25 apart in random order: normalisation statistics stay
/// far from degenerate, so central differences are accurate.
fn spread(shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor {
    let n: usize = shape.iter().product();
    let mut vals: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * 0.25).collect();
    for i in (1..n).rev() {
        vals.swap(i, rng.gen_range(0..=i));
    }
    Tensor::from_vec(vals, shape).unwrap()
}

fn positive(shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor {
    random(shape, rng).map(|x| x.abs() + 0.5)
}

/// `L = Σ f(inputs) ⊙ R` for a fixed random `R`, evaluated on a fresh graph.
fn loss(inputs: &[Tensor], build: &Build, weights: &Tensor) -> f64 {
    let mut g = Graph::new(11);
    let vars: Vec<Var> = inputs.iter().map(|t| g.param_value(t.clone())).collect();
    let y = build(&mut g, &vars).unwrap();
    let y = g.value(y).unwrap();
    y.data()
        .iter()
        .zip(weights.data())
        .map(|(a, b)| *a as f64 * *b as f64)
        .sum()
}

/// Compares the backward pass with central differences for every input.
fn check(inputs: Vec<Tensor>, build: &Build, seed: u64) -> std::result::Result<(), TestCaseError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut g = Graph::new(11);
    let vars: Vec<Var> = inputs.iter().map(|t| g.param_value(t.clone())).collect();
    let y = build(&mut g, &vars).unwrap();
    let weights = random(g.shape(y).unwrap(), &mut rng);
    let grads = g.backward_from(&[(y, weights.clone())], &[]).unwrap();
    for (k, v) in vars.iter().enumerate() {
        let analytic = grads
            .get(*v)
            .cloned()
            .unwrap_or_else(|| Tensor::zeros(inputs[k].shape()));
        prop_assert_eq!(analytic.shape(), inputs[k].shape());
        let n = inputs[k].len();
        let picks: Vec<usize> = if n <= MAX_ENTRIES {
            (0..n).collect()
        } else {
            (0..MAX_ENTRIES).map(|_| rng.gen_range(0..n)).collect()
        };
        for i in picks {
            let mut plus = inputs.clone();
            plus[k].data_mut()[i] += STEP;
            let mut minus = inputs.clone();
            minus[k].data_mut()[i] -= STEP;
            let numeric = ((loss(&plus, build, &weights) - loss(&minus, build, &weights))
                / (2.0 * STEP as f64)) as f32;
            let a = analytic.data()[i];
            prop_assert!(
                (a - numeric).abs() <= ABS_TOL + REL_TOL * numeric.abs().max(a.abs()),
                "input {} entry {}: analytic {} vs numeric {}",
                k,
                i,
                a,
                numeric
            );
        }
    }
    Ok(())
}

fn dims() -> impl Strategy<Value = (usize, usize, u64)> {
    (1usize..5, 1usize..6, any::<u64>())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    #[test]
    fn elementwise_binary((r, c, seed) in dims()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (a, b) = (random(&[r, c], &mut rng), away_from_zero(&[r, c], &mut rng));
        check(vec![a.clone(), b.clone()], &|g, v| g.add(v[0], v[1]), seed)?;
        check(vec![a.clone(), b.clone()], &|g, v| g.sub(v[0], v[1]), seed)?;
        check(vec![a.clone(), b.clone()], &|g, v| g.mul(v[0], v[1]), seed)?;
        check(vec![a, b], &|g, v| g.div(v[0], v[1]), seed)?;
    }

    #[test]
    fn scalar_ops((r, c, seed) in dims()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a = random(&[r, c], &mut rng);
        check(vec![a.clone()], &|g, v| g.neg(v[0]), seed)?;
        check(vec![a.clone()], &|g, v| g.add_scalar(v[0], 0.7), seed)?;
        check(vec![a.clone()], &|g, v| g.mul_scalar(v[0], -1.3), seed)?;
        check(vec![positive(&[r, c], &mut rng)], &|g, v| g.powf(v[0], 1.5), seed)?;
    }

    #[test]
    fn matmul_all_transposes((m, k, seed) in dims(), n in 1usize..5) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = random(&if ta { [k, m] } else { [m, k] }, &mut rng);
            let b = random(&if tb { [n, k] } else { [k, n] }, &mut rng);
            check(vec![a, b], &move |g, v| g.matmul_t(v[0], v[1], ta, tb), seed)?;
        }
    }

    #[test]
    fn broadcasts((r, c, seed) in dims()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (x, row, col) = (random(&[r, c], &mut rng), random(&[c], &mut rng), random(&[r, 1], &mut rng));
        check(vec![x.clone(), row.clone()], &|g, v| g.add_row(v[0], v[1]), seed)?;
        check(vec![x.clone(), row], &|g, v| g.mul_row(v[0], v[1]), seed)?;
        check(vec![x, col], &|g, v| g.mul_col(v[0], v[1]), seed)?;
    }

    #[test]
    fn reductions((r, c, seed) in dims(), d in 1usize..4) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a = random(&[r, c, d], &mut rng);
        check(vec![a.clone()], &|g, v| g.sum(v[0]), seed)?;
        check(vec![a.clone()], &|g, v| g.mean(v[0]), seed)?;
        for axis in 0..3 {
            check(vec![a.clone()], &move |g, v| g.sum_axis(v[0], axis), seed)?;
            check(vec![a.clone()], &move |g, v| g.mean_axis(v[0], axis), seed)?;
        }
    }

    #[test]
    fn activations((r, c, seed) in dims()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a = away_from_zero(&[r, c], &mut rng);
        check(vec![a.clone()], &|g, v| g.relu(v[0]), seed)?;
        check(vec![a.clone()], &|g, v| g.leaky_relu(v[0], 0.1), seed)?;
        check(vec![a.clone()], &|g, v| g.gelu(v[0]), seed)?;
        check(vec![a.clone()], &|g, v| g.tanh(v[0]), seed)?;
        check(vec![a.clone()], &|g, v| g.sigmoid(v[0]), seed)?;
        check(vec![a.clone()], &|g, v| g.exp(v[0]), seed)?;
        check(vec![positive(&[r, c], &mut rng)], &|g, v| g.log(v[0]), seed)?;
        check(vec![a.clone()], &|g, v| g.softmax(v[0]), seed)?;
        check(vec![a], &|g, v| g.log_softmax(v[0]), seed)?;
    }

    #[test]
    fn shape_ops((r, c, seed) in dims()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (a, b) = (random(&[r, c + 1], &mut rng), random(&[r, 2], &mut rng));
        check(vec![a.clone()], &move |g, v| g.reshape(v[0], &[c + 1, r]), seed)?;
        check(vec![a.clone(), b.clone()], &|g, v| g.concat(&[v[0], v[1]], 1), seed)?;
        check(vec![a.clone(), a.clone()], &|g, v| g.concat(&[v[0], v[1]], 0), seed)?;
        check(vec![a.clone()], &move |g, v| g.narrow(v[0], 1, 1, c), seed)?;
        check(vec![a.clone()], &move |g, v| {
            let parts = g.split(v[0], 1, &[1, c])?;
            let scaled = g.mul_scalar(parts[0], 2.0)?;
            let wide = g.concat(&[parts[1], scaled], 1)?;
            Ok(wide)
        }, seed)?;
        let idx: Vec<usize> = (0..r + 2).map(|i| (i * 7) % r).collect();
        check(vec![a], &move |g, v| g.gather_rows(v[0], &idx), seed)?;
    }

    #[test]
    fn conv2d_and_pooling(n in 1usize..3, c in 1usize..3, o in 1usize..3, stride in 1usize..3, pad in 0usize..2, seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = random(&[n, c, 5, 6], &mut rng);
        let w = random(&[o, c, 3, 2], &mut rng);
        let b = random(&[o], &mut rng);
        check(vec![x.clone(), w.clone(), b], &move |g, v| g.conv2d(v[0], v[1], Some(v[2]), stride, pad), seed)?;
        check(vec![x, w], &move |g, v| g.conv2d(v[0], v[1], None, stride, pad), seed)?;
        // Distinct values 0.05 apart, so a ±STEP nudge never changes a window's winner.
        let len = n * c * 4 * 6;
        let mut vals: Vec<f32> = (0..len).map(|i| i as f32 * 0.05).collect();
        for i in (1..len).rev() {
            vals.swap(i, rng.gen_range(0..=i));
        }
        let p = Tensor::from_vec(vals, &[n, c, 4, 6]).unwrap();
        check(vec![p], &|g, v| g.max_pool2d(v[0], 2, 2), seed)?;
    }

    #[test]
    fn dropout_and_norms((r, c, seed) in dims()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Batch normalisation over two rows is ill-conditioned when the two
        // values nearly coincide (σ → 0), so every batch has at least four rows.
        let rows = r + 3;
        let x = spread(&[rows, c + 1], &mut rng);
        let (gm, bt) = (random(&[c + 1], &mut rng), random(&[c + 1], &mut rng));
        check(vec![x.clone()], &|g, v| g.dropout(v[0], 0.3), seed)?;
        check(vec![x.clone(), gm.clone(), bt.clone()], &|g, v| g.layer_norm(v[0], v[1], v[2], 1e-5), seed)?;
        let stats = (vec![0.1; c + 1], vec![0.8; c + 1]);
        let s1 = stats.clone();
        check(vec![x.clone(), gm.clone(), bt.clone()], &move |g, v| Ok(g.batch_norm(v[0], v[1], v[2], 1e-5, (&s1.0, &s1.1))?.0), seed)?;
        let s2 = stats;
        check(vec![x, gm, bt], &move |g, v| {
            g.set_training(false);
            Ok(g.batch_norm(v[0], v[1], v[2], 1e-5, (&s2.0, &s2.1))?.0)
        }, seed)?;
        let img = spread(&[2, c, 2, 3], &mut rng);
        let (gc, bc) = (random(&[c], &mut rng), random(&[c], &mut rng));
        let s3 = (vec![0.0; c], vec![1.0; c]);
        check(vec![img, gc, bc], &move |g, v| Ok(g.batch_norm(v[0], v[1], v[2], 1e-5, (&s3.0, &s3.1))?.0), seed)?;
    }

    #[test]
    fn losses((r, c, seed) in dims()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let k = c + 1;
        let logits = random(&[r, k], &mut rng);
        let targets: Vec<usize> = (0..r).map(|_| rng.gen_range(0..k)).collect();
        let cw: Vec<f32> = (0..k).map(|_| rng.gen_range(0.5f32..2.0)).collect();
        let t1 = targets.clone();
        check(vec![logits.clone()], &move |g, v| g.cross_entropy(v[0], &t1, None, 0.0), seed)?;
        let t2 = targets;
        check(vec![logits.clone()], &move |g, v| g.cross_entropy(v[0], &t2, Some(&cw), 0.1), seed)?;
        let probs = random(&[r, k], &mut rng).map(|x| (x + 1.0) / 2.0);
        check(vec![logits.clone()], &move |g, v| g.bce_with_logits(v[0], &probs), seed)?;
        let tgt = random(&[r, k], &mut rng);
        // Keep predictions 0.1 away from targets so the L1 and Huber kinks are not crossed.
        let pred = tgt.zip_map(&away_from_zero(&[r, k], &mut rng), "offset", |t, d| t + d).unwrap();
        let t3 = tgt.clone();
        check(vec![pred.clone()], &move |g, v| g.mse(v[0], &t3), seed)?;
        let t4 = tgt.clone();
        check(vec![pred.clone()], &move |g, v| g.l1(v[0], &t4), seed)?;
        let t5 = tgt;
        check(vec![pred], &move |g, v| g.huber(v[0], &t5, 0.5), seed)?;
        let (z, mu) = (random(&[r, 3], &mut rng), random(&[k, 3], &mut rng));
        check(vec![z, mu], &|g, v| g.student_t(v[0], v[1], 1.0), seed)?;
    }
}
