//! Streaming CSV to NPY conversion: the converted directory reads back as
//! the CSV reads for training (standardised over every row), across chunk
//! boundaries, and a bad file gives the same error as training on it.

use std::fmt::Write as _;
use std::path::PathBuf;

use mtl_core::{Targets, TaskKind};
use mtl_data::convert::CHUNK_ROWS;
use mtl_data::{
    convert_csv, read_csv, ArraysConfig, Categorical, CsvSchema, MissingTargets, TaskColumn,
};

/// Agreement of features standardised by the streaming (Welford) and the
/// two-pass statistics: both in f64, rounded once to f32 (ulp ≈ 1e-7 on
/// values of order 1).
const STANDARD_TOL: f32 = 1e-5;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mtl-convert-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn schema() -> CsvSchema {
    let mut schema = CsvSchema::new(vec![
        TaskColumn::Classification {
            name: "kind".into(),
            column: "kind".into(),
            classes: None,
            labels: None,
        },
        TaskColumn::Regression {
            name: "score".into(),
            columns: vec!["score".into()],
        },
        TaskColumn::Binary {
            name: "flag".into(),
            column: "flag".into(),
        },
    ]);
    schema.categorical.push(Categorical {
        column: "colour".into(),
        encoding: Default::default(),
        categories: None,
    });
    schema.missing_targets = MissingTargets::Mask;
    schema
}

#[test]
fn converted_csv_reads_back_as_training_reads_it() {
    let dir = temp("ok");
    let rows = CHUNK_ROWS * 2 + 123;
    let mut text = String::from("x,colour,kind,score,flag\n");
    let colours = ["red", "green", "blue"];
    let kinds = ["cat", "dog", "eel", "fox"];
    for i in 0..rows {
        let score = if i % 7 == 3 {
            String::new()
        } else {
            format!("{}", (i % 13) as f32 * 0.5)
        };
        let kind = if i % 11 == 5 { "" } else { kinds[(i * 7) % 4] };
        writeln!(
            text,
            "{},{},{kind},{score},{}",
            (i as f32 * 0.37).sin(),
            colours[i % 3],
            (i / 3) % 2
        )
        .unwrap();
    }
    let csv = dir.join("data.csv");
    std::fs::write(&csv, &text).unwrap();
    let out = dir.join("npy");
    let converted = convert_csv(&csv, &schema(), &out).unwrap();
    assert_eq!(converted.rows, rows);
    assert_eq!(converted.files.len(), 4);
    let table = read_csv(&csv, &schema()).unwrap();
    assert_eq!(converted.schema, table.schema);
    let all: Vec<usize> = (0..rows).collect();
    let want = table.fit_transform(&all).unwrap();
    for on_disk in [false, true] {
        let got = ArraysConfig {
            dir: Some(out.clone()),
            on_disk,
            ..ArraysConfig::default()
        }
        .load(&[])
        .unwrap();
        assert!(got.split().is_none());
        let names: Vec<&str> = got.tasks().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["flag", "kind", "score"]);
        assert_eq!(got.tasks()[0].kind, TaskKind::Binary);
        assert_eq!(got.tasks()[1].kind, TaskKind::Classification { classes: 4 });
        let rows_x = got.gather(&all).unwrap().x;
        assert_eq!(rows_x.shape(), want.features().unwrap().shape());
        for (a, b) in rows_x.data().iter().zip(want.features().unwrap().data()) {
            assert!((a - b).abs() <= STANDARD_TOL, "{a} vs {b}");
        }
        assert_eq!(got.task_targets("kind"), want.task_targets("kind"));
        assert_eq!(got.task_targets("flag"), want.task_targets("flag"));
        let (Some(Targets::Values(a)), Some(Targets::Values(b))) =
            (got.task_targets("score"), want.task_targets("score"))
        else {
            panic!("regression targets")
        };
        assert!(a
            .data()
            .iter()
            .zip(b.data())
            .all(|(x, y)| x == y || (x.is_nan() && y.is_nan())));
        let labelled = (0..rows).filter(|i| i % 7 != 3).count();
        assert_eq!(
            got.task_targets("score").unwrap().labelled_count(),
            labelled
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_file_fails_as_training_on_it_does() {
    let dir = temp("bad");
    let csv = dir.join("bad.csv");
    std::fs::write(
        &csv,
        "x,colour,kind,score,flag\n1,red,cat,1,0\n2,red,dog,x2,1\n",
    )
    .unwrap();
    let want = read_csv(&csv, &schema()).unwrap_err().to_string();
    let got = convert_csv(&csv, &schema(), dir.join("out"))
        .unwrap_err()
        .to_string();
    assert_eq!(got, want);
    assert!(got.contains(":3: column 3 (\"score\")"), "{got}");
    std::fs::remove_dir_all(&dir).unwrap();
}
