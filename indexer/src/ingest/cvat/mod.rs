//! CVAT for images 1.1 XML (`annotations.xml`), read as a stream, one `<image>` at a time.
//!
//! `<box>` (`xtl ytl xbr ybr` in pixels, `rotation` in degrees clockwise about its centre: the
//! box kept is the upright box around the turned one), `<polygon>`, `<polyline>`, `<points>`,
//! `<ellipse>`, `<mask>`, `<cuboid>` and `<skeleton>` (the box around their points), `<tag>`
//! (an image-level label, its attributes the image's `attributes`) and `<attribute>` children
//! (kept as the box's `attributes`, with `occluded`, `rotation` and the shape). The task or job in `<meta>` goes to each record's
//! metadata (`cvat_task`), its `dumped` time to the annotated date; `subset` to `split` and the
//! image id to `source_id`. A shape without a label or readable points is uncertain.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::xml::{Element, XmlStream};
use super::{ImageEntry, Problem, Progress, RawBox, bbox_of_points, rotated_bbox};
use crate::IngestError;
use crate::dates::parse_date;
use crate::record::UncertainAnnotation;

/// Reads one CVAT XML file.
///
/// # Errors
/// [`IngestError::Unreadable`] when the file cannot be opened or is not a CVAT
/// `<annotations>` document.
pub fn read_file(
    path: &Path,
    problems: &mut Vec<Problem>,
    progress: &Progress,
) -> Result<Vec<ImageEntry>, IngestError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| IngestError::Unreadable {
        file: shown.clone(),
        reason: e.to_string(),
    })?;
    parse(std::io::BufReader::new(file), &shown, problems, progress).map_err(|reason| {
        IngestError::Unreadable {
            file: shown.clone(),
            reason,
        }
    })
}

fn num(el: &Element, key: &str) -> Option<f64> {
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
fn shape_box(el: &Element) -> Option<[f32; 4]> {
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

const SHAPES: [&str; 8] = [
    "box", "polygon", "polyline", "points", "ellipse", "mask", "cuboid", "skeleton",
];

fn attributes(el: &Element) -> BTreeMap<String, Value> {
    el.all("attribute")
        .filter_map(|a| Some((a.attr("name")?.to_owned(), json!(a.text.trim()))))
        .collect()
}

/// What `<meta>` says about every image.
#[derive(Debug, Default)]
struct Meta {
    task: Option<Value>,
    dumped: Option<DateTime<Utc>>,
    owner: Option<String>,
}

fn read_meta(meta: &Element) -> Meta {
    let mut out = Meta {
        dumped: meta.text_of("dumped").and_then(|d| parse_date(d).ok()),
        ..Meta::default()
    };
    if let Some(task) = ["task", "job", "project"]
        .iter()
        .find_map(|k| meta.child(k).map(|t| (*k, t)))
    {
        let (kind, t) = task;
        let mut m = Map::new();
        m.insert("kind".into(), json!(kind));
        for f in ["id", "name", "created", "updated", "mode"] {
            if let Some(v) = t.text_of(f) {
                m.insert(f.into(), json!(v));
            }
        }
        out.owner = t
            .child("owner")
            .and_then(|o| o.text_of("username"))
            .map(str::to_owned);
        out.task = Some(Value::Object(m));
    }
    out
}

/// Parses a CVAT for images XML document.
///
/// # Errors
/// A reason when the input is not XML or its root is not `<annotations>`. The XML breaking
/// later is a problem: the images read before it are kept.
pub fn parse<R: BufRead>(
    input: R,
    shown: &str,
    problems: &mut Vec<Problem>,
    progress: &Progress,
) -> Result<Vec<ImageEntry>, String> {
    let (mut stream, root) = XmlStream::open(input)?;
    if root.name != "annotations" {
        return Err(format!(
            "not a CVAT for images XML: the root element is <{}>",
            root.name
        ));
    }
    let problem = |item: String, reason: String| Problem {
        file: shown.to_owned(),
        item,
        reason,
    };
    let mut meta = Meta::default();
    let mut entries = Vec::new();
    let mut n = 0usize;
    loop {
        let el = match stream.next_child() {
            Ok(Some(el)) => el,
            Ok(None) => break,
            Err(e) => {
                problems.push(problem(
                    format!("after image[{n}]"),
                    format!("{e}; the images before it are kept, the rest are not read"),
                ));
                break;
            }
        };
        match el.name.as_str() {
            "meta" => meta = read_meta(&el),
            "version" if el.text.trim() != "1.1" => {
                problems.push(problem(
                    "version".into(),
                    format!("version {:?}, read as 1.1", el.text.trim()),
                ));
            }
            "image" => {
                let i = n;
                n += 1;
                if let Some(entry) = read_image(&el, i, &meta, shown, problems) {
                    progress.entry(&entry);
                    entries.push(entry);
                }
            }
            "track" => problems.push(problem(
                format!("track {}", el.attr("id").unwrap_or("?")),
                "a track of CVAT for video; export as CVAT for images 1.1 to ingest it; skipped"
                    .into(),
            )),
            _ => {}
        }
    }
    Ok(entries)
}

fn read_image(
    el: &Element,
    i: usize,
    meta: &Meta,
    shown: &str,
    problems: &mut Vec<Problem>,
) -> Option<ImageEntry> {
    let problem = |item: String, reason: String| Problem {
        file: shown.to_owned(),
        item,
        reason,
    };
    let Some(name) = el
        .attr("name")
        .map(|n| n.trim().replace('\\', "/"))
        .filter(|n| !n.is_empty())
    else {
        problems.push(problem(
            format!("image[{i}]"),
            "image without a name; skipped".into(),
        ));
        return None;
    };
    let mut entry = ImageEntry::new(name.clone(), shown);
    let dim = |k: &str| {
        num(el, k)
            .filter(|v| *v >= 1.0 && *v <= f64::from(u32::MAX) && v.fract() == 0.0)
            .map(|v| v as u32)
    };
    entry.width = dim("width");
    entry.height = dim("height");
    entry.annotated = meta.dumped;
    entry.annotators.extend(meta.owner.clone());
    if let Some(t) = &meta.task {
        entry.metadata.insert("cvat_task".into(), t.clone());
    }
    if let Some(id) = el.attr("id") {
        entry.source_id = Some(id.to_owned());
    }
    if let Some(s) = el.attr("subset").and_then(super::text) {
        entry.split = Some(s);
    }
    for (k, child) in el.children.iter().enumerate() {
        let label = child.attr("label").and_then(super::text);
        let item = format!(
            "image[{i}] {name} {}[{k}]{}",
            child.name,
            label
                .as_deref()
                .map(|l| format!(" {l}"))
                .unwrap_or_default()
        );
        if child.name == "tag" {
            match label {
                Some(l) => {
                    // A tag is an image-level label: its attributes are the image's.
                    for (key, value) in attributes(child) {
                        entry.attributes.entry(key).or_insert(value);
                    }
                    entry.add_label(&l);
                }
                None => problems.push(problem(item, "tag without a label; skipped".into())),
            }
            continue;
        }
        if !SHAPES.contains(&child.name.as_str()) {
            continue;
        }
        let rect = shape_box(child);
        let (Some(label), Some(rect)) = (label.clone(), rect) else {
            let why = if label.is_none() {
                format!("<{}> without a label", child.name)
            } else {
                format!("<{}> without readable coordinates", child.name)
            };
            let labels: Vec<String> = label.into_iter().collect();
            super::skip_box(
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
            continue;
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
                .and_then(|p| super::polygon::ring(&p))
                .into_iter()
                .collect();
        }
        entry.boxes.push(b);
    }
    Some(entry)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    pub(crate) const VALID: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task><id>7</id><name>street</name><owner><username>ann</username></owner></task>
    <dumped>2024-03-04 05:06:07.123456+00:00</dumped>
  </meta>
  <image id="0" name="a.jpg" width="100" height="80" subset="train">
    <box label="car" source="manual" occluded="1" xtl="10.5" ytl="20" xbr="30.5" ybr="40" z_order="0">
      <attribute name="color">white</attribute>
    </box>
    <box label="face" occluded="0" xtl="40" ytl="40" xbr="60" ybr="50" rotation="90"/>
    <polygon label="plate" occluded="0" points="1,2;5,2;5,9.5;1,9" z_order="0"/>
    <points label="face" points="3,3"/>
    <polyline label="car" points="x,1"/>
    <box xtl="0" ytl="0" xbr="1" ybr="1"/>
    <tag label="night"><attribute name="sky">clear</attribute></tag>
  </image>
  <image id="1" name="dir/b.png" width="10" height="10"></image>
  <image id="2" width="10" height="10"></image>
</annotations>"#;

    #[test]
    fn a_cvat_file_reads_to_exactly_its_shapes_tags_and_meta() {
        let mut problems = Vec::new();
        let entries = parse(
            VALID.as_bytes(),
            "c.xml",
            &mut problems,
            &Progress::default(),
        )
        .unwrap();
        assert_eq!(entries.len(), 2);
        let a = &entries[0];
        assert_eq!(a.file_name, "a.jpg");
        assert_eq!((a.width, a.height), (Some(100), Some(80)));
        assert_eq!(a.annotators, ["ann"]);
        assert_eq!(
            a.annotated,
            Some(parse_date("2024-03-04T05:06:07.123456Z").unwrap())
        );
        assert_eq!(a.split.as_deref(), Some("train"));
        assert_eq!(a.source_id.as_deref(), Some("0"));
        assert_eq!(a.metadata["cvat_task"]["name"], json!("street"));
        assert_eq!(a.attributes["sky"], json!("clear"));
        assert!(!a.metadata.contains_key("tag_attributes"));
        assert_eq!(a.labels, ["night"]);
        let got: Vec<_> = a
            .boxes
            .iter()
            .map(|b| (b.label.as_str(), [b.x, b.y, b.w, b.h]))
            .collect();
        assert_eq!(
            got,
            [
                ("car", [10.5, 20.0, 20.0, 20.0]),
                ("face", [45.0, 35.0, 10.0, 20.0]),
                ("plate", [1.0, 2.0, 4.0, 7.5]),
                ("face", [3.0, 3.0, 0.0, 0.0]),
            ]
        );
        assert_eq!(
            a.boxes[0].attributes,
            BTreeMap::from([
                ("color".into(), json!("white")),
                ("occluded".into(), json!(true))
            ])
        );
        assert_eq!(a.boxes[1].attributes["rotation"], json!(90.0));
        assert_eq!(a.boxes[2].attributes["shape"], json!("polygon"));
        // The polygon's outline is kept with its box; the other shapes have none.
        assert_eq!(
            a.boxes[2].polygons,
            [vec![[1.0, 2.0], [5.0, 2.0], [5.0, 9.5], [1.0, 9.0]]]
        );
        assert!(a.boxes.iter().filter(|b| b.polygons.is_empty()).count() == 3);
        let u: Vec<_> = a
            .uncertain
            .iter()
            .map(|u| (u.labels.clone(), u.region))
            .collect();
        assert_eq!(
            u,
            [
                (vec!["car".to_owned()], None),
                (vec![], Some([0.0, 0.0, 1.0, 1.0]))
            ]
        );
        assert_eq!(entries[1].file_name, "dir/b.png");
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[2].reason.contains("without a name"));
    }

    #[test]
    fn a_file_that_breaks_keeps_the_images_before_the_break() {
        let cut = &VALID[..VALID.find("<image id=\"2\"").unwrap() + 10];
        let mut problems = Vec::new();
        let entries = parse(cut.as_bytes(), "c.xml", &mut problems, &Progress::default()).unwrap();
        assert_eq!(entries.len(), 2);
        assert!(
            problems.last().unwrap().reason.contains("not read"),
            "{problems:?}"
        );
        assert!(
            parse(
                "<annotation/>".as_bytes(),
                "c.xml",
                &mut problems,
                &Progress::default()
            )
            .is_err()
        );
        assert!(
            parse(
                "{}".as_bytes(),
                "c.xml",
                &mut problems,
                &Progress::default()
            )
            .is_err()
        );
    }

    proptest! {
        #![proptest_config(crate::ingest::proptest_config())]

        #[test]
        fn arbitrary_bytes_are_read_or_refused_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Err(e) = parse(bytes.as_slice(), "fuzz.xml", &mut Vec::new(), &Progress::default()) {
                prop_assert!(!e.is_empty());
            }
        }

        #[test]
        fn mutated_files_are_read_or_reported(edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..12, "[<>/=\"a-z0-9 .,;-]{0,6}"), 1..4)) {
            let mut text = VALID.to_owned();
            for (at, len, insert) in &edits {
                let i = at.index(text.len() + 1);
                let j = (i + len).min(text.len());
                text.replace_range(i..j, insert);
            }
            let mut problems = Vec::new();
            match parse(text.as_bytes(), "fuzz.xml", &mut problems, &Progress::default()) {
                Err(e) => prop_assert!(!e.is_empty()),
                Ok(entries) => {
                    for e in &entries {
                        for u in &e.uncertain {
                            prop_assert!(problems.iter().any(|p| p.item == u.item));
                        }
                    }
                }
            }
        }
    }
}
