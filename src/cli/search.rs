//! `imagelens search`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::{FilterArgs, access, cell, day};
use crate::app::AppSettings;
use crate::governance::Action;
use crate::interpret::library::interpret_in;
use crate::interpret::unpin_cursor;
use crate::params::{AuditedSearch, InterpretedSearch};
use crate::search::{Like, SearchRequest, SearchService};

/// Arguments of `search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The query, in plain English.
    #[arg(default_value = "")]
    pub query: String,
    /// More like this: a record id or an image file.
    #[arg(long, value_name = "ID|IMAGE")]
    pub like: Option<String>,
    /// Push results away from this text (repeatable).
    #[arg(long = "not", value_name = "TEXT")]
    pub not: Vec<String>,
    /// Filters.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Results per page.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Cursor from the previous page.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Fusion weights over the `[fusion]` settings, e.g. `keyword=1,image=1,region=0.7,text=0.5,k=60`.
    #[arg(long, value_name = "SPEC", default_value = "")]
    pub weights: String,
    /// Take the query literally: no dates, labels, exclusions, datasets or file names are
    /// read from it as filters.
    #[arg(long)]
    pub literal: bool,
    /// Time zone relative dates ("yesterday", "last March") are read in: UTC, an offset such
    /// as +01:00 or an IANA name such as Europe/Paris, with its daylight saving time (default:
    /// the library's `interpret.json`, else UTC).
    #[arg(long, value_name = "TZ", env = "IMAGELENS_TIME_ZONE")]
    pub time_zone: Option<String>,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// Runs `search`.
///
/// # Errors
/// Invalid request, unavailable model, index failures.
pub fn run(settings: &AppSettings, args: SearchArgs) -> anyhow::Result<ExitCode> {
    let (app, caller) = access::open(settings)?;
    let audit = app.audit();
    caller.require(audit, Action::Search)?;
    let library = app.library()?.clone();
    let model = app.model()?;
    let service = SearchService::new(library, model.embedder, model.offline_reason)?;
    let like = args.like.map(|l| {
        if Path::new(&l).is_file() {
            Like::Image(PathBuf::from(l))
        } else {
            Like::Record(l)
        }
    });
    // Plain English becomes exact filters before ranking (unless --literal); the answer says
    // what was read, from which words.
    let mut filter = args.filter.clone();
    let mut text = args.query.clone();
    // A next page's cursor carries the day the first page read relative dates against.
    let (cursor, pinned) = unpin_cursor(args.cursor.as_deref())?;
    let interpreted = if args.literal {
        None
    } else {
        let mut i = interpret_in(
            service.library(),
            &args.query,
            args.time_zone.as_deref(),
            chrono::Utc::now(),
            pinned,
        )?;
        i.apply(&mut filter);
        text = i.ranking_text(&args.query).to_owned();
        Some(i)
    };
    let req = SearchRequest {
        text,
        like,
        not: args.not,
        filter: filter.to_filter()?,
        limit: args.limit,
        cursor,
        fusion: settings.fusion.overlay(&args.weights)?,
    };
    let mut resp = service.search(&req)?;
    if let Some(i) = &interpreted {
        resp.next_cursor = i.pin(resp.next_cursor.take());
    }
    // The trail keeps a liked record as its keyed ref, never its id (a deleted record's id
    // must not stay behind), and the filter as a bounded summary.
    let (like_ref, like_image) = match &req.like {
        Some(Like::Record(id)) => (Some(audit.record_ref(id)), None),
        Some(Like::Image(path)) => (None, Some(path.display().to_string().into())),
        _ => (None, None),
    };
    let query = AuditedSearch {
        query: &args.query,
        like_ref,
        like_image,
        not: &req.not,
        filter: Some(&filter),
        limit: Some(req.limit),
        cursor: req.cursor.as_deref(),
        weights: Some(&args.weights),
    }
    .to_value();
    caller.audit(
        audit,
        Action::Search,
        query,
        resp.results.iter().map(|h| h.id.clone()).collect(),
    )?;
    if args.json {
        super::print_json(&InterpretedSearch {
            response: resp,
            interpreted,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(n) = &resp.notice {
        eprintln!("note: {n}");
    }
    if let Some(i) = interpreted.as_ref().filter(|i| !i.filters.is_empty()) {
        println!("{}", i.summary());
    }
    if resp.results.is_empty() {
        println!("no results");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>3}  {:>7}  {:<16}  {:<28}  {:<10}  {:<24}  why",
        "#", "score", "id", "filename", "captured", "labels"
    );
    let offset: usize = req
        .cursor
        .as_deref()
        .and_then(|c| c.split('.').next()?.parse().ok())
        .unwrap_or(0);
    for (i, h) in resp.results.iter().enumerate() {
        let mut why = Vec::new();
        if let Some(k) = &h.why.keyword {
            why.push(format!("bm25 #{}", k.rank));
        }
        if let Some(v) = &h.why.image {
            why.push(format!("image #{} ({:.2})", v.rank, v.score));
        }
        if let Some(v) = &h.why.region {
            why.push(format!("box #{} ({:.2})", v.rank, v.score));
        }
        if let Some(v) = &h.why.text {
            why.push(format!("text #{}", v.rank));
        }
        if !h.why.matched_labels.is_empty() {
            why.push(format!("labels: {}", h.why.matched_labels.join(",")));
        }
        println!(
            "{:>3}  {:>7.4}  {:<16}  {:<28}  {:<10}  {:<24}  {}",
            offset + i + 1,
            h.score,
            h.id,
            cell(&h.path, 28),
            day(h.dates.captured),
            cell(&h.labels.join(","), 24),
            why.join("; ")
        );
        for b in h.boxes.iter().take(3) {
            println!(
                "       box {} {} at [{:.0}, {:.0}, {:.0}, {:.0}]",
                b.index, b.bbox.label, b.bbox.x, b.bbox.y, b.bbox.w, b.bbox.h
            );
        }
    }
    if let Some(c) = &resp.next_cursor {
        println!("next page: --cursor {c}");
    }
    Ok(ExitCode::SUCCESS)
}
