//! Translations between our store types and qdrant-edge's: points, ids, payloads and dense
//! vectors both ways, and our [`VectorFilter`] to a qdrant `Filter` through qdrant's serde
//! (REST) representation, so no qdrant-edge type leaves the [`EdgeStore`](super::EdgeStore).

use std::collections::HashMap;

use qdrant_edge::{
    Filter, JsonPath, PointId as EdgeId, PointStruct, VectorInternal, VectorStructInternal, Vectors,
};
use serde_json::{Value, json};

use crate::store::{
    Condition, Payload, PointId, StoreError, StoreResult, VectorFilter, VectorPoint,
};

/// Largest integer an `f64` range bound represents exactly (qdrant ranges are `f64`).
const MAX_EXACT_INT: i64 = 1 << 53;

/// Our point as edge's persisted point. The payload is a JSON object by construction
/// ([`Payload`] wraps a map), which `PointStruct::new` requires (it panics otherwise).
pub(super) fn to_edge_point(point: VectorPoint) -> qdrant_edge::PointStructPersisted {
    let vectors: HashMap<String, Vec<f32>> = point.vectors.into_iter().collect();
    PointStruct::new(
        point.id,
        Vectors::from(vectors),
        Value::Object(point.payload.0),
    )
    .into()
}

/// Our point id from edge's; we only ever write numeric ids.
pub(super) fn from_edge_id(id: EdgeId) -> StoreResult<PointId> {
    match id {
        EdgeId::NumId(id) => Ok(id),
        EdgeId::Uuid(uuid) => Err(StoreError::Backend(format!(
            "unexpected uuid point id {uuid}"
        ))),
    }
}

/// Edge's payload as ours (absent = empty object).
pub(super) fn to_payload(payload: Option<qdrant_edge::Payload>) -> Payload {
    Payload(payload.map(|p| p.0).unwrap_or_default())
}

/// The dense vector `name` out of a retrieved vector struct.
pub(super) fn dense(vectors: VectorStructInternal, name: &str) -> Option<Vec<f32>> {
    match vectors {
        VectorStructInternal::Named(mut named) => match named.remove(name)? {
            VectorInternal::Dense(v) => Some(v),
            VectorInternal::Sparse(_) | VectorInternal::MultiDense(_) => None,
        },
        VectorStructInternal::Single(v) => Some(v),
        VectorStructInternal::MultiDense(_) => None,
    }
}

/// Every dense named vector of a retrieved vector struct (a single unnamed vector as `""`).
pub(super) fn named_dense(
    vectors: VectorStructInternal,
) -> std::collections::BTreeMap<String, Vec<f32>> {
    match vectors {
        VectorStructInternal::Named(named) => named
            .into_iter()
            .filter_map(|(name, v)| match v {
                VectorInternal::Dense(v) => Some((name, v)),
                VectorInternal::Sparse(_) | VectorInternal::MultiDense(_) => None,
            })
            .collect(),
        VectorStructInternal::Single(v) => [(String::new(), v)].into(),
        VectorStructInternal::MultiDense(_) => Default::default(),
    }
}

/// A payload key as a qdrant JSON path.
pub(super) fn json_path(key: &str) -> StoreResult<JsonPath> {
    JsonPath::try_from(key).map_err(|_| StoreError::Backend(format!("invalid payload key {key:?}")))
}

/// Our filter as edge's (`None` when empty), built through qdrant's serde (REST) shape so no
/// internal collection types (index sets, hash sets) leak into our code.
pub(super) fn to_edge_filter(filter: &VectorFilter) -> StoreResult<Option<Filter>> {
    if filter.is_empty() {
        return Ok(None);
    }
    let clauses = |conditions: &[Condition]| -> StoreResult<Vec<Value>> {
        conditions.iter().map(condition_json).collect()
    };
    let value = json!({"must": clauses(&filter.must)?, "must_not": clauses(&filter.must_not)?});
    serde_json::from_value(value)
        .map(Some)
        .map_err(|err| StoreError::Backend(format!("translating filter {filter:?}: {err}")))
}

/// One condition in qdrant's REST shape.
pub(super) fn condition_json(condition: &Condition) -> StoreResult<Value> {
    Ok(match condition {
        // One value as qdrant's `match: value`, which means the same for a string or an array
        // of strings: qdrant reads the points of `match: any` through a de-duplicating
        // iterator (a hash set of every point id it yields) even when it names one value,
        // which cost 7 % of the 1M service's CPU under filters (benches/README.md).
        Condition::MatchAny { key, any } if any.len() == 1 => {
            json!({"key": key, "match": {"value": any[0]}})
        }
        Condition::MatchAny { key, any } => json!({"key": key, "match": {"any": any}}),
        Condition::Range { key, gte, lte } => {
            // qdrant ranges are f64: refuse bounds that would be rounded.
            for bound in [gte, lte].into_iter().flatten() {
                if bound.unsigned_abs() > MAX_EXACT_INT.unsigned_abs() {
                    return Err(StoreError::Backend(format!(
                        "range bound {bound} on {key:?} is beyond ±2^53 and cannot be exact"
                    )));
                }
            }
            json!({"key": key, "range": {"gte": gte, "lte": lte}})
        }
        Condition::HasId(ids) => json!({"has_id": ids}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One value goes as qdrant's `match: value` (no de-duplicating iterator in qdrant), more
    /// as `match: any`; both translate into qdrant filters (the property tests in
    /// `tests/filter_equivalence.rs` and `tests/index_settings.rs` check the answers).
    #[test]
    fn one_value_is_match_value_and_several_are_match_any() {
        let one = Condition::MatchAny {
            key: "labels".into(),
            any: vec!["car".into()],
        };
        let two = Condition::MatchAny {
            key: "labels".into(),
            any: vec!["car".into(), "dog".into()],
        };
        assert_eq!(
            condition_json(&one).unwrap(),
            json!({"key": "labels", "match": {"value": "car"}})
        );
        assert_eq!(
            condition_json(&two).unwrap(),
            json!({"key": "labels", "match": {"any": ["car", "dog"]}})
        );
        let filter = VectorFilter {
            must: vec![one],
            must_not: vec![two],
        };
        let edge = to_edge_filter(&filter).unwrap().expect("not empty");
        let back = serde_json::to_value(&edge).unwrap();
        assert_eq!(back["must"][0]["match"], json!({"value": "car"}));
        assert_eq!(back["must_not"][0]["match"], json!({"any": ["car", "dog"]}));
    }
}
