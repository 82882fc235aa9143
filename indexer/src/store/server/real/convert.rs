//! Our filters and payloads to and from qdrant-client's types.

use super::*;

/// Our filter as the client's (`None` when empty).
pub(super) fn to_filter(filter: &VectorFilter) -> Option<qdrant::Filter> {
    if filter.is_empty() {
        return None;
    }
    let convert = |conditions: &[Condition]| conditions.iter().map(to_condition).collect();
    Some(qdrant::Filter {
        must: convert(&filter.must),
        must_not: convert(&filter.must_not),
        ..qdrant::Filter::default()
    })
}

pub(super) fn to_condition(condition: &Condition) -> QCondition {
    match condition {
        // One value as `match: value`, as the embedded store sends it (`edge/convert.rs`).
        Condition::MatchAny { key, any } if any.len() == 1 => {
            QCondition::matches(key.clone(), any[0].clone())
        }
        Condition::MatchAny { key, any } => QCondition::matches(key.clone(), any.clone()),
        Condition::Range { key, gte, lte } => QCondition::range(
            key.clone(),
            qdrant::Range {
                gte: gte.map(|v| v as f64),
                lte: lte.map(|v| v as f64),
                ..qdrant::Range::default()
            },
        ),
        Condition::HasId(ids) => QCondition::has_id(ids.iter().copied()),
    }
}

pub(super) fn from_id(id: Option<qdrant::PointId>) -> StoreResult<PointId> {
    match id.and_then(|id| id.point_id_options) {
        Some(PointIdOptions::Num(id)) => Ok(id),
        other => Err(StoreError::Backend(format!(
            "unexpected point id {other:?}"
        ))),
    }
}

pub(super) fn to_payload(payload: HashMap<String, qdrant::Value>) -> Payload {
    Payload(
        payload
            .into_iter()
            .map(|(k, v)| (k, from_value(v)))
            .collect(),
    )
}

/// JSON as a qdrant value (without the client's `serde` feature).
pub(super) fn to_value(value: Value) -> qdrant::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Kind::IntegerValue(i),
            None => Kind::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(qdrant::ListValue {
            values: items.into_iter().map(to_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(qdrant::Struct {
            fields: map.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
        }),
    };
    qdrant::Value { kind: Some(kind) }
}

/// A qdrant value as JSON.
pub(super) fn from_value(value: qdrant::Value) -> Value {
    match value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::IntegerValue(i)) => Value::from(i),
        Some(Kind::DoubleValue(d)) => Value::from(d),
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::ListValue(list)) => {
            Value::Array(list.values.into_iter().map(from_value).collect())
        }
        Some(Kind::StructValue(s)) => Value::Object(
            s.fields
                .into_iter()
                .map(|(k, v)| (k, from_value(v)))
                .collect(),
        ),
    }
}

pub(super) fn poisoned() -> StoreError {
    StoreError::Backend("vector store lock poisoned by an earlier panic".into())
}
