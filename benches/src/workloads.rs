//! The training workloads the benchmark binaries share, built through the
//! public training API (`benches/README.md` defines them).
//!
//! - [`mlp_trainer`]: hard sharing over an MLP encoder with classification
//!   heads on one seeded random batch; [`w1`] is its W1 shape
//!   (784 → 256 → 256, batch 256).
//! - [`default_job`]: the default MultiMNIST job of `mtl train` (LeNet-like
//!   hard sharing, tasks `left`, `right`, `sum`), with its data.

use std::path::Path;

use mtl_core::{Targets, TaskKind, TaskSpec, Tensor};
use mtl_data::{Batch, Dataset};
use mtl_losses::task::Task;
use mtl_train::prepare::{prepare, Prepared};
use mtl_train::{Result, RunConfig, Trainer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// W1's input width (a flattened 28 × 28 image).
pub const W1_INPUTS: usize = 784;
/// W1's encoder widths (ReLU after each layer).
pub const W1_HIDDEN: [usize; 2] = [256, 256];
/// W1's batch size.
pub const W1_BATCH: usize = 256;
/// Classes of every W1 head.
pub const W1_CLASSES: usize = 10;

/// A run configuration: hard sharing over an MLP encoder of widths
/// `hidden`, batch 256, Adam 1e-3, the balancer `balancer` by registry name
/// with its default settings.
///
/// # Errors
///
/// An unknown balancer name ([`mtl_train::TrainError::Config`]).
pub fn mlp_config(hidden: &[usize], balancer: &str) -> Result<RunConfig> {
    let hidden: Vec<String> = hidden.iter().map(usize::to_string).collect();
    let text = format!(
        r#"
seed = 0
[data]
builtin = "multimnist"
[model]
arch = "hps"
[model.encoder]
name = "mlp"
hidden = [{}]
[train]
batch_size = 256
optimizer = {{ name = "adam", lr = 1e-3 }}
balancer = {{ name = "{balancer}" }}
"#,
        hidden.join(", ")
    );
    RunConfig::parse(&text, Path::new("workload.toml"))
}

/// A trainer of [`mlp_config`] on random inputs `[batch, inputs]` (standard
/// normal, seed 0) with `tasks` heads of 10 classes (cross-entropy, uniform
/// random labels), and the one batch it steps on.
///
/// # Errors
///
/// Zero sizes, an unknown balancer, or a balancer that cannot train this
/// model ([`mtl_train::TrainError`]).
pub fn mlp_trainer(
    inputs: usize,
    hidden: &[usize],
    tasks: usize,
    batch: usize,
    balancer: &str,
) -> Result<(Trainer, Batch)> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let x = Tensor::randn(&[batch, inputs], 0.0, 1.0, &mut rng)?;
    let mut parts = Vec::new();
    let mut task_list = Vec::new();
    for t in 0..tasks {
        let spec = TaskSpec {
            name: format!("t{t}"),
            kind: TaskKind::Classification {
                classes: W1_CLASSES,
            },
        };
        let labels: Vec<usize> = (0..batch).map(|_| rng.gen_range(0..W1_CLASSES)).collect();
        task_list.push(Task::with_default_loss(spec.clone())?);
        parts.push((spec, Targets::Classes(labels)));
    }
    let ds = Dataset::new("random", x, parts)?;
    let rows: Vec<usize> = (0..batch).collect();
    let b = ds.gather(&rows)?;
    let trainer = Trainer::from_config(
        &mlp_config(hidden, balancer)?,
        &[inputs],
        task_list,
        (0..tasks).collect(),
    )?;
    Ok((trainer, b))
}

/// W1: [`mlp_trainer`] with 784 → 256 → 256, batch 256, `tasks` heads.
///
/// # Errors
///
/// As [`mlp_trainer`].
pub fn w1(tasks: usize, balancer: &str) -> Result<(Trainer, Batch)> {
    mlp_trainer(W1_INPUTS, &W1_HIDDEN, tasks, W1_BATCH, balancer)
}

/// Parameters of W1's last shared layer (256 → 256 with bias), the rows
/// GradNorm reads.
pub const W1_LAST_SHARED: usize = W1_HIDDEN[1] * W1_HIDDEN[0] + W1_HIDDEN[1];

/// The default job of `mtl train` (`mtl_train::config::DEFAULT_CONFIG`) as
/// `mtl train` builds it: its data set and split (MultiMNIST, 18 000
/// training rows), its tasks and a trainer whose regression bias is set
/// from the training rows. Step with batches of its training rows; the
/// batch size is `RunConfig::default_job().train.batch_size`.
///
/// # Errors
///
/// As [`prepare`] and [`Trainer::from_config`].
pub fn default_job() -> Result<(Trainer, Prepared)> {
    let config = RunConfig::default_job().validate(Path::new("<default configuration>"))?;
    let prepared = prepare(&config)?;
    let mut trainer = Trainer::from_prepared(&config, &prepared)?;
    trainer.init_regression_bias(&prepared.dataset, &prepared.split.train)?;
    Ok((trainer, prepared))
}

/// Parameters of the default job's last shared layer (dense 720 → 100).
pub const DEFAULT_JOB_LAST_SHARED: usize = 720 * 100 + 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w1_has_the_documented_parameter_counts() {
        // benches/README.md, "Many processes": P_s = 266 752, P = 271 892
        // at T = 2.
        let (trainer, batch) = w1(2, "equal").unwrap();
        assert_eq!(trainer.shared_len(), 266_752);
        assert_eq!(trainer.params().len(), 271_892);
        assert_eq!(batch.len(), W1_BATCH);
        assert_eq!(W1_LAST_SHARED, 65_792);
    }

    #[test]
    fn the_default_job_has_the_documented_parameter_counts() {
        // benches/README.md, "Many processes": P_s = 77 380, P_h = 2 121.
        let (trainer, prepared) = default_job().unwrap();
        assert_eq!(trainer.shared_len(), 77_380);
        assert_eq!(trainer.params().len(), 77_380 + 2_121);
        assert_eq!(prepared.split.train.len(), 18_000);
    }
}
