//! The corpus of bad CSV files under `tests/bad_csv`: each gives an error
//! that names the problem and where it is.

use std::path::PathBuf;

use mtl_data::{read_csv, Column, CsvSchema, DataError, TaskColumn};

fn corpus(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/bad_csv")
        .join(name)
}

/// Features `a`, `b`; task `y`, classification over integer classes 0..2.
fn schema() -> CsvSchema {
    CsvSchema::new(vec![TaskColumn::Classification {
        name: "y".into(),
        column: Column::from("y"),
        classes: Some(2),
        labels: None,
    }])
}

/// Reads a corpus file, expecting an error; returns it and its message.
fn fail(name: &str, schema: &CsvSchema) -> (DataError, String) {
    let err = read_csv(corpus(name), schema).expect_err(name);
    let msg = err.to_string();
    assert!(msg.contains(name), "the error names the file: {msg}");
    (err, msg)
}

#[test]
fn ragged_row_names_its_line_and_field_counts() {
    let (err, msg) = fail("ragged.csv", &schema());
    assert!(
        matches!(err, DataError::Table { line: Some(3), .. }),
        "{err:?}"
    );
    assert!(
        msg.ends_with("ragged.csv:3: row has 2 fields, expected 3 (as many as the header)"),
        "{msg}"
    );
}

#[test]
fn non_numeric_feature_names_line_and_column() {
    let (err, msg) = fail("non_numeric.csv", &schema());
    match err {
        DataError::Cell { line, column, .. } => {
            assert_eq!(line, 3);
            assert_eq!(column, "1 (\"b\")");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        msg.ends_with("non_numeric.csv:3: column 1 (\"b\"): cannot parse \"four\" as a number"),
        "{msg}"
    );
}

#[test]
fn nan_and_empty_fields_are_missing_values() {
    for file in ["nan.csv", "empty_field.csv"] {
        let (err, msg) = fail(file, &schema());
        assert!(
            matches!(&err, DataError::Cell { column, .. } if column == "1 (\"b\")"),
            "{err:?}"
        );
        let line = if file == "nan.csv" { 3 } else { 2 };
        assert!(
            msg.contains(&format!(
                "{file}:{line}: column 1 (\"b\"): missing value in a feature column"
            )),
            "{msg}"
        );
    }
}

#[test]
fn missing_task_column_lists_the_header() {
    let (_, msg) = fail("missing_task_column.csv", &schema());
    assert!(
        msg.contains(":1: column \"y\" is not in the header (a, b, z)"),
        "{msg}"
    );
}

#[test]
fn unknown_class_label_lists_the_known_ones() {
    let mut s = schema();
    s.tasks = vec![TaskColumn::Classification {
        name: "y".into(),
        column: Column::from("y"),
        classes: None,
        labels: Some(vec!["cat".into(), "dog".into()]),
    }];
    let (err, msg) = fail("unknown_label.csv", &s);
    assert!(matches!(err, DataError::Cell { line: 4, .. }), "{err:?}");
    assert!(
        msg.ends_with("column 2 (\"y\"): class label \"emu\" is not one of [\"cat\", \"dog\"]"),
        "{msg}"
    );
}

#[test]
fn class_index_out_of_range() {
    let (_, msg) = fail("class_out_of_range.csv", &schema());
    assert!(
        msg.contains(":3: column 2 (\"y\"): class \"7\" is not an integer in 0..2"),
        "{msg}"
    );
}

#[test]
fn empty_and_header_only_files() {
    let (_, msg) = fail("empty.csv", &schema());
    assert!(msg.ends_with("empty.csv: the file is empty"), "{msg}");
    let (_, msg) = fail("header_only.csv", &schema());
    assert!(
        msg.ends_with("header_only.csv: the file has a header but no data rows"),
        "{msg}"
    );
}

#[test]
fn wrong_delimiter_suggests_the_fix() {
    let (_, msg) = fail("wrong_delimiter.csv", &schema());
    assert!(
        msg.contains("column \"y\" is not in the header (a;b;y)"),
        "{msg}"
    );
    assert!(msg.contains("is the delimiter ',' right?"), "{msg}");
    let mut s = schema();
    s.delimiter = ';';
    let table = read_csv(corpus("wrong_delimiter.csv"), &s).unwrap();
    assert_eq!(table.dataset.len(), 2);
}

#[test]
fn unreadable_file_names_the_path() {
    let err = read_csv(corpus("no_such_file.csv"), &schema()).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }));
    assert!(err.to_string().contains("no_such_file.csv"));
}
