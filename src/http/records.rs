//! `/v1/records/{id}`: the full record, its original image, and a thumbnail with an optional
//! box overlay.
//!
//! Images and thumbnails of records with sensitive boxes (faces, licence plates: see
//! [`crate::governance::redact`]) are served redacted; `?unredacted=true` serves them as they are to roles
//! with [`Permission::ViewUnredacted`], and the audit entry says so.
//!
//! The library does not copy images: they are read from the images folder the record was
//! ingested from, and served only while the file still has the sha256 the record was made
//! from (409 otherwise: a replaced file could show a face where the record has no box) and
//! still lies inside that folder (a symbolic link to elsewhere is not followed). Responses are
//! `Cache-Control: private, no-store`: what is served depends on who asks (redacted or not).
//!
//! `GET /v1/records/{id}` shows server paths (`images_root`, `exports`) and the `annotators`
//! (staff names) only to roles that may read the audit trail (auditors, admins); to others
//! they are empty.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use image::{ImageFormat, Rgb, RgbImage};
use indexer::record::Record;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::IntoParams;

use super::auth::Caller;
use super::{ApiError, ApiQuery, AppState, ErrorBody, Permission, blocking};
use crate::governance::Action;

const CACHE: &str = "private, no-store";

async fn find(state: &AppState, id: String) -> Result<Record, ApiError> {
    let service = state.service().clone();
    blocking(move || {
        service
            .library()
            .keyword()
            .get(&id)
            .map_err(|e| ApiError::from(indexer::Error::from(e)))?
            .ok_or_else(|| ApiError::not_found(format!("no record with id {id:?}")))
    })
    .await
}

/// Reads a record's image file (inside its images folder) and checks it is still the one the
/// record was made from. Blocking.
fn read_verified(record: &Record) -> Result<Vec<u8>, ApiError> {
    let root = std::path::Path::new(&record.images_root);
    let gone = || {
        ApiError::not_found(format!(
            "the image file of record {} is no longer at {}",
            record.id, record.path
        ))
    };
    let path = match indexer::ingest::resolve_inside(root, &record.path) {
        Ok(p) => p,
        Err(reason) if reason.contains("missing") || reason.contains("images folder:") => {
            return Err(gone());
        }
        Err(reason) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "image_unavailable",
                format!(
                    "the image of record {} cannot be served: {reason}",
                    record.id
                ),
            ));
        }
    };
    let changed = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "image_changed",
            format!(
                "the image file of record {} ({}) changed since it was ingested; re-ingest it",
                record.id, record.path
            ),
        )
    };
    // The size first: a replaced file is not read whole to find out.
    match std::fs::metadata(&path) {
        Ok(meta) if meta.len() != record.bytes => return Err(changed()),
        _ => {}
    }
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(gone()),
        Err(e) => return Err(ApiError::internal(format!("{}: {e}", path.display()))),
    };
    let digest = hex::encode(Sha256::digest(&bytes));
    if !digest.eq_ignore_ascii_case(&record.sha256) {
        return Err(changed());
    }
    Ok(bytes)
}

/// The full record: annotations, boxes, captions, every date, hashes.
#[utoipa::path(get, path = "/v1/records/{id}", tag = "records",
    params(("id" = String, Path, description = "record id (16 hex digits)")),
    responses(
        (status = 200, description = "the record", body = Record),
        (status = 404, description = "no such record", body = ErrorBody),
    ))]
pub async fn record(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Record>, ApiError> {
    caller.require(&state, Action::ViewRecord).await?;
    let mut record = find(&state, id).await?;
    caller
        .audit(&state, Action::ViewRecord, None, vec![record.id.clone()])
        .await?;
    if !caller.principal.can(Permission::ReadAudit) {
        // Where the library and its exports live on the server, and which staff annotated the
        // image, are not a searcher's business.
        record.images_root = String::new();
        record.exports = Vec::new();
        record.annotators = Vec::new();
        for b in &mut record.boxes {
            b.annotator = None;
        }
    }
    Ok(Json(record))
}

/// Whether the caller may and does ask for the unredacted picture.
async fn wants_unredacted(
    state: &AppState,
    caller: &Caller,
    asked: Option<bool>,
    action: Action,
) -> Result<bool, ApiError> {
    if asked != Some(true) {
        return Ok(false);
    }
    caller.require_unredacted(state, action).await?;
    Ok(true)
}

/// Audits a view of an image of `record`; `unredacted` when sensitive boxes were shown.
async fn audit_view(
    state: &AppState,
    caller: &Caller,
    action: Action,
    record: &Record,
    unredacted: bool,
) -> Result<(), ApiError> {
    let mut entry = caller.entry(action);
    entry.records = vec![record.id.clone()];
    entry.unredacted = unredacted;
    caller.write(state, entry).await
}

/// Options of the original image.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImageQuery {
    /// Serve sensitive regions unblurred (roles with `view_unredacted` only; audited).
    pub unredacted: Option<bool>,
}

/// The original image file, as ingested.
#[utoipa::path(get, path = "/v1/records/{id}/image", tag = "records",
    params(("id" = String, Path, description = "record id"), ImageQuery),
    responses(
        (status = 200, description = "the image bytes", content_type = "image/*", body = Vec<u8>),
        (status = 404, description = "no such record, or its file is gone", body = ErrorBody),
        (status = 409, description = "the image file changed since it was ingested, or is a link out of the images folder", body = ErrorBody),
        (status = 413, description = "the image has more pixels than allowed", body = ErrorBody),
    ))]
pub async fn image(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: ApiQuery<ImageQuery>,
) -> Result<Response, ApiError> {
    let q = q.parsed()?;
    caller.require(&state, Action::ViewImage).await?;
    let unredacted = wants_unredacted(&state, &caller, q.unredacted, Action::ViewImage).await?;
    let record = find(&state, id).await?;
    let sensitive = state.redaction().applies_to(&record);
    if sensitive && !unredacted {
        let permit = state.slot(state.decode_slots(), "decoding").await?;
        let limits = decode_limits(&state);
        let redaction = state.redaction().clone();
        let record2 = record.clone();
        let (bytes, mime) = blocking(move || {
            let _permit = permit;
            let bytes = read_verified(&record2)?;
            let (mut img, orientation) = models::preprocess::decode_oriented(&bytes, &limits)?;
            redaction.apply(&mut img, &record2, orientation);
            let format = redacted_format(&record2.path);
            Ok((encode(&img, format)?, format.to_mime_type()))
        })
        .await?;
        audit_view(&state, &caller, Action::ViewImage, &record, false).await?;
        return Ok(image_response(bytes, mime));
    }
    let record2 = record.clone();
    let bytes = blocking(move || read_verified(&record2)).await?;
    let mime = image::guess_format(&bytes)
        .map(|f| f.to_mime_type())
        .unwrap_or("application/octet-stream");
    audit_view(&state, &caller, Action::ViewImage, &record, sensitive).await?;
    Ok(image_response(bytes, mime))
}

/// The format a redacted image is re-encoded in: PNG for lossless sources (PNG, WebP), JPEG
/// otherwise.
pub fn redacted_format(path: &str) -> ImageFormat {
    ImageFormat::from_path(path)
        .ok()
        .filter(|f| matches!(f, ImageFormat::Png | ImageFormat::WebP))
        .map(|_| ImageFormat::Png)
        .unwrap_or(ImageFormat::Jpeg)
}

fn image_response(bytes: Vec<u8>, mime: &'static str) -> Response {
    let mut resp = Body::from(bytes).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE));
    h.insert(
        header::VARY,
        HeaderValue::from_static("Authorization, Cookie"),
    );
    resp
}

fn decode_limits(state: &AppState) -> models::preprocess::DecodeLimits {
    models::preprocess::DecodeLimits {
        max_pixels: state.limits().max_image_pixels,
        ..Default::default()
    }
}

/// Reads (verified, see [`read_verified`]) and decodes a record's image; returns it with the
/// EXIF orientation decoding applied.
fn open_image(
    record: &Record,
    limits: &models::preprocess::DecodeLimits,
) -> Result<(RgbImage, u8), ApiError> {
    let bytes = read_verified(record)?;
    Ok(models::preprocess::decode_oriented(&bytes, limits)?)
}

fn encode(img: &RgbImage, format: ImageFormat) -> Result<Vec<u8>, ApiError> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).map_err(ApiError::internal)?;
    Ok(out.into_inner())
}

/// Thumbnail options.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ThumbnailQuery {
    /// Longest edge in pixels (default 256, at most `limits.max_thumbnail`).
    pub size: Option<u32>,
    /// Draw the record's boxes.
    pub boxes: Option<bool>,
    /// Serve sensitive regions unblurred (roles with `view_unredacted` only; audited).
    pub unredacted: Option<bool>,
}

/// A JPEG thumbnail, optionally with the record's boxes drawn on it.
#[utoipa::path(get, path = "/v1/records/{id}/thumbnail", tag = "records",
    params(("id" = String, Path, description = "record id"), ThumbnailQuery),
    responses(
        (status = 200, description = "JPEG thumbnail", content_type = "image/jpeg", body = Vec<u8>),
        (status = 400, description = "bad size", body = ErrorBody),
        (status = 404, description = "no such record, or its file is gone", body = ErrorBody),
        (status = 409, description = "the image file changed since it was ingested, or is a link out of the images folder", body = ErrorBody),
        (status = 413, description = "the image has more pixels than allowed", body = ErrorBody),
        (status = 503, description = "busy; retry", body = ErrorBody),
    ))]
pub async fn thumbnail(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: ApiQuery<ThumbnailQuery>,
) -> Result<Response, ApiError> {
    let q = q.parsed()?;
    caller.require(&state, Action::ViewThumbnail).await?;
    let unredacted = wants_unredacted(&state, &caller, q.unredacted, Action::ViewThumbnail).await?;
    let max = state.limits().max_thumbnail;
    let size = q.size.unwrap_or(256.min(max));
    if !(16..=max).contains(&size) {
        return Err(ApiError::invalid(format!(
            "size must be 16 to {max}, got {size}"
        )));
    }
    let record = find(&state, id).await?;
    let sensitive = state.redaction().applies_to(&record);
    let redaction = (sensitive && !unredacted).then(|| state.redaction().clone());
    let limits = decode_limits(&state);
    let permit = state.slot(state.decode_slots(), "decoding").await?;
    let record2 = record.clone();
    let jpeg = blocking(move || {
        let _permit = permit;
        let (mut img, orientation) = open_image(&record2, &limits)?;
        if let Some(r) = redaction {
            r.apply(&mut img, &record2, orientation);
        }
        let thumb = render_thumbnail(&img, &record2, size, q.boxes.unwrap_or(false));
        encode(&thumb, ImageFormat::Jpeg)
    })
    .await?;
    audit_view(
        &state,
        &caller,
        Action::ViewThumbnail,
        &record,
        sensitive && unredacted,
    )
    .await?;
    Ok(image_response(jpeg, "image/jpeg"))
}

/// Scales `img` to fit `size` x `size` and draws the record's boxes (2 px outlines, one colour
/// per label) when asked. Box coordinates are in the record's pixel space (its width/height).
pub fn render_thumbnail(img: &RgbImage, record: &Record, size: u32, boxes: bool) -> RgbImage {
    let (w, h) = img.dimensions();
    let scale = (size as f32 / w.max(h) as f32).min(1.0);
    let tw = ((w as f32 * scale).round() as u32).max(1);
    let th = ((h as f32 * scale).round() as u32).max(1);
    let mut thumb = image::imageops::thumbnail(img, tw, th);
    if boxes {
        // Boxes are in the record's coordinates; the decoded image can differ from them only
        // if the file changed, so scale by the record's size to stay faithful to the labels.
        let sx = tw as f32 / record.width.max(1) as f32;
        let sy = th as f32 / record.height.max(1) as f32;
        for b in &record.boxes {
            let colour = label_colour(&b.label);
            let x0 = (b.x * sx).round() as i64;
            let y0 = (b.y * sy).round() as i64;
            let x1 = ((b.x + b.w) * sx).round() as i64 - 1;
            let y1 = ((b.y + b.h) * sy).round() as i64 - 1;
            draw_rect(&mut thumb, x0, y0, x1, y1, colour);
        }
    }
    thumb
}

/// The box colours, the web page's (`web/assets/boxes.js`, checked by a test): each at least
/// 4.5:1 against the black outline the page draws label text with.
const PALETTE: [[u8; 3]; 8] = [
    [230, 25, 75],
    [60, 180, 75],
    [255, 225, 25],
    [0, 130, 200],
    [245, 130, 48],
    [179, 102, 255],
    [70, 240, 240],
    [240, 50, 230],
];

/// The colour of a label, as the page's `labelColour` picks it.
fn label_colour(label: &str) -> Rgb<u8> {
    let h = label
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    Rgb(PALETTE[h % PALETTE.len()])
}

fn draw_rect(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb<u8>) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let mut put = |x: i64, y: i64| {
        if (0..w).contains(&x) && (0..h).contains(&y) {
            img.put_pixel(x as u32, y as u32, c);
        }
    };
    for t in 0..2 {
        for x in x0..=x1 {
            put(x, y0 + t);
            put(x, y1 - t);
        }
        for y in y0..=y1 {
            put(x0 + t, y);
            put(x1 - t, y);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use indexer::record::{BoundingBox, Dates};

    #[test]
    fn thumbnail_fits_the_size_and_outlines_boxes() {
        let img = RgbImage::from_pixel(200, 100, Rgb([0, 0, 0]));
        let record = Record {
            source_id: None,
            id: "0".repeat(16),
            filename: "a.png".into(),
            path: "a.png".into(),
            images_root: "/".into(),
            width: 200,
            height: 100,
            bytes: 1,
            sha256: "0".repeat(64),
            dataset: "d".into(),
            dates: Dates::default(),
            labels: vec!["car".into()],
            supercategories: vec![],
            boxes: vec![BoundingBox {
                polygons: Vec::new(),
                label: "car".into(),
                supercategory: None,
                x: 20.0,
                y: 20.0,
                w: 100.0,
                h: 60.0,
                area: 6000.0,
                iscrowd: false,
                annotator: None,
                attributes: Default::default(),
            }],
            captions: vec![],
            split: None,
            negative_labels: Vec::new(),
            attributes: Default::default(),
            metadata: Default::default(),
            annotators: vec![],
            exports: vec![],
            privacy: Default::default(),
        };
        let plain = render_thumbnail(&img, &record, 100, false);
        assert_eq!(plain.dimensions(), (100, 50));
        let boxed = render_thumbnail(&img, &record, 100, true);
        // The box maps to (10,10)-(59,39): its edge is drawn, its inside and outside are not.
        assert_eq!(*boxed.get_pixel(10, 25), label_colour("car"));
        assert_eq!(*boxed.get_pixel(30, 25), Rgb([0, 0, 0]));
        assert_eq!(*boxed.get_pixel(80, 25), Rgb([0, 0, 0]));
    }

    /// The thumbnails' box colours are the page's, in its order (a label has one colour
    /// everywhere), and every label the page draws in them meets WCAG AA (4.5:1) against the
    /// black outline around its text.
    #[test]
    fn the_palette_is_the_pages_and_its_label_text_meets_aa_on_its_outline() {
        let page = include_str!("web/assets/boxes.js");
        let hex: Vec<String> = PALETTE
            .iter()
            .map(|[r, g, b]| format!("'#{r:02x}{g:02x}{b:02x}'"))
            .collect();
        let line = format!("const PALETTE = [{}];", hex.join(", "));
        assert!(page.contains(&line), "boxes.js does not hold {line}");
        let luminance = |c: &[u8; 3]| {
            let f = |v: u8| {
                let v = f64::from(v) / 255.0;
                if v <= 0.03928 {
                    v / 12.92
                } else {
                    ((v + 0.055) / 1.055).powf(2.4)
                }
            };
            0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2])
        };
        for c in &PALETTE {
            let ratio = (luminance(c) + 0.05) / 0.05;
            assert!(ratio >= 4.5, "{c:?}: {ratio:.2}:1 against black");
        }
    }
}
