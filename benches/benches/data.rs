//! Throughput of `mtl-data`: CSV parsing with a schema (MB/s) on a generated
//! file, and the loader's examples per second on MultiMNIST with batch 256.
//!
//! The CSV file has 8 numeric feature columns, a regression target and a
//! 10-class label, written once from a seeded generator into the target
//! directory; its size is `MTL_BENCH_CSV_MB` megabytes (default 100).

use std::io::Write;
use std::path::PathBuf;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mtl_data::datasets::MultiMnist;
use mtl_data::{read_csv, CsvSchema, DataLoader, LoaderConfig, TaskColumn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Default size of the generated CSV file, in megabytes.
const CSV_MB: u64 = 100;
/// MultiMNIST batch size, as in Sener and Koltun (2018).
const BATCH: usize = 256;

fn csv_file() -> (PathBuf, u64) {
    let mb = std::env::var("MTL_BENCH_CSV_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CSV_MB);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("bench_{mb}mb.csv"));
    if !path.exists() {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        writeln!(out, "f0,f1,f2,f3,f4,f5,f6,f7,y,label").unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut written = 0u64;
        while written < mb * 1_000_000 {
            let mut line = String::with_capacity(128);
            for _ in 0..9 {
                line.push_str(&format!("{:.6},", rng.gen_range(-100.0f64..100.0)));
            }
            line.push_str(&format!("{}\n", rng.gen_range(0..10)));
            written += line.len() as u64;
            out.write_all(line.as_bytes()).unwrap();
        }
        out.flush().unwrap();
    }
    let size = std::fs::metadata(&path).unwrap().len();
    (path, size)
}

fn csv_read(c: &mut Criterion) {
    let (path, size) = csv_file();
    let schema = CsvSchema::new(vec![
        TaskColumn::Regression {
            name: "y".into(),
            columns: vec!["y".into()],
        },
        TaskColumn::Classification {
            name: "label".into(),
            column: "label".into(),
            classes: Some(10),
            labels: None,
        },
    ]);
    let mut group = c.benchmark_group("csv_read");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(size));
    group.bench_function(format!("{}MB_8_features_2_tasks", size / 1_000_000), |b| {
        b.iter(|| black_box(read_csv(&path, &schema).unwrap().dataset.len()))
    });
    group.finish();
}

fn loader_epoch(c: &mut Criterion) {
    let ds = MultiMnist::default().build(0).unwrap();
    let rows = ds.split().unwrap().train.clone();
    let config = LoaderConfig {
        batch_size: BATCH,
        seed: 0,
        ..LoaderConfig::default()
    };
    let loader = DataLoader::new(&ds, &rows, config).unwrap();
    let mut group = c.benchmark_group("loader_multimnist");
    group.sample_size(10);
    group.throughput(Throughput::Elements(rows.len() as u64));
    let mut epoch = 0;
    group.bench_function("epoch_20000_batch_256", |b| {
        b.iter(|| {
            epoch += 1;
            loader
                .epoch(epoch)
                .map(|batch| black_box(batch.unwrap().len()))
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, csv_read, loader_epoch);
criterion_main!(benches);
