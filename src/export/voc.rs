//! The Pascal VOC writer: one XML annotation per image, text escaped for XML and boxes rounded
//! to integer pixels inside the image.

use indexer::record::Record;

use super::*;

pub(super) fn voc_annotation_file(path: &str) -> String {
    format!("Annotations/{}", replace_extension(path, "xml"))
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
        xml.push_str(&format!(
            "  <object>\n    <name>{}</name>\n    <pose>Unspecified</pose>\n    \
             <truncated>0</truncated>\n    <difficult>0</difficult>\n    <bndbox>\n      \
             <xmin>{xmin}</xmin>\n      <ymin>{ymin}</ymin>\n      <xmax>{xmax}</xmax>\n      \
             <ymax>{ymax}</ymax>\n    </bndbox>\n  </object>\n",
            xml_escape(&b.label)
        ));
    }
    xml.push_str("</annotation>\n");
    xml
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::export::tests::*;

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
