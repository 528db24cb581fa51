//! Reverse-mode differentiation: one sweep over the arena, one `match` on the op.
//!
//! Every arm reads as the calculus it implements: given `g = ∂L/∂y` for the
//! node's output `y`, it adds `∂L/∂x` for each input `x` that needs a gradient.

use std::borrow::Cow;
use std::ops::Range;

use rayon::prelude::*;

use super::activation::{gelu_grad, sigmoid};
use super::buffers::SpentGradients;
use super::layers::CONV_CHUNK;
use super::shape::narrow_tensor;
use super::{Graph, Node, Op, Var};
use crate::error::{CoreError, Result};
use crate::kernels;
use crate::tensor::matmul_dims;
use crate::Tensor;

/// Gradients of one backward pass, one slot per node of the graph.
#[derive(Debug)]
pub struct Gradients {
    grads: Vec<Option<Tensor>>,
}

impl Gradients {
    /// The gradient at `v`, if any seed reaches it.
    pub fn get(&self, v: Var) -> Option<&Tensor> {
        self.grads.get(v.0).and_then(Option::as_ref)
    }

    /// Takes the gradient at `v` out of the set.
    pub fn take(&mut self, v: Var) -> Option<Tensor> {
        self.grads.get_mut(v.0).and_then(Option::take)
    }

    /// Adds the gradient of every parameter node whose flat range lies inside
    /// `range` into `out` (laid out like the store's buffer restricted to
    /// `range`). Parameters outside `range` are skipped. A parameter recorded
    /// twice on the tape (weight sharing) receives the sum of both gradients.
    pub fn accumulate_params(
        &self,
        graph: &Graph,
        range: Range<usize>,
        out: &mut [f32],
    ) -> Result<()> {
        if out.len() != range.len() {
            return Err(CoreError::ShapeMismatch {
                op: "accumulate_params",
                lhs: vec![range.len()],
                rhs: vec![out.len()],
            });
        }
        for (node, grad) in graph.nodes().iter().zip(&self.grads) {
            if let (Op::Param { offset }, Some(g)) = (&node.op, grad) {
                let (start, end) = (*offset, offset + g.len());
                if start >= range.start && end <= range.end {
                    let dst = &mut out[start - range.start..end - range.start];
                    dst.iter_mut().zip(g.data()).for_each(|(d, s)| *d += s);
                }
            }
        }
        Ok(())
    }
}

/// Offsets of the parameters recorded on more than one node (weight
/// sharing), once each.
fn repeated_params(nodes: &[Node]) -> Vec<usize> {
    let mut seen = Vec::new();
    let mut repeated = Vec::new();
    for node in nodes {
        if let Op::Param { offset } = node.op {
            if !seen.contains(&offset) {
                seen.push(offset);
            } else if !repeated.contains(&offset) {
                repeated.push(offset);
            }
        }
    }
    repeated
}

/// The parameter buffer of [`Graph::param_gradients`]: the gradients of the
/// parameters stored at `range` go straight into `out` instead of being
/// kept per node.
struct ParamOut<'a> {
    range: Range<usize>,
    /// Offsets of parameters left out (see [`Graph::param_gradients_except`]).
    skip: Range<usize>,
    out: &'a mut [f32],
    /// Offsets of the parameters recorded on more than one node (weight
    /// sharing): their nodes keep their gradients, which are added to `out`
    /// in node order at the end, as [`Gradients::accumulate_params`] does.
    repeated: Vec<usize>,
    /// Offsets of the parameters whose slice of `out` holds a gradient.
    written: Vec<usize>,
}

impl<'a> ParamOut<'a> {
    fn new(range: Range<usize>, skip: Range<usize>, out: &'a mut [f32], nodes: &[Node]) -> Self {
        ParamOut {
            range,
            skip,
            out,
            repeated: repeated_params(nodes),
            written: Vec::new(),
        }
    }

    /// Whether a parameter at `offset` with `len` elements lies in `range`
    /// and is not skipped.
    fn holds(&self, offset: usize, len: usize) -> bool {
        offset >= self.range.start
            && offset.saturating_add(len) <= self.range.end
            && !self.skip.contains(&offset)
    }

    /// The slice of `out` of a parameter at `offset` with `len` elements,
    /// and whether it already holds a gradient, or `None` when the
    /// parameter lies outside `range` or its being recorded more than once
    /// is not `repeated`.
    fn slot(&mut self, offset: usize, len: usize, repeated: bool) -> Option<(&mut [f32], bool)> {
        if !self.holds(offset, len) || self.repeated.contains(&offset) != repeated {
            return None;
        }
        let written = self.written.contains(&offset);
        if !written {
            self.written.push(offset);
        }
        let start = offset - self.range.start;
        Some((&mut self.out[start..start + len], written))
    }

    /// Adds the gradients kept on repeated parameters' nodes, in node
    /// order, then zeros every part of `out` that no gradient reached.
    fn finish(&mut self, nodes: &[Node], grads: &[Option<Tensor>]) {
        for (node, grad) in nodes.iter().zip(grads) {
            if let (Op::Param { offset }, Some(g)) = (&node.op, grad) {
                if let Some((slot, written)) = self.slot(*offset, g.len(), true) {
                    put(slot, written, g.data());
                }
            }
        }
        let mut spans: Vec<Range<usize>> = nodes
            .iter()
            .filter_map(|node| match node.op {
                Op::Param { offset } if self.written.contains(&offset) => {
                    let start = offset - self.range.start;
                    Some(start..start + node.value.len())
                }
                _ => None,
            })
            .collect();
        spans.sort_by_key(|r| r.start);
        let mut at = 0;
        for span in spans {
            if span.start > at {
                self.out[at..span.start].fill(0.0);
            }
            at = at.max(span.end);
        }
        self.out[at..].fill(0.0);
    }
}

/// Copies `g` into a parameter's `slot`, or adds it when the slot already
/// holds a gradient (`written`).
fn put(slot: &mut [f32], written: bool, g: &[f32]) {
    if written {
        slot.iter_mut().zip(g).for_each(|(d, s)| *d += s);
    } else {
        slot.copy_from_slice(g);
    }
}

struct Sink<'a, 'p> {
    nodes: &'a [Node],
    /// Nodes that receive no gradient in this pass.
    cut: &'a [Var],
    grads: &'a mut [Option<Tensor>],
    /// Where parameter gradients go when they are collected in one buffer.
    params: Option<ParamOut<'p>>,
    /// Used-up gradient buffers, for products to write into.
    spent: &'a SpentGradients,
}

impl<'a> Sink<'a, '_> {
    fn wants(&self, v: Var) -> bool {
        let node = &self.nodes[v.0];
        if !node.requires_grad || self.cut.contains(&v) {
            return false;
        }
        match (&self.params, &node.op) {
            // A parameter outside the collected range passes nothing on.
            (Some(p), Op::Param { offset }) => p.holds(*offset, node.value.len()),
            _ => true,
        }
    }

    /// The forward value of `v`, borrowed from the tape (not from the sink,
    /// so it can be read while gradients are added).
    fn value(&self, v: Var) -> &'a Tensor {
        &self.nodes[v.0].value
    }

    /// The parameter slot of `v` in the collected buffer, if `v` is a
    /// parameter collected there.
    fn param_slot(&mut self, v: Var) -> Option<(&mut [f32], bool)> {
        let node = &self.nodes[v.0];
        match (&mut self.params, &node.op) {
            (Some(p), Op::Param { offset }) => p.slot(*offset, node.value.len(), false),
            _ => None,
        }
    }

    /// Adds `g` to the gradient of `v` (if `v` needs one).
    fn add(&mut self, v: Var, g: Tensor) -> Result<()> {
        if !self.wants(v) {
            return Ok(());
        }
        if let Some((slot, written)) = self.param_slot(v) {
            if slot.len() != g.len() {
                return Err(CoreError::ShapeMismatch {
                    op: "parameter gradient",
                    lhs: vec![slot.len()],
                    rhs: g.shape().to_vec(),
                });
            }
            put(slot, written, g.data());
            self.spend(g);
            return Ok(());
        }
        match &mut self.grads[v.0] {
            Some(acc) => {
                acc.add_assign(&g)?;
                self.spend(g);
                Ok(())
            }
            slot @ None => {
                *slot = Some(g);
                Ok(())
            }
        }
    }

    /// Adds `f(g)` for a gradient that has the input's shape, computed only when needed.
    fn add_with(&mut self, v: Var, f: impl FnOnce() -> Result<Tensor>) -> Result<()> {
        if self.wants(v) {
            let g = f()?;
            self.add(v, g)?;
        }
        Ok(())
    }

    /// Adds the product `op(x) · op(y)` to the gradient of `v`. It is
    /// computed straight into the parameter buffer when `v` is a parameter
    /// collected there, and added in place to a gradient `v` already has
    /// when the product is summed in one pass (the same bits as the product
    /// added after, [`kernels::SINGLE_PASS_K`]); otherwise into a used-up
    /// buffer, then added.
    fn add_product(&mut self, v: Var, x: &Tensor, tx: bool, y: &Tensor, ty: bool) -> Result<()> {
        if !self.wants(v) {
            return Ok(());
        }
        let (m, k, n) = matmul_dims(x, y, tx, ty)?;
        let single_pass = (1..=kernels::SINGLE_PASS_K).contains(&k);
        if let Some((slot, written)) = self.param_slot(v) {
            if !written || single_pass {
                return x.matmul_to(y, tx, ty, slot, written);
            }
        } else if let (Some(acc), true) = (&mut self.grads[v.0], single_pass) {
            if acc.shape() == [m, n] {
                return x.matmul_to(y, tx, ty, acc.data_mut(), true);
            }
        }
        let product = x.matmul_into(y, tx, ty, self.spent.take(m * n))?;
        self.add(v, product)
    }

    /// Hands a tensor the pass no longer needs (a gradient used up, or one
    /// copied or added into another) to the used-up buffers.
    fn spend(&self, g: Tensor) {
        self.spent.put(g.into_vec());
    }
}

/// Sums `g` `[.., C]` over all rows into a tensor of `shape` (C elements).
fn sum_rows(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let cols = shape.iter().product::<usize>().max(1);
    let mut out = vec![0.0f32; cols];
    for row in g.data().chunks(cols) {
        out.iter_mut().zip(row).for_each(|(o, v)| *o += v);
    }
    Tensor::from_vec(out, shape)
}

impl Graph {
    /// The nodes at which a backward pass can stop and still give the
    /// gradients of the parameters stored at `range` of the
    /// [`ParamStore`](crate::ParamStore) (those recorded with
    /// [`Graph::param`]): the inputs that flow into the computation reading
    /// those parameters without depending on them themselves, and that carry
    /// a gradient further up (other parameters are not listed). With them as `stop_at` of [`Graph::backward_from`], a pass
    /// from a loss covers only the layers from those parameters to the loss
    /// (the last shared layer and one task's head), not the whole trunk.
    pub fn boundary_of(&self, range: Range<usize>) -> Vec<Var> {
        let nodes = self.nodes();
        let mut downstream = vec![false; nodes.len()];
        let mut boundary = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let inputs = node.op.inputs();
            downstream[i] = match node.op {
                Op::Param { offset } => range.contains(&offset),
                _ => inputs.iter().any(|v| downstream[v.0]),
            };
            if downstream[i] {
                for v in inputs {
                    let source = &nodes[v.0];
                    // Other parameters have nothing upstream to cut off.
                    let cuts = source.requires_grad && !matches!(source.op, Op::Param { .. });
                    if !downstream[v.0] && cuts && !boundary.contains(&v) {
                        boundary.push(v);
                    }
                }
            }
        }
        boundary.sort();
        boundary
    }

    /// Back-propagates from scalar seeds `(loss, weight)`: the gradient of
    /// `Σ weight · loss` with respect to every node that needs one.
    pub fn backward(&self, seeds: &[(Var, f32)]) -> Result<Gradients> {
        let seeds: Vec<(Var, Tensor)> = seeds
            .iter()
            .map(|&(v, w)| Ok((v, Tensor::filled(self.shape(v)?, w))))
            .collect::<Result<_>>()?;
        self.backward_from(&seeds, &[])
    }

    /// Back-propagates from seeds `(node, ∂L/∂node)` of any shape.
    ///
    /// Nodes in `stop_at` receive their gradient but pass nothing further down:
    /// backward from each task loss to the shared representation `z` costs only
    /// the heads, and a later call seeded at `z` pushes a combined direction
    /// through the trunk. The graph is only read, so several passes (one per
    /// task) can run in parallel.
    pub fn backward_from(&self, seeds: &[(Var, Tensor)], stop_at: &[Var]) -> Result<Gradients> {
        self.sweep(seeds, stop_at, &[], None)
    }

    /// Back-propagates from seeds `(node, ∂L/∂node)` like
    /// [`Graph::backward_before`] (nodes in `cut` receive no gradient, so
    /// nothing upstream of them is computed) and writes the gradients of the parameters
    /// stored at `range` of the [`ParamStore`](crate::ParamStore) into `out`
    /// (laid out like the store's buffer restricted to `range`; zero for a
    /// parameter no seed reaches). The bits are those of zero-filling `out`
    /// and adding [`Gradients::accumulate_params`] of
    /// [`Graph::backward_before`], but no gradient is kept per node, each
    /// weight gradient is computed in place, and parameters outside `range`
    /// are skipped.
    ///
    /// ```
    /// use mtl_core::{Graph, ParamStore, ParamGroup, Tensor};
    /// let mut ps = ParamStore::new();
    /// let id = ps.add_values("w", &[2], ParamGroup::Shared, vec![3.0, -1.0]).unwrap();
    /// let mut g = Graph::new(0);
    /// let w = g.param(&ps, id).unwrap();
    /// let y = g.mul(w, w).unwrap();                 // w²
    /// let loss = g.sum(y).unwrap();
    /// let mut out = vec![f32::NAN; 2];
    /// g.param_gradients(&[(loss, Tensor::scalar(1.0))], &[], 0..2, &mut out).unwrap();
    /// assert_eq!(out, vec![6.0, -2.0]);             // 2w
    /// ```
    pub fn param_gradients(
        &self,
        seeds: &[(Var, Tensor)],
        cut: &[Var],
        range: Range<usize>,
        out: &mut [f32],
    ) -> Result<()> {
        self.param_gradients_except(seeds, cut, range, 0..0, out)
    }

    /// [`Graph::param_gradients`] with the parameters whose offset lies in
    /// `skip` left out: nothing is computed for them (no weight gradient)
    /// and their part of `out` is zero, for a caller that has their
    /// gradient already (summed from per-task gradients, say). Gradients
    /// still flow through the nodes reading them to everything else.
    ///
    /// ```
    /// use mtl_core::{Graph, ParamStore, ParamGroup, Tensor};
    /// let mut ps = ParamStore::new();
    /// let a = ps.add_values("a", &[1], ParamGroup::Shared, vec![3.0]).unwrap();
    /// let b = ps.add_values("b", &[1], ParamGroup::Shared, vec![5.0]).unwrap();
    /// let mut g = Graph::new(0);
    /// let (va, vb) = (g.param(&ps, a).unwrap(), g.param(&ps, b).unwrap());
    /// let y = g.mul(va, vb).unwrap();               // a·b
    /// let loss = g.sum(y).unwrap();
    /// let mut out = vec![f32::NAN; 2];
    /// let seed = [(loss, Tensor::scalar(1.0))];
    /// g.param_gradients_except(&seed, &[], 0..2, 1..2, &mut out).unwrap();
    /// assert_eq!(out, vec![5.0, 0.0]);              // ∂/∂a = b; b left out
    /// ```
    ///
    /// # Errors
    /// As [`Graph::param_gradients`].
    pub fn param_gradients_except(
        &self,
        seeds: &[(Var, Tensor)],
        cut: &[Var],
        range: Range<usize>,
        skip: Range<usize>,
        out: &mut [f32],
    ) -> Result<()> {
        if out.len() != range.len() {
            return Err(CoreError::ShapeMismatch {
                op: "param_gradients",
                lhs: vec![range.len()],
                rhs: vec![out.len()],
            });
        }
        let params = ParamOut::new(range, skip, out, self.nodes());
        self.sweep(seeds, &[], cut, Some(params))?;
        Ok(())
    }

    /// Whether every parameter stored at `range` is recorded on at most one
    /// node (no weight sharing): each one's gradient is then the gradient
    /// of that node alone.
    pub fn recorded_once(&self, range: Range<usize>) -> bool {
        !repeated_params(self.nodes())
            .iter()
            .any(|offset| range.contains(offset))
    }

    /// Back-propagates from seeds like [`Graph::backward_from`], but nodes in
    /// `cut` receive no gradient at all, so nothing is computed for them or
    /// upstream of them: with the nodes of [`Graph::boundary_of`] as `cut`, a
    /// pass gives the gradients of the parameters at that range without the
    /// input gradient of the layer reading them.
    ///
    /// ```
    /// use mtl_core::{Graph, Tensor};
    /// let mut g = Graph::new(0);
    /// let x = g.param_value(Tensor::from_vec(vec![2.0], &[1]).unwrap());
    /// let h = g.mul(x, x).unwrap();            // h = x², upstream of w
    /// let w = g.param_value(Tensor::from_vec(vec![3.0], &[1]).unwrap());
    /// let y = g.mul(h, w).unwrap();
    /// let loss = g.sum(y).unwrap();
    /// let grads = g.backward_before(&[(loss, Tensor::scalar(1.0))], &[h]).unwrap();
    /// assert_eq!(grads.get(w).unwrap().data(), &[4.0]); // ∂loss/∂w = h
    /// assert!(grads.get(h).is_none() && grads.get(x).is_none());
    /// ```
    pub fn backward_before(&self, seeds: &[(Var, Tensor)], cut: &[Var]) -> Result<Gradients> {
        self.sweep(seeds, &[], cut, None)
    }

    /// The reverse sweep of [`Graph::backward_from`],
    /// [`Graph::backward_before`] and [`Graph::param_gradients`] (`params`).
    fn sweep(
        &self,
        seeds: &[(Var, Tensor)],
        stop_at: &[Var],
        cut: &[Var],
        params: Option<ParamOut<'_>>,
    ) -> Result<Gradients> {
        let nodes = self.nodes();
        let mut grads: Vec<Option<Tensor>> = vec![None; nodes.len()];
        // Only the parameters' gradients are wanted when they are collected
        // in one buffer: each node's gradient is dropped once it is used.
        let keep = params.is_none();
        let mut sink = Sink {
            nodes,
            cut,
            grads: &mut grads,
            params,
            spent: &self.spent,
        };
        let mut start = 0;
        for (v, g) in seeds {
            let node = self.node(*v)?;
            if node.value.shape() != g.shape() {
                return Err(CoreError::ShapeMismatch {
                    op: "backward seed",
                    lhs: node.value.shape().to_vec(),
                    rhs: g.shape().to_vec(),
                });
            }
            if !keep && matches!(node.op, Op::Param { .. }) {
                // A seed on a collected parameter itself.
                sink.add(*v, g.clone())?;
                continue;
            }
            match &mut sink.grads[v.0] {
                Some(acc) => acc.add_assign(g)?,
                slot @ None => *slot = Some(g.clone()),
            }
            start = start.max(v.0 + 1);
        }
        for i in (0..start).rev() {
            let node = &nodes[i];
            if !node.requires_grad || stop_at.contains(&Var(i)) {
                continue;
            }
            if matches!(node.op, Op::Param { .. }) {
                // Nothing flows further up; a gradient kept here is read below.
                continue;
            }
            let Some(g) = sink.grads[i].take() else {
                continue;
            };
            if keep {
                backward_node(&mut sink, node, Cow::Borrowed(&g))?;
                sink.grads[i] = Some(g);
            } else if let Some(spent) = backward_node(&mut sink, node, Cow::Owned(g))? {
                sink.spend(spent);
            }
        }
        let params = sink.params.take();
        if let Some(mut p) = params {
            p.finish(nodes, &grads);
        }
        Ok(Gradients { grads })
    }
}

/// Adds the input gradients of one node given `g = ∂L/∂y`. Ops that pass
/// `g` on to an input (bias addition, ReLU) take it when the pass owns it,
/// instead of copying it; the others read it. Returns `g` when the pass
/// owned it and no op took it, for its buffer to be used again.
fn backward_node(s: &mut Sink<'_, '_>, node: &Node, g: Cow<'_, Tensor>) -> Result<Option<Tensor>> {
    match &node.op {
        Op::Add(a, b) => {
            s.add(*a, g.as_ref().clone())?;
            s.add(*b, g.into_owned())?;
        }
        Op::AddScalar(a, _) => s.add(*a, g.into_owned())?,
        Op::AddRow(x, row) => {
            // The row's gradient is summed before `g` is passed on to `x`;
            // `x` still receives its gradient first.
            let shape = s.value(*row).shape().to_vec();
            let dr = match s.wants(*row) {
                true => Some(sum_rows(&g, &shape)?),
                false => None,
            };
            s.add(*x, g.into_owned())?;
            if let Some(dr) = dr {
                s.add(*row, dr)?;
            }
        }
        Op::Relu(a) => {
            let mut d = g.into_owned();
            d.zip_assign(
                s.value(*a),
                "relu backward",
                |g, x| if x > 0.0 { g } else { 0.0 },
            )?;
            s.add(*a, d)?;
        }
        _ => {
            backward_reading(s, node, &g)?;
            return Ok(match g {
                Cow::Owned(g) => Some(g),
                Cow::Borrowed(_) => None,
            });
        }
    }
    Ok(None)
}

/// [`backward_node`] for the ops that only read `g`.
fn backward_reading(s: &mut Sink<'_, '_>, node: &Node, g: &Tensor) -> Result<()> {
    let y = &node.value;
    match &node.op {
        Op::Input
        | Op::Param { .. }
        | Op::Add(..)
        | Op::AddScalar(..)
        | Op::AddRow(..)
        | Op::Relu(..) => {}
        Op::Sub(a, b) => {
            s.add(*a, g.clone())?;
            s.add_with(*b, || Ok(g.scale(-1.0)))?;
        }
        Op::Mul(a, b) => {
            let (av, bv) = (s.value(*a), s.value(*b));
            s.add_with(*a, || g.mul(bv))?;
            s.add_with(*b, || g.mul(av))?;
        }
        Op::Div(a, b) => {
            // ∂(a/b)/∂a = 1/b, ∂(a/b)/∂b = −a/b².
            let (av, bv) = (s.value(*a), s.value(*b));
            s.add_with(*a, || g.div(bv))?;
            s.add_with(*b, || {
                g.mul(av)?.zip_map(bv, "div backward", |n, d| -n / (d * d))
            })?;
        }
        Op::Neg(a) => s.add(*a, g.scale(-1.0))?,
        Op::MulScalar(a, k) => s.add(*a, g.scale(*k))?,
        Op::Powf(a, p) => {
            let p = *p;
            let d = g.zip_map(s.value(*a), "powf backward", |g, x| g * p * x.powf(p - 1.0))?;
            s.add(*a, d)?;
        }
        Op::MatMul {
            a,
            b,
            trans_a,
            trans_b,
        } => {
            // C = op(A)·op(B): ∂op(A) = G·op(B)ᵀ, ∂op(B) = op(A)ᵀ·G, transposed back
            // to the stored layout where the operand was read transposed.
            let (av, bv) = (s.value(*a), s.value(*b));
            match trans_a {
                false => s.add_product(*a, g, false, bv, !trans_b)?,
                true => s.add_product(*a, bv, *trans_b, g, true)?,
            }
            match trans_b {
                false => s.add_product(*b, av, !trans_a, g, false)?,
                true => s.add_product(*b, g, true, av, *trans_a)?,
            }
        }
        Op::MulRow(x, row) => {
            let (xv, rv) = (s.value(*x), s.value(*row));
            let cols = rv.len().max(1);
            s.add_with(*x, || {
                let mut d = g.clone();
                for chunk in d.data_mut().chunks_mut(cols) {
                    chunk.iter_mut().zip(rv.data()).for_each(|(v, r)| *v *= r);
                }
                Ok(d)
            })?;
            s.add_with(*row, || sum_rows(&g.mul(xv)?, rv.shape()))?;
        }
        Op::MulCol(x, col) => {
            let (xv, cv) = (s.value(*x), s.value(*col));
            let width = xv.len() / cv.len().max(1);
            s.add_with(*x, || {
                let mut d = g.clone();
                for (chunk, c) in d.data_mut().chunks_mut(width.max(1)).zip(cv.data()) {
                    chunk.iter_mut().for_each(|v| *v *= c);
                }
                Ok(d)
            })?;
            s.add_with(*col, || {
                let dc: Vec<f32> = g
                    .data()
                    .chunks(width.max(1))
                    .zip(xv.data().chunks(width.max(1)))
                    .map(|(gr, xr)| gr.iter().zip(xr).map(|(a, b)| a * b).sum())
                    .collect();
                Tensor::from_vec(dc, cv.shape())
            })?;
        }
        Op::Sum(a) => {
            let shape = s.value(*a).shape().to_vec();
            s.add(*a, Tensor::filled(&shape, g.data()[0]))?;
        }
        Op::Mean(a) => {
            let v = s.value(*a);
            let shape = v.shape().to_vec();
            let n = v.len().max(1) as f32;
            s.add(*a, Tensor::filled(&shape, g.data()[0] / n))?;
        }
        Op::SumAxis(a, axis) | Op::MeanAxis(a, axis) => {
            let v = s.value(*a);
            let (outer, n, inner) = v.axis_split("sum_axis backward", *axis)?;
            let scale = if matches!(node.op, Op::MeanAxis(..)) {
                1.0 / n.max(1) as f32
            } else {
                1.0
            };
            let mut d = vec![0.0f32; outer * n * inner];
            for o in 0..outer {
                let src = &g.data()[o * inner..(o + 1) * inner];
                for k in 0..n {
                    let dst = &mut d[(o * n + k) * inner..(o * n + k + 1) * inner];
                    dst.iter_mut().zip(src).for_each(|(d, &g)| *d = g * scale);
                }
            }
            let shape = v.shape().to_vec();
            s.add(*a, Tensor::from_vec(d, &shape)?)?;
        }
        Op::LeakyRelu(a, slope) => {
            let k = *slope;
            let d = g.zip_map(s.value(*a), "leaky_relu backward", |g, x| {
                if x > 0.0 {
                    g
                } else {
                    k * g
                }
            })?;
            s.add(*a, d)?;
        }
        Op::Gelu(a) => {
            let d = g.zip_map(s.value(*a), "gelu backward", |g, x| g * gelu_grad(x))?;
            s.add(*a, d)?;
        }
        Op::Tanh(a) => s.add(*a, g.zip_map(y, "tanh backward", |g, t| g * (1.0 - t * t))?)?,
        Op::Sigmoid(a) => s.add(
            *a,
            g.zip_map(y, "sigmoid backward", |g, p| g * p * (1.0 - p))?,
        )?,
        Op::Exp(a) => s.add(*a, g.mul(y)?)?,
        Op::Log(a) => {
            let d = g.div(s.value(*a))?;
            s.add(*a, d)?;
        }
        Op::Softmax(a) => {
            // ∂x_j = y_j (g_j − Σ_k g_k y_k), per row.
            let cols = *y.shape().last().unwrap_or(&1);
            let mut d = g.clone();
            for (dr, yr) in d.data_mut().chunks_mut(cols).zip(y.data().chunks(cols)) {
                let dot: f32 = dr.iter().zip(yr).map(|(g, y)| g * y).sum();
                dr.iter_mut().zip(yr).for_each(|(g, y)| *g = y * (*g - dot));
            }
            s.add(*a, d)?;
        }
        Op::LogSoftmax(a) => {
            // ∂x_j = g_j − softmax_j · Σ_k g_k, per row.
            let cols = *y.shape().last().unwrap_or(&1);
            let mut d = g.clone();
            for (dr, yr) in d.data_mut().chunks_mut(cols).zip(y.data().chunks(cols)) {
                let total: f32 = dr.iter().sum();
                dr.iter_mut()
                    .zip(yr)
                    .for_each(|(g, ly)| *g -= ly.exp() * total);
            }
            s.add(*a, d)?;
        }
        Op::Reshape(a) => {
            let shape = s.value(*a).shape().to_vec();
            s.add(*a, g.reshape(&shape)?)?;
        }
        Op::Concat { inputs, axis } => {
            let mut start = 0;
            for v in inputs {
                let len = s.value(*v).shape()[*axis];
                s.add_with(*v, || narrow_tensor(g, *axis, start, len))?;
                start += len;
            }
        }
        Op::Narrow { a, axis, start } => {
            let av = s.value(*a);
            let (outer, n, inner) = av.axis_split("narrow backward", *axis)?;
            let len = y.shape()[*axis];
            let mut d = Tensor::zeros(av.shape());
            for o in 0..outer {
                let dst = (o * n + start) * inner;
                d.data_mut()[dst..dst + len * inner]
                    .copy_from_slice(&g.data()[o * len * inner..(o + 1) * len * inner]);
            }
            s.add(*a, d)?;
        }
        Op::GatherRows { a, indices } => {
            let av = s.value(*a);
            let width = av.len() / av.shape()[0].max(1);
            let mut d = Tensor::zeros(av.shape());
            for (k, &i) in indices.iter().enumerate() {
                let dst = &mut d.data_mut()[i * width..(i + 1) * width];
                dst.iter_mut()
                    .zip(&g.data()[k * width..(k + 1) * width])
                    .for_each(|(d, g)| *d += g);
            }
            s.add(*a, d)?;
        }
        Op::Conv2d {
            x,
            w,
            bias,
            geometry,
        } => conv2d_backward(s, g, *x, *w, *bias, geometry)?,
        Op::MaxPool2d {
            x,
            argmax,
            geometry,
        } => {
            // Each image's maxima lie in its own plane, so the images are
            // zeroed and scattered in parallel (into a used-up buffer where
            // one fits); within one, the order is that of the outputs.
            let shape = s.value(*x).shape().to_vec();
            let in_len = (geometry.channels * geometry.height * geometry.width).max(1);
            let out_len = (geometry.channels * geometry.out_h() * geometry.out_w()).max(1);
            let mut d = s.spent.take(shape.iter().product());
            d.par_chunks_mut(in_len)
                .zip(g.data().par_chunks(out_len))
                .zip(argmax.par_chunks(out_len))
                .enumerate()
                .for_each(|(i, ((di, gi), ai))| {
                    di.fill(0.0);
                    kernels::max_pool2d_backward(gi, ai, i * in_len, di);
                });
            s.add(*x, Tensor::from_vec(d, &shape)?)?;
        }
        Op::Dropout { a, mask } => {
            let mut d = g.clone();
            d.data_mut().iter_mut().zip(mask).for_each(|(g, m)| *g *= m);
            s.add(*a, d)?;
        }
        Op::LayerNorm {
            x,
            gamma,
            beta,
            xhat,
            rstd,
        } => {
            // With ĝ = g ⊙ γ, per row of length D:
            // ∂x = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂)).
            let gv = s.value(*gamma);
            let d = gv.len();
            s.add_with(*x, || {
                let mut dx = g.clone();
                for ((row, xr), &r) in dx
                    .data_mut()
                    .chunks_mut(d)
                    .zip(xhat.data().chunks(d))
                    .zip(rstd)
                {
                    row.iter_mut().zip(gv.data()).for_each(|(v, gm)| *v *= gm);
                    let m1 = row.iter().sum::<f32>() / d as f32;
                    let m2 = row.iter().zip(xr).map(|(a, b)| a * b).sum::<f32>() / d as f32;
                    row.iter_mut()
                        .zip(xr)
                        .for_each(|(v, xh)| *v = r * (*v - m1 - xh * m2));
                }
                Ok(dx)
            })?;
            s.add_with(*gamma, || sum_rows(&g.mul(xhat)?, gv.shape()))?;
            s.add_with(*beta, || sum_rows(g, gv.shape()))?;
        }
        Op::BatchNorm {
            x,
            gamma,
            beta,
            xhat,
            rstd,
            batch_statistics,
        } => {
            let xv = s.value(*x);
            let shape = xv.shape().to_vec();
            let (n, c) = (shape[0], shape[1]);
            let sp = xv.len() / (n * c).max(1);
            let m = (n * sp) as f32;
            let gv = s.value(*gamma);
            // Per-channel sums of g and g ⊙ x̂.
            let mut sum_g = vec![0.0f32; c];
            let mut sum_gx = vec![0.0f32; c];
            for (k, (gr, xr)) in g.data().chunks(sp).zip(xhat.data().chunks(sp)).enumerate() {
                let ch = k % c;
                sum_g[ch] += gr.iter().sum::<f32>();
                sum_gx[ch] += gr.iter().zip(xr).map(|(a, b)| a * b).sum::<f32>();
            }
            s.add_with(*x, || {
                // Training: ∂x = γ·rstd/m · (m·g − Σg − x̂·Σ(g x̂)); evaluation: ∂x = γ·rstd·g.
                let mut dx = g.clone();
                for (k, (row, xr)) in dx
                    .data_mut()
                    .chunks_mut(sp)
                    .zip(xhat.data().chunks(sp))
                    .enumerate()
                {
                    let ch = k % c;
                    let scale = gv.data()[ch] * rstd[ch];
                    if *batch_statistics {
                        row.iter_mut().zip(xr).for_each(|(v, xh)| {
                            *v = scale / m * (m * *v - sum_g[ch] - xh * sum_gx[ch])
                        });
                    } else {
                        row.iter_mut().for_each(|v| *v *= scale);
                    }
                }
                Ok(dx)
            })?;
            s.add(*gamma, Tensor::from_vec(sum_gx, gv.shape())?)?;
            s.add(*beta, Tensor::from_vec(sum_g, gv.shape())?)?;
        }
        Op::CrossEntropy {
            logits,
            targets,
            class_weights,
            smoothing,
            probs,
        } => {
            // ∂ℓ_i/∂z_j = (1−ε)·w_y·(p_j − [j=y]) + (ε/K)·(W·p_j − w_j), W = Σ_k w_k,
            // all divided by Σ_i w_{y_i}.
            let k = probs.shape()[1];
            let w = |c: usize| class_weights.as_ref().map_or(1.0, |w| w[c]);
            let total_w: f32 = (0..k).map(w).sum();
            let denom: f32 = targets.iter().map(|&t| w(t)).sum();
            let scale = g.data()[0] / denom;
            let eps = *smoothing;
            let mut d = probs.clone();
            for (row, &t) in d.data_mut().chunks_mut(k).zip(targets) {
                let wy = w(t);
                for (j, v) in row.iter_mut().enumerate() {
                    let p = *v;
                    let hard = wy * (p - if j == t { 1.0 } else { 0.0 });
                    let soft = (total_w * p - w(j)) / k as f32;
                    *v = scale * ((1.0 - eps) * hard + eps * soft);
                }
            }
            s.add(*logits, d)?;
        }
        Op::BceWithLogits { logits, targets } => {
            let n = targets.len() as f32;
            let k = g.data()[0] / n;
            let d = s
                .value(*logits)
                .zip_map(targets, "bce backward", |z, t| k * (sigmoid(z) - t))?;
            s.add(*logits, d)?;
        }
        Op::Mse { pred, targets } => {
            let k = 2.0 * g.data()[0] / targets.len() as f32;
            let d = s
                .value(*pred)
                .zip_map(targets, "mse backward", |p, t| k * (p - t))?;
            s.add(*pred, d)?;
        }
        Op::L1 { pred, targets } => {
            let k = g.data()[0] / targets.len() as f32;
            let d = s.value(*pred).zip_map(targets, "l1 backward", |p, t| {
                k * if p > t {
                    1.0
                } else if p < t {
                    -1.0
                } else {
                    0.0
                }
            })?;
            s.add(*pred, d)?;
        }
        Op::Huber {
            pred,
            targets,
            delta,
        } => {
            let k = g.data()[0] / targets.len() as f32;
            let dl = *delta;
            let d = s
                .value(*pred)
                .zip_map(targets, "huber backward", |p, t| k * (p - t).clamp(-dl, dl))?;
            s.add(*pred, d)?;
        }
        Op::StudentT { z, mu, alpha } => student_t_backward(s, g, y, *z, *mu, *alpha)?,
    }
    Ok(())
}

/// Sum of `xs` in 16 interleaved lanes combined by a fixed halving tree,
/// then the tail: a loop that vectorises, in an order fixed by the length.
fn lane_sum(xs: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [0.0f32; LANES];
    let mut blocks = xs.chunks_exact(LANES);
    for block in &mut blocks {
        lanes.iter_mut().zip(block).for_each(|(l, v)| *l += v);
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
    }
    lanes[0] + blocks.remainder().iter().sum::<f32>()
}

fn conv2d_backward(
    s: &mut Sink<'_, '_>,
    g: &Tensor,
    x: Var,
    w: Var,
    bias: Option<Var>,
    geometry: &kernels::ConvGeometry,
) -> Result<()> {
    let xv = s.value(x);
    let wv = s.value(w);
    let o = wv.shape()[0];
    let (oh, ow) = (geometry.out_h(), geometry.out_w());
    let plen = geometry.patch_len();
    let in_len = geometry.channels * geometry.height * geometry.width;
    let out_len = o * oh * ow;
    let need_x = s.wants(x);
    let need_w = s.wants(w);
    if let Some(b) = bias {
        let bshape = s.value(b).shape().to_vec();
        s.add_with(b, || {
            // Each fixed-size chunk of images sums its planes in parallel;
            // the chunk sums are added in order (the same bits for every
            // thread count).
            let partial: Vec<Vec<f32>> = g
                .data()
                .par_chunks(out_len * CONV_CHUNK)
                .map(|chunk| {
                    let mut db = vec![0.0f32; o];
                    for (k, plane) in chunk.chunks(oh * ow).enumerate() {
                        db[k % o] += lane_sum(plane);
                    }
                    db
                })
                .collect();
            let mut db = vec![0.0f32; o];
            for part in partial {
                db.iter_mut().zip(part).for_each(|(d, p)| *d += p);
            }
            Tensor::from_vec(db, &bshape)
        })?;
    }
    if !need_x && !need_w {
        return Ok(());
    }
    // The input gradient is written in full (a used-up buffer serves): by the
    // direct kernel, or zeroed per chunk and added into by col2im.
    let mut dx = if need_x {
        s.spent.take(xv.len())
    } else {
        Vec::new()
    };
    // Each fixed-size chunk of images accumulates its own weight gradient; the
    // chunk sums are then added in order, so the result does not depend on the
    // number of threads.
    let dx_chunks: Vec<&mut [f32]> = dx.chunks_mut(in_len * CONV_CHUNK).collect();
    let inputs: Vec<(&[f32], &[f32])> = xv
        .data()
        .chunks(in_len * CONV_CHUNK)
        .zip(g.data().chunks(out_len * CONV_CHUNK))
        .collect();
    let direct = kernels::conv2d_direct_applies(geometry);
    let work = |(xc, gc): (&[f32], &[f32]), dxc: Option<&mut [f32]>| -> Vec<f32> {
        if direct {
            // Whole chunks at once: a weight gradient per chunk, summed over
            // its images and positions in the kernel's fixed order.
            let count = xc.len() / in_len.max(1);
            let mut dw = vec![0.0f32; if need_w { o * plen } else { 0 }];
            if need_w {
                kernels::conv2d_direct_weight_grad(xc, gc, geometry, o, count, &mut dw);
            }
            if let Some(dxc) = dxc {
                kernels::conv2d_direct_input_grad(gc, wv.data(), geometry, o, count, dxc);
            }
            return dw;
        }
        let mut cols = vec![0.0f32; plen * oh * ow];
        let mut dcols = vec![0.0f32; plen * oh * ow];
        let mut dw = vec![0.0f32; if need_w { o * plen } else { 0 }];
        let mut dxc = dxc;
        if let Some(dxc) = dxc.as_deref_mut() {
            dxc.fill(0.0);
        }
        for (i, (img, gy)) in xc.chunks(in_len).zip(gc.chunks(out_len)).enumerate() {
            if need_w {
                kernels::im2col(img, geometry, &mut cols);
                // ∂W += G_n [O, OHOW] · cols_nᵀ [OHOW, CKK]
                kernels::gemm(o, oh * ow, plen, gy, false, &cols, true, &mut dw, true);
            }
            if let Some(dxc) = dxc.as_deref_mut() {
                // ∂cols = Wᵀ [CKK, O] · G_n [O, OHOW], scattered back by col2im.
                kernels::gemm(
                    plen,
                    o,
                    oh * ow,
                    wv.data(),
                    true,
                    gy,
                    false,
                    &mut dcols,
                    false,
                );
                kernels::col2im(&dcols, geometry, &mut dxc[i * in_len..(i + 1) * in_len]);
            }
        }
        dw
    };
    let partial: Vec<Vec<f32>> = if need_x {
        inputs
            .into_par_iter()
            .zip(dx_chunks.into_par_iter())
            .map(|(inp, dxc)| work(inp, Some(dxc)))
            .collect()
    } else {
        inputs.into_par_iter().map(|inp| work(inp, None)).collect()
    };
    if need_w {
        let mut dw = vec![0.0f32; o * plen];
        for p in &partial {
            dw.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        s.add(w, Tensor::from_vec(dw, wv.shape())?)?;
    }
    if need_x {
        s.add(x, Tensor::from_vec(dx, xv.shape())?)?;
    }
    Ok(())
}

/// Backward of the Student-t assignment. With unnormalised `u_ij`, row sums
/// `S_i`, `q = u / S` and `e_ij = ∂L/∂d_ij` for `d_ij = ‖z_i − μ_j‖²`:
/// `∂L/∂u_ij = (g_ij − Σ_k g_ik q_ik) / S_i`,
/// `∂u_ij/∂d_ij = −(α+1)/(2α) · u_ij / (1 + d_ij/α)`,
/// `∂z_i = Σ_j 2 e_ij (z_i − μ_j)`, `∂μ_j = −Σ_i 2 e_ij (z_i − μ_j)`.
fn student_t_backward(
    s: &mut Sink<'_, '_>,
    g: &Tensor,
    q: &Tensor,
    z: Var,
    mu: Var,
    alpha: f32,
) -> Result<()> {
    let (zv, mv) = (s.value(z), s.value(mu));
    let (b, d) = (zv.shape()[0], zv.shape()[1]);
    let k = mv.shape()[0];
    let exponent = -(alpha + 1.0) / 2.0;
    let mut dz = vec![0.0f32; b * d];
    let mut dmu = vec![0.0f32; k * d];
    for i in 0..b {
        let zi = &zv.data()[i * d..(i + 1) * d];
        let (gi, qi) = (&g.data()[i * k..(i + 1) * k], &q.data()[i * k..(i + 1) * k]);
        let dot: f32 = gi.iter().zip(qi).map(|(a, b)| a * b).sum();
        let mut dist = vec![0.0f32; k];
        let mut u = vec![0.0f32; k];
        for j in 0..k {
            let mj = &mv.data()[j * d..(j + 1) * d];
            dist[j] = zi.iter().zip(mj).map(|(a, c)| (a - c) * (a - c)).sum();
            u[j] = (1.0 + dist[j] / alpha).powf(exponent);
        }
        let total: f32 = u.iter().sum();
        for j in 0..k {
            let du = (gi[j] - dot) / total;
            let e = du * -(alpha + 1.0) / (2.0 * alpha) * u[j] / (1.0 + dist[j] / alpha);
            let mj = &mv.data()[j * d..(j + 1) * d];
            for c in 0..d {
                let diff = 2.0 * e * (zi[c] - mj[c]);
                dz[i * d + c] += diff;
                dmu[j * d + c] -= diff;
            }
        }
    }
    s.add(z, Tensor::from_vec(dz, zv.shape())?)?;
    s.add(mu, Tensor::from_vec(dmu, mv.shape())?)?;
    Ok(())
}
