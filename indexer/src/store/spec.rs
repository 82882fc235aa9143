//! Collection specs as both backends check them: a vector's name and dimension, a spec in
//! canonical form (sorted, validated names), and a spec described for an error message.

use std::collections::BTreeSet;

use super::{CollectionSpec, StoreError, StoreResult};

/// Checks that `name` is one of the collection's vectors and `vector` has its dimension.
pub(crate) fn check_vector(spec: &CollectionSpec, name: &str, vector: &[f32]) -> StoreResult<()> {
    if !spec.vectors.iter().any(|v| v == name) {
        return Err(StoreError::UnknownVector(name.to_owned()));
    }
    if vector.len() != spec.dim {
        return Err(StoreError::DimensionMismatch {
            name: name.to_owned(),
            expected: spec.dim,
            got: vector.len(),
        });
    }
    Ok(())
}

/// Validates a spec and puts its lists in canonical (sorted) order, so that specs listing the
/// same names in another order compare equal.
pub(crate) fn normalize(spec: &CollectionSpec) -> StoreResult<CollectionSpec> {
    fn sorted(names: &[String], what: &str) -> StoreResult<Vec<String>> {
        let set: BTreeSet<_> = names.iter().cloned().collect();
        if set.len() != names.len() {
            return Err(StoreError::Backend(format!(
                "duplicate {what} in {names:?}"
            )));
        }
        if let Some(empty) = set.iter().find(|n| n.is_empty()) {
            return Err(StoreError::Backend(format!("empty {what} name {empty:?}")));
        }
        Ok(set.into_iter().collect())
    }
    if spec.dim == 0 {
        return Err(StoreError::Backend(
            "collection dimension must be positive".into(),
        ));
    }
    if spec.vectors.is_empty() {
        return Err(StoreError::Backend(
            "collection needs at least one named vector".into(),
        ));
    }
    let spec = CollectionSpec {
        dim: spec.dim,
        vectors: sorted(&spec.vectors, "vector name")?,
        keyword_fields: sorted(&spec.keyword_fields, "keyword field")?,
        integer_fields: sorted(&spec.integer_fields, "integer field")?,
    };
    if let Some(both) = spec
        .keyword_fields
        .iter()
        .find(|f| spec.integer_fields.contains(f))
    {
        return Err(StoreError::Backend(format!(
            "field {both:?} is both keyword and integer"
        )));
    }
    Ok(spec)
}

/// The keyword and integer fields `requested` adds to `existing`, when it differs from it only
/// by adding some (same dimension and vectors, every existing field kept as it was): a newer
/// imagelens filtering on a new payload key. `None` for any other difference. Both specs are
/// normalised.
pub(crate) fn added_fields(
    existing: &CollectionSpec,
    requested: &CollectionSpec,
) -> Option<(Vec<String>, Vec<String>)> {
    let kept = |old: &[String], new: &[String]| old.iter().all(|f| new.contains(f));
    if existing.dim != requested.dim
        || existing.vectors != requested.vectors
        || !kept(&existing.keyword_fields, &requested.keyword_fields)
        || !kept(&existing.integer_fields, &requested.integer_fields)
    {
        return None;
    }
    let new = |old: &[String], new: &[String]| -> Vec<String> {
        new.iter().filter(|f| !old.contains(f)).cloned().collect()
    };
    Some((
        new(&existing.keyword_fields, &requested.keyword_fields),
        new(&existing.integer_fields, &requested.integer_fields),
    ))
}

/// Human-readable spec for error messages.
pub(crate) fn describe(spec: &CollectionSpec) -> String {
    format!(
        "dim {} vectors {:?} keyword fields {:?} integer fields {:?}",
        spec.dim, spec.vectors, spec.keyword_fields, spec.integer_fields
    )
}
