//! What the data-parallel tests share: running a closure on every rank of
//! an in-process group, the parameter difference they compare, and the
//! MultiMNIST data and model they train.

use mtl_dist::{Communicator, ThreadGroup};

/// Runs `f` on every rank of a group of `size` threads and returns rank 0's
/// result.
pub fn on_ranks<R: Send>(size: usize, f: impl Fn(Box<dyn Communicator + Send>) -> R + Sync) -> R {
    let comms = ThreadGroup::new(size).unwrap().communicators();
    let f = &f;
    let mut out: Vec<R> = std::thread::scope(|s| {
        let handles: Vec<_> = comms
            .into_iter()
            .map(|c| s.spawn(move || f(Box::new(c))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    out.swap_remove(0)
}

/// Largest `|a − b| / max(|b|, m)` over the parameters, `m` the mean
/// magnitude of `b`: relative to each parameter, and for parameters near zero
/// (whose relative difference is rounding noise over a vanishing value)
/// relative to the typical parameter.
pub fn max_relative(a: &[f32], b: &[f32]) -> f64 {
    let m = b.iter().map(|&y| (y as f64).abs()).sum::<f64>() / b.len().max(1) as f64;
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).abs() / (y as f64).abs().max(m))
        .fold(0.0, f64::max)
}

/// MultiMNIST (36 × 36 images in [0, 1], two classifications and a
/// regression) with a LeNet trunk: the `[data]`, `[model.encoder]` and
/// `[[tasks]]` tables of a run configuration.
pub const MULTIMNIST: &str = r#"
[data]
builtin = "multimnist"
[model.encoder]
name = "lenet"
fc = 32
[[tasks]]
name = "left"
kind = "classification"
classes = 10
[[tasks]]
name = "right"
kind = "classification"
classes = 10
[[tasks]]
name = "sum"
kind = "regression"
loss = "l1"
"#;
