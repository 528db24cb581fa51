//! A multi-task model with a trunk of your own, trained in code: two dense
//! layers shared by a head for fuel consumption (regression) and a head for
//! the region of origin (classification) on Auto MPG, balanced by UPGrad,
//! which needs every task's gradient of the shared parameters.
//!
//! Run with `cargo run --release -p mtl-train --example custom_model`.
//! Stated quality, checked at the end (seed 0, 60 epochs): test mpg MAE at
//! most 2.5 and origin accuracy at least 0.68.

use mtl_core::arch::{HeadConfig, TrunkWithHeads};
use mtl_core::nn::{Linear, Module};
use mtl_core::{Graph, ParamGroup, ParamStore, Result, Var};
use mtl_data::{datasets, Subset};
use mtl_losses::{task::Task, BalancerConfig};
use mtl_optim::{AdamConfig, OptimizerConfig};
use mtl_train::{FitOptions, Trainer};
use rand::SeedableRng;

/// The user's trunk: `relu(W2 relu(W1 x))`.
#[derive(Debug)]
struct Trunk(Linear, Linear);

impl Module for Trunk {
    fn forward(&self, g: &mut Graph, ps: &mut ParamStore, x: Var) -> Result<Var> {
        let h = self.0.forward(g, ps, x)?;
        let h = g.relu(h)?;
        let h = self.1.forward(g, ps, h)?;
        g.relu(h)
    }
}

pub fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let data = datasets::load("autompg", 0)?;
    let split = data.split().cloned().ok_or("Auto MPG comes with a split")?;
    let (mut ps, mut rng) = (ParamStore::new(), rand_chacha::ChaCha8Rng::seed_from_u64(0));
    let first = Linear::new(&mut ps, "trunk.0", ParamGroup::Shared, 6, 32, true, &mut rng)?;
    let second = Linear::new(&mut ps, "trunk.1", ParamGroup::Shared, 32, 16, true, &mut rng)?;
    let (trunk, head) = (Box::new(Trunk(first, second)), HeadConfig::default());
    let model = TrunkWithHeads::new(trunk, 16, data.tasks(), &head, &mut ps, &mut rng)?;
    let tasks: Vec<_> = data.tasks().iter().map(|t| Task::with_default_loss(t.clone())).collect();
    let tasks = tasks.into_iter().collect::<std::result::Result<_, _>>()?;
    let mut trainer = Trainer::builder(Box::new(model), ps, tasks)
        .balancer("upgrad".parse::<BalancerConfig>()?)
        .optimizer(OptimizerConfig::Adam(AdamConfig { lr: 1e-2, ..AdamConfig::default() }))
        .build()?;
    trainer.init_regression_bias(&data, &split.train)?;
    let options = FitOptions { epochs: 60, batch_size: 32, ..Default::default() };
    let validation = Subset::new(&data, &split.validation)?;
    trainer.fit(&Subset::new(&data, &split.train)?, Some(&validation), &options, &mut [])?;
    let test = trainer.evaluate(&Subset::new(&data, &split.test)?)?;
    let mae = test.score("mpg.mae").ok_or("no MAE")?.0;
    let accuracy = test.score("origin.accuracy").ok_or("no accuracy")?.0;
    println!("test mpg MAE {mae:.3}, origin accuracy {accuracy:.3}");
    if mae > 2.5 || accuracy < 0.68 {
        return Err(format!("below the stated quality: {mae:.3}, {accuracy:.3}").into());
    }
    Ok(())
}
