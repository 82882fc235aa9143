//! The write half of a run: the planned records batch by batch (decode on the rayon pool while
//! the previous batch embeds, replace the points, flush, write and commit the keyword index),
//! then one optimisation of the vector store. Step 2 of the consistency protocol in the parent
//! module.

use super::*;

/// Writes the planned records batch by batch (decode || embed, replace points, flush, write
/// and commit the keyword index), then optimises the vector store once.
pub(super) fn run_batches(
    lib: &mut Library,
    embedder: Option<&dyn Embedder>,
    opts: &IngestOptions,
    plan: &mut Plan,
) -> Result<()> {
    let Plan {
        work,
        problems,
        report,
        model_fp,
    } = plan;
    let work = std::mem::take(work);
    let bar = progress_bar(opts.progress, work.len() as u64);
    let mut boxes = 0usize;
    if !work.is_empty() {
        let mut writer = lib.keyword().writer()?;
        let batch_size = opts.batch_size.max(1);
        let batches: Vec<Vec<(Record, Work)>> = work
            .chunks(batch_size)
            .map(<[(Record, Work)]>::to_vec)
            .collect();
        std::thread::scope(|scope| -> Result<()> {
            // Decoding of batch n+1 overlaps embedding of batch n.
            let (tx, rx) = mpsc::sync_channel::<Decoded>(1);
            let limits = opts.limits;
            let want_pixels = embedder.is_some();
            let producer = scope.spawn(move || {
                for batch in batches {
                    let decoded = decode_batch(batch, want_pixels, &limits);
                    if tx.send(decoded).is_err() {
                        break;
                    }
                }
            });
            for decoded in rx {
                let mut points = Vec::new();
                let mut stale = Vec::new();
                let mut ready: Vec<(Record, Work)> = Vec::new();
                let mut images = Vec::new();
                for (record, work, image) in decoded {
                    match image {
                        Ok(img) => {
                            if work != Work::Add {
                                stale.push(record.id.clone());
                            }
                            images.push(img);
                            ready.push((record, work));
                        }
                        Err(reason) => {
                            problems.push(Problem {
                                file: record.path.clone(),
                                item: "image".into(),
                                reason: format!("{reason}; record skipped"),
                            });
                            bar.inc(1);
                        }
                    }
                }
                pause_point("decoded");
                if let Some(embedder) = embedder {
                    let (p, regions) = embed_batch(embedder, &ready, &images, opts)?;
                    points = p;
                    report.regions += regions;
                    report.embedded += ready.len();
                }
                pause_point("embedded");
                // Replace the records' points: stale ones go even without a model, so a changed
                // record never keeps vectors (or payload) of its old version.
                let store = lib.store();
                if lib.has_vectors() && !stale.is_empty() {
                    store.delete_where(&VectorFilter::records(stale))?;
                }
                if !points.is_empty() {
                    store.upsert(points)?;
                }
                pause_point("upserted");
                if lib.has_vectors() && !ready.is_empty() {
                    store.flush()?;
                }
                pause_point("flushed");
                let embedded = model_fp.clone().unwrap_or_default();
                for (record, work) in &ready {
                    let mark = if embedder.is_some() {
                        embedded.clone()
                    } else {
                        String::new()
                    };
                    writer.upsert(record, &mark)?;
                    match work {
                        Work::Add => report.added += 1,
                        Work::Update => report.updated += 1,
                        Work::EmbedOnly => report.embedded_only += 1,
                    }
                }
                pause_point("written");
                writer.commit()?;
                pause_point("committed");
                boxes += ready.iter().map(|(r, _)| r.boxes.len()).sum::<usize>();
                bar.inc(ready.len() as u64);
                bar.set_message(format!(" with {boxes} boxes"));
            }
            producer.join().expect("decoder thread does not panic");
            Ok(())
        })?;
        bar.finish_and_clear();
        if lib.has_vectors() {
            // Once for the whole run: per batch it would redo the same merges each time.
            let spinner = spinner(opts.progress, "optimising the vector store");
            match lib.store().optimize() {
                // Everything is written and searchable; the server finishes on its own.
                Err(crate::store::StoreError::StillOptimizing {
                    status,
                    waited_secs,
                }) => {
                    tracing::warn!(
                        status,
                        waited_secs,
                        "the vector store server is still building its index after the \
                         request timeout; the records are in and searchable meanwhile \
                         (`imagelens optimize` waits for it)"
                    );
                }
                other => other?,
            }
            spinner.finish_and_clear();
        }
    }

    Ok(())
}

type Decoded = Vec<(
    Record,
    Work,
    std::result::Result<Option<image::RgbImage>, String>,
)>;

fn decode_batch(batch: Vec<(Record, Work)>, want_pixels: bool, limits: &DecodeLimits) -> Decoded {
    batch
        .into_par_iter()
        .map(|(record, work)| {
            if !want_pixels {
                return (record, work, Ok(None));
            }
            let path = Path::new(&record.images_root).join(&record.path);
            let img = models::preprocess::open(&path, limits)
                .map(Some)
                .map_err(|e| e.to_string());
            (record, work, img)
        })
        .collect()
}

/// Embeds a batch: whole images, box regions and descriptions; returns points and region count.
fn embed_batch(
    embedder: &dyn Embedder,
    records: &[(Record, Work)],
    images: &[Option<image::RgbImage>],
    opts: &IngestOptions,
) -> Result<(Vec<VectorPoint>, usize)> {
    let whole: Vec<image::RgbImage> = images.iter().flatten().cloned().collect();
    let image_vecs = embedder.embed_images(&whole)?;
    let mut crops = Vec::new();
    let mut crop_owner = Vec::new();
    for (i, ((record, _), img)) in records.iter().zip(images).enumerate() {
        let Some(img) = img else { continue };
        let mut order: Vec<usize> = (0..record.boxes.len())
            .filter(|&b| {
                let bx = &record.boxes[b];
                bx.w >= opts.min_region && bx.h >= opts.min_region
            })
            .collect();
        order.sort_by(|&a, &b| {
            let (ba, bb) = (&record.boxes[a], &record.boxes[b]);
            (bb.w * bb.h).total_cmp(&(ba.w * ba.h)).then(a.cmp(&b))
        });
        for b in order.into_iter().take(opts.max_regions) {
            let bx = &record.boxes[b];
            if let Some(crop) = crop_region(img, bx.x, bx.y, bx.w, bx.h, opts.region_context) {
                crops.push(crop);
                crop_owner.push((i, b));
            }
        }
    }
    let region_vecs = if crops.is_empty() {
        Vec::new()
    } else {
        embedder.embed_images(&crops)?
    };
    let texts: Vec<String> = records.iter().map(|(r, _)| r.description()).collect();
    let with_text: Vec<usize> = (0..texts.len()).filter(|&i| !texts[i].is_empty()).collect();
    let text_refs: Vec<&str> = with_text.iter().map(|&i| texts[i].as_str()).collect();
    let text_vecs = if text_refs.is_empty() {
        Vec::new()
    } else {
        embedder.embed_texts(&text_refs)?
    };
    let mut text_of: HashMap<usize, Vec<f32>> = with_text
        .into_iter()
        .zip(text_vecs)
        .map(|(i, v)| (i, v.into_vec()))
        .collect();

    let mut points = Vec::with_capacity(records.len() + crops.len());
    for (i, ((record, _), v)) in records.iter().zip(image_vecs).enumerate() {
        points.push(points::image_point(
            record,
            v.into_vec(),
            text_of.remove(&i),
        ));
    }
    let regions = region_vecs.len();
    for ((i, b), v) in crop_owner.into_iter().zip(region_vecs) {
        points.push(points::region_point(&records[i].0, b, v.into_vec()));
    }
    Ok((points, regions))
}
