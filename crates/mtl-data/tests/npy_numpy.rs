//! NPY files written by numpy itself (`tests/fixtures/make_fixtures.py`) read
//! back exactly, and our writer reproduces numpy's bytes.

use std::path::PathBuf;

use mtl_data::{npy, Array, ArrayData};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn expected() -> Vec<(&'static str, Array)> {
    vec![
        (
            "f32_2x3.npy",
            Array::new(
                vec![2, 3],
                ArrayData::F32(vec![0.5, -1.25, 3.0, 1e-7, 65504.0, -0.0]),
            )
            .unwrap(),
        ),
        (
            "f64_4.npy",
            Array::new(
                vec![4],
                ArrayData::F64(vec![
                    std::f64::consts::PI,
                    -std::f64::consts::E,
                    1e300,
                    5e-324,
                ]),
            )
            .unwrap(),
        ),
        (
            "u8_2x2x2.npy",
            Array::new(
                vec![2, 2, 2],
                ArrayData::U8((0..8).map(|i| i * 32).collect()),
            )
            .unwrap(),
        ),
        (
            "i64_3.npy",
            Array::new(vec![3], ArrayData::I64(vec![i64::MIN, 0, i64::MAX])).unwrap(),
        ),
        (
            "f32_scalar.npy",
            Array::new(vec![], ArrayData::F32(vec![2.5])).unwrap(),
        ),
    ]
}

#[test]
fn numpy_files_read_back_exactly() {
    for (name, want) in expected() {
        let got = npy::read(fixture(name)).unwrap();
        assert_eq!(got, want, "{name}");
        // Bit-exact, including the sign of zero.
        if let (ArrayData::F32(a), ArrayData::F32(b)) = (&got.data, &want.data) {
            assert!(
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{name}"
            );
        }
    }
}

#[test]
fn our_writer_produces_numpys_bytes() {
    for (name, array) in expected() {
        let numpy = std::fs::read(fixture(name)).unwrap();
        assert_eq!(npy::encode(&array).unwrap(), numpy, "{name}");
    }
}

#[test]
fn unsupported_numpy_layouts_are_refused_by_name() {
    let msg = |name: &str| npy::read(fixture(name)).unwrap_err().to_string();
    assert!(msg("f32_fortran.npy").contains("f32_fortran.npy: npy: Fortran-ordered"));
    assert!(msg("f32_bigendian.npy").contains("unsupported dtype \">f4\""));
    // int32 is read, widened to int64.
    let i32s = npy::read(fixture("i32_2.npy")).unwrap();
    assert!(matches!(&i32s.data, ArrayData::I64(v) if v.len() == 2));
}

#[test]
fn tensors_convert_through_arrays() {
    let a = npy::read(fixture("u8_2x2x2.npy")).unwrap();
    let t = a.to_tensor().unwrap();
    assert_eq!(t.shape(), &[2, 2, 2]);
    assert_eq!(t.data()[7], 224.0);
    assert_eq!(a.to_labels().unwrap()[1], 32);
    let neg = npy::read(fixture("i64_3.npy")).unwrap();
    assert!(neg
        .to_labels()
        .unwrap_err()
        .to_string()
        .contains("element 0"));
}
