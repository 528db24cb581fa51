//! The memory budget of a run, checked before its model is built: the
//! estimate of [`mtl_core::budget`] for the configured model, tasks, batch
//! size, optimizer and balancer, against a limit (`mtl train --memory`) or
//! the memory available.

use mtl_core::budget::{self, Budget, BudgetError, BudgetInput, GradientRows};
use mtl_losses::task::Task;
use mtl_losses::GradientSource;
use mtl_optim::OptimizerConfig;

use crate::config::ValidRunConfig;
use crate::error::Result;

/// `f32` values the optimizer keeps per parameter.
pub fn optimizer_slots(optimizer: &OptimizerConfig) -> usize {
    match optimizer {
        OptimizerConfig::Sgd(c) => usize::from(c.momentum != 0.0),
        OptimizerConfig::Adam(c) => 2 + usize::from(c.amsgrad),
        OptimizerConfig::AdamW(c) => 2 + usize::from(c.amsgrad),
        OptimizerConfig::RmsProp(c) => 1 + usize::from(c.momentum != 0.0) + usize::from(c.centered),
        OptimizerConfig::Adagrad(_) => 1,
        OptimizerConfig::Adamax(_) => 2,
    }
}

/// The per-task gradient rows a balancer keeps each step (the rows of the
/// last shared layer alone are small beside the parameters: not counted).
pub fn gradient_rows(needs: GradientSource) -> GradientRows {
    match needs {
        GradientSource::SharedParameters => GradientRows::SharedParams,
        GradientSource::Representation => GradientRows::Representation,
        GradientSource::None | GradientSource::LastSharedLayer => GradientRows::None,
    }
}

/// Names a budget key as the configuration spells it.
fn config_key(key: &str) -> String {
    match key {
        "loader.batch_size" => "[train] batch_size".into(),
        "balancer" => "[train] balancer".into(),
        "tasks" => "[[tasks]]".into(),
        other => match (other.strip_prefix("model."), other.strip_prefix("tasks.")) {
            (Some(rest), _) => format!("[model] {rest}"),
            (_, Some(rest)) => format!("[[tasks]] {rest}"),
            _ => other.to_string(),
        },
    }
}

/// The same error with the key as the configuration spells it.
fn named(e: BudgetError) -> BudgetError {
    match e {
        BudgetError::Overflow { key } => BudgetError::Overflow {
            key: config_key(&key),
        },
        BudgetError::TooLarge {
            key,
            estimate,
            limit,
            breakdown,
        } => BudgetError::TooLarge {
            key: config_key(&key),
            estimate,
            limit,
            breakdown,
        },
        other => other,
    }
}

/// Estimates the memory of a training step of `config` on examples of
/// `input_shape` for `tasks`, and refuses it when it exceeds `limit` bytes
/// (default: the memory available, unchecked where that cannot be read).
pub fn check(
    config: &ValidRunConfig,
    input_shape: &[usize],
    tasks: &[Task],
    limit: Option<u64>,
) -> Result<Budget> {
    let specs: Vec<_> = tasks.iter().map(|t| t.spec().clone()).collect();
    let needs = config
        .train
        .balancer
        .build(tasks.len(), config.seed)?
        .needs();
    let input = BudgetInput {
        model: &config.model,
        input_shape,
        tasks: &specs,
        batch_size: config.train.batch_size,
        optimizer_slots: optimizer_slots(&config.train.optimizer),
        gradient_rows: gradient_rows(needs),
    };
    let mut estimate = budget::estimate(&input).map_err(named)?;
    for part in &mut estimate.parts {
        part.key = config_key(&part.key);
    }
    if let Some(limit) = limit.or_else(budget::available_memory) {
        estimate.check(limit).map_err(named)?;
    }
    Ok(estimate)
}
