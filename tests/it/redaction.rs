//! Redaction that cannot fail open (issue 9: D2, D3, D4, D9, D17, D18): EXIF-turned faces,
//! unreadable annotations, replaced files, exports, symbolic links, truncated files and too
//! many boxes, through ingest and the HTTP API.
//!
//! The "face" in these images is a red/white checkerboard of 2-px squares; its energy is the
//! mean absolute difference of green between horizontal neighbours inside it (the probe's
//! `redcheck`): about 100 or more intact, under 10 once pixelated and blurred.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use image::{Rgb, RgbImage};
use imagelens::governance::accounts::Role;
use imagelens::governance::redact::Redaction;
use imagelens::http::{AppState, router};
use imagelens::search::SearchService;
use imagelens::settings::Limits;
use indexer::{IngestOptions, IngestReport, Library, StoreSettings, ingest};
use models::preprocess::{DecodeLimits, stored_rect_to_displayed};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::http::{Answer, send_as_is, token_for};

const INTACT: f64 = 60.0;
const BLURRED: f64 = 12.0;

/// A gently shaded grey image with a checkerboard marker on `[x, y, w, h]`.
fn picture(w: u32, h: u32, marker: [u32; 4]) -> RgbImage {
    let [mx, my, mw, mh] = marker;
    RgbImage::from_fn(w, h, |x, y| {
        if (mx..mx + mw).contains(&x) && (my..my + mh).contains(&y) {
            if ((x - mx) / 2 + (y - my) / 2) % 2 == 0 {
                Rgb([255, 0, 0])
            } else {
                Rgb([255, 255, 255])
            }
        } else {
            Rgb([100 + (x % 50) as u8, 110, 120 + (y % 40) as u8])
        }
    })
}

fn png(img: &RgbImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn jpeg(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 100)
        .encode_image(img)
        .unwrap();
    out
}

/// Inserts an EXIF APP1 segment with `orientation` right after a JPEG's SOI.
fn with_exif(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend(1u16.to_be_bytes());
    tiff.extend(0x0112u16.to_be_bytes());
    tiff.extend(3u16.to_be_bytes());
    tiff.extend(1u32.to_be_bytes());
    tiff.extend(orientation.to_be_bytes());
    tiff.extend([0, 0]);
    tiff.extend(0u32.to_be_bytes());
    let mut payload = b"Exif\x00\x00".to_vec();
    payload.extend(tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend([0xff, 0xe1]);
    out.extend(((payload.len() + 2) as u16).to_be_bytes());
    out.extend(payload);
    out.extend(&jpeg[2..]);
    out
}

/// Marker energy of `img` inside `[x, y, w, h]` (3 px in from the edges).
fn energy(img: &RgbImage, r: [f32; 4]) -> f64 {
    let [x, y, w, h] = r.map(|v| v.round() as u32);
    let mut sum = 0.0;
    let mut n = 0.0;
    for yy in y + 3..y + h - 3 {
        for xx in x + 3..x + w - 4 {
            let a = f64::from(img.get_pixel(xx, yy)[1]);
            let b = f64::from(img.get_pixel(xx + 1, yy)[1]);
            sum += (a - b).abs();
            n += 1.0;
        }
    }
    sum / n
}

/// A library ingested (without a model) from `images` and COCO exports, served with one
/// account per role.
struct Lib {
    app: Router,
    tokens: HashMap<Role, String>,
    report: IngestReport,
    images: PathBuf,
    // Last: the stores close before the folder goes.
    dir: TempDir,
}

fn library(images: &[(&str, Vec<u8>)], exports: &[Value]) -> Lib {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("images");
    for (name, bytes) in images {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
    }
    std::fs::create_dir_all(&root).unwrap();
    let annotations: Vec<PathBuf> = exports
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let p = dir.path().join(format!("export{i}.json"));
            std::fs::write(&p, serde_json::to_vec(e).unwrap()).unwrap();
            p
        })
        .collect();
    let mut lib = Library::open(&dir.path().join("library"), StoreSettings::Edge).unwrap();
    let report = ingest(
        &mut lib,
        None,
        &IngestOptions {
            annotations,
            images: root.clone(),
            dataset: "priv".into(),
            progress: false,
            ..IngestOptions::default()
        },
    )
    .unwrap();
    let service = SearchService::new(Arc::new(lib), None, Some("tests".into())).unwrap();
    let state = AppState::new(Arc::new(service), Limits::default(), Redaction::default()).unwrap();
    let tokens = Role::ALL
        .iter()
        .map(|r| (*r, token_for(&state, &format!("{}1", r.as_str()), *r)))
        .collect();
    Lib {
        app: router(state),
        tokens,
        report,
        images: root,
        dir,
    }
}

impl Lib {
    async fn call(&self, role: Role, method: &str, uri: &str, body: Option<Value>) -> Answer {
        let req = Request::builder().method(method).uri(uri).header(
            header::AUTHORIZATION,
            format!("Bearer {}", self.tokens[&role]),
        );
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        };
        send_as_is(&self.app, req.unwrap()).await
    }

    /// Id of the record of `path`.
    async fn id(&self, path: &str) -> String {
        let v = self
            .call(Role::Admin, "GET", "/v1/lookup?limit=500", None)
            .await
            .ok();
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["path"] == path)
            .unwrap_or_else(|| panic!("{path} is not in the library: {v}"))["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The decoded (EXIF-oriented) image or thumbnail a role is served.
    async fn served(&self, role: Role, uri: &str) -> RgbImage {
        let a = self.call(role, "GET", uri, None).await;
        assert_eq!(
            a.status,
            StatusCode::OK,
            "{uri}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(a.headers[header::CACHE_CONTROL], "private, no-store");
        models::preprocess::decode(&a.body, &DecodeLimits::default()).unwrap()
    }

    fn problems(&self, file: &str) -> Vec<String> {
        self.report
            .problems
            .iter()
            .filter(|p| p.file == file || p.item.ends_with(&format!(" {file}")))
            .map(|p| p.reason.clone())
            .collect()
    }
}

const NO_VIEW_UNREDACTED: [Role; 2] = [Role::Searcher, Role::Curator];

#[tokio::test]
async fn exif_turned_faces_are_blurred_for_every_role_whatever_convention_the_box_uses() {
    // Stored 200x150 pixels with the marker at [140, 20, 40, 40] of the stored pixels.
    let stored = [140, 20, 40, 40];
    let raw = jpeg(&picture(200, 150, stored));
    let stored_f = stored.map(|v| v as f32);
    let mut images = Vec::new();
    let mut entries = Vec::new();
    let mut annotations = Vec::new();
    let mut expect = Vec::new();
    for o in [3u8, 6, 8] {
        let display = stored_rect_to_displayed(stored_f, o, 200.0, 150.0);
        // The box on the displayed image (what annotation tools show), and the same marker
        // annotated on the stored pixels; both files differ by one byte of padding so they
        // are two records.
        for (convention, bbox) in [("disp", display), ("raw", stored_f)] {
            let name = format!("rot{o}_{convention}.jpg");
            let mut bytes = with_exif(&raw, u16::from(o));
            bytes.push(if convention == "disp" { 0 } else { 1 });
            images.push((name.clone(), bytes));
            let id = entries.len() + 1;
            entries.push(json!({"id": id, "file_name": name}));
            annotations.push(json!({"id": id, "image_id": id, "category_id": 1, "bbox": bbox}));
            expect.push((name, display));
        }
    }
    let images: Vec<(&str, Vec<u8>)> = images
        .iter()
        .map(|(n, b)| (n.as_str(), b.clone()))
        .collect();
    let lib = library(
        &images,
        &[json!({
            "images": entries,
            "categories": [{"id": 1, "name": "face"}],
            "annotations": annotations,
        })],
    );
    assert_eq!(lib.report.kept(), 6, "{:?}", lib.report.problems);
    for (name, display) in expect {
        let id = lib.id(&name).await;
        // The auditor who asks sees the marker: the measure finds it.
        let open = lib
            .served(
                Role::Auditor,
                &format!("/v1/records/{id}/image?unredacted=true"),
            )
            .await;
        assert!(
            energy(&open, display) > INTACT,
            "{name}: {}",
            energy(&open, display)
        );
        for role in NO_VIEW_UNREDACTED
            .into_iter()
            .chain([Role::Auditor, Role::Admin])
        {
            for uri in [
                format!("/v1/records/{id}/image"),
                format!("/v1/records/{id}/thumbnail?size=1024"),
            ] {
                let img = lib.served(role, &uri).await;
                assert_eq!(img.dimensions(), open.dimensions(), "{name} {uri}");
                let e = energy(&img, display);
                assert!(e < BLURRED, "{name} {uri} as {role:?}: marker energy {e}");
            }
        }
    }
}

#[tokio::test]
async fn unreadable_sensitive_annotations_redact_instead_of_failing_open() {
    let marker = [40, 30, 40, 40];
    let second = [120, 90, 40, 40];
    let m = marker.map(|v| v as f32);
    let s = second.map(|v| v as f32);
    // Every image has two markers; only the first is annotated.
    let img = |seed: u8| {
        let mut p = picture(200, 150, marker);
        let other = picture(200, 150, second);
        for (x, y, px) in p.enumerate_pixels_mut() {
            if (120..160).contains(&x) && (90..130).contains(&y) {
                *px = *other.get_pixel(x, y);
            }
        }
        p.put_pixel(0, 0, Rgb([seed, seed, seed]));
        png(&p)
    };
    let names = [
        "float_id.png",
        "string_id.png",
        "string_bbox.png",
        "outside.png",
        "car_string_bbox.png",
        "relabelled.png",
    ];
    let images: Vec<(&str, Vec<u8>)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, img(i as u8)))
        .collect();
    let entry = |id: usize| json!({"id": id, "file_name": names[id - 1]});
    let main = json!({
        "images": (1..=5).map(entry).collect::<Vec<_>>(),
        "categories": [{"id": 1, "name": "face"}, {"id": 2, "name": "car"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1.0, "bbox": m},
            {"id": 2, "image_id": 2, "category_id": "1", "bbox": m},
            {"id": 3, "image_id": 3, "category_id": 1, "bbox": ["40", "30", "40", "40"]},
            {"id": 4, "image_id": 4, "category_id": 1, "bbox": [500, 500, 40, 40]},
            {"id": 5, "image_id": 5, "category_id": 2, "bbox": ["40", "30", "40", "40"]},
        ],
    });
    // Another export, whose category 1 is defined as face and then again as car.
    let relabelling = json!({
        "images": [{"id": 1, "file_name": "relabelled.png"}],
        "categories": [{"id": 1, "name": "face"}, {"id": 1, "name": "car"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": m}],
    });
    let lib = library(&images, &[main, relabelling]);
    assert_eq!(lib.report.kept(), 6, "{:?}", lib.report.problems);
    // The report says what was done with each.
    assert!(lib.problems("float_id.png").is_empty());
    for (file, words) in [
        ("string_id.png", "its region is redacted"),
        ("string_bbox.png", "whole image is redacted"),
        ("outside.png", "whole image is redacted"),
        ("car_string_bbox.png", "\"car\" is a sensitive label"),
    ] {
        let p = lib.problems(file);
        assert!(p.iter().any(|r| r.contains(words)), "{file}: {p:?}");
    }
    assert!(
        lib.report
            .problems
            .iter()
            .any(|p| p.reason.contains("category id 1 is defined again")),
        "{:?}",
        lib.report.problems
    );

    // (image, annotated marker blurred, other marker blurred)
    let expect = [
        ("float_id.png", true, false),
        ("string_id.png", true, false),
        ("string_bbox.png", true, true),
        ("outside.png", true, true),
        ("car_string_bbox.png", false, false),
        ("relabelled.png", true, false),
    ];
    for (name, first, other) in expect {
        let id = lib.id(name).await;
        for role in NO_VIEW_UNREDACTED {
            let img = lib.served(role, &format!("/v1/records/{id}/image")).await;
            let (e1, e2) = (energy(&img, m), energy(&img, s));
            assert_eq!(e1 < BLURRED, first, "{name} annotated marker: {e1}");
            assert!(first || e1 > INTACT, "{name}: {e1}");
            assert_eq!(e2 < BLURRED, other, "{name} other marker: {e2}");
            assert!(other || e2 > INTACT, "{name}: {e2}");
        }
    }
    // Sensitive-looking records are listed as such: the relabelled face is still findable
    // as a record whose image is redacted, and a plain car image is served byte for byte.
    let id = lib.id("car_string_bbox.png").await;
    let a = lib
        .call(
            Role::Searcher,
            "GET",
            &format!("/v1/records/{id}/image"),
            None,
        )
        .await;
    assert_eq!(
        a.body.as_ref(),
        std::fs::read(lib.images.join("car_string_bbox.png")).unwrap()
    );
}

#[tokio::test]
async fn a_replaced_image_file_is_not_served_under_the_old_record() {
    let face = picture(200, 150, [40, 30, 40, 40]);
    let lib = library(
        &[
            ("face.png", png(&face)),
            ("plain.png", png(&picture(60, 40, [0, 0, 8, 8]))),
        ],
        &[json!({
            "images": [{"id": 1, "file_name": "face.png"}, {"id": 2, "file_name": "plain.png"}],
            "categories": [{"id": 1, "name": "face"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [40, 30, 40, 40]}],
        })],
    );
    let face_id = lib.id("face.png").await;
    let plain_id = lib.id("plain.png").await;
    // Before: served, and never cached across callers.
    lib.served(Role::Searcher, &format!("/v1/records/{plain_id}/image"))
        .await;
    // The face moves to where the record has no box; then every way to see it is refused.
    std::fs::write(
        lib.images.join("face.png"),
        png(&picture(200, 150, [140, 100, 40, 40])),
    )
    .unwrap();
    std::fs::write(
        lib.images.join("plain.png"),
        png(&picture(60, 40, [10, 10, 8, 8])),
    )
    .unwrap();
    for (role, uri) in [
        (Role::Searcher, format!("/v1/records/{face_id}/image")),
        (Role::Searcher, format!("/v1/records/{face_id}/thumbnail")),
        (Role::Searcher, format!("/v1/records/{plain_id}/image")),
        (Role::Searcher, format!("/v1/records/{plain_id}/thumbnail")),
        (
            Role::Auditor,
            format!("/v1/records/{face_id}/image?unredacted=true"),
        ),
    ] {
        let msg = lib
            .call(role, "GET", &uri, None)
            .await
            .error(StatusCode::CONFLICT);
        assert!(
            msg.contains("changed since it was ingested"),
            "{uri}: {msg}"
        );
    }
}

fn zip_entries(bytes: &[u8]) -> HashMap<String, Vec<u8>> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    let mut out = HashMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        out.insert(f.name().to_owned(), data);
    }
    out
}

#[tokio::test]
async fn exports_are_redacted_unless_a_role_that_may_see_originals_asks() {
    let marker = [40, 30, 40, 40];
    let m = marker.map(|v| v as f32);
    let face = png(&picture(200, 150, marker));
    let plate = with_exif(&jpeg(&picture(200, 150, marker)), 6);
    let lib = library(
        &[("face.png", face.clone()), ("plate.jpg", plate.clone())],
        &[json!({
            "images": [{"id": 1, "file_name": "face.png"}, {"id": 2, "file_name": "plate.jpg"}],
            "categories": [{"id": 1, "name": "face"}, {"id": 2, "name": "licence plate"}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": m},
                {"id": 2, "image_id": 2, "category_id": 2,
                 "bbox": stored_rect_to_displayed(m, 6, 200.0, 150.0)},
            ],
        })],
    );
    let ids = vec![lib.id("face.png").await, lib.id("plate.jpg").await];
    let c = lib
        .call(
            Role::Curator,
            "POST",
            "/v1/collections",
            Some(json!({"name": "priv", "ids": ids})),
        )
        .await;
    assert_eq!(c.status, StatusCode::CREATED);

    // A curator gets redacted images, and the manifest and the trail say so.
    let a = lib
        .call(Role::Curator, "GET", "/v1/collections/priv/export", None)
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let files = zip_entries(&a.body);
    let manifest: Value = serde_json::from_slice(&files["provenance.json"]).unwrap();
    assert_eq!(manifest["images_redacted"], true);
    assert!(
        manifest["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["redacted"] == true)
    );
    assert!(
        manifest["library"].get("data_dir").is_none(),
        "no server path: {}",
        manifest["library"]
    );
    let text = String::from_utf8_lossy(&files["provenance.json"]).into_owned();
    assert!(!text.contains(lib.dir.path().to_str().unwrap()), "{text}");
    let face_out =
        models::preprocess::decode(&files["images/face.png"], &DecodeLimits::default()).unwrap();
    assert!(energy(&face_out, m) < BLURRED, "{}", energy(&face_out, m));
    let plate_out =
        models::preprocess::decode(&files["images/plate.jpg"], &DecodeLimits::default()).unwrap();
    let displayed = stored_rect_to_displayed(m, 6, 200.0, 150.0);
    assert!(
        energy(&plate_out, displayed) < BLURRED,
        "{}",
        energy(&plate_out, displayed)
    );

    // The same by search, and originals only for roles with view_unredacted.
    let a = lib
        .call(
            Role::Curator,
            "POST",
            "/v1/export",
            Some(json!({"search": {"filter": {"labels": ["face"]}}, "unredacted": true})),
        )
        .await;
    a.error(StatusCode::FORBIDDEN);
    lib.call(
        Role::Curator,
        "GET",
        "/v1/collections/priv/export?unredacted=true",
        None,
    )
    .await
    .error(StatusCode::FORBIDDEN);
    let a = lib
        .call(
            Role::Admin,
            "GET",
            "/v1/collections/priv/export?unredacted=true&archive=zip",
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let files = zip_entries(&a.body);
    assert_eq!(files["images/face.png"], face);
    assert_eq!(files["images/plate.jpg"], plate);
    let manifest: Value = serde_json::from_slice(&files["provenance.json"]).unwrap();
    assert_eq!(manifest["images_redacted"], false);

    let trail = lib
        .call(Role::Auditor, "GET", "/v1/audit?action=export", None)
        .await
        .ok();
    let seen: Vec<(String, String, bool)> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
                e["unredacted"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(
        seen.contains(&("curator1".into(), "ok".into(), false)),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("admin1".into(), "ok".into(), true)),
        "{seen:?}"
    );
    assert!(
        !seen.contains(&("curator1".into(), "ok".into(), true)),
        "{seen:?}"
    );
}

#[tokio::test]
async fn server_paths_and_staff_names_are_shown_only_to_auditors_and_admins() {
    let lib = library(
        &[("a.png", png(&picture(20, 20, [0, 0, 4, 4])))],
        &[json!({
            "info": {"contributor": "staff-annotator-anna"},
            "images": [{"id": 1, "file_name": "a.png"}],
            "categories": [{"id": 1, "name": "car"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5],
                             "annotator": "staff-annotator-bert"}],
        })],
    );
    let id = lib.id("a.png").await;
    for role in [Role::Searcher, Role::Curator] {
        let v = lib
            .call(role, "GET", &format!("/v1/records/{id}"), None)
            .await
            .ok();
        assert_eq!(v["images_root"], "", "{role:?}");
        assert_eq!(v["exports"], json!([]), "{role:?}");
        assert!(!v.to_string().contains("staff-annotator"), "{role:?}: {v}");
    }
    for role in [Role::Auditor, Role::Admin] {
        let v = lib
            .call(role, "GET", &format!("/v1/records/{id}"), None)
            .await
            .ok();
        assert!(!v["images_root"].as_str().unwrap().is_empty(), "{role:?}");
        assert_eq!(v["exports"].as_array().unwrap().len(), 1, "{role:?}");
        assert_eq!(
            v["annotators"],
            json!(["staff-annotator-anna", "staff-annotator-bert"]),
            "{role:?}"
        );
        assert_eq!(
            v["boxes"][0]["annotator"], "staff-annotator-bert",
            "{role:?}"
        );
    }
    // Search hits carry every box (so the grid reads no record): by the same rule.
    for (role, shown) in [
        (Role::Searcher, false),
        (Role::Curator, false),
        (Role::Admin, true),
    ] {
        let v = lib
            .call(role, "POST", "/v1/search", Some(json!({"query": "car"})))
            .await
            .ok();
        let hit = &v["results"][0];
        assert_eq!(
            hit["all_boxes"].as_array().unwrap().len(),
            1,
            "{role:?}: {v}"
        );
        assert_eq!(hit["boxes"][0]["label"], "car", "{role:?}: {v}");
        assert_eq!(
            v.to_string().contains("staff-annotator-bert"),
            shown,
            "{role:?}: {v}"
        );
    }
}

#[tokio::test]
async fn links_out_of_the_folder_truncated_files_and_box_floods_are_not_ingested() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.png");
    std::fs::write(&secret, png(&picture(30, 30, [0, 0, 8, 8]))).unwrap();
    let full = jpeg(&picture(60, 40, [0, 0, 8, 8]));
    let boxes: Vec<Value> = (0..2001)
        .map(|i| json!({"id": i + 10, "image_id": 3, "category_id": 1, "bbox": [1, 1, 2, 2]}))
        .collect();
    let lib = library(
        &[
            ("cut.jpg", full[..full.len() / 3].to_vec()),
            ("ok.jpg", full.clone()),
            ("flood.png", png(&picture(40, 40, [0, 0, 4, 4]))),
            ("inside.png", png(&picture(30, 30, [1, 1, 8, 8]))),
        ],
        &[json!({
            "images": [
                {"id": 1, "file_name": "cut.jpg"},
                {"id": 2, "file_name": "ok.jpg"},
                {"id": 3, "file_name": "flood.png"},
                {"id": 4, "file_name": "link_out.png"},
                {"id": 5, "file_name": "inside.png"},
            ],
            "categories": [{"id": 1, "name": "face"}],
            "annotations": boxes,
        })],
    );
    // The link was made after the library: ingest again with it in place.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&secret, lib.images.join("link_out.png")).unwrap();
        let mut again =
            Library::open(&lib.dir.path().join("library2"), StoreSettings::Edge).unwrap();
        let report = ingest(
            &mut again,
            None,
            &IngestOptions {
                annotations: vec![lib.dir.path().join("export0.json")],
                images: lib.images.clone(),
                progress: false,
                ..IngestOptions::default()
            },
        )
        .unwrap();
        let why: Vec<&str> = report
            .problems
            .iter()
            .filter(|p| p.file == "link_out.png")
            .map(|p| p.reason.as_str())
            .collect();
        assert!(
            why.iter().any(|r| r.contains("outside the images folder")),
            "{why:?}"
        );
        assert_eq!(report.kept(), 2, "{:?}", report.problems);

        // A served file that became a link to elsewhere is not followed either.
        let id = lib.id("inside.png").await;
        let inside = lib.images.join("inside.png");
        let moved = dir.path().join("inside.png");
        std::fs::rename(&inside, &moved).unwrap();
        std::os::unix::fs::symlink(&moved, &inside).unwrap();
        let msg = lib
            .call(
                Role::Auditor,
                "GET",
                &format!("/v1/records/{id}/image"),
                None,
            )
            .await
            .error(StatusCode::CONFLICT);
        assert!(msg.contains("outside the images folder"), "{msg}");
    }
    let cut = lib.problems("cut.jpg");
    assert!(cut.iter().any(|r| r.contains("truncated")), "{cut:?}");
    let flood = lib.problems("flood.png");
    assert!(flood.iter().any(|r| r.contains("withheld")), "{flood:?}");
    let kept: Vec<String> = {
        let v = lib
            .call(Role::Admin, "GET", "/v1/lookup?limit=500", None)
            .await
            .ok();
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["path"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut kept = kept;
    kept.sort();
    assert_eq!(kept, ["inside.png", "ok.jpg"]);
}
