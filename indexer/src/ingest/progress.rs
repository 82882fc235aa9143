//! Live counts of what the readers have read, for the progress display of `imagelens ingest`
//! while the exports are parsed (before the image files are known).

use std::sync::atomic::{AtomicU64, Ordering};

use super::ImageEntry;

/// What the readers have read so far: images, and items (every annotation an export holds:
/// boxes, polygons, tags, labels, concepts, captions, rows of a manifest). Readers add to it
/// as they go, from any thread; the pipeline shows it while the parse stage runs.
/// `Progress::default()` where nobody looks.
#[derive(Debug, Default)]
pub struct Progress {
    images: AtomicU64,
    items: AtomicU64,
}

/// A reading of [`Progress`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Images read.
    pub images: u64,
    /// Items (annotations) read.
    pub items: u64,
}

impl Progress {
    /// `n` more items read.
    pub fn items(&self, n: usize) {
        self.items.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `n` more images read.
    pub fn images(&self, n: usize) {
        self.images.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// One image read whole, with its annotations.
    pub fn entry(&self, entry: &ImageEntry) {
        self.images(1);
        self.items(entry.annotations());
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        Counts {
            images: self.images.load(Ordering::Relaxed),
            items: self.items.load(Ordering::Relaxed),
        }
    }
}
