//! The `mtl` command: train, evaluate, predict, compare balancers, and look at
//! the built-in data sets and balancers.
//!
//! Exit status: 0 on success, 2 for a bad command line, configuration, data
//! file or checkpoint, 1 for a failure during training (divergence), each with
//! a one-line message naming the culprit.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mtl_cli::{fit, CliError, RunConfig, RunOptions};
use mtl_losses::task::Prediction;

#[derive(Parser)]
#[command(
    name = "mtl",
    version,
    about = "Multi-task learning: train one model on several tasks and balance their losses"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a run (the default job on bundled MultiMNIST when no CONFIG is given).
    Train {
        /// Run configuration (TOML).
        config: Option<PathBuf>,
        /// Run directory (default: runs/<config name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue the run in this directory from its newest good checkpoint.
        #[arg(long, conflicts_with_all = ["config", "out"])]
        resume: Option<PathBuf>,
        /// Override the number of epochs.
        #[arg(long)]
        epochs: Option<usize>,
        /// Override the seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Worker threads (results are bit-identical for the same seed and count).
        #[arg(long)]
        threads: Option<usize>,
        /// Print nothing but errors.
        #[arg(long)]
        quiet: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Score a run's best parameters on its validation or test rows.
    Eval {
        /// The run directory.
        run: PathBuf,
        /// Which rows: test or validation.
        #[arg(long, default_value = "test")]
        split: String,
        /// Print the scores as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a run's predictions on its test rows as CSV.
    Predict {
        /// The run directory.
        run: PathBuf,
        /// Output CSV file (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Train the same configuration with several balancers and compare them.
    Compare {
        /// Run configuration (TOML).
        config: PathBuf,
        /// Balancer names, comma separated; the first is the baseline of Δm%.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "equal,uncertainty,gradnorm,mgda,pcgrad"
        )]
        balancers: Vec<String>,
        /// Directory of the runs (default: runs/compare).
        #[arg(long, default_value = "runs/compare")]
        out: PathBuf,
        /// Print the table as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List, describe or export the built-in data sets.
    Datasets {
        #[command(subcommand)]
        action: DatasetAction,
    },
    /// List every balancer with its parameters and defaults.
    Balancers,
}

#[derive(Subcommand)]
enum DatasetAction {
    /// Names and one-line descriptions.
    List,
    /// Rows, feature shape and tasks of one data set.
    Describe {
        /// Data-set name.
        name: String,
    },
    /// Write a data set's splits as NPY files (features and one file per task).
    Export {
        /// Data-set name.
        name: String,
        /// Output directory.
        dir: PathBuf,
        /// Seed of the data set.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// Row `i` of a prediction as one CSV cell (several values joined by `;`).
fn prediction_cell(p: &Prediction, i: usize) -> String {
    let row = |t: &mtl_core::Tensor| {
        let w = t.shape().get(1).copied().unwrap_or(1);
        t.data()[i * w..(i + 1) * w]
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(";")
    };
    match p {
        Prediction::Classes(c) | Prediction::Clusters(c) => c[i].to_string(),
        Prediction::Probabilities(t) | Prediction::Values(t) => row(t),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mtl: error: {e}");
            match e {
                CliError::Diverged { .. } | CliError::Plot { .. } => ExitCode::from(1),
                _ => ExitCode::from(2),
            }
        }
    }
}

fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Train {
            config,
            out,
            resume,
            epochs,
            seed,
            threads,
            quiet,
            json,
        } => {
            if let Some(n) = threads {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build_global()
                    .map_err(|e| CliError::Config {
                        path: "--threads".into(),
                        message: e.to_string(),
                    })?;
            }
            let (mut cfg, out, resume) = match (resume, config) {
                (Some(dir), _) => (mtl_cli::run::run_config(&dir)?, dir, true),
                (None, Some(path)) => {
                    let cfg = RunConfig::load(&path)?;
                    let stem = path
                        .file_stem()
                        .map_or("run".into(), |s| s.to_string_lossy().to_string());
                    (
                        cfg,
                        out.unwrap_or_else(|| PathBuf::from("runs").join(stem)),
                        false,
                    )
                }
                (None, None) => (
                    RunConfig::default_job(),
                    out.unwrap_or_else(|| PathBuf::from("runs/default")),
                    false,
                ),
            };
            if let Some(e) = epochs {
                cfg.train.epochs = e;
            }
            if let Some(s) = seed {
                cfg.seed = s;
            }
            cfg.validate(std::path::Path::new("command line"))?;
            let opts = RunOptions {
                out,
                resume,
                quiet: json || quiet,
                stop_after: None,
            };
            let summary = fit(cfg, &opts)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&summary).unwrap_or_default()
                );
            } else if !quiet {
                println!(
                    "best epoch {} of {}; test scores:",
                    summary.best_epoch, summary.epochs
                );
                for (name, value) in &summary.test.metrics {
                    println!("  {name:<28} {value:.4}");
                }
                println!("run directory: {}", summary.run_dir.display());
            }
            Ok(())
        }
        Command::Eval { run, split, json } => {
            let (mut trainer, prepared) = mtl_cli::run::load_best(&run)?;
            let rows = match split.as_str() {
                "test" => &prepared.split.test,
                "validation" => &prepared.split.validation,
                other => {
                    return Err(CliError::Config {
                        path: "--split".into(),
                        message: format!("{other:?} is not a split; use test or validation"),
                    })
                }
            };
            let eval = trainer.evaluate(&prepared.dataset, rows)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&eval).unwrap_or_default()
                );
            } else {
                for (name, value) in &eval.metrics {
                    println!("{name:<28} {value:.4}");
                }
            }
            Ok(())
        }
        Command::Predict { run, output } => {
            let (mut trainer, prepared) = mtl_cli::run::load_best(&run)?;
            let outputs = trainer.predict(&prepared.dataset, &prepared.split.test)?;
            let mut text = String::from("row");
            for t in &trainer.tasks {
                text.push_str(&format!(",{}", t.name()));
            }
            text.push('\n');
            let preds = trainer
                .tasks
                .iter()
                .zip(&outputs)
                .map(|(t, o)| t.predict(o))
                .collect::<Result<Vec<_>, _>>()?;
            for (i, row) in prepared.split.test.iter().enumerate() {
                text.push_str(&row.to_string());
                for p in &preds {
                    text.push(',');
                    text.push_str(&prediction_cell(p, i));
                }
                text.push('\n');
            }
            match output {
                Some(path) => {
                    std::fs::write(&path, text).map_err(|source| CliError::Io { path, source })?
                }
                None => print!("{text}"),
            }
            Ok(())
        }
        Command::Compare {
            config,
            balancers,
            out,
            json,
        } => mtl_cli::compare::compare(&config, &balancers, &out, json),
        Command::Datasets { action } => match action {
            DatasetAction::List => {
                for info in mtl_data::datasets::list() {
                    println!("{:<16} {}", info.name, info.description);
                }
                Ok(())
            }
            DatasetAction::Describe { name } => {
                println!("{}", mtl_data::datasets::describe(&name)?);
                Ok(())
            }
            DatasetAction::Export { name, dir, seed } => {
                let ds = mtl_data::datasets::load(&name, seed)?;
                let split = ds.split().cloned().ok_or_else(|| CliError::Config {
                    path: name.clone().into(),
                    message: "the data set has no split".into(),
                })?;
                mtl_data::export_npy(&ds, &split, &dir)?;
                println!("wrote {} to {}", name, dir.display());
                Ok(())
            }
        },
        Command::Balancers => {
            for m in mtl_losses::balance::methods() {
                println!("{:<14} {} (needs: {})", m.name, m.summary, m.needs.as_str());
                for p in &m.params {
                    println!(
                        "    {:<22} default {:<12} {}",
                        p.name,
                        p.default.to_string(),
                        p.doc
                    );
                }
            }
            Ok(())
        }
    }
}
