//! The tape: [`Graph`] records every operation of a forward pass in an arena,
//! and [`Graph::backward`] walks it in reverse.
//!
//! A [`Var`] is an index into the arena. Nodes are appended in evaluation
//! order, so the arena is already topologically sorted and the backward pass is
//! a single reverse sweep. The forward builders live in the files below, one
//! family of ops each; the backward pass is one `match` in `backward.rs`.
//!
//! ```
//! use mtl_core::{Graph, Tensor};
//! let mut g = Graph::new(0);
//! let x = g.param_value(Tensor::from_vec(vec![3.0], &[1]).unwrap());
//! let y = g.mul(x, x).unwrap();           // y = x²
//! let loss = g.sum(y).unwrap();
//! let grads = g.backward(&[(loss, 1.0)]).unwrap();
//! assert_eq!(grads.get(x).unwrap().data(), &[6.0]); // dy/dx = 2x
//! ```

mod activation;
mod arith;
mod backward;
mod buffers;
mod layers;
mod loss;
mod op;
mod shape;

pub use backward::Gradients;
pub use layers::BatchStatistics;
pub use op::Op;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use self::buffers::{BufferPool, SpentGradients};

use crate::error::{CoreError, Result};
use crate::params::{ParamId, ParamStore};
use crate::tensor::PARALLEL_ELEMENTS;
use crate::Tensor;

/// A handle to a node of a [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Var(pub(crate) usize);

impl Var {
    /// The node's position in the arena.
    pub fn index(self) -> usize {
        self.0
    }
}

/// One recorded operation with its value.
#[derive(Clone, Debug)]
pub struct Node {
    /// The value computed in the forward pass.
    pub value: Tensor,
    /// The operation and its inputs.
    pub op: Op,
    /// Whether any parameter lies upstream (only such nodes receive gradients).
    pub requires_grad: bool,
}

/// An arena tape of one forward pass.
///
/// The graph carries the mode (training or evaluation, which changes dropout
/// and batch normalisation) and a seeded random generator for dropout masks,
/// so that the same seed gives the same masks.
#[derive(Debug)]
pub struct Graph {
    nodes: Vec<Node>,
    training: bool,
    rng: ChaCha8Rng,
    pool: BufferPool,
    spent: SpentGradients,
}

impl Graph {
    /// An empty graph in training mode whose dropout masks are drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        Graph {
            nodes: Vec::new(),
            training: true,
            rng: ChaCha8Rng::seed_from_u64(seed),
            pool: BufferPool::default(),
            spent: SpentGradients::default(),
        }
    }

    /// Forgets every node but keeps the arena's allocation, and the nodes'
    /// value buffers, for the next step. The random stream continues where
    /// it was.
    pub fn reset(&mut self) {
        self.pool
            .refill(self.nodes.drain(..).map(|node| node.value.into_vec()));
    }

    /// An output buffer of `len` elements with unspecified contents, from the
    /// last step's buffers where one fits: for ops that write every element.
    pub(crate) fn buffer(&mut self, len: usize) -> Vec<f32> {
        self.pool.take(len)
    }

    /// Restarts the dropout random stream from `seed`.
    pub fn reseed(&mut self, seed: u64) {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
    }

    /// The dropout random generator, for saving its position in a checkpoint.
    pub fn rng(&self) -> &ChaCha8Rng {
        &self.rng
    }

    /// Replaces the dropout random generator (checkpoint resume).
    pub fn set_rng(&mut self, rng: ChaCha8Rng) {
        self.rng = rng;
    }

    pub(crate) fn rng_mut(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// Switches between training (dropout active, batch statistics) and evaluation.
    pub fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    /// Whether the graph is in training mode.
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// The number of recorded nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node behind `v`.
    pub fn node(&self, v: Var) -> Result<&Node> {
        self.nodes.get(v.0).ok_or(CoreError::UnknownVar {
            var: v.0,
            len: self.nodes.len(),
        })
    }

    /// The value of `v`.
    pub fn value(&self, v: Var) -> Result<&Tensor> {
        Ok(&self.node(v)?.value)
    }

    /// The shape of `v`.
    pub fn shape(&self, v: Var) -> Result<&[usize]> {
        Ok(self.node(v)?.value.shape())
    }

    pub(crate) fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub(crate) fn push(&mut self, value: Tensor, op: Op) -> Var {
        let requires_grad = match &op {
            Op::Input => false,
            Op::Param { .. } => true,
            other => other.inputs().iter().any(|v| self.nodes[v.0].requires_grad),
        };
        self.nodes.push(Node {
            value,
            op,
            requires_grad,
        });
        Var(self.nodes.len() - 1)
    }

    /// Checks that every input exists (a `Var` from an earlier step is refused).
    pub(crate) fn check(&self, vars: &[Var]) -> Result<()> {
        for v in vars {
            self.node(*v)?;
        }
        Ok(())
    }

    /// Records a constant (data, targets): no gradient flows into it.
    pub fn input(&mut self, value: Tensor) -> Var {
        self.push(value, Op::Input)
    }

    /// Records a copy of `value` as a constant (data, targets), in one of the
    /// last step's buffers where one fits.
    pub fn input_copy(&mut self, value: &Tensor) -> Result<Var> {
        let value = self.copied(value.data(), value.shape())?;
        Ok(self.input(value))
    }

    /// A tensor of `shape` holding a copy of `data`, in a pooled buffer.
    /// Large copies are split over the rayon pool.
    fn copied(&mut self, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        let mut buffer = self.buffer(data.len());
        if data.len() >= PARALLEL_ELEMENTS {
            buffer
                .par_chunks_mut(PARALLEL_ELEMENTS / 2)
                .zip(data.par_chunks(PARALLEL_ELEMENTS / 2))
                .for_each(|(d, s)| d.copy_from_slice(s));
        } else {
            buffer.copy_from_slice(data);
        }
        Tensor::from_vec(buffer, shape)
    }

    /// A copy of `v`'s value as a constant: gradients stop here.
    pub fn detach(&mut self, v: Var) -> Result<Var> {
        let value = self.value(v)?.clone();
        Ok(self.input(value))
    }

    /// Records the parameter `id` of `store` (its value is copied onto the tape).
    pub fn param(&mut self, store: &ParamStore, id: ParamId) -> Result<Var> {
        let view = store.view(id)?;
        let value = self.copied(store.values(id)?, &view.shape)?;
        Ok(self.push(
            value,
            Op::Param {
                offset: view.offset,
            },
        ))
    }

    /// Records a free-standing trainable value that belongs to no store (offset 0).
    /// Useful in tests and for small problems; its gradient is read with
    /// [`Gradients::get`].
    pub fn param_value(&mut self, value: Tensor) -> Var {
        self.push(value, Op::Param { offset: 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step of products in every transposition, a bias and a ReLU, on
    /// shapes whose inner dimension differs from both outer ones; the data
    /// address of every value written into a pooled buffer.
    fn step(g: &mut Graph, x: &Tensor, xt: &Tensor, w: &Tensor, b: &Tensor) -> Vec<usize> {
        g.reset();
        let vx = g.input_copy(x).unwrap();
        let vxt = g.input_copy(xt).unwrap();
        let vw = g.input_copy(w).unwrap();
        let vb = g.input_copy(b).unwrap();
        let p = g.matmul_t(vx, vw, false, true).unwrap();
        let q = g.matmul_t(vxt, vw, true, true).unwrap();
        let h = g.add_row(p, vb).unwrap();
        let r = g.relu(h).unwrap();
        let s = g.matmul_t(r, vw, false, false).unwrap();
        let u = g.matmul_t(q, vx, true, false).unwrap();
        [vx, vxt, vw, p, q, h, r, s, u]
            .iter()
            .map(|&v| g.value(v).unwrap().data().as_ptr() as usize)
            .collect()
    }

    #[test]
    fn every_output_of_a_step_reuses_a_buffer_of_the_last_step() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (m, k, n) = (40, 50, 30);
        let x = Tensor::randn(&[m, k], 0.0, 1.0, &mut rng).unwrap();
        let xt = Tensor::randn(&[k, m], 0.0, 1.0, &mut rng).unwrap();
        let w = Tensor::randn(&[n, k], 0.0, 1.0, &mut rng).unwrap();
        let b = Tensor::randn(&[n], 0.0, 1.0, &mut rng).unwrap();
        let mut g = Graph::new(0);
        let mut last = step(&mut g, &x, &xt, &w, &b);
        let values: Vec<Tensor> = g.nodes().iter().map(|n| n.value.clone()).collect();
        for _ in 0..3 {
            let now = step(&mut g, &x, &xt, &w, &b);
            // Every value listed (the bias, below `MIN_POOLED` elements, is
            // not) lies in a buffer the last step used.
            for (i, addr) in now.iter().enumerate() {
                assert!(last.contains(addr), "value {i} in a fresh buffer");
            }
            // And the values themselves are unchanged.
            let again: Vec<Tensor> = g.nodes().iter().map(|n| n.value.clone()).collect();
            assert_eq!(again, values);
            last = now;
        }
    }
}
