//! A COCO file read in one pass without holding it as a JSON tree: the top-level object's
//! members are visited in file order, `annotations` one element at a time, each turned at once
//! into a compact [`Ann`] (what the reader needs of it, a few dozen bytes plus its polygons)
//! before the next is read. A 2,000,000-annotation file then costs its annotations' compact
//! form, not a `serde_json::Value` per annotation (about ten times the file's size;
//! `cargo bench --bench parse`). Images, categories and `info` are few and stay `Value`s.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{as_id, attributes_of};
use crate::ingest::{Progress, polygon};

/// The top level of a COCO file: an object's members, or not an object at all.
pub(super) enum Top {
    Object(Export),
    NotObject,
}

/// The members of a COCO object the reader uses; a later duplicate member wins, as in a JSON
/// tree.
#[derive(Default)]
pub(super) struct Export {
    pub info: Option<Value>,
    /// `None` when absent or not an array.
    pub images: Option<Vec<Value>>,
    pub categories: Vec<Value>,
    pub annotations: Vec<Ann>,
}

/// One annotation as the reader needs it.
pub(super) struct Ann {
    /// `image_id` as an integer id, when it is one.
    pub image_id: Option<i64>,
    /// `caption`: absent, or `Some(None)` when present but empty or not a string.
    pub caption: Option<Option<String>>,
    /// Whether it has a `bbox` or a `category_id` member at all (a caption alone has neither).
    pub boxlike: bool,
    pub bbox: Option<[f64; 4]>,
    /// `category_id` as an integer id; `None` when absent, null or not one.
    pub category: Option<i64>,
    pub area: Option<f32>,
    pub iscrowd: bool,
    pub annotator: Option<String>,
    pub attributes: BTreeMap<String, Value>,
    pub segmentation: Segmentation,
}

/// What `segmentation` holds.
pub(super) enum Segmentation {
    /// Absent, empty, or a run-length mask: no outline.
    None,
    Rings(Vec<Vec<[f32; 2]>>),
    /// A list that is not polygons of 3 to 10,000 points.
    Bad,
}

impl Ann {
    fn of(v: &Value) -> Self {
        let get = |k: &str| v.get(k);
        let bbox = get("bbox")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>())
            .and_then(|b| <[f64; 4]>::try_from(b).ok());
        let segmentation = match get("segmentation") {
            Some(Value::Array(parts)) if !parts.is_empty() => {
                let flat: Option<Vec<Vec<f64>>> = parts
                    .iter()
                    .map(|p| p.as_array()?.iter().map(Value::as_f64).collect())
                    .collect();
                match flat.and_then(|f| polygon::rings_of_flat(&f, 1.0, 1.0)) {
                    Some(rings) => Segmentation::Rings(rings),
                    None => Segmentation::Bad,
                }
            }
            _ => Segmentation::None,
        };
        Self {
            image_id: get("image_id").and_then(as_id),
            caption: get("caption").map(|c| {
                c.as_str()
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
            }),
            boxlike: get("bbox").is_some() || get("category_id").is_some(),
            bbox,
            category: match get("category_id") {
                None | Some(Value::Null) => None,
                Some(v) => as_id(v),
            },
            area: get("area").and_then(Value::as_f64).map(|a| a as f32),
            iscrowd: get("iscrowd").and_then(Value::as_i64).unwrap_or(0) != 0,
            annotator: ["annotator", "created_by", "user"]
                .iter()
                .find_map(|k| get(k).and_then(Value::as_str))
                .map(str::to_owned),
            attributes: get("attributes")
                .and_then(Value::as_object)
                .map(attributes_of)
                .unwrap_or_default(),
            segmentation,
        }
    }
}

/// Reads the top level, counting annotations in the [`Progress`] as they are read.
pub(super) struct TopSeed<'p>(pub &'p Progress);

impl<'de> DeserializeSeed<'de> for TopSeed<'_> {
    type Value = Top;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Top, D::Error> {
        d.deserialize_any(TopVisitor(self.0))
    }
}

/// Visits the top level: members of an object, anything else drained and marked.
struct TopVisitor<'p>(&'p Progress);

/// Implements the visitor methods of every JSON value but a map (and, with `seq`, but an
/// array) as "not this", draining what they were given.
macro_rules! other_values {
    ($out:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($out)
        }
    };
}

impl<'de> Visitor<'de> for TopVisitor<'_> {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    other_values!(Top::NotObject);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Top::NotObject)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let mut out = Export::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "info" => out.info = Some(map.next_value()?),
                "images" => {
                    out.images = match map.next_value::<Value>()? {
                        Value::Array(a) => Some(a),
                        _ => None,
                    }
                }
                "categories" => {
                    out.categories = match map.next_value::<Value>()? {
                        Value::Array(a) => a,
                        _ => Vec::new(),
                    }
                }
                "annotations" => out.annotations = map.next_value_seed(Annotations(self.0))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Top::Object(out))
    }
}

/// `annotations`, one element at a time; anything but an array is no annotations.
struct Annotations<'p>(&'p Progress);

impl<'de> DeserializeSeed<'de> for Annotations<'_> {
    type Value = Vec<Ann>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Ann>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Annotations<'_> {
    type Value = Vec<Ann>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of annotations")
    }

    other_values!(Vec::new());

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Ann>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(v) = seq.next_element::<Value>()? {
            out.push(Ann::of(&v));
            self.0.items(1);
        }
        Ok(out)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Ann>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Vec::new())
    }
}
