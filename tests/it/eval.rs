//! `imagelens eval` on a generated library with the tiny seeded model: the figures move the way
//! they must, the report is saved without record data, two reports compare, and every query is
//! audited as a search. In process: every caption is a known-item query, and on libraries whose
//! vectors carry meaning (the benches' clustered world) the vector lists beat chance and the
//! sweep gives them weight where the annotations miss content.

use std::collections::BTreeSet;
use std::sync::Arc;

use imagelens::eval::{self, EvalOptions, QuerySet};
use imagelens::search::{SearchError, SearchService};
use indexer::{Library, StoreSettings};
use rand::SeedableRng;
use serde_json::Value;

use crate::common::{fixture, ids, ok_json};

/// The benches' generated world: `World` (clusters per label family) and `BenchEmbedder` (query
/// text lands near images of the family of the first label it names; regions and caption
/// text vectors near their image). A structured stand-in for CLIP, not trained weights.
#[path = "../../benches/common/mod.rs"]
mod world;

fn scores<'a>(report: &'a Value, set: &str, system: &str) -> &'a Value {
    report["sets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["set"] == set)
        .unwrap_or_else(|| panic!("no set {set}"))["systems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["system"] == system)
        .unwrap_or_else(|| panic!("no system {system} in {set}"))
}

fn metric(report: &Value, set: &str, system: &str, name: &str) -> f64 {
    scores(report, set, system)[name].as_f64().unwrap()
}

#[test]
fn eval_measures_each_list_and_saves_comparable_reports() {
    let fx = fixture(60);
    fx.ingest(true);
    let r = ok_json(&fx.run(&["eval", "--json", "--sweep"]));
    assert_eq!(r["semantic"], true);
    // The sweep chooses on one half and checks on the other; with seeded random vectors the
    // keyword list alone is best, so the held-out gain over the default weights is positive.
    let sw = &r["sweep"];
    assert_eq!(
        sw["train_queries"].as_u64().unwrap() + sw["held_out_queries"].as_u64().unwrap(),
        r["sets"][0]["queries"].as_u64().unwrap() + 60
    );
    assert!(sw["held_out_gain"].as_f64().unwrap() > 0.0, "{sw}");
    assert!(
        sw["weights"].as_str().unwrap().starts_with("keyword="),
        "{sw}"
    );
    // Every list holds the whole library here, so the offline fusion the sweep uses must give
    // exactly the search's own hybrid figures.
    for set in ["label", "caption"] {
        let offline = sw["offline_current"][set].as_f64().unwrap();
        let hybrid = metric(&r, set, "hybrid", "ndcg_10");
        assert!(
            (offline - hybrid).abs() < 1e-9,
            "{set}: offline {offline} vs search {hybrid}"
        );
    }
    let label_queries = r["sets"][0]["queries"].as_u64().unwrap();
    assert!(label_queries >= 5, "{label_queries} label queries");
    assert_eq!(
        r["sets"][1]["queries"], 60,
        "one known-item query per captioned record"
    );
    for system in ["keyword", "image", "region", "text", "hybrid", "chance"] {
        for set in ["label", "caption"] {
            for m in ["recall_1", "recall_5", "recall_10", "ndcg_10", "mrr"] {
                let v = metric(&r, set, system, m);
                assert!((0.0..=1.0).contains(&v), "{set} {system} {m} = {v}");
            }
        }
    }
    // BM25 finds the labelled records; seeded random image vectors do not beat chance by much.
    let kw = metric(&r, "label", "keyword", "ndcg_10");
    let image = metric(&r, "label", "image", "ndcg_10");
    let chance = metric(&r, "label", "chance", "ndcg_10");
    assert!(kw > 0.9, "keyword nDCG@10 on label queries {kw}");
    assert!(image < kw - 0.3, "image {image} vs keyword {kw}");
    assert!(
        (image - chance).abs() < 0.35,
        "image {image} vs chance {chance}"
    );
    // Known items: the caption is indexed text, so BM25 finds its record at once.
    assert!(metric(&r, "caption", "keyword", "mrr") > 0.5);
    assert!(metric(&r, "caption", "image", "mrr") < 0.5);
    // The per-label table has every label query, worst hybrid first.
    let labels = r["labels"].as_array().unwrap();
    assert_eq!(labels.len() as u64, label_queries);
    let hybrid: Vec<f64> = labels
        .iter()
        .map(|l| l["systems"]["hybrid"]["ndcg_10"].as_f64().unwrap())
        .collect();
    assert!(hybrid.windows(2).all(|w| w[0] <= w[1]), "{hybrid:?}");

    // Saved under DIR/eval/ with the model and library state, and no record data.
    let saved: Vec<_> = std::fs::read_dir(fx.data.join("eval"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(saved.len(), 1);
    let text = std::fs::read_to_string(&saved[0]).unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(file["model"]["dim"], r["model"]["dim"]);
    assert_eq!(file["library"]["records"], 60);
    for scene in &fx.synth.scenes {
        assert!(!text.contains(&scene.caption), "a caption in the report");
        assert!(
            !text.contains(&scene.file_name),
            "a file name in the report"
        );
    }

    // A second run with other weights and a sample, then the two compared.
    let r2 = ok_json(&fx.run(&[
        "eval",
        "--json",
        "--sample",
        "3",
        "--seed",
        "9",
        "--weights",
        "keyword=0",
    ]));
    assert_eq!(r2["sets"][1]["queries"], 3);
    assert_eq!(r2["sets"][1]["available"], 60);
    let mut names: Vec<String> = std::fs::read_dir(fx.data.join("eval"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2);
    let cmp = ok_json(&fx.run(&["eval", "--compare", &names[0], &names[1], "--json"]));
    assert!(!cmp["differences"].as_array().unwrap().is_empty());
    assert!(cmp["setup"].to_string().contains("options"), "{cmp}");
    let human = fx.run(&["eval", "--compare", &names[0], &names[1]]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("nDCG@10"));
    let missing = fx.run(&["eval", "--compare", "nope", &names[1]]);
    assert!(!missing.status.success());

    // Every query was audited as a search with the eval purpose.
    let trail = std::fs::read_to_string(fx.data.join("audit/trail.jsonl")).unwrap();
    let evals = trail
        .lines()
        .filter(|l| l.contains("\"eval\":\"caption\"") || l.contains("\"eval\":\"label\""))
        .count() as u64;
    assert_eq!(
        evals,
        label_queries + 60 + r2["sets"][0]["queries"].as_u64().unwrap() + 3
    );
    assert!(trail.contains("imagelens eval"));
    for scene in &fx.synth.scenes {
        assert!(!trail.contains(&scene.caption), "a caption in the trail");
    }
}

#[test]
fn eval_without_a_model_scores_the_keyword_list_and_refuses_bad_options() {
    let fx = fixture(20);
    fx.ingest(false);
    let r = ok_json(&fx.run_with(
        false,
        &["eval", "--json", "--min-records", "2", "--no-save"],
    ));
    assert_eq!(r["semantic"], false);
    let systems: Vec<&str> = r["sets"][0]["systems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["system"].as_str().unwrap())
        .collect();
    assert_eq!(systems, ["keyword", "chance"]);
    assert!(!fx.data.join("eval").exists());
    let human = fx.run_with(false, &["eval", "--no-save", "--min-records", "2"]);
    let out = String::from_utf8_lossy(&human.stdout);
    assert!(out.contains("per label, nDCG@10"), "{out}");
    for bad in [
        vec!["eval", "--template", "a photo"],
        vec!["eval", "--sample", "0"],
        vec!["eval", "--min-records", "0"],
    ] {
        let out = fx.run_with(false, &bad);
        assert!(!out.status.success(), "{bad:?}");
    }
}

#[test]
fn an_untrained_model_is_measured_at_chance_and_left_out_of_searches() {
    let mut fx = fixture(60);
    // The same seeded weights as the fixture's model, with the random-weights entry its
    // config.json lacks: the library's model identity is the same for both.
    let unmarked = fx.model.clone();
    fx.model = models::tiny::write(&fx.dir.path().join("marked-clip"), 5).unwrap();
    fx.ingest(true);

    let r = ok_json(&fx.run(&["eval", "--json", "--sweep", "--no-save"]));
    assert_eq!(r["semantic"], true);
    let why = r["untrained"].as_str().expect("the report says why");
    assert!(why.contains("seeded random"), "{why}");
    assert!(r["sweep"].is_null(), "no weights to sweep: {}", r["sweep"]);
    // Each vector list alone is measured (near chance); the hybrid is what a search does,
    // which is the keyword list, figure for figure.
    let chance = metric(&r, "label", "chance", "ndcg_10");
    let kw = metric(&r, "label", "keyword", "ndcg_10");
    assert!(kw > 0.9, "keyword nDCG@10 on label queries {kw}");
    for system in ["image", "region", "text"] {
        let v = metric(&r, "label", system, "ndcg_10");
        assert!(v < kw - 0.3 && (v - chance).abs() < 0.35, "{system} {v}");
    }
    for set in ["label", "caption"] {
        for m in ["recall_1", "recall_5", "recall_10", "ndcg_10", "mrr"] {
            assert_eq!(
                metric(&r, set, "hybrid", m),
                metric(&r, set, "keyword", m),
                "{set} {m}"
            );
        }
    }
    let human = fx.run(&["eval", "--sweep", "--no-save"]);
    assert!(human.status.success());
    let (out, err) = (
        String::from_utf8_lossy(&human.stdout),
        String::from_utf8_lossy(&human.stderr),
    );
    assert!(out.contains("the model is untrained"), "{out}");
    assert!(err.contains("untrained"), "{err}");

    // A search ranks the query text as BM25 does, and says why.
    let query = "a dog in the park";
    let s = ok_json(&fx.run(&["search", query, "--literal", "--json"]));
    assert_eq!(s["semantic"], false);
    let notice = s["notice"].as_str().unwrap();
    assert!(
        notice.contains("untrained") && notice.contains("keywords (BM25) alone"),
        "{notice}"
    );
    let keyword_only = |model: &std::path::Path, weights: &str| {
        let out = crate::common::bin()
            .arg("--data-dir")
            .arg(&fx.data)
            .arg("--model")
            .arg(model)
            .args(["search", query, "--literal", "--json", "--weights", weights])
            .output()
            .unwrap();
        ok_json(&out)
    };
    let bm25 = keyword_only(&unmarked, "image=0,region=0,text=0");
    assert!(!ids(&bm25).is_empty());
    assert_eq!(ids(&s), ids(&bm25));
    // The same weights unmarked: the vector lists take part again.
    let hybrid = keyword_only(&unmarked, "");
    assert_eq!(hybrid["semantic"], true);
    assert!(hybrid["notice"].is_null(), "{}", hybrid["notice"]);
    // Negative texts are words too: they change nothing an untrained model could rank.
    let with_not = ok_json(&fx.run(&["search", query, "--literal", "--not", "a cat", "--json"]));
    assert_eq!(ids(&with_not), ids(&s));

    // "More like this" still compares images through it, exactly as the unmarked model does.
    let first = ids(&s)[0].clone();
    let like = ok_json(&fx.run(&["search", "--like", &first, "--json"]));
    assert_eq!(like["semantic"], true);
    assert!(!ids(&like).is_empty() && !ids(&like).contains(&first));
    let out = crate::common::bin()
        .arg("--data-dir")
        .arg(&fx.data)
        .arg("--model")
        .arg(&unmarked)
        .args(["search", "--like", &first, "--json"])
        .output()
        .unwrap();
    assert_eq!(ids(&like), ids(&ok_json(&out)));
}

// ---------------------------------------------------------------------------------------------
// In-process libraries: records written straight into a library, as the benches do.

fn no_audit(_: &eval::EvalQuery, _: &[eval::System], _: Vec<String>) -> Result<(), SearchError> {
    Ok(())
}

#[test]
fn every_caption_of_a_record_is_a_known_item_query_for_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let lib = Library::open(dir.path(), StoreSettings::Edge).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    // Record i has i captions (0 to 5), one of them blank for i = 4, which is no query.
    let mut expected = Vec::new();
    {
        let mut writer = lib.keyword().writer().unwrap();
        for i in 0..6 {
            let mut r = world::record(i, &["car"], &[], &mut rng);
            r.captions = (0..i).map(|c| format!("record {i} caption {c}")).collect();
            if i == 4 {
                r.captions[2] = "  ".into();
            }
            for c in r.captions.iter().filter(|c| !c.trim().is_empty()) {
                expected.push((c.clone(), r.id.clone()));
            }
            writer.upsert(&r, "").unwrap();
        }
        writer.commit().unwrap();
    }
    lib.refresh_counts().unwrap();
    let service = SearchService::new(Arc::new(lib), None, Some("none".into())).unwrap();
    let opts = EvalOptions::default();
    let (queries, available) = eval::queries(&service, &opts).unwrap();
    let captions: Vec<&eval::EvalQuery> = queries
        .iter()
        .filter(|q| q.set == QuerySet::Caption)
        .collect();
    assert_eq!(expected.len(), 1 + 2 + 3 + 3 + 5);
    assert_eq!(available[1], expected.len());
    assert_eq!(captions.len(), expected.len());
    let mut got: Vec<(String, String)> = captions
        .iter()
        .map(|q| {
            assert_eq!(q.relevant.len(), 1, "one relevant record per caption");
            (q.text.clone(), q.relevant.iter().next().unwrap().clone())
        })
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(
        got, expected,
        "k captions give k queries, each for its own record"
    );

    // `--sample` caps the queries (not the records), by a seeded hash of each caption query.
    let sampled = |seed: u64| {
        let opts = EvalOptions {
            sample: 4,
            seed,
            ..Default::default()
        };
        let (q, available) = eval::queries(&service, &opts).unwrap();
        assert_eq!(
            available[1],
            expected.len(),
            "what the set had before sampling"
        );
        q.into_iter()
            .filter(|q| q.set == QuerySet::Caption)
            .map(|q| q.text)
            .collect::<Vec<_>>()
    };
    let a = sampled(42);
    assert_eq!(a.len(), 4);
    assert_eq!(a, sampled(42), "one seed, one sample");
    let seeds: BTreeSet<Vec<String>> = (0..8).map(sampled).collect();
    assert!(seeds.len() > 1, "other seeds draw other captions");
    assert!(a.iter().all(|t| expected.iter().any(|(c, _)| c == t)));
}

/// A generated library of `n` records in the benches' clustered world of `world_seed` (records
/// drawn with `records_seed`), searched through the world's stand-in embedder. Records `i` with
/// `i % 100 >= annotated_percent` are written without labels, boxes or captions (images
/// ingested but not yet annotated); `truth` keeps every record's generated labels.
struct Structured {
    service: SearchService,
    truth: std::collections::BTreeMap<String, Vec<String>>,
}

fn structured(
    dir: &std::path::Path,
    n: usize,
    world_seed: u64,
    records_seed: u64,
    annotated_percent: usize,
) -> Structured {
    structured_noisy(
        dir,
        n,
        world_seed,
        records_seed,
        annotated_percent,
        world::Noise::default(),
    )
}

/// [`structured`] in a world with `noise` (see `world::Noise`).
fn structured_noisy(
    dir: &std::path::Path,
    n: usize,
    world_seed: u64,
    records_seed: u64,
    annotated_percent: usize,
    noise: world::Noise,
) -> Structured {
    let spec = models::EmbedderSpec {
        model_id: "structured-stand-in".into(),
        revision: format!("world-{world_seed}"),
        dim: world::DIM,
        image_size: 224,
        precision: Default::default(),
    };
    let mut lib = Library::open(dir, StoreSettings::Edge).unwrap();
    let truth = std::sync::Mutex::new(std::collections::BTreeMap::new());
    let generator = world::build_seeded(
        &mut lib,
        &spec,
        n,
        world::Generator::noisy(world::Data::Clustered, world_seed, noise),
        records_seed,
        |r, i| {
            truth.lock().unwrap().insert(r.id.clone(), r.labels.clone());
            if i % 100 >= annotated_percent {
                r.labels.clear();
                r.boxes.clear();
                r.captions.clear();
                r.supercategories.clear();
            }
        },
    );
    let embedder = Arc::new(world::BenchEmbedder::new(
        spec,
        Some(generator.world().clone()),
    ));
    Structured {
        service: SearchService::new(Arc::new(lib), Some(embedder), None).unwrap(),
        truth: truth.into_inner().unwrap(),
    }
}

/// Label queries judged by the generated labels of every record, annotated or not (what a
/// user searching for unannotated content needs), each list ranked alone as `eval` does.
/// Several phrasings per label: the stand-in places each phrasing near another cluster of the
/// label's family.
fn blind_label_queries(s: &Structured) -> Vec<eval::sweep::QueryLists> {
    blind_label_queries_phrased(s, &PHRASINGS[..5])
}

/// Ways a label query is phrased (the stand-in places each near another cluster of the label's
/// family).
const PHRASINGS: [&str; 10] = [
    "a photo of a {label}",
    "a picture of a {label}",
    "{label}",
    "a {label} in the scene",
    "an image with a {label}",
    "{label}s",
    "show me a {label}",
    "there is a {label}",
    "a close-up of a {label}",
    "a {label} somewhere",
];

/// [`blind_label_queries`] with the given phrasings.
fn blind_label_queries_phrased(s: &Structured, phrasings: &[&str]) -> Vec<eval::sweep::QueryLists> {
    let lists = [
        eval::System::Keyword,
        eval::System::Image,
        eval::System::Region,
        eval::System::Text,
    ];
    let current = imagelens::search::Fusion::default();
    let mut out = Vec::new();
    for (label, _, _) in indexer::synth::LABELS {
        let relevant: BTreeSet<String> = s
            .truth
            .iter()
            .filter(|(_, labels)| labels.iter().any(|l| l == label))
            .map(|(id, _)| id.clone())
            .collect();
        for phrasing in phrasings {
            let text = phrasing.replace("{label}", label);
            let ranked = lists.map(|system| {
                let req = imagelens::search::SearchRequest {
                    text: text.clone(),
                    limit: eval::DEPTH,
                    fusion: system.fusion(current),
                    ..Default::default()
                };
                let resp = s.service.search(&req).unwrap();
                resp.results.into_iter().map(|h| h.id).collect::<Vec<_>>()
            });
            out.push(eval::sweep::QueryLists {
                set: QuerySet::Label,
                key: text,
                relevant: relevant.clone(),
                lists: ranked,
            });
        }
    }
    out
}

/// Mean nDCG@10 of `queries` fused with `w` (keyword, image, region, text) and `k`.
fn fused_ndcg(queries: &[eval::sweep::QueryLists], w: [f32; 4], k: f32) -> f64 {
    queries
        .iter()
        .map(|q| eval::metrics::ndcg_at(&eval::sweep::fuse(&q.lists, w, k), &q.relevant, 10))
        .sum::<f64>()
        / queries.len() as f64
}

fn figure(r: &eval::EvalReport, set: QuerySet, system: eval::System) -> eval::Scores {
    r.sets
        .iter()
        .find(|s| s.set == set)
        .and_then(|s| s.systems.iter().find(|x| x.system == system))
        .unwrap_or_else(|| panic!("no {system:?} on {set:?}"))
        .scores
}

/// The report as the tables of the closing note.
fn figures(r: &eval::EvalReport) -> String {
    let mut out = String::from("| set | queries | system | R@1 | R@5 | R@10 | nDCG@10 | MRR |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for s in &r.sets {
        for x in &s.systems {
            let v = x.scores;
            out.push_str(&format!(
                "| {} | {}/{} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
                s.set.name(),
                s.queries,
                s.available,
                x.system.name(),
                v.recall_1,
                v.recall_5,
                v.recall_10,
                v.ndcg_10,
                v.mrr
            ));
        }
    }
    if let Some(sw) = &r.sweep {
        out.push_str(&format!(
            "sweep ({} train / {} held-out queries): chose --weights {}; training {:.3} vs \
             current {:.3}; held out {:.3} vs current {:.3}, gain {:+.3}\n",
            sw.train_queries,
            sw.held_out_queries,
            sw.weights,
            sw.train_best,
            sw.train_current,
            sw.held_out_best,
            sw.held_out_current,
            sw.held_out_gain
        ));
    }
    out
}

#[test]
fn on_a_library_whose_vectors_carry_meaning_the_vector_lists_beat_chance() {
    let dir = tempfile::tempdir().unwrap();
    let service = structured(dir.path(), 1000, 7, 42, 100).service;
    let opts = EvalOptions {
        sample: 200,
        sweep: true,
        ..Default::default()
    };
    let r = eval::run(&service, &opts, no_audit).unwrap();
    eprintln!("{}", figures(&r));
    assert!(r.semantic && r.untrained.is_none());
    let chance = figure(&r, QuerySet::Label, eval::System::Chance);
    for system in [
        eval::System::Image,
        eval::System::Region,
        eval::System::Text,
    ] {
        let v = figure(&r, QuerySet::Label, system);
        assert!(
            v.ndcg_10 > chance.ndcg_10 + 0.4 && v.ndcg_10 > 3.0 * chance.ndcg_10,
            "{system:?} nDCG@10 {} vs chance {}",
            v.ndcg_10,
            chance.ndcg_10
        );
        assert!(v.recall_10 > chance.recall_10 + 0.4, "{system:?} {v:?}");
    }
    let sw = r.sweep.expect("a sweep");
    assert!(sw.held_out_queries > 0 && sw.train_queries > 0);
}

#[test]
fn sweep_prints_a_fusion_table_to_adopt_and_changes_no_setting() {
    let fx = fixture(30);
    fx.ingest(true);
    let config = fx.dir.path().join("imagelens.toml");
    let text = format!(
        "data_dir = {:?}\nmodel = {:?}\n\n[fusion]\nkeyword = 1.0\nimage = 0.5\nregion = 0.25\ntext = 0.25\nk = 40.0\n",
        crate::common::path_str(&fx.data),
        crate::common::path_str(&fx.model)
    );
    std::fs::write(&config, &text).unwrap();
    let with_config = |args: &[&str]| {
        let mut c = crate::common::bin();
        c.arg("--config").arg(&config);
        c.args(args).output().unwrap()
    };
    let settings_before = ok_json(&with_config(&["settings", "--json"]));
    let manifest = fx.data.join("manifest.json");
    let manifest_before = std::fs::read(&manifest).unwrap();
    let search_before = ok_json(&with_config(&[
        "search",
        "dog on a street",
        "--literal",
        "--json",
    ]));

    let out = with_config(&["eval", "--sweep"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let adopt = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("to adopt: --weights "))
        .unwrap_or_else(|| panic!("no weights to adopt: {stdout}"));
    assert!(adopt.ends_with("(not applied)"), "{adopt}");
    let spec = adopt.trim_end_matches("(not applied)").trim();
    // The `[fusion]` block, as it would go into the settings file: the same weights.
    let block: String = stdout
        .lines()
        .skip_while(|l| l.trim() != "[fusion]")
        .take_while(|l| l.starts_with("    "))
        .map(|l| format!("{}\n", l.trim()))
        .collect();
    assert!(block.starts_with("[fusion]\n"), "{stdout}");
    let table: toml::Value = toml::from_str(&block).unwrap();
    let fusion = &table["fusion"];
    let adopted = imagelens::search::Fusion::parse(spec).unwrap();
    for (name, v) in [
        ("keyword", adopted.keyword),
        ("image", adopted.image),
        ("region", adopted.region),
        ("text", adopted.text),
        ("k", adopted.k),
    ] {
        assert_eq!(
            fusion[name].as_float().unwrap() as f32,
            v,
            "{name} in {block}"
        );
    }
    // The sweep measured the settings file's weights as the current ones...
    let json = ok_json(&with_config(&["eval", "--sweep", "--json", "--no-save"]));
    assert_eq!(json["options"]["fusion"], settings_before["fusion"]);
    assert_eq!(json["options"]["fusion"]["k"], 40.0);
    // ...and applied nothing: the file, the library's manifest, the resolved settings and the
    // searches are as they were.
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);
    assert_eq!(std::fs::read(&manifest).unwrap(), manifest_before);
    assert_eq!(
        ok_json(&with_config(&["settings", "--json"])),
        settings_before
    );
    let search_after = ok_json(&with_config(&[
        "search",
        "dog on a street",
        "--literal",
        "--json",
    ]));
    assert_eq!(ids(&search_after), ids(&search_before));
}

#[test]
fn when_annotations_miss_content_the_sweep_gives_the_vector_lists_weight() {
    // 3% of the records are annotated (about 4 per label): BM25 finds only those, so it
    // cannot fill a first page of 10; the vectors find the unannotated rest. Judged by the
    // generated labels, the sweep (the same code as `eval --sweep`) must give the vector lists
    // a share, and gain on the held-out queries over the keyword list alone.
    let dir = tempfile::tempdir().unwrap();
    let s = structured(dir.path(), 1000, 7, 42, 3);
    let queries = blind_label_queries(&s);
    assert_eq!(queries.len(), 50);
    let keyword_only = imagelens::search::Fusion {
        keyword: 1.0,
        image: 0.0,
        region: 0.0,
        text: 0.0,
        ..Default::default()
    };
    let sw = eval::sweep::sweep(&queries, keyword_only, 42).expect("both halves");
    eprintln!("{sw:?}");
    assert!(
        sw.best.image + sw.best.region + sw.best.text > 0.0,
        "the vector lists get a share: {}",
        sw.weights
    );
    assert!(sw.held_out_gain > 0.05, "{sw:?}");
    // Each list alone: BM25 is capped by the few annotated records; the image list is not.
    let kw = fused_ndcg(&queries, [1.0, 0.0, 0.0, 0.0], 60.0);
    let image = fused_ndcg(&queries, [0.0, 1.0, 0.0, 0.0], 60.0);
    assert!(image > 0.5, "image list nDCG@10 {image}");
    assert!(kw < 0.8 && kw > 0.1, "keyword list nDCG@10 {kw}");
}

/// Figures of the noiseless stand-in (every vector list perfect on label queries; `--ignored`,
/// prints them). The fusion defaults come from [`fusion_defaults_figures`] instead.
#[test]
#[ignore = "measurement: prints the noiseless stand-in's figures"]
fn structured_library_figures() {
    for (n, world_seed, records_seed) in [(1000, 7, 42), (3000, 11, 5)] {
        let dir = tempfile::tempdir().unwrap();
        let s = structured(dir.path(), n, world_seed, records_seed, 100);
        let opts = EvalOptions {
            sweep: true,
            ..Default::default()
        };
        let r = eval::run(&s.service, &opts, no_audit).unwrap();
        println!(
            "\n### eval --sweep, fully annotated: {n} records, world seed {world_seed}, records seed {records_seed}\n\n{}",
            figures(&r)
        );
        for annotated in [3, 20] {
            let dir = tempfile::tempdir().unwrap();
            let s = structured(dir.path(), n, world_seed, records_seed, annotated);
            let queries = blind_label_queries(&s);
            let current = imagelens::search::Fusion::default();
            let sw = eval::sweep::sweep(&queries, current, 42).expect("both halves");
            println!(
                "\n### label queries judged by generated labels, {annotated}% of records annotated: {n} records, world seed {world_seed}\n"
            );
            println!(
                "| fusion | nDCG@10 (all {} queries) |\n| --- | --- |",
                queries.len()
            );
            for (name, w, k) in [
                ("keyword alone", [1.0, 0.0, 0.0, 0.0], 60.0),
                ("image alone", [0.0, 1.0, 0.0, 0.0], 60.0),
                ("region alone", [0.0, 0.0, 1.0, 0.0], 60.0),
                ("text alone", [0.0, 0.0, 0.0, 1.0], 60.0),
                (
                    "defaults 1/1/0.7/0.5 k=60",
                    [current.keyword, current.image, current.region, current.text],
                    current.k,
                ),
                (
                    "sweep's choice",
                    [sw.best.keyword, sw.best.image, sw.best.region, sw.best.text],
                    sw.best.k,
                ),
            ] {
                println!("| {name} | {:.3} |", fused_ndcg(&queries, w, k));
            }
            println!(
                "sweep ({} train / {} held-out queries): chose --weights {}; held out {:.3} vs defaults {:.3}, gain {:+.3}",
                sw.train_queries,
                sw.held_out_queries,
                sw.weights,
                sw.held_out_best,
                sw.held_out_current,
                sw.held_out_gain
            );
        }
    }
}

/// The world of the fusion defaults' measurement: no list is perfect. 10% of images look like
/// another label's family, caption text vectors are noisier than image vectors (spread 1.2:
/// cosine about 0.65 with their image), each box's region lies near its own label's family, and
/// a query lands far from the images it names (spread 2: cosine about 0.45 with the cluster
/// centre), the gap between CLIP's text and image embeddings.
const REALISTIC: world::Noise = world::Noise {
    wrong_image: 0.1,
    text_spread: 1.2,
    region_spread: 0.6,
    regions_by_label: true,
    query_spread: Some(2.0),
};

/// The measurement behind the fusion defaults (README.md, "Fusion defaults"; `--ignored`,
/// prints the figures). Partly annotated libraries in the [`REALISTIC`] world, label queries
/// judged by every record's generated labels; the sweep (`eval --sweep`'s code) on each, and
/// every setting of its grid scored on each library's held-out queries. With 20% or more of
/// 2,000 records annotated (exactly) the keyword list alone fills page 1 with relevant records
/// for every label, so nDCG@10 saturates; 2% and 5% annotated are where the weights show.
///
/// Criterion, fixed before the runs: a setting is adopted when on every library its held-out
/// nDCG@10 is within 0.01 of that library's best setting of the grid, and its mean over the
/// libraries beats the current defaults'; among several, the best mean.
#[test]
#[ignore = "measurement: prints the figures behind the fusion defaults"]
fn fusion_defaults_figures() {
    use eval::sweep::{KS, WEIGHTS, objective, split, sweep};
    let n: usize = std::env::var("IMAGELENS_EVAL_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let defaults = imagelens::search::Fusion::default();
    let dw = [
        defaults.keyword,
        defaults.image,
        defaults.region,
        defaults.text,
    ];
    let mut grid: Vec<([f32; 4], f32)> = Vec::new();
    for &kw in &WEIGHTS {
        for &im in &WEIGHTS {
            for &re in &WEIGHTS {
                for &tx in &WEIGHTS {
                    let w = [kw, im, re, tx];
                    if w.iter().any(|v| *v > 0.0) {
                        for &k in &KS {
                            grid.push((w, k));
                        }
                    }
                }
            }
        }
    }
    println!(
        "| world seed | annotated | keyword | image | region | text | defaults | sweep's choice (train) | held out: choice / defaults / best of grid |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    // Per library: each grid setting's held-out score, and the defaults'.
    let mut held_scores: Vec<Vec<f64>> = Vec::new();
    let mut held_defaults: Vec<f64> = Vec::new();
    for world_seed in [7u64, 11, 23] {
        for annotated in [2usize, 5, 20, 50, 80] {
            let dir = tempfile::tempdir().unwrap();
            let s = structured_noisy(dir.path(), n, world_seed, 42, annotated, REALISTIC);
            let queries = blind_label_queries_phrased(&s, &PHRASINGS);
            let sw = sweep(&queries, defaults, 42).expect("both halves");
            let (_, held) = split(&queries, 42);
            let scores: Vec<f64> = grid.iter().map(|(w, k)| objective(&held, *w, *k)).collect();
            let best = scores.iter().copied().fold(0.0, f64::max);
            let alone = |i: usize| {
                let mut w = [0.0; 4];
                w[i] = 1.0;
                fused_ndcg(&queries, w, 60.0)
            };
            println!(
                "| {world_seed} | {annotated}% | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {:.3} / {:.3} / {:.3} |",
                alone(0),
                alone(1),
                alone(2),
                alone(3),
                fused_ndcg(&queries, dw, defaults.k),
                sw.weights,
                sw.held_out_best,
                sw.held_out_current,
                best
            );
            held_defaults.push(sw.held_out_current);
            held_scores.push(scores);
        }
    }
    let libs = held_scores.len() as f64;
    let mean_defaults = held_defaults.iter().sum::<f64>() / libs;
    let summary = |i: usize| {
        let gaps: Vec<f64> = held_scores
            .iter()
            .map(|scores| scores.iter().copied().fold(0.0, f64::max) - scores[i])
            .collect();
        let mean = held_scores.iter().map(|s| s[i]).sum::<f64>() / libs;
        (mean, gaps.iter().copied().fold(0.0, f64::max))
    };
    let spell = |(w, k): ([f32; 4], f32)| {
        format!(
            "keyword={},image={},region={},text={},k={k}",
            w[0], w[1], w[2], w[3]
        )
    };
    let mut by_mean: Vec<usize> = (0..grid.len()).collect();
    by_mean.sort_by(|&a, &b| summary(b).0.total_cmp(&summary(a).0));
    println!("\nheld-out nDCG@10, mean over {libs} libraries: defaults {mean_defaults:.3}");
    println!("best ten settings of the grid by mean (worst gap to a library's best):");
    for &i in by_mean.iter().take(10) {
        let (mean, gap) = summary(i);
        println!("  {}: mean {mean:.3}, worst gap {gap:.3}", spell(grid[i]));
    }
    let consistent: Vec<usize> = by_mean
        .iter()
        .copied()
        .filter(|&i| {
            let (mean, gap) = summary(i);
            gap <= 0.01 + 1e-9 && mean > mean_defaults
        })
        .collect();
    match consistent.first() {
        Some(&i) => println!(
            "criterion met by {} settings; best mean: {}",
            consistent.len(),
            spell(grid[i])
        ),
        None => println!("criterion met by no setting: keep the defaults"),
    }
}
