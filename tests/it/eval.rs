//! `imagelens eval` on a generated library with the tiny seeded model: the figures move the way
//! they must, the report is saved without record data, two reports compare, and every query is
//! audited as a search. In process: every caption is a known-item query.

use std::collections::BTreeSet;
use std::sync::Arc;

use imagelens::eval::{self, EvalOptions, QuerySet};
use imagelens::search::SearchService;
use indexer::{Library, StoreSettings};
use rand::SeedableRng;
use serde_json::Value;

use crate::common::{fixture, ids, ok_json};

/// The benches' generated world (its records here; its `World` and `BenchEmbedder` too later).
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
