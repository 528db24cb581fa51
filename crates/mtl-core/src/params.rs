//! [`ParamStore`]: every trainable value of a model in one flat buffer.
//!
//! Each parameter is a named view (name, offset, shape) into one contiguous
//! `Vec<f32>`, and belongs to a [`ParamGroup`]: `shared`, `task:<name>` or
//! `balancer`. Each group occupies one contiguous range, shared first, then the
//! tasks in the order they first appear, then the balancer. Gradients use the
//! same layout, so the per-task Jacobian of the shared parameters is T rows of
//! one range (a `T x P` slice the balancers read in place), an optimizer step is one pass over two
//! slices, and a checkpoint is the buffer plus the names.
//!
//! Non-trainable state (batch normalisation's running statistics) lives in a
//! second buffer of named views, saved with the parameters but never updated
//! by an optimizer.

use std::fmt;
use std::ops::Range;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::nn::Init;

/// A handle to one parameter of a [`ParamStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ParamId(pub(crate) usize);

/// A handle to one non-trainable buffer of a [`ParamStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BufferId(pub(crate) usize);

/// Who a parameter belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ParamGroup {
    /// Shared by all tasks (the trunk).
    Shared,
    /// Specific to the named task (its head, its tower, its gate).
    Task(String),
    /// Owned by a loss balancer.
    Balancer,
}

impl ParamGroup {
    /// The group of task `name`.
    pub fn task(name: impl Into<String>) -> Self {
        ParamGroup::Task(name.into())
    }

    fn rank(&self) -> u8 {
        match self {
            ParamGroup::Shared => 0,
            ParamGroup::Task(_) => 1,
            ParamGroup::Balancer => 2,
        }
    }
}

impl fmt::Display for ParamGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamGroup::Shared => write!(f, "shared"),
            ParamGroup::Task(t) => write!(f, "task:{t}"),
            ParamGroup::Balancer => write!(f, "balancer"),
        }
    }
}

/// A named slice of the flat buffer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamView {
    /// Dotted name, e.g. `encoder.0.weight`.
    pub name: String,
    /// Offset in the flat buffer.
    pub offset: usize,
    /// Shape of the parameter.
    pub shape: Vec<usize>,
    /// Owning group.
    pub group: ParamGroup,
}

impl ParamView {
    /// The number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The flat range this view covers.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// A named non-trainable buffer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BufferView {
    /// Dotted name, e.g. `encoder.1.running_mean`.
    pub name: String,
    /// Offset in the buffer storage.
    pub offset: usize,
    /// Number of values.
    pub len: usize,
}

/// Every trainable value of a model in one flat buffer, with named views.
///
/// ```
/// use mtl_core::{ParamGroup, ParamStore, nn::Init};
/// use rand::SeedableRng;
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let mut ps = ParamStore::new();
/// let head = ps.add("head.a.weight", &[4, 2], ParamGroup::task("a"), Init::Zeros, &mut rng).unwrap();
/// let trunk = ps.add("trunk.weight", &[3, 4], ParamGroup::Shared, Init::Constant(1.0), &mut rng).unwrap();
/// // Shared parameters come first whatever the order they were added in.
/// assert_eq!(ps.group_range(&ParamGroup::Shared), Some(0..12));
/// assert_eq!(ps.view(head).unwrap().offset, 12);
/// assert_eq!(ps.values(trunk).unwrap(), &[1.0; 12]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ParamStore {
    values: Vec<f32>,
    views: Vec<ParamView>,
    buffers: Vec<f32>,
    buffer_views: Vec<BufferView>,
}

impl ParamStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a parameter initialised by `init` (drawing from `rng` where random).
    pub fn add<R: Rng + ?Sized>(
        &mut self,
        name: &str,
        shape: &[usize],
        group: ParamGroup,
        init: Init,
        rng: &mut R,
    ) -> Result<ParamId> {
        let values = init.sample(shape, rng)?;
        self.add_values(name, shape, group, values)
    }

    /// Adds a parameter with the given values.
    pub fn add_values(
        &mut self,
        name: &str,
        shape: &[usize],
        group: ParamGroup,
        values: Vec<f32>,
    ) -> Result<ParamId> {
        if self.find(name).is_some() {
            return Err(CoreError::Parameter {
                name: name.into(),
                reason: "name already used".into(),
            });
        }
        let len: usize = shape.iter().product();
        if values.len() != len {
            return Err(CoreError::ElementCount {
                op: "ParamStore::add_values",
                len: values.len(),
                shape: shape.to_vec(),
            });
        }
        // Insert at the end of the group's range, or where a new group belongs:
        // groups are ordered by kind (shared, tasks, balancer), then by first use.
        let key = |g: &ParamGroup| (g.rank(), self.group_first_index(g));
        let k = key(&group);
        let at = self
            .views
            .iter()
            .filter(|v| key(&v.group) <= k)
            .map(|v| v.offset + v.len())
            .max()
            .unwrap_or(0);
        for v in &mut self.views {
            if v.offset >= at {
                v.offset += len;
            }
        }
        self.values.splice(at..at, values);
        self.views.push(ParamView {
            name: name.into(),
            offset: at,
            shape: shape.to_vec(),
            group,
        });
        Ok(ParamId(self.views.len() - 1))
    }

    /// Position of the first view of `group` in insertion order (new groups last).
    fn group_first_index(&self, group: &ParamGroup) -> usize {
        self.views
            .iter()
            .position(|v| &v.group == group)
            .unwrap_or(usize::MAX)
    }

    /// Adds a non-trainable buffer with the given values.
    pub fn add_buffer(&mut self, name: &str, values: Vec<f32>) -> Result<BufferId> {
        if self.buffer_views.iter().any(|b| b.name == name) {
            return Err(CoreError::Parameter {
                name: name.into(),
                reason: "buffer name already used".into(),
            });
        }
        self.buffer_views.push(BufferView {
            name: name.into(),
            offset: self.buffers.len(),
            len: values.len(),
        });
        self.buffers.extend(values);
        Ok(BufferId(self.buffer_views.len() - 1))
    }

    /// The id of the parameter called `name`.
    pub fn find(&self, name: &str) -> Option<ParamId> {
        self.views.iter().position(|v| v.name == name).map(ParamId)
    }

    /// The view of parameter `id`.
    pub fn view(&self, id: ParamId) -> Result<&ParamView> {
        self.views.get(id.0).ok_or(CoreError::Index {
            op: "ParamStore::view",
            index: id.0,
            len: self.views.len(),
        })
    }

    /// Every view, in insertion order.
    pub fn views(&self) -> &[ParamView] {
        &self.views
    }

    /// The values of parameter `id`.
    pub fn values(&self, id: ParamId) -> Result<&[f32]> {
        let r = self.view(id)?.range();
        Ok(&self.values[r])
    }

    /// The values of parameter `id`, mutable.
    pub fn values_mut(&mut self, id: ParamId) -> Result<&mut [f32]> {
        let r = self.view(id)?.range();
        Ok(&mut self.values[r])
    }

    /// The whole flat buffer.
    pub fn flat(&self) -> &[f32] {
        &self.values
    }

    /// The whole flat buffer, mutable (an optimizer step writes here).
    pub fn flat_mut(&mut self) -> &mut [f32] {
        &mut self.values
    }

    /// Total number of trainable values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the store holds no parameter.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The contiguous flat range of `group`, if it has parameters.
    pub fn group_range(&self, group: &ParamGroup) -> Option<Range<usize>> {
        let mut members = self.views.iter().filter(|v| &v.group == group).peekable();
        members.peek()?;
        let (lo, hi) = members.fold((usize::MAX, 0), |(lo, hi), v| {
            (lo.min(v.offset), hi.max(v.offset + v.len()))
        });
        Some(lo..hi)
    }

    /// Every group with its range, in buffer order.
    pub fn groups(&self) -> Vec<(ParamGroup, Range<usize>)> {
        let mut out: Vec<(ParamGroup, Range<usize>)> = Vec::new();
        for v in &self.views {
            if !out.iter().any(|(g, _)| g == &v.group) {
                let r = self.group_range(&v.group).unwrap_or(0..0);
                out.push((v.group.clone(), r));
            }
        }
        out.sort_by_key(|(_, r)| r.start);
        out
    }

    /// The values of buffer `id`.
    pub fn buffer(&self, id: BufferId) -> Result<&[f32]> {
        let b = self.buffer_views.get(id.0).ok_or(CoreError::Index {
            op: "ParamStore::buffer",
            index: id.0,
            len: self.buffer_views.len(),
        })?;
        Ok(&self.buffers[b.offset..b.offset + b.len])
    }

    /// The values of buffer `id`, mutable.
    pub fn buffer_mut(&mut self, id: BufferId) -> Result<&mut [f32]> {
        let b = self.buffer_views.get(id.0).ok_or(CoreError::Index {
            op: "ParamStore::buffer_mut",
            index: id.0,
            len: self.buffer_views.len(),
        })?;
        let r = b.offset..b.offset + b.len;
        Ok(&mut self.buffers[r])
    }

    /// Every buffer view.
    pub fn buffer_views(&self) -> &[BufferView] {
        &self.buffer_views
    }

    /// The whole buffer storage.
    pub fn buffers_flat(&self) -> &[f32] {
        &self.buffers
    }

    /// The whole buffer storage, mutable (checkpoint restore).
    pub fn buffers_flat_mut(&mut self) -> &mut [f32] {
        &mut self.buffers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn groups_stay_contiguous_whatever_the_insertion_order() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut ps = ParamStore::new();
        ps.add(
            "a.w",
            &[2],
            ParamGroup::task("a"),
            Init::Constant(1.0),
            &mut rng,
        )
        .unwrap();
        ps.add(
            "s1",
            &[3],
            ParamGroup::Shared,
            Init::Constant(2.0),
            &mut rng,
        )
        .unwrap();
        ps.add(
            "bal",
            &[1],
            ParamGroup::Balancer,
            Init::Constant(9.0),
            &mut rng,
        )
        .unwrap();
        ps.add(
            "b.w",
            &[2],
            ParamGroup::task("b"),
            Init::Constant(3.0),
            &mut rng,
        )
        .unwrap();
        ps.add(
            "a.b",
            &[1],
            ParamGroup::task("a"),
            Init::Constant(4.0),
            &mut rng,
        )
        .unwrap();
        ps.add(
            "s2",
            &[2],
            ParamGroup::Shared,
            Init::Constant(5.0),
            &mut rng,
        )
        .unwrap();
        assert_eq!(
            ps.flat(),
            &[2.0, 2.0, 2.0, 5.0, 5.0, 1.0, 1.0, 4.0, 3.0, 3.0, 9.0]
        );
        let groups = ps.groups();
        assert_eq!(groups[0], (ParamGroup::Shared, 0..5));
        assert_eq!(groups[1], (ParamGroup::task("a"), 5..8));
        assert_eq!(groups[2], (ParamGroup::task("b"), 8..10));
        assert_eq!(groups[3], (ParamGroup::Balancer, 10..11));
        assert_eq!(ps.values(ps.find("a.b").unwrap()).unwrap(), &[4.0]);
        assert!(ps
            .add("s1", &[1], ParamGroup::Shared, Init::Zeros, &mut rng)
            .is_err());
    }
}
