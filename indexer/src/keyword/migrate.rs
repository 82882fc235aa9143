//! Schema changes: an index written with another schema (an older imagelens, before a field
//! was added) is rebuilt from the records it stores, so a library never has to be ingested again
//! because the index gained a field.
//!
//! Every document stores its whole [`Record`] as JSON and the fingerprint of the model its
//! vectors were written with (`embedded`); both fields exist in every schema this index has had.
//! The rebuild writes each record again through [`KeywordWriter::upsert`] into a new index
//! beside the old one (`<dir>.migrating`), then swaps the folders: `<dir>` becomes `<dir>.old`,
//! the new one becomes `<dir>`, and `<dir>.old` is removed. A crash before the second rename
//! leaves `<dir>.old` and no index in `<dir>`: [`recover`] puts the old index back and the next
//! open migrates again; a crash after it leaves only the finished new index (and perhaps
//! `<dir>.old`, removed then). The vector store is not touched: a record's payload comes from
//! the same record, so filters on fields it had agree; fields the record did not have are absent
//! from both.

use std::path::{Path, PathBuf};

use tantivy::collector::DocSetCollector;
use tantivy::query::AllQuery;
use tantivy::schema::{Schema, Value};
use tantivy::{Index, TantivyDocument};

use super::schema::Fields;
use super::writer::{KeywordWriter, WRITER_HEAP};
use super::{KResult, KeywordError};
use crate::record::Record;

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

fn io(dir: &Path, e: std::io::Error) -> KeywordError {
    KeywordError::Open {
        path: dir.display().to_string(),
        source: tantivy::TantivyError::IoError(e.into()),
    }
}

/// Finishes or undoes a migration a crash interrupted: an old index whose replacement never
/// arrived goes back in place; a half-written new one is removed.
///
/// # Errors
/// [`KeywordError::Open`] when the folders cannot be renamed or removed.
pub(super) fn recover(dir: &Path) -> KResult<()> {
    let old = sibling(dir, ".old");
    let partial = sibling(dir, ".migrating");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| io(&partial, e))?;
    }
    if old.exists() {
        if dir.join("meta.json").exists() {
            // The new index is in place: the old one is only left to remove.
            std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
        } else {
            if dir.exists() {
                std::fs::remove_dir_all(dir).map_err(|e| io(dir, e))?;
            }
            std::fs::rename(&old, dir).map_err(|e| io(dir, e))?;
        }
    }
    Ok(())
}

/// Rebuilds the index `old`, opened from `dir` (its schema is not `schema`), with `schema`, from
/// the records it stores, and returns how many it rewrote.
///
/// # Errors
/// [`KeywordError::Open`] for folders that cannot be written, [`KeywordError::Corrupt`] for a
/// document without a readable record (the old index is then left as it was), tantivy failures.
pub(super) fn rebuild(dir: &Path, old: Index, schema: &Schema, fields: Fields) -> KResult<usize> {
    let old_schema = old.schema();
    let field = |name: &str| {
        old_schema
            .get_field(name)
            .map_err(|_| KeywordError::Corrupt {
                id: String::new(),
                reason: format!("the index at {} has no {name} field", dir.display()),
            })
    };
    let (record_field, embedded_field) = (field("record")?, field("embedded")?);
    let partial = sibling(dir, ".migrating");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| io(&partial, e))?;
    }
    std::fs::create_dir_all(&partial).map_err(|e| io(&partial, e))?;
    let new = Index::create_in_dir(&partial, schema.clone())?;
    let mut writer = KeywordWriter {
        writer: new.writer_with_num_threads(1, WRITER_HEAP)?,
        fields,
    };
    let searcher = old.reader()?.searcher();
    let docs = searcher.search(&AllQuery, &DocSetCollector)?;
    for addr in &docs {
        let doc: TantivyDocument = searcher.doc(*addr)?;
        let text = |f| doc.get_first(f).and_then(|v| v.as_str()).map(str::to_owned);
        let json = text(record_field).ok_or_else(|| KeywordError::Corrupt {
            id: format!("{addr:?}"),
            reason: "no stored record to rebuild the index from".into(),
        })?;
        let record: Record = serde_json::from_str(&json).map_err(|e| KeywordError::Corrupt {
            id: format!("{addr:?}"),
            reason: e.to_string(),
        })?;
        writer.upsert(&record, &text(embedded_field).unwrap_or_default())?;
    }
    writer.commit()?;
    writer.merge_all()?;
    drop((searcher, old, new));
    let backup = sibling(dir, ".old");
    std::fs::rename(dir, &backup).map_err(|e| io(dir, e))?;
    std::fs::rename(&partial, dir).map_err(|e| io(dir, e))?;
    std::fs::remove_dir_all(&backup).map_err(|e| io(&backup, e))?;
    tracing::info!(
        path = %dir.display(),
        records = docs.len(),
        "keyword index rebuilt with the current schema"
    );
    Ok(docs.len())
}

#[cfg(test)]
mod tests {
    use tantivy::schema::Schema;
    use tantivy::{Index, TantivyDocument};

    use super::sibling;
    use crate::filter::RecordFilter;
    use crate::keyword::KeywordIndex;
    use crate::record::Record;

    fn record(n: u8, split: Option<&str>) -> Record {
        crate::keyword::test_record(n.into(), "fleet", split)
    }

    /// An index as an imagelens without the `split` field wrote it: the current schema less
    /// that field, documents holding the fields every schema had.
    fn write_old_index(dir: &std::path::Path, records: &[Record]) {
        let (current, _) = super::super::schema::schema();
        let mut b = Schema::builder();
        for (_, entry) in current.fields() {
            if entry.name() != "split" {
                b.add_field(entry.clone());
            }
        }
        let old = b.build();
        std::fs::create_dir_all(dir).unwrap();
        let index = Index::create_in_dir(dir, old.clone()).unwrap();
        let mut w = index.writer_with_num_threads(1, 16 * 1024 * 1024).unwrap();
        let f = |name: &str| old.get_field(name).unwrap();
        for r in records {
            let mut doc = TantivyDocument::default();
            doc.add_text(f("id"), &r.id);
            doc.add_text(f("filename"), &r.filename);
            doc.add_text(f("path"), &r.path);
            doc.add_text(f("dataset"), &r.dataset);
            doc.add_text(f("label"), "car");
            doc.add_text(f("fingerprint"), r.fingerprint());
            doc.add_text(f("embedded"), "32@sha256:model");
            doc.add_text(f("record"), serde_json::to_string(r).unwrap());
            w.add_document(doc).unwrap();
        }
        w.commit().unwrap();
    }

    fn check_migrated(dir: &std::path::Path) {
        let kw = KeywordIndex::open(dir).unwrap();
        assert_eq!(kw.len(), 2);
        assert_eq!(
            kw.get(&format!("{:016x}", 1))
                .unwrap()
                .unwrap()
                .split
                .as_deref(),
            Some("val")
        );
        let val = RecordFilter {
            splits: vec!["val".into()],
            ..RecordFilter::default()
        };
        let counted = kw.facets(&val).unwrap();
        assert_eq!(
            counted.total, 1,
            "the split is filterable after the rebuild"
        );
        assert_eq!(counted.splits.get("val"), Some(&1));
        assert_eq!(kw.facets(&RecordFilter::default()).unwrap().total, 2);
        // Change detection survives: same fingerprints, the model the vectors came from.
        let states = kw.states().unwrap();
        for n in [1u8, 2] {
            let s = &states[&format!("{n:016x}")];
            assert_eq!(s.embedded, "32@sha256:model");
            assert_eq!(
                s.fingerprint,
                record(n, [None, Some("val"), None][n as usize]).fingerprint()
            );
        }
        assert!(!sibling(dir, ".old").exists() && !sibling(dir, ".migrating").exists());
        drop(kw);
        // Opened again: nothing left to migrate.
        assert_eq!(KeywordIndex::open(dir).unwrap().len(), 2);
    }

    #[test]
    fn an_index_without_a_newer_field_is_rebuilt_from_its_records() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keyword");
        write_old_index(&dir, &[record(1, Some("val")), record(2, None)]);
        check_migrated(&dir);
    }

    /// An index as imagelens wrote it before its text went into one BM25F field (session 30):
    /// four tokenised fields with positions (`labels_text`, `captions`, `filename_text`,
    /// `metadata`) and no `text`. It is rebuilt from its records on opening, and then finds
    /// them by the words of each part.
    #[test]
    fn an_index_with_four_text_fields_is_rebuilt_into_one() {
        use tantivy::schema::{IndexRecordOption, TextFieldIndexing, TextOptions};
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keyword");
        let (current, _) = super::super::schema::schema();
        let mut b = Schema::builder();
        for (_, entry) in current.fields() {
            if entry.name() != "text" {
                b.add_field(entry.clone());
            }
        }
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("en_stem")
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        for name in ["filename_text", "labels_text", "captions", "metadata"] {
            b.add_text_field(name, text.clone());
        }
        let old = b.build();
        std::fs::create_dir_all(&dir).unwrap();
        let index = Index::create_in_dir(&dir, old.clone()).unwrap();
        let mut w = index.writer_with_num_threads(1, 16 * 1024 * 1024).unwrap();
        let f = |name: &str| old.get_field(name).unwrap();
        let mut records = Vec::new();
        for (n, caption) in [(1u8, "a heron by the pond"), (2, "a truck at night")] {
            let mut r = record(n, None);
            r.captions = vec![caption.into()];
            let mut doc = TantivyDocument::default();
            doc.add_text(f("id"), &r.id);
            doc.add_text(f("label"), "car");
            doc.add_text(f("labels_text"), "car");
            doc.add_text(f("captions"), caption);
            doc.add_text(f("fingerprint"), r.fingerprint());
            doc.add_text(f("embedded"), "32@sha256:model");
            doc.add_text(f("record"), serde_json::to_string(&r).unwrap());
            w.add_document(doc).unwrap();
            records.push(r);
        }
        w.commit().unwrap();
        drop(w);
        drop(index);

        let kw = KeywordIndex::open(&dir).unwrap();
        assert_eq!(kw.len(), 2);
        let found = |text: &str| -> Vec<String> {
            let hits = kw.search(text, &RecordFilter::default(), 10).unwrap();
            hits.into_iter().map(|h| h.id).collect()
        };
        assert_eq!(found("herons"), [records[0].id.clone()]);
        assert_eq!(found("trucks at night"), [records[1].id.clone()]);
        assert_eq!(found("car").len(), 2, "labels are searched");
        assert_eq!(found("img_2")[0], records[1].id, "file names are searched");
        assert!(!sibling(&dir, ".old").exists() && !sibling(&dir, ".migrating").exists());
        drop(kw);
        assert_eq!(KeywordIndex::open(&dir).unwrap().len(), 2);
    }

    #[test]
    fn a_migration_cut_short_is_undone_then_done_again() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keyword");
        // The crash came after the old index was moved aside, before the new one arrived; a
        // half-written new one is there too.
        write_old_index(
            &sibling(&dir, ".old"),
            &[record(1, Some("val")), record(2, None)],
        );
        std::fs::create_dir_all(sibling(&dir, ".migrating")).unwrap();
        std::fs::write(sibling(&dir, ".migrating").join("junk"), b"x").unwrap();
        check_migrated(&dir);
    }
}
