//! [`PartitionedStore`]: one collection whose named vectors live in several stores ("parts"),
//! each holding the points of its vectors.
//!
//! A qdrant collection (an edge shard as much as a server collection) stores every named vector
//! densely by the point's place in a segment: a point without a vector still takes that
//! vector's slot, in the full vectors and in their int8 copies (qdrant quantizes every slot).
//! A library's points are of two kinds with disjoint vectors (image points: `image` and `text`;
//! region points: `region`, about two for every image), so in one collection two thirds of the
//! slots of each vector are empty: at 1M records (2.8M points) the int8 copies alone took 4.3
//! GB, and filtered searches of `image` walked region points' payloads. Kept in two parts, each
//! vector has a slot only on the points that hold it.
//!
//! The parts together keep the [`VectorStore`] contract: a point lives in the part its vectors
//! name (a point without vectors in the first), ids are unique over the parts (the library's
//! ids encode the point's kind, [`crate::points::image_point_id`]), and a write that any part
//! would refuse for bad input is refused whole before any part stores anything. Writes to
//! several parts are not atomic across them, which the library does not need: a record is
//! searchable only once the keyword index commits it, after [`VectorStore::flush`] returned for
//! every part, and recovery ([`crate::pipeline::reconcile`]) deletes points of records the
//! keyword index does not hold.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::spec::{added_fields, check_vector, describe, normalize};
use super::{
    CollectionSpec, Hit, IndexSettings, IndexState, PointId, StoreError, StoreResult, VectorFilter,
    VectorPoint, VectorQuery, VectorStore,
};

/// One part of a [`PartitionedStore`].
pub struct Part {
    /// Its name (a directory or collection suffix for whoever made the store).
    pub name: String,
    /// The named vectors it holds.
    pub vectors: Vec<String>,
    /// Where they live.
    pub store: Arc<dyn VectorStore>,
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Part")
            .field("name", &self.name)
            .field("vectors", &self.vectors)
            .finish_non_exhaustive()
    }
}

/// Several stores holding the named vectors of one collection between them (module docs).
#[derive(Debug)]
pub struct PartitionedStore {
    parts: Vec<Part>,
}

impl PartitionedStore {
    /// Stores `parts`, each holding its own named vectors.
    ///
    /// # Errors
    /// [`StoreError::Backend`] without parts, for a part without vectors or a vector named by
    /// two parts.
    pub fn new(parts: Vec<Part>) -> StoreResult<Self> {
        if parts.is_empty() {
            return Err(StoreError::Backend(
                "a partitioned store needs a part".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        for part in &parts {
            if part.vectors.is_empty() {
                return Err(StoreError::Backend(format!(
                    "part {:?} holds no vectors",
                    part.name
                )));
            }
            for v in &part.vectors {
                if !seen.insert(v.as_str()) {
                    return Err(StoreError::Backend(format!(
                        "vector {v:?} is named by two parts"
                    )));
                }
            }
        }
        Ok(Self { parts })
    }

    /// The index of the part holding `vector`.
    fn part_of(&self, vector: &str) -> StoreResult<usize> {
        self.parts
            .iter()
            .position(|p| p.vectors.iter().any(|v| v == vector))
            .ok_or_else(|| StoreError::UnknownVector(vector.to_owned()))
    }

    /// The part a point goes to: the one its vectors name (the first for none).
    fn part_of_point(&self, point: &VectorPoint) -> StoreResult<usize> {
        let mut part: Option<usize> = None;
        for name in point.vectors.keys() {
            let here = self.part_of(name)?;
            match part {
                Some(p) if p != here => {
                    return Err(StoreError::Backend(format!(
                        "point {} has vectors of two parts ({} and {}); a point's vectors \
                         live in one part",
                        point.id, self.parts[p].name, self.parts[here].name
                    )));
                }
                _ => part = Some(here),
            }
        }
        Ok(part.unwrap_or(0))
    }

    /// Runs `op` on every part (side by side when there are several), results in part order.
    fn each<T: Send>(
        &self,
        op: impl Fn(&dyn VectorStore) -> StoreResult<T> + Sync,
    ) -> StoreResult<Vec<T>> {
        side_by_side(&self.parts, |part| op(part.store.as_ref()))
            .into_iter()
            .collect()
    }
}

/// `op` on every item, on threads of their own when there are several (a part's store, or an
/// edge shard's search, blocks the calling thread), answers in the items' order; a panic on a
/// thread is raised again here.
pub(super) fn side_by_side<I: Sync, T: Send>(
    items: &[I],
    op: impl Fn(&I) -> StoreResult<T> + Sync,
) -> Vec<StoreResult<T>> {
    if items.len() < 2 {
        return items.iter().map(&op).collect();
    }
    std::thread::scope(|scope| {
        let running: Vec<_> = items
            .iter()
            .map(|item| {
                let op = &op;
                scope.spawn(move || op(item))
            })
            .collect();
        running
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

impl VectorStore for PartitionedStore {
    /// Each part is ensured with the spec's vectors it holds and every payload index. A spec
    /// that does not fit the parts (a vector no part holds, none of a part's) or that any part
    /// would refuse is [`StoreError::SpecMismatch`] before any part changes.
    fn ensure(&self, spec: &CollectionSpec) -> StoreResult<()> {
        let spec = normalize(spec)?;
        let mismatch = || {
            let existing = match self.collection_spec() {
                Ok(existing) => describe(&existing),
                Err(_) => format!(
                    "parts {}",
                    self.parts
                        .iter()
                        .map(|p| format!("{} {:?}", p.name, p.vectors))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            StoreError::SpecMismatch {
                existing,
                requested: describe(&spec),
            }
        };
        if spec.vectors.iter().any(|v| self.part_of(v).is_err()) {
            return Err(mismatch());
        }
        let mut specs = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            let vectors: Vec<String> = spec
                .vectors
                .iter()
                .filter(|v| part.vectors.contains(v))
                .cloned()
                .collect();
            if vectors.is_empty() {
                return Err(mismatch());
            }
            let mine = CollectionSpec {
                vectors,
                ..spec.clone()
            };
            match part.store.collection_spec() {
                Ok(existing) if existing != mine && added_fields(&existing, &mine).is_none() => {
                    return Err(mismatch());
                }
                Ok(_) | Err(StoreError::Missing) => {}
                Err(err) => return Err(err),
            }
            specs.push(mine);
        }
        for (part, spec) in self.parts.iter().zip(&specs) {
            part.store.ensure(spec)?;
        }
        Ok(())
    }

    /// The parts' specs as one: their vectors together, the first part's payload fields (every
    /// part is ensured with the same ones).
    fn collection_spec(&self) -> StoreResult<CollectionSpec> {
        let specs = self.each(|s| s.collection_spec())?;
        let mut spec = specs[0].clone();
        spec.vectors = specs.iter().flat_map(|s| s.vectors.clone()).collect();
        normalize(&spec)
    }

    fn upsert(&self, points: Vec<VectorPoint>) -> StoreResult<()> {
        let mut by_part: BTreeMap<usize, Vec<VectorPoint>> = BTreeMap::new();
        for point in points {
            by_part
                .entry(self.part_of_point(&point)?)
                .or_default()
                .push(point);
        }
        // Checked whole before any part writes, so a bad batch stores nothing anywhere.
        for (&part, points) in &by_part {
            let spec = self.parts[part].store.collection_spec()?;
            for point in points {
                for (name, vector) in &point.vectors {
                    check_vector(&spec, name, vector)?;
                }
            }
        }
        for (part, points) in by_part {
            self.parts[part].store.upsert(points)?;
        }
        Ok(())
    }

    fn search(&self, query: &VectorQuery) -> StoreResult<Vec<Hit>> {
        self.parts[self.part_of(&query.using)?].store.search(query)
    }

    /// Each part answers its queries in one call (a server part in one request), the parts
    /// side by side.
    fn search_many(&self, queries: &[VectorQuery]) -> StoreResult<Vec<Vec<Hit>>> {
        let mut asked: Vec<Vec<usize>> = vec![Vec::new(); self.parts.len()];
        for (i, q) in queries.iter().enumerate() {
            asked[self.part_of(&q.using)?].push(i);
        }
        let run = |part: usize| -> StoreResult<Vec<Vec<Hit>>> {
            let mine: Vec<VectorQuery> = asked[part].iter().map(|&i| queries[i].clone()).collect();
            self.parts[part].store.search_many(&mine)
        };
        let busy: Vec<usize> = (0..self.parts.len())
            .filter(|&p| !asked[p].is_empty())
            .collect();
        let answers = side_by_side(&busy, |&part| run(part));
        let mut out: Vec<Vec<Hit>> = vec![Vec::new(); queries.len()];
        for (&part, answer) in busy.iter().zip(answers) {
            for (&i, hits) in asked[part].iter().zip(answer?) {
                out[i] = hits;
            }
        }
        Ok(out)
    }

    fn retrieve(&self, ids: &[PointId]) -> StoreResult<Vec<Hit>> {
        Ok(self.each(|s| s.retrieve(ids))?.concat())
    }

    fn vector(&self, id: PointId, using: &str) -> StoreResult<Option<Vec<f32>>> {
        self.parts[self.part_of(using)?].store.vector(id, using)
    }

    fn delete(&self, ids: &[PointId]) -> StoreResult<()> {
        self.each(|s| s.delete(ids)).map(drop)
    }

    /// Every part refuses an empty filter before deleting anything (the trait's contract), so
    /// none is checked here.
    fn delete_where(&self, filter: &VectorFilter) -> StoreResult<()> {
        self.each(|s| s.delete_where(filter)).map(drop)
    }

    fn count(&self, filter: &VectorFilter) -> StoreResult<usize> {
        Ok(self.each(|s| s.count(filter))?.into_iter().sum())
    }

    fn distinct(&self, key: &str) -> StoreResult<BTreeSet<String>> {
        Ok(self
            .each(|s| s.distinct(key))?
            .into_iter()
            .flatten()
            .collect())
    }

    fn flush(&self) -> StoreResult<()> {
        self.each(|s| s.flush()).map(drop)
    }

    /// The parts one after the other: each optimizer already uses every core.
    fn optimize(&self) -> StoreResult<()> {
        self.parts.iter().try_for_each(|p| p.store.optimize())
    }

    /// The first part's (every part is given the same).
    fn index_settings(&self) -> StoreResult<IndexSettings> {
        self.parts[0].store.index_settings()
    }

    fn set_index_settings(&self, settings: &IndexSettings) -> StoreResult<()> {
        settings.validate()?;
        self.parts
            .iter()
            .try_for_each(|p| p.store.set_index_settings(settings))
    }

    /// The parts' figures added up (their full-scan thresholds in order); the settings of
    /// the first.
    fn index_state(&self) -> StoreResult<IndexState> {
        let states = self.each(|s| s.index_state())?;
        let mut total = IndexState {
            settings: states[0].settings.clone(),
            disk_bytes: Some(0),
            ..IndexState::default()
        };
        for s in states {
            total.points += s.points;
            total.indexed_vectors += s.indexed_vectors;
            total.segments += s.segments;
            total.disk_bytes = total.disk_bytes.zip(s.disk_bytes).map(|(a, b)| a + b);
            total.full_scan_kb.extend(s.full_scan_kb);
        }
        Ok(total)
    }

    fn compact(&self) -> StoreResult<()> {
        self.parts.iter().try_for_each(|p| p.store.compact())
    }
}
