//! Named collections of record ids, for curation: a saved result set that can be edited and
//! exported as a data set.
//!
//! Owns `<data-dir>/collections.json`, written atomically after every change (old or new
//! content, never torn) under one lock, so concurrent edits serialise. It stores ids only; the
//! records themselves stay in the keyword index. Checking that ids exist is the caller's job
//! (the HTTP layer does it against the index before adding).
//!
//! Deleting records ([`Collections::remove_everywhere`]) takes their ids out of every
//! collection and drops every saved `source` (the search a collection was made from) that
//! names one of them: by id (a `like` target), by file name or path, or, in a collection that
//! held the record, by words of its captions or file name (which drops more sources than
//! strictly needed: a source is provenance, not data, and losing it is the safe side). The source is examined as parsed JSON, so names
//! with quotes, tabs or newlines are found as they are.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use indexer::json_file::JsonFile;
use indexer::record::Record;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest collection name.
pub const MAX_NAME_LEN: usize = 64;

/// Longest description, in characters (the whole file is rewritten on every change).
pub const MAX_DESCRIPTION_LEN: usize = 2_000;

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
    /// A field that is not allowed (the message names it).
    #[error("{0}")]
    Invalid(String),
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
    file: JsonFile<BTreeMap<String, Collection>>,
}

impl Collections {
    /// Opens `<dir>/collections.json` (absent means none).
    ///
    /// # Errors
    /// [`CollectionError::Store`] when the file exists but cannot be read or parsed.
    pub fn open(dir: &Path) -> Result<Self, CollectionError> {
        Ok(Self {
            file: JsonFile::open(dir.join("collections.json"))?,
        })
    }

    /// Every collection, by name.
    pub fn list(&self) -> Vec<CollectionSummary> {
        self.file
            .read()
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
        self.file
            .read()
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
        if let Some(d) = &description {
            let n = d.chars().count();
            if n > MAX_DESCRIPTION_LEN {
                return Err(CollectionError::Invalid(format!(
                    "description has {n} characters; at most {MAX_DESCRIPTION_LEN} are allowed"
                )));
            }
        }
        self.file.change(|map| {
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
            map.insert(name.to_owned(), c.clone());
            Ok(c)
        })
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

    /// Renames a collection: one atomic write of the file, so it is found under the old name
    /// or the new one, never both or neither; its ids, description, source and creation are
    /// kept. Renaming to its own name changes nothing.
    ///
    /// # Errors
    /// [`CollectionError::InvalidName`] for a bad new name, [`CollectionError::NotFound`],
    /// [`CollectionError::Exists`] when another collection has the new name, or a write
    /// failure; in every case nothing changed.
    pub fn rename(&self, name: &str, new_name: &str) -> Result<Collection, CollectionError> {
        validate_name(new_name)?;
        self.file.change_if(|map| {
            let Some(current) = map.get(name) else {
                return Err(CollectionError::NotFound(name.to_owned()));
            };
            if name == new_name {
                return Ok((false, current.clone()));
            }
            if map.contains_key(new_name) {
                return Err(CollectionError::Exists(new_name.to_owned()));
            }
            let mut c = map
                .remove(name)
                .ok_or_else(|| CollectionError::NotFound(name.to_owned()))?;
            c.name = new_name.to_owned();
            c.updated = Utc::now();
            map.insert(new_name.to_owned(), c.clone());
            Ok((true, c))
        })
    }

    /// Deletes a collection.
    ///
    /// # Errors
    /// [`CollectionError::NotFound`] or a write failure (then nothing changed).
    pub fn delete(&self, name: &str) -> Result<(), CollectionError> {
        self.file.change(|map| {
            map.remove(name)
                .map(drop)
                .ok_or_else(|| CollectionError::NotFound(name.to_owned()))
        })
    }

    /// Removes deleted records from every collection: their ids, and every saved `source`
    /// that names one of them (see the module documentation).
    ///
    /// # Errors
    /// A write failure (then nothing changed).
    pub fn remove_everywhere(&self, records: &[Record]) -> Result<(), CollectionError> {
        self.file.change_if(|map| {
            let now = Utc::now();
            let mut changed = false;
            for c in map.values_mut() {
                let before = c.ids.len();
                let held: Vec<&Record> = records.iter().filter(|r| c.ids.contains(&r.id)).collect();
                c.ids.retain(|i| !records.iter().any(|r| &r.id == i));
                let names_one = c.source.as_ref().is_some_and(|source| {
                    records
                        .iter()
                        .any(|r| names_record(source, r, held.iter().any(|h| h.id == r.id)))
                });
                if names_one {
                    c.source = None;
                }
                if c.ids.len() != before || names_one {
                    c.updated = now;
                    changed = true;
                }
            }
            Ok::<_, CollectionError>((changed, ()))
        })
    }

    fn update(
        &self,
        name: &str,
        change: impl FnOnce(&mut Collection),
    ) -> Result<Collection, CollectionError> {
        self.file.change(|map| {
            let c = map
                .get_mut(name)
                .ok_or_else(|| CollectionError::NotFound(name.to_owned()))?;
            change(c);
            c.updated = Utc::now();
            Ok(c.clone())
        })
    }
}

/// Whether any string in `source` (parsed JSON, every depth) names `record`: is or contains its
/// id, file name or path, or, when the collection held the record (`held`), is a search text
/// or pattern any of whose words appears in one of its captions or in its file name (so a glob
/// like `deleteme_*` that found it goes too).
fn names_record(source: &serde_json::Value, record: &Record, held: bool) -> bool {
    let caption_words: Vec<String> = if held {
        record
            .captions
            .iter()
            .chain([&record.filename, &record.path])
            .flat_map(|c| words(c))
            .collect()
    } else {
        Vec::new()
    };
    let mut stack = vec![source];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::String(s) => {
                let literal = [&record.id, &record.filename, &record.path]
                    .into_iter()
                    .any(|n| !n.is_empty() && s.contains(n.as_str()));
                if literal || words(s).any(|w| caption_words.contains(&w)) {
                    return true;
                }
            }
            serde_json::Value::Array(a) => stack.extend(a),
            serde_json::Value::Object(o) => {
                // Keys are user input too (metadata filters).
                for (k, v) in o {
                    let key = serde_json::Value::String(k.clone());
                    if names_record(&key, record, held) {
                        return true;
                    }
                    stack.push(v);
                }
            }
            _ => {}
        }
    }
    false
}

/// Lower-cased words of three or more letters or digits.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3)
        .map(str::to_lowercase)
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
    fn a_rename_keeps_everything_and_refuses_clashes_and_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        let c = Collections::open(dir.path()).unwrap();
        let made = c
            .create(
                "old",
                Some("what for".into()),
                vec!["b".into(), "a".into()],
                Some(serde_json::json!({"search": {"query": "dog"}})),
                Some("cur".into()),
            )
            .unwrap();
        c.create("taken", None, vec!["z".into()], None, None)
            .unwrap();
        let before = std::fs::read(dir.path().join("collections.json")).unwrap();
        for (to, clash) in [("taken", true), ("bad name", false), ("", false)] {
            let e = c.rename("old", to).unwrap_err();
            assert!(
                if clash {
                    matches!(e, CollectionError::Exists(_))
                } else {
                    matches!(e, CollectionError::InvalidName(_))
                },
                "{to:?}: {e}"
            );
        }
        assert!(matches!(
            c.rename("absent", "new"),
            Err(CollectionError::NotFound(_))
        ));
        assert_eq!(
            std::fs::read(dir.path().join("collections.json")).unwrap(),
            before,
            "a refused rename writes nothing"
        );
        assert_eq!(
            c.rename("old", "old").unwrap(),
            made,
            "same name: unchanged"
        );
        let renamed = c.rename("old", "new.name").unwrap();
        let again = Collections::open(dir.path()).unwrap();
        assert!(matches!(
            again.get("old"),
            Err(CollectionError::NotFound(_))
        ));
        let kept = again.get("new.name").unwrap();
        assert_eq!(kept, renamed);
        assert_eq!(
            (
                &kept.ids,
                &kept.description,
                &kept.source,
                &kept.created_by,
                kept.created
            ),
            (
                &made.ids,
                &made.description,
                &made.source,
                &made.created_by,
                made.created
            )
        );
        assert_eq!(again.get("taken").unwrap().ids, ["z"]);
        assert_eq!(again.list().len(), 2);
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

    fn record(id: &str, filename: &str, caption: &str) -> Record {
        serde_json::from_value(serde_json::json!({
            "id": id, "filename": filename, "path": format!("sub/{filename}"),
            "images_root": "/img", "width": 1, "height": 1, "bytes": 1, "sha256": "00",
            "dataset": "d", "dates": {}, "labels": [], "captions": [caption],
        }))
        .unwrap()
    }

    #[test]
    fn deleting_a_record_drops_every_source_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let c = Collections::open(dir.path()).unwrap();
        let gone = record(
            "0123456789abcdef",
            "he said \"hi\"\t\n.png",
            "a glorbix on a pier",
        );
        let kept = record("fedcba9876543210", "plain.png", "a dog");
        let sources = [
            ("like", serde_json::json!({"search": {"like": gone.id}})),
            (
                "file",
                serde_json::json!({"search": {"query": "x", "filter": {"filename": gone.filename}}}),
            ),
            (
                "caption",
                serde_json::json!({"search": {"query": "Glorbix"}}),
            ),
            ("other", serde_json::json!({"search": {"query": "glorbix"}})),
            ("dog", serde_json::json!({"search": {"query": "dog"}})),
        ];
        for (name, source) in &sources {
            // "other" searched for the word but never held the record: its source stays.
            let ids = match *name {
                "other" | "dog" => vec![kept.id.clone()],
                _ => vec![gone.id.clone(), kept.id.clone()],
            };
            c.create(name, None, ids, Some(source.clone()), None)
                .unwrap();
        }
        c.remove_everywhere(std::slice::from_ref(&gone)).unwrap();
        for (name, _) in &sources[..3] {
            let col = c.get(name).unwrap();
            assert_eq!(col.source, None, "{name}");
            assert_eq!(col.ids, std::slice::from_ref(&kept.id));
        }
        assert!(c.get("other").unwrap().source.is_some());
        assert!(c.get("dog").unwrap().source.is_some());
        let text = std::fs::read_to_string(dir.path().join("collections.json")).unwrap();
        assert!(!text.contains(&gone.id));
        assert!(!text.contains("he said"));
    }

    #[test]
    fn descriptions_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let c = Collections::open(dir.path()).unwrap();
        let long = "é".repeat(MAX_DESCRIPTION_LEN + 1);
        let err = c.create("x", Some(long), vec![], None, None).unwrap_err();
        assert!(matches!(err, CollectionError::Invalid(_)));
        assert!(err.to_string().contains("description"));
        c.create(
            "x",
            Some("é".repeat(MAX_DESCRIPTION_LEN)),
            vec![],
            None,
            None,
        )
        .unwrap();
    }
}
