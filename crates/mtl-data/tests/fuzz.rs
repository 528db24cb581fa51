//! Fuzzing of the readers of `mtl-data`: the CSV reader with its schema
//! (TOML and structural), NPY and IDX. Each property runs at least 10,000
//! cases of arbitrary bytes or of mutated valid inputs; none may panic, and
//! whatever is accepted must be self-consistent.
//!
//! Run in release mode: `cargo test -p mtl-data --release --test fuzz`.

use std::io::Write;
use std::path::Path;

use mtl_core::Targets;
use mtl_data::{idx, npy, read_csv_from, Array, ArrayData, Column, CsvSchema, TaskColumn};
use proptest::prelude::*;

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
    /// XOR one byte.
    Flip(usize, u8),
    /// Insert a token of the format's dictionary.
    Token(usize, usize),
    /// Insert arbitrary bytes.
    Insert(usize, Vec<u8>),
    /// Delete a range.
    Delete(usize, usize),
    /// Repeat a range.
    Duplicate(usize, usize),
    /// Cut the end off.
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

/// `base` edited by one to eight mutations.
fn mutated(base: Vec<u8>, dictionary: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(mutation(), 1..8).prop_map(move |ms| {
        let mut b = base.clone();
        for m in &ms {
            apply(&mut b, m, dictionary);
        }
        b
    })
}

// ---------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------

const CSV_TOKENS: &[&[u8]] = &[
    b",",
    b";",
    b"\n",
    b"\r\n",
    b"\"",
    b"\"\"",
    b"NA",
    b"?",
    b"",
    b"nan",
    b"NaN",
    b"inf",
    b"-inf",
    b"1e999",
    b"-0",
    b"0",
    b"1",
    b"2",
    b"3",
    b"-1.5e-3",
    b"red",
    b"blue",
    b"a",
    b"y",
    b"c",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\x00",
    b" ",
    b"\t",
    b"9999999999999999999999",
];

const CSV_GOOD: &str = "a,b,colour,y,c\n\
    1.0,2,red,0.5,x\n\
    -3,4e2,blue,1.5,z\n\
    5,,red,2.5,x\n\
    7,8,green,-0.5,z\n\
    9,10,blue,3,x\n";

/// The schema of [`CSV_GOOD`]: a categorical feature, a regression and a
/// classification whose labels are discovered.
fn good_schema() -> CsvSchema {
    let mut schema = CsvSchema::new(vec![
        TaskColumn::Regression {
            name: "y".into(),
            columns: vec![Column::from("y")],
        },
        TaskColumn::Classification {
            name: "c".into(),
            column: Column::from("c"),
            classes: None,
            labels: None,
        },
    ]);
    schema.categorical.push(mtl_data::Categorical {
        column: Column::from("colour"),
        encoding: Default::default(),
        categories: None,
    });
    schema.missing = mtl_data::MissingPolicy::ImputeMean;
    schema
}

/// Reads `bytes` with `schema`: an error is fine, a panic is not, and an
/// accepted table is consistent and standardises without panicking.
fn check_csv(bytes: &[u8], schema: &CsvSchema) -> Result<(), TestCaseError> {
    let Ok(table) = read_csv_from(bytes, "fuzz.csv", "fuzz", schema) else {
        return Ok(());
    };
    let rows = table.dataset.len();
    prop_assert!(rows > 0);
    prop_assert_eq!(
        table.dataset.features().unwrap().shape(),
        &[rows, table.feature_names.len()][..]
    );
    prop_assert_eq!(table.standardize_mask.len(), table.feature_names.len());
    prop_assert_eq!(table.dataset.targets().len(), schema.tasks.len());
    for targets in table.dataset.targets() {
        match targets {
            Targets::Classes(c) => prop_assert_eq!(c.len(), rows),
            Targets::Values(t) => prop_assert_eq!(t.shape()[0], rows),
            Targets::Unsupervised { reference } => {
                if let Some(r) = reference {
                    prop_assert_eq!(r.len(), rows);
                }
            }
        }
    }
    let all: Vec<usize> = (0..rows).collect();
    let _ = table.fit_transform(&all);
    Ok(())
}

/// A random schema over columns `a`, `b`, `colour`, `y`, `c` and indices
/// 0..7: every task kind, policies, header or not, delimiters.
fn schema_strategy() -> impl Strategy<Value = CsvSchema> {
    let column = prop_oneof![
        prop::sample::select(vec!["a", "b", "colour", "y", "c", "zz", ""]).prop_map(Column::from),
        (0usize..7).prop_map(Column::Index),
    ];
    let name = prop::sample::select(vec!["t1", "t2", "t3", "y"]);
    let labels = prop::option::of(prop::collection::vec(
        prop::sample::select(vec!["x", "z", "0", "1", "red"]).prop_map(String::from),
        0..4,
    ));
    let task = prop_oneof![
        (
            name.clone(),
            column.clone(),
            prop::option::of(prop_oneof![0usize..5, Just(1usize << 40)]),
            labels
        )
            .prop_map(|(n, c, classes, labels)| TaskColumn::Classification {
                name: n.into(),
                column: c,
                classes,
                labels,
            }),
        (name.clone(), column.clone()).prop_map(|(n, c)| TaskColumn::Binary {
            name: n.into(),
            column: c,
        }),
        (name.clone(), prop::collection::vec(column.clone(), 0..3)).prop_map(|(n, c)| {
            TaskColumn::Multilabel {
                name: n.into(),
                columns: c,
            }
        }),
        (name.clone(), prop::collection::vec(column.clone(), 0..3)).prop_map(|(n, c)| {
            TaskColumn::Regression {
                name: n.into(),
                columns: c,
            }
        }),
        (name, 0usize..5, prop::option::of(column.clone())).prop_map(|(n, k, r)| {
            TaskColumn::Clustering {
                name: n.into(),
                clusters: k,
                reference: r,
            }
        }),
    ];
    let categorical = (
        column.clone(),
        any::<bool>(),
        prop::option::of(prop::collection::vec(
            prop::sample::select(vec!["red", "blue", "green", "1"]).prop_map(String::from),
            0..3,
        )),
    )
        .prop_map(|(c, index, categories)| mtl_data::Categorical {
            column: c,
            encoding: if index {
                mtl_data::CategoryEncoding::Index
            } else {
                mtl_data::CategoryEncoding::OneHot
            },
            categories,
        });
    (
        prop::collection::vec(task, 0..4),
        prop::collection::vec(categorical, 0..2),
        prop::option::of(prop::collection::vec(column.clone(), 0..4)),
        prop::collection::vec(column, 0..2),
        any::<bool>(),
        prop::sample::select(vec![',', ';', '\t', '→']),
        0u8..3,
        any::<bool>(),
    )
        .prop_map(
            |(tasks, categorical, features, ignore, header, delimiter, missing, standardize)| {
                let mut s = CsvSchema::new(tasks);
                s.categorical = categorical;
                s.features = features;
                s.ignore = ignore;
                s.header = header;
                s.delimiter = delimiter;
                s.missing = match missing {
                    0 => mtl_data::MissingPolicy::Error,
                    1 => mtl_data::MissingPolicy::Drop,
                    _ => mtl_data::MissingPolicy::ImputeMean,
                };
                s.standardize = standardize;
                s
            },
        )
}

const SCHEMA_TOML: &str = r#"header = true
delimiter = ","
ignore = ["a"]
missing = "impute_mean"
missing_values = ["NA", "?"]
standardize = true

[[categorical]]
column = "colour"
encoding = "one_hot"
categories = ["red", "blue", "green"]

[[tasks]]
name = "y"
kind = "regression"
columns = ["y"]

[[tasks]]
name = "c"
kind = "classification"
column = "c"
labels = ["x", "z"]

[[tasks]]
name = "k"
kind = "clustering"
clusters = 2
reference = 4
"#;

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
    b"nan",
    b"inf",
    b"true",
    b"false",
    b"\"\"",
    b"[[tasks]]",
    b"[[categorical]]",
    b"name",
    b"kind",
    b"column",
    b"columns",
    b"classes",
    b"labels",
    b"\"classification\"",
    b"\"regression\"",
    b"\"binary\"",
    b"\"multilabel\"",
    b"\"clustering\"",
    b"18446744073709551615",
    b"\\u0000",
    b"\xff",
];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn csv_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        check_csv(&bytes, &good_schema())?;
    }

    #[test]
    fn csv_mutated_valid_files(bytes in mutated(CSV_GOOD.as_bytes().to_vec(), CSV_TOKENS)) {
        check_csv(&bytes, &good_schema())?;
    }

    #[test]
    fn csv_arbitrary_schemas(
        schema in schema_strategy(),
        bytes in prop_oneof![
            Just(CSV_GOOD.as_bytes().to_vec()),
            mutated(CSV_GOOD.as_bytes().to_vec(), CSV_TOKENS),
        ],
    ) {
        check_csv(&bytes, &schema)?;
    }

    #[test]
    fn csv_schema_toml_mutated(text in mutated(SCHEMA_TOML.as_bytes().to_vec(), TOML_TOKENS)) {
        let Ok(text) = std::str::from_utf8(&text) else { return Ok(()) };
        if let Ok(schema) = toml::from_str::<CsvSchema>(text) {
            check_csv(CSV_GOOD.as_bytes(), &schema)?;
        }
    }
}

// ---------------------------------------------------------------------------
// NPY
// ---------------------------------------------------------------------------

const NPY_TOKENS: &[&[u8]] = &[
    b"'",
    b"\"",
    b"(",
    b")",
    b",",
    b":",
    b"{",
    b"}",
    b" ",
    b"\n",
    b"'descr'",
    b"'shape'",
    b"'fortran_order'",
    b"False",
    b"True",
    b"<f4",
    b"<f8",
    b"|u1",
    b"<i8",
    b">f4",
    b"<i4",
    b"0",
    b"1",
    b"-1",
    b"L",
    b"18446744073709551615",
    b"4611686018427387904",
    b"\x93NUMPY",
    b"\x00",
    b"\xff",
];

fn npy_array() -> impl Strategy<Value = Array> {
    let shape = prop::collection::vec(0usize..4, 0..4);
    (shape, 0u8..4, any::<u64>()).prop_map(|(shape, kind, seed)| {
        let n: usize = shape.iter().product();
        let data = match kind {
            0 => ArrayData::F32((0..n).map(|i| (seed as f32) * 0.5 - i as f32).collect()),
            1 => ArrayData::F64((0..n).map(|i| seed as f64 / (i as f64 + 1.0)).collect()),
            2 => ArrayData::U8((0..n).map(|i| (seed as usize + i) as u8).collect()),
            _ => ArrayData::I64((0..n).map(|i| seed as i64 - i as i64).collect()),
        };
        Array::new(shape, data).unwrap()
    })
}

/// Parses `bytes` as NPY: an error is fine; an accepted array fills its shape.
fn check_npy(bytes: &[u8]) -> Result<(), TestCaseError> {
    match npy::parse(bytes, Path::new("fuzz.npy")) {
        Ok(a) => prop_assert_eq!(a.shape.iter().product::<usize>(), a.data.len()),
        Err(e) => prop_assert!(e.to_string().starts_with("fuzz.npy: npy: ")),
    }
    Ok(())
}

/// A well-formed preamble around a header assembled from header-like
/// tokens, and a body of any length.
fn npy_structured() -> impl Strategy<Value = Vec<u8>> {
    let descr = prop::sample::select(vec![
        "<f4", "<f8", "|u1", "u1", "<u1", "<i8", ">f4", "<i4", "x", "",
    ]);
    let fortran = prop::sample::select(vec!["False", "True", "0", ""]);
    let dims = prop::collection::vec(
        prop_oneof![
            (0u64..5).prop_map(|d| d.to_string()),
            Just("4611686018427387904".to_string()),
            Just("18446744073709551615".to_string()),
            Just("-1".to_string()),
            Just("2L".to_string()),
        ],
        0..4,
    );
    (descr, fortran, dims, 0usize..64, 1u8..4, any::<bool>()).prop_map(
        |(descr, fortran, dims, body, major, trailing)| {
            let shape = if dims.len() == 1 && trailing {
                format!("({},)", dims[0])
            } else {
                format!("({})", dims.join(", "))
            };
            let header =
                format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}\n");
            let mut out = b"\x93NUMPY".to_vec();
            out.extend([major, 0]);
            if major == 1 {
                out.extend((header.len() as u16).to_le_bytes());
            } else {
                out.extend((header.len() as u32).to_le_bytes());
            }
            out.extend(header.as_bytes());
            out.extend((0..body).map(|i| i as u8));
            out
        },
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn npy_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..160)) {
        check_npy(&bytes)?;
        let mut with_magic = b"\x93NUMPY".to_vec();
        with_magic.extend(&bytes);
        check_npy(&with_magic)?;
    }

    #[test]
    fn npy_mutated_valid_files(
        (array, ms) in (npy_array(), prop::collection::vec(mutation(), 1..8)),
    ) {
        let good = npy::encode(&array).unwrap();
        prop_assert_eq!(npy::parse(&good, Path::new("ok.npy")).unwrap(), array);
        let mut bytes = good;
        for m in &ms {
            apply(&mut bytes, m, NPY_TOKENS);
        }
        check_npy(&bytes)?;
    }

    #[test]
    fn npy_structured_headers(bytes in npy_structured()) {
        check_npy(&bytes)?;
    }
}

// ---------------------------------------------------------------------------
// IDX
// ---------------------------------------------------------------------------

const IDX_TOKENS: &[&[u8]] = &[
    b"\x00",
    b"\x00\x00",
    b"\x08",
    b"\x09",
    b"\x0b",
    b"\x0c",
    b"\x0d",
    b"\x0e",
    b"\xff\xff\xff\xff",
    b"\x80\x00\x00\x00",
    b"\x1f\x8b",
    b"\x00\x00\x00\x02",
];

/// A valid IDX file: element type, shape and elements.
fn idx_file() -> impl Strategy<Value = Vec<u8>> {
    let dtype = prop::sample::select(vec![
        (0x08u8, 1usize),
        (0x09, 1),
        (0x0B, 2),
        (0x0C, 4),
        (0x0D, 4),
        (0x0E, 8),
    ]);
    (dtype, prop::collection::vec(0u32..4, 0..4), any::<u8>()).prop_map(|((t, w), dims, fill)| {
        let mut b = vec![0, 0, t, dims.len() as u8];
        for d in &dims {
            b.extend(d.to_be_bytes());
        }
        let n: usize = dims.iter().map(|&d| d as usize).product();
        b.extend((0..n * w).map(|i| fill.wrapping_add(i as u8)));
        b
    })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Parses `bytes` as IDX: an error is fine; an accepted array fills its shape.
fn check_idx(bytes: &[u8]) -> Result<(), TestCaseError> {
    match idx::parse(bytes, Path::new("fuzz.idx")) {
        Ok(a) => prop_assert_eq!(a.shape.iter().product::<usize>(), a.data.len()),
        Err(e) => prop_assert!(e.to_string().starts_with("fuzz.idx: idx: ")),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn idx_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..96)) {
        check_idx(&bytes)?;
        let mut with_magic = vec![0, 0];
        with_magic.extend(&bytes);
        check_idx(&with_magic)?;
    }

    #[test]
    fn idx_mutated_valid_files(
        (good, ms, zipped) in (idx_file(), prop::collection::vec(mutation(), 1..8), any::<bool>()),
    ) {
        let parsed = idx::parse(&good, Path::new("ok.idx"));
        prop_assert!(parsed.is_ok(), "{:?}", parsed);
        let mut bytes = good;
        for m in &ms {
            apply(&mut bytes, m, IDX_TOKENS);
        }
        check_idx(&bytes)?;
        if zipped {
            // The same damage inside a gzip stream, and damage to the stream.
            let gz = gzip(&bytes);
            check_idx(&gz)?;
            let mut broken = gz;
            apply(&mut broken, &ms[0], IDX_TOKENS);
            check_idx(&broken)?;
        }
    }
}
