//! From an image entry to a [`Record`]: the file's facts (hash, size, dimensions, times), image
//! paths kept inside their root, boxes placed on the displayed image and validated (failing
//! closed on sensitive labels), and the record built.

use super::*;

/// Most boxes (readable or not) one image may have. An image with more is withheld with a
/// problem: keeping only the first ones could drop a sensitive box, and records, views and
/// renders must stay small and fast.
pub const MAX_BOXES_PER_IMAGE: usize = 2000;

/// Facts read from an image file: hash, size, dimensions, file times.
#[derive(Debug, Clone, PartialEq)]
pub struct FileFacts {
    /// sha256, hex.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Width as displayed (after the EXIF orientation), from the header.
    pub width: u32,
    /// Height as displayed (after the EXIF orientation), from the header.
    pub height: u32,
    /// EXIF orientation (1 to 8; 1 when the file has none).
    pub orientation: u8,
    /// Creation time (modified time where the filesystem has none).
    pub created: Option<DateTime<Utc>>,
    /// Modified time.
    pub modified: Option<DateTime<Utc>>,
}

/// Reads an image file's facts without decoding its pixels: the header first (format, size,
/// orientation, checked against `limits` before the rest of the file is read), then the bytes,
/// which are hashed and checked to be complete (a truncated JPEG, PNG, GIF or WebP is refused,
/// as Pillow refuses to load one).
///
/// # Errors
/// A human-readable reason: missing file, not a regular file, unreadable, too large, not an
/// image header we understand, or truncated or corrupt data.
pub fn file_facts(path: &Path, limits: &DecodeLimits) -> Result<FileFacts, String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "image file is missing".to_owned(),
        _ => format!("cannot read image file: {e}"),
    })?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() == 0 {
        return Err("image file is empty (0 bytes)".into());
    }
    if meta.len() > limits.max_bytes {
        return Err(format!(
            "image file is {} bytes, more than the limit of {} bytes",
            meta.len(),
            limits.max_bytes
        ));
    }
    let header = probe_file(path, limits).map_err(|e| match e {
        models::ImageError::Io { source, .. } => format!("cannot read image file: {source}"),
        models::ImageError::UnsupportedFormat { .. } => format!("not a readable image: {e}"),
        other => other.to_string(),
    })?;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read image file: {e}"))?;
    if bytes.len() as u64 > limits.max_bytes {
        return Err(format!(
            "image file is {} bytes, more than the limit of {} bytes",
            bytes.len(),
            limits.max_bytes
        ));
    }
    check_complete(&bytes, header.format).map_err(|e| e.to_string())?;
    let modified = meta.modified().ok().map(DateTime::<Utc>::from);
    let created = meta.created().ok().map(DateTime::<Utc>::from).or(modified);
    Ok(FileFacts {
        sha256: hex::encode(Sha256::digest(&bytes)),
        bytes: bytes.len() as u64,
        width: header.width,
        height: header.height,
        orientation: header.orientation,
        created,
        modified,
    })
}

/// Joins a relative export path onto the images root, refusing paths that climb out of it.
///
/// # Errors
/// A reason when the path is absolute or contains `..`.
pub fn resolve_image_path(root: &Path, file_name: &str) -> Result<PathBuf, String> {
    let rel = Path::new(file_name);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!(
            "file_name {file_name:?} points outside the images folder"
        ));
    }
    Ok(root.join(rel))
}

/// [`resolve_image_path`], then follows symbolic links and requires the file they lead to to be
/// inside the images root too: a link inside the folder that points elsewhere is neither
/// ingested nor served. Returns the resolved (canonical) path.
///
/// # Errors
/// A reason when the path escapes the root (by name or by a link) or the file is missing.
pub fn resolve_inside(root: &Path, file_name: &str) -> Result<PathBuf, String> {
    let joined = resolve_image_path(root, file_name)?;
    let root = root
        .canonicalize()
        .map_err(|e| format!("cannot resolve the images folder: {e}"))?;
    let real = joined.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "image file is missing".to_owned(),
        _ => format!("cannot read image file: {e}"),
    })?;
    if !real.starts_with(&root) {
        return Err(format!(
            "file_name {file_name:?} is a link to a file outside the images folder"
        ));
    }
    Ok(real)
}

/// Where a rectangle of the export lies on the displayed image.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Placement {
    /// Inside the displayed image, clipped to it (`true` when clipping changed it).
    Displayed([f32; 4], bool),
    /// Only inside the stored pixels (before the EXIF orientation): turned with the image.
    Turned([f32; 4]),
    /// Not on the image at all (or no area, or not finite).
    Outside,
}

/// How far (in pixels) a box may reach past an edge and still count as drawn inside it.
const EDGE_SLACK: f32 = 1.0;

fn place(rect: [f32; 4], width: u32, height: u32, orientation: u8) -> Placement {
    let [x, y, w, h] = rect;
    if !rect.iter().all(|v| v.is_finite()) || w <= 0.0 || h <= 0.0 {
        return Placement::Outside;
    }
    let fits = |bw: f32, bh: f32| {
        x >= -EDGE_SLACK && y >= -EDGE_SLACK && x + w <= bw + EDGE_SLACK && y + h <= bh + EDGE_SLACK
    };
    let (iw, ih) = (width as f32, height as f32);
    let (sw, sh) = stored_size(width, height, orientation);
    let turned = orientation != 1 && !fits(iw, ih) && fits(sw as f32, sh as f32);
    let r = if turned {
        stored_rect_to_displayed(rect, orientation, sw as f32, sh as f32)
    } else {
        rect
    };
    let (x0, y0) = (r[0].max(0.0), r[1].max(0.0));
    let (x1, y1) = ((r[0] + r[2]).min(iw), (r[1] + r[3]).min(ih));
    if x1 <= x0 || y1 <= y0 {
        return Placement::Outside;
    }
    // Inside the image: kept exactly as given (recomputing the width from clipped edges would
    // change it by float rounding and report a clip that did not happen).
    let inside = r[0] >= 0.0 && r[1] >= 0.0 && r[0] + r[2] <= iw && r[1] + r[3] <= ih;
    let placed = if inside {
        r
    } else {
        [x0, y0, x1 - x0, y1 - y0]
    };
    if turned {
        Placement::Turned(placed)
    } else {
        Placement::Displayed(placed, !inside)
    }
}

/// Reports an annotation that does not become a box (its `reason`), and keeps it with the
/// image's uncertain annotations, so that redaction fails closed: the problem says what that
/// means for serving ([`fails_closed`]).
pub(super) fn skip_box(
    problems: &mut Vec<Problem>,
    file: &str,
    uncertain: &mut Vec<UncertainAnnotation>,
    annotation: UncertainAnnotation,
) {
    problems.push(Problem {
        file: file.to_owned(),
        item: annotation.item.clone(),
        reason: format!(
            "{}; box skipped, and {}",
            annotation.reason,
            fails_closed(&annotation.labels, annotation.region.is_some())
        ),
    });
    uncertain.push(annotation);
}

/// What an unreadable or unplaceable annotation means for serving, for problem reports.
pub(super) fn fails_closed(labels: &[String], placed: bool) -> String {
    let what = if labels.is_empty() {
        "any label".to_owned()
    } else {
        labels
            .iter()
            .map(|l| format!("{l:?}"))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    if placed {
        format!("its region is redacted wherever {what} is a sensitive label")
    } else {
        format!("the whole image is redacted wherever {what} is a sensitive label")
    }
}

/// Checks boxes against the real (displayed) image size: drops degenerate or fully outside
/// boxes and clips partly outside ones, reporting each change. On an image with an EXIF
/// orientation, a box that fits the stored pixels but not the displayed image was drawn on the
/// stored pixels and is turned with the image (reported). A dropped box is returned as an
/// [`UncertainAnnotation`] (it may have been a face), and so is a box whose category id has
/// several names.
pub fn validate_boxes(
    boxes: Vec<RawBox>,
    width: u32,
    height: u32,
    orientation: u8,
    file: &str,
    problems: &mut Vec<Problem>,
) -> (Vec<BoundingBox>, Vec<UncertainAnnotation>) {
    let mut kept = Vec::with_capacity(boxes.len());
    let mut uncertain = Vec::new();
    for b in boxes {
        let rect = [b.x, b.y, b.w, b.h];
        let shown = format!("[{}, {}, {}, {}]", b.x, b.y, b.w, b.h);
        let labels = b.all_labels();
        let mut turned = false;
        let (placed, clipped) = match place(rect, width, height, orientation) {
            Placement::Outside => {
                let finite = rect.iter().all(|v| v.is_finite());
                let why = if !finite || b.w <= 0.0 || b.h <= 0.0 {
                    format!("box {shown} has no area")
                } else {
                    format!("box {shown} lies outside the {width}x{height} image")
                };
                skip_box(
                    problems,
                    file,
                    &mut uncertain,
                    UncertainAnnotation {
                        item: b.item,
                        labels,
                        region: None,
                        reason: why,
                    },
                );
                continue;
            }
            Placement::Turned(r) => {
                problems.push(Problem {
                    file: file.to_owned(),
                    item: b.item.clone(),
                    reason: format!(
                        "box {shown} fits the image's stored pixels but not the {width}x{height} \
                         image as displayed (EXIF orientation {orientation}); taken as drawn on \
                         the stored pixels and turned with the image"
                    ),
                });
                turned = true;
                (r, true)
            }
            Placement::Displayed(r, clipped) => {
                if clipped {
                    problems.push(Problem {
                        file: file.to_owned(),
                        item: b.item.clone(),
                        reason: format!(
                            "box {shown} extends past the {width}x{height} image; clipped"
                        ),
                    });
                }
                (r, clipped)
            }
        };
        let [x, y, w, h] = placed;
        if !b.alt_labels.is_empty() {
            uncertain.push(UncertainAnnotation {
                item: b.item.clone(),
                labels: labels.clone(),
                region: Some(placed),
                reason: format!("its category id has several names ({})", labels.join(", ")),
            });
        }
        let polygons = place_polygons(&b, turned, width, height, orientation, file, problems);
        let outlined: f32 = polygons.iter().map(|r| polygon::area(r)).sum();
        let drawn = if polygons.is_empty() { w * h } else { outlined };
        kept.push(BoundingBox {
            label: b.label,
            supercategory: b.supercategory,
            x,
            y,
            w,
            h,
            area: if clipped {
                drawn
            } else {
                b.area.unwrap_or(drawn)
            },
            polygons,
            iscrowd: b.iscrowd,
            annotator: b.annotator,
            attributes: b.attributes.into_map(),
        });
    }
    (kept, uncertain)
}

/// A box's outlines on the displayed image: turned with it when the box was (`turned`), and
/// clipped to it; an outline with nothing left inside is dropped (reported).
fn place_polygons(
    b: &RawBox,
    turned: bool,
    width: u32,
    height: u32,
    orientation: u8,
    file: &str,
    problems: &mut Vec<Problem>,
) -> Vec<Vec<[f32; 2]>> {
    let (sw, sh) = stored_size(width, height, orientation);
    let mut kept = Vec::with_capacity(b.polygons.len());
    for ring in &b.polygons {
        let ring: Vec<[f32; 2]> = if turned {
            ring.iter()
                .map(|&p| stored_point_to_displayed(p, orientation, sw as f32, sh as f32))
                .collect()
        } else {
            ring.clone()
        };
        match polygon::clip(&ring, width as f32, height as f32) {
            Some(r) => kept.push(r),
            None => problems.push(Problem {
                file: file.to_owned(),
                item: b.item.clone(),
                reason: format!(
                    "a polygon of {} points lies outside the {width}x{height} image; the box is \
                     kept without it",
                    ring.len()
                ),
            }),
        }
    }
    kept
}

/// Builds the record of one entry from its image file's facts, or `None` (with a problem) when
/// the entry has more than `max_boxes` annotations.
pub fn build_record(
    entry: ImageEntry,
    facts: &FileFacts,
    images_root: &Path,
    dataset: &str,
    ingested: DateTime<Utc>,
    max_boxes: usize,
    problems: &mut Vec<Problem>,
) -> Option<Record> {
    let file = entry.file_name.clone();
    let count = entry.boxes.len() + entry.uncertain.len();
    if count > max_boxes {
        problems.push(Problem {
            file,
            item: "annotations".into(),
            reason: format!(
                "{count} boxes on one image, more than the limit of {max_boxes}; record \
                 withheld (dropping some could drop a sensitive one)"
            ),
        });
        return None;
    }
    let orientation = facts.orientation;
    if let (Some(w), Some(h)) = (entry.width, entry.height)
        && (w, h) != (facts.width, facts.height)
    {
        let stored = stored_size(facts.width, facts.height, orientation);
        let reason = if orientation != 1 && (w, h) == stored {
            format!(
                "export says {w}x{h}, the file's stored pixels before its EXIF orientation \
                 {orientation}; the displayed {}x{} is used (boxes that only fit the stored \
                 pixels are turned with the image)",
                facts.width, facts.height
            )
        } else {
            format!(
                "export says {w}x{h}, file is {}x{}; the file's size is used",
                facts.width, facts.height
            )
        };
        problems.push(Problem {
            file: file.clone(),
            item: "image size".into(),
            reason,
        });
    }
    let (boxes, mut uncertain) = validate_boxes(
        entry.boxes,
        facts.width,
        facts.height,
        orientation,
        &file,
        problems,
    );
    // Annotations the reader could not read: place their region, if any, on the image.
    for mut u in entry.uncertain {
        u.region = match u
            .region
            .map(|r| place(r, facts.width, facts.height, orientation))
        {
            Some(Placement::Displayed(r, _) | Placement::Turned(r)) => Some(r),
            _ => None,
        };
        uncertain.push(u);
    }
    let mut labels: Vec<String> = Vec::new();
    let mut supercategories: Vec<String> = Vec::new();
    for b in &boxes {
        if !labels.contains(&b.label) {
            labels.push(b.label.clone());
        }
        if let Some(s) = &b.supercategory
            && !supercategories.contains(s)
        {
            supercategories.push(s.clone());
        }
    }
    // Image-level labels: listed with the others; one no box carries is also an unplaced
    // annotation, so a sensitive tag redacts the whole image.
    for l in &entry.labels {
        if !labels.contains(l) {
            labels.push(l.clone());
        }
        if !boxes.iter().any(|b| &b.label == l) {
            uncertain.push(UncertainAnnotation {
                item: "image label".into(),
                labels: vec![l.clone()],
                region: None,
                reason: "image-level label without a region".into(),
            });
        }
    }
    let metadata = entry.metadata;
    let mut annotators = entry.annotators;
    for b in &boxes {
        if let Some(a) = &b.annotator
            && !annotators.contains(a)
        {
            annotators.push(a.clone());
        }
    }
    // A label both present and said absent is present: the box or tag is the evidence.
    let mut negative_labels: Vec<String> = Vec::new();
    for n in entry.negative_labels {
        if !labels.contains(&n) && !negative_labels.contains(&n) {
            negative_labels.push(n);
        }
    }
    let filename = file.rsplit('/').next().unwrap_or(&file).to_owned();
    Some(Record {
        id: record_id(&facts.sha256),
        filename,
        path: file,
        images_root: images_root.display().to_string(),
        width: facts.width,
        height: facts.height,
        bytes: facts.bytes,
        sha256: facts.sha256.clone(),
        dataset: dataset.to_owned(),
        dates: Dates {
            captured: entry.captured,
            created: facts.created,
            modified: facts.modified,
            annotated: entry.annotated,
            ingested: Some(ingested),
        },
        labels,
        supercategories,
        boxes,
        captions: entry.captions,
        split: entry.split,
        source_id: entry.source_id,
        negative_labels,
        attributes: entry.attributes,
        metadata,
        annotators,
        exports: entry.exports,
        privacy: Privacy {
            orientation,
            uncertain,
        },
    })
}
