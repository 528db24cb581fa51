//! The `mtl` side of the workload comparison with PyTorch
//! (`benches/peer/compare_workloads.py`, mirrored by `benches/peer/workloads.py`).
//!
//! ```text
//! peer_workloads w1 --tasks 8 --balancer pcgrad --reps 5
//! peer_workloads w2 --reps 5
//! peer_workloads w3 --data target/peer_data/multimnist --reps 1
//! peer_workloads w4 --reps 5
//! ```
//!
//! Prints one JSON line: the workload, its parameters, the seconds of each
//! repetition (one training step for W1 and W2, averaged over `--inner`
//! steps; one epoch for W3; one product for W4, averaged over `--inner`), and
//! the process's peak resident set (`VmHWM`, KiB). Warm-up is excluded.
//! Threads come from `RAYON_NUM_THREADS`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use mtl_benches::workloads::mlp_trainer;
use mtl_core::{kernels, Targets, TaskKind, TaskSpec, Tensor};
use mtl_data::{npy, ArrayData, Batch, DataLoader, Dataset, LoaderConfig};
use mtl_train::{RunConfig, Trainer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

type Error = Box<dyn std::error::Error>;

struct Args {
    workload: String,
    tasks: usize,
    balancer: String,
    reps: usize,
    inner: Option<usize>,
    warmup: usize,
    data: PathBuf,
}

fn parse_args() -> Result<Args, Error> {
    let mut it = std::env::args().skip(1);
    let workload = it
        .next()
        .ok_or("usage: peer_workloads w1|w2|w3|w4 [options]")?;
    let mut args = Args {
        workload,
        tasks: 2,
        balancer: "equal".into(),
        reps: 5,
        inner: None,
        warmup: 3,
        data: PathBuf::from("target/peer_data/multimnist"),
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--tasks" => args.tasks = value.parse()?,
            "--balancer" => args.balancer = value,
            "--reps" => args.reps = value.parse()?,
            "--inner" => args.inner = Some(value.parse()?),
            "--warmup" => args.warmup = value.parse()?,
            "--data" => args.data = value.into(),
            _ => return Err(format!("unknown option {flag}").into()),
        }
    }
    Ok(args)
}

/// Peak resident set of this process in KiB (`VmHWM` of `/proc/self/status`).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Seconds per step, averaged over `inner` steps, for each repetition.
fn time_steps(
    trainer: &mut Trainer,
    batch: &Batch,
    warmup: usize,
    reps: usize,
    inner: usize,
) -> Result<Vec<f64>, Error> {
    for _ in 0..warmup {
        trainer.train_step(batch, 0)?;
    }
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        for _ in 0..inner {
            trainer.train_step(batch, 0)?;
        }
        times.push(start.elapsed().as_secs_f64() / inner as f64);
    }
    Ok(times)
}

/// The MultiMNIST training part exported by `mtl datasets export`.
fn multimnist_from_npy(dir: &Path) -> Result<Dataset, Error> {
    let x = npy::read(dir.join("train_x.npy"))?.to_tensor()?;
    let classes = |name: &str| -> Result<Targets, Error> {
        let a = npy::read(dir.join(format!("train_{name}.npy")))?;
        match a.data {
            ArrayData::I64(v) => Ok(Targets::Classes(v.iter().map(|&c| c as usize).collect())),
            _ => Err(format!("train_{name}.npy: expected int64 classes").into()),
        }
    };
    let sum = npy::read(dir.join("train_sum.npy"))?.to_tensor()?;
    let class = |name: &str| TaskSpec {
        name: name.into(),
        kind: TaskKind::Classification { classes: 10 },
    };
    let sum_spec = TaskSpec {
        name: "sum".into(),
        kind: TaskKind::Regression { outputs: 1 },
    };
    Ok(Dataset::new(
        "multimnist",
        x,
        vec![
            (class("left"), classes("left")?),
            (class("right"), classes("right")?),
            (sum_spec, Targets::Values(sum)),
        ],
    )?)
}

/// One epoch of the default MultiMNIST job per repetition.
fn w3(args: &Args) -> Result<Vec<f64>, Error> {
    let config = RunConfig::default_job();
    let ds = multimnist_from_npy(&args.data)?;
    let mut tasks = Vec::new();
    let mut target_index = Vec::new();
    for tc in &config.tasks {
        tasks.push(tc.build()?);
        let i = ds
            .tasks()
            .iter()
            .position(|s| s.name == tc.name)
            .ok_or_else(|| format!("no task {} in the exported data", tc.name))?;
        target_index.push(i);
    }
    let batch_size = config.train.batch_size;
    let mut trainer = Trainer::from_config(&config, ds.feature_shape(), tasks, target_index)?;
    let rows: Vec<usize> = (0..ds.len()).collect();
    let loader = DataLoader::new(
        &ds,
        &rows,
        LoaderConfig {
            batch_size,
            shuffle: true,
            drop_last: false,
            seed: 0,
        },
    )?;
    let warm = ds.gather(&rows[..batch_size])?;
    for _ in 0..args.warmup {
        trainer.train_step(&warm, 0)?;
    }
    let mut times = Vec::with_capacity(args.reps);
    for r in 0..args.reps {
        let start = Instant::now();
        for batch in loader.epoch(r as u64) {
            trainer.train_step(&batch?, r as u64)?;
        }
        times.push(start.elapsed().as_secs_f64());
    }
    Ok(times)
}

/// One `n × n` f32 product, averaged over `inner`, per repetition.
fn w4(args: &Args, n: usize) -> Result<Vec<f64>, Error> {
    let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
    let a = Tensor::randn(&[n, n], 0.0, 1.0, &mut rng)?;
    let b = Tensor::randn(&[n, n], 0.0, 1.0, &mut rng)?;
    let mut out = vec![0.0f32; n * n];
    let inner = args.inner.unwrap_or(10);
    let mut product = || kernels::gemm(n, n, n, a.data(), false, b.data(), false, &mut out, false);
    for _ in 0..args.warmup {
        product();
    }
    let mut times = Vec::with_capacity(args.reps);
    for _ in 0..args.reps {
        let start = Instant::now();
        for _ in 0..inner {
            product();
        }
        times.push(start.elapsed().as_secs_f64() / inner as f64);
    }
    Ok(times)
}

fn run(args: &Args) -> Result<String, Error> {
    let times = match args.workload.as_str() {
        "w1" => {
            let (mut tr, b) = mlp_trainer(784, &[256, 256], args.tasks, 256, &args.balancer)?;
            time_steps(
                &mut tr,
                &b,
                args.warmup,
                args.reps,
                args.inner.unwrap_or(10),
            )?
        }
        "w2" => {
            let (mut tr, b) = mlp_trainer(64, &[64, 64], 2, 16, &args.balancer)?;
            time_steps(
                &mut tr,
                &b,
                args.warmup,
                args.reps,
                args.inner.unwrap_or(200),
            )?
        }
        "w3" => w3(args)?,
        "w4" => w4(args, 1024)?,
        other => return Err(format!("unknown workload {other}").into()),
    };
    let times: Vec<String> = times.iter().map(|t| format!("{t:.9}")).collect();
    Ok(format!(
        r#"{{"side": "ours", "workload": "{}", "tasks": {}, "balancer": "{}", "threads": "{}", "times_s": [{}], "peak_rss_kib": {}}}"#,
        args.workload,
        args.tasks,
        args.balancer,
        std::env::var("RAYON_NUM_THREADS").unwrap_or_default(),
        times.join(", "),
        peak_rss_kib()
    ))
}

/// Large buffers start on a cache line, so the threads of a kernel do not
/// share the line at the cut between their parts of an output, and the
/// largest are advised for huge pages.
#[global_allocator]
static ALLOCATOR: mtl_cli::allocator::HugePages<mtl_cli::allocator::LineAligned> =
    mtl_cli::allocator::HugePages(mtl_cli::allocator::LineAligned);

fn main() -> ExitCode {
    // The same process set-up as the `mtl` binary.
    mtl_cli::allocator::keep_large_blocks();
    let result = parse_args().and_then(|a| run(&a));
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("peer_workloads: {e}");
            ExitCode::FAILURE
        }
    }
}
