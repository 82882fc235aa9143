//! The names users choose: the annotation format and the archive format of an export.

use super::*;

/// Annotation format of an exported data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetFormat {
    /// `annotations/instances.json` (images, categories, boxes) and `annotations/captions.json`
    /// (images, captions), readable by the project's own COCO reader and loadable by pycocotools
    /// (a box's polygons as its `segmentation`; a box without any has none).
    ///
    /// Limitation: image-level labels that no box carries cannot be expressed in COCO instances
    /// and are not written; ingesting the export back gives only the boxes' labels.
    Coco,
    /// `labels/<path>.txt` (one `class cx cy w h` line per box, normalised to the image size,
    /// class = index into the sorted box labels), `classes.txt` and `data.yaml`.
    Yolo,
    /// YOLO for segmentation (Ultralytics' segment rows): as [`DatasetFormat::Yolo`], but
    /// every box is one `class x1 y1 x2 y2 ...` outline: its polygon, its parts joined into one
    /// outline as Ultralytics' own COCO converter joins them, or its rectangle when it has
    /// none (Ultralytics reads a file or a data set that mixes box and segment rows as boxes
    /// only, or misreads it).
    #[serde(rename = "yolo-seg")]
    YoloSeg,
    /// `Annotations/<path>.xml` in Pascal VOC XML, one file per image, integer pixel boxes
    /// (1-based and inclusive, as the VOC devkit has them).
    Voc,
    /// `annotations.csv`: one row per box, per image-level label without a box, or per image
    /// with neither.
    Csv,
}

impl DatasetFormat {
    /// Every format, in a fixed order.
    pub const ALL: [DatasetFormat; 5] = [
        DatasetFormat::Coco,
        DatasetFormat::Yolo,
        DatasetFormat::YoloSeg,
        DatasetFormat::Voc,
        DatasetFormat::Csv,
    ];

    /// The lowercase name used in URLs, flags and serialised values.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetFormat::Coco => "coco",
            DatasetFormat::Yolo => "yolo",
            DatasetFormat::YoloSeg => "yolo-seg",
            DatasetFormat::Voc => "voc",
            DatasetFormat::Csv => "csv",
        }
    }
}

impl fmt::Display for DatasetFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DatasetFormat {
    type Err = UnknownFormat;

    /// Parses `coco`, `yolo`, `yolo-seg`, `voc` or `csv`, ignoring case and surrounding spaces.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        by_name(
            &DatasetFormat::ALL,
            DatasetFormat::as_str,
            s,
            "data set format",
        )
    }
}

/// Container of an exported data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveFormat {
    /// A zip file: images stored as they are, text files deflated.
    Zip,
    /// An uncompressed (GNU) tar file.
    Tar,
}

impl ArchiveFormat {
    /// Every container, in a fixed order.
    pub const ALL: [ArchiveFormat; 2] = [ArchiveFormat::Zip, ArchiveFormat::Tar];

    /// The lowercase name used in URLs, flags and serialised values.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveFormat::Zip => "zip",
            ArchiveFormat::Tar => "tar",
        }
    }

    /// The MIME type of the archive, for a `Content-Type` header.
    pub fn content_type(self) -> &'static str {
        match self {
            ArchiveFormat::Zip => "application/zip",
            ArchiveFormat::Tar => "application/x-tar",
        }
    }

    /// The file name extension of the archive, without the dot (`zip`, `tar`).
    pub fn extension(self) -> &'static str {
        self.as_str()
    }
}

impl fmt::Display for ArchiveFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ArchiveFormat {
    type Err = UnknownFormat;

    /// Parses `zip` or `tar`, ignoring case and surrounding spaces.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        by_name(
            &ArchiveFormat::ALL,
            ArchiveFormat::as_str,
            s,
            "archive format",
        )
    }
}

/// A format name that is not one of the supported ones; the message lists those.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {given:?}: use one of {allowed}")]
pub struct UnknownFormat {
    what: &'static str,
    given: String,
    allowed: String,
}

/// The one of `all` whose `name` is `given` (ignoring case and surrounding spaces).
fn by_name<T: Copy>(
    all: &[T],
    name: fn(T) -> &'static str,
    given: &str,
    what: &'static str,
) -> Result<T, UnknownFormat> {
    all.iter()
        .copied()
        .find(|&f| given.trim().eq_ignore_ascii_case(name(f)))
        .ok_or_else(|| UnknownFormat {
            what,
            given: given.to_owned(),
            allowed: all.iter().map(|&f| name(f)).collect::<Vec<_>>().join(", "),
        })
}
