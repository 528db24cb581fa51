//! Array files as training data, end to end through the `mtl` command: a
//! built-in data set exported to NPY (or rewritten as IDX) trains to the
//! same metrics as the built-in; `predict --input` reads the exported
//! layout; `datasets convert` writes NPY files that train, with the
//! training reader's error messages; and the memory budget refuses a run
//! under `--memory`.

use std::path::Path;
use std::process::Command;

use mtl_data::{Array, ArrayData};

/// Exit status, standard output and standard error of one `mtl` command.
fn mtl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mtl"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("the mtl binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A one-epoch MultiMNIST run on 128 training rows with a small MLP, its
/// `[data]` table given.
fn multimnist_config(data: &str) -> String {
    format!(
        r#"seed = 3
[data]
{data}
limit = 128
[model]
arch = "hps"
[model.encoder]
name = "mlp"
hidden = [8]
[[tasks]]
name = "left"
kind = "classification"
classes = 10
[[tasks]]
name = "right"
kind = "classification"
classes = 10
[[tasks]]
name = "sum"
kind = "regression"
loss = "l1"
[train]
epochs = 1
batch_size = 64
relations = {{ every = 0 }}
"#
    )
}

/// Trains `config` (written into `dir`) and returns the summary's test
/// metrics by task.
fn train_metrics(dir: &Path, name: &str, config: &str, extra: &[&str]) -> serde_json::Value {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).unwrap();
    let run = dir.join(format!("run-{name}"));
    let mut args = vec![
        "train",
        path.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--json",
        "--threads",
        "1",
    ];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = mtl(&args);
    assert_eq!(code, 0, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    summary["tasks"].clone()
}

/// Writes `array` as an IDX file (big-endian; labels as u8, values as f32).
fn write_idx(path: &Path, array: &Array) {
    let (code, body): (u8, Vec<u8>) = match &array.data {
        ArrayData::F32(v) => (0x0D, v.iter().flat_map(|x| x.to_be_bytes()).collect()),
        ArrayData::I64(v) => (0x08, v.iter().map(|&x| u8::try_from(x).unwrap()).collect()),
        other => panic!("unexpected dtype {}", other.dtype()),
    };
    let mut bytes = vec![0, 0, code, array.shape.len() as u8];
    for &d in &array.shape {
        bytes.extend_from_slice(&(d as u32).to_be_bytes());
    }
    bytes.extend_from_slice(&body);
    std::fs::write(path, bytes).unwrap();
}

/// The parts present in an exported directory (MultiMNIST has no
/// validation part: training carves it from the training rows).
const PARTS: [(&str, i64); 3] = [("train", 0), ("validation", 1), ("test", 2)];

/// Concatenates the parts of one file of an exported directory.
fn concat(dir: &Path, file: &str) -> Array {
    let mut shape = Vec::new();
    let mut f32s = Vec::new();
    let mut i64s = Vec::new();
    for (part, _) in PARTS {
        let path = dir.join(format!("{part}_{file}.npy"));
        if !path.is_file() {
            continue;
        }
        let a = mtl_data::npy::read(path).unwrap();
        if shape.is_empty() {
            shape = a.shape.clone();
        } else {
            shape[0] += a.shape[0];
        }
        match a.data {
            ArrayData::F32(v) => f32s.extend(v),
            ArrayData::I64(v) => i64s.extend(v),
            other => panic!("unexpected dtype {}", other.dtype()),
        }
    }
    let data = if i64s.is_empty() {
        ArrayData::F32(f32s)
    } else {
        ArrayData::I64(i64s)
    };
    Array { shape, data }
}

#[test]
fn exported_multimnist_trains_to_the_builtin_metrics_as_npy_and_as_idx() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The built-in data set is drawn with the run's seed: export it with
    // the same one.
    let exported = dir.join("exported");
    let (code, _, stderr) = mtl(&[
        "datasets",
        "export",
        "multimnist",
        exported.to_str().unwrap(),
        "--seed",
        "3",
    ]);
    assert_eq!(code, 0, "{stderr}");

    let builtin = train_metrics(
        dir,
        "builtin",
        &multimnist_config("builtin = \"multimnist\""),
        &[],
    );
    // A relative `dir`, resolved against the configuration file.
    let npy = train_metrics(dir, "npy", &multimnist_config("dir = \"exported\""), &[]);
    assert_eq!(npy, builtin, "NPY export against the built-in");
    let left = builtin["left"]["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&left), "{builtin}");

    // The same rows as IDX files, with the split as an NPY file.
    let idx = dir.join("idx");
    std::fs::create_dir_all(&idx).unwrap();
    let mut sizes = Vec::new();
    for (part, code) in PARTS {
        let path = exported.join(format!("{part}_left.npy"));
        if path.is_file() {
            sizes.push((code, mtl_data::npy::read(path).unwrap().shape[0]));
        }
    }
    for file in ["x", "left", "right", "sum"] {
        write_idx(&idx.join(format!("{file}.idx")), &concat(&exported, file));
    }
    let split: Vec<i64> = sizes
        .iter()
        .flat_map(|&(code, n)| std::iter::repeat_n(code, n))
        .collect();
    let n = split.len();
    mtl_data::npy::write(
        idx.join("split.npy"),
        &Array {
            shape: vec![n],
            data: ArrayData::I64(split),
        },
    )
    .unwrap();
    let idx_data = "x = \"idx/x.idx\"\nsplit_file = \"idx/split.npy\"\n\
        [data.targets]\nleft = \"idx/left.idx\"\nright = \"idx/right.idx\"\nsum = \"idx/sum.idx\"";
    // `limit` belongs to [data], before the [data.targets] table.
    let config = multimnist_config(idx_data).replace(
        "sum = \"idx/sum.idx\"\nlimit = 128",
        "sum = \"idx/sum.idx\"",
    );
    let config = config.replace("[data]\n", "[data]\nlimit = 128\n");
    let from_idx = train_metrics(dir, "idx", &config, &[]);
    assert_eq!(from_idx, builtin, "IDX files against the built-in");

    // `predict --input` reads the exported layout: one line per test row.
    let (code, stdout, stderr) = mtl(&[
        "predict",
        dir.join("run-npy").to_str().unwrap(),
        "--input",
        exported.join("test_x.npy").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let test_rows = sizes.last().unwrap().1;
    assert_eq!(
        stdout.lines().count(),
        test_rows + 1,
        "header and one line per row"
    );
}

/// The schema of the converted files: two features, a regression and a
/// labelled classification.
const SCHEMA: &str = r#"[[tasks]]
name = "y"
kind = "regression"
columns = ["y"]

[[tasks]]
name = "pet"
kind = "classification"
column = "pet"
"#;

#[test]
fn a_converted_csv_trains_and_keeps_what_prediction_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut csv = String::from("a,b,y,pet\n");
    for i in 0..60 {
        let (a, b) = (i as f32 / 10.0, (i % 7) as f32);
        let pet = ["cat", "dog", "emu"][i % 3];
        csv.push_str(&format!("{a},{b},{},{pet}\n", 2.0 * a - b));
    }
    std::fs::write(dir.join("data.csv"), csv).unwrap();
    std::fs::write(dir.join("schema.toml"), SCHEMA).unwrap();
    let out = dir.join("converted");
    let (code, stdout, stderr) = mtl(&[
        "datasets",
        "convert",
        dir.join("data.csv").to_str().unwrap(),
        out.to_str().unwrap(),
        "--schema",
        dir.join("schema.toml").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("wrote 60 rows (0 dropped)"), "{stdout}");
    let x = mtl_data::npy::read(out.join("train_x.npy")).unwrap();
    assert_eq!(x.shape, [60, 2]);
    let pet = mtl_data::npy::read(out.join("train_pet.npy")).unwrap();
    assert_eq!(pet.data, ArrayData::I64((0..60).map(|i| i % 3).collect()));
    // The resolved schema lists the labels, to read new files the same way.
    let saved = std::fs::read_to_string(out.join("schema.toml")).unwrap();
    let schema: mtl_data::CsvSchema = toml::from_str(&saved).unwrap();
    assert!(saved.contains("\"cat\", \"dog\", \"emu\""), "{saved}");
    assert_eq!(schema.tasks.len(), 2);

    let config = "seed = 1\n[data]\ndir = \"converted\"\n[data.split]\nvalidation = 0.2\n\
        test = 0.2\nseed = 1\n[model]\narch = \"hps\"\n[model.encoder]\nname = \"mlp\"\n\
        hidden = [4]\n[train]\nepochs = 2\nbatch_size = 8\nrelations = { every = 0 }\n";
    let metrics = train_metrics(dir, "converted", config, &[]);
    let accuracy = metrics["pet"]["accuracy"].as_f64().unwrap();
    let mae = metrics["y"]["mae"].as_f64().unwrap();
    assert!(
        (0.0..=1.0).contains(&accuracy) && mae.is_finite(),
        "{metrics}"
    );
}

#[test]
fn conversion_refuses_a_bad_file_with_the_message_of_training() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/csv");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let schema = "[[tasks]]\nname = \"y\"\nkind = \"regression\"\ncolumns = [\"y\"]\n";
    std::fs::write(dir.join("schema.toml"), schema).unwrap();
    for file in [
        "non_numeric_feature.csv",
        "ragged_short.csv",
        "missing_task_column.csv",
        "inf_feature.csv",
    ] {
        let csv = corpus.join(file);
        let (code, _, convert_err) = mtl(&[
            "datasets",
            "convert",
            csv.to_str().unwrap(),
            dir.join("out").to_str().unwrap(),
            "--schema",
            dir.join("schema.toml").to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "{convert_err}");
        let config = dir.join("train.toml");
        let csv_path = csv.display().to_string().replace('\\', "\\\\");
        std::fs::write(
            &config,
            format!(
                "[data]\ncsv = \"{csv_path}\"\n[data.schema]\n{}\n[model]\narch = \"hps\"\n\
                 [model.encoder]\nname = \"mlp\"\nhidden = [4]\n",
                schema.replace("[[tasks]]", "[[data.schema.tasks]]")
            ),
        )
        .unwrap();
        let (code, _, train_err) = mtl(&[
            "train",
            config.to_str().unwrap(),
            "--out",
            dir.join("run").to_str().unwrap(),
            "--quiet",
        ]);
        assert_eq!(code, 2, "{train_err}");
        assert_eq!(convert_err, train_err, "{file}");
    }
}

#[test]
fn the_memory_budget_refuses_a_run_over_the_limit_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = "[data]\nbuiltin = \"linnerud\"\n[model]\narch = \"hps\"\n\
        [model.encoder]\nname = \"mlp\"\nhidden = [64]\n[train]\nepochs = 1\nbatch_size = 8\n";
    let path = dir.join("small.toml");
    std::fs::write(&path, config).unwrap();
    let run = |memory: &str| {
        mtl(&[
            "train",
            path.to_str().unwrap(),
            "--out",
            dir.join(format!("run-{memory}")).to_str().unwrap(),
            "--quiet",
            "--memory",
            memory,
        ])
    };
    // Parameters: 3·64 + 64 + 3·(64 + 1) = 451, and as many gradients:
    // 3608 bytes; Adam's two slots as much again; a batch of 8 the most.
    let (code, _, stderr) = run("1KiB");
    assert_eq!(code, 2, "{stderr}");
    for needle in [
        "memory budget: [train] batch_size: the run needs about 19.7 KiB but 1.0 KiB is available",
        "parameters and gradients 3.5 KiB ([model] encoder.hidden)",
        "optimizer state 3.5 KiB",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
    let (code, _, stderr) = run("1GiB");
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run("12XB");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--memory") && stderr.contains("XB"),
        "{stderr}"
    );
}
