//! Array files as training data: an exported MultiMNIST directory reads back
//! as the built-in data set (in memory and on disk), IDX files with inferred
//! kinds, missing labels, and errors that name the key.

use std::path::{Path, PathBuf};

use mtl_core::{Targets, TaskKind, TaskSpec, MISSING_CLASS};
use mtl_data::datasets::MultiMnist;
use mtl_data::{export_npy, npy, Array, ArrayData, ArraysConfig};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mtl-arrays-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn exported_multimnist_reads_back_identical_in_memory_and_on_disk() {
    let mm = MultiMnist {
        train: 300,
        test: 100,
        sum_task: true,
    };
    let ds = mm.build(3).unwrap();
    let split = ds.split().unwrap();
    let dir = temp_dir("mm");
    export_npy(&ds, split, &dir).unwrap();
    for on_disk in [false, true] {
        let config = ArraysConfig {
            dir: Some(dir.clone()),
            on_disk,
            ..ArraysConfig::default()
        };
        let back = config.load(&[]).unwrap();
        assert_eq!(back.is_on_disk(), on_disk);
        assert_eq!(back.tasks(), ds.tasks(), "kinds inferred: left, right, sum");
        assert_eq!(back.len(), 400);
        let back_split = back.split().unwrap();
        assert_eq!(back_split.train, (0..300).collect::<Vec<_>>());
        assert_eq!(back_split.test, (300..400).collect::<Vec<_>>());
        let original: Vec<usize> = split.train.iter().chain(&split.test).copied().collect();
        // Shuffled rows, so that runs and single rows are both read.
        let rows: Vec<usize> = (0..400).map(|i| (i * 37) % 400).collect();
        let mapped: Vec<usize> = rows.iter().map(|&r| original[r]).collect();
        let a = back.gather(&rows).unwrap();
        let b = ds.gather(&mapped).unwrap();
        assert_eq!(a.x, b.x);
        assert_eq!(a.targets, b.targets);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An uncompressed IDX file of unsigned bytes.
fn write_idx(path: &Path, shape: &[u32], data: &[u8]) {
    let mut bytes = vec![0, 0, 0x08, shape.len() as u8];
    for d in shape {
        bytes.extend(d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn idx_images_and_labels_with_inferred_kinds() {
    let dir = temp_dir("idx");
    let pixels: Vec<u8> = (0..6 * 4).map(|i| (i * 10) as u8).collect();
    write_idx(&dir.join("images-idx3-ubyte"), &[6, 2, 2], &pixels);
    write_idx(&dir.join("labels-idx1-ubyte"), &[6], &[0, 1, 2, 1, 0, 2]);
    npy::write(
        dir.join("flag.npy"),
        &Array::new(
            vec![6],
            ArrayData::Bool(vec![true, false, true, true, false, false]),
        )
        .unwrap(),
    )
    .unwrap();
    npy::write(
        dir.join("split.npy"),
        &Array::new(vec![6], ArrayData::I64(vec![0, 0, 0, 1, 2, 2])).unwrap(),
    )
    .unwrap();
    let text = format!(
        r#"
        x = "{d}/images-idx3-ubyte"
        split_file = "{d}/split.npy"
        [targets]
        digit = "{d}/labels-idx1-ubyte"
        flag = "{d}/flag.npy"
        "#,
        d = dir.display()
    );
    let config: ArraysConfig = toml::from_str(&text).unwrap();
    let ds = config.load(&[]).unwrap();
    assert_eq!(ds.feature_shape(), &[2, 2]);
    assert_eq!(ds.features().unwrap().data()[5], 50.0 / 255.0);
    assert_eq!(ds.tasks()[0].kind, TaskKind::Classification { classes: 3 });
    assert_eq!(ds.tasks()[1].kind, TaskKind::Binary);
    assert_eq!(ds.split().unwrap().validation, vec![3]);
    let raw = ArraysConfig {
        scale_u8: false,
        ..config.clone()
    };
    assert_eq!(raw.load(&[]).unwrap().features().unwrap().data()[5], 50.0);
    // On disk needs NPY features; the error names the key.
    let disk = ArraysConfig {
        on_disk: true,
        ..config.clone()
    };
    let e = disk.load(&[]).unwrap_err().to_string();
    assert!(e.starts_with("[data] on_disk:") && e.contains("NPY"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_labels_and_declared_kinds() {
    let dir = temp_dir("missing");
    let x = Array::new(vec![4, 3], ArrayData::F64((0..12).map(f64::from).collect())).unwrap();
    npy::write(dir.join("x.npy"), &x).unwrap();
    let labels = Array::new(vec![4], ArrayData::I64(vec![3, -1, 0, 7])).unwrap();
    npy::write(dir.join("digit.npy"), &labels).unwrap();
    let nan = f32::NAN;
    let y = Array::new(
        vec![4, 2],
        ArrayData::F32(vec![1.0, 2.0, nan, nan, 3.0, 4.0, 5.0, 6.0]),
    )
    .unwrap();
    npy::write(dir.join("y.npy"), &y).unwrap();
    let tags = Array::new(vec![4, 2], ArrayData::I64(vec![1, 0, -1, -1, 0, 1, 1, 1])).unwrap();
    npy::write(dir.join("tags.npy"), &tags).unwrap();
    let mut config = ArraysConfig {
        x: Some(dir.join("x.npy")),
        ..ArraysConfig::default()
    };
    config.targets.insert("digit".into(), dir.join("digit.npy"));
    config.targets.insert("y".into(), dir.join("y.npy"));
    config.targets.insert("tags".into(), dir.join("tags.npy"));
    // Integer [N, L] needs a declared kind; the error names the key.
    let e = config.load(&[]).unwrap_err().to_string();
    assert!(
        e.starts_with("[data] targets.tags:") && e.contains("ambiguous"),
        "{e}"
    );
    let declared = [
        TaskSpec {
            name: "tags".into(),
            kind: TaskKind::Multilabel { labels: 2 },
        },
        TaskSpec {
            name: "digit".into(),
            kind: TaskKind::Classification { classes: 10 },
        },
    ];
    let ds = config.load(&declared).unwrap();
    let names: Vec<&str> = ds.tasks().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["tags", "digit", "y"],
        "declared order, then by name"
    );
    assert_eq!(
        ds.targets()[1],
        Targets::Classes(vec![3, MISSING_CLASS, 0, 7])
    );
    assert_eq!(ds.targets()[0].labelled_rows(), vec![0, 2, 3]);
    assert_eq!(ds.targets()[2].labelled_rows(), vec![0, 2, 3]);
    assert_eq!(ds.tasks()[2].kind, TaskKind::Regression { outputs: 2 });
    // Inferred classes come from the largest label.
    let only_digit = ArraysConfig {
        targets: [("digit".to_string(), dir.join("digit.npy"))].into(),
        ..config.clone()
    };
    assert_eq!(
        only_digit.load(&[]).unwrap().tasks()[0].kind,
        TaskKind::Classification { classes: 8 }
    );
    // A declared class count below a label is refused, naming key and task.
    let few = [TaskSpec {
        name: "digit".into(),
        kind: TaskKind::Classification { classes: 5 },
    }];
    let e = only_digit.load(&few).unwrap_err().to_string();
    assert!(e.starts_with("[data] x:") || e.contains("class 7"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_configurations_name_the_key() {
    let both = ArraysConfig {
        dir: Some("d".into()),
        x: Some("x.npy".into()),
        ..ArraysConfig::default()
    };
    assert!(both
        .validate()
        .unwrap_err()
        .to_string()
        .starts_with("[data] dir:"));
    let none = ArraysConfig::default();
    assert!(none
        .validate()
        .unwrap_err()
        .to_string()
        .starts_with("[data] x:"));
    let e = toml::from_str::<ArraysConfig>("x = \"a.npy\"\nmmap = true")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `mmap`"), "{e}");
    let dir = temp_dir("empty");
    let e = ArraysConfig {
        dir: Some(dir.clone()),
        ..ArraysConfig::default()
    }
    .load(&[])
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("[data] dir:") && e.contains("train_x.npy"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
