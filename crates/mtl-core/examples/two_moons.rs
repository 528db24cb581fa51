//! Trains a two-layer perceptron on a seeded two-moons problem with
//! `mtl-core` and Adam from `mtl-optim`, and prints the accuracy per epoch.
//!
//! Run with `cargo run --release --example two_moons -p mtl-core`.

use mtl_core::nn::{Mlp, Module};
use mtl_core::{Graph, ParamGroup, ParamStore};
use mtl_optim::{AdamConfig, OptimizerConfig, ParamGroup as Group};
use rand::{Rng, SeedableRng};

#[path = "../tests/support/two_moons.rs"]
mod support;
use rand_chacha::ChaCha8Rng;
use support::two_moons;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let (x, y) = two_moons(1000, 0.15, &mut rng);
    let mut ps = ParamStore::new();
    let mlp = Mlp::builder(&[2, 32, 32, 2]).build(&mut ps, "mlp", ParamGroup::Shared, &mut rng)?;
    let mut opt = OptimizerConfig::Adam(AdamConfig {
        lr: 0.01,
        ..AdamConfig::default()
    })
    .build(vec![Group::new(0..ps.len())])?;
    let mut g = Graph::new(0);
    let mut grads = vec![0.0f32; ps.len()];
    let batch = 100;
    for epoch in 0..30 {
        let mut order: Vec<usize> = (0..y.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.gen_range(0..=i));
        }
        for idx in order.chunks(batch) {
            g.reset();
            let xb = g.input(x.gather_rows(idx)?);
            let yb: Vec<usize> = idx.iter().map(|&i| y[i]).collect();
            let logits = mlp.forward(&mut g, &mut ps, xb)?;
            let loss = g.cross_entropy(logits, &yb, None, 0.0)?;
            grads.fill(0.0);
            g.backward(&[(loss, 1.0)])?
                .accumulate_params(&g, 0..ps.len(), &mut grads)?;
            opt.step(ps.flat_mut(), &grads)?;
        }
        g.reset();
        let xa = g.input(x.clone());
        let logits = mlp.forward(&mut g, &mut ps, xa)?;
        let pred = g.value(logits)?.argmax_rows()?;
        let acc = pred.iter().zip(&y).filter(|(p, t)| p == t).count() as f32 / y.len() as f32;
        println!("epoch {:>2}  accuracy {:.3}", epoch + 1, acc);
    }
    Ok(())
}
