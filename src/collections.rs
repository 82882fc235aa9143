//! Named collections of record ids, for curation: a saved result set that can be edited and
//! exported as a data set.
//!
//! Owns `<data-dir>/collections.json`, written atomically after every change (old or new
//! content, never torn) under one lock, so concurrent edits serialise. It stores ids only; the
//! records themselves stay in the keyword index. Checking that ids exist is the caller's job
//! (the HTTP layer does it against the index before adding).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest collection name.
pub const MAX_NAME_LEN: usize = 64;

/// A saved set of records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Collection {
    /// Name: letters, digits, `-`, `_` and `.`, at most 64 characters.
    pub name: String,
    /// Free description of the use case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Record ids, in the order they were added, without repeats.
    pub ids: Vec<String>,
    /// What the collection was made from (a search request), when it was saved from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<serde_json::Value>,
    /// Who made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// When it was made.
    pub created: DateTime<Utc>,
    /// Last change.
    pub updated: DateTime<Utc>,
}

/// A collection without its ids, for listings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CollectionSummary {
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Number of records.
    pub count: usize,
    /// When it was made.
    pub created: DateTime<Utc>,
    /// Last change.
    pub updated: DateTime<Utc>,
}

/// Why a collection operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectionError {
    /// The name is not allowed.
    #[error(
        "collection name {0:?} is not valid: use 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.'"
    )]
    InvalidName(String),
    /// No such collection.
    #[error("no collection named {0:?}")]
    NotFound(String),
    /// The name is taken.
    #[error("a collection named {0:?} already exists")]
    Exists(String),
    /// The file cannot be read or written.
    #[error(transparent)]
    Store(#[from] indexer::Error),
}

/// The collections of one library.
#[derive(Debug)]
pub struct Collections {
    path: PathBuf,
    inner: Mutex<BTreeMap<String, Collection>>,
}

impl Collections {
    /// Opens `<dir>/collections.json` (absent means none).
    ///
    /// # Errors
    /// [`CollectionError::Store`] when the file exists but cannot be read or parsed.
    pub fn open(dir: &Path) -> Result<Self, CollectionError> {
        let path = dir.join("collections.json");
        let map = indexer::library::read_json(&path)?.unwrap_or_default();
        Ok(Self {
            path,
            inner: Mutex::new(map),
        })
    }

    /// Every collection, by name.
    pub fn list(&self) -> Vec<CollectionSummary> {
        self.lock()
            .values()
            .map(|c| CollectionSummary {
                name: c.name.clone(),
                description: c.description.clone(),
                count: c.ids.len(),
                created: c.created,
                updated: c.updated,
            })
            .collect()
    }

    /// One collection.
    ///
    /// # Errors
    /// [`CollectionError::NotFound`].
    pub fn get(&self, name: &str) -> Result<Collection, CollectionError> {
        self.lock()
            .get(name)
            .cloned()
            .ok_or_else(|| CollectionError::NotFound(name.to_owned()))
    }

    /// Creates a collection.
    ///
    /// # Errors
    /// [`CollectionError::InvalidName`], [`CollectionError::Exists`], or a write failure (then
    /// nothing changed).
    pub fn create(
        &self,
        name: &str,
        description: Option<String>,
        ids: Vec<String>,
        source: Option<serde_json::Value>,
        created_by: Option<String>,
    ) -> Result<Collection, CollectionError> {
        validate_name(name)?;
        let mut map = self.lock();
        if map.contains_key(name) {
            return Err(CollectionError::Exists(name.to_owned()));
        }
        let now = Utc::now();
        let mut c = Collection {
            name: name.to_owned(),
            description,
            ids: Vec::new(),
            source,
            created_by,
            created: now,
            updated: now,
        };
        push_distinct(&mut c.ids, ids);
        let mut next = map.clone();
        next.insert(name.to_owned(), c.clone());
        self.save(&next)?;
        *map = next;
        Ok(c)
    }

    /// Adds ids (already present ones are kept where they are).
    ///
    /// # Errors
    /// [`CollectionError::NotFound`] or a write failure (then nothing changed).
    pub fn add(&self, name: &str, ids: Vec<String>) -> Result<Collection, CollectionError> {
        self.update(name, |c| push_distinct(&mut c.ids, ids))
    }

    /// Removes ids.
    ///
    /// # Errors
    /// [`CollectionError::NotFound`] or a write failure (then nothing changed).
    pub fn remove(&self, name: &str, ids: &[String]) -> Result<Collection, CollectionError> {
        self.update(name, |c| c.ids.retain(|id| !ids.contains(id)))
    }

    /// Deletes a collection.
    ///
    /// # Errors
    /// [`CollectionError::NotFound`] or a write failure (then nothing changed).
    pub fn delete(&self, name: &str) -> Result<(), CollectionError> {
        let mut map = self.lock();
        if !map.contains_key(name) {
            return Err(CollectionError::NotFound(name.to_owned()));
        }
        let mut next = map.clone();
        next.remove(name);
        self.save(&next)?;
        *map = next;
        Ok(())
    }

    /// Removes these ids from every collection (records that were deleted).
    ///
    /// # Errors
    /// A write failure (then nothing changed).
    pub fn remove_everywhere(&self, ids: &[String]) -> Result<(), CollectionError> {
        let mut map = self.lock();
        if !map.values().any(|c| c.ids.iter().any(|i| ids.contains(i))) {
            return Ok(());
        }
        let mut next = map.clone();
        let now = Utc::now();
        for c in next.values_mut() {
            let before = c.ids.len();
            c.ids.retain(|i| !ids.contains(i));
            if c.ids.len() != before {
                c.updated = now;
            }
        }
        self.save(&next)?;
        *map = next;
        Ok(())
    }

    fn update(
        &self,
        name: &str,
        change: impl FnOnce(&mut Collection),
    ) -> Result<Collection, CollectionError> {
        let mut map = self.lock();
        let mut c = map
            .get(name)
            .cloned()
            .ok_or_else(|| CollectionError::NotFound(name.to_owned()))?;
        change(&mut c);
        c.updated = Utc::now();
        let mut next = map.clone();
        next.insert(name.to_owned(), c.clone());
        self.save(&next)?;
        *map = next;
        Ok(c)
    }

    fn save(&self, map: &BTreeMap<String, Collection>) -> Result<(), CollectionError> {
        let bytes = serde_json::to_vec_pretty(map).expect("collections serialise");
        indexer::library::write_atomic(&self.path, &bytes)?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Collection>> {
        // A panic while holding the lock cannot leave the map half-changed: every change is
        // made on a copy and swapped in after the file is written.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn push_distinct(ids: &mut Vec<String>, new: Vec<String>) {
    for id in new {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
}

fn validate_name(name: &str) -> Result<(), CollectionError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(CollectionError::InvalidName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collections_persist_and_keep_ids_distinct_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let c = Collections::open(dir.path()).unwrap();
        c.create(
            "trucks",
            None,
            vec!["b".into(), "a".into(), "b".into()],
            None,
            None,
        )
        .unwrap();
        c.add("trucks", vec!["c".into(), "a".into()]).unwrap();
        c.remove("trucks", &["b".into()]).unwrap();
        let again = Collections::open(dir.path()).unwrap();
        assert_eq!(again.get("trucks").unwrap().ids, ["a", "c"]);
        assert_eq!(again.list()[0].count, 2);
        again.delete("trucks").unwrap();
        assert!(matches!(
            Collections::open(dir.path()).unwrap().get("trucks"),
            Err(CollectionError::NotFound(_))
        ));
    }

    #[test]
    fn bad_names_and_duplicates_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = Collections::open(dir.path()).unwrap();
        for bad in ["", "../x", "a b", ".hidden", &"x".repeat(65)] {
            assert!(matches!(
                c.create(bad, None, vec![], None, None),
                Err(CollectionError::InvalidName(_))
            ));
        }
        c.create("x", None, vec![], None, None).unwrap();
        assert!(matches!(
            c.create("x", None, vec![], None, None),
            Err(CollectionError::Exists(_))
        ));
    }
}
