//! The `mtl` binary: exit status 2 and a message naming the culprit on bad input.

use std::process::Command;

fn mtl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mtl"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_configuration_exits_with_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[data]\nbuiltin = \"digits\"\n[model]\narch = \"hps\"\n[model.encoder]\nname = \"mlp\"\nhidden = [8]\n[train]\nepochz = 3\n").unwrap();
    let (code, _, err) = mtl(&["train", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("epochz") && err.contains("bad.toml"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn an_unknown_balancer_lists_the_valid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.toml");
    std::fs::write(&path, "[data]\nbuiltin = \"digits\"\n[model]\narch = \"hps\"\n[model.encoder]\nname = \"mlp\"\nhidden = [8]\n[train]\nbalancer = { name = \"gradnorn\" }\n").unwrap();
    let (code, _, err) = mtl(&["train", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("gradnorn") && err.contains("gradnorm"),
        "{err}"
    );
}

#[test]
fn listings_work() {
    let (code, out, _) = mtl(&["datasets", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("multimnist") && out.contains("digits"));
    let (code, out, _) = mtl(&["balancers"]);
    assert_eq!(code, 0);
    assert!(out.contains("pcgrad") && out.contains("nash-mtl"));
    let (code, _, err) = mtl(&["datasets", "describe", "nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn resume_of_a_missing_run_is_a_clear_error() {
    let (code, _, err) = mtl(&["train", "--resume", "/nonexistent/run"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/run"), "{err}");
}

#[test]
fn divergence_during_training_exits_with_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge_lr.toml");
    std::fs::write(
        &path,
        "[data]\nbuiltin = \"digits\"\n[model]\narch = \"hps\"\n[model.encoder]\nname = \"mlp\"\nhidden = [16]\n[train]\nepochs = 2\noptimizer = { name = \"sgd\", lr = 1e30 }\n",
    )
    .unwrap();
    let out = dir.path().join("run");
    let (code, _, err) = mtl(&[
        "train",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("step") && err.contains("diverged"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn example(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn train_json_prints_one_object_with_the_documented_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (code, stdout, err) = mtl(&[
        "train",
        &example("cars.toml"),
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "3",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is one JSON object");
    assert_eq!(v["balancer"], "uncertainty");
    assert_eq!(v["epochs"], 3);
    assert!(v["train_seconds"].as_f64().unwrap() > 0.0);
    assert!(v["seconds_per_epoch"].as_f64().unwrap() > 0.0);
    assert!(v["tasks"]["mpg"]["mae"].as_f64().unwrap().is_finite());
    assert!(v["tasks"]["origin"]["accuracy"].as_f64().unwrap() >= 0.0);
    assert!(v.get("delta_m").is_none(), "no baselines, no Δm: {v}");
    for plot in ["loss", "weights", "cosine"] {
        for ext in ["svg", "png"] {
            let p = out.join(format!("{plot}.{ext}"));
            assert!(p.metadata().unwrap().len() > 500, "{}", p.display());
        }
    }
}

#[test]
fn predict_reads_new_csv_files_with_the_saved_preprocessing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let run = out.to_str().unwrap();
    let (code, _, err) = mtl(&["train", &example("cars.toml"), "--out", run, "--quiet"]);
    assert_eq!(code, 0, "{err}");
    let pred = dir.path().join("pred.csv");
    let (code, _, err) = mtl(&[
        "predict",
        run,
        "--input",
        &example("cars_new.csv"),
        "--output",
        pred.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&pred).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "row,mpg,origin");
    assert_eq!(lines.len(), 11, "{text}");
    for line in &lines[1..] {
        let cells: Vec<&str> = line.split(',').collect();
        let mpg: f64 = cells[1].parse().unwrap();
        assert!((5.0..60.0).contains(&mpg), "{line}");
        assert!(["usa", "europe", "japan"].contains(&cells[2]), "{line}");
    }
    // The first new car is a US 1970 Chevrolet of 18 mpg, seen in training.
    let first: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(first[2], "usa", "{text}");
    assert!(
        (first[1].parse::<f64>().unwrap() - 18.0).abs() < 5.0,
        "{text}"
    );
    // A file of another shape names itself and exits with 2.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "cylinders,weight\n4,2000\n").unwrap();
    let (code, _, err) = mtl(&["predict", run, "--input", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.csv"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn predict_reads_npy_files_exported_from_a_builtin_data_set() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let run = out.to_str().unwrap();
    let (code, _, err) = mtl(&[
        "train",
        &example("autompg.toml"),
        "--out",
        run,
        "--epochs",
        "2",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    let npy = dir.path().join("npy");
    let (code, _, err) = mtl(&["datasets", "export", "linnerud", npy.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    // Linnerud has 3 features, Auto MPG 6: refused, naming the file and shapes.
    let x = npy.join("test_x.npy");
    let (code, _, err) = mtl(&["predict", run, "--input", x.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("test_x.npy") && err.contains('6'), "{err}");
    let own = dir.path().join("own");
    let (code, _, err) = mtl(&["datasets", "export", "autompg", own.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let x = own.join("test_x.npy");
    let (code, stdout, err) = mtl(&["predict", run, "--input", x.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(stdout.lines().next(), Some("row,mpg,origin"));
    assert!(stdout.lines().count() > 10, "{stdout}");
}

#[test]
fn compare_trains_each_balancer_and_baselines_and_writes_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cmp");
    let (code, stdout, err) = mtl(&[
        "compare",
        &example("cars.toml"),
        "--balancers",
        "equal,pcgrad",
        "--baselines",
        "--epochs",
        "20",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON array");
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["balancer"], "equal");
    assert_eq!(rows[1]["balancer"], "pcgrad");
    for r in rows {
        assert!(r["delta_m"].as_f64().unwrap().is_finite(), "{r}");
        assert!(r["seconds_per_epoch"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["tasks"]["origin"]["accuracy"].is_number(), "{r}");
    }
    let csv = std::fs::read_to_string(out.join("compare.csv")).unwrap();
    assert!(
        csv.starts_with("balancer,") && csv.contains("delta_m,seconds_per_epoch"),
        "{csv}"
    );
    // The baselines and each balancer: one seed, then its mean and std rows.
    assert_eq!(csv.lines().count(), 10, "{csv}");
    for chart in [
        "compare-mpg.png",
        "compare-origin.svg",
        "compare-delta-m.png",
        "single-mpg/seed-1/summary.json",
    ] {
        assert!(out.join(chart).exists(), "{chart}");
    }
}

#[test]
fn compare_refuses_an_unknown_balancer_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cmp");
    let (code, _, err) = mtl(&[
        "compare",
        &example("cars.toml"),
        "--balancers",
        "equal,pcgradd",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("pcgradd") && err.contains("--balancers"),
        "{err}"
    );
    assert!(!out.join("equal").exists(), "nothing was trained");
}

#[test]
fn relations_prints_the_matrices_and_the_suggested_groups_of_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let run = out.to_str().unwrap();
    let (code, _, err) = mtl(&[
        "train",
        &example("cars.toml"),
        "--out",
        run,
        "--epochs",
        "5",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, stdout, err) = mtl(&["relations", run, "--groups", "2"]);
    assert_eq!(code, 0, "{err}");
    for part in [
        "affinity",
        "cosine",
        "embeddings",
        "group 1",
        "group 2",
        "mpg",
        "origin",
    ] {
        assert!(stdout.contains(part), "{part}: {stdout}");
    }
    for file in [
        "relations.json",
        "affinity.png",
        "cosine_mean.svg",
        "task_embeddings.csv",
    ] {
        assert!(out.join(file).exists(), "{file}");
    }
    // Three groups of two tasks cannot be formed: exit 2 naming the count.
    let (code, _, err) = mtl(&["relations", run, "--groups", "3"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains('3'), "{err}");
    let (code, _, err) = mtl(&["relations", "/nonexistent/run"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/run"), "{err}");
}
