//! A failure on one rank of a data-parallel run stops every rank with the
//! same error and exit status, instead of leaving the others waiting in the
//! next collective: rank 0's writes (checkpoints, metrics.csv, summary.json)
//! failing after the start, a hook failing on one rank, and a hook asking
//! to stop on one rank (every rank stops at the same step). The ranks are
//! threads of a `ThreadGroup`; each test runs in about a second.

use std::path::Path;

use mtl_dist::{check_identical_parameters, Communicator, ThreadGroup};
use mtl_train::parallel::exit_code;
use mtl_train::prepare::prepare;
use mtl_train::relations::RelationTracker;
use mtl_train::run::{self, RunOptions};
use mtl_train::{
    Control, EpochRecord, FitOptions, Hook, Result, RunConfig, StepEvent, TrainError, Trainer,
};

const CONFIG: &str = r#"
seed = 3
[data]
builtin = "digits"
limit = 300
[model]
arch = "hps"
[model.encoder]
name = "mlp"
hidden = [16]
[train]
epochs = 3
batch_size = 64
balancer = { name = "upgrad" }
optimizer = { name = "sgd", lr = 0.05 }
"#;

fn config() -> RunConfig {
    RunConfig::parse(CONFIG, Path::new("failures.toml")).unwrap()
}

/// Runs `f(rank, communicator)` on every rank of a group of `size`, each in
/// its own thread, and returns the results in rank order.
fn on_ranks<R: Send>(
    size: usize,
    f: impl Fn(usize, Box<dyn Communicator + Send>) -> R + Sync,
) -> Vec<R> {
    let comms = ThreadGroup::new(size).unwrap().communicators();
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = comms
            .into_iter()
            .enumerate()
            .map(|(rank, c)| s.spawn(move || f(rank, Box::new(c))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Every result is an error with one message and one exit status, naming
/// rank `rank` and containing `text`; returns the message.
fn same_error<T: std::fmt::Debug>(results: Vec<Result<T>>, rank: usize, text: &str) -> String {
    let errors: Vec<TrainError> = results.into_iter().map(|r| r.unwrap_err()).collect();
    let message = errors[0].to_string();
    for e in &errors {
        assert!(matches!(e, TrainError::Rank(_)), "{e}");
        assert_eq!(e.to_string(), message);
        assert_eq!(exit_code(e), exit_code(&errors[0]));
    }
    assert!(message.starts_with(&format!("rank {rank}")), "{message}");
    assert!(message.contains(text), "{message}");
    message
}

/// After epoch `epoch`, on rank 0 only, replaces the run directory by a
/// file, so that every later write of rank 0 into it fails.
struct ReplaceRunDir<'a> {
    dir: &'a Path,
    epoch: usize,
}

impl Hook for ReplaceRunDir<'_> {
    fn after_epoch(
        &mut self,
        _: &Trainer,
        history: &[EpochRecord],
        _: Option<&RelationTracker>,
        _: bool,
    ) -> Result<()> {
        if history.len() == self.epoch {
            std::fs::remove_dir_all(self.dir).unwrap();
            std::fs::write(self.dir, b"not a directory").unwrap();
        }
        Ok(())
    }
}

/// `run::fit_with` into `dir` on `size` ranks, rank 0 replacing the run
/// directory by a file after `epoch` epochs.
fn run_with_broken_dir(dir: &Path, size: usize, epoch: usize) -> Vec<Result<run::RunSummary>> {
    let config = config().validate(Path::new("failures.toml")).unwrap();
    on_ranks(size, |rank, comm| {
        let opts = RunOptions {
            out: dir.to_path_buf(),
            resume: false,
            stop_after: None,
            memory: None,
        };
        let mut breaker = ReplaceRunDir { dir, epoch };
        let mut hooks: Vec<&mut dyn Hook> = Vec::new();
        if rank == 0 {
            hooks.push(&mut breaker);
        }
        run::fit_with(config.clone(), &opts, &mut hooks, comm)
    })
}

#[test]
fn a_checkpoint_rank_0_cannot_write_stops_every_rank() {
    for size in [2, 3] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let results = run_with_broken_dir(&dir, size, 1);
        // The checkpoint of epoch 2 is the first write that fails.
        let message = same_error(results, 0, "ckpt-00002");
        assert!(message.contains(&dir.display().to_string()), "{message}");
    }
}

#[test]
fn a_summary_rank_0_cannot_write_stops_every_rank() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    // After the last epoch only summary.json is left to write.
    let results = run_with_broken_dir(&dir, 2, 3);
    same_error(results, 0, "summary.json");
}

#[test]
fn a_run_directory_rank_0_cannot_create_stops_every_rank() {
    let tmp = tempfile::tempdir().unwrap();
    let blocker = tmp.path().join("file");
    std::fs::write(&blocker, b"").unwrap();
    let dir = blocker.join("run");
    let config = config().validate(Path::new("failures.toml")).unwrap();
    let results = on_ranks(3, |_, comm| {
        let opts = RunOptions {
            out: dir.clone(),
            resume: false,
            stop_after: None,
            memory: None,
        };
        run::fit_with(config.clone(), &opts, &mut [], comm)
    });
    let message = same_error(results, 0, "run");
    assert!(message.contains(&dir.display().to_string()), "{message}");
}

/// A hook that fails, or asks to stop, at one step, or fails after every
/// epoch.
#[derive(Default)]
struct Scripted {
    /// `(step, fail)`: at that step, fail (`true`) or ask to stop.
    at_step: Option<(u64, bool)>,
    fail_after_epoch: bool,
}

impl Hook for Scripted {
    fn on_step(&mut self, step: &StepEvent<'_>) -> Result<Control> {
        match self.at_step {
            Some((at, true)) if at == step.step => Err(TrainError::Hook {
                hook: "at-step".into(),
                message: format!("refused step {at}"),
            }),
            Some((at, false)) if at == step.step => Ok(Control::Stop),
            _ => Ok(Control::Continue),
        }
    }

    fn after_epoch(
        &mut self,
        _: &Trainer,
        _: &[EpochRecord],
        _: Option<&RelationTracker>,
        _: bool,
    ) -> Result<()> {
        match self.fail_after_epoch {
            true => Err(TrainError::Hook {
                hook: "plots".into(),
                message: "cannot draw".into(),
            }),
            false => Ok(()),
        }
    }
}

/// `Trainer::fit` on `size` ranks with `hook(rank)` as the only hook: the
/// epochs run, the steps taken and the parameters' common checksum on every
/// rank.
fn fit_with_hook(
    size: usize,
    hook: impl Fn(usize) -> Option<Scripted> + Sync,
) -> Vec<Result<(usize, u64, u64)>> {
    let config = config();
    let prepared = prepare(&config.clone().validate(Path::new("f.toml")).unwrap()).unwrap();
    on_ranks(size, |rank, comm| {
        let mut trainer = Trainer::from_prepared(&config, &prepared).unwrap();
        trainer.set_communicator(comm);
        let rows = &prepared.split.train;
        let train = mtl_data::Subset::new(&prepared.dataset, rows).unwrap();
        let options = FitOptions {
            epochs: 3,
            batch_size: 64,
            ..Default::default()
        };
        let mut hook = hook(rank);
        let mut refs: Vec<&mut dyn Hook> = hook.iter_mut().map(|h| h as &mut dyn Hook).collect();
        let history = trainer.fit(&train, None, &options, &mut refs)?;
        let sum = check_identical_parameters(trainer.communicator(), trainer.params().flat())?;
        assert_eq!(trainer.step(), history.epochs.last().unwrap().step);
        Ok((history.epochs.len(), trainer.step(), sum))
    })
}

#[test]
fn a_hook_failing_on_rank_0_after_an_epoch_stops_every_rank() {
    for size in [2, 3] {
        let results = fit_with_hook(size, |rank| {
            (rank == 0).then(|| Scripted {
                fail_after_epoch: true,
                ..Default::default()
            })
        });
        let message = same_error(results, 0, "hook plots: cannot draw");
        assert_eq!(message, "rank 0: hook plots: cannot draw");
    }
}

#[test]
fn a_hook_failing_on_another_rank_during_an_epoch_stops_every_rank() {
    let results = fit_with_hook(3, |rank| {
        (rank == 2).then(|| Scripted {
            at_step: Some((4, true)),
            ..Default::default()
        })
    });
    same_error(results, 2, "refused step 4");
}

#[test]
fn a_stop_asked_on_one_rank_stops_every_rank_at_the_same_step() {
    let results = fit_with_hook(3, |rank| {
        (rank == 1).then(|| Scripted {
            at_step: Some((3, false)),
            ..Default::default()
        })
    });
    let results: Vec<(usize, u64, u64)> = results.into_iter().map(|r| r.unwrap()).collect();
    // Stopped after step 3, in the first epoch (300 rows make 5 steps of
    // 64), with the same parameters everywhere.
    assert_eq!(results[0].0, 1);
    assert_eq!(results[0].1, 3);
    assert!(results.iter().all(|r| *r == results[0]));
}
