//! Faults: the training process killed with SIGKILL at random moments (many
//! of them inside checkpoint writes), a full disk, a damaged newest
//! checkpoint, and divergence. Nothing panics and nothing is lost: after
//! every kill the run directory holds a loadable checkpoint and `--resume`
//! ends exactly where an uninterrupted run ends.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mtl_train::checkpoint;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A small run on Auto MPG (a regression and a classification task) whose
/// validation loss improves every epoch, so each epoch rewrites `best` as
/// well as writing a new `ckpt-<epoch>`.
/// Epochs of [`CONFIG`].
const EPOCHS: usize = 12;

const CONFIG: &str = r#"seed = 5
[data]
builtin = "autompg"
[model]
arch = "hps"
[model.encoder]
name = "mlp"
hidden = [32, 32]
[train]
epochs = 12
batch_size = 64
optimizer = { name = "adam", lr = 1e-3 }
"#;

fn mtl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mtl"));
    c.env("RUST_BACKTRACE", "0");
    c
}

fn train_args<'a>(config: &'a Path, out: &'a Path) -> Vec<&'a OsStr> {
    vec![
        OsStr::new("train"),
        config.as_os_str(),
        OsStr::new("--out"),
        out.as_os_str(),
        OsStr::new("--quiet"),
        OsStr::new("--threads"),
        OsStr::new("1"),
    ]
}

fn resume_args(run: &Path) -> Vec<&OsStr> {
    vec![
        OsStr::new("train"),
        OsStr::new("--resume"),
        run.as_os_str(),
        OsStr::new("--quiet"),
        OsStr::new("--threads"),
        OsStr::new("1"),
    ]
}

/// Runs to the end; panics with the standard error on failure.
fn run_ok(args: &[&OsStr]) {
    let out = mtl().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What must be identical between an interrupted-and-resumed run and an
/// uninterrupted one: the kept parameters, the summary and the history
/// (timings aside).
#[derive(Debug, PartialEq)]
struct Outcome {
    best_params: Vec<u8>,
    summary: serde_json::Value,
    history: Vec<String>,
}

fn outcome(run: &Path) -> Outcome {
    let mut summary: serde_json::Value =
        serde_json::from_slice(&fs::read(run.join("summary.json")).unwrap()).unwrap();
    // Wall times and the directory differ between runs; the rest may not.
    summary
        .as_object_mut()
        .unwrap()
        .retain(|k, _| k != "run_dir" && !k.contains("seconds"));
    let csv = fs::read_to_string(run.join("metrics.csv")).unwrap();
    let timing: Vec<usize> = csv
        .lines()
        .next()
        .unwrap_or_default()
        .split(',')
        .enumerate()
        .filter(|(_, name)| name.contains("seconds"))
        .map(|(i, _)| i)
        .collect();
    let history = csv
        .lines()
        .map(|l| {
            l.split(',')
                .enumerate()
                .filter(|(i, _)| !timing.contains(i))
                .map(|(_, c)| c)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    Outcome {
        best_params: fs::read(run.join("best").join(checkpoint::PARAMS_FILE)).unwrap(),
        summary,
        history,
    }
}

/// The configuration file, an uninterrupted reference run, its wall time,
/// and a model to load checkpoints into.
struct Reference {
    _tmp: tempfile::TempDir,
    config: PathBuf,
    outcome: Outcome,
    seconds: f64,
    trainer: mtl_train::Trainer,
}

fn reference() -> Reference {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("faults.toml");
    fs::write(&config, CONFIG).unwrap();
    let run = tmp.path().join("reference");
    let started = Instant::now();
    run_ok(&train_args(&config, &run));
    let seconds = started.elapsed().as_secs_f64();
    let outcome = outcome(&run);
    let (trainer, _) = mtl_train::run::load_best(&run).unwrap();
    Reference {
        _tmp: tmp,
        config,
        outcome,
        seconds,
        trainer,
    }
}

/// Names of the hidden leftovers of an interrupted checkpoint write or
/// removal (`.ckpt-00007.tmp`, `.best.old`, `.ckpt-00003.del`, ...).
fn leftovers(run: &Path) -> Vec<String> {
    fs::read_dir(run)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// Every listed checkpoint loads; returns how many there are.
fn assert_checkpoints_load(run: &Path, trainer: &mut mtl_train::Trainer, what: &str) -> usize {
    let listed = checkpoint::list(run).unwrap();
    for dir in &listed {
        if let Err(e) = checkpoint::load(dir, trainer.params_mut()) {
            panic!("{what}: {} does not load: {e}", dir.display());
        }
    }
    listed.len()
}

#[derive(Default, Debug)]
struct KillCounts {
    kills: usize,
    /// Kills that left a checkpoint write or removal half done.
    inside_a_write: usize,
    /// Kills before the first checkpoint existed.
    before_first_checkpoint: usize,
    /// Runs that finished before the kill (not counted as kills).
    finished_first: usize,
    resumed: usize,
    lost: usize,
}

/// Kills `mtl train` with SIGKILL at seeded random moments, alternating
/// between a uniform delay over the whole run and a moment right after a
/// checkpoint write begins (a `.tmp` directory appears), then checks that a
/// loadable checkpoint is there and that `--resume` finishes with exactly the
/// uninterrupted result.
#[test]
fn sigkill_at_random_moments_loses_nothing() {
    const WANTED: usize = 60;
    const REQUIRED: usize = 50;
    const BUDGET: Duration = Duration::from_secs(150);
    let mut reference = reference();
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0x6b1d);
    let mut counts = KillCounts::default();
    let started = Instant::now();
    let mut attempt = 0usize;
    while counts.kills < WANTED && started.elapsed() < BUDGET {
        attempt += 1;
        let run = tmp.path().join(format!("kill-{attempt}"));
        let mut child = mtl()
            .args(train_args(&reference.config, &run))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if attempt.is_multiple_of(2) {
            // Uniformly over most of the run (runs vary in speed).
            let delay = rng.gen_range(0.0..reference.seconds * 0.8);
            std::thread::sleep(Duration::from_secs_f64(delay));
        } else {
            // Right after the n-th checkpoint write starts, plus a jitter of
            // up to two milliseconds.
            let nth = rng.gen_range(1..2 * EPOCHS);
            let jitter = Duration::from_micros(rng.gen_range(0..2000));
            let deadline = Instant::now() + Duration::from_secs_f64(reference.seconds * 3.0);
            let mut seen = 0usize;
            let mut in_write = false;
            while Instant::now() < deadline {
                let writing = leftovers(&run).iter().any(|n| n.ends_with(".tmp"));
                if writing && !in_write {
                    seen += 1;
                    if seen >= nth {
                        break;
                    }
                }
                in_write = writing;
                if child.try_wait().unwrap().is_some() {
                    break;
                }
            }
            std::thread::sleep(jitter);
        }
        child.kill().unwrap(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        if status.success() {
            counts.finished_first += 1;
            continue;
        }
        counts.kills += 1;
        let left = leftovers(&run);
        if !left.is_empty() {
            counts.inside_a_write += 1;
        }
        let what = format!(
            "kill {} (attempt {attempt}, leftovers {left:?})",
            counts.kills
        );
        let loadable = assert_checkpoints_load(&run, &mut reference.trainer, &what);
        if loadable == 0 {
            // Killed before the first checkpoint: nothing to resume, and
            // nothing left that stops a fresh run into the same directory
            // from giving the reference result.
            counts.before_first_checkpoint += 1;
            run_ok(&train_args(&reference.config, &run));
        } else {
            counts.resumed += 1;
            run_ok(&resume_args(&run));
        }
        let got = outcome(&run);
        if got != reference.outcome {
            counts.lost += 1;
            eprintln!(
                "{what}: the resumed run differs from the uninterrupted one: best parameters {}, summary {}, history {}",
                if got.best_params == reference.outcome.best_params { "equal" } else { "differ" },
                if got.summary == reference.outcome.summary { "equal".to_string() } else { format!("{} against {}", got.summary, reference.outcome.summary) },
                if got.history == reference.outcome.history { "equal".to_string() } else { format!("{:?} against {:?}", got.history, reference.outcome.history) },
            );
            continue;
        }
        assert_checkpoints_load(&run, &mut reference.trainer, &what);
        fs::remove_dir_all(&run).unwrap();
    }
    eprintln!(
        "{counts:?} in {:.1}s (reference run {:.2}s)",
        started.elapsed().as_secs_f64(),
        reference.seconds
    );
    assert!(
        counts.kills >= REQUIRED,
        "only {} kills in {BUDGET:?}",
        counts.kills
    );
    assert!(
        counts.inside_a_write * 4 >= counts.kills,
        "too few kills landed inside a checkpoint write: {counts:?}"
    );
    assert_eq!(counts.lost, 0);
}

/// Limits the size of every file the running process `pid` writes from now
/// on to `bytes` (`RLIMIT_FSIZE`): a write past it fails with `EFBIG`, as on
/// a full disk, once `SIGXFSZ` is ignored.
fn limit_file_size(pid: u32, bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: `limit` is a valid rlimit and the old-limit pointer is null.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// Starts the reference run in `run` and, once its third checkpoint exists,
/// lets no file it writes grow past 4 KiB: the disk is full half-way
/// through. `None` if the run finished before the limit could be applied.
fn run_until_the_disk_fills(reference: &Reference, run: &Path) -> Option<std::process::Output> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_mtl"))
        .args(train_args(&reference.config, run))
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let third = checkpoint::dir_for(run, 3);
    loop {
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        if third.exists() {
            limit_file_size(child.id(), 4096);
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn a_full_disk_is_a_clear_error_and_keeps_the_previous_checkpoint() {
    let mut reference = reference();
    let tmp = tempfile::tempdir().unwrap();
    let mut attempt = 0;
    let (run, out) = loop {
        attempt += 1;
        let run = tmp.path().join(format!("full-{attempt}"));
        if let Some(out) = run_until_the_disk_fills(&reference, &run) {
            break (run, out);
        }
        assert!(
            attempt < 5,
            "the run always finished before the disk filled"
        );
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(out.status.code().is_some(), "killed by a signal: {err}");
    assert!(
        err.starts_with("mtl: error: ") && err.contains("File too large"),
        "{err}"
    );
    assert!(
        err.contains(&run.display().to_string()),
        "the message names the file: {err}"
    );
    eprintln!("full disk: {}", err.trim());
    let n = assert_checkpoints_load(&run, &mut reference.trainer, "full disk");
    assert!(n >= 1, "the earlier checkpoints are still there");
    checkpoint::load(&run.join("best"), reference.trainer.params_mut()).unwrap();
    // With space again, the run resumes to the uninterrupted result.
    run_ok(&resume_args(&run));
    assert_eq!(outcome(&run), reference.outcome);
}

#[test]
fn a_damaged_newest_checkpoint_is_skipped_on_resume() {
    let reference = reference();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("damaged");
    run_ok(&train_args(&reference.config, &run));
    let newest = checkpoint::list(&run).unwrap().remove(0);
    let params = newest.join(checkpoint::PARAMS_FILE);
    let mut bytes = fs::read(&params).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&params, bytes).unwrap();
    let out = mtl()
        .args(["train", "--resume"])
        .arg(&run)
        .args(["--threads", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("skipped damaged checkpoint")
            && err.contains(&params.display().to_string())
            && err.contains("checksum mismatch"),
        "{err}"
    );
    assert_eq!(outcome(&run), reference.outcome);
}

#[test]
fn divergence_stops_naming_the_task_and_the_step() {
    let tmp = tempfile::tempdir().unwrap();
    for (optimizer, lr) in [("sgd", "1e30"), ("adam", "1e10"), ("sgd", "1e4")] {
        let config = tmp.path().join(format!("{optimizer}-{lr}.toml"));
        let text = CONFIG.replace(
            "optimizer = { name = \"adam\", lr = 1e-3 }",
            &format!("optimizer = {{ name = \"{optimizer}\", lr = {lr} }}"),
        );
        fs::write(&config, text).unwrap();
        let run = tmp.path().join(format!("run-{optimizer}-{lr}"));
        let out = mtl().args(train_args(&config, &run)).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(out.status.code(), Some(1), "{optimizer} lr {lr}: {err}");
        assert!(
            err.contains("training diverged at step ")
                && (err.contains("task \"mpg\"") || err.contains("task \"origin\"")),
            "{optimizer} lr {lr}: {err}"
        );
        // Whatever was written before the divergence still loads.
        for dir in checkpoint::list(&run).unwrap() {
            let state = fs::read(dir.join(checkpoint::STATE_FILE)).unwrap();
            assert!(!state.is_empty());
        }
    }
}
