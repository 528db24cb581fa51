//! Features kept on disk train within an address-space limit smaller than
//! the file: the test runs itself again under `prlimit --as`, and that run
//! reads a whole shuffled epoch from a file larger than the limit.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;

use mtl_core::{Targets, TaskKind, TaskSpec};
use mtl_data::npy::{self, Dtype};
use mtl_data::{DataLoader, Dataset, DiskArray, DiskFeatures, LoaderConfig};

/// Rows and columns of the generated features: 320 MB of f32.
const ROWS: usize = 80_000;
const COLS: usize = 1_000;
/// The address-space limit of the child run: below the file's 320 MB.
const LIMIT_BYTES: u64 = 256 << 20;
const CHILD: &str = "MTL_DISK_MEMORY_CHILD";

fn value(i: usize, j: usize) -> f32 {
    ((i * 7 + j * 3) % 251) as f32
}

fn write_features(path: &Path) {
    let file = std::fs::File::create(path).unwrap();
    let mut out = BufWriter::new(file);
    out.write_all(&npy::encode_header(Dtype::F32, &[ROWS, COLS]).unwrap())
        .unwrap();
    let mut row = Vec::with_capacity(COLS * 4);
    for i in 0..ROWS {
        row.clear();
        for j in 0..COLS {
            row.extend_from_slice(&value(i, j).to_le_bytes());
        }
        out.write_all(&row).unwrap();
    }
    out.flush().unwrap();
}

/// The child: one shuffled epoch over the file; every row is seen once and
/// the values add up.
fn epoch(path: &Path) {
    let features = DiskFeatures::new(vec![DiskArray::open(path).unwrap()], 1.0).unwrap();
    let spec = TaskSpec {
        name: "parity".into(),
        kind: TaskKind::Classification { classes: 2 },
    };
    let labels = Targets::Classes((0..ROWS).map(|i| i % 2).collect());
    let ds = Dataset::on_disk("big", features, vec![(spec, labels)]).unwrap();
    let rows: Vec<usize> = (0..ROWS).collect();
    let config = LoaderConfig {
        batch_size: 256,
        seed: 5,
        ..LoaderConfig::default()
    };
    let loader = DataLoader::new(&ds, &rows, config).unwrap();
    let mut seen = vec![false; ROWS];
    let mut total = 0.0f64;
    for batch in loader.epoch(0) {
        let batch = batch.unwrap();
        for (&i, row) in batch.indices.iter().zip(batch.x.data().chunks(COLS)) {
            assert!(!seen[i]);
            seen[i] = true;
            assert_eq!(row[17], value(i, 17));
            total += row.iter().map(|&v| f64::from(v)).sum::<f64>();
        }
    }
    assert!(seen.iter().all(|&s| s));
    let want: f64 = (0..ROWS)
        .flat_map(|i| (0..COLS).map(move |j| f64::from(value(i, j))))
        .sum();
    assert_eq!(total, want);
}

#[test]
fn an_epoch_on_disk_fits_under_an_address_space_limit_smaller_than_the_file() {
    if let Ok(path) = std::env::var(CHILD) {
        epoch(Path::new(&path));
        return;
    }
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("prlimit is not installed; skipping the bounded-memory run");
        return;
    }
    let dir = std::env::temp_dir().join(format!("mtl-disk-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("big.npy");
    write_features(&path);
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > LIMIT_BYTES, "the file must not fit under the limit");
    let status = Command::new("prlimit")
        .arg(format!("--as={LIMIT_BYTES}"))
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "an_epoch_on_disk_fits_under_an_address_space_limit_smaller_than_the_file",
            "--test-threads=1",
        ])
        .env(CHILD, &path)
        .env("RAYON_NUM_THREADS", "2")
        .env("MALLOC_ARENA_MAX", "2")
        .status()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        status.success(),
        "the run under prlimit --as failed: {status}"
    );
}
