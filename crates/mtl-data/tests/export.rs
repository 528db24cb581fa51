//! Exported splits read back through the NPY reader hold exactly the data
//! set's rows.

use mtl_core::Targets;
use mtl_data::{datasets, export_npy, npy, ArrayData};

#[test]
fn exported_split_reads_back_exactly() {
    let ds = datasets::load("digits", 1).unwrap();
    let split = ds.split().unwrap();
    let dir = std::env::temp_dir().join(format!("mtl-data-export-{}", std::process::id()));
    let written = export_npy(&ds, split, &dir).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "train_x.npy",
            "train_digit.npy",
            "train_groups.npy",
            "validation_x.npy",
            "validation_digit.npy",
            "validation_groups.npy",
            "test_x.npy",
            "test_digit.npy",
            "test_groups.npy",
        ]
    );
    let x = npy::read(dir.join("test_x.npy")).unwrap();
    assert_eq!(x.shape, vec![split.test.len(), 1, 8, 8]);
    assert_eq!(
        x.to_tensor().unwrap(),
        ds.features().unwrap().gather_rows(&split.test).unwrap()
    );
    let y = npy::read(dir.join("train_digit.npy")).unwrap();
    assert!(matches!(y.data, ArrayData::I64(_)));
    let Targets::Classes(all) = &ds.targets()[0] else {
        panic!()
    };
    let want: Vec<usize> = split.train.iter().map(|&i| all[i]).collect();
    assert_eq!(y.to_labels().unwrap(), want);
    std::fs::remove_dir_all(&dir).unwrap();

    // Regression targets are float32 [n, width].
    let lin = datasets::load("linnerud", 0).unwrap();
    let dir = std::env::temp_dir().join(format!("mtl-data-export-lin-{}", std::process::id()));
    export_npy(&lin, lin.split().unwrap(), &dir).unwrap();
    let w = npy::read(dir.join("validation_weight.npy")).unwrap();
    assert_eq!(w.shape, vec![3, 1]);
    assert!(matches!(w.data, ArrayData::F32(_)));
    std::fs::remove_dir_all(&dir).unwrap();
}
