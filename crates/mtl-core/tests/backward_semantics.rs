//! What multi-task training relies on: gradients add over losses, and
//! gradients at an intermediate node are the true derivatives there.

use mtl_core::nn::{Mlp, Module};
use std::ops::Range;

use mtl_core::{Graph, ParamGroup, ParamStore, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// f32 sums of a few hundred products: agreement to 1e-5 relative.
const SUM_TOL: f32 = 1e-5;

struct Toy {
    ps: ParamStore,
    trunk: Mlp,
    head1: Mlp,
    head2: Mlp,
    x: Tensor,
    y: Tensor,
    labels: Vec<usize>,
}

/// The tape with the toy's input and its trunk recorded, and the trunk's output.
fn trunk(t: &mut Toy) -> (Graph, Var) {
    let mut g = Graph::new(0);
    let x = g.input(t.x.clone());
    let z = t.trunk.forward(&mut g, &mut t.ps, x).unwrap();
    (g, z)
}

/// The trunk's last layer (8 -> 6): the last 8*6 + 6 shared values.
fn last_layer(ps: &ParamStore) -> Range<usize> {
    let shared = ps.group_range(&ParamGroup::Shared).unwrap();
    shared.end - (8 * 6 + 6)..shared.end
}

/// The bit patterns of `v`, for exact comparisons.
fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn toy() -> Toy {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut ps = ParamStore::new();
    let trunk = Mlp::builder(&[3, 8, 6])
        .activation(mtl_core::nn::Activation::Tanh)
        .activate_last(true)
        .build(&mut ps, "trunk", ParamGroup::Shared, &mut rng)
        .unwrap();
    let head1 = Mlp::builder(&[6, 4])
        .build(&mut ps, "h1", ParamGroup::task("a"), &mut rng)
        .unwrap();
    let head2 = Mlp::builder(&[6, 2])
        .build(&mut ps, "h2", ParamGroup::task("b"), &mut rng)
        .unwrap();
    let x = Tensor::randn(&[5, 3], 0.0, 1.0, &mut rng).unwrap();
    let y = Tensor::randn(&[5, 2], 0.0, 1.0, &mut rng).unwrap();
    Toy {
        ps,
        trunk,
        head1,
        head2,
        x,
        y,
        labels: vec![0, 3, 1, 1, 2],
    }
}

#[test]
fn gradient_of_a_sum_is_the_sum_of_gradients() {
    let mut t = toy();
    let (mut g, z) = trunk(&mut t);
    let o1 = t.head1.forward(&mut g, &mut t.ps, z).unwrap();
    let l1 = g.cross_entropy(o1, &t.labels, None, 0.0).unwrap();
    let o2 = t.head2.forward(&mut g, &mut t.ps, z).unwrap();
    let l2 = g.mse(o2, &t.y).unwrap();
    let n = t.ps.len();
    let mut both = vec![0.0; n];
    g.backward(&[(l1, 1.0), (l2, 1.0)])
        .unwrap()
        .accumulate_params(&g, 0..n, &mut both)
        .unwrap();
    let mut sep = vec![0.0; n];
    g.backward(&[(l1, 1.0)])
        .unwrap()
        .accumulate_params(&g, 0..n, &mut sep)
        .unwrap();
    g.backward(&[(l2, 1.0)])
        .unwrap()
        .accumulate_params(&g, 0..n, &mut sep)
        .unwrap();
    let mut nonzero = 0;
    for (a, b) in both.iter().zip(&sep) {
        assert!((a - b).abs() <= SUM_TOL * (1.0 + a.abs()), "{a} vs {b}");
        nonzero += usize::from(*a != 0.0);
    }
    assert!(
        nonzero > n / 2,
        "only {nonzero} of {n} gradients are non-zero"
    );
}

#[test]
fn gradient_at_the_representation_matches_finite_differences() {
    let mut t = toy();
    let (mut g, z) = trunk(&mut t);
    let o1 = t.head1.forward(&mut g, &mut t.ps, z).unwrap();
    let l1 = g.cross_entropy(o1, &t.labels, None, 0.0).unwrap();
    let zv = g.value(z).unwrap().clone();
    let grads = g.backward_from(&[(l1, Tensor::scalar(1.0))], &[z]).unwrap();
    let dz = grads.get(z).unwrap().clone();
    // Stopping at z leaves the trunk's parameters without gradient.
    let shared = t.ps.group_range(&ParamGroup::Shared).unwrap();
    let mut trunk = vec![0.0; shared.len()];
    grads.accumulate_params(&g, shared, &mut trunk).unwrap();
    assert!(trunk.iter().all(|v| *v == 0.0));

    let mut head_loss = |zt: &Tensor| {
        let mut g = Graph::new(0);
        let z = g.input(zt.clone());
        let o = t.head1.forward(&mut g, &mut t.ps, z).unwrap();
        let l = g.cross_entropy(o, &t.labels, None, 0.0).unwrap();
        g.value(l).unwrap().item().unwrap() as f64
    };
    let h = 1e-2f32;
    for i in 0..zv.len() {
        let mut p = zv.clone();
        p.data_mut()[i] += h;
        let mut m = zv.clone();
        m.data_mut()[i] -= h;
        let numeric = ((head_loss(&p) - head_loss(&m)) / (2.0 * h as f64)) as f32;
        assert!(
            (dz.data()[i] - numeric).abs() < 1e-3,
            "entry {i}: {} vs {numeric}",
            dz.data()[i]
        );
    }
}

#[test]
fn per_task_passes_through_the_representation_equal_full_passes() {
    // Backward from L to z, then from z through the trunk, equals one full pass.
    let mut t = toy();
    let (mut g, z) = trunk(&mut t);
    let o2 = t.head2.forward(&mut g, &mut t.ps, z).unwrap();
    let l2 = g.mse(o2, &t.y).unwrap();
    let shared = t.ps.group_range(&ParamGroup::Shared).unwrap();
    let mut full = vec![0.0; shared.len()];
    g.backward(&[(l2, 1.0)])
        .unwrap()
        .accumulate_params(&g, shared.clone(), &mut full)
        .unwrap();
    let dz = g
        .backward_from(&[(l2, Tensor::scalar(1.0))], &[z])
        .unwrap()
        .take(z)
        .unwrap();
    let mut two_step = vec![0.0; shared.len()];
    g.backward_from(&[(z, dz)], &[])
        .unwrap()
        .accumulate_params(&g, shared, &mut two_step)
        .unwrap();
    assert_eq!(full, two_step);
}

#[test]
fn a_pass_stopped_at_the_boundary_of_the_last_layer_gives_its_gradients_only() {
    let mut t = toy();
    let (mut g, z) = trunk(&mut t);
    let o2 = t.head2.forward(&mut g, &mut t.ps, z).unwrap();
    let l2 = g.mse(o2, &t.y).unwrap();
    let shared = t.ps.group_range(&ParamGroup::Shared).unwrap();
    let last = last_layer(&t.ps);
    let stop = g.boundary_of(last.clone());
    assert_eq!(
        stop.len(),
        1,
        "one activation feeds the last layer: {stop:?}"
    );
    let heads = shared.end..t.ps.len();
    let full = g.backward(&[(l2, 1.0)]).unwrap();
    let cut = g
        .backward_from(&[(l2, Tensor::scalar(1.0))], &stop)
        .unwrap();
    for range in [last.clone(), heads] {
        let mut a = vec![0.0; range.len()];
        let mut b = vec![0.0; range.len()];
        full.accumulate_params(&g, range.clone(), &mut a).unwrap();
        cut.accumulate_params(&g, range, &mut b).unwrap();
        assert_eq!(a, b);
        assert!(a.iter().any(|&v| v != 0.0));
    }
    // The first layer lies beyond the boundary: the stopped pass leaves it at zero.
    let first = shared.start..last.start;
    let mut a = vec![0.0; first.len()];
    let mut b = vec![0.0; first.len()];
    full.accumulate_params(&g, first.clone(), &mut a).unwrap();
    cut.accumulate_params(&g, first, &mut b).unwrap();
    assert!(a.iter().any(|&v| v != 0.0));
    assert!(b.iter().all(|&v| v == 0.0));
}

#[test]
fn shared_weights_and_seeds_on_parameters_reach_the_buffer_in_order() {
    // One weight read twice (weight sharing), a seed placed on a parameter
    // itself, a second seed on the same loss, and a parameter no seed
    // reaches: the buffer gets the per-node pass's bits, zero for the last.
    let mut t = toy();
    let (mut g, z) = trunk(&mut t);
    let z2 = t.head1.forward(&mut g, &mut t.ps, z).unwrap();
    let again = t.head1.forward(&mut g, &mut t.ps, z).unwrap();
    let both = g.add(z2, again).unwrap();
    let l1 = g.cross_entropy(both, &t.labels, None, 0.0).unwrap();
    let w = g.param(&t.ps, t.ps.find("h1.0.weight").unwrap()).unwrap();
    let n = t.ps.len();
    let seeds = [
        (l1, Tensor::scalar(0.7)),
        (w, Tensor::filled(g.shape(w).unwrap(), 0.3)),
        (l1, Tensor::scalar(0.2)),
    ];
    let mut want = vec![0.0f32; n];
    g.backward_from(&seeds, &[])
        .unwrap()
        .accumulate_params(&g, 0..n, &mut want)
        .unwrap();
    let mut got = vec![f32::NAN; n];
    g.param_gradients(&seeds, &[], 0..n, &mut got).unwrap();
    assert_eq!(bits(&got), bits(&want));
    let h2 = t.ps.group_range(&ParamGroup::task("b")).unwrap();
    assert!(got[h2].iter().all(|&v| v == 0.0), "head 2 is not reached");
    assert!(got.iter().all(|v| v.is_finite()));
    // A buffer of the wrong length is refused.
    assert!(g.param_gradients(&seeds, &[], 0..n, &mut got[1..]).is_err());
}

#[test]
fn a_skipped_layer_reads_zero_and_every_other_parameter_keeps_its_bits() {
    let mut t = toy();
    let (mut g, z) = trunk(&mut t);
    let o1 = t.head1.forward(&mut g, &mut t.ps, z).unwrap();
    let o2 = t.head2.forward(&mut g, &mut t.ps, z).unwrap();
    let l1 = g.cross_entropy(o1, &t.labels, None, 0.0).unwrap();
    let l2 = g.mse(o2, &t.y).unwrap();
    let seeds = [(l1, Tensor::scalar(0.4)), (l2, Tensor::scalar(1.5))];
    let n = t.ps.len();
    let last = last_layer(&t.ps);
    let mut want = vec![f32::NAN; n];
    g.param_gradients(&seeds, &[], 0..n, &mut want).unwrap();
    let mut got = vec![f32::NAN; n];
    g.param_gradients_except(&seeds, &[], 0..n, last.clone(), &mut got)
        .unwrap();
    assert!(got[last.clone()].iter().all(|&v| v == 0.0));
    assert!(want[last.clone()].iter().any(|&v| v != 0.0));
    assert_eq!(bits(&got[..last.start]), bits(&want[..last.start]));
    assert_eq!(bits(&got[last.end..]), bits(&want[last.end..]));
    // Each parameter here is recorded once; a head read twice is not.
    assert!(g.recorded_once(0..n));
    t.head1.forward(&mut g, &mut t.ps, z).unwrap();
    let head1 = t.ps.group_range(&ParamGroup::task("a")).unwrap();
    assert!(!g.recorded_once(head1));
    assert!(g.recorded_once(last));
}
