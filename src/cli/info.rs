//! `imagelens info`: the library's model, counts and layout, and for a library on a Qdrant
//! server the server's version, the collection's points and every shard replica's state.

use std::process::ExitCode;

use clap::Args;

use crate::app::{App, AppSettings};

/// Arguments of `info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// Runs `info`.
///
/// # Errors
/// When the library cannot be opened.
pub fn run(settings: &AppSettings, args: InfoArgs) -> anyhow::Result<ExitCode> {
    let app = App::open(settings)?;
    let library = app.library()?;
    let index = library.store().index_state()?;
    let m = library.manifest();
    let server = library.server_status()?;
    let semantic = m.model.is_some();
    let notice = (!semantic).then(|| {
        "semantic search is off: this library has no vectors yet. Run `imagelens --model \
         /path/to/clip-folder ingest ...` to add them"
            .to_owned()
    });
    if args.json {
        super::print_json(&serde_json::json!({
            "data_dir": library.dir(),
            "manifest": m,
            "server": server,
            "semantic": semantic,
            "notice": notice,
            "index": index,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("library      {}", library.dir().display());
    println!("format       {}", m.format_version);
    match &server {
        None => println!(
            "store        {} (embedded, in the data directory; {})",
            m.store, m.vector_layout
        ),
        Some(s) => {
            println!(
                "store        {} (Qdrant {}; {})",
                m.store, s.version, m.vector_layout
            );
            let names = s.collections.join(", ");
            if s.exists {
                println!(
                    "collection   {names}: {}, {} points ({} indexed), {} shard(s) x {} \
                     replica(s), write consistency {}",
                    s.status,
                    s.points,
                    s.indexed_vectors,
                    s.shard_number,
                    s.replication_factor,
                    s.write_consistency_factor
                );
                for r in &s.replicas {
                    let points = r.points.map_or(String::new(), |p| format!(", {p} points"));
                    println!(
                        "replica      {} shard {} on peer {}: {}{points}",
                        r.collection, r.shard, r.peer, r.state
                    );
                }
            } else {
                println!(
                    "collection   {names}: not created yet (the first embedded ingest creates \
                     it)"
                );
            }
        }
    }
    match &m.model {
        Some(s) => println!("model        {s}"),
        None => println!("model        none (keyword-only library)"),
    }
    println!("records      {}", m.counts.records);
    println!("embedded     {}", m.counts.embedded_records);
    println!("points       {}", m.counts.points);
    println!("index        {}", super::optimize::describe(&index));
    println!("updated      {}", m.updated.to_rfc3339());
    if let Some(n) = notice {
        eprintln!("note: {n}");
    }
    Ok(ExitCode::SUCCESS)
}
