//! The seeded two-moons problem shared by the `two_moons` example and the
//! training tests.

use mtl_core::Tensor;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Two interleaved half circles with Gaussian noise: label 0 on the upper moon,
/// 1 on the lower one (the classic non-linear toy problem).
pub fn two_moons(n: usize, noise: f32, rng: &mut ChaCha8Rng) -> (Tensor, Vec<usize>) {
    let mut x = Vec::with_capacity(2 * n);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let t = std::f32::consts::PI * rng.gen::<f32>();
        let (px, py, label) = if i % 2 == 0 {
            (t.cos(), t.sin(), 0)
        } else {
            (1.0 - t.cos(), 0.5 - t.sin(), 1)
        };
        x.push(px + noise * rng.gen_range(-1.0..1.0));
        x.push(py + noise * rng.gen_range(-1.0..1.0));
        y.push(label);
    }
    (Tensor::from_vec(x, &[n, 2]).expect("2 values per point"), y)
}
