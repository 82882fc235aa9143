//! The parse stage of ingest at export scale (issue 12): time and peak memory of reading a
//! 2,000,000-annotation COCO file and Label Studio export, and 100,000-file VOC and YOLO
//! folders, into image entries, next to a baseline measured in the same run: the whole COCO file
//! parsed into a `serde_json::Value` (what a reader that loads its file does before any work).
//!
//! A bench binary: `cargo bench --bench parse` (env `IMAGELENS_BENCH_ANNOTATIONS`, default
//! 2000000, ten per image; `IMAGELENS_BENCH_FILES`, default 100000, for VOC and YOLO). The
//! exports are generated once under `target/bench-data/parse-*`. Each measurement runs in a
//! child process of this binary, so its peak resident memory (`VmHWM`) is its own. Under
//! `cargo test --benches` (no `--bench` flag) it runs a quick smoke pass over small exports.
//!
//! A last row runs a whole ingest of the COCO file without a model (`indexer::ingest`: parse,
//! hash and measure every image file, plan, write the keyword index batch by batch) into a
//! fresh library, over one generated 640x480 JPEG per image (distinct bytes, under
//! `target/bench-data/parse-images-*`): its peak memory is the ingest's, not only the parse
//! stage's. Embedding is left out (a model would take hours for 200,000 images here); it holds
//! two batches of decoded images at a time, not the library.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// Labels of the generated exports (Zipf-ish use: the first ones most often).
const LABELS: [&str; 12] = [
    "person",
    "car",
    "truck",
    "dog",
    "bicycle",
    "bus",
    "boat",
    "cat",
    "traffic light",
    "licence plate",
    "face",
    "bench",
];
const PER_IMAGE: usize = 10;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        return child(&args[i + 1..]);
    }
    let quick = !args.iter().any(|a| a == "--bench");
    let env = |k: &str, d: usize| -> Result<usize> {
        std::env::var(k).ok().map_or(Ok(d), |v| {
            v.parse().with_context(|| format!("{k} is a number"))
        })
    };
    let annotations = env(
        "IMAGELENS_BENCH_ANNOTATIONS",
        if quick { 2_000 } else { 2_000_000 },
    )?;
    let files = env("IMAGELENS_BENCH_FILES", if quick { 200 } else { 100_000 })?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    let images = annotations.div_ceil(PER_IMAGE);

    let coco = root.join(format!("parse-coco-{annotations}.json"));
    cached(&coco, |p| write_coco(p, images))?;
    let ls = root.join(format!("parse-labelstudio-{annotations}.json"));
    cached(&ls, |p| write_label_studio(p, images))?;
    let voc = root.join(format!("parse-voc-{files}"));
    cached(&voc, |p| write_voc(p, files))?;
    let yolo = root.join(format!("parse-yolo-{files}"));
    cached(&yolo, |p| write_yolo(p, files))?;
    let pictures = root.join(format!("parse-images-{images}"));
    cached(&pictures, |p| write_images(p, images))?;

    println!(
        "parse stage: {annotations} annotations ({images} images) for COCO and Label Studio, \
         {files} files for VOC and YOLO; one child process per row"
    );
    println!(
        "{:<34} {:>9} {:>10} {:>9} {:>10} {:>9} {:>9}",
        "reader", "file MB", "seconds", "peak MB", "entries", "boxes", "problems"
    );
    let rows: [(&str, &str, &Path, Option<&Path>); 6] = [
        ("baseline: COCO file as a Value", "value", &coco, None),
        ("coco", "coco", &coco, None),
        ("labelstudio", "labelstudio", &ls, None),
        ("voc", "voc", &voc, None),
        ("yolo", "yolo", &yolo, None),
        (
            "coco, whole ingest without a model",
            "ingest",
            &coco,
            Some(&pictures),
        ),
    ];
    let mut baseline = None;
    for (name, reader, path, images) in rows {
        let out = Command::new(std::env::current_exe()?)
            .args(["--child", reader])
            .arg(path)
            .args(images)
            .output()?;
        if !out.status.success() {
            bail!(
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        let v: Value = serde_json::from_slice(&out.stdout).context("the child's answer")?;
        let (secs, peak) = (v["secs"].as_f64().unwrap(), v["peak_mb"].as_f64().unwrap());
        let size = du(path)? as f64 / 1e6;
        let ratio = match (reader, baseline) {
            ("value", _) => {
                baseline = Some((secs, peak));
                String::new()
            }
            ("coco", Some((bs, bp))) => format!(
                "  ({:.2}x time, {:.2}x peak of the baseline)",
                secs / bs,
                peak / bp
            ),
            ("ingest", Some((bs, bp))) => format!(
                "  ({:.2}x time, {:.2}x peak of the baseline; {} records written)",
                secs / bs,
                peak / bp,
                v["records"].as_u64().unwrap_or(0)
            ),
            _ => String::new(),
        };
        println!(
            "{name:<34} {size:>9.1} {secs:>10.2} {peak:>9.0} {:>10} {:>9} {:>9}{ratio}",
            v["entries"].as_u64().unwrap_or(0),
            v["boxes"].as_u64().map_or("-".into(), |b| b.to_string()),
            v["problems"].as_u64().unwrap_or(0)
        );
    }
    Ok(())
}

/// Measures one reader over `path` in this (child) process and prints a JSON line.
fn child(args: &[String]) -> Result<()> {
    let (reader, path) = match args {
        [reader, path] | [reader, path, _] => (reader, PathBuf::from(path)),
        _ => bail!("--child READER PATH [IMAGES]"),
    };
    let started = Instant::now();
    let mut records = 0;
    let (entries, boxes, problems) = if reader == "ingest" {
        let images = PathBuf::from(&args[2]);
        let data = tempfile::tempdir_in(path.parent().unwrap())?;
        let mut lib = indexer::Library::open(data.path(), indexer::StoreSettings::Edge)?;
        let opts = indexer::IngestOptions {
            format: "coco".into(),
            annotations: vec![path],
            images,
            progress: false,
            ..indexer::IngestOptions::default()
        };
        let report = indexer::ingest(&mut lib, None, &opts)?;
        records = report.kept();
        // Boxes are not counted by an ingest; the COCO row counts the same file's.
        (report.entries, None, report.problems.len())
    } else if reader == "value" {
        let v: Value = serde_json::from_reader(std::io::BufReader::new(File::open(&path)?))?;
        let n = |k: &str| v[k].as_array().map_or(0, Vec::len);
        (n("images"), Some(n("annotations")), 0)
    } else {
        let format: indexer::ingest::Format = reader.parse()?;
        let (images, annotations) = match format {
            indexer::ingest::Format::Voc => (path.join("JPEGImages"), path.clone()),
            indexer::ingest::Format::Yolo => (path.join("images"), path.join("data.yaml")),
            _ => (path.with_extension("images"), path.clone()),
        };
        let carried = tempfile::tempdir()?;
        let (entries, problems) = indexer::ingest::read_annotations(
            format,
            &[annotations],
            &images,
            carried.path(),
            &indexer::ingest::Progress::default(),
        )?;
        let boxes = entries.iter().map(|e| e.boxes.len()).sum();
        (entries.len(), Some(boxes), problems.len())
    };
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"secs": secs, "peak_mb": peak_kb()? as f64 / 1024.0, "entries": entries,
               "boxes": boxes, "problems": problems, "records": records})
    );
    Ok(())
}

/// This process's peak resident memory (`VmHWM`), in KiB.
fn peak_kb() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")
}

/// Bytes under `path` (a file, or a folder's files).
fn du(path: &Path) -> Result<u64> {
    if path.is_file() {
        return Ok(path.metadata()?.len());
    }
    let mut total = 0;
    for e in std::fs::read_dir(path)? {
        total += du(&e?.path())?;
    }
    Ok(total)
}

/// Writes `path` with `write` unless it is there (written beside it and renamed, so a cut-short
/// run leaves nothing that looks finished).
fn cached(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(path.parent().unwrap())?;
    let tmp = path.with_extension("partial");
    if tmp.is_dir() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let started = Instant::now();
    write(&tmp)?;
    std::fs::rename(&tmp, path)?;
    eprintln!(
        "wrote {} in {:.1} s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A deterministic stream of numbers (no RNG dependency on the bench's hot path).
fn mix(i: usize, salt: usize) -> usize {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (salt as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (x ^ (x >> 32)) as usize
}

fn label(i: usize, salt: usize) -> usize {
    // Zipf-ish: half the boxes in the first two labels.
    let r = mix(i, salt) % 1000;
    match r {
        0..=299 => 0,
        300..=499 => 1,
        _ => 2 + r % (LABELS.len() - 2),
    }
}

/// A box inside a 640x480 image and its outline (a hexagon inside the box).
fn shape(i: usize) -> ([f64; 4], Vec<f64>) {
    let (x, y) = ((mix(i, 1) % 500) as f64, (mix(i, 2) % 380) as f64);
    let (w, h) = ((20 + mix(i, 3) % 120) as f64, (20 + mix(i, 4) % 100) as f64);
    let hex = vec![
        x + w * 0.25,
        y,
        x + w * 0.75,
        y,
        x + w,
        y + h * 0.5,
        x + w * 0.75,
        y + h,
        x + w * 0.25,
        y + h,
        x,
        y + h * 0.5,
    ];
    ([x, y, w, h], hex)
}

/// `images` 640x480 JPEGs named as the COCO export names them (`img/0000000.jpg`, ...): one
/// encoded picture, each file given distinct bytes by a comment segment (COM) with its number
/// right after the start-of-image marker, so every file is a record of its own.
fn write_images(path: &Path, images: usize) -> Result<()> {
    let picture = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x / 3) as u8, (y / 2) as u8, ((x + y) / 5) as u8])
    });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 60).encode_image(&picture)?;
    std::fs::create_dir_all(path.join("img"))?;
    for i in 0..images {
        let note = format!("image {i}");
        let mut bytes = Vec::with_capacity(jpeg.len() + note.len() + 4);
        bytes.extend_from_slice(&jpeg[..2]);
        bytes.extend_from_slice(&[0xFF, 0xFE]);
        bytes.extend_from_slice(&((note.len() + 2) as u16).to_be_bytes());
        bytes.extend_from_slice(note.as_bytes());
        bytes.extend_from_slice(&jpeg[2..]);
        std::fs::write(path.join(format!("img/{i:07}.jpg")), bytes)?;
    }
    Ok(())
}

/// A COCO instances file as annotation tools write it: images, categories, then the
/// annotations with a bbox and a polygon each (a few boxes cross the bottom edge of the
/// 640x480 images: a whole ingest clips them and says so, about 0.4 % of them).
fn write_coco(path: &Path, images: usize) -> Result<()> {
    let mut w = BufWriter::new(File::create(path)?);
    write!(
        w,
        "{{\"info\": {{\"description\": \"parse bench\", \"date_created\": \"2024-01-02T03:04:05Z\"}}, \"images\": ["
    )?;
    for i in 0..images {
        let sep = if i == 0 { "" } else { "," };
        write!(
            w,
            "{sep}{{\"id\": {}, \"file_name\": \"img/{i:07}.jpg\", \"width\": 640, \"height\": 480, \"date_captured\": \"2021-05-06 07:08:09\"}}",
            i + 1
        )?;
    }
    write!(w, "], \"categories\": [")?;
    for (c, l) in LABELS.iter().enumerate() {
        let sep = if c == 0 { "" } else { "," };
        write!(
            w,
            "{sep}{{\"id\": {}, \"name\": \"{l}\", \"supercategory\": \"thing\"}}",
            c + 1
        )?;
    }
    write!(w, "], \"annotations\": [")?;
    for a in 0..images * PER_IMAGE {
        let sep = if a == 0 { "" } else { "," };
        let ([x, y, bw, bh], hex) = shape(a);
        let seg: Vec<String> = hex.iter().map(|v| format!("{v:.1}")).collect();
        write!(
            w,
            "{sep}{{\"id\": {}, \"image_id\": {}, \"category_id\": {}, \"bbox\": [{x:.1}, {y:.1}, {bw:.1}, {bh:.1}], \"area\": {:.1}, \"iscrowd\": 0, \"segmentation\": [[{}]]}}",
            a + 1,
            a / PER_IMAGE + 1,
            label(a, 5) + 1,
            bw * bh * 0.75,
            seg.join(", ")
        )?;
    }
    write!(w, "]}}")?;
    w.flush()?;
    Ok(())
}

/// A Label Studio JSON export: one task per image with one annotation of ten results
/// (rectangles, every third a polygon), sizes given as Label Studio writes them.
fn write_label_studio(path: &Path, images: usize) -> Result<()> {
    let mut w = BufWriter::new(File::create(path)?);
    write!(w, "[")?;
    for i in 0..images {
        let sep = if i == 0 { "" } else { "," };
        let mut results = Vec::with_capacity(PER_IMAGE);
        for k in 0..PER_IMAGE {
            let a = i * PER_IMAGE + k;
            let ([x, y, bw, bh], hex) = shape(a);
            let l = LABELS[label(a, 5)];
            let pct = |v: f64, of: f64| v / of * 100.0;
            results.push(if a.is_multiple_of(3) {
                let pts: Vec<String> = hex
                    .chunks(2)
                    .map(|p| format!("[{:.3}, {:.3}]", pct(p[0], 640.0), pct(p[1], 480.0)))
                    .collect();
                format!(
                    "{{\"id\": \"r{a}\", \"type\": \"polygonlabels\", \"from_name\": \"label\", \"to_name\": \"image\", \"original_width\": 640, \"original_height\": 480, \"value\": {{\"points\": [{}], \"polygonlabels\": [\"{l}\"]}}}}",
                    pts.join(", ")
                )
            } else {
                format!(
                    "{{\"id\": \"r{a}\", \"type\": \"rectanglelabels\", \"from_name\": \"label\", \"to_name\": \"image\", \"original_width\": 640, \"original_height\": 480, \"value\": {{\"x\": {:.3}, \"y\": {:.3}, \"width\": {:.3}, \"height\": {:.3}, \"rotation\": 0, \"rectanglelabels\": [\"{l}\"]}}}}",
                    pct(x, 640.0), pct(y, 480.0), pct(bw, 640.0), pct(bh, 480.0)
                )
            });
        }
        write!(
            w,
            "{sep}{{\"id\": {}, \"data\": {{\"image\": \"/data/upload/1/img-{i:07}.jpg\"}}, \"annotations\": [{{\"id\": {}, \"completed_by\": 1, \"was_cancelled\": false, \"created_at\": \"2024-01-02T03:04:05.000000Z\", \"result\": [{}]}}], \"predictions\": []}}",
            i + 1,
            i + 1,
            results.join(", ")
        )?;
    }
    write!(w, "]")?;
    w.flush()?;
    Ok(())
}

/// A VOC folder: `Annotations/*.xml` with ten objects each, `ImageSets/Main/train.txt`.
fn write_voc(path: &Path, files: usize) -> Result<()> {
    let ann = path.join("Annotations");
    std::fs::create_dir_all(&ann)?;
    std::fs::create_dir_all(path.join("JPEGImages"))?;
    std::fs::create_dir_all(path.join("ImageSets/Main"))?;
    let mut train = BufWriter::new(File::create(path.join("ImageSets/Main/train.txt"))?);
    for i in 0..files {
        let mut xml = format!(
            "<annotation><folder>JPEGImages</folder><filename>{i:07}.jpg</filename><size><width>640</width><height>480</height><depth>3</depth></size>"
        );
        for k in 0..PER_IMAGE {
            let a = i * PER_IMAGE + k;
            let ([x, y, bw, bh], _) = shape(a);
            xml.push_str(&format!(
                "<object><name>{}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>",
                LABELS[label(a, 5)],
                x as u32 + 1,
                y as u32 + 1,
                (x + bw) as u32,
                (y + bh) as u32
            ));
        }
        xml.push_str("</annotation>");
        std::fs::write(ann.join(format!("{i:07}.xml")), xml)?;
        writeln!(train, "{i:07}")?;
    }
    train.flush()?;
    Ok(())
}

/// A YOLO folder: `data.yaml`, `images/train/*.png` (the reader reads each image's size from
/// its header: the same small PNG under every name) and `labels/train/*.txt`, ten rows each,
/// every third a polygon.
fn write_yolo(path: &Path, files: usize) -> Result<()> {
    let (images, labels) = (path.join("images/train"), path.join("labels/train"));
    std::fs::create_dir_all(&images)?;
    std::fs::create_dir_all(&labels)?;
    let mut png = Vec::new();
    image::RgbImage::from_pixel(64, 48, image::Rgb([90, 120, 150]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    let names: Vec<String> = LABELS.iter().map(|l| format!("\"{l}\"")).collect();
    std::fs::write(
        path.join("data.yaml"),
        format!(
            "path: .\ntrain: images/train\nnames: [{}]\n",
            names.join(", ")
        ),
    )?;
    for i in 0..files {
        std::fs::write(images.join(format!("{i:07}.png")), &png)?;
        let mut rows = String::new();
        for k in 0..PER_IMAGE {
            let a = i * PER_IMAGE + k;
            let ([x, y, bw, bh], hex) = shape(a);
            let c = label(a, 5);
            if a.is_multiple_of(3) {
                let pts: Vec<String> = hex
                    .chunks(2)
                    .map(|p| format!("{:.5} {:.5}", p[0] / 640.0, p[1] / 480.0))
                    .collect();
                rows.push_str(&format!("{c} {}\n", pts.join(" ")));
            } else {
                rows.push_str(&format!(
                    "{c} {:.5} {:.5} {:.5} {:.5}\n",
                    (x + bw / 2.0) / 640.0,
                    (y + bh / 2.0) / 480.0,
                    bw / 640.0,
                    bh / 480.0
                ));
            }
        }
        std::fs::write(labels.join(format!("{i:07}.txt")), rows)?;
    }
    Ok(())
}
