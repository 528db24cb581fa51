//! Fuzzing of the parsers of `mtl-cli`: the run configuration and the
//! checkpoint loader. Each property runs at least 10,000 cases of arbitrary
//! or mutated valid inputs; none may panic. A checkpoint the loader accepts
//! is also restored into a trainer and stepped once, as `--resume` does.
//!
//! Run in release mode: `cargo test -p mtl-cli --release --test fuzz`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use mtl_data::{Batch, DataLoader, LoaderConfig};
use mtl_train::checkpoint::{self, TrainingState, PARAMS_FILE, STATE_FILE, STATE_TENSORS_FILE};
use mtl_train::{RunConfig, RunOptions, Trainer};
use proptest::prelude::*;
use serde_json::Value;

/// Trains a run directory without hooks.
fn fit(config: RunConfig, opts: &RunOptions) -> mtl_train::Result<mtl_train::RunSummary> {
    mtl_train::run::fit(config, opts, &mut [])
}

const CASES: u32 = 10_000;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Mutations of valid inputs
// ---------------------------------------------------------------------------

/// One edit of a byte string; positions are taken modulo its length.
#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Token(usize, usize),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, t)| Mutation::Token(i, t)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), 1usize..32).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation, dictionary: &[&[u8]]) {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
    match m {
        Mutation::Flip(i, x) => {
            if !bytes.is_empty() {
                let i = i % bytes.len();
                bytes[i] ^= x;
            }
        }
        Mutation::Token(i, t) => {
            let i = at(*i, bytes.len());
            let token = dictionary[t % dictionary.len()];
            bytes.splice(i..i, token.iter().copied());
        }
        Mutation::Insert(i, b) => {
            let i = at(*i, bytes.len());
            bytes.splice(i..i, b.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let i = at(*i, bytes.len()).min(bytes.len());
            let end = (i + n).min(bytes.len());
            bytes.drain(i..end);
        }
        Mutation::Duplicate(i, n) => {
            let i = at(*i, bytes.len()).min(bytes.len());
            let end = (i + n).min(bytes.len());
            let copy = bytes[i..end].to_vec();
            bytes.splice(end..end, copy);
        }
        Mutation::Truncate(i) => {
            let i = at(*i, bytes.len());
            bytes.truncate(i);
        }
    }
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..8)
}

// ---------------------------------------------------------------------------
// Run configuration
// ---------------------------------------------------------------------------

const TOML_TOKENS: &[&[u8]] = &[
    b"=",
    b"[",
    b"]",
    b"[[",
    b"]]",
    b"{",
    b"}",
    b"\"",
    b"'",
    b"\n",
    b",",
    b".",
    b"#",
    b"0",
    b"-1",
    b"1e400",
    b"-0.0",
    b"nan",
    b"inf",
    b"-inf",
    b"true",
    b"\"\"",
    b"[[tasks]]",
    b"[train]",
    b"[model]",
    b"[data]",
    b"[data.schema]",
    b"name",
    b"kind",
    b"lr",
    b"epochs",
    b"batch_size",
    b"balancer",
    b"arch",
    b"\"mgda-ub\"",
    b"\"cross-stitch\"",
    b"\"mtan\"",
    b"\"dselect-k\"",
    b"\"ltb\"",
    b"\"gradnorm\"",
    b"\"classification\"",
    b"\"clustering\"",
    b"18446744073709551615",
    b"99999999999",
    b"\xff",
];

/// Valid configurations: the default job written out in full, a CSV one
/// with a schema, split and early stopping, and one with tasks, a schedule
/// and clipping.
fn valid_configs() -> Vec<String> {
    let full = toml::to_string(&RunConfig::default_job()).unwrap();
    let csv = r#"seed = 3
[data]
csv = "cars.csv"
limit = 100
[data.schema]
ignore = ["name"]
missing = "impute_mean"
[[data.schema.categorical]]
column = "colour"
[[data.schema.tasks]]
name = "mpg"
kind = "regression"
columns = ["mpg"]
[[data.schema.tasks]]
name = "origin"
kind = "classification"
column = "origin"
[data.split]
test = 0.2
validation = 0.1
[model]
arch = "mmoe"
experts = 3
[model.encoder]
name = "mlp"
hidden = [16, 8]
dropout = 0.1
[train]
epochs = 3
batch_size = 16
optimizer = { name = "adamw", lr = 1e-3, weight_decay = 0.01 }
balancer = { name = "uncertainty" }
early_stopping = { metric = "origin.accuracy", patience = 2 }
"#;
    let tasks = r#"[data]
builtin = "digits"
[model]
arch = "ple"
layers = 2
shared_experts = 2
task_experts = 1
[model.encoder]
name = "mlp"
hidden = [8]
[[tasks]]
name = "digit"
kind = "classification"
classes = 10
label_smoothing = 0.1
[[tasks]]
name = "groups"
kind = "clustering"
clusters = 10
[train]
epochs = 2
schedule = { name = "step", step_size = 1, gamma = 0.5 }
clip = { name = "norm", max_norm = 1.0 }
balancer = { name = "gradnorm", alpha = 1.5 }
"#;
    for text in [full.as_str(), csv, tasks] {
        if let Err(e) = RunConfig::parse(text, Path::new("valid.toml")) {
            panic!("a base configuration is invalid: {e}\n{text}");
        }
    }
    vec![full, csv.to_string(), tasks.to_string()]
}

fn configs() -> &'static [String] {
    static CONFIGS: OnceLock<Vec<String>> = OnceLock::new();
    CONFIGS.get_or_init(valid_configs)
}

/// Parses `text`: an error must name the file; an accepted configuration
/// must write out and read back as the same configuration.
fn check_config(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Ok(());
    };
    match RunConfig::parse(text, Path::new("fuzz.toml")) {
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(!msg.is_empty());
        }
        Ok(config) => {
            if let Ok(again) = toml::to_string(&config) {
                let back = RunConfig::parse(&again, Path::new("again.toml"));
                prop_assert!(back.is_ok(), "{:?}\n{}", back.err(), again);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn config_arbitrary_text(text in "\\PC{0,200}") {
        check_config(text.as_bytes())?;
    }

    #[test]
    fn config_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        check_config(&bytes)?;
    }

    #[test]
    fn config_mutated_valid_files((which, ms) in (0usize..3, mutations())) {
        let mut bytes = configs()[which].as_bytes().to_vec();
        for m in &ms {
            apply(&mut bytes, m, TOML_TOKENS);
        }
        check_config(&bytes)?;
    }

    #[test]
    fn config_mutated_values(
        (which, line, value) in (
            0usize..3,
            any::<usize>(),
            prop::sample::select(vec![
                "0", "-1", "1.5", "1e400", "nan", "-inf", "\"\"", "\"x\"", "[]", "[0]", "{}",
                "true", "18446744073709551615", "{ name = \"sgd\", lr = 1e-300 }",
                "{ name = \"famo\" }", "{ name = \"nash-mtl\", update_every = 0 }",
                "{ metric = \"loss\", patience = 1 }", "[1, 2, 3]", "\"mtan\"", "\"lenet\"",
            ]),
        ),
    ) {
        // Replace the value of one `key = value` line.
        let text = &configs()[which];
        let lines: Vec<&str> = text.lines().collect();
        let assignments: Vec<usize> =
            (0..lines.len()).filter(|&i| lines[i].contains(" = ")).collect();
        let at = assignments[line % assignments.len()];
        let key = lines[at].split(" = ").next().unwrap();
        let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        edited[at] = format!("{key} = {value}");
        check_config(edited.join("\n").as_bytes())?;
    }
}

// ---------------------------------------------------------------------------
// Checkpoints
// ---------------------------------------------------------------------------

/// A trainer with a real, good checkpoint of it, and a batch to step on.
struct Fixture {
    config: RunConfig,
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    state: Vec<u8>,
    tensors: Vec<u8>,
    params: Vec<u8>,
    /// The state the three files hold.
    good: TrainingState,
    trainer: Trainer,
    batch: Batch,
}

fn fixture() -> &'static Mutex<Fixture> {
    static FIXTURE: OnceLock<Mutex<Fixture>> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let text = r#"seed = 4
[data]
builtin = "blobs"
[model]
arch = "hps"
[model.encoder]
name = "mlp"
hidden = [4]
[train]
epochs = 2
batch_size = 32
optimizer = { name = "adam", lr = 1e-2 }
balancer = { name = "uncertainty" }
"#;
        let config = RunConfig::parse(text, Path::new("fixture.toml")).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("run");
        let opts = RunOptions {
            out: run.clone(),
            resume: false,
            stop_after: None,
            memory: None,
        };
        fit(config.clone(), &opts).unwrap();
        let (trainer, prepared) = mtl_train::run::load_best(&run).unwrap();
        let loader = DataLoader::new(
            &prepared.dataset,
            &prepared.split.train,
            LoaderConfig {
                batch_size: 16,
                ..Default::default()
            },
        )
        .unwrap();
        let batch = loader.epoch(0).next().unwrap().unwrap();
        let dir = checkpoint::dir_for(&run, 2);
        let state = std::fs::read(dir.join(STATE_FILE)).unwrap();
        let tensors = std::fs::read(dir.join(STATE_TENSORS_FILE)).unwrap();
        let params = std::fs::read(dir.join(PARAMS_FILE)).unwrap();
        let good = checkpoint::read_state(&dir).unwrap();
        Mutex::new(Fixture {
            config,
            _tmp: tmp,
            dir,
            state,
            tensors,
            params,
            good,
            trainer,
            batch,
        })
    })
}

/// Restores `state` as `--resume` does (after the loader accepted it), then
/// takes one step: errors are fine, panics are not.
fn resume_from(f: &mut Fixture, state: TrainingState) {
    if state.config.as_ref() != Some(&f.config) {
        return;
    }
    let t = &mut f.trainer;
    if t.restore_state(&state).is_err() {
        return;
    }
    let _ = t.train_step(&f.batch, state.epoch as u64);
}

/// Puts the fixture's trainer back to the good checkpoint.
fn reset(f: &mut Fixture) {
    let state = checkpoint::load_bytes(
        &f.state,
        Some(&f.tensors),
        &f.params,
        f.trainer.params_mut(),
        &f.dir,
    )
    .expect("the good checkpoint loads");
    f.trainer.restore_state(&state).unwrap();
}

/// Loads the three files; an error must name a file of the checkpoint.
fn check_checkpoint(
    f: &mut Fixture,
    state: &[u8],
    tensors: &[u8],
    params: &[u8],
) -> Result<(), TestCaseError> {
    let before = f.trainer.params().flat().to_vec();
    match checkpoint::load_bytes(state, Some(tensors), params, f.trainer.params_mut(), &f.dir) {
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(msg.contains(&f.dir.display().to_string()), "{}", msg);
            prop_assert!(
                f.trainer.params().flat() == before.as_slice(),
                "a refused checkpoint changed the model"
            );
        }
        Ok(loaded) => {
            resume_from(f, loaded);
            reset(f);
        }
    }
    Ok(())
}

/// JSON pointers to every leaf of `v`.
fn leaves(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => m
            .iter()
            .for_each(|(k, x)| leaves(x, format!("{at}/{k}"), out)),
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| leaves(x, format!("{at}/{i}"), out)),
        _ => out.push(at),
    }
}

fn state_leaves() -> &'static [String] {
    static LEAVES: OnceLock<Vec<String>> = OnceLock::new();
    LEAVES.get_or_init(|| {
        let f = fixture().lock().unwrap();
        let v = serde_json::to_value(&f.good).unwrap();
        let mut out = Vec::new();
        leaves(&v, String::new(), &mut out);
        // Also whole containers, to shorten or empty them.
        out.extend(
            [
                "/optimizer",
                "/buffers",
                "/history",
                "/balancer",
                "/scheduler",
                "/config/model",
            ]
            .map(String::from),
        );
        out
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(vec![0.0, -1.0, 1e300, -1e-300, 0.5, 3.0]).prop_map(Value::from),
        "[a-z_]{0,8}".prop_map(Value::String),
        Just(Value::Array(vec![])),
        prop::collection::vec(-3.0f64..3.0, 0..6).prop_map(Value::from),
        Just(serde_json::json!({})),
    ]
}

const JSON_TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"0",
    b"-",
    b"1e999",
    b"null",
    b"true",
    b"\"crc32\": 0",
    b"\\u0000",
    b"\xff",
];

const ST_TOKENS: &[&[u8]] = &[
    b"\x00",
    b"\xff",
    b"{",
    b"}",
    b"\"",
    b"F32",
    b"F64",
    b"\"dtype\"",
    b"\"shape\"",
    b"\"data_offsets\"",
    b"[0,4]",
    b"[99999999999,0]",
    b"\"__metadata__\"",
];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn checkpoint_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        which in 0u8..3,
    ) {
        let mut f = fixture().lock().unwrap();
        let f = &mut *f;
        let mut files = [f.state.clone(), f.tensors.clone(), f.params.clone()];
        // One file arbitrary, the others good: each loader stage is reached.
        files[usize::from(which)] = bytes;
        let [state, tensors, params] = files;
        check_checkpoint(f, &state, &tensors, &params)?;
        if checkpoint::load_params(&params, f.trainer.params_mut(), Path::new("p")).is_ok() {
            reset(f);
        }
    }

    #[test]
    fn checkpoint_mutated_files((ms, target) in (mutations(), 0u8..4)) {
        let mut f = fixture().lock().unwrap();
        let f = &mut *f;
        let mut state = f.state.clone();
        let mut tensors = f.tensors.clone();
        let mut params = f.params.clone();
        for m in &ms {
            if target == 0 || target == 3 {
                apply(&mut state, m, JSON_TOKENS);
            }
            if target == 1 || target == 3 {
                apply(&mut tensors, m, ST_TOKENS);
            }
            if target == 2 || target == 3 {
                apply(&mut params, m, ST_TOKENS);
            }
        }
        check_checkpoint(f, &state, &tensors, &params)?;
        // The parameter parser alone, past the checksum.
        let before = f.trainer.params().flat().to_vec();
        if checkpoint::load_params(&params, f.trainer.params_mut(), Path::new("p")).is_err() {
            prop_assert!(f.trainer.params().flat() == before.as_slice());
        } else {
            reset(f);
        }
    }

    #[test]
    fn checkpoint_resealed_edits(
        edits in prop::collection::vec((any::<usize>(), json_value()), 1..4),
        params_ms in prop::option::of(mutations()),
    ) {
        // Valid JSON with a correct checksum but wrong contents: what gets
        // past the checksums must still be refused or restored cleanly.
        let leaves = state_leaves();
        let mut f = fixture().lock().unwrap();
        let f = &mut *f;
        let mut doc = serde_json::to_value(&f.good).unwrap();
        for (i, value) in edits {
            let pointer = &leaves[i % leaves.len()];
            if let Some(slot) = doc.pointer_mut(pointer) {
                *slot = value;
            }
        }
        let mut params = f.params.clone();
        if let Some(ms) = params_ms {
            for m in &ms {
                apply(&mut params, m, ST_TOKENS);
            }
        }
        let Ok(mut state) = serde_json::from_value::<TrainingState>(doc) else {
            return Ok(());
        };
        state.params_crc32 = crc32fast::hash(&params);
        let (json, tensors) = checkpoint::encode_state(&state).unwrap();
        check_checkpoint(f, &json, &tensors, &params)?;
    }
}
