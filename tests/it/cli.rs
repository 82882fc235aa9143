//! End to end through the `imagelens` binary (issue 4's contract).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use chrono::{Datelike, Utc};
use indexer::synth::{SynthOptions, write_library};

use crate::common::{Fixture, fixture, ids, ok_json, path_str};

/// path -> record id, from a full look-up.
fn id_by_path(fx: &Fixture) -> HashMap<String, String> {
    let v = ok_json(&fx.run(&["lookup", "--limit", "500", "--json"]));
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["path"].as_str().unwrap().to_owned(),
                r["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn lookup_ids(fx: &Fixture, args: &[&str]) -> BTreeSet<String> {
    let mut a = vec!["lookup", "--limit", "500", "--json"];
    a.extend_from_slice(args);
    let v = ok_json(&fx.run(&a));
    assert_eq!(v["total"].as_u64().unwrap() as usize, ids(&v).len());
    ids(&v).into_iter().collect()
}

#[test]
fn label_query_ranks_labelled_images_first() {
    let fx = fixture(30);
    fx.ingest(true);
    let by_path = id_by_path(&fx);
    let dogs: BTreeSet<String> = fx
        .synth
        .scenes
        .iter()
        .filter(|s| s.labels().contains(&"dog"))
        .map(|s| by_path[&s.file_name].clone())
        .collect();
    assert!(!dogs.is_empty(), "the seed must produce dogs");
    // Keyword side alone: the tiny test model's vectors are random, so only BM25 carries meaning.
    let v = ok_json(&fx.run_with(
        false,
        &["--no-model", "search", "dog", "--limit", "100", "--json"],
    ));
    let got = ids(&v);
    let head: BTreeSet<String> = got.iter().take(dogs.len()).cloned().collect();
    assert_eq!(head, dogs, "labelled images come first");
    for r in v["results"].as_array().unwrap().iter().take(dogs.len()) {
        assert_eq!(r["why"]["matched_labels"], serde_json::json!(["dog"]));
        assert!(r["why"]["keyword"]["rank"].as_u64().unwrap() >= 1);
        let boxes = r["boxes"].as_array().unwrap();
        assert!(
            boxes
                .iter()
                .all(|b| b["label"] == "dog" && b["label_matched"] == true)
        );
    }
    assert_eq!(v["semantic"], false);
    assert!(
        v["notice"]
            .as_str()
            .unwrap()
            .contains("semantic search is off")
    );

    // Hybrid: both sides take part and every hit explains itself.
    let v = ok_json(&fx.run(&["search", "dog", "--limit", "100", "--json"]));
    assert_eq!(v["semantic"], true);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 30, "vector side contributes every image");
    for r in results {
        let why = &r["why"];
        assert!(
            why["image"]["rank"].as_u64().is_some(),
            "image rank explained"
        );
        let is_dog = dogs.contains(r["id"].as_str().unwrap());
        assert_eq!(
            why["keyword"].is_object(),
            is_dog,
            "keyword side is exactly the dogs"
        );
        if why["region"].is_object() {
            assert!(
                r["boxes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|b| b["similarity"].is_number())
            );
        }
    }
}

#[test]
fn more_like_this_ranks_by_image_similarity_and_negatives_push_away() {
    let fx = fixture(12);
    fx.ingest(true);
    let by_path = id_by_path(&fx);
    let target = &by_path[&fx.synth.scenes[3].file_name];
    // By image file: the record with those very pixels comes first, cosine 1.
    let file = fx.synth.images.join(&fx.synth.scenes[3].file_name);
    let v = ok_json(&fx.run(&["search", "--like", path_str(&file), "--json"]));
    assert_eq!(&ids(&v)[0], target);
    let first = &v["results"][0]["why"]["image"];
    assert!(
        (first["score"].as_f64().unwrap() - 1.0).abs() < 1e-3,
        "{first}"
    );
    let by_file: Vec<String> = ids(&v);

    // By record id: the record itself is the query, not an answer; the rest keep the order of
    // their whole-image similarity.
    let v = ok_json(&fx.run(&["search", "--like", target, "--json"]));
    let by_id = ids(&v);
    assert!(!by_id.contains(target));
    assert_eq!(by_id, by_file[1..].to_vec());
    let sims: Vec<f64> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["why"]["image"]["score"].as_f64().unwrap())
        .collect();
    assert!(sims.windows(2).all(|w| w[0] >= w[1]), "{sims:?}");

    // A negative text moves the query vector, so similarities change.
    let v2 = ok_json(&fx.run(&[
        "search",
        "--like",
        target,
        "--not",
        "dog at night",
        "--json",
    ]));
    assert_ne!(
        v["results"][0]["why"]["image"]["score"],
        v2["results"][0]["why"]["image"]["score"]
    );
    // Unknown ids are a clear error naming the id.
    let out = fx.run(&["search", "--like", "ffffffffffffffff", "--json"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ffffffffffffffff"));
}

#[test]
fn filters_are_exact_on_search_lookup_and_every_time_axis() {
    let fx = fixture(36);
    fx.ingest(true);
    // A second dataset, annotated later, ingested later.
    let second = write_library(
        &fx.dir.path().join("src2"),
        &SynthOptions {
            count: 10,
            width: 64,
            height: 48,
            seed: 99,
            jpeg: false,
        },
    )
    .unwrap();
    for f in [&second.instances, &second.captions] {
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        v["info"]["date_created"] = "2025/06/01".into();
        std::fs::write(f, serde_json::to_vec(&v).unwrap()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1100));
    let boundary = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    std::thread::sleep(Duration::from_millis(1100));
    ok_json(&fx.run(&[
        "ingest",
        "--annotations",
        path_str(&second.instances),
        path_str(&second.captions),
        "--images",
        path_str(&second.images),
        "--dataset",
        "second",
        "--json",
    ]));

    let by_path = id_by_path(&fx);
    let all: BTreeSet<String> = by_path.values().cloned().collect();
    assert_eq!(all.len(), 46);
    let first_ids: BTreeSet<String> = fx
        .synth
        .scenes
        .iter()
        .map(|s| by_path[&s.file_name].clone())
        .collect();
    let second_ids: BTreeSet<String> = all.difference(&first_ids).cloned().collect();
    let scenes: Vec<(&str, &indexer::synth::SynthScene)> = fx
        .synth
        .scenes
        .iter()
        .map(|s| ("synth", s))
        .chain(second.scenes.iter().map(|s| ("second", s)))
        .collect();
    let truth = |pred: &dyn Fn(&str, &indexer::synth::SynthScene) -> bool| -> BTreeSet<String> {
        scenes
            .iter()
            .filter(|(d, s)| pred(d, s))
            .map(|(_, s)| by_path[&s.file_name].clone())
            .collect()
    };

    let cutoff = chrono::TimeZone::with_ymd_and_hms(&Utc, 2021, 6, 1, 0, 0, 0).unwrap();
    let cases: Vec<(Vec<&str>, BTreeSet<String>)> = vec![
        (
            vec!["--label", "car"],
            truth(&|_, s| s.labels().contains(&"car")),
        ),
        (
            vec!["--label", "CAR "],
            truth(&|_, s| s.labels().contains(&"car")),
        ),
        (
            vec!["--no-label", "car"],
            truth(&|_, s| !s.labels().contains(&"car")),
        ),
        (
            vec!["--label", "tree", "--no-label", "person"],
            truth(&|_, s| s.labels().contains(&"tree") && !s.labels().contains(&"person")),
        ),
        (vec!["--dataset", "second"], second_ids.clone()),
        (
            vec!["--dataset", "second", "--dataset", "synth"],
            all.clone(),
        ),
        (
            vec!["--captured-after", "2021-06-01"],
            truth(&|_, s| s.captured >= cutoff),
        ),
        (
            vec!["--captured-before", "2021-05-31"],
            truth(&|_, s| s.captured < cutoff),
        ),
        (vec!["--annotated-after", "2025-01-01"], second_ids.clone()),
        (vec!["--annotated-before", "2024-12-31"], first_ids.clone()),
        (vec!["--ingested-after", &boundary], second_ids.clone()),
        (vec!["--ingested-before", &boundary], first_ids.clone()),
        (vec!["--created-after", "2000-01-01"], all.clone()),
        (vec!["--created-before", "2000-01-01"], BTreeSet::new()),
        (vec!["--filename", "*.png"], second_ids.clone()),
        (
            vec!["--filename-glob", "IMG_*"],
            truth(&|_, s| s.file_name.starts_with("IMG_")),
        ),
        (
            vec!["--filename-prefix", "street_"],
            truth(&|_, s| s.file_name.starts_with("street_")),
        ),
        (
            vec!["--filename", &fx.synth.scenes[0].file_name],
            truth(&|d, s| d == "synth" && s.file_name == fx.synth.scenes[0].file_name),
        ),
        (
            vec!["--filename", "beach/*"],
            truth(&|_, s| s.file_name.starts_with("beach/")),
        ),
    ];
    for (args, want) in &cases {
        assert_eq!(&lookup_ids(&fx, args), want, "lookup {args:?}");
        // Search with the same filter never returns anything outside it.
        let mut a = vec![
            "search",
            "a photo of a car on the street",
            "--limit",
            "500",
            "--json",
        ];
        a.extend_from_slice(args);
        let v = ok_json(&fx.run(&a));
        let got: BTreeSet<String> = ids(&v).into_iter().collect();
        assert!(
            got.is_subset(want),
            "search {args:?} leaked {:?}",
            got.difference(want)
        );
        assert_eq!(
            &got, want,
            "vector side reaches every filtered record for {args:?}"
        );
    }

    // Facets equal the true counts.
    let facets = ok_json(&fx.run(&["facets", "--json"]));
    assert_eq!(facets["total"], 46);
    let mut labels: BTreeMap<String, u64> = BTreeMap::new();
    let mut months: BTreeMap<String, u64> = BTreeMap::new();
    for (_, s) in &scenes {
        for l in s.labels() {
            *labels.entry(l.to_owned()).or_default() += 1;
        }
        *months
            .entry(format!(
                "{:04}-{:02}",
                s.captured.year(),
                s.captured.month()
            ))
            .or_default() += 1;
    }
    assert_eq!(facets["labels"], serde_json::to_value(&labels).unwrap());
    assert_eq!(
        facets["months"]["captured"],
        serde_json::to_value(&months).unwrap()
    );
    assert_eq!(
        facets["datasets"],
        serde_json::json!({"second": 10, "synth": 36})
    );
    assert_eq!(
        facets["months"]["annotated"],
        serde_json::json!({"2024-01": 36, "2025-06": 10})
    );
    let filtered = ok_json(&fx.run(&["facets", "--label", "car", "--json"]));
    assert_eq!(filtered["labels"]["car"], labels["car"]);
    assert_eq!(filtered["total"], labels["car"]);
}

#[test]
fn cursor_pages_have_no_repeats_or_gaps_and_json_has_the_contract_fields() {
    let fx = fixture(40);
    fx.ingest(true);
    let full = ok_json(&fx.run(&["search", "a photo", "--limit", "500", "--json"]));
    let all = ids(&full);
    assert_eq!(all.len(), 40);
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut args = vec!["search", "a photo", "--limit", "7", "--json"];
        let c;
        if let Some(cur) = &cursor {
            c = cur.clone();
            args.extend_from_slice(&["--cursor", &c]);
        }
        let v = ok_json(&fx.run(&args));
        paged.extend(ids(&v));
        pages += 1;
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert!(pages >= 3);
    assert_eq!(paged, all, "pages concatenate to the full ranking");

    let r = &full["results"][0];
    for key in ["id", "filename", "score", "labels", "dates", "boxes", "why"] {
        assert!(r.get(key).is_some(), "result has {key}");
    }
    assert!(r["dates"]["captured"].is_string());
    assert!(r["dates"]["ingested"].is_string());
    assert!(full.get("next_cursor").is_some());

    // A cursor of another query is refused.
    let first = ok_json(&fx.run(&["search", "a photo", "--limit", "7", "--json"]));
    let c = first["next_cursor"].as_str().unwrap();
    let out = fx.run(&["search", "dog", "--cursor", c, "--json"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cursor"));

    // Look-ups page the same way, sorted by date.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut args = vec!["lookup", "--sort", "captured", "--limit", "9", "--json"];
        let c;
        if let Some(cur) = &cursor {
            c = cur.clone();
            args.extend_from_slice(&["--cursor", &c]);
        }
        let v = ok_json(&fx.run(&args));
        for r in v["results"].as_array().unwrap() {
            seen.push(r["dates"]["captured"].as_str().unwrap().to_owned());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 40);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
}

#[test]
fn offline_library_works_says_so_and_gains_vectors_later() {
    let fx = fixture(10);
    // No --model, hub offline with an empty cache: the default model cannot load.
    let report = fx.ingest(false);
    assert_eq!(report["added"], 10);
    assert_eq!(report["semantic"], false);
    assert!(
        report["notice"]
            .as_str()
            .unwrap()
            .contains("semantic search is off")
    );

    let v = ok_json(&fx.run_with(false, &["search", "truck", "--json"]));
    assert_eq!(v["semantic"], false);
    let notice = v["notice"].as_str().unwrap();
    assert!(
        notice.contains("semantic search is off") && notice.contains("--model"),
        "{notice}"
    );
    let human = fx.run_with(false, &["search", "truck"]);
    assert!(human.status.success());
    assert!(String::from_utf8_lossy(&human.stderr).contains("semantic search is off"));
    let info = ok_json(&fx.run_with(false, &["info", "--json"]));
    assert_eq!(info["semantic"], false);
    assert!(
        info["notice"]
            .as_str()
            .unwrap()
            .contains("semantic search is off")
    );
    let lookups = ok_json(&fx.run_with(false, &["lookup", "--json"]));
    assert_eq!(lookups["total"], 10);

    // Adding a model later adds vectors without losing anything.
    let report = fx.ingest(true);
    assert_eq!(report["embedded_only"], 10);
    assert_eq!(report["added"], 0);
    let v = ok_json(&fx.run(&["search", "truck", "--json"]));
    assert_eq!(v["semantic"], true);
    let after = ok_json(&fx.run(&["lookup", "--json"]));
    assert_eq!(after["total"], 10);
    assert_eq!(
        lookups["results"][0]["dates"]["ingested"], after["results"][0]["dates"]["ingested"],
        "adding vectors keeps the original ingest time"
    );
    // And a re-run is a no-op.
    let report = fx.ingest(true);
    assert_eq!(report["unchanged"], 10);

    // The library's vectors are in this CPU's default precision (bf16 where it has bf16 dot
    // products, else f32): the same model computing in the other one is refused with a clear
    // error, the library's own named explicitly is accepted, and an unknown precision is a
    // usage error.
    let own = models::Precision::default_for(models::candle::DeviceLocation::Cpu);
    let other = if own == models::Precision::F32 {
        "bf16"
    } else {
        "f32"
    };
    let refused = fx.run(&["--precision", other, "search", "truck", "--json"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(other) && err.contains(own.as_str()) && err.contains("--precision"),
        "{err}"
    );
    let named = ok_json(&fx.run(&["--precision", own.as_str(), "search", "truck", "--json"]));
    assert_eq!(named["semantic"], true);
    let info = ok_json(&fx.run(&["info", "--json"]));
    assert!(
        info.to_string()
            .contains(&format!(r#""precision":"{own}""#)),
        "{info}"
    );
    let bad = fx.run(&["--precision", "int4", "info"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("f32, f16 or bf16"), "{err}");
}

#[test]
fn hostile_queries_return_promptly_without_panic() {
    let fx = fixture(6);
    fx.ingest(true);
    let long = "a".repeat(10_000);
    let nested = format!("{}x{}", "(".repeat(500), ")".repeat(500));
    let hostile = [
        long.as_str(),
        "\"unbalanced",
        "(((",
        "]]]",
        "- *",
        "a:(^",
        nested.as_str(),
        "\u{1}\u{7}\u{7f}\t\r\n\u{1b}[31m",
        "label:dog AND NOT captions:*",
        "*",
        "🚚 at night",
        "",
    ];
    for q in hostile {
        let start = Instant::now();
        let out = fx.run(&["search", q, "--json"]);
        let took = start.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "panic on {q:?}: {stderr}");
        assert_ne!(out.status.code(), Some(101));
        assert!(took < Duration::from_secs(20), "{q:?} took {took:?}");
        if !out.status.success() {
            assert!(
                stderr.starts_with("error: "),
                "clear error for {q:?}: {stderr}"
            );
        }
    }
    // The 10 kB query is refused with a message naming the limit.
    let out = fx.run(&["search", &long]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("limit is 1000"));
    // Bad dates and patterns name the flag / value.
    let out = fx.run(&["lookup", "--captured-after", "yesterday"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--captured-after") && err.contains("yesterday"),
        "{err}"
    );
    let out = fx.run(&["lookup", "--filename-glob", "[[[("]);
    assert_ne!(out.status.code(), Some(101));
}

#[test]
fn optimize_sets_the_index_rebuilds_it_and_info_shows_it_while_search_answers_the_same() {
    let fx = fixture(12);
    fx.ingest(true);
    let before = ok_json(&fx.run(&["search", "truck", "--json"]));
    let info = ok_json(&fx.run(&["info", "--json"]));
    assert_eq!(info["index"]["settings"]["kind"], "auto", "{info}");
    assert_eq!(
        info["index"]["indexed_vectors"], 0,
        "small libraries stay exact"
    );
    assert!(info["index"]["points"].as_u64().unwrap() >= 12);
    assert!(info["index"]["disk_bytes"].as_u64().unwrap() > 0);
    assert_eq!(info["index"]["settings"]["on_disk"], true, "{info}");

    // Out-of-range numbers are refused with the reason, and nothing changes.
    for (flag, value, reason) in [
        ("--m", "1000", "m must lie in 4..=128"),
        (
            "--acorn-selectivity",
            "2",
            "acorn_selectivity must lie in 0.0..=1.0",
        ),
        (
            "--full-scan-share",
            "2",
            "full_scan_share must lie in 0.0..=1.0",
        ),
    ] {
        let bad = fx.run(&["optimize", flag, value]);
        assert!(!bad.status.success(), "{flag} {value} was taken");
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(err.contains(reason), "{flag} {value}: {err}");
    }
    let info = ok_json(&fx.run(&["info", "--json"]));
    assert_eq!(info["index"]["settings"]["m"], 16);
    // A new library grows its full-scan threshold with its parts; a dozen records keep the
    // least one in each.
    assert_eq!(info["index"]["settings"]["full_scan_share"], 0.08, "{info}");
    assert_eq!(
        info["index"]["full_scan_kb"],
        serde_json::json!([40_000, 40_000]),
        "{info}"
    );

    let v = ok_json(&fx.run(&[
        "optimize",
        "--index",
        "hnsw",
        "--quantization",
        "int8",
        "--ef",
        "64",
        "--full-scan-kb",
        "1",
        "--full-scan-share",
        "0",
        "--acorn",
        "off",
        "--acorn-selectivity",
        "0.3",
        "--vectors",
        "ram",
        "--json",
    ]));
    assert_eq!(v["index"]["settings"]["kind"], "hnsw", "{v}");
    assert_eq!(v["index"]["settings"]["on_disk"], false, "{v}");
    assert_eq!(v["index"]["settings"]["quantization"], "int8");
    assert_eq!(v["index"]["settings"]["acorn"], false, "{v}");
    assert_eq!(v["index"]["settings"]["acorn_selectivity"], 0.3, "{v}");
    assert_eq!(v["index"]["settings"]["full_scan_share"], 0.0, "{v}");
    assert_eq!(v["index"]["full_scan_kb"], serde_json::json!([1, 1]), "{v}");
    assert!(v["index"]["indexed_vectors"].as_u64().unwrap() > 0, "{v}");
    let human = fx.run(&["info"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains(
            "index        hnsw, m 16 ef_construct 100 ef 64 (no acorn), int8 x2 rescored, \
             vectors in RAM, full scans under 1 / 1 KiB;"
        ),
        "{text}"
    );
    // A dozen records: the graph finds what the scan found.
    let after = ok_json(&fx.run(&["search", "truck", "--json"]));
    assert_eq!(ids(&after), ids(&before));
}

/// A library made before the layout was recorded (one collection) moves to images and regions
/// apart with `optimize --layout split`: every point copied, the same answers, and the trail
/// records it.
#[test]
fn optimize_layout_split_moves_an_older_library_and_search_answers_the_same() {
    let fx = fixture(12);
    drop(
        indexer::Library::open_with_layout(
            &fx.data,
            indexer::StoreSettings::Edge,
            indexer::VectorLayout::Single,
        )
        .unwrap(),
    );
    fx.ingest(true);
    let before = ok_json(&fx.run(&["search", "truck", "--json"]));
    let info = ok_json(&fx.run(&["info", "--json"]));
    assert_eq!(info["manifest"]["vector_layout"], "single", "{info}");
    let points = info["index"]["points"].as_u64().unwrap();
    assert!(fx.data.join("vectors/collection.json").is_file());

    let v = ok_json(&fx.run(&["optimize", "--layout", "split", "--json"]));
    assert_eq!(v["layout"], "split", "{v}");
    assert_eq!(v["points_copied"], points, "{v}");
    assert_eq!(v["index"]["points"], points, "{v}");
    assert_eq!(v["index"]["settings"]["full_scan_kb"], 40_000, "{v}");
    assert_eq!(v["index"]["settings"]["full_scan_share"], 0.08, "{v}");
    assert!(!fx.data.join("vectors/collection.json").exists());
    assert!(fx.data.join("vectors/regions/collection.json").is_file());
    let after = ok_json(&fx.run(&["search", "truck", "--json"]));
    assert_eq!(ids(&after), ids(&before));
    let text = String::from_utf8_lossy(&fx.run(&["info"]).stdout).into_owned();
    assert!(text.contains("images and regions apart"), "{text}");
    // Again: nothing to do.
    let again = ok_json(&fx.run(&["optimize", "--layout", "split", "--json"]));
    assert_eq!(again["points_copied"], 0, "{again}");
    let bad = fx.run(&["optimize", "--layout", "single"]);
    assert!(!bad.status.success());
}

#[test]
fn one_settings_file_serves_every_command_and_environment_and_flags_win_over_it() {
    let fx = fixture(12);
    let config = fx.dir.path().join("imagelens.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nmodel = {:?}\n\n[fusion]\nimage = 0\nregion = 0\ntext = 0\n",
            path_str(&fx.data),
            path_str(&fx.model)
        ),
    )
    .unwrap();
    let with_config = |args: &[&str]| {
        let mut c = crate::common::bin();
        c.arg("--config").arg(&config);
        c.args(args).output().unwrap()
    };
    // Ingest names neither the library nor the model: both come from the file.
    ok_json(&with_config(&[
        "ingest",
        "--annotations",
        path_str(&fx.synth.instances),
        "--images",
        path_str(&fx.synth.images),
        "--json",
    ]));
    assert!(fx.data.join("manifest.json").exists());
    let info = ok_json(&with_config(&["info", "--json"]));
    assert_eq!(info["manifest"]["counts"]["records"], 12, "{info}");

    // `settings` shows the resolved tree: the file, then the environment, then flags.
    let v = ok_json(&with_config(&["settings", "--json"]));
    assert_eq!(v["data_dir"], path_str(&fx.data));
    assert_eq!(v["fusion"]["image"], 0.0);
    assert_eq!(
        v["fusion"]["keyword"], 1.0,
        "unnamed weights keep their defaults"
    );
    let from_env = crate::common::bin()
        .arg("--config")
        .arg(&config)
        .env("IMAGELENS_DATA_DIR", "/elsewhere/env")
        .args(["settings", "--json"])
        .output()
        .unwrap();
    assert_eq!(ok_json(&from_env)["data_dir"], "/elsewhere/env");
    let from_flag = crate::common::bin()
        .arg("--config")
        .arg(&config)
        .env("IMAGELENS_DATA_DIR", "/elsewhere/env")
        .args(["--data-dir", "/elsewhere/flag", "settings", "--json"])
        .output()
        .unwrap();
    assert_eq!(ok_json(&from_flag)["data_dir"], "/elsewhere/flag");
    let toml_out = with_config(&["settings"]);
    assert!(toml_out.status.success());
    let text = String::from_utf8_lossy(&toml_out.stdout);
    assert!(
        text.contains("[fusion]") && text.contains("[limits]"),
        "{text}"
    );

    // `[fusion]` shapes every search: keyword list alone, so only the dogs come back...
    let by_path = id_by_path(&fx);
    let dogs: BTreeSet<String> = fx
        .synth
        .scenes
        .iter()
        .filter(|s| s.labels().contains(&"dog"))
        .map(|s| by_path[&s.file_name].clone())
        .collect();
    assert!(!dogs.is_empty());
    let v = ok_json(&with_config(&["search", "dog", "--limit", "100", "--json"]));
    assert_eq!(ids(&v).into_iter().collect::<BTreeSet<_>>(), dogs);
    // ...and `--weights` overlays the file: the image list ranks every record again.
    let v = ok_json(&with_config(&[
        "search",
        "dog",
        "--limit",
        "100",
        "--weights",
        "image=1",
        "--json",
    ]));
    assert_eq!(ids(&v).len(), 12);

    // A bad file is refused naming the key, before anything is opened or written.
    let bad = fx.dir.path().join("bad.toml");
    let fresh = fx.dir.path().join("never-made");
    for (text, names) in [
        (
            format!("data_dir = {:?}\n[fusion]\nk = 0\n", path_str(&fresh)),
            "k must be",
        ),
        (
            format!("data_dir = {:?}\n[fusion]\nimages = 1\n", path_str(&fresh)),
            "images",
        ),
        (
            format!(
                "data_dir = {:?}\n[store]\nurl = \"http://x:6334\"\n",
                path_str(&fresh)
            ),
            "store.url",
        ),
    ] {
        std::fs::write(&bad, text).unwrap();
        let out = crate::common::bin()
            .arg("--config")
            .arg(&bad)
            .args(["info", "--json"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(names), "{err}");
        assert!(
            !fresh.exists(),
            "nothing is created for a bad settings file"
        );
    }
    // `[store] url` really selects the backend: a fresh library on a Qdrant URL is made
    // there (here an address nothing listens on, so the command fails naming it and leaves
    // no library behind claiming another store).
    std::fs::write(
        &bad,
        format!(
            "data_dir = {:?}\n[store]\nurl = \"qdrant+http://127.0.0.1:9/lib\"\n",
            path_str(&fresh)
        ),
    )
    .unwrap();
    let out = crate::common::bin()
        .arg("--config")
        .arg(&bad)
        .args(["info", "--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("127.0.0.1:9"), "{err}");
    assert!(!fresh.join("manifest.json").exists(), "{err}");
}

#[test]
fn the_demo_runs_offline_and_its_untrained_model_leaves_the_ranking_to_bm25() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let run = || {
        crate::common::bin()
            .args(["demo", "--dir", path_str(&demo), "--count", "40"])
            .output()
            .unwrap()
    };
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("seeded random"), "{stdout}");
    assert!(
        stdout.contains("untrained") && stdout.contains("keywords (BM25) alone"),
        "{stdout}"
    );
    // Every example ranks as the keyword list alone does.
    let library = demo.join("library");
    for (query, filter) in [
        ("white pickup truck with a ladder at night", None),
        ("a dog in the park", None),
        ("boat on the harbour", Some("2021-01-01")),
    ] {
        let header = match filter {
            Some(after) => format!("$ imagelens search {query:?} --captured-after {after}"),
            None => format!("$ imagelens search {query:?}"),
        };
        let shown: Vec<&str> = stdout
            .lines()
            .skip_while(|l| *l != header)
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert!(!shown.is_empty(), "{header} printed no results:\n{stdout}");
        let mut args = vec![
            "--data-dir",
            path_str(&library),
            "search",
            query,
            "--literal",
            "--limit",
            "3",
            "--weights",
            "image=0,region=0,text=0",
            "--json",
        ];
        if let Some(after) = filter {
            args.extend(["--captured-after", after]);
        }
        let bm25 = ok_json(&crate::common::bin().args(&args).output().unwrap());
        assert_eq!(shown, ids(&bm25), "{query}");
        if query.starts_with("boat") {
            let top = &bm25["results"][0]["labels"];
            assert!(top.to_string().contains("boat"), "{top}");
        }
    }
    // A second run reuses the folder, model and library; a tiny model an older demo wrote
    // (without the random-weights entry) is written again, marked, with the same weights.
    let config = demo.join("tiny-clip/config.json");
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(c["imagelens_random_weights"]["seed"], 2024);
    c.as_object_mut()
        .unwrap()
        .remove("imagelens_random_weights");
    std::fs::write(&config, serde_json::to_vec(&c).unwrap()).unwrap();
    let again = run();
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success());
    assert!(
        stdout.contains("0 added") && stdout.contains("untrained"),
        "{stdout}"
    );
    assert!(
        std::fs::read_to_string(&config)
            .unwrap()
            .contains("imagelens_random_weights")
    );
}

#[test]
fn a_library_made_in_bf16_is_searched_in_bf16_without_the_flag() {
    let fx = fixture(4);
    let out = fx.run(&[
        "--precision",
        "bf16",
        "ingest",
        "--annotations",
        fx.synth.instances.to_str().unwrap(),
        "--images",
        fx.synth.images.to_str().unwrap(),
        "--json",
    ]);
    // On the CPU bf16 is as fast as f32 or faster (bf16 dot products): nothing slower to warn
    // about.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("slower"), "{stderr}");
    let report = ok_json(&out);
    assert_eq!(report["added"], 4);
    assert_eq!(report["semantic"], true);
    let info = ok_json(&fx.run(&["info", "--json"]));
    assert_eq!(info["manifest"]["model"]["precision"], "bf16", "{info}");
    // No flag: the library's precision is used, so its vectors are searchable.
    let v = ok_json(&fx.run(&["search", "truck", "--json"]));
    assert_eq!(v["semantic"], true, "{v}");
    // f32 named explicitly is another vector space for this library.
    let f32 = fx.run(&["--precision", "f32", "search", "truck", "--json"]);
    assert!(!f32.status.success());
    let err = String::from_utf8_lossy(&f32.stderr);
    assert!(err.contains("bf16") && err.contains("f32"), "{err}");
}
