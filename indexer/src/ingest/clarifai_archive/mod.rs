//! Clarifai dataset-version export archives, as Clarifai writes them: a zip whose `mimetype`
//! entry reads `application/x.clarifai-data+protobuf` and whose other entries
//! (`{split}/..._n{count}`) each hold one serialized `InputBatch` (the layout clarifai-python's
//! `DatasetExportReader` reads).
//!
//! The protobuf messages below carry only the fields imagelens reads, with the field numbers of
//! Clarifai's published `resources.proto` (checked against clarifai-grpc 12.6.0's generated
//! descriptors; unknown fields are skipped, as protobuf requires). Each input becomes the same
//! annotation document the unpacked SDK download holds and is read by
//! [`super::clarifai::read_annotations`], so both forms give the same records.
//!
//! Images: bytes carried in the archive (`data.image.base64`) are written once under
//! `extract_to` (the library's `images/` folder, content-addressed, so a re-ingest writes
//! nothing new) and the entry points there ([`ImageEntry::root`]); an image the archive only
//! links to by hosted URL is looked for in the images folder by input id (`{id}.jpg`, ...,
//! also under `{split}/inputs/`, where the SDK download keeps it) or by the file name in its
//! metadata, and is never downloaded: one it cannot find is a problem and the input is skipped.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{ImageEntry, Problem, Progress};
use crate::IngestError;

/// The `mimetype` entry of a Clarifai export archive.
pub const MIMETYPE: &[u8] = b"application/x.clarifai-data+protobuf";
/// Largest batch entry read (uncompressed bytes).
const MAX_ENTRY_BYTES: u64 = 512 * 1024 * 1024;
/// Largest image carried in the archive that is written out.
const MAX_IMAGE_BYTES: usize = 256 * 1024 * 1024;
/// Most entries read from one archive.
const MAX_ENTRIES: usize = 1_000_000;

/// The protobuf messages of Clarifai's `resources.proto` that an export holds, reduced to the
/// fields read here.
pub mod proto {
    /// `clarifai.api.InputBatch`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InputBatch {
        /// Inputs.
        #[prost(message, repeated, tag = "1")]
        pub inputs: Vec<Input>,
    }

    /// `clarifai.api.Input`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Input {
        /// Input id.
        #[prost(string, tag = "1")]
        pub id: String,
        /// Its data (image, concepts, regions, metadata).
        #[prost(message, optional, tag = "2")]
        pub data: Option<Data>,
        /// When it was added.
        #[prost(message, optional, tag = "4")]
        pub created_at: Option<prost_types::Timestamp>,
        /// When it was last changed.
        #[prost(message, optional, tag = "5")]
        pub modified_at: Option<prost_types::Timestamp>,
        /// The datasets holding it.
        #[prost(string, repeated, tag = "7")]
        pub dataset_ids: Vec<String>,
    }

    /// A message read only for its presence (video, text, audio inputs).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Present {}

    /// `clarifai.api.Data`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Data {
        /// The image.
        #[prost(message, optional, tag = "1")]
        pub image: Option<Image>,
        /// A video (not read: the input is skipped).
        #[prost(message, optional, tag = "2")]
        pub video: Option<Present>,
        /// Image-level concepts.
        #[prost(message, repeated, tag = "3")]
        pub concepts: Vec<Concept>,
        /// Free metadata.
        #[prost(message, optional, tag = "5")]
        pub metadata: Option<prost_types::Struct>,
        /// Regions.
        #[prost(message, repeated, tag = "11")]
        pub regions: Vec<Region>,
        /// A text (not read: the input is skipped).
        #[prost(message, optional, tag = "13")]
        pub text: Option<Present>,
        /// An audio clip (not read: the input is skipped).
        #[prost(message, optional, tag = "14")]
        pub audio: Option<Present>,
    }

    /// `clarifai.api.Image`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Image {
        /// The URL it was added from.
        #[prost(string, tag = "1")]
        pub url: String,
        /// The image bytes, when the export carries them.
        #[prost(bytes = "vec", tag = "2")]
        pub base64: Vec<u8>,
        /// Where Clarifai hosts it.
        #[prost(message, optional, tag = "5")]
        pub hosted: Option<HostedUrl>,
        /// Its size and format as Clarifai stored it.
        #[prost(message, optional, tag = "6")]
        pub image_info: Option<ImageInfo>,
    }

    /// `clarifai.api.HostedURL`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HostedUrl {
        /// URL prefix.
        #[prost(string, tag = "1")]
        pub prefix: String,
        /// URL suffix.
        #[prost(string, tag = "2")]
        pub suffix: String,
        /// Sizes hosted (`orig`, ...).
        #[prost(string, repeated, tag = "3")]
        pub sizes: Vec<String>,
    }

    /// `clarifai.api.ImageInfo`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ImageInfo {
        /// Width in pixels.
        #[prost(int32, tag = "1")]
        pub width: i32,
        /// Height in pixels.
        #[prost(int32, tag = "2")]
        pub height: i32,
        /// Format name.
        #[prost(string, tag = "3")]
        pub format: String,
    }

    /// `clarifai.api.Concept`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Concept {
        /// Concept id.
        #[prost(string, tag = "1")]
        pub id: String,
        /// Concept name.
        #[prost(string, tag = "2")]
        pub name: String,
        /// 1 present, 0 absent (a negative label).
        #[prost(float, tag = "3")]
        pub value: f32,
    }

    /// `clarifai.api.Region`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Region {
        /// Region id.
        #[prost(string, tag = "1")]
        pub id: String,
        /// Where it is.
        #[prost(message, optional, tag = "2")]
        pub region_info: Option<RegionInfo>,
        /// What it holds (its concepts).
        #[prost(message, optional, tag = "3")]
        pub data: Option<Data>,
    }

    /// `clarifai.api.RegionInfo`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RegionInfo {
        /// A box.
        #[prost(message, optional, tag = "1")]
        pub bounding_box: Option<BoundingBox>,
        /// A segmentation mask.
        #[prost(message, optional, tag = "4")]
        pub mask: Option<Mask>,
        /// A polygon.
        #[prost(message, optional, tag = "5")]
        pub polygon: Option<Polygon>,
    }

    /// `clarifai.api.Mask`: an image (a PNG) painting the region.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Mask {
        /// The mask image; only its bytes are read.
        #[prost(message, optional, tag = "2")]
        pub image: Option<Image>,
    }

    /// `clarifai.api.BoundingBox`: fractions of the image's height (rows) and width (cols).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BoundingBox {
        /// Top edge.
        #[prost(float, tag = "1")]
        pub top_row: f32,
        /// Left edge.
        #[prost(float, tag = "2")]
        pub left_col: f32,
        /// Bottom edge.
        #[prost(float, tag = "3")]
        pub bottom_row: f32,
        /// Right edge.
        #[prost(float, tag = "4")]
        pub right_col: f32,
    }

    /// `clarifai.api.Polygon`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Polygon {
        /// Its points.
        #[prost(message, repeated, tag = "1")]
        pub points: Vec<Point>,
    }

    /// `clarifai.api.Point`: fractions of the image's height (row) and width (col).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Point {
        /// Row.
        #[prost(float, tag = "1")]
        pub row: f32,
        /// Column.
        #[prost(float, tag = "2")]
        pub col: f32,
    }
}

/// Whether `path` is a zip whose `mimetype` entry names a Clarifai export.
pub fn is_archive(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    zip::ZipArchive::new(file).is_ok_and(|mut zip| has_mimetype(&mut zip))
}

/// Whether the archive's `mimetype` entry names a Clarifai export.
fn has_mimetype<R: Read + std::io::Seek>(zip: &mut zip::ZipArchive<R>) -> bool {
    let Ok(entry) = zip.by_name("mimetype") else {
        return false;
    };
    let mut head = Vec::new();
    entry
        .take(MIMETYPE.len() as u64 + 16)
        .read_to_end(&mut head)
        .is_ok()
        && head.trim_ascii() == MIMETYPE
}

/// Reads the archive at `path`. `images` is the folder local copies of hosted images are
/// looked for in; `extract_to` is where images carried in the archive are written.
///
/// # Errors
/// [`IngestError::Unreadable`] when the file is not a zip or not a Clarifai export. A batch
/// that does not decode is a problem (its inputs are skipped); the rest is read.
pub fn read_archive(
    path: &Path,
    images: &Path,
    extract_to: &Path,
    problems: &mut Vec<Problem>,
    progress: &Progress,
) -> Result<Vec<ImageEntry>, IngestError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| IngestError::Unreadable {
        file: shown.clone(),
        reason: e.to_string(),
    })?;
    read_archive_from(file, &shown, images, extract_to, problems, progress)
}

/// [`read_archive`] from any seekable reader (an archive in memory), named `shown`.
///
/// # Errors
/// As [`read_archive`].
pub fn read_archive_from<R: Read + std::io::Seek>(
    reader: R,
    shown: &str,
    images: &Path,
    extract_to: &Path,
    problems: &mut Vec<Problem>,
    progress: &Progress,
) -> Result<Vec<ImageEntry>, IngestError> {
    let unreadable = |reason: String| IngestError::Unreadable {
        file: shown.to_owned(),
        reason,
    };
    let mut zip =
        zip::ZipArchive::new(reader).map_err(|e| unreadable(format!("not a zip: {e}")))?;
    if !has_mimetype(&mut zip) {
        return Err(unreadable(format!(
            "a zip without a \"mimetype\" entry reading {}: not a Clarifai dataset export",
            String::from_utf8_lossy(MIMETYPE)
        )));
    }
    let mut names: Vec<String> = zip
        .file_names()
        .filter(|n| *n != "mimetype" && !n.ends_with('/'))
        .map(str::to_owned)
        .collect();
    names.sort();
    let mut entries = Vec::new();
    for name in names.into_iter().take(MAX_ENTRIES) {
        let item = format!("{shown}:{name}");
        let bytes = match zip.by_name(&name) {
            Ok(e) if e.size() > MAX_ENTRY_BYTES => Err(format!(
                "{} bytes, more than the limit of {MAX_ENTRY_BYTES}",
                e.size()
            )),
            Ok(e) => {
                let mut b = Vec::new();
                e.take(MAX_ENTRY_BYTES)
                    .read_to_end(&mut b)
                    .map(|_| b)
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        let batch = bytes.and_then(|b| {
            <proto::InputBatch as prost::Message>::decode(b.as_slice())
                .map_err(|e| format!("not an InputBatch: {e}"))
        });
        let batch = match batch {
            Ok(b) => b,
            Err(reason) => {
                problems.push(Problem {
                    file: item,
                    item: "batch".into(),
                    reason: format!("{reason}; its inputs are skipped"),
                });
                continue;
            }
        };
        let split = name
            .rsplit_once('/')
            .map(|(dir, _)| dir.to_owned())
            .filter(|d| !d.is_empty());
        for input in batch.inputs {
            if let Some(entry) =
                read_input(input, split.as_deref(), &item, images, extract_to, problems)
            {
                progress.entry(&entry);
                entries.push(entry);
            }
        }
    }
    Ok(entries)
}

/// One input as an [`ImageEntry`], or `None` (with a problem) when it has no image here.
fn read_input(
    input: proto::Input,
    split: Option<&str>,
    batch: &str,
    images: &Path,
    extract_to: &Path,
    problems: &mut Vec<Problem>,
) -> Option<ImageEntry> {
    let id = super::text(&input.id).unwrap_or_default();
    let at = format!("input {id:?}");
    let skip = |problems: &mut Vec<Problem>, why: String| {
        problems.push(Problem {
            file: batch.to_owned(),
            item: at.clone(),
            reason: format!("{why}; the input is skipped"),
        });
    };
    let mut data = input.data.unwrap_or_default();
    if data.video.is_some() || data.text.is_some() || data.audio.is_some() {
        skip(problems, "not an image (video, text or audio)".into());
        return None;
    }
    let Some(image) = data.image.take() else {
        skip(problems, "no image".into());
        return None;
    };
    if id.is_empty() {
        skip(problems, "an input without an id".into());
        return None;
    }
    let metadata = data
        .metadata
        .as_ref()
        .map(struct_to_json)
        .unwrap_or_default();
    // Where the image is (carried in the archive, or a local copy of the hosted one), and its
    // header, for the size the region fractions are of.
    let limits = models::preprocess::DecodeLimits::default();
    let (root, file_name, header) = if image.base64.is_empty() {
        match local_copy(images, split, &id, &metadata) {
            Some((rel, path)) => (
                None,
                rel,
                models::preprocess::probe_file(&path, &limits).ok(),
            ),
            None => {
                let hosted = image.hosted.as_ref().map_or_else(
                    || image.url.clone(),
                    |h| format!("{}/orig/{}", h.prefix, h.suffix),
                );
                skip(
                    problems,
                    format!(
                        "the archive links to its image ({}) without carrying it, and no local \
                         copy named {id}.jpg/.png/... or by its metadata file name is under {}; \
                         images are never downloaded",
                        crate::filter::shorten(&hosted, 120),
                        images.display()
                    ),
                );
                return None;
            }
        }
    } else {
        match extract(&image.base64, extract_to) {
            Ok(rel) => {
                let header =
                    models::preprocess::probe(std::io::Cursor::new(&image.base64[..]), &limits);
                (Some(extract_to.to_path_buf()), rel, header.ok())
            }
            Err(why) => {
                skip(problems, why);
                return None;
            }
        }
    };
    let mut entry = ImageEntry::new(file_name, batch);
    entry.root = root;
    let info = image.image_info.unwrap_or_default();
    let stated = (info.width > 0 && info.height > 0)
        .then(|| (info.width.unsigned_abs(), info.height.unsigned_abs()));
    let size = header.map(|h| (h.width, h.height)).or(stated);
    entry.source_id = Some(id.to_string());
    entry.split = split.map(str::to_owned);
    if !input.dataset_ids.is_empty() {
        entry
            .metadata
            .insert("clarifai_dataset_ids".into(), json!(input.dataset_ids));
    }
    let time = |t: &prost_types::Timestamp| {
        chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
    };
    // Clarifai's dates are when the input was added and last changed: the annotation dates.
    entry.annotated = input
        .modified_at
        .as_ref()
        .or(input.created_at.as_ref())
        .and_then(time);
    if let Some(t) = input.created_at.as_ref().and_then(time) {
        entry
            .metadata
            .insert("clarifai_created_at".into(), json!(t.to_rfc3339()));
    }
    // The document the unpacked SDK download holds for this input.
    let mut doc = serde_json::Map::new();
    doc.insert("metadata".into(), Value::Object(metadata));
    doc.insert(
        "concepts".into(),
        Value::Array(data.concepts.iter().map(concept_json).collect()),
    );
    doc.insert(
        "regions".into(),
        Value::Array(data.regions.iter().map(region_json).collect()),
    );
    super::clarifai::read_annotations(&Value::Object(doc), size, batch, &mut entry, problems);
    Some(entry)
}

fn concept_json(c: &proto::Concept) -> Value {
    json!({"id": c.id, "name": c.name, "value": c.value})
}

fn region_json(r: &proto::Region) -> Value {
    let mut info = serde_json::Map::new();
    if let Some(ri) = &r.region_info {
        if let Some(b) = &ri.bounding_box {
            info.insert(
                "boundingBox".into(),
                json!({"topRow": b.top_row, "leftCol": b.left_col,
                       "bottomRow": b.bottom_row, "rightCol": b.right_col}),
            );
        } else if let Some(p) = &ri.polygon {
            let points: Vec<Value> = p
                .points
                .iter()
                .map(|p| json!({"row": p.row, "col": p.col}))
                .collect();
            info.insert("polygon".into(), json!({ "points": points }));
        } else if let Some(m) = &ri.mask {
            use base64::Engine as _;
            let bytes = m.image.as_ref().map_or(&[][..], |i| &i.base64[..]);
            let text = base64::engine::general_purpose::STANDARD.encode(bytes);
            info.insert("mask".into(), json!({"image": {"base64": text}}));
        }
    }
    let concepts: Vec<Value> = r
        .data
        .as_ref()
        .map(|d| d.concepts.iter().map(concept_json).collect())
        .unwrap_or_default();
    json!({"id": r.id, "regionInfo": info, "data": {"concepts": concepts}})
}

/// A protobuf `Struct` as JSON.
fn struct_to_json(s: &prost_types::Struct) -> serde_json::Map<String, Value> {
    s.fields
        .iter()
        .map(|(k, v)| (k.clone(), value_to_json(v, 0)))
        .collect()
}

fn value_to_json(v: &prost_types::Value, depth: usize) -> Value {
    use prost_types::value::Kind;
    if depth > 32 {
        return Value::Null;
    }
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) => {
            serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
        }
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StructValue(s)) => Value::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), value_to_json(v, depth + 1)))
                .collect(),
        ),
        Some(Kind::ListValue(l)) => Value::Array(
            l.values
                .iter()
                .map(|v| value_to_json(v, depth + 1))
                .collect(),
        ),
    }
}

/// The local copy of a hosted image, relative to `images` and as resolved inside it:
/// `{id}.{ext}` in `images`, in `images/{split}/inputs/` or `images/{split}/`, else the file
/// name in the metadata.
fn local_copy(
    images: &Path,
    split: Option<&str>,
    id: &str,
    metadata: &serde_json::Map<String, Value>,
) -> Option<(String, PathBuf)> {
    if id.contains(['/', '\\']) || id.starts_with('.') {
        return None;
    }
    let mut dirs = vec![String::new()];
    if let Some(s) = split.filter(|s| !s.contains("..")) {
        dirs.push(format!("{s}/inputs/"));
        dirs.push(format!("{s}/"));
    }
    for dir in &dirs {
        let exts = super::IMAGE_EXTENSIONS
            .iter()
            .flat_map(|e| [(*e).to_owned(), e.to_ascii_uppercase()]);
        for ext in exts {
            let rel = format!("{dir}{id}.{ext}");
            if let Some(path) = file_inside(images, &rel) {
                return Some((rel, path));
            }
        }
    }
    ["filename", "file_name", "fileName"]
        .iter()
        .filter_map(|k| metadata.get(*k).and_then(Value::as_str))
        .map(|n| n.replace('\\', "/"))
        .find_map(|rel| file_inside(images, &rel).map(|path| (rel, path)))
}

/// `rel` resolved inside `images` when it is a file there.
fn file_inside(images: &Path, rel: &str) -> Option<PathBuf> {
    super::resolve_inside(images, rel)
        .ok()
        .filter(|p| p.is_file())
}

/// Writes image bytes carried in the archive under `dir` as `{sha256}.{ext}` (once: the same
/// bytes are not written again) and returns that name.
fn extract(bytes: &[u8], dir: &Path) -> Result<String, String> {
    use sha2::{Digest, Sha256};
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(format!(
            "its image is {} bytes, more than the limit of {MAX_IMAGE_BYTES}",
            bytes.len()
        ));
    }
    let format = image::guess_format(bytes)
        .map_err(|_| "the image it carries is in no format imagelens reads".to_owned())?;
    let ext = format.extensions_str().first().copied().unwrap_or("img");
    let name = format!("{}.{ext}", hex::encode(Sha256::digest(bytes)));
    let path = dir.join(&name);
    if !path.is_file() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        // Written beside, then renamed: a crash leaves no half-written image under its name.
        let tmp = dir.join(format!(".{name}.partial"));
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(name)
}

#[cfg(test)]
mod tests;
