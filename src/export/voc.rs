//! The Pascal VOC writer: one XML annotation per image, text escaped for XML and boxes rounded
//! to integer pixels inside the image.

use indexer::record::Record;

use super::*;

pub(super) fn voc_annotation_file(path: &str) -> String {
    format!("Annotations/{}", replace_extension(path, "xml"))
}

/// One XML annotation per image, and `ImageSets/Main/{split}.txt` for each split a record is
/// in (the annotation file's stem a line, as the VOC reader reads splits back). A split whose
/// name is not a plain file name (letters, digits, `-`, `_`) gets no list.
pub(super) fn voc_files(records: &[Record]) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = records
        .iter()
        .map(|r| (voc_annotation_file(&r.path), voc_xml(r).into_bytes()))
        .collect();
    let mut lists: std::collections::BTreeMap<&str, String> = std::collections::BTreeMap::new();
    for r in records {
        let Some(split) = r.split.as_deref().filter(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        }) else {
            continue;
        };
        let name = r.path.rsplit('/').next().unwrap_or(&r.path);
        let stem = match name.rfind('.') {
            Some(i) if i > 0 => &name[..i],
            _ => name,
        };
        let list = lists.entry(split).or_default();
        list.push_str(stem);
        list.push('\n');
    }
    for (split, list) in lists {
        files.push((format!("ImageSets/Main/{split}.txt"), list.into_bytes()));
    }
    files
}

/// Escapes text for XML element content and attribute values. Characters XML 1.0 does not allow
/// at all (most control characters) become U+FFFD, since no escape can represent them.
pub(super) fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' || matches!(c, '\u{FFFE}' | '\u{FFFF}') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// One image's Pascal VOC annotation. Boxes are integer pixels, rounded (`xmin = round(x)`,
/// `xmax = round(x + w)`) and kept inside the image. VOC has no crowd flag: crowd boxes are
/// written like the others.
pub(super) fn voc_xml(r: &Record) -> String {
    let (folder, filename) = match r.path.rsplit_once('/') {
        Some((dir, name)) => (format!("images/{dir}"), name),
        None => ("images".to_owned(), r.path.as_str()),
    };
    let mut xml = String::from("<annotation>\n");
    xml.push_str(&format!(
        "  <folder>{}</folder>\n  <filename>{}</filename>\n  <path>images/{}</path>\n",
        xml_escape(&folder),
        xml_escape(filename),
        xml_escape(&r.path)
    ));
    xml.push_str(&format!(
        "  <source>\n    <database>{}</database>\n  </source>\n",
        xml_escape(&r.dataset)
    ));
    xml.push_str(&format!(
        "  <size>\n    <width>{}</width>\n    <height>{}</height>\n    <depth>3</depth>\n  \
         </size>\n  <segmented>0</segmented>\n",
        r.width, r.height
    ));
    let (iw, ih) = (f64::from(r.width), f64::from(r.height));
    let px = |v: f64, max: f64| v.round().clamp(0.0, max) as u32;
    for b in &r.boxes {
        // VOC's pixels are 1-based and inclusive: 0-based columns x..x+w are xmin = x + 1 to
        // xmax = x + w (the Pascal VOC devkit's convention, which every VOC reader undoes).
        let (x, y) = (f64::from(b.x), f64::from(b.y));
        let (xmin, ymin) = (px(x, iw) + 1, px(y, ih) + 1);
        let xmax = px(x + f64::from(b.w), iw);
        let ymax = px(y + f64::from(b.h), ih);
        // VOC's own fields from the box's attributes, the rest in CVAT's VOC flavour
        // (`<attributes><attribute><name/><value/>`), which the VOC reader reads back.
        let pose = b
            .attributes
            .get("pose")
            .and_then(|v| v.as_str())
            .unwrap_or("Unspecified");
        let flag = |k: &str| u8::from(b.attributes.get(k) == Some(&serde_json::Value::Bool(true)));
        let mut extra = String::new();
        if flag("occluded") == 1 {
            extra.push_str("    <occluded>1</occluded>\n");
        }
        let rest: Vec<(&String, &serde_json::Value)> = b
            .attributes
            .iter()
            .filter(|(k, v)| {
                !(k.as_str() == "pose" && v.is_string()
                    || ["truncated", "difficult", "occluded"].contains(&k.as_str())
                        && v.is_boolean())
            })
            .collect();
        if !rest.is_empty() {
            extra.push_str("    <attributes>\n");
            for (k, v) in rest {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                extra.push_str(&format!(
                    "      <attribute><name>{}</name><value>{}</value></attribute>\n",
                    xml_escape(k),
                    xml_escape(&v)
                ));
            }
            extra.push_str("    </attributes>\n");
        }
        xml.push_str(&format!(
            "  <object>\n    <name>{}</name>\n    <pose>{}</pose>\n    \
             <truncated>{}</truncated>\n    <difficult>{}</difficult>\n{extra}    <bndbox>\n      \
             <xmin>{xmin}</xmin>\n      <ymin>{ymin}</ymin>\n      <xmax>{xmax}</xmax>\n      \
             <ymax>{ymax}</ymax>\n    </bndbox>\n  </object>\n",
            xml_escape(&b.label),
            xml_escape(pose),
            flag("truncated"),
            flag("difficult"),
        ));
    }
    xml.push_str("</annotation>\n");
    xml
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::export::tests::*;

    /// Each split is an `ImageSets/Main/{split}.txt` of annotation stems; no split, no list.
    #[test]
    fn voc_export_lists_each_split_in_image_sets() {
        let src = tempfile::tempdir().unwrap();
        let mut records = sample(src.path());
        records[0].split = Some("val".into());
        records[1].split = Some("train".into());
        records[2].split = None;
        let entries = tar_entries(&export(&records, DatasetFormat::Voc, ArchiveFormat::Tar));
        let sets: Vec<&String> = entries
            .keys()
            .filter(|k| k.starts_with("ImageSets/"))
            .collect();
        assert_eq!(sets, ["ImageSets/Main/train.txt", "ImageSets/Main/val.txt"]);
        assert_eq!(entries["ImageSets/Main/val.txt"], b"one\n");
        assert_eq!(entries["ImageSets/Main/train.txt"], b"two\n");
    }

    #[test]
    fn box_attributes_become_voc_fields_and_cvat_attributes() {
        let src = tempfile::tempdir().unwrap();
        let mut b = bbox("car", None, 1.0, 1.0, 4.0, 4.0, 16.0, false);
        for (k, v) in [
            ("pose", serde_json::json!("Left")),
            ("truncated", serde_json::json!(true)),
            ("occluded", serde_json::json!(true)),
            ("color", serde_json::json!("<white>")),
            ("rotation", serde_json::json!(90.0)),
        ] {
            b.attributes.insert(k.into(), v);
        }
        let plain = bbox("dog", None, 1.0, 1.0, 2.0, 2.0, 4.0, false);
        let r = with_boxes(image_record(src.path(), "a.png", 16, 12, 1), vec![b, plain]);
        let xml = voc_xml(&r);
        for want in [
            "<pose>Left</pose>",
            "<truncated>1</truncated>",
            "<difficult>0</difficult>",
            "<occluded>1</occluded>",
            "<attribute><name>color</name><value>&lt;white&gt;</value></attribute>",
            "<attribute><name>rotation</name><value>90.0</value></attribute>",
        ] {
            assert!(xml.contains(want), "{want} in {xml}");
        }
        // A box without attributes is written as before.
        assert_eq!(xml.matches("<attributes>").count(), 1, "{xml}");
        assert_eq!(xml.matches("<pose>Unspecified</pose>").count(), 1, "{xml}");
    }

    #[test]
    fn voc_xml_escapes_text_and_rounds_boxes_to_integers() {
        let src = tempfile::tempdir().unwrap();
        let mut r = with_boxes(
            image_record(src.path(), "d/<x>&y.png", 16, 12, 1),
            vec![bbox("cat & <dog>", None, 2.4, 3.5, 8.2, 5.9, 1.0, false)],
        );
        r.dataset = "Tom's \"set\"".into();
        let xml = voc_xml(&r);
        assert!(
            xml.contains("<filename>&lt;x&gt;&amp;y.png</filename>"),
            "{xml}"
        );
        assert!(xml.contains("<folder>images/d</folder>"), "{xml}");
        assert!(
            xml.contains("<database>Tom&apos;s &quot;set&quot;</database>"),
            "{xml}"
        );
        assert!(xml.contains("<name>cat &amp; &lt;dog&gt;</name>"), "{xml}");
        assert!(xml.contains("<width>16</width>"), "{xml}");
        assert!(xml.contains("<depth>3</depth>"), "{xml}");
        for tag in [
            "<xmin>3</xmin>",
            "<ymin>5</ymin>",
            "<xmax>11</xmax>",
            "<ymax>9</ymax>",
            "<pose>Unspecified</pose>",
            "<truncated>0</truncated>",
            "<difficult>0</difficult>",
        ] {
            assert!(xml.contains(tag), "{tag} missing in\n{xml}");
        }
        assert_eq!(xml_escape("a\u{1}b"), "a\u{FFFD}b");

        let entries = tar_entries(&export(&[r], DatasetFormat::Voc, ArchiveFormat::Tar));
        assert!(entries.contains_key("Annotations/d/<x>&y.xml"));
    }
}
