//! The loader yields every row once per epoch, the same batches for the same
//! seed whatever the thread count, and a new order each epoch.

use mtl_core::Targets;
use mtl_data::{datasets, Batch, DataLoader, Dataset, LoaderConfig};

fn collect(loader: &DataLoader, epoch: u64) -> Vec<Batch> {
    loader.epoch(epoch).map(|b| b.unwrap()).collect()
}

fn digits() -> Dataset {
    datasets::load("digits", 0).unwrap()
}

#[test]
fn every_row_exactly_once_per_epoch() {
    let ds = digits();
    let rows = &ds.split().unwrap().train;
    let config = LoaderConfig {
        batch_size: 100,
        seed: 5,
        ..LoaderConfig::default()
    };
    let loader = DataLoader::new(&ds, rows, config).unwrap();
    assert_eq!(loader.batches_per_epoch(), rows.len().div_ceil(100));
    for epoch in 0..3 {
        let batches = collect(&loader, epoch);
        assert_eq!(batches.len(), loader.batches_per_epoch());
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        assert!(batches[..batches.len() - 1].iter().all(|b| b.len() == 100));
        assert_eq!(batches.last().unwrap().len(), rows.len() % 100);
        seen.sort_unstable();
        assert_eq!(&seen, rows, "epoch {epoch}");
    }
    // Each batch holds the rows it names.
    let b = &collect(&loader, 0)[3];
    assert_eq!(b.x, ds.features().unwrap().gather_rows(&b.indices).unwrap());
    assert_eq!(b.targets[0], ds.targets()[0].gather(&b.indices).unwrap());
}

#[test]
fn drop_last_and_no_shuffle() {
    let ds = digits();
    let rows: Vec<usize> = (0..250).collect();
    let config = LoaderConfig {
        batch_size: 100,
        drop_last: true,
        shuffle: false,
        seed: 0,
    };
    let loader = DataLoader::new(&ds, &rows, config).unwrap();
    let batches = collect(&loader, 4);
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[1].indices, (100..200).collect::<Vec<_>>());
    assert!(DataLoader::new(&ds, &[5000], LoaderConfig::default()).is_err());
    assert!(DataLoader::new(
        &ds,
        &rows,
        LoaderConfig {
            batch_size: 0,
            ..Default::default()
        }
    )
    .is_err());
}

#[test]
fn same_seed_same_batches_new_epoch_new_order() {
    let ds = digits();
    let rows: Vec<usize> = (0..ds.len()).collect();
    let make = |seed| {
        DataLoader::new(
            &ds,
            &rows,
            LoaderConfig {
                batch_size: 64,
                seed,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let (a, b, c) = (make(9), make(9), make(10));
    assert_eq!(collect(&a, 2), collect(&b, 2));
    assert_ne!(a.order(2), c.order(2));
    assert_ne!(a.order(2), a.order(3));
}

#[test]
fn batches_are_identical_whatever_the_thread_count() {
    // Large batches so that assembly takes the parallel path.
    let ds = datasets::MultiMnist {
        train: 3000,
        test: 10,
        sum_task: true,
    }
    .build(1)
    .unwrap();
    let rows = ds.split().unwrap().train.clone();
    let config = LoaderConfig {
        batch_size: 256,
        seed: 42,
        ..Default::default()
    };
    const { assert!(256 * 36 * 36 >= mtl_data::loader::PARALLEL_ELEMENTS) };
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let loader = DataLoader::new(&ds, &rows, config.clone()).unwrap();
            (0..2).flat_map(|e| collect(&loader, e)).collect::<Vec<_>>()
        })
    };
    let one = run(1);
    let two = run(2);
    assert_eq!(one.len(), 2 * 3000usize.div_ceil(256));
    for (a, b) in one.iter().zip(&two) {
        assert_eq!(a.indices, b.indices);
        assert!(a
            .x
            .data()
            .iter()
            .zip(b.x.data())
            .all(|(x, y)| x.to_bits() == y.to_bits()));
        assert_eq!(a.targets, b.targets);
    }
    assert!(matches!(&one[0].targets[2], Targets::Values(v) if v.shape() == [256, 1]));
}
