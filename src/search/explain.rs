//! Why a hit ranked where it did: per-list ranks, matched words and matched boxes.

use super::*;

/// Rank and score of a hit on one side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SideRank {
    /// 1-based rank in that list.
    pub rank: usize,
    /// That list's own score (BM25 or cosine).
    pub score: f32,
}

/// A box that matched the query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MatchedBox {
    /// Index in the record's boxes.
    pub index: usize,
    /// The box.
    #[serde(flatten)]
    pub bbox: BoundingBox,
    /// Cosine of its region vector to the query, when it matched by vector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f32>,
    /// Whether its label shares a word with the query.
    pub label_matched: bool,
}

/// Why a hit is where it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Why {
    /// Fused RRF score.
    pub fused: f32,
    /// BM25 side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyword: Option<SideRank>,
    /// Whole-image vector side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<SideRank>,
    /// Best box-region vector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<SideRank>,
    /// Label/caption text vector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<SideRank>,
    /// Label words of the record that matched the query.
    pub matched_labels: Vec<String>,
    /// Caption words of the record that matched the query.
    pub matched_caption_words: Vec<String>,
    /// Negative texts whose words the record's labels or captions contain.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matched_negatives: Vec<String>,
}

/// One result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchHit {
    /// Record id.
    pub id: String,
    /// File name.
    pub filename: String,
    /// Path relative to the images root.
    pub path: String,
    /// Dataset.
    pub dataset: String,
    /// Fused score (higher is better).
    pub score: f32,
    /// Labels.
    pub labels: Vec<String>,
    /// Time axes.
    pub dates: Dates,
    /// Boxes that matched (by region vector or label word).
    pub boxes: Vec<MatchedBox>,
    /// Explanation.
    pub why: Why,
    /// Pixel width of the image as displayed (after its EXIF orientation): the space of the
    /// boxes.
    #[serde(default)]
    pub width: u32,
    /// Pixel height of the image as displayed.
    #[serde(default)]
    pub height: u32,
    /// The record's captions.
    #[serde(default)]
    pub captions: Vec<String>,
    /// Every box of the record, in its order (a matched box's `index` is its place here), so
    /// a result can be drawn without reading the record.
    #[serde(default)]
    pub all_boxes: Vec<BoundingBox>,
}

impl SearchHit {
    /// Removes who annotated each box, from `boxes` and `all_boxes` (what a record view hides
    /// from roles that may not read the audit trail).
    pub fn hide_annotators(&mut self) {
        for b in &mut self.boxes {
            b.bbox.annotator = None;
        }
        for b in &mut self.all_boxes {
            b.annotator = None;
        }
    }
}

/// Label and caption words of `record` whose terms are among `terms`.
pub(super) fn matched_words(
    kw: &indexer::keyword::KeywordIndex,
    record: &Record,
    terms: &[String],
) -> (Vec<String>, Vec<String>) {
    if terms.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let hit = |word: &str| kw.terms(word).iter().any(|t| terms.contains(t));
    let mut labels: Vec<String> = record
        .labels
        .iter()
        .chain(&record.supercategories)
        .filter(|l| hit(l))
        .cloned()
        .collect();
    labels.dedup();
    let mut words: Vec<String> = Vec::new();
    // Each distinct word is tokenised once, however long the captions are.
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    for c in &record.captions {
        for w in c
            .split(|ch: char| !ch.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let lw = w.to_lowercase();
            if seen.insert(lw.clone()) && hit(&lw) {
                words.push(lw);
            }
        }
    }
    (labels, words)
}

/// Boxes that matched by region vector (best similarity) or by label word, best first.
pub(super) fn matched_boxes(
    kw: &indexer::keyword::KeywordIndex,
    record: &Record,
    terms: &[String],
    regions: &[(usize, f32)],
) -> Vec<MatchedBox> {
    let mut best: BTreeMap<usize, f32> = BTreeMap::new();
    for &(i, s) in regions {
        let e = best.entry(i).or_insert(s);
        *e = e.max(s);
    }
    let mut out: Vec<MatchedBox> = Vec::new();
    // Each distinct label is tokenised once, however many boxes carry it.
    let mut label_hits: HashMap<&str, bool> = HashMap::new();
    for (i, b) in record.boxes.iter().enumerate() {
        let label_matched = !terms.is_empty()
            && *label_hits
                .entry(b.label.as_str())
                .or_insert_with(|| kw.terms(&b.label).iter().any(|t| terms.contains(t)));
        let similarity = best.get(&i).copied();
        if label_matched || similarity.is_some() {
            out.push(MatchedBox {
                index: i,
                bbox: b.clone(),
                similarity,
                label_matched,
            });
        }
    }
    out.sort_by(|a, b| {
        b.label_matched
            .cmp(&a.label_matched)
            .then(
                b.similarity
                    .unwrap_or(-1.0)
                    .total_cmp(&a.similarity.unwrap_or(-1.0)),
            )
            .then(a.index.cmp(&b.index))
    });
    out
}
