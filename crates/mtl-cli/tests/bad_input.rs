//! Bad input: every malformed CSV file, configuration, checkpoint, NPY and
//! IDX file of the corpus under `tests/corpus/` is refused with exit status 2
//! (or, for the array readers, a typed library error) and a message naming
//! the culprit, and never with a panic.
//!
//! Each case is its own test; the binary cases run `mtl` as a user would.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use mtl_data::DataError;
use mtl_train::checkpoint::{TrainingState, PARAMS_FILE, STATE_FILE, STATE_TENSORS_FILE};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn corpus(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(rel)
}

/// Exit status and standard error of one `mtl` command.
struct Outcome {
    code: Option<i32>,
    stderr: String,
}

fn mtl<S: AsRef<OsStr>>(args: &[S]) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_mtl"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("the mtl binary runs");
    Outcome {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `mtl train CONFIG` into a fresh run directory.
fn train(config: &Path) -> Outcome {
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("run");
    mtl(&[
        OsStr::new("train"),
        config.as_os_str(),
        OsStr::new("--out"),
        run.as_os_str(),
        OsStr::new("--quiet"),
        OsStr::new("--threads"),
        OsStr::new("1"),
    ])
}

/// Exit status 2, no panic, one `mtl: error:` message holding every needle.
fn assert_refused(out: &Outcome, needles: &[&str]) {
    let err = &out.stderr;
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "panic: {err}"
    );
    assert_eq!(out.code, Some(2), "exit status; stderr: {err}");
    assert!(err.starts_with("mtl: error: "), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "the message lacks {needle:?}: {err}");
    }
}

// ---------------------------------------------------------------------------
// Configurations
// ---------------------------------------------------------------------------

/// One test per corpus configuration: the file name, then what the message
/// must name.
macro_rules! config_cases {
    ($($name:ident: $file:literal => [$($needle:expr),* $(,)?];)*) => {$(
        #[test]
        fn $name() {
            let out = train(&corpus(concat!("config/", $file)));
            assert_refused(&out, &[$($needle),*]);
        }
    )*};
}

config_cases! {
    config_unknown_top_level_key: "unknown_top_key.toml" =>
        ["unknown_top_key.toml", "line 2", "sede", "seed"];
    config_unknown_train_key: "unknown_train_key.toml" =>
        ["unknown_train_key.toml", "line 10", "epochz", "epochs"];
    config_unknown_encoder_key: "unknown_encoder_key.toml" =>
        ["unknown_encoder_key.toml", "width", "hidden"];
    config_unknown_data_key: "unknown_data_key.toml" =>
        ["unknown_data_key.toml", "limt", "limit"];
    config_epochs_wrong_type: "epochs_wrong_type.toml" =>
        ["epochs_wrong_type.toml", "line 10", "\"two\"", "usize"];
    config_batch_size_wrong_type: "batch_size_wrong_type.toml" =>
        ["batch_size_wrong_type.toml", "batch_size = 1.5", "usize"];
    config_seed_wrong_type: "seed_wrong_type.toml" =>
        ["seed_wrong_type.toml", "line 1", "\"one\""];
    config_hidden_wrong_type: "hidden_wrong_type.toml" =>
        ["hidden_wrong_type.toml", "[model.encoder]", "sequence"];
    config_negative_epochs: "epochs_negative.toml" =>
        ["epochs_negative.toml", "epochs = -1", "-1"];
    config_negative_learning_rate: "lr_negative.toml" =>
        ["lr_negative.toml", "[train] optimizer", "lr", "-0.01"];
    config_zero_learning_rate: "lr_zero.toml" =>
        ["lr_zero.toml", "[train] optimizer", "lr", "> 0"];
    config_nan_learning_rate: "lr_nan.toml" =>
        ["lr_nan.toml", "lr", "NaN"];
    config_infinite_learning_rate: "lr_inf.toml" =>
        ["lr_inf.toml", "lr", "inf"];
    config_batch_size_zero: "batch_size_zero.toml" =>
        ["batch_size_zero.toml", "[train] batch_size", "at least 1"];
    config_epochs_zero: "epochs_zero.toml" =>
        ["epochs_zero.toml", "[train] epochs", "at least 1"];
    config_unknown_balancer: "unknown_balancer.toml" =>
        ["unknown_balancer.toml", "gradnorn", "gradnorm", "pcgrad"];
    config_balancer_parameter_wrong_type: "balancer_bad_param.toml" =>
        ["balancer_bad_param.toml", "\"fast\""];
    config_unknown_architecture: "unknown_architecture.toml" =>
        ["unknown_architecture.toml", "hydra", "cross-stitch"];
    config_unknown_encoder: "unknown_encoder.toml" =>
        ["unknown_encoder.toml", "resnet9000", "mlp"];
    config_unknown_optimizer: "unknown_optimizer.toml" =>
        ["unknown_optimizer.toml", "adamm", "adam"];
    config_representation_balancer_with_an_architecture_without_one:
        "representation_balancer_without_shared.toml" =>
        ["mgda-ub", "cross-stitch", "shared representation"];
    config_syntax_error: "syntax_error.toml" =>
        ["syntax_error.toml", "line 13", "not_a_table"];
    config_unclosed_table_header: "unclosed_table.toml" =>
        ["unclosed_table.toml", "line 4", "[model"];
    config_limit_zero: "limit_zero.toml" =>
        ["limit_zero.toml", "[data] limit", "at least 1"];
    config_unknown_builtin_dataset: "unknown_dataset.toml" =>
        ["\"linnerudd\"", "linnerud", "digits"];
    config_builtin_and_csv: "builtin_and_csv.toml" =>
        ["builtin_and_csv.toml", "[data]", "not both"];
    config_no_data_source: "no_data_source.toml" =>
        ["no_data_source.toml", "[data]", "builtin"];
    config_csv_without_schema: "csv_without_schema.toml" =>
        ["csv_without_schema.toml", "[data.schema]"];
    config_early_stopping_patience_zero: "patience_zero.toml" =>
        ["patience_zero.toml", "early_stopping.patience"];
    config_early_stopping_metric_unknown: "unknown_early_stopping_metric.toml" =>
        ["early_stopping.metric", "\"pulse.accuracy\"", "pulse.rmse"];
    config_task_kind_does_not_match_its_column: "task_kind_mismatch.toml" =>
        ["[[tasks]]", "\"pulse\"", "Classification", "Regression"];
    config_duplicate_task_names: "duplicate_task_names.toml" =>
        ["duplicate_task_names.toml", "\"pulse\"", "used twice"];
    config_task_not_in_the_data: "unknown_task.toml" =>
        ["\"heart\"", "linnerud", "weight, waist, pulse"];
    config_unknown_task_kind: "unknown_task_kind.toml" =>
        ["unknown_task_kind.toml", "ranking", "regression"];
    config_memory_huge_width: "huge_width.toml" =>
        ["memory budget: [model] encoder.hidden", "TiB", "is available"];
    config_memory_huge_expert_count: "huge_expert_count.toml" =>
        ["memory budget: [model] experts", "TiB", "is available"];
    config_memory_huge_batch_size: "huge_batch_size.toml" =>
        ["memory budget: [train] batch_size", "251.0 TiB", "is available"];
    config_memory_huge_class_count: "huge_class_count.toml" =>
        ["memory budget: [[tasks]] classes", "TiB", "is available"];
    config_memory_balancer_rows_too_large: "huge_balancer_rows.toml" =>
        ["memory budget: [train] balancer", "per-task gradient rows 1005.8 GiB"];
    config_memory_sizes_overflow: "sizes_overflow.toml" =>
        ["[model] encoder.hidden", "overflow 64 bits"];
    config_unknown_loss: "loss_not_for_kind.toml" =>
        ["loss_not_for_kind.toml", "hinge", "mse"];
    config_invalid_utf8: "invalid_utf8.toml" =>
        ["invalid_utf8.toml", "UTF-8"];
    config_empty_file: "empty.toml" =>
        ["empty.toml", "data"];
}

#[test]
fn config_file_that_does_not_exist() {
    let out = train(&corpus("config/no_such_file.toml"));
    assert_refused(&out, &["no_such_file.toml", "No such file"]);
}

#[test]
fn config_zero_epochs_on_the_command_line() {
    let out = mtl(&[
        OsStr::new("train"),
        corpus("config/good.toml").as_os_str(),
        OsStr::new("--epochs"),
        OsStr::new("0"),
        OsStr::new("--out"),
        tempfile::tempdir().unwrap().path().join("r").as_os_str(),
    ]);
    assert_refused(&out, &["command line", "epochs", "at least 1"]);
}

#[test]
fn config_the_corpus_control_trains() {
    // The configurations above differ from this one in one place each.
    let out = train(&corpus("config/good.toml"));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

// ---------------------------------------------------------------------------
// CSV files
// ---------------------------------------------------------------------------

/// A regression task on column `y`, every other column a feature.
const Y_SCHEMA: &str = r#"[[data.schema.tasks]]
name = "y"
kind = "regression"
columns = ["y"]
"#;

/// Writes a configuration reading `csv` with `schema` (the body of the
/// `[data.schema]` table) and trains it.
fn train_csv(csv: &Path, schema: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("csv.toml");
    let csv = csv.display().to_string().replace('\\', "\\\\");
    let text = format!(
        "seed = 1\n[data]\ncsv = \"{csv}\"\n[data.schema]\n{schema}\n[model]\narch = \"hps\"\n\
         [model.encoder]\nname = \"mlp\"\nhidden = [4]\n[train]\nepochs = 1\nbatch_size = 4\n"
    );
    fs::write(&config, text).unwrap();
    train(&config)
}

macro_rules! csv_cases {
    ($($name:ident: $file:literal, $schema:expr => [$($needle:expr),* $(,)?];)*) => {$(
        #[test]
        fn $name() {
            let out = train_csv(&corpus(concat!("csv/", $file)), $schema);
            assert_refused(&out, &[$file, $($needle),*]);
        }
    )*};
}

csv_cases! {
    csv_ragged_row_too_short: "ragged_short.csv", Y_SCHEMA =>
        ["ragged_short.csv:3", "row has 2 fields, expected 3"];
    csv_ragged_row_too_long: "ragged_long.csv", Y_SCHEMA =>
        ["ragged_long.csv:3", "row has 4 fields, expected 3"];
    csv_non_numeric_feature: "non_numeric_feature.csv", Y_SCHEMA =>
        ["non_numeric_feature.csv:3", "column 1 (\"b\")", "cannot parse \"five\""];
    csv_non_numeric_target: "non_numeric_target.csv", Y_SCHEMA =>
        ["non_numeric_target.csv:3", "column 2 (\"y\")", "\"six\""];
    csv_nan_feature: "nan_feature.csv", Y_SCHEMA =>
        ["nan_feature.csv:3", "column 1 (\"b\")", "missing value"];
    csv_infinite_feature: "inf_feature.csv", Y_SCHEMA =>
        ["inf_feature.csv:3", "column 1 (\"b\")", "\"inf\" is not finite"];
    csv_negative_infinite_target: "neg_inf_target.csv", Y_SCHEMA =>
        ["neg_inf_target.csv:3", "column 2 (\"y\")", "\"-inf\" is not finite"];
    csv_number_overflowing_to_infinity: "overflow_feature.csv", Y_SCHEMA =>
        ["overflow_feature.csv:3", "column 1 (\"b\")", "\"1e999\" is not finite"];
    csv_missing_task_column: "missing_task_column.csv", Y_SCHEMA =>
        ["missing_task_column.csv:1", "column \"y\" is not in the header (a, b, z)"];
    csv_duplicated_column: "duplicated_column.csv", Y_SCHEMA =>
        ["duplicated_column.csv:1", "\"a\" appears twice", "columns 0 and 2"];
    csv_unknown_class_label: "unknown_label.csv",
        "[[data.schema.tasks]]\nname = \"pet\"\nkind = \"classification\"\ncolumn = \"pet\"\nlabels = [\"cat\", \"dog\"]\n" =>
        ["unknown_label.csv:3", "column 2 (\"pet\")", "class label \"emu\""];
    csv_class_out_of_range: "class_out_of_range.csv",
        "[[data.schema.tasks]]\nname = \"c\"\nkind = \"classification\"\ncolumn = \"c\"\nclasses = 3\n" =>
        ["class_out_of_range.csv:3", "column 2 (\"c\")", "\"7\" is not an integer in 0..3"];
    csv_binary_value_not_0_or_1: "binary_not_01.csv",
        "[[data.schema.tasks]]\nname = \"flag\"\nkind = \"binary\"\ncolumn = \"flag\"\n" =>
        ["binary_not_01.csv:3", "column 2 (\"flag\")", "\"2\" is not 0 or 1"];
    csv_empty_file: "empty.csv", Y_SCHEMA => ["the file is empty"];
    csv_header_only: "header_only.csv", Y_SCHEMA => ["header but no data rows"];
    csv_wrong_delimiter: "wrong_delimiter.csv", Y_SCHEMA =>
        ["wrong_delimiter.csv:1", "column \"y\" is not in the header", "delimiter"];
    csv_missing_target_value: "empty_target.csv", Y_SCHEMA =>
        ["empty_target.csv:3", "column 2 (\"y\")", "missing value in a task column"];
    csv_unknown_category: "unknown_category.csv",
        concat!("[[data.schema.categorical]]\ncolumn = \"colour\"\ncategories = [\"red\", \"blue\"]\n",
                "[[data.schema.tasks]]\nname = \"y\"\nkind = \"regression\"\ncolumns = [\"y\"]\n") =>
        ["unknown_category.csv:3", "column 1 (\"colour\")", "category \"mauve\""];
    csv_unterminated_quote: "unterminated_quote.csv", Y_SCHEMA =>
        ["unterminated_quote.csv:3", "row has 1 fields"];
    csv_every_row_dropped: "all_rows_dropped.csv",
        concat!("missing = \"drop\"\n", "[[data.schema.tasks]]\nname = \"y\"\nkind = \"regression\"\ncolumns = [\"y\"]\n") =>
        ["no rows left after dropping rows with missing values"];
    csv_blank_lines_only: "blank_lines.csv", Y_SCHEMA =>
        ["blank_lines.csv:1", "column \"y\" is not in the header"];
    csv_nul_bytes_in_a_field: "nul_bytes.csv", Y_SCHEMA =>
        ["nul_bytes.csv:4", "column 0 (\"a\")", "cannot parse"];
    csv_second_target_column_non_numeric: "second_target_column.csv",
        "[[data.schema.tasks]]\nname = \"y\"\nkind = \"regression\"\ncolumns = [\"y1\", \"y2\"]\n" =>
        ["second_target_column.csv:3", "column 3 (\"y2\")", "\"x8\""];
    csv_column_index_out_of_range: "good.csv",
        "[[data.schema.tasks]]\nname = \"y\"\nkind = \"regression\"\ncolumns = [7]\n" =>
        ["good.csv:1", "column #7 is out of range: rows have 3 fields"];
    csv_column_by_name_without_header: "good.csv",
        concat!("header = false\n", "[[data.schema.tasks]]\nname = \"y\"\nkind = \"regression\"\ncolumns = [\"y\"]\n") =>
        ["good.csv:1", "column \"y\" is given by name", "no header"];
    csv_single_class_label_column: "single_class.csv",
        "[[data.schema.tasks]]\nname = \"pet\"\nkind = \"classification\"\ncolumn = \"pet\"\n" =>
        ["task \"pet\"", "single class [\"cat\"]"];
}

#[test]
fn csv_no_tasks() {
    let out = train_csv(&corpus("csv/good.csv"), "tasks = []\n");
    assert_refused(
        &out,
        &["no task to train", "data set \"good\"", "[data.schema]"],
    );
}

#[test]
fn csv_schema_duplicate_task_names() {
    let schema = "[[data.schema.tasks]]\nname = \"y\"\nkind = \"regression\"\ncolumns = [\"y\"]\n\
                  [[data.schema.tasks]]\nname = \"y\"\nkind = \"regression\"\ncolumns = [\"b\"]\n";
    let out = train_csv(&corpus("csv/good.csv"), schema);
    assert_refused(&out, &["schema task \"y\"", "used twice"]);
}

#[test]
fn csv_schema_unknown_key() {
    let schema = format!("delimeter = \";\"\n{Y_SCHEMA}");
    let out = train_csv(&corpus("csv/good.csv"), &schema);
    assert_refused(&out, &["csv.toml", "delimeter", "delimiter"]);
}

#[test]
fn csv_schema_one_class() {
    let schema =
        "[[data.schema.tasks]]\nname = \"y\"\nkind = \"classification\"\ncolumn = \"y\"\nclasses = 1\n";
    let out = train_csv(&corpus("csv/good.csv"), schema);
    assert_refused(&out, &["schema task \"y\"", "at least 2 classes"]);
}

#[test]
fn csv_schema_non_ascii_delimiter() {
    let schema = format!("delimiter = \"→\"\n{Y_SCHEMA}");
    let out = train_csv(&corpus("csv/good.csv"), &schema);
    assert_refused(&out, &["schema delimiter", "not an ASCII character"]);
}

#[test]
fn csv_task_kind_does_not_match_its_column() {
    // The schema reads `y` as a regression target; the task list trains it as
    // a classification.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kind.toml");
    let csv = corpus("csv/good.csv").display().to_string();
    fs::write(
        &config,
        format!(
            "[data]\ncsv = \"{csv}\"\n[data.schema]\n{Y_SCHEMA}\n[[tasks]]\nname = \"y\"\n\
             kind = \"classification\"\nclasses = 2\n[model]\narch = \"hps\"\n[model.encoder]\n\
             name = \"mlp\"\nhidden = [4]\n"
        ),
    )
    .unwrap();
    assert_refused(
        &train(&config),
        &["task \"y\"", "Classification", "Regression"],
    );
}

#[test]
fn csv_file_that_does_not_exist() {
    let out = train_csv(&corpus("csv/no_such_file.csv"), Y_SCHEMA);
    assert_refused(&out, &["no_such_file.csv", "No such file"]);
}

#[test]
fn csv_path_is_a_directory() {
    let out = train_csv(&corpus("csv"), Y_SCHEMA);
    assert_refused(&out, &["corpus/csv", "Is a directory"]);
}

#[test]
fn csv_huge_field() {
    // An 8 MB field: refused by line and column, quoted only in part.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.csv");
    let mut text = String::from("a,b,y\n1,2,3\n4,");
    text.push_str(&"7".repeat(8 << 20));
    text.push_str("x,6\n");
    fs::write(&path, text).unwrap();
    let out = train_csv(&path, Y_SCHEMA);
    assert_refused(
        &out,
        &[
            "huge.csv:3",
            "column 1 (\"b\")",
            "cannot parse",
            "(8388609 bytes)",
        ],
    );
    assert!(out.stderr.len() < 1000, "{} bytes", out.stderr.len());
}

#[test]
fn csv_huge_header_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide_header.csv");
    fs::write(&path, format!("a,{},z\n1,2,3\n", "b".repeat(1 << 20))).unwrap();
    let out = train_csv(&path, Y_SCHEMA);
    assert_refused(
        &out,
        &["wide_header.csv:1", "column \"y\" is not in the header"],
    );
    assert!(out.stderr.len() < 1000, "{} bytes", out.stderr.len());
}

#[test]
fn csv_invalid_utf8_in_a_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.csv");
    fs::write(&path, b"a,b,y\n1,2,3\n4,\xe9t\xe9,6\n").unwrap();
    let out = train_csv(&path, Y_SCHEMA);
    assert_refused(&out, &["latin1.csv:3", "invalid utf-8", "field: 1"]);
}

#[test]
fn csv_invalid_utf8_in_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1_header.csv");
    fs::write(&path, b"a,\xff\xfeb,y\n1,2,3\n").unwrap();
    let out = train_csv(&path, Y_SCHEMA);
    assert_refused(&out, &["latin1_header.csv:1", "invalid utf-8"]);
}

// ---------------------------------------------------------------------------
// Checkpoints
// ---------------------------------------------------------------------------

/// A finished three-epoch run (`ckpt-00002`, `ckpt-00003` and `best`), made
/// once; every case damages a copy of it.
fn base_run() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("bad-input-base-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let out = mtl(&[
            OsStr::new("train"),
            corpus("config/good.toml").as_os_str(),
            OsStr::new("--epochs"),
            OsStr::new("3"),
            OsStr::new("--out"),
            dir.as_os_str(),
            OsStr::new("--quiet"),
            OsStr::new("--threads"),
            OsStr::new("1"),
        ]);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        for sub in ["ckpt-00002", "ckpt-00003", "best"] {
            assert!(dir.join(sub).join(PARAMS_FILE).exists(), "{sub}");
        }
        dir
    })
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A private copy of the base run.
fn run_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    copy_dir(base_run(), &run);
    (tmp, run)
}

fn resume(run: &Path) -> Outcome {
    mtl(&[
        OsStr::new("train"),
        OsStr::new("--resume"),
        run.as_os_str(),
        OsStr::new("--quiet"),
        OsStr::new("--threads"),
        OsStr::new("1"),
    ])
}

fn eval(run: &Path) -> Outcome {
    mtl(&[OsStr::new("eval"), run.as_os_str()])
}

fn checkpoints(run: &Path) -> Vec<PathBuf> {
    mtl_train::checkpoint::list(run).unwrap()
}

fn read_state(dir: &Path) -> TrainingState {
    mtl_train::checkpoint::read_state(dir).unwrap()
}

/// Rewrites the state of a checkpoint with valid checksums.
fn write_state(dir: &Path, state: TrainingState) {
    mtl_train::checkpoint::write_state(dir, &state).unwrap();
}

/// Replaces the parameter file by `params` and reseals the state with its
/// checksum, so that the loader gets past the checksums to the contents.
fn reseal_params(dir: &Path, params: &[u8]) {
    fs::write(dir.join(PARAMS_FILE), params).unwrap();
    let mut state = read_state(dir);
    state.params_crc32 = crc32fast::hash(params);
    write_state(dir, state);
}

/// The tensors of a parameter file, rebuilt by `edit` (name, dtype, shape,
/// bytes) into a new safetensors file.
fn rewrite_tensors(
    dir: &Path,
    edit: impl Fn(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) -> Vec<u8> {
    let bytes = fs::read(dir.join(PARAMS_FILE)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, t)| (name, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    edit(&mut tensors);
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, &None).unwrap()
}

fn truncate(path: &Path) {
    let bytes = fs::read(path).unwrap();
    fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
}

fn flip_byte(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5A;
    fs::write(path, bytes).unwrap();
}

/// Changes one digit of the step count: still valid JSON, wrong checksum.
fn change_a_digit(path: &Path) {
    let mut text = fs::read_to_string(path).unwrap();
    let at = text.find("\"step\": ").unwrap() + "\"step\": ".len();
    let digit = text.as_bytes()[at];
    let new = if digit == b'9' {
        '1'
    } else {
        char::from(digit + 1)
    };
    text.replace_range(at..=at, &new.to_string());
    fs::write(path, text).unwrap();
}

#[test]
fn checkpoint_every_parameter_file_truncated() {
    let (_tmp, run) = run_copy();
    for ckpt in checkpoints(&run) {
        truncate(&ckpt.join(PARAMS_FILE));
    }
    let out = resume(&run);
    assert_refused(
        &out,
        &[
            "no loadable checkpoint",
            "ckpt-00003/params.safetensors: checksum mismatch",
            "ckpt-00002/params.safetensors: checksum mismatch",
        ],
    );
}

#[test]
fn checkpoint_every_state_with_a_flipped_byte() {
    let (_tmp, run) = run_copy();
    for ckpt in checkpoints(&run) {
        flip_byte(&ckpt.join(STATE_FILE));
    }
    let out = resume(&run);
    assert_refused(
        &out,
        &[
            "no loadable checkpoint",
            "ckpt-00003/state.json",
            "ckpt-00002/state.json",
        ],
    );
}

#[test]
fn checkpoint_every_state_with_a_changed_value() {
    let (_tmp, run) = run_copy();
    for ckpt in checkpoints(&run) {
        change_a_digit(&ckpt.join(STATE_FILE));
    }
    let out = resume(&run);
    assert_refused(
        &out,
        &[
            "ckpt-00003/state.json: checksum mismatch: the state is damaged",
            "ckpt-00002/state.json: checksum mismatch",
        ],
    );
}

#[test]
fn checkpoint_every_state_tensor_file_with_a_flipped_byte() {
    let (_tmp, run) = run_copy();
    for ckpt in checkpoints(&run) {
        flip_byte(&ckpt.join(STATE_TENSORS_FILE));
    }
    let out = resume(&run);
    assert_refused(
        &out,
        &[
            "no loadable checkpoint",
            "ckpt-00003/state.safetensors: checksum mismatch: the state's tensors are damaged",
            "ckpt-00002/state.safetensors: checksum mismatch",
        ],
    );
}

#[test]
fn checkpoint_state_tensor_file_missing() {
    let (_tmp, run) = run_copy();
    fs::remove_file(run.join("best").join(STATE_TENSORS_FILE)).unwrap();
    assert_refused(&eval(&run), &["best/state.safetensors", "is missing"]);
}

#[test]
fn checkpoint_of_a_newer_format() {
    let (_tmp, run) = run_copy();
    let path = run.join("best").join(STATE_FILE);
    let text = fs::read_to_string(&path).unwrap();
    let newer = text.replacen("\"format_version\": 2", "\"format_version\": 3", 1);
    assert_ne!(newer, text);
    fs::write(&path, newer).unwrap();
    assert_refused(
        &eval(&run),
        &[
            "best/state.json",
            "format version 3",
            "reads versions 1 to 2",
        ],
    );
}

#[test]
fn checkpoint_best_parameters_truncated() {
    let (_tmp, run) = run_copy();
    truncate(&run.join("best").join(PARAMS_FILE));
    assert_refused(
        &eval(&run),
        &[
            "best/params.safetensors",
            "checksum mismatch: the parameters are damaged",
        ],
    );
}

#[test]
fn checkpoint_best_parameters_with_a_flipped_byte() {
    let (_tmp, run) = run_copy();
    flip_byte(&run.join("best").join(PARAMS_FILE));
    assert_refused(
        &eval(&run),
        &["best/params.safetensors", "checksum mismatch"],
    );
}

#[test]
fn checkpoint_best_state_with_a_flipped_byte() {
    let (_tmp, run) = run_copy();
    flip_byte(&run.join("best").join(STATE_FILE));
    assert_refused(&eval(&run), &["checkpoint", "best/state.json"]);
}

#[test]
fn checkpoint_state_is_not_json() {
    let (_tmp, run) = run_copy();
    fs::write(run.join("best").join(STATE_FILE), "not json at all").unwrap();
    assert_refused(&eval(&run), &["best/state.json", "expected"]);
}

#[test]
fn checkpoint_state_missing() {
    let (_tmp, run) = run_copy();
    fs::remove_file(run.join("best").join(STATE_FILE)).unwrap();
    assert_refused(&eval(&run), &["best/state.json", "No such file"]);
}

#[test]
fn checkpoint_parameters_missing() {
    let (_tmp, run) = run_copy();
    fs::remove_file(run.join("best").join(PARAMS_FILE)).unwrap();
    assert_refused(&eval(&run), &["best/params.safetensors", "No such file"]);
}

#[test]
fn checkpoint_checksum_field_changed() {
    let (_tmp, run) = run_copy();
    let path = run.join("best").join(STATE_FILE);
    let text = fs::read_to_string(&path).unwrap();
    let at = text.rfind("\"crc32\": ").unwrap() + "\"crc32\": ".len();
    let mut text = text.into_bytes();
    text[at] = if text[at] == b'1' { b'2' } else { b'1' };
    fs::write(&path, text).unwrap();
    assert_refused(
        &eval(&run),
        &["best/state.json", "checksum mismatch: the state is damaged"],
    );
}

#[test]
fn checkpoint_parameters_not_safetensors() {
    let (_tmp, run) = run_copy();
    reseal_params(
        &run.join("best"),
        b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage",
    );
    assert_refused(&eval(&run), &["best/params.safetensors"]);
}

#[test]
fn checkpoint_parameters_empty() {
    let (_tmp, run) = run_copy();
    reseal_params(&run.join("best"), b"");
    assert_refused(&eval(&run), &["best/params.safetensors"]);
}

#[test]
fn checkpoint_wrong_tensor_name() {
    let (_tmp, run) = run_copy();
    let best = run.join("best");
    let params = rewrite_tensors(&best, |t| t[0].0 = "no.such.tensor".into());
    reseal_params(&best, &params);
    assert_refused(&eval(&run), &["best/params.safetensors", "is missing"]);
}

#[test]
fn checkpoint_wrong_tensor_shape() {
    let (_tmp, run) = run_copy();
    let best = run.join("best");
    let params = rewrite_tensors(&best, |t| {
        let (_, _, shape, bytes) = &mut t[0];
        *shape = vec![1, bytes.len() / 4, 1];
    });
    reseal_params(&best, &params);
    assert_refused(
        &eval(&run),
        &["best/params.safetensors", "the model expects F32"],
    );
}

#[test]
fn checkpoint_wrong_tensor_dtype() {
    let (_tmp, run) = run_copy();
    let best = run.join("best");
    let params = rewrite_tensors(&best, |t| {
        let (_, dtype, _, bytes) = &mut t[0];
        *dtype = safetensors::Dtype::F64;
        bytes.extend(bytes.clone());
    });
    reseal_params(&best, &params);
    assert_refused(&eval(&run), &["best/params.safetensors", "F64"]);
}

#[test]
fn checkpoint_extra_tensor() {
    let (_tmp, run) = run_copy();
    let best = run.join("best");
    let params = rewrite_tensors(&best, |t| {
        t.push(("extra".into(), safetensors::Dtype::F32, vec![1], vec![0; 4]))
    });
    reseal_params(&best, &params);
    assert_refused(
        &eval(&run),
        &["best/params.safetensors", "tensors, the model has"],
    );
}

#[test]
fn checkpoint_wrong_buffer_count() {
    let (_tmp, run) = run_copy();
    let best = run.join("best");
    let mut state = read_state(&best);
    state.buffers.push(1.0);
    write_state(&best, state);
    assert_refused(&eval(&run), &["best/state.json", "buffer values"]);
}

#[test]
fn checkpoint_config_changed_since_it_was_written() {
    let (_tmp, run) = run_copy();
    let path = run.join("config.toml");
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains("lr = 0.001"), "{text}");
    fs::write(&path, text.replace("lr = 0.001", "lr = 0.002")).unwrap();
    assert_refused(
        &resume(&run),
        &["ckpt-00003", "another configuration", "config.toml"],
    );
}

#[test]
fn checkpoint_model_changed_since_it_was_written() {
    let (_tmp, run) = run_copy();
    let path = run.join("config.toml");
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains("hidden = [8]"), "{text}");
    fs::write(&path, text.replace("hidden = [8]", "hidden = [9]")).unwrap();
    assert_refused(
        &resume(&run),
        &[
            "no loadable checkpoint",
            "ckpt-00003/params.safetensors",
            "expects F32",
        ],
    );
}

#[test]
fn checkpoint_none_to_resume_from() {
    let (_tmp, run) = run_copy();
    for ckpt in checkpoints(&run) {
        fs::remove_dir_all(ckpt).unwrap();
    }
    assert_refused(&resume(&run), &["no checkpoint to resume from"]);
}

#[test]
fn checkpoint_run_configuration_damaged() {
    let (_tmp, run) = run_copy();
    truncate(&run.join("config.toml"));
    assert_refused(&resume(&run), &["run/config.toml"]);
}

#[test]
fn checkpoint_resume_of_a_missing_run() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("never-trained");
    assert_refused(
        &resume(&run),
        &["never-trained/config.toml", "No such file"],
    );
}

#[test]
fn checkpoint_eval_without_a_best_checkpoint() {
    let (_tmp, run) = run_copy();
    fs::remove_dir_all(run.join("best")).unwrap();
    assert_refused(&eval(&run), &["best/state.json", "No such file"]);
}

// ---------------------------------------------------------------------------
// NPY and IDX files (read by the library: typed errors)
// ---------------------------------------------------------------------------

/// Reads `file` with `read`, which must fail with [`DataError::Array`] of
/// `format`, naming the file and holding every needle, without panicking.
fn assert_array_refused(
    read: fn(&Path) -> mtl_data::Result<mtl_data::Array>,
    format: &str,
    file: &str,
    needles: &[&str],
) {
    let path = corpus(file);
    assert!(path.exists(), "{file} is in the corpus");
    let result = std::panic::catch_unwind(|| read(&path));
    let err = match result {
        Ok(Ok(a)) => panic!("{file} was read as {:?} {}", a.shape, a.data.dtype()),
        Ok(Err(e)) => e,
        Err(_) => panic!("reading {file} panicked"),
    };
    let msg = err.to_string();
    match &err {
        DataError::Array {
            format: f, path, ..
        } => {
            assert_eq!(*f, format, "{msg}");
            assert_eq!(path, &corpus(file), "{msg}");
        }
        other => panic!("{file}: not an array error: {other:?}"),
    }
    assert!(msg.contains(file), "the message lacks the file: {msg}");
    for needle in needles {
        assert!(msg.contains(needle), "the message lacks {needle:?}: {msg}");
    }
}

fn read_npy(p: &Path) -> mtl_data::Result<mtl_data::Array> {
    mtl_data::npy::read(p)
}

fn read_idx(p: &Path) -> mtl_data::Result<mtl_data::Array> {
    mtl_data::idx::read(p)
}

macro_rules! array_cases {
    ($($name:ident: $read:ident, $format:literal, $file:literal => [$($needle:expr),* $(,)?];)*) => {$(
        #[test]
        fn $name() {
            assert_array_refused($read, $format, $file, &[$($needle),*]);
        }
    )*};
}

array_cases! {
    npy_wrong_magic: read_npy, "npy", "npy/bad_magic.npy" => ["bad magic"];
    npy_empty_file: read_npy, "npy", "npy/empty.npy" => ["bad magic"];
    npy_shorter_than_the_preamble: read_npy, "npy", "npy/too_short.npy" => ["bad magic"];
    npy_unknown_version: read_npy, "npy", "npy/version_9.npy" => ["unsupported format version 9.0"];
    npy_header_runs_past_the_end: read_npy, "npy", "npy/header_past_end.npy" =>
        ["header of 255 bytes runs past the end"];
    npy_header_not_text: read_npy, "npy", "npy/header_not_utf8.npy" => ["header is not text"];
    npy_header_without_dtype: read_npy, "npy", "npy/no_descr.npy" => ["no 'descr'"];
    npy_header_without_shape: read_npy, "npy", "npy/no_shape.npy" => ["no 'shape'"];
    npy_big_endian_dtype: read_npy, "npy", "npy/big_endian.npy" => ["unsupported dtype \">f4\""];
    npy_float16_dtype: read_npy, "npy", "npy/dtype_float16.npy" => ["unsupported dtype \"<f2\""];
    npy_object_dtype: read_npy, "npy", "npy/dtype_object.npy" => ["unsupported dtype \"|O\""];
    npy_fortran_order: read_npy, "npy", "npy/fortran_order.npy" => ["Fortran-ordered"];
    npy_malformed_shape: read_npy, "npy", "npy/bad_shape.npy" => ["bad shape (2, x)"];
    npy_negative_shape: read_npy, "npy", "npy/negative_shape.npy" => ["bad shape (-2,)"];
    npy_data_shorter_than_the_shape: read_npy, "npy", "npy/data_short.npy" =>
        ["data length 8 bytes does not match shape [3]"];
    npy_data_longer_than_the_shape: read_npy, "npy", "npy/data_long.npy" =>
        ["data length 8 bytes does not match shape [1]"];
    npy_shape_overflows: read_npy, "npy", "npy/shape_overflow.npy" => ["is too large"];
    npy_byte_count_overflows: read_npy, "npy", "npy/bytes_overflow.npy" => ["is too large"];
    idx_wrong_magic: read_idx, "idx", "idx/bad_magic.idx" => ["bad magic"];
    idx_empty_file: read_idx, "idx", "idx/empty.idx" => ["bad magic"];
    idx_unknown_element_type: read_idx, "idx", "idx/unknown_type.idx" => ["unknown element type 0x42"];
    idx_truncated_dimensions: read_idx, "idx", "idx/truncated_dims.idx" =>
        ["file ends inside the 3 dimension sizes"];
    idx_data_shorter_than_the_shape: read_idx, "idx", "idx/data_short.idx" =>
        ["data length 5 bytes does not match shape [2, 3]"];
    idx_data_longer_than_the_shape: read_idx, "idx", "idx/data_long.idx" =>
        ["data length 8 bytes does not match shape [1]"];
    idx_byte_count_overflows: read_idx, "idx", "idx/bytes_overflow.idx" => ["is too large"];
    idx_shape_overflows: read_idx, "idx", "idx/shape_overflow.idx" => ["is too large"];
    idx_corrupt_gzip: read_idx, "idx", "idx/corrupt_gzip.idx.gz" => ["corrupt gzip stream"];
    idx_gzipped_with_wrong_magic: read_idx, "idx", "idx/gzip_bad_magic.idx.gz" => ["bad magic"];
}

#[test]
fn npy_missing_file_names_the_path() {
    let err = mtl_data::npy::read(corpus("npy/no_such.npy")).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("npy/no_such.npy"), "{err}");
}

#[test]
fn idx_missing_file_names_the_path() {
    let err = mtl_data::idx::read(corpus("idx/no_such.idx")).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("idx/no_such.idx"), "{err}");
}
