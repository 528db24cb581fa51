//! Data-parallel training steps, timed: W1 (`T` = 2 and 8; equal, MGDA-UB,
//! PCGrad, UPGrad, GradNorm: one balancer of each need) and epochs of the
//! default MultiMNIST job, on the ranks of this process (one plain process,
//! or every process of an `mpirun` job), with the share of each step spent
//! in collectives.
//!
//! ```text
//! RAYON_NUM_THREADS=2 MATMUL_NUM_THREADS=2 dist_steps run --layout 1x2 --json a.jsonl
//! RAYON_NUM_THREADS=1 MATMUL_NUM_THREADS=1 mpirun -np 2 dist_steps run --layout 2x1 --json b.jsonl
//! dist_steps compare a.jsonl b.jsonl
//! ```
//!
//! `run` options: `--reps N` (repetitions, default 7), `--steps N` (W1
//! steps per repetition, default 20), `--warmup N` (untimed steps first,
//! default 3), `--epochs N` (MultiMNIST repetitions, one epoch each, default
//! 3), `--only w1|mnist`. Threads come from the environment
//! (`RAYON_NUM_THREADS`, and `MATMUL_NUM_THREADS` for the matrix products).
//!
//! Every rank wraps its communicator in [`Timed`], which adds up the wall
//! time and payload bytes of every collective; a step's communication share
//! is that time over the step's wall time on the same rank (waiting for a
//! slower rank counts as communication). Rank 0 prints one Markdown table
//! for the run and, with `--json`, writes one JSON line per case; `compare`
//! joins two such files (a one-rank and a two-rank layout) into one table
//! with the ratio of step times and the bytes against the on-paper formula
//! of `benches/README.md` ("What each balancer need sends").

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use mtl_benches::workloads::{self, DEFAULT_JOB_LAST_SHARED, W1_LAST_SHARED};
use mtl_data::{Batch, DataLoader, LoaderConfig};
use mtl_dist::{
    launcher_world_size, CommStats, Communicator, MainThread, Mpi, SingleProcess, StatsHandle,
    Timed,
};
use mtl_losses::GradientSource;
use mtl_train::{RunConfig, Trainer};
use serde_json::{json, Value};

type Error = Box<dyn StdError>;

/// The W1 balancers: one of each need.
const W1_BALANCERS: [&str; 5] = ["equal", "mgda-ub", "pcgrad", "upgrad", "gradnorm"];
/// W1's task counts.
const W1_TASKS: [usize; 2] = [2, 8];

struct RunArgs {
    layout: String,
    reps: usize,
    steps: usize,
    warmup: usize,
    epochs: usize,
    only: Option<String>,
    json: Option<PathBuf>,
}

fn parse_run(mut it: impl Iterator<Item = String>) -> Result<RunArgs, Error> {
    let mut a = RunArgs {
        layout: String::new(),
        reps: 7,
        steps: 20,
        warmup: 3,
        epochs: 3,
        only: None,
        json: None,
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--layout" => a.layout = value,
            "--reps" => a.reps = value.parse()?,
            "--steps" => a.steps = value.parse()?,
            "--warmup" => a.warmup = value.parse()?,
            "--epochs" => a.epochs = value.parse()?,
            "--only" if value == "w1" || value == "mnist" => a.only = Some(value),
            "--only" => return Err(format!("--only takes w1 or mnist, not {value:?}").into()),
            "--json" => a.json = Some(value.into()),
            _ => return Err(format!("unknown option {flag}").into()),
        }
    }
    if a.reps == 0 || a.steps == 0 || a.epochs == 0 {
        return Err("--reps, --steps and --epochs must be positive".into());
    }
    Ok(a)
}

/// The measurements of one case on this rank.
#[derive(Default)]
struct Measured {
    /// Mean wall time of a step in each repetition, ms.
    step_ms: Vec<f64>,
    /// Mean time in collectives per step in each repetition, ms.
    comm_ms: Vec<f64>,
    /// Wall time of each repetition (an epoch, loading included), s; empty
    /// for W1.
    epoch_s: Vec<f64>,
    /// Collectives of all timed steps.
    stats: CommStats,
    /// Timed steps.
    steps: usize,
    /// Wall time of all timed steps, s.
    step_s: f64,
}

impl Measured {
    /// Adds one repetition of `times` (s per step) with its collectives.
    fn add_rep(&mut self, times: &[f64], stats: &CommStats) {
        let n = times.len().max(1) as f64;
        let total: f64 = times.iter().sum();
        self.step_ms.push(1e3 * total / n);
        self.comm_ms
            .push(1e3 * stats.total().time.as_secs_f64() / n);
        self.stats.add(stats);
        self.steps += times.len();
        self.step_s += total;
    }

    /// This rank's share of step time spent in collectives.
    fn comm_share(&self) -> f64 {
        self.stats.total().time.as_secs_f64() / self.step_s.max(f64::MIN_POSITIVE)
    }
}

/// Steps `trainer` on `batch` `n` times; seconds per step and the
/// collectives of the steps.
fn time_steps(
    trainer: &mut Trainer,
    batch: &Batch,
    n: usize,
    stats: &StatsHandle,
) -> Result<(Vec<f64>, CommStats), Error> {
    let mut times = Vec::with_capacity(n);
    stats.take();
    for _ in 0..n {
        let start = Instant::now();
        trainer.train_step(batch, 0)?;
        times.push(start.elapsed().as_secs_f64());
    }
    Ok((times, stats.take()))
}

/// What a case runs.
#[derive(Clone, Copy)]
enum Workload {
    /// W1 with `tasks` heads and a balancer by registry name.
    W1 {
        tasks: usize,
        balancer: &'static str,
    },
    /// Epochs of the default MultiMNIST job.
    MultiMnist,
}

impl Workload {
    fn name(self) -> String {
        match self {
            Workload::W1 { tasks, balancer } => format!("W1 T={tasks} {balancer}"),
            Workload::MultiMnist => "MultiMNIST epoch".into(),
        }
    }
}

fn workloads_of(only: Option<&str>) -> Vec<Workload> {
    let mut out = Vec::new();
    if only != Some("mnist") {
        for tasks in W1_TASKS {
            for balancer in W1_BALANCERS {
                out.push(Workload::W1 { tasks, balancer });
            }
        }
    }
    if only != Some("w1") {
        out.push(Workload::MultiMnist);
    }
    out
}

/// The model's sizes the on-paper formula needs.
struct Shape {
    need: GradientSource,
    column_shards: bool,
    tasks: usize,
    params: usize,
    shared: usize,
    last_shared: usize,
}

impl Shape {
    fn of(trainer: &Trainer, last_shared: usize) -> Self {
        Shape {
            need: trainer.balancer().needs(),
            column_shards: trainer.balancer().supports_column_shards(),
            tasks: trainer.tasks().len(),
            params: trainer.params().len(),
            shared: trainer.shared_len(),
            last_shared,
        }
    }

    fn need_name(&self) -> &'static str {
        match self.need {
            GradientSource::None => "losses only",
            GradientSource::LastSharedLayer => "last shared layer",
            GradientSource::Representation => "representation",
            GradientSource::SharedParameters => "shared parameters",
        }
    }

    /// Bytes one rank sends per step on `size` ranks by the table "What
    /// each balancer need sends" of `benches/README.md`.
    fn paper_sent(&self, size: usize) -> f64 {
        let f = (size.max(1) - 1) as f64 / size.max(1) as f64;
        let t = self.tasks as f64;
        let p = self.params as f64;
        let ps = self.shared as f64;
        let ph = p - ps;
        let pl = self.last_shared as f64;
        match self.need {
            GradientSource::None => 2.0 * f * 4.0 * (t + p),
            GradientSource::LastSharedLayer => {
                f * 4.0 * t * pl + 2.0 * f * (4.0 * t + 8.0 * t * t) + 2.0 * f * 4.0 * p
            }
            GradientSource::Representation => 2.0 * f * (4.0 * t + 8.0 * t * t + 4.0 * p),
            GradientSource::SharedParameters if self.column_shards => {
                f * 4.0 * (t * ps + ps) + 2.0 * f * (4.0 * t + 8.0 * t * t + 4.0 * ph)
            }
            GradientSource::SharedParameters => 2.0 * f * 4.0 * (t + t * ps + ph),
        }
    }
}

/// Runs one case on this rank.
fn run_case<C: Communicator + 'static>(
    workload: Workload,
    comm: &MainThread<Timed<C>>,
    args: &RunArgs,
) -> Result<(Measured, Shape), Error> {
    let stats = comm.inner().handle();
    let mut m = Measured::default();
    match workload {
        Workload::W1 { tasks, balancer } => {
            let (mut trainer, batch) = workloads::w1(tasks, balancer)?;
            trainer.set_communicator(Box::new(comm.clone()));
            time_steps(&mut trainer, &batch, args.warmup, &stats)?;
            for _ in 0..args.reps {
                comm.barrier()?;
                let (times, st) = time_steps(&mut trainer, &batch, args.steps, &stats)?;
                m.add_rep(&times, &st);
            }
            Ok((m, Shape::of(&trainer, W1_LAST_SHARED)))
        }
        Workload::MultiMnist => {
            let (mut trainer, prepared) = workloads::default_job()?;
            trainer.set_communicator(Box::new(comm.clone()));
            let batch_size = RunConfig::default_job().train.batch_size;
            let rows = &prepared.split.train;
            let loader = DataLoader::new(
                &prepared.dataset,
                rows,
                LoaderConfig {
                    batch_size,
                    shuffle: true,
                    drop_last: false,
                    seed: 0,
                },
            )?;
            let warm = prepared
                .dataset
                .gather(&rows[..batch_size.min(rows.len())])?;
            time_steps(&mut trainer, &warm, args.warmup, &stats)?;
            for epoch in 0..args.epochs as u64 {
                comm.barrier()?;
                stats.take();
                let mut times = Vec::new();
                let start = Instant::now();
                for batch in loader.epoch(epoch) {
                    let batch = batch?;
                    let step = Instant::now();
                    trainer.train_step(&batch, epoch)?;
                    times.push(step.elapsed().as_secs_f64());
                }
                m.epoch_s.push(start.elapsed().as_secs_f64());
                m.add_rep(&times, &stats.take());
            }
            Ok((m, Shape::of(&trainer, DEFAULT_JOB_LAST_SHARED)))
        }
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => 0.5 * (s[n / 2 - 1] + s[n / 2]),
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// `value` of this rank in slot `rank` of a vector summed over the ranks:
/// every rank's value, in rank order.
fn gather(comm: &dyn Communicator, value: f64) -> Result<Vec<f64>, Error> {
    let mut all = vec![0.0; comm.size()];
    all[comm.rank()] = value;
    comm.all_reduce_sum_f64(&mut all)?;
    Ok(all)
}

/// One case's JSON record (on every rank; rank 0 writes it).
fn record<C: Communicator + 'static>(
    workload: Workload,
    comm: &MainThread<Timed<C>>,
    args: &RunArgs,
    threads: &str,
) -> Result<Value, Error> {
    let (m, shape) = run_case(workload, comm, args)?;
    let size = comm.size();
    let shares = gather(comm, m.comm_share())?;
    let medians = gather(comm, median(&m.step_ms))?;
    comm.inner().handle().take();
    let per_step = |x: f64| x / m.steps.max(1) as f64;
    let kinds: serde_json::Map<String, Value> = m
        .stats
        .iter()
        .filter(|(_, s)| s.calls > 0)
        .map(|(k, s)| {
            (
                k.name().to_string(),
                json!({
                    "calls": per_step(s.calls as f64),
                    "bytes": per_step(s.bytes as f64),
                    "sent_bytes": per_step(k.sent_per_rank(s.bytes as f64, size)),
                    "ms": per_step(1e3 * s.time.as_secs_f64()),
                }),
            )
        })
        .collect();
    let (tasks, balancer) = match workload {
        Workload::W1 { tasks, balancer } => (tasks, balancer),
        Workload::MultiMnist => (shape.tasks, "equal"),
    };
    Ok(json!({
        "layout": args.layout,
        "ranks": size,
        "threads": threads,
        "case": workload.name(),
        "tasks": tasks,
        "balancer": balancer,
        "need": shape.need_name(),
        "column_shards": shape.column_shards,
        "params": shape.params,
        "shared_params": shape.shared,
        "steps_per_rep": m.steps / m.step_ms.len().max(1),
        "step_ms": m.step_ms,
        "comm_ms": m.comm_ms,
        "epoch_s": m.epoch_s,
        "comm_share_by_rank": shares,
        "step_ms_median_by_rank": medians,
        "per_step": {
            "calls": per_step(m.stats.total().calls as f64),
            "payload_bytes": per_step(m.stats.total().bytes as f64),
            "sent_bytes": per_step(m.stats.sent_per_rank(size)),
            "paper_sent_bytes": shape.paper_sent(size),
            "kinds": kinds,
        },
    }))
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

fn nums(v: &Value, key: &str) -> Vec<f64> {
    v[key]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// "median (min–max)" of a list.
fn spread(v: &[f64], digits: usize) -> String {
    let (lo, hi) = min_max(v);
    format!("{:.digits$} ({lo:.digits$}–{hi:.digits$})", median(v))
}

fn percents(v: &[f64]) -> String {
    let p: Vec<String> = v.iter().map(|x| format!("{:.0} %", 100.0 * x)).collect();
    p.join(" / ")
}

fn megabytes(bytes: f64) -> String {
    format!("{:.3} MB", bytes / 1e6)
}

fn layout_title(r: &Value) -> String {
    format!(
        "{}: {} rank(s) × {} thread(s)",
        r["layout"].as_str().unwrap_or("?"),
        r["ranks"],
        r["threads"].as_str().unwrap_or("?")
    )
}

/// The Markdown table of one run.
fn run_table(records: &[Value], reps: usize) -> String {
    let mut out = String::new();
    if let Some(first) = records.first() {
        let _ = writeln!(out, "### {}\n", layout_title(first));
    }
    let _ = writeln!(
        out,
        "| case | need | step ms, median (range) over {reps} reps | comm ms per step | comm share (rank 0 / 1 / …) | collectives per step | sent per rank per step | on paper |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for r in records {
        let ps = &r["per_step"];
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.3} | {} | {:.0} | {} | {} |",
            r["case"].as_str().unwrap_or("?"),
            r["need"].as_str().unwrap_or("?"),
            spread(&nums(r, "step_ms"), 3),
            median(&nums(r, "comm_ms")),
            percents(&nums(r, "comm_share_by_rank")),
            num(ps, "calls"),
            megabytes(num(ps, "sent_bytes")),
            megabytes(num(ps, "paper_sent_bytes")),
        );
    }
    for r in records.iter().filter(|r| !nums(r, "epoch_s").is_empty()) {
        let _ = writeln!(
            out,
            "\n{}: {} s per epoch of {} steps, median (range) over {} epochs.",
            r["case"].as_str().unwrap_or("?"),
            spread(&nums(r, "epoch_s"), 2),
            r["steps_per_rep"],
            nums(r, "epoch_s").len()
        );
    }
    out
}

fn run_on<C: Communicator + 'static>(
    comm: &MainThread<Timed<C>>,
    mut args: RunArgs,
) -> Result<(), Error> {
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    if args.layout.is_empty() {
        args.layout = format!("{}x{threads}", comm.size());
    }
    let root = comm.rank() == 0;
    let mut records = Vec::new();
    for w in workloads_of(args.only.as_deref()) {
        let r = record(w, comm, &args, &threads)?;
        if root {
            eprintln!(
                "{}: step {:.3} ms, comm share {}",
                w.name(),
                median(&nums(&r, "step_ms")),
                percents(&nums(&r, "comm_share_by_rank"))
            );
        }
        records.push(r);
    }
    if !root {
        return Ok(());
    }
    println!("{}", run_table(&records, args.reps));
    if let Some(path) = &args.json {
        let lines: Vec<String> = records.iter().map(Value::to_string).collect();
        std::fs::write(path, lines.join("\n") + "\n")
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn run(args: RunArgs) -> Result<(), Error> {
    if launcher_world_size().is_some() {
        let mpi = Mpi::init()?;
        // SAFETY: this thread builds, steps and drops every trainer, and
        // with them every clone of the communicator; MPI is finalised when
        // the last clone drops at the end of this function.
        let comm = unsafe { MainThread::new(Timed::new(mpi)) };
        run_on(&comm, args)
    } else {
        // SAFETY: as above (the single process needs no such care, but the
        // wrapper is the same).
        let comm = unsafe { MainThread::new(Timed::new(SingleProcess)) };
        run_on(&comm, args)
    }
}

fn read_records(path: &str) -> Result<Vec<Value>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("{path}: {e}").into()))
        .collect()
}

/// The table joining a run on one layout (`base`) and another (`other`).
fn compare(mut it: impl Iterator<Item = String>) -> Result<(), Error> {
    let (Some(a), Some(b)) = (it.next(), it.next()) else {
        return Err("usage: dist_steps compare BASE.jsonl OTHER.jsonl".into());
    };
    let base = read_records(&a)?;
    let other = read_records(&b)?;
    let (Some(b0), Some(o0)) = (base.first(), other.first()) else {
        return Err("both files need at least one record".into());
    };
    let (bl, ol) = (
        b0["layout"].as_str().unwrap_or("base"),
        o0["layout"].as_str().unwrap_or("other"),
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| case | need | {bl} step ms | {ol} step ms | {ol} / {bl} | {ol} comm ms per step | {ol} comm share (rank 0 / 1) | {ol} collectives per step | {ol} sent per rank per step | on paper |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for r in &other {
        let Some(q) = base.iter().find(|q| q["case"] == r["case"]) else {
            continue;
        };
        let ps = &r["per_step"];
        let (tb, to) = (median(&nums(q, "step_ms")), median(&nums(r, "step_ms")));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.2} | {:.3} | {} | {:.0} | {} | {} |",
            r["case"].as_str().unwrap_or("?"),
            r["need"].as_str().unwrap_or("?"),
            spread(&nums(q, "step_ms"), 2),
            spread(&nums(r, "step_ms"), 2),
            to / tb,
            median(&nums(r, "comm_ms")),
            percents(&nums(r, "comm_share_by_rank")),
            num(ps, "calls"),
            megabytes(num(ps, "sent_bytes")),
            megabytes(num(ps, "paper_sent_bytes")),
        );
    }
    for r in other.iter().filter(|r| !nums(r, "epoch_s").is_empty()) {
        if let Some(q) = base.iter().find(|q| q["case"] == r["case"]) {
            let (eb, eo) = (median(&nums(q, "epoch_s")), median(&nums(r, "epoch_s")));
            let _ = writeln!(
                out,
                "\n{}: {bl} {} s, {ol} {} s per epoch of {} steps (median and range over {} epochs), ratio {:.2}.",
                r["case"].as_str().unwrap_or("?"),
                spread(&nums(q, "epoch_s"), 2),
                spread(&nums(r, "epoch_s"), 2),
                r["steps_per_rep"],
                nums(r, "epoch_s").len(),
                eo / eb
            );
        }
    }
    println!(
        "{}\n\n{out}",
        layout_title(o0) + " against " + &layout_title(b0)
    );
    Ok(())
}

const USAGE: &str = "usage: dist_steps run [--layout NAME] [--reps N] [--steps N] [--warmup N] [--epochs N] [--only w1|mnist] [--json FILE]\n       dist_steps compare BASE.jsonl OTHER.jsonl";

/// Large buffers start on a cache line, so the threads of a kernel do not
/// share the line at the cut between their parts of an output, and the
/// largest are advised for huge pages.
#[global_allocator]
static ALLOCATOR: mtl_cli::allocator::HugePages<mtl_cli::allocator::LineAligned> =
    mtl_cli::allocator::HugePages(mtl_cli::allocator::LineAligned);

fn main() -> ExitCode {
    // The same process set-up as the `mtl` binary.
    mtl_cli::allocator::keep_large_blocks();
    let mut it = std::env::args().skip(1);
    let result = match it.next().as_deref() {
        Some("run") => parse_run(it).and_then(run),
        Some("compare") => compare(it),
        _ => Err(USAGE.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dist_steps: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(need: GradientSource, tasks: usize, params: usize) -> Shape {
        Shape {
            need,
            column_shards: true,
            tasks,
            params,
            shared: 266_752,
            last_shared: W1_LAST_SHARED,
        }
    }

    /// The on-paper formula gives the table of `benches/README.md` ("Bytes
    /// sent per rank and step", W = 8 and 64, MB to 2 decimals).
    #[test]
    fn paper_formula_matches_the_readme_table() {
        let mb = |b: f64| (b / 1e4).round() / 1e2;
        let none2 = shape(GradientSource::None, 2, 271_892);
        assert_eq!(
            (mb(none2.paper_sent(8)), mb(none2.paper_sent(64))),
            (1.90, 2.14)
        );
        let gn8 = shape(GradientSource::LastSharedLayer, 8, 287_312);
        assert_eq!(
            (mb(gn8.paper_sent(8)), mb(gn8.paper_sent(64))),
            (3.85, 4.34)
        );
        let pc8 = shape(GradientSource::SharedParameters, 8, 287_312);
        assert_eq!(
            (mb(pc8.paper_sent(8)), mb(pc8.paper_sent(64))),
            (8.55, 9.62)
        );
        let rows8 = Shape {
            column_shards: false,
            ..shape(GradientSource::SharedParameters, 8, 287_312)
        };
        assert_eq!(mb(rows8.paper_sent(8)), 15.08);
        assert_eq!(none2.paper_sent(1), 0.0);
    }

    #[test]
    fn medians_and_ranges() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(min_max(&[4.0, 1.0, 2.0]), (1.0, 4.0));
        assert_eq!(spread(&[1.0, 2.0, 4.0], 1), "2.0 (1.0–4.0)");
    }
}
