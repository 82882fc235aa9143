//! Ingest through the library API (issue 3): round-trips, re-ingest, updates, bad input.

use std::collections::BTreeSet;
use std::sync::Arc;

use indexer::points::{image_point_id, region_point_id};
use indexer::store::VectorFilter;
use indexer::{IngestOptions, Library, StoreSettings, ingest};
use models::{ClipEmbedder, Embedder};
use serde_json::json;

use crate::common::fixture;

fn embedder(dir: &std::path::Path) -> Arc<dyn Embedder> {
    Arc::new(ClipEmbedder::load_dir(dir, &candle_cpu()).unwrap())
}

fn candle_cpu() -> models::Device {
    models::Device::Cpu
}

fn options(fx: &crate::common::Fixture) -> IngestOptions {
    IngestOptions {
        annotations: vec![fx.synth.instances.clone(), fx.synth.captions.clone()],
        images: fx.synth.images.clone(),
        dataset: "synth".into(),
        batch_size: 5,
        min_region: 16.0,
        progress: false,
        ..IngestOptions::default()
    }
}

fn by_record(id: &str) -> VectorFilter {
    VectorFilter::records(vec![id.into()])
}

#[test]
fn every_record_box_caption_and_date_round_trips_into_both_stores() {
    let fx = fixture(14);
    let e = embedder(&fx.model);
    let mut lib = Library::open(&fx.data, StoreSettings::Edge).unwrap();
    let report = ingest(&mut lib, Some(e.as_ref()), &options(&fx)).unwrap();
    assert_eq!(report.added, 14);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    lib.keyword().reload().unwrap();
    let states = lib.keyword().states().unwrap();
    assert_eq!(states.len(), 14);
    for scene in &fx.synth.scenes {
        let bytes = std::fs::read(fx.synth.images.join(&scene.file_name)).unwrap();
        let sha = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&bytes))
        };
        let id = indexer::record::record_id(&sha);
        let r = lib.keyword().get(&id).unwrap().expect("record stored");
        assert_eq!(r.path, scene.file_name);
        assert_eq!(r.sha256, sha);
        assert_eq!(r.bytes, bytes.len() as u64);
        assert_eq!((r.width, r.height), (64, 48));
        assert_eq!(r.dataset, "synth");
        assert_eq!(r.captions, vec![scene.caption.clone()]);
        assert_eq!(r.dates.captured, Some(scene.captured));
        assert_eq!(r.dates.annotated, Some(indexer::synth::annotated_date()));
        assert!(
            r.dates.created.is_some() && r.dates.modified.is_some() && r.dates.ingested.is_some()
        );
        assert_eq!(r.boxes.len(), scene.boxes.len());
        for (b, s) in r.boxes.iter().zip(&scene.boxes) {
            assert_eq!(b.label, s.label);
            assert_eq!([b.x, b.y, b.w, b.h], s.bbox);
        }
        assert_eq!(r.metadata["location"], json!(scene.place));
        assert_eq!(r.annotators, vec!["imagelens synth".to_owned()]);
        // Vector store: the image point with its text vector and payload, and one point per
        // box large enough.
        let store = lib.store();
        let img = store.retrieve(&[image_point_id(&id)]).unwrap();
        assert_eq!(img.len(), 1);
        assert_eq!(img[0].payload.get_str("record_id"), Some(id.as_str()));
        assert_eq!(
            img[0].payload.get_i64("captured"),
            Some(scene.captured.timestamp())
        );
        let v = store.vector(image_point_id(&id), "image").unwrap().unwrap();
        assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-3);
        assert!(store.vector(image_point_id(&id), "text").unwrap().is_some());
        let big = r
            .boxes
            .iter()
            .filter(|b| b.w >= 16.0 && b.h >= 16.0)
            .count();
        assert_eq!(store.count(&by_record(&id)).unwrap(), 1 + big);
        for (i, b) in r.boxes.iter().enumerate() {
            let has = store
                .vector(region_point_id(&id, i), "region")
                .unwrap()
                .is_some();
            assert_eq!(has, b.w >= 16.0 && b.h >= 16.0, "region {i}");
        }
    }
    let ids = lib.keyword().ids().unwrap();
    assert_eq!(lib.store().distinct("record_id").unwrap(), ids);
    assert_eq!(lib.manifest().counts.records, 14);
    assert_eq!(lib.manifest().model.as_ref(), Some(e.spec()));
}

#[test]
fn reingest_is_a_no_op_and_a_changed_export_updates_what_changed() {
    let fx = fixture(8);
    let e = embedder(&fx.model);
    let mut lib = Library::open(&fx.data, StoreSettings::Edge).unwrap();
    ingest(&mut lib, Some(e.as_ref()), &options(&fx)).unwrap();
    let points_before = lib.store().count(&VectorFilter::default()).unwrap();
    let again = ingest(&mut lib, Some(e.as_ref()), &options(&fx)).unwrap();
    assert_eq!(
        (again.added, again.updated, again.embedded, again.unchanged),
        (0, 0, 0, 8)
    );
    assert_eq!(
        lib.store().count(&VectorFilter::default()).unwrap(),
        points_before
    );

    // Change one caption and drop every box of image 1.
    let mut caps: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&fx.synth.captions).unwrap()).unwrap();
    caps["annotations"][0]["caption"] = json!("a red kite over the dunes");
    std::fs::write(&fx.synth.captions, serde_json::to_vec(&caps).unwrap()).unwrap();
    let mut inst: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&fx.synth.instances).unwrap()).unwrap();
    let anns = inst["annotations"].as_array_mut().unwrap();
    anns.retain(|a| a["image_id"] != 1);
    std::fs::write(&fx.synth.instances, serde_json::to_vec(&inst).unwrap()).unwrap();

    let changed = ingest(&mut lib, Some(e.as_ref()), &options(&fx)).unwrap();
    assert_eq!(
        (changed.added, changed.updated, changed.unchanged),
        (0, 1, 7)
    );
    lib.keyword().reload().unwrap();
    let hits = lib
        .keyword()
        .search("kite dunes", &Default::default(), 10)
        .unwrap();
    assert_eq!(hits.len(), 1);
    let r = lib.keyword().get(&hits[0].id).unwrap().unwrap();
    assert!(r.boxes.is_empty() && r.labels.is_empty());
    assert_eq!(r.captions, vec!["a red kite over the dunes".to_owned()]);
    // Only the image point is left for it: its old region points are gone.
    assert_eq!(lib.store().count(&by_record(&r.id)).unwrap(), 1);
    assert_eq!(lib.keyword().len(), 8);
}

#[test]
fn bad_items_are_reported_one_by_one_and_good_records_still_land() {
    let fx = fixture(6);
    let mut inst: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&fx.synth.instances).unwrap()).unwrap();
    let images = inst["images"].as_array_mut().unwrap();
    images.push(json!({"id": 100, "file_name": "missing.jpg", "width": 10, "height": 10}));
    images.push(json!({"id": 101, "file_name": "empty.jpg", "width": 10, "height": 10}));
    images.push(json!({"id": 102, "file_name": "corrupt.jpg", "width": 64, "height": 48}));
    images.push(json!({"id": 1, "file_name": "dup-id.jpg"}));
    let first_name = images[0]["file_name"].clone();
    images.push(json!({"id": 103, "file_name": first_name}));
    images.push(json!({"file_name": "no-id.jpg"}));
    let anns = inst["annotations"].as_array_mut().unwrap();
    anns.push(json!({"id": 900, "image_id": 1, "category_id": 77, "bbox": [1, 1, 5, 5]}));
    anns.push(json!({"id": 901, "image_id": 1, "category_id": 1, "bbox": [500, 500, 5, 5]}));
    anns.push(json!({"id": 902, "image_id": 1, "category_id": 1, "bbox": [50, 40, 30, 30]}));
    anns.push(json!({"id": 903, "image_id": 1, "category_id": 1, "bbox": "wide"}));
    anns.push(json!({"id": 904, "image_id": 4242, "category_id": 1, "bbox": [1, 1, 2, 2]}));
    std::fs::write(&fx.synth.instances, serde_json::to_vec(&inst).unwrap()).unwrap();
    std::fs::write(fx.synth.images.join("empty.jpg"), b"").unwrap();
    // A valid JPEG header cut short: the header reads, the pixels do not.
    let good = std::fs::read(fx.synth.images.join(fx.synth.scenes[0].file_name.as_str())).unwrap();
    std::fs::write(fx.synth.images.join("corrupt.jpg"), &good[..good.len() / 3]).unwrap();

    let e = embedder(&fx.model);
    let mut lib = Library::open(&fx.data, StoreSettings::Edge).unwrap();
    let report = ingest(&mut lib, Some(e.as_ref()), &options(&fx)).unwrap();
    assert_eq!(report.added, 6, "{:#?}", report.problems);
    let has = |needle: &str| {
        report
            .problems
            .iter()
            .any(|p| format!("{} {} {}", p.file, p.item, p.reason).contains(needle))
    };
    for needle in [
        "missing.jpg",
        "image file is missing",
        "empty (0 bytes)",
        "corrupt.jpg",
        "duplicate image entry (id 1)",
        "duplicate image entry (id 103)",
        "without an integer id",
        "unknown category id 77",
        "lies outside",
        "clipped",
        "not an array of 4 numbers",
        "unknown image id 4242",
    ] {
        assert!(
            has(needle),
            "no problem line with {needle:?} in {:#?}",
            report.problems
        );
    }
    // The report is saved too.
    let saved = report.saved_to.as_ref().unwrap();
    let on_disk: indexer::IngestReport =
        serde_json::from_slice(&std::fs::read(saved).unwrap()).unwrap();
    assert_eq!(on_disk.problems, report.problems);

    // Malformed JSON: the input itself is unreadable, nothing is touched.
    let bad = fx.dir.path().join("bad.json");
    std::fs::write(&bad, b"{\"images\": [").unwrap();
    let err = ingest(
        &mut lib,
        Some(e.as_ref()),
        &IngestOptions {
            annotations: vec![bad],
            ..options(&fx)
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("malformed JSON"), "{err}");
    lib.keyword().reload().unwrap();
    assert_eq!(lib.keyword().len(), 6);

    // Nothing ingestible: an export whose only image is missing.
    let lonely = fx.dir.path().join("lonely.json");
    std::fs::write(
        &lonely,
        serde_json::to_vec(&json!({"images": [{"id": 1, "file_name": "nope.jpg"}]})).unwrap(),
    )
    .unwrap();
    let err = ingest(
        &mut lib,
        Some(e.as_ref()),
        &IngestOptions {
            annotations: vec![lonely],
            ..options(&fx)
        },
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("nothing could be ingested"),
        "{err}"
    );
}

#[test]
fn a_different_model_is_refused_with_a_clear_error() {
    let fx = fixture(3);
    let e = embedder(&fx.model);
    let mut lib = Library::open(&fx.data, StoreSettings::Edge).unwrap();
    ingest(&mut lib, Some(e.as_ref()), &options(&fx)).unwrap();
    let other = models::tiny::write(&fx.dir.path().join("other-clip"), 6).unwrap();
    let e2 = embedder(&other);
    let err = ingest(&mut lib, Some(e2.as_ref()), &options(&fx)).unwrap_err();
    assert!(matches!(err, indexer::Error::ModelMismatch { .. }), "{err}");
    assert!(err.to_string().contains("same --model"));
    let ids: BTreeSet<String> = lib.keyword().ids().unwrap();
    assert_eq!(ids.len(), 3);

    // The same weights computing in bf16 make other vectors: refused too, naming both
    // precisions, and the library keeps its f32 identity.
    let bf16: Arc<dyn Embedder> = Arc::new(
        ClipEmbedder::load_dir_as(&fx.model, &candle_cpu(), models::Precision::Bf16).unwrap(),
    );
    let err = ingest(&mut lib, Some(bf16.as_ref()), &options(&fx)).unwrap_err();
    assert!(matches!(err, indexer::Error::ModelMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("f32") && msg.contains("bf16") && msg.contains("--precision"),
        "{msg}"
    );
    let kept = lib.manifest().model.clone().unwrap();
    assert_eq!(kept.precision, models::Precision::F32);
    assert_eq!(kept.fingerprint(), e.spec().fingerprint());
    assert_eq!(lib.keyword().ids().unwrap().len(), 3);
}

/// Libraries made before the vector layout was recorded keep image and region points in one
/// collection (`vectors/collection.json`, no `vector_layout` in the manifest): they still open,
/// as [`VectorLayout::Single`], and answer exactly as a new library does with its points in two
/// parts (`vectors/images/`, `vectors/regions/`), whose parts hold only their own points.
#[test]
fn a_library_with_one_collection_still_opens_and_answers_as_one_with_images_and_regions_apart() {
    use indexer::VectorLayout;
    use indexer::points::{VectorName, key};
    use indexer::store::{Condition, EdgeStore, VectorQuery, VectorStore};

    let fx = fixture(14);
    let e = embedder(&fx.model);
    let old_dir = fx.dir.path().join("made-before");
    let mut old =
        Library::open_with_layout(&old_dir, StoreSettings::Edge, VectorLayout::Single).unwrap();
    ingest(&mut old, Some(e.as_ref()), &options(&fx)).unwrap();
    drop(old);
    // What a library made before the field existed holds.
    let manifest_path = old_dir.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    assert_eq!(manifest["vector_layout"], json!("single"));
    manifest.as_object_mut().unwrap().remove("vector_layout");
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    assert!(old_dir.join("vectors/collection.json").is_file());

    let old = Library::open(&old_dir, StoreSettings::Edge).unwrap();
    assert_eq!(old.manifest().vector_layout, VectorLayout::Single);
    assert_eq!(old.manifest().format_version, 1);
    let mut new = Library::open(&fx.data, StoreSettings::Edge).unwrap();
    assert_eq!(new.manifest().vector_layout, VectorLayout::Split);
    // A build that reads only format 1 refuses it instead of finding no collection.
    assert_eq!(new.manifest().format_version, 2);
    ingest(&mut new, Some(e.as_ref()), &options(&fx)).unwrap();
    assert!(!fx.data.join("vectors/collection.json").exists());
    for part in ["images", "regions"] {
        assert!(
            fx.data
                .join("vectors")
                .join(part)
                .join("collection.json")
                .is_file()
        );
    }

    let all = VectorFilter::default();
    let regions = VectorFilter {
        must: vec![Condition::MatchAny {
            key: key::KIND.into(),
            any: vec!["region".into()],
        }],
        must_not: vec![],
    };
    let (points, region_points) = (
        old.store().count(&all).unwrap(),
        old.store().count(&regions).unwrap(),
    );
    assert!(region_points > 0 && region_points < points);
    assert_eq!(new.store().count(&all).unwrap(), points);
    assert_eq!(new.store().count(&regions).unwrap(), region_points);
    assert_eq!(
        new.store().distinct(key::RECORD_ID).unwrap(),
        old.store().distinct(key::RECORD_ID).unwrap()
    );
    assert_eq!(
        new.store().collection_spec().unwrap(),
        old.store().collection_spec().unwrap()
    );
    // Each layout's index defaults: one collection keeps the settings it always had.
    assert_eq!(
        old.store().index_settings().unwrap(),
        indexer::store::IndexSettings::default()
    );
    assert_eq!(
        new.store().index_settings().unwrap(),
        indexer::store::IndexSettings::for_parts()
    );
    assert_eq!(
        VectorLayout::Split.index_defaults(),
        indexer::store::IndexSettings::for_parts()
    );

    // Every list answers the same, with and without a filter, from each record's own vectors.
    let ids = old.store().distinct(key::RECORD_ID).unwrap();
    let probe = ids.iter().next().unwrap().clone();
    let region_of_probe = old
        .store()
        .search(&VectorQuery {
            using: VectorName::Region.as_str().into(),
            vector: vec![1.0; e.spec().dim],
            filter: VectorFilter::records(vec![probe.clone()]),
            limit: 1,
            exact: true,
            payload_keys: None,
        })
        .unwrap();
    let mut probes = vec![(
        VectorName::Image,
        old.store()
            .vector(image_point_id(&probe), "image")
            .unwrap()
            .unwrap(),
    )];
    probes.push((
        VectorName::Text,
        old.store()
            .vector(image_point_id(&probe), "text")
            .unwrap()
            .unwrap(),
    ));
    if let Some(hit) = region_of_probe.first() {
        probes.push((
            VectorName::Region,
            old.store().vector(hit.id, "region").unwrap().unwrap(),
        ));
    }
    let cat = VectorFilter {
        must: vec![Condition::MatchAny {
            key: key::LABELS.into(),
            any: vec!["cat".into(), "dog".into(), "car".into()],
        }],
        must_not: vec![],
    };
    for (name, vector) in probes {
        for filter in [all.clone(), cat.clone()] {
            let query = VectorQuery {
                using: name.as_str().into(),
                vector: vector.clone(),
                filter,
                limit: 50,
                exact: true,
                payload_keys: None,
            };
            let a = old.store().search(&query).unwrap();
            let b = new.store().search(&query).unwrap();
            assert!(!a.is_empty() || query.filter != all, "{name}");
            assert_eq!(
                a.iter().map(|h| (h.id, h.score)).collect::<Vec<_>>(),
                b.iter().map(|h| (h.id, h.score)).collect::<Vec<_>>(),
                "{name}"
            );
            let many = new.store().search_many(&[query.clone(), query]).unwrap();
            assert_eq!(many[0], b);
            assert_eq!(many[1], b);
        }
    }

    // Each part holds its own points only.
    drop(new);
    let images = EdgeStore::open(&fx.data.join("vectors/images")).unwrap();
    let regions_part = EdgeStore::open(&fx.data.join("vectors/regions")).unwrap();
    assert_eq!(images.count(&all).unwrap(), points - region_points);
    assert_eq!(regions_part.count(&all).unwrap(), region_points);
    assert_eq!(
        regions_part.collection_spec().unwrap().vectors,
        vec!["region".to_owned()]
    );
    assert_eq!(
        images.collection_spec().unwrap().vectors,
        vec!["image".to_owned(), "text".to_owned()]
    );
}

/// `Library::split_vectors` moves a library of one collection to images and regions apart with
/// every answer kept; leftovers of an interrupted split, on either side of its commit, are
/// removed when the library opens.
#[test]
fn splitting_a_library_of_one_collection_keeps_every_answer_and_cleans_up_after_a_cut() {
    use indexer::VectorLayout;
    use indexer::points::{VectorName, key};
    use indexer::store::{EdgeStore, VectorQuery};

    let fx = fixture(14);
    let e = embedder(&fx.model);
    let mut lib =
        Library::open_with_layout(&fx.data, StoreSettings::Edge, VectorLayout::Single).unwrap();
    ingest(&mut lib, Some(e.as_ref()), &options(&fx)).unwrap();
    let all = VectorFilter::default();
    let points = lib.store().count(&all).unwrap();
    let ids = lib.store().distinct(key::RECORD_ID).unwrap();
    let probe = image_point_id(ids.iter().next().unwrap());
    let queries: Vec<VectorQuery> = [VectorName::Image, VectorName::Text, VectorName::Region]
        .into_iter()
        .map(|name| VectorQuery {
            using: name.as_str().into(),
            vector: lib
                .store()
                .vector(
                    probe,
                    if name == VectorName::Text {
                        "text"
                    } else {
                        "image"
                    },
                )
                .unwrap()
                .unwrap(),
            filter: VectorFilter::default(),
            limit: 40,
            exact: true,
            payload_keys: None,
        })
        .collect();
    let answers = |lib: &Library| -> Vec<Vec<(u64, f32)>> {
        queries
            .iter()
            .map(|q| {
                lib.store()
                    .search(q)
                    .unwrap()
                    .into_iter()
                    .map(|h| (h.id, h.score))
                    .collect()
            })
            .collect()
    };
    let before = answers(&lib);

    // A split cut before it committed left parts behind: opening drops them.
    drop(lib);
    let partial = fx.data.join("vectors/regions");
    drop(EdgeStore::open(&partial).unwrap());
    assert!(partial.exists());
    let mut lib = Library::open(&fx.data, StoreSettings::Edge).unwrap();
    assert_eq!(lib.manifest().vector_layout, VectorLayout::Single);
    assert!(!partial.exists(), "the uncommitted part is gone");

    assert_eq!(lib.manifest().format_version, 1);
    assert_eq!(lib.split_vectors().unwrap(), points as u64);
    assert_eq!(lib.manifest().vector_layout, VectorLayout::Split);
    assert_eq!(lib.manifest().format_version, 2);
    assert_eq!(lib.store().count(&all).unwrap(), points);
    assert_eq!(lib.store().distinct(key::RECORD_ID).unwrap(), ids);
    let after = answers(&lib);
    for (a, b) in before.iter().zip(&after) {
        assert!(!a.is_empty());
        assert_eq!(a.len(), b.len());
        for ((ia, sa), (ib, sb)) in a.iter().zip(b) {
            assert_eq!(ia, ib);
            assert!((sa - sb).abs() < 1e-5, "{sa} vs {sb}");
        }
    }
    assert_eq!(
        lib.store().index_settings().unwrap().full_scan_kb,
        indexer::store::IndexSettings::for_parts().full_scan_kb
    );
    let vectors = fx.data.join("vectors");
    let mut left: Vec<String> = std::fs::read_dir(&vectors)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["images", "regions"], "the one collection is gone");
    assert_eq!(lib.split_vectors().unwrap(), 0, "already split");

    // A split cut after it committed left the one collection behind: opening drops it.
    drop(lib);
    std::fs::write(vectors.join("collection.json"), b"{}").unwrap();
    std::fs::create_dir(vectors.join("shard-0")).unwrap();
    let lib = Library::open(&fx.data, StoreSettings::Edge).unwrap();
    assert!(!vectors.join("collection.json").exists() && !vectors.join("shard-0").exists());
    assert_eq!(answers(&lib), after);

    // A manifest whose format and layout disagree is refused with both named.
    drop(lib);
    let path = fx.data.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    manifest["format_version"] = json!(1);
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let err = Library::open(&fx.data, StoreSettings::Edge)
        .expect_err("format 1 with parts")
        .to_string();
    assert!(
        err.contains("format 1 with images and regions apart"),
        "{err}"
    );
}
