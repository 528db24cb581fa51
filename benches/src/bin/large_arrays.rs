//! Writes a synthetic data set of any size in the layout of
//! `mtl datasets export` (`train_x.npy`, `train_<task>.npy`, `test_...`),
//! streaming, so its size is bounded by the disk and not by memory. Used by
//! `benches/large/run.sh` to train on features larger than memory.
//!
//! ```text
//! large_arrays DIR --rows 4300000 --features 256 [--test 20000] [--seed 7]
//! ```
//!
//! Each row has `F` features uniform in [-√3, √3] (unit variance) and two
//! tasks: `level`, a regression `x·w / √F + 0.1 ε`, and `kind`, the index of
//! the largest of four fixed projections (4 classes). Rows come from one
//! seeded stream in order, so the first `n` rows of a larger set are the rows
//! of a set of `n`: a sample trained in memory has exactly the rows the
//! large set starts with.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mtl_data::npy::{encode_header, Dtype};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type Error = Box<dyn std::error::Error>;

const CLASSES: usize = 4;

struct Args {
    dir: PathBuf,
    rows: usize,
    features: usize,
    test: usize,
    seed: u64,
}

fn parse_args() -> Result<Args, Error> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: large_arrays DIR --rows N --features F [--test N] [--seed S]")?,
    );
    let mut out = Args {
        dir,
        rows: 0,
        features: 0,
        test: 20_000,
        seed: 7,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rows" => out.rows = value.parse()?,
            "--features" => out.features = value.parse()?,
            "--test" => out.test = value.parse()?,
            "--seed" => out.seed = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if out.rows == 0 || out.features == 0 {
        return Err("--rows and --features must be positive".into());
    }
    Ok(out)
}

/// The fixed weights of the two tasks, drawn from `seed`.
struct Teacher {
    level: Vec<f32>,
    kinds: Vec<Vec<f32>>,
}

impl Teacher {
    fn new(features: usize, seed: u64) -> Teacher {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut draw = || (0..features).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        Teacher {
            level: draw(),
            kinds: (0..CLASSES).map(|_| draw()).collect(),
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// One part (`train` or `test`) of `rows` rows drawn from `rng`.
fn write_part(
    dir: &Path,
    part: &str,
    rows: usize,
    features: usize,
    teacher: &Teacher,
    rng: &mut ChaCha8Rng,
) -> Result<(), Error> {
    let open = |name: &str, dtype: Dtype, shape: &[usize]| -> Result<BufWriter<File>, Error> {
        let path = dir.join(format!("{part}_{name}.npy"));
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        w.write_all(&encode_header(dtype, shape)?)?;
        Ok(w)
    };
    let mut x = open("x", Dtype::F32, &[rows, features])?;
    let mut level = open("level", Dtype::F32, &[rows])?;
    let mut kind = open("kind", Dtype::I64, &[rows])?;
    let bound = 3f32.sqrt();
    let scale = 1.0 / (features as f32).sqrt();
    let mut row = vec![0f32; features];
    for _ in 0..rows {
        for v in row.iter_mut() {
            *v = rng.gen_range(-bound..bound);
        }
        let noise: f32 = rng.gen_range(-1.0f32..1.0);
        let y = dot(&row, &teacher.level) * scale + 0.1 * noise;
        let class = teacher
            .kinds
            .iter()
            .enumerate()
            .map(|(c, w)| (c, dot(&row, w)))
            .fold((0, f32::NEG_INFINITY), |best, (c, s)| {
                if s > best.1 {
                    (c, s)
                } else {
                    best
                }
            })
            .0;
        for v in &row {
            x.write_all(&v.to_le_bytes())?;
        }
        level.write_all(&y.to_le_bytes())?;
        kind.write_all(&(class as i64).to_le_bytes())?;
    }
    for mut w in [x, level, kind] {
        w.flush()?;
    }
    Ok(())
}

fn run() -> Result<(), Error> {
    let args = parse_args()?;
    std::fs::create_dir_all(&args.dir)?;
    let teacher = Teacher::new(args.features, args.seed);
    // The test rows come from their own stream, so they do not depend on
    // the number of training rows.
    let mut train = ChaCha8Rng::seed_from_u64(args.seed.wrapping_add(1));
    let mut test = ChaCha8Rng::seed_from_u64(args.seed.wrapping_add(2));
    write_part(
        &args.dir,
        "train",
        args.rows,
        args.features,
        &teacher,
        &mut train,
    )?;
    write_part(
        &args.dir,
        "test",
        args.test,
        args.features,
        &teacher,
        &mut test,
    )?;
    let bytes = args.rows as f64 * args.features as f64 * 4.0;
    println!(
        "{}: {} training rows x {} features ({:.2} GiB of features), {} test rows",
        args.dir.display(),
        args.rows,
        args.features,
        bytes / f64::from(1u32 << 30),
        args.test
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("large_arrays: {e}");
            ExitCode::FAILURE
        }
    }
}
