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
        /// Run directory (default: runs/ followed by the configuration's name).
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
    /// Write a run's predictions as CSV: on a new .csv or .npy file (read
    /// with the run's saved preprocessing), or on the run's test rows.
    Predict {
        /// The run directory.
        run: PathBuf,
        /// Examples to predict (.csv or .npy); default: the run's test rows.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Output CSV file (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Train the same configuration with several balancers and compare them.
    Compare {
        /// Run configuration (TOML; default: the default job).
        config: Option<PathBuf>,
        /// Balancer names, comma separated, or `all`.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "equal,uncertainty,gradnorm,mgda,pcgrad"
        )]
        balancers: Vec<String>,
        /// Also train a single-task model per task and report Δm% against them.
        #[arg(long)]
        baselines: bool,
        /// Train every balancer (and baseline) under this many seeds: the
        /// configuration's seed, +1, ...; report mean ± standard deviation.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        seeds: u64,
        /// Override the number of epochs.
        #[arg(long)]
        epochs: Option<usize>,
        /// Directory of the runs and the table (default: runs/compare).
        #[arg(long, default_value = "runs/compare")]
        out: PathBuf,
        /// Print one JSON object per balancer (means, deviations, per-seed runs), in an array.
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
    /// Show a run's task relations: the affinity and cosine matrices, the
    /// task embeddings, and the grouping of tasks with the most affinity.
    Relations {
        /// The run directory.
        run: PathBuf,
        /// Number of groups to split the tasks into.
        #[arg(long, default_value_t = 2)]
        groups: usize,
    },
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

/// Lets a closed pipe end the process quietly, as it does other command-line
/// tools (`mtl predict RUN | head`), instead of failing a write.
fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread
    // starts has no other effect.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    default_sigpipe();
    mtl_cli::allocator::keep_large_blocks();
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
                    serde_json::to_string_pretty(&summary.to_json(None)).unwrap_or_default()
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
        Command::Predict { run, input, output } => {
            let text = match input {
                Some(path) => {
                    let (mut trainer, pre) = mtl_cli::predict::load_model(&run)?;
                    let x = pre.read_input(&path)?;
                    let outputs = trainer.predict_features(&x)?;
                    let ids: Vec<usize> = (0..x.shape()[0]).collect();
                    mtl_cli::predict::to_csv(&trainer.tasks, &outputs, &ids, &pre.class_labels)?
                }
                None => {
                    let (mut trainer, prepared) = mtl_cli::run::load_best(&run)?;
                    let rows = &prepared.split.test;
                    let outputs = trainer.predict(&prepared.dataset, rows)?;
                    mtl_cli::predict::to_csv(
                        &trainer.tasks,
                        &outputs,
                        rows,
                        &prepared.class_labels,
                    )?
                }
            };
            mtl_cli::predict::write_output(output, &text)
        }
        Command::Compare {
            config,
            balancers,
            baselines,
            seeds,
            epochs,
            out,
            json,
        } => {
            let mut base = match config {
                Some(path) => RunConfig::load(&path)?,
                None => RunConfig::default_job(),
            };
            if let Some(e) = epochs {
                base.train.epochs = e;
            }
            base.validate(std::path::Path::new("command line"))?;
            let opts = mtl_cli::compare::CompareOptions {
                balancers,
                out: out.clone(),
                baselines,
                seeds,
            };
            let comparison = mtl_cli::compare::compare(&base, &opts, !json)?;
            mtl_cli::compare::write(&out, &comparison)?;
            if json {
                let all = mtl_cli::compare::to_json(&comparison);
                println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
            } else {
                print!("{}", mtl_cli::compare::to_text(&comparison));
                println!("table and charts: {}", out.display());
            }
            Ok(())
        }
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
        Command::Relations { run, groups } => {
            let saved = mtl_cli::relations::read(&run)?;
            let grouping = mtl_cli::relations::suggest_groups(&saved.relations.affinity, groups)?;
            print!(
                "{}",
                mtl_cli::relations::render_text(&saved.relations, &saved.tasks, Some(&grouping))
            );
            println!(
                "heatmaps: {} and {}",
                run.join(mtl_cli::relations::AFFINITY_PLOT).display(),
                run.join(mtl_cli::relations::COSINE_PLOT).display()
            );
            Ok(())
        }
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
