//! The `mtl` command: train, evaluate, predict, compare balancers, and look at
//! the built-in data sets and balancers.
//!
//! Exit status: 0 on success, 2 for a bad command line, configuration, data
//! file or checkpoint, 1 for a failure during training (divergence), each with
//! a one-line message naming the culprit.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mtl_cli::progress::Progress;
use mtl_cli::run_plots::RunPlots;
use mtl_cli::CliError;
use mtl_train::{run, RunConfig, RunOptions};

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
        /// Refuse a run whose estimated memory exceeds this (bytes, or with
        /// a unit: 512MiB, 4GiB; default: the memory available).
        #[arg(long, value_parser = parse_memory)]
        memory: Option<u64>,
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
    /// Convert a CSV file to NPY files (`train_x.npy`, `train_<task>.npy`),
    /// streaming, read as training reads it; writes the resolved schema
    /// (`schema.toml`) and the standardisation (`standardizer.json`) beside.
    Convert {
        /// The CSV file.
        csv: PathBuf,
        /// Output directory.
        dir: PathBuf,
        /// The schema (TOML, the `[data.schema]` table of a run configuration).
        #[arg(long)]
        schema: PathBuf,
    },
}

/// A byte count: digits, optionally followed by B, KiB, MiB or GiB (or
/// K, M, G, also powers of 1024).
fn parse_memory(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a byte count such as 4GiB"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        other => return Err(format!("unknown unit {other:?}; use B, KiB, MiB or GiB")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{text:?} overflows 64 bits"))
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

/// Large buffers start on a cache line, so the threads of a kernel do not
/// share the line at the cut between their parts of an output, and the
/// largest are advised for huge pages.
#[global_allocator]
static ALLOCATOR: mtl_cli::allocator::HugePages<mtl_cli::allocator::LineAligned> =
    mtl_cli::allocator::HugePages(mtl_cli::allocator::LineAligned);

fn main() -> ExitCode {
    default_sigpipe();
    mtl_cli::allocator::keep_large_blocks();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train {
            config,
            out,
            resume,
            epochs,
            seed,
            threads,
            quiet,
            json,
            memory,
        } => train(TrainArgs {
            config,
            out,
            resume,
            epochs,
            seed,
            threads,
            quiet,
            json,
            memory,
        }),
        Command::Eval { run, split, json } => eval(&run, &split, json),
        Command::Predict { run, input, output } => predict(&run, input, output),
        Command::Compare {
            config,
            balancers,
            baselines,
            seeds,
            epochs,
            out,
            json,
        } => compare(CompareArgs {
            config,
            balancers,
            baselines,
            seeds,
            epochs,
            out,
            json,
        }),
        Command::Datasets { action } => datasets(action),
        Command::Relations { run, groups } => relations(&run, groups),
        Command::Balancers => {
            balancers();
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mtl: error: {e}");
            ExitCode::from(e.exit_status())
        }
    }
}

/// The arguments of `mtl train`.
struct TrainArgs {
    config: Option<PathBuf>,
    out: Option<PathBuf>,
    resume: Option<PathBuf>,
    epochs: Option<usize>,
    seed: Option<u64>,
    threads: Option<usize>,
    quiet: bool,
    json: bool,
    memory: Option<u64>,
}

/// Sizes the global thread pool.
fn set_threads(threads: Option<usize>) -> Result<(), CliError> {
    if let Some(n) = threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| CliError::usage("--threads", e.to_string()))?;
    }
    Ok(())
}

/// `mtl train`: the configuration (or the default job, or the run to
/// resume), trained with progress and plots.
fn train(args: TrainArgs) -> Result<(), CliError> {
    set_threads(args.threads)?;
    let (mut cfg, out, resume) = match (args.resume, args.config) {
        (Some(dir), _) => (run::run_config(&dir)?.into_inner(), dir, true),
        (None, Some(path)) => {
            let cfg = RunConfig::load(&path)?.into_inner();
            let stem = path
                .file_stem()
                .map_or("run".into(), |s| s.to_string_lossy().to_string());
            (
                cfg,
                args.out.unwrap_or_else(|| PathBuf::from("runs").join(stem)),
                false,
            )
        }
        (None, None) => (
            RunConfig::default_job(),
            args.out.unwrap_or_else(|| PathBuf::from("runs/default")),
            false,
        ),
    };
    if let Some(e) = args.epochs {
        cfg.train.epochs = e;
    }
    if let Some(s) = args.seed {
        cfg.seed = s;
    }
    let cfg = cfg.validate(std::path::Path::new("command line"))?;
    let comm = communicator()?;
    let root = comm.rank() == 0;
    let quiet = args.json || args.quiet;
    let mut progress = Progress::new(quiet);
    if let Some(es) = &cfg.train.early_stopping {
        progress = progress.with_early_stopping(&es.metric, es.patience);
    }
    let mut plots = RunPlots::new(&out);
    let opts = RunOptions {
        out,
        resume,
        stop_after: None,
        memory: args.memory,
    };
    if !root {
        // Data parallelism: the other ranks train silently; rank 0 reports.
        run::fit_with(cfg, &opts, &mut [], comm)?;
        return Ok(());
    }
    let summary = run::fit_with(cfg, &opts, &mut [&mut progress, &mut plots], comm)?;
    plots.finish()?;
    if !quiet {
        for w in &summary.warnings {
            eprintln!("warning: {w}");
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary.to_json(None)).unwrap_or_default()
        );
    } else if !args.quiet {
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

/// The ranks this process trains with: MPI's world when started by `mpirun`
/// or `srun` (built with the feature `mpi`), otherwise a single process. A
/// launch of several processes without the feature is an error (exit 2), not
/// several independent runs writing the same directory.
fn communicator() -> Result<Box<dyn mtl_dist::Communicator + Send>, CliError> {
    #[cfg(feature = "mpi")]
    if mtl_dist::launcher_world_size().is_some() {
        let mpi = mtl_dist::Mpi::init().map_err(mtl_train::TrainError::from)?;
        // SAFETY: `mtl train` builds, uses and drops its trainer, and so
        // this communicator, on the main thread that initialised MPI.
        return Ok(Box::new(unsafe { mtl_dist::MainThread::new(mpi) }));
    }
    #[cfg(not(feature = "mpi"))]
    if let Some(size) = mtl_dist::launcher_world_size().filter(|&w| w > 1) {
        return Err(CliError::usage(
            "mpirun",
            format!(
                "started as one of {size} processes, but this mtl was built without MPI; build it with `cargo build --release -p mtl-cli --features mpi`"
            ),
        ));
    }
    Ok(Box::new(mtl_dist::SingleProcess))
}

/// `mtl eval`: the best parameters of a run scored on one of its splits.
fn eval(run_dir: &std::path::Path, split: &str, json: bool) -> Result<(), CliError> {
    let (mut trainer, prepared) = run::load_best(run_dir)?;
    let rows = match split {
        "test" => &prepared.split.test,
        "validation" => &prepared.split.validation,
        other => {
            return Err(CliError::usage(
                "--split",
                format!("{other:?} is not a split; use test or validation"),
            ))
        }
    };
    let eval = trainer.evaluate(&mtl_data::Subset::new(&prepared.dataset, rows)?)?;
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

/// `mtl predict`: outputs for a new file, or for the run's own test rows.
fn predict(
    run_dir: &std::path::Path,
    input: Option<PathBuf>,
    output: Option<PathBuf>,
) -> Result<(), CliError> {
    use mtl_train::predict::{load_model, to_csv, write_output};
    let text = match input {
        Some(path) => {
            let (mut trainer, pre) = load_model(run_dir)?;
            let x = pre.read_input(&path)?;
            let outputs = trainer.predict_features(&x)?;
            let ids: Vec<usize> = (0..x.shape()[0]).collect();
            to_csv(trainer.tasks(), &outputs, &ids, &pre.class_labels)?
        }
        None => {
            let (mut trainer, prepared) = run::load_best(run_dir)?;
            let rows = &prepared.split.test;
            let outputs = trainer.predict(&mtl_data::Subset::new(&prepared.dataset, rows)?)?;
            to_csv(trainer.tasks(), &outputs, rows, &prepared.class_labels)?
        }
    };
    Ok(write_output(output, &text)?)
}

/// The arguments of `mtl compare`.
struct CompareArgs {
    config: Option<PathBuf>,
    balancers: Vec<String>,
    baselines: bool,
    seeds: u64,
    epochs: Option<usize>,
    out: PathBuf,
    json: bool,
}

/// `mtl compare`: every balancer under every seed, a table and charts.
fn compare(args: CompareArgs) -> Result<(), CliError> {
    let mut base = match args.config {
        Some(path) => RunConfig::load(&path)?.into_inner(),
        None => RunConfig::default_job(),
    };
    if let Some(e) = args.epochs {
        base.train.epochs = e;
    }
    let base = base
        .validate(std::path::Path::new("command line"))?
        .into_inner();
    let opts = mtl_cli::compare::CompareOptions {
        balancers: args.balancers,
        out: args.out.clone(),
        baselines: args.baselines,
        seeds: args.seeds,
    };
    let comparison = mtl_cli::compare::compare(&base, &opts, !args.json)?;
    mtl_cli::compare::write(&args.out, &comparison)?;
    if args.json {
        let all = mtl_cli::compare::to_json(&comparison);
        println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
    } else {
        print!("{}", mtl_cli::compare::to_text(&comparison));
        println!("table and charts: {}", args.out.display());
    }
    Ok(())
}

/// `mtl datasets`: list, describe or export the built-in data sets.
fn datasets(action: DatasetAction) -> Result<(), CliError> {
    match action {
        DatasetAction::List => {
            for info in mtl_data::datasets::list() {
                println!("{:<16} {}", info.name, info.description);
            }
        }
        DatasetAction::Describe { name } => {
            println!("{}", mtl_data::datasets::describe(&name)?);
        }
        DatasetAction::Export { name, dir, seed } => {
            let ds = mtl_data::datasets::load(&name, seed)?;
            let split = ds
                .split()
                .cloned()
                .ok_or_else(|| CliError::usage(&name, "the data set has no split"))?;
            mtl_data::export_npy(&ds, &split, &dir)?;
            println!("wrote {} to {}", name, dir.display());
        }
        DatasetAction::Convert { csv, dir, schema } => {
            let text = std::fs::read_to_string(&schema).map_err(mtl_train::error::io(&schema))?;
            let schema: mtl_data::CsvSchema = toml::from_str(&text).map_err(|e| {
                CliError::Train(mtl_train::TrainError::Config {
                    path: schema.clone(),
                    message: e.to_string().trim_end().to_string(),
                })
            })?;
            let done = mtl_data::convert_csv(&csv, &schema, &dir)?;
            let bad = |path: PathBuf, e: &dyn std::fmt::Display| {
                CliError::Train(mtl_train::TrainError::Config {
                    path,
                    message: e.to_string(),
                })
            };
            let schema_path = dir.join("schema.toml");
            let text = toml::to_string(&done.schema).map_err(|e| bad(schema_path.clone(), &e))?;
            std::fs::write(&schema_path, text).map_err(mtl_train::error::io(&schema_path))?;
            if let Some(s) = &done.standardizer {
                let path = dir.join("standardizer.json");
                let json = serde_json::to_string_pretty(s).map_err(|e| bad(path.clone(), &e))?;
                std::fs::write(&path, json).map_err(mtl_train::error::io(&path))?;
            }
            println!(
                "wrote {} rows ({} dropped) of {} to {}",
                done.rows,
                done.dropped,
                csv.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

/// `mtl relations`: a run's task affinities, cosines and a grouping.
fn relations(run_dir: &std::path::Path, groups: usize) -> Result<(), CliError> {
    use mtl_train::relations::{read, render_text, suggest_groups, AFFINITY_PLOT, COSINE_PLOT};
    let saved = read(run_dir)?;
    let grouping = suggest_groups(&saved.relations.affinity, groups)?;
    print!(
        "{}",
        render_text(&saved.relations, &saved.tasks, Some(&grouping))
    );
    println!(
        "heatmaps: {} and {}",
        run_dir.join(AFFINITY_PLOT).display(),
        run_dir.join(COSINE_PLOT).display()
    );
    Ok(())
}

/// `mtl balancers`: every method with its parameters and defaults.
fn balancers() {
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
}
