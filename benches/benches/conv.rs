//! The direct convolution kernels at the default job's shapes (the LeNet
//! encoder on 36 × 36 MultiMNIST images): the forward pass of each
//! convolution for one image, and the weight and input gradients of a chunk
//! of eight images, as the tape calls them, on one thread (training needs
//! no input gradient of the first convolution, which reads the data; it is
//! timed all the same).
//!
//! Where the CPU has neither AVX-512 nor AVX2 the direct kernels do not run
//! and the group is empty.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mtl_core::kernels::{self, ConvGeometry};
use mtl_core::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Images per chunk of the tape's convolution backward pass.
const CHUNK: usize = 8;

/// The default job's two convolutions: (name, geometry, output channels).
fn lenet() -> [(&'static str, ConvGeometry, usize); 2] {
    let conv = |channels, size| ConvGeometry {
        channels,
        height: size,
        width: size,
        kernel_h: 5,
        kernel_w: 5,
        stride: 1,
        padding: 0,
    };
    [("conv1", conv(1, 36), 10), ("conv2", conv(10, 16), 20)]
}

/// `n` values from a standard normal distribution.
fn normal(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    Tensor::randn(&[n], 0.0, 1.0, rng)
        .expect("a valid shape")
        .data()
        .to_vec()
}

fn direct_convolution(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv_direct_lenet");
    group.sample_size(30);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (name, g, o) in lenet() {
        if !kernels::conv2d_direct_applies(&g) {
            continue;
        }
        let in_len = g.channels * g.height * g.width;
        let out_len = o * g.out_h() * g.out_w();
        let imgs = normal(CHUNK * in_len, &mut rng);
        let gys = normal(CHUNK * out_len, &mut rng);
        let w = normal(o * g.patch_len(), &mut rng);
        let bias = normal(o, &mut rng);
        // Multiply-adds of one image's pass, for the throughput.
        let terms = (out_len * g.patch_len()) as u64;
        let mut out = vec![0.0f32; out_len];
        group.throughput(Throughput::Elements(terms));
        group.bench_function(BenchmarkId::new("forward_1_image", name), |b| {
            b.iter(|| kernels::conv2d_direct(&imgs[..in_len], &w, Some(&bias), &g, o, &mut out))
        });
        group.throughput(Throughput::Elements(terms * CHUNK as u64));
        let mut dw = vec![0.0f32; o * g.patch_len()];
        group.bench_function(BenchmarkId::new("weight_grad_8_images", name), |b| {
            b.iter(|| kernels::conv2d_direct_weight_grad(&imgs, &gys, &g, o, CHUNK, &mut dw))
        });
        let mut dx = vec![0.0f32; CHUNK * in_len];
        group.bench_function(BenchmarkId::new("input_grad_8_images", name), |b| {
            b.iter(|| kernels::conv2d_direct_input_grad(&gys, &w, &g, o, CHUNK, &mut dx))
        });
    }
    group.finish();
}

criterion_group!(benches, direct_convolution);
criterion_main!(benches);
