//! End-to-end training with `mtl-core` layers and an `mtl-optim` optimizer:
//! the accuracy a small network must reach, and bit-exact determinism.

use std::io::Read;

use mtl_core::nn::{Activation, Conv2d, Flatten, Linear, MaxPool2d, Mlp, Module, Sequential};
use mtl_core::{Graph, ParamGroup, ParamStore, Tensor};
use mtl_optim::{AdamConfig, Optimizer, OptimizerConfig, ParamGroup as Group};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod support;
use support::two_moons::two_moons;

fn adam(lr: f64, len: usize) -> Box<dyn Optimizer> {
    OptimizerConfig::Adam(AdamConfig {
        lr,
        ..AdamConfig::default()
    })
    .build(vec![Group::new(0..len)])
    .unwrap()
}

fn shuffled(n: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.gen_range(0..=i));
    }
    order
}

/// Trains `model` with cross-entropy for `epochs` and returns the final parameters.
#[allow(clippy::too_many_arguments)]
fn train(
    model: &dyn Module,
    ps: &mut ParamStore,
    x: &Tensor,
    y: &[usize],
    epochs: usize,
    batch: usize,
    lr: f64,
    seed: u64,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut opt = adam(lr, ps.len());
    let mut g = Graph::new(seed);
    let mut grads = vec![0.0f32; ps.len()];
    for _ in 0..epochs {
        for idx in shuffled(y.len(), &mut rng).chunks(batch) {
            g.reset();
            let xb = g.input(x.gather_rows(idx).unwrap());
            let yb: Vec<usize> = idx.iter().map(|&i| y[i]).collect();
            let logits = model.forward(&mut g, ps, xb).unwrap();
            let loss = g.cross_entropy(logits, &yb, None, 0.0).unwrap();
            grads.fill(0.0);
            g.backward(&[(loss, 1.0)])
                .unwrap()
                .accumulate_params(&g, 0..ps.len(), &mut grads)
                .unwrap();
            opt.step(ps.flat_mut(), &grads).unwrap();
        }
    }
}

fn accuracy(model: &dyn Module, ps: &mut ParamStore, x: &Tensor, y: &[usize]) -> f32 {
    let mut g = Graph::new(0);
    g.set_training(false);
    let xv = g.input(x.clone());
    let logits = model.forward(&mut g, ps, xv).unwrap();
    let pred = g.value(logits).unwrap().argmax_rows().unwrap();
    pred.iter().zip(y).filter(|(p, t)| p == t).count() as f32 / y.len() as f32
}

#[test]
fn mlp_learns_two_moons() {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let (x, y) = two_moons(1000, 0.15, &mut rng);
    let (xt, yt) = two_moons(500, 0.15, &mut rng);
    let mut ps = ParamStore::new();
    let mlp = Mlp::builder(&[2, 32, 32, 2])
        .build(&mut ps, "mlp", ParamGroup::Shared, &mut rng)
        .unwrap();
    train(&mlp, &mut ps, &x, &y, 30, 100, 0.01, 1);
    let acc = accuracy(&mlp, &mut ps, &xt, &yt);
    eprintln!("two-moons test accuracy {acc:.4}");
    assert!(acc >= 0.95, "two-moons test accuracy {acc}");
}

/// The bundled 8x8 digits (UCI), as `[n, 1, 8, 8]` images scaled to [0, 1].
fn digits() -> (Tensor, Vec<usize>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/digits.csv.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let mut x = Vec::new();
    let mut y = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let vals: Vec<f32> = line.split(',').map(|v| v.trim().parse().unwrap()).collect();
        assert_eq!(vals.len(), 65);
        x.extend(vals[..64].iter().map(|v| v / 16.0));
        y.push(vals[64] as usize);
    }
    let n = y.len();
    (Tensor::from_vec(x, &[n, 1, 8, 8]).unwrap(), y)
}

fn small_convnet(ps: &mut ParamStore, rng: &mut ChaCha8Rng) -> Sequential {
    let mut net = Sequential::new();
    net.push(Conv2d::new(ps, "conv1", ParamGroup::Shared, 1, 8, 3, 1, 1, rng).unwrap())
        .push(Activation::Relu)
        .push(MaxPool2d { size: 2, stride: 2 })
        .push(Conv2d::new(ps, "conv2", ParamGroup::Shared, 8, 16, 3, 1, 1, rng).unwrap())
        .push(Activation::Relu)
        .push(MaxPool2d { size: 2, stride: 2 })
        .push(Flatten)
        .push(Linear::new(ps, "fc", ParamGroup::Shared, 64, 10, true, rng).unwrap());
    net
}

#[test]
fn convnet_learns_the_bundled_digits() {
    let (x, y) = digits();
    assert_eq!(y.len(), 1797);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let order = shuffled(y.len(), &mut rng);
    let (train_idx, test_idx) = order.split_at(1437);
    let pick = |idx: &[usize]| {
        (
            x.gather_rows(idx).unwrap(),
            idx.iter().map(|&i| y[i]).collect::<Vec<_>>(),
        )
    };
    let (xtr, ytr) = pick(train_idx);
    let (xte, yte) = pick(test_idx);
    let mut ps = ParamStore::new();
    let net = small_convnet(&mut ps, &mut rng);
    train(&net, &mut ps, &xtr, &ytr, 12, 32, 0.005, 3);
    let acc = accuracy(&net, &mut ps, &xte, &yte);
    eprintln!("digits test accuracy {acc:.4}");
    assert!(acc >= 0.90, "digits test accuracy {acc}");
}

#[test]
fn same_seed_gives_bit_identical_parameters() {
    let run = || {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let (x, y) = two_moons(256, 0.2, &mut rng);
        let mut ps = ParamStore::new();
        let mlp = Mlp::builder(&[2, 64, 64, 2])
            .dropout(0.2)
            .build(&mut ps, "mlp", ParamGroup::Shared, &mut rng)
            .unwrap();
        train(&mlp, &mut ps, &x, &y, 3, 32, 0.01, 5);
        ps.flat().to_vec()
    };
    let (a, b) = (run(), run());
    assert_eq!(
        a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    // Different seeds differ, so the comparison above is not vacuous.
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let mut ps = ParamStore::new();
    Mlp::builder(&[2, 64, 64, 2])
        .build(&mut ps, "mlp", ParamGroup::Shared, &mut rng)
        .unwrap();
    assert_ne!(ps.flat(), &a[..]);
}

#[test]
fn conv_training_is_identical_with_one_and_two_threads() {
    // Convolution backward splits images into fixed chunks, so the weight
    // gradient's summation order does not depend on the thread count.
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (x, y) = digits();
            let idx: Vec<usize> = (0..200).collect();
            let (xs, ys) = (x.gather_rows(&idx).unwrap(), y[..200].to_vec());
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let mut ps = ParamStore::new();
            let net = small_convnet(&mut ps, &mut rng);
            train(&net, &mut ps, &xs, &ys, 1, 50, 0.01, 2);
            ps.flat().to_vec()
        })
    };
    assert_eq!(run(1), run(2));
}
