//! Reading CSV with a schema: feature selection, categories, missing-value
//! policies, standardisation fitted on training rows, and prediction with the
//! resolved schema.

use mtl_core::{Targets, TaskKind};
use mtl_data::{
    read_csv_from, Categorical, CategoryEncoding, Column, CsvSchema, MissingPolicy, TaskColumn,
};

/// f32 arithmetic on small values; standardised values are exact to a few ulps.
const TOL: f32 = 1e-5;

const CARS: &str = "\
name,size,color,price,sold
a,1.0,red,10,yes
b,2.0,blue,20,no
c,3.0,red,30,yes
d,,green,40,no
";

fn cars_schema() -> CsvSchema {
    let mut s: CsvSchema = toml::from_str(
        r#"
        ignore = ["name"]
        [[categorical]]
        column = "color"
        [[tasks]]
        name = "price"
        kind = "regression"
        columns = ["price"]
        [[tasks]]
        name = "sold"
        kind = "classification"
        column = "sold"
        "#,
    )
    .unwrap();
    s.missing = MissingPolicy::ImputeMean;
    s
}

fn close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < TOL, "{a:?} vs {b:?}");
    }
}

#[test]
fn rest_of_columns_become_features_with_one_hot_categories() {
    let table = read_csv_from(CARS.as_bytes(), "cars.csv", "cars", &cars_schema()).unwrap();
    assert_eq!(
        table.feature_names,
        ["size", "color=blue", "color=green", "color=red"]
    );
    assert_eq!(table.standardize_mask, [true, false, false, false]);
    let ds = &table.dataset;
    assert_eq!(ds.features().unwrap().shape(), &[4, 4]);
    assert_eq!(
        &ds.features().unwrap().data()[..8],
        &[1.0, 0.0, 0.0, 1.0, 2.0, 1.0, 0.0, 0.0]
    );
    assert!(
        ds.features().unwrap().data()[12].is_nan(),
        "missing size kept for imputation"
    );
    assert_eq!(ds.tasks()[1].kind, TaskKind::Classification { classes: 2 });
    assert_eq!(
        ds.targets()[1],
        Targets::Classes(vec![1, 0, 1, 0]),
        "labels sorted: no, yes"
    );
    // The resolved schema lists features and the discovered lists.
    let r = &table.schema;
    assert_eq!(
        r.features.as_deref(),
        Some(&[Column::from("size"), Column::from("color")][..])
    );
    assert_eq!(
        r.categorical[0].categories.as_deref(),
        Some(&["blue".to_string(), "green".into(), "red".into()][..])
    );
    match &r.tasks[1] {
        TaskColumn::Classification { labels, .. } => {
            assert_eq!(
                labels.as_deref(),
                Some(&["no".to_string(), "yes".into()][..])
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn standardisation_is_fitted_on_training_rows_and_reapplied_at_prediction() {
    let table = read_csv_from(CARS.as_bytes(), "cars.csv", "cars", &cars_schema()).unwrap();
    let schema = table.schema.clone();
    // Train on rows 0 and 2: size mean 2, std 1. Row 3's missing size is
    // imputed with the training mean 2, so z = 0.
    let ds = table.fit_transform(&[0, 2]).unwrap();
    let st = ds.standardizer().unwrap().clone();
    assert_eq!(st.mean[0], 2.0);
    assert_eq!(st.std[0], 1.0);
    let size: Vec<f32> = ds
        .features()
        .unwrap()
        .data()
        .chunks(4)
        .map(|r| r[0])
        .collect();
    close(&size, &[-1.0, 0.0, 1.0, 0.0]);
    // One-hot columns are not standardised.
    assert_eq!(&ds.features().unwrap().data()[1..4], &[0.0, 0.0, 1.0]);

    // Prediction: new rows without targets, same encoding and transform.
    let new = "name,size,color,price,sold\nz,5.0,green,,\n";
    let predict = read_csv_from(new.as_bytes(), "new.csv", "new", &schema.features_only()).unwrap();
    let pds = predict.transform(st).unwrap();
    close(pds.features().unwrap().data(), &[3.0, 0.0, 1.0, 0.0]);
    assert!(pds.tasks().is_empty());

    // A category never seen in training is an error at prediction.
    let bad = "name,size,color,price,sold\nz,5.0,mauve,,\n";
    let err = read_csv_from(bad.as_bytes(), "new.csv", "new", &schema.features_only()).unwrap_err();
    assert!(
        err.to_string()
            .contains("new.csv:2: column 2 (\"color\"): category \"mauve\" is not one of"),
        "{err}"
    );
}

#[test]
fn missing_values_error_drop_or_impute() {
    let mut s = cars_schema();
    s.missing = MissingPolicy::Error;
    let err = read_csv_from(CARS.as_bytes(), "cars.csv", "cars", &s).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cars.csv:5: column 1 (\"size\"): missing value in a feature column \
         (the schema's `missing` policy is \"error\"; \"drop\" or \"impute_mean\" allow it)"
    );
    s.missing = MissingPolicy::Drop;
    let t = read_csv_from(CARS.as_bytes(), "cars.csv", "cars", &s).unwrap();
    assert_eq!(t.dataset.len(), 3);
    assert_eq!(t.dropped_lines, vec![5]);
    // Green only appeared in the dropped row.
    assert_eq!(t.feature_names, ["size", "color=blue", "color=red"]);
    // Targets are never imputed.
    s.missing = MissingPolicy::ImputeMean;
    let missing_target = "name,size,color,price,sold\na,1,red,,yes\n";
    let err = read_csv_from(missing_target.as_bytes(), "t.csv", "t", &s).unwrap_err();
    assert!(
        err.to_string()
            .contains("t.csv:2: column 3 (\"price\"): missing value in a task column"),
        "{err}"
    );
}

#[test]
fn no_header_index_columns_index_encoding_and_other_kinds() {
    let text = "0.5|x|1|0|1|2.5\n1.5|y|0|1|1|3.5\n2.5|x|1|1|0|4.5\n";
    let mut s = CsvSchema::new(vec![
        TaskColumn::Binary {
            name: "b".into(),
            column: 2.into(),
        },
        TaskColumn::Multilabel {
            name: "m".into(),
            columns: vec![3.into(), 4.into()],
        },
        TaskColumn::Clustering {
            name: "g".into(),
            clusters: 2,
            reference: None,
        },
    ]);
    s.header = false;
    s.delimiter = '|';
    s.features = Some(vec![Column::Index(5), Column::Index(0), Column::Index(1)]);
    s.categorical = vec![Categorical {
        column: 1.into(),
        encoding: CategoryEncoding::Index,
        categories: None,
    }];
    let t = read_csv_from(text.as_bytes(), "p.txt", "p", &s).unwrap();
    assert_eq!(t.feature_names, ["5", "0", "1"]);
    assert_eq!(
        t.dataset.features().unwrap().data(),
        &[2.5, 0.5, 0.0, 3.5, 1.5, 1.0, 4.5, 2.5, 0.0]
    );
    assert_eq!(
        t.dataset.tasks()[1].kind,
        TaskKind::Multilabel { labels: 2 }
    );
    match &t.dataset.targets()[1] {
        Targets::Values(v) => assert_eq!(v.data(), &[0.0, 1.0, 1.0, 1.0, 1.0, 0.0]),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        t.dataset.targets()[2],
        Targets::Unsupervised { reference: None }
    );
    // A binary column holding 2 is refused.
    let err = read_csv_from("1|x|2|0|1|0\n".as_bytes(), "p.txt", "p", &s).unwrap_err();
    assert!(
        err.to_string()
            .contains("p.txt:1: column 2: binary value \"2\" is not 0 or 1"),
        "{err}"
    );
    // Names need a header.
    s.features = Some(vec![Column::from("size")]);
    let err = read_csv_from(text.as_bytes(), "p.txt", "p", &s).unwrap_err();
    assert!(err
        .to_string()
        .contains("given by name but the schema says the file has no header"));
}

#[test]
fn discovered_numeric_labels_sort_as_numbers() {
    let text = "x,y\n1,10\n2,9\n3,10\n4,2\n";
    let s = CsvSchema::new(vec![TaskColumn::Classification {
        name: "y".into(),
        column: "y".into(),
        classes: None,
        labels: None,
    }]);
    let t = read_csv_from(text.as_bytes(), "n.csv", "n", &s).unwrap();
    assert_eq!(t.dataset.targets()[0], Targets::Classes(vec![2, 1, 2, 0]));
}

#[test]
fn missing_targets_are_masked_on_request_and_errors_otherwise() {
    use mtl_core::MISSING_CLASS;
    use mtl_data::MissingTargets;
    let text = "x,kind,score,a,b\n1,cat,0.5,1,2\n2,,NA,3,4\n3,dog,1.5,,\n4,cat,,5,\n";
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
        TaskColumn::Regression {
            name: "ab".into(),
            columns: vec!["a".into(), "b".into()],
        },
    ]);
    let e = read_csv_from(text.as_bytes(), "m.csv", "m", &schema)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("m.csv:3: column 1 (\"kind\"): missing value in a task column")
            && e.contains("missing_targets"),
        "{e}"
    );
    schema.missing_targets = MissingTargets::Mask;
    // Row 4 misses `b` but not `a`: a task's columns go missing together.
    let e = read_csv_from(text.as_bytes(), "m.csv", "m", &schema)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("m.csv:5: column 4 (\"b\")"), "{e}");
    let text = &text[..text.rfind("4,cat").unwrap()];
    let ds = read_csv_from(text.as_bytes(), "m.csv", "m", &schema)
        .unwrap()
        .dataset;
    assert_eq!(ds.targets()[0], Targets::Classes(vec![0, MISSING_CLASS, 1]));
    assert_eq!(ds.targets()[1].labelled_rows(), vec![0, 2]);
    assert_eq!(ds.targets()[2].labelled_rows(), vec![0, 1]);
    // Stratifying on a task with unlabelled rows keeps every row.
    let split = mtl_data::split::stratified(&[0, MISSING_CLASS, 1, 0], 0.0, 0.5, 1).unwrap();
    assert_eq!(split.train.len() + split.test.len(), 4);
}
