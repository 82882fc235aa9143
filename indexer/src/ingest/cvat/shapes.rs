//! CVAT's shapes (the same elements in an `<image>` and in a video's `<track>`): their upright
//! box, attributes and outline.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::super::xml::Element;
use super::super::{ImageEntry, Problem, RawBox, bbox_of_points, rotated_bbox};
use crate::record::UncertainAnnotation;

pub(super) fn num(el: &Element, key: &str) -> Option<f64> {
    el.attr(key)
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite())
}

fn points(text: &str) -> Option<Vec<(f64, f64)>> {
    text.split(';')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (x, y) = p.split_once(',')?;
            Some((x.trim().parse().ok()?, y.trim().parse().ok()?))
        })
        .collect()
}

/// The upright box of a shape, in pixels.
pub(super) fn shape_box(el: &Element) -> Option<[f32; 4]> {
    match el.name.as_str() {
        "box" => {
            let (x0, y0) = (num(el, "xtl")?, num(el, "ytl")?);
            let (x1, y1) = (num(el, "xbr")?, num(el, "ybr")?);
            let rect = [x0, y0, x1 - x0, y1 - y0];
            match num(el, "rotation").filter(|r| *r % 360.0 != 0.0) {
                Some(deg) => rotated_bbox(rect, deg, ((x0 + x1) / 2.0, (y0 + y1) / 2.0)),
                None => Some(rect.map(|v| v as f32)),
            }
        }
        "polygon" | "polyline" | "points" => bbox_of_points(&points(el.attr("points")?)?),
        "ellipse" => {
            let (cx, cy, rx, ry) = (
                num(el, "cx")?,
                num(el, "cy")?,
                num(el, "rx")?,
                num(el, "ry")?,
            );
            let (s, c) = num(el, "rotation").unwrap_or(0.0).to_radians().sin_cos();
            let hw = ((rx * c).powi(2) + (ry * s).powi(2)).sqrt();
            let hh = ((rx * s).powi(2) + (ry * c).powi(2)).sqrt();
            bbox_of_points(&[(cx - hw, cy - hh), (cx + hw, cy + hh)])
        }
        "mask" => {
            let (l, t) = (num(el, "left")?, num(el, "top")?);
            let (w, h) = (num(el, "width")?, num(el, "height")?);
            Some([l, t, w, h].map(|v| v as f32))
        }
        "cuboid" => {
            let mut pts = Vec::new();
            for (x, y) in [
                ("xtl1", "ytl1"),
                ("xbr1", "ybr1"),
                ("xtl2", "ytl2"),
                ("xbr2", "ybr2"),
            ] {
                pts.push((num(el, x)?, num(el, y)?));
            }
            bbox_of_points(&pts)
        }
        "skeleton" => {
            let mut pts = Vec::new();
            for child in el.children.iter().filter(|c| c.name == "points") {
                pts.extend(points(child.attr("points")?)?);
            }
            bbox_of_points(&pts)
        }
        _ => None,
    }
}

/// The shape elements of an image or a track.
pub(super) const SHAPES: [&str; 8] = [
    "box", "polygon", "polyline", "points", "ellipse", "mask", "cuboid", "skeleton",
];

/// A shape's or tag's `<attribute>` children, by name.
pub(super) fn attributes(el: &Element) -> BTreeMap<String, Value> {
    el.all("attribute")
        .filter_map(|a| Some((a.attr("name")?.to_owned(), json!(a.text.trim()))))
        .collect()
}

/// Reads one shape (`child`, labelled `label`) into `entry`: a box with its attributes, its
/// occlusion, rotation and shape name, and a polygon's outline; or, without a label or readable
/// coordinates, a problem and an uncertain annotation. Returns the box it added.
pub(super) fn read_shape<'e>(
    child: &Element,
    label: Option<String>,
    item: String,
    entry: &'e mut ImageEntry,
    shown: &str,
    problems: &mut Vec<Problem>,
) -> Option<&'e mut RawBox> {
    let rect = shape_box(child);
    let (Some(label), Some(rect)) = (label.clone(), rect) else {
        let why = if label.is_none() {
            format!("<{}> without a label", child.name)
        } else {
            format!("<{}> without readable coordinates", child.name)
        };
        let labels: Vec<String> = label.into_iter().collect();
        super::super::skip_box(
            problems,
            shown,
            &mut entry.uncertain,
            UncertainAnnotation {
                item,
                labels,
                region: rect,
                reason: why,
            },
        );
        return None;
    };
    let mut b = RawBox::new(label, rect, item);
    let mut attrs = attributes(child);
    if child.name != "box" {
        attrs.insert("shape".into(), json!(child.name));
    }
    if child.attr("occluded").map(str::trim) == Some("1") {
        attrs.insert("occluded".into(), json!(true));
    }
    if let Some(r) = num(child, "rotation").filter(|r| *r % 360.0 != 0.0) {
        attrs.insert("rotation".into(), json!(r));
    }
    b.attributes = attrs.into();
    // A polygon's outline is kept with its box (polylines and points enclose nothing).
    if child.name == "polygon" {
        b.polygons = child
            .attr("points")
            .and_then(points)
            .and_then(|p| super::super::polygon::ring(&p))
            .into_iter()
            .collect();
    }
    entry.boxes.push(b);
    entry.boxes.last_mut()
}
