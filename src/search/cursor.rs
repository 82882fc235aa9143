//! Cursors: an offset bound to its request by a keyed tag, and the key kept in the data
//! directory.

use std::collections::HashSet;

use super::*;

/// Identity of a request for cursor binding: everything but the cursor and page size.
pub(super) fn request_key(req: &SearchRequest) -> String {
    let key = serde_json::json!({
        "text": req.text, "like": req.like, "not": req.not, "filter": req.filter,
        "fusion": req.fusion,
    });
    key.to_string()
}

/// The secret that signs cursors (see [`CursorKey::load`]).
pub(super) struct CursorKey([u8; 32]);

impl CursorKey {
    /// The tag of a cursor: a keyed sha256 of the offset and the request, so neither can be
    /// changed without the library's cursor key.
    fn tag(&self, offset: usize, key: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update(offset.to_string().as_bytes());
        h.update(b"\n");
        h.update(key.as_bytes());
        let mut tag = hex::encode(h.finalize());
        tag.truncate(TAG_HEX);
        tag
    }

    /// A cursor is `<offset>.<tag>`: opaque to users, checkable by us.
    pub(super) fn encode(&self, offset: usize, key: &str) -> String {
        format!("{offset}.{}", self.tag(offset, key))
    }

    /// The offset of `cursor` (0 without one), refused unless it is below `depth` (when the
    /// list has one) and its tag is the one this library gives that offset of this request.
    pub(super) fn decode(
        &self,
        cursor: Option<&str>,
        key: &str,
        depth: Option<usize>,
    ) -> SResult<usize> {
        let Some(c) = cursor.filter(|c| !c.is_empty()) else {
            return Ok(0);
        };
        let bad = || {
            SearchError::Invalid(format!(
                "cursor {:?} is not valid for this request (pass the next_cursor of the \
                 previous page of the same request)",
                indexer::filter::shorten(c, 64)
            ))
        };
        let (offset, tag) = c.split_once('.').ok_or_else(bad)?;
        // Only the form we issue: decimal digits, no sign, no leading zero.
        if offset.is_empty()
            || offset.len() > 20
            || !offset.bytes().all(|b| b.is_ascii_digit())
            || (offset.len() > 1 && offset.starts_with('0'))
        {
            return Err(bad());
        }
        let offset: u64 = offset.parse().map_err(|_| bad())?;
        if let Some(depth) = depth
            && usize::try_from(offset).map_or(true, |o| o >= depth)
        {
            return Err(SearchError::Invalid(format!(
                "cursor offset {offset} is beyond the ranking depth {depth} of this request"
            )));
        }
        let offset = usize::try_from(offset).map_err(|_| bad())?;
        let expected = self.tag(offset, key);
        // Compare as bytes in constant time: the tag is a secret-keyed value.
        let same = tag.len() == expected.len()
            && tag
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(bad());
        }
        Ok(offset)
    }

    /// The library's cursor key: `cursor.key` in the data directory (32 random bytes in hex,
    /// mode 0600), created on first use. When it cannot be read or created (a read-only
    /// directory), a key of this process is used: cursors then work within one process only.
    pub(super) fn load(dir: &Path) -> Self {
        Self(load_cursor_key(dir))
    }
}

fn load_cursor_key(dir: &Path) -> [u8; 32] {
    let path = dir.join("cursor.key");
    let parse = |text: &str| -> Option<[u8; 32]> {
        let bytes = hex::decode(text.trim()).ok()?;
        bytes.try_into().ok()
    };
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Some(key) = parse(&text)
    {
        return key;
    }
    let fresh: [u8; 32] = rand::random();
    match create_key_file(&path, &fresh) {
        Ok(()) => fresh,
        // Another process made it first: use theirs.
        Err(_) => match std::fs::read_to_string(&path)
            .ok()
            .as_deref()
            .and_then(parse)
        {
            Some(key) => key,
            None => {
                tracing::warn!(path = %path.display(), "cannot keep a cursor key; cursors will work within this process only");
                fresh
            }
        },
    }
}

/// Writes `key` to `path` unless the file exists (a private temp file, then a hard link, so a
/// reader never sees half a key and two processes never both win).
fn create_key_file(path: &Path, key: &[u8; 32]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!(
        "{}.{:08x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(hex::encode(key).as_bytes())?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

/// The tiers of a request with a page-sized depth (`Fusion::depth` 0) that ranks three or four
/// lists: `(first, depth)` says that positions of the fused sequence from `first` on are taken
/// from a ranking whose lists go `depth` deep, at least five times deeper than the position
/// (until [`MAX_DEPTH`]), after the settled head (see [`HEAD_DEPTH`]). Not shallower than 500
/// for the first pages: on the clustered 100k bench library a ranking of four lists at depth
/// 100 kept only 0.88-0.92 of the depth-1000 fused top 20, 300 kept 0.93-0.98 and 500 kept
/// 0.96-0.99 (benches/README.md).
pub(super) const PAGE_TIERS: [(usize, usize); 3] = [(0, 500), (100, 2_500), (500, MAX_DEPTH)];

/// The tiers of a page-sized request that ranks one or two lists (the default weights rank
/// the keyword and image lists): the first two pages of 20 come from lists 200 deep, then as
/// [`PAGE_TIERS`]. With two lists a deeper candidate matters less to the top of the fused
/// order: on the clustered 100k bench library (graphs + int8, ef 64) lists 200 deep kept 0.991
/// of the exact depth-1000 fused top 20 (0.968 under a label and date filter) against 0.996
/// (0.990) at 500, and ranked in 0.54x (0.71x) the time; 100 deep kept 0.986 but only 0.909
/// under the filter (benches/README.md, "A first tier sized to the lists").
pub(super) const FEW_LIST_TIERS: [(usize, usize); 4] =
    [(0, 200), (40, 500), (100, 2_500), (500, MAX_DEPTH)];

/// The tiers of a page-sized request that ranks `lists` lists.
pub(super) fn page_tiers(lists: usize) -> &'static [(usize, usize)] {
    if lists <= 2 {
        &FEW_LIST_TIERS
    } else {
        &PAGE_TIERS
    }
}

/// The most positions a settled head fills (the first 100, where the first pages are).
pub(super) const HEAD_SETTLES_AT_MOST: usize = 100;

/// The depth of the head ranking a page-sized request with one ranked list starts with (see
/// `SearchService::search_cancellable` for why only those). Its settled prefix
/// (the records no deeper list can push out of it, see `rrf::settled_prefix`; at most
/// [`HEAD_SETTLES_AT_MOST`] positions) opens the sequence, so a first page that shallow lists settle
/// costs one ranking at depth 100 instead of 500.
pub(super) const HEAD_DEPTH: usize = 100;

/// A fused ranking at one depth.
pub(super) struct Ranked<T> {
    /// Records, best first.
    pub ranked: Vec<(String, T)>,
    /// Whether any list was cut at its depth (a deeper ranking could hold more records).
    pub cut: bool,
    /// How many of the first records are settled (see `rrf::settled_prefix`).
    pub settled: usize,
}

/// The fused sequence of a request with page-sized depth up to position `end` (the end of the
/// page asked for), and whether it goes on past `end`.
///
/// `rank(depth)` is the fused ranking with every list taken to `depth`; `tiers` are the
/// request's (see [`page_tiers`]), the same for every page of it. With `head`, the
/// sequence opens with the settled prefix of the ranking at [`HEAD_DEPTH`] (its length is the
/// request's, whatever the page); then it is built tier by tier: the positions of tier i are
/// filled from tier i's ranking in order, skipping records already placed. Which ranking fills a position depends on
/// the request and the position only, never on the page size, and rankings are deterministic,
/// so every page of a request is a slice of one sequence: paging (with any page sizes) gives
/// no repeats, and no record ranked above a shown one in its tier's ranking is skipped. A page
/// at offset 200 re-runs the shallower rankings to know what earlier pages showed; a first
/// page the head settles runs one ranking.
///
/// # Errors
/// Whatever `rank` returns.
pub(super) fn paged_sequence<T>(
    end: usize,
    head: bool,
    tiers: &[(usize, usize)],
    mut rank: impl FnMut(usize) -> SResult<Ranked<T>>,
) -> SResult<(Vec<(String, T)>, bool)> {
    let end = end.min(MAX_DEPTH);
    let top = tiers
        .iter()
        .rposition(|&(first, _)| first < end.max(1))
        .unwrap_or(0);
    let mut sequence = Vec::with_capacity(end);
    let mut placed: HashSet<String> = HashSet::with_capacity(end);

    if head {
        let Ranked {
            ranked: head,
            cut: head_cut,
            settled,
        } = rank(HEAD_DEPTH)?;
        let settled = settled.min(HEAD_SETTLES_AT_MOST).min(head.len());
        let head_len = head.len();
        for (id, value) in head.into_iter().take(settled) {
            placed.insert(id.clone());
            sequence.push((id, value));
        }
        if end <= settled || (settled == head_len && !head_cut) {
            // The page lies in the settled head, or the head holds every record there is (no
            // list was cut: a deeper ranking would be the same).
            sequence.truncate(end);
            return Ok((sequence, head_len > end || (head_cut && end < MAX_DEPTH)));
        }
    }

    let mut more = false;
    for (tier, &(_, depth)) in tiers.iter().enumerate().take(top + 1) {
        let stop = tiers
            .get(tier + 1)
            .filter(|_| tier < top)
            .map_or(end, |&(first, _)| first);
        if sequence.len() >= stop && tier < top {
            continue; // the settled head already fills this tier's positions
        }
        let Ranked { ranked, cut, .. } = rank(depth)?;
        let mut beyond = false;
        for (id, value) in ranked {
            if placed.contains(&id) {
                continue;
            }
            if sequence.len() >= stop {
                beyond = true;
                break;
            }
            placed.insert(id.clone());
            sequence.push((id, value));
        }
        if tier == top {
            // A deeper tier may find more when this one's lists were cut at their depth.
            more = (beyond || (cut && tier + 1 < tiers.len())) && end < MAX_DEPTH;
        }
    }
    Ok((sequence, more))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_is_bound_to_its_request() {
        let k = CursorKey([7; 32]);
        let c = k.encode(40, "a");
        assert_eq!(k.decode(Some(&c), "a", Some(1000)).unwrap(), 40);
        assert!(k.decode(Some(&c), "b", Some(1000)).is_err());
        assert!(k.decode(Some("garbage"), "a", Some(1000)).is_err());
        assert_eq!(k.decode(None, "a", Some(1000)).unwrap(), 0);
        // Another library's key does not accept it.
        assert!(
            CursorKey([8; 32])
                .decode(Some(&c), "a", Some(1000))
                .is_err()
        );
    }

    #[test]
    fn a_cursor_tag_covers_its_offset() {
        let k = CursorKey([7; 32]);
        let c = k.encode(40, "a");
        let tag = c.split_once('.').unwrap().1;
        for forged in [
            format!("41.{tag}"),
            format!("040.{tag}"),
            format!("+40.{tag}"),
        ] {
            assert!(
                k.decode(Some(&forged), "a", Some(1000)).is_err(),
                "{forged}"
            );
        }
    }

    #[test]
    fn a_cursor_offset_at_or_beyond_the_depth_is_refused_before_anything_else() {
        let k = CursorKey([7; 32]);
        for offset in [1000u64, 1_000_000_000_000, u64::MAX] {
            let c = format!("{offset}.{}", k.tag(0, "a"));
            let e = k.decode(Some(&c), "a", Some(1000)).unwrap_err().to_string();
            assert!(e.contains("beyond the ranking depth 1000"), "{e}");
        }
        // Larger than u64: not a number we take.
        let e = k
            .decode(Some("99999999999999999999999.abc"), "a", Some(1000))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid"), "{e}");
        // A look-up's list has no depth: the tag alone bounds it.
        let c = k.encode(5000, "a");
        assert_eq!(k.decode(Some(&c), "a", None).unwrap(), 5000);
    }

    #[test]
    fn a_huge_cursor_is_not_echoed_in_full() {
        let k = CursorKey([7; 32]);
        let c = "9".repeat(100_000);
        let e = k.decode(Some(&c), "a", Some(1000)).unwrap_err().to_string();
        assert!(e.len() < 300, "{} bytes", e.len());
    }

    #[test]
    fn the_cursor_key_is_kept_in_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_cursor_key(dir.path());
        let b = load_cursor_key(dir.path());
        assert_eq!(a, b, "the second process reads the first one's key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("cursor.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["cursor.key"]);
    }

    /// A stand-in ranking per depth: records `r0..` in an order that shifts with the depth (as
    /// deeper lists change fused scores), `n` records in all, cut when `n > depth`; the head
    /// ranking settles a prefix whose length depends on the seed.
    type Ranking = SResult<Ranked<()>>;

    fn ranking(n: usize, seed: u64) -> impl FnMut(usize) -> Ranking {
        move |depth: usize| {
            let mut ids: Vec<usize> = (0..n.min(depth * 2)).collect();
            // A deterministic shuffle of neighbours that depends on the depth.
            let mut h = seed ^ depth as u64;
            for i in (1..ids.len()).rev() {
                h = h
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if h >> 62 == 0 {
                    ids.swap(i, i - 1);
                }
            }
            let settled = if depth == HEAD_DEPTH {
                [0, 7, 20, 60, 100, 150][(seed % 6) as usize].min(ids.len())
            } else {
                0
            };
            Ok(Ranked {
                ranked: ids.into_iter().map(|i| (format!("r{i}"), ())).collect(),
                cut: n > depth,
                settled,
            })
        }
    }

    /// How many positions the head fills for `ranking(n, seed)`.
    fn head(n: usize, seed: u64) -> usize {
        let head = ranking(n, seed)(HEAD_DEPTH).unwrap();
        head.settled
            .min(HEAD_SETTLES_AT_MOST)
            .min(head.ranked.len())
    }

    #[test]
    fn pages_of_any_size_slice_one_sequence_without_repeats_or_gaps() {
        let cases = [
            (5_000, 1),
            (130, 2),
            (21, 3),
            (2_600, 4),
            (3_000, 0),
            (700, 5),
            (90, 4),
        ];
        let runs = cases.into_iter().flat_map(|c| {
            [(c, true), (c, false)]
                .into_iter()
                .flat_map(|r| [(r, page_tiers(1)), (r, page_tiers(4))])
        });
        for (((n, seed), with_head), tiers) in runs {
            for limits in [
                vec![20usize; 15],
                vec![7, 50, 13, 100, 3, 200, 1, 40, 60, 9, 500],
            ] {
                let mut shown: Vec<String> = Vec::new();
                let mut offset = 0;
                for &limit in limits.iter().cycle().take(40) {
                    let (sequence, more) =
                        paged_sequence(offset + limit, with_head, tiers, ranking(n, seed)).unwrap();
                    let page: Vec<String> = sequence
                        .into_iter()
                        .skip(offset)
                        .take(limit)
                        .map(|(id, _)| id)
                        .collect();
                    offset += page.len();
                    shown.extend(page);
                    if !more {
                        break;
                    }
                }
                let distinct: HashSet<&String> = shown.iter().collect();
                assert_eq!(distinct.len(), shown.len(), "no repeats ({n}, {limits:?})");
                // The same positions asked for in one page give the same records.
                let (whole, _) =
                    paged_sequence(shown.len(), with_head, tiers, ranking(n, seed)).unwrap();
                let whole: Vec<String> = whole.into_iter().map(|(id, _)| id).collect();
                assert_eq!(whole, shown, "pages are slices of one sequence");
                // The head's settled prefix opens the sequence.
                let settled = if with_head { head(n, seed) } else { 0 }.min(shown.len());
                let ranked = ranking(n, seed)(HEAD_DEPTH).unwrap().ranked;
                let opening: Vec<&String> = ranked[..settled].iter().map(|(id, _)| id).collect();
                assert_eq!(shown[..settled].iter().collect::<Vec<_>>(), opening);
                // No gaps: within each tier every record ranked above one it placed was shown.
                for (tier, &(first, depth)) in tiers.iter().enumerate() {
                    let next_first = tiers.get(tier + 1).map_or(usize::MAX, |t| t.0);
                    let first = first.max(settled);
                    if first >= shown.len().min(next_first) {
                        continue;
                    }
                    let ranked = ranking(n, seed)(depth).unwrap().ranked;
                    let from_tier: HashSet<&String> =
                        shown[first..shown.len().min(next_first)].iter().collect();
                    let last = ranked.iter().rposition(|(id, _)| from_tier.contains(id));
                    for (id, _) in &ranked[..last.map_or(0, |l| l + 1)] {
                        assert!(distinct.contains(id), "{id} skipped in tier {tier}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_first_page_runs_one_shallow_ranking_and_a_deep_page_stays_bounded() {
        let depths_of = |end: usize, n: usize, seed: u64| {
            let mut depths = Vec::new();
            let (page, more) = paged_sequence(end, true, &PAGE_TIERS, |d| {
                depths.push(d);
                ranking(n, seed)(d)
            })
            .unwrap();
            (page.len(), more, depths)
        };
        // Settled head of 20 (seed 2): the first page is the head ranking alone.
        assert_eq!(depths_of(20, 10_000, 2), (20, true, vec![HEAD_DEPTH]));
        // A longer page than the head settles, or no settled head: the first tier as well.
        assert_eq!(depths_of(50, 10_000, 2), (50, true, vec![HEAD_DEPTH, 500]));
        assert_eq!(depths_of(20, 10_000, 0), (20, true, vec![HEAD_DEPTH, 500]));
        // A head that settles every record there is: nothing more.
        assert_eq!(depths_of(20, 15, 2), (15, false, vec![HEAD_DEPTH]));
        let (len, more, depths) = depths_of(usize::MAX, 30_000, 0);
        assert_eq!(len, MAX_DEPTH);
        assert!(!more, "nothing past the deepest tier");
        assert_eq!(depths, vec![HEAD_DEPTH, 500, 2_500, MAX_DEPTH]);
        // Without the head (several lists), the first page is one ranking at the first tier.
        let first_page = |tiers: &[(usize, usize)], end: usize| {
            let mut depths = Vec::new();
            let (page, _) = paged_sequence(end, false, tiers, |d| {
                depths.push(d);
                ranking(10_000, 2)(d)
            })
            .unwrap();
            (page.len(), depths)
        };
        assert_eq!(first_page(page_tiers(3), 20), (20, vec![500]));
        // Two lists: the first two pages of 20 at 200, the third re-runs 200 and adds 500.
        assert_eq!(first_page(page_tiers(2), 20), (20, vec![200]));
        assert_eq!(first_page(page_tiers(2), 40), (40, vec![200]));
        assert_eq!(first_page(page_tiers(2), 60), (60, vec![200, 500]));
        // A head that settles the first tier's 100 positions: that tier's ranking is skipped.
        let (_, _, depths) = depths_of(300, 30_000, 4);
        assert_eq!(depths, vec![HEAD_DEPTH, 2_500]);
    }

    #[test]
    fn the_tiers_grow_and_end_at_the_deepest_ranking() {
        for lists in 1..=4 {
            let tiers = page_tiers(lists);
            assert_eq!(tiers[0].0, 0, "the first tier starts the sequence");
            assert_eq!(tiers.last().unwrap().1, MAX_DEPTH);
            for pair in tiers.windows(2) {
                assert!(pair[0].0 < pair[1].0 && pair[0].1 < pair[1].1, "{tiers:?}");
            }
            // Every position is ranked at least twice as deep as itself.
            for (i, &(_, depth)) in tiers.iter().enumerate() {
                let end = tiers.get(i + 1).map_or(MAX_DEPTH, |t| t.0);
                assert!(depth >= (2 * end).min(MAX_DEPTH), "{tiers:?}");
            }
        }
    }
}
