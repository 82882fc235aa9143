//! Unit tests of the parent module.

use super::*;

#[test]
fn glob_translates_wildcards_and_escapes_the_rest() {
    assert_eq!(glob_to_regex("*.jpg"), ".*\\.jpg");
    assert_eq!(glob_to_regex("img_??.png"), "img_..\\.png");
    assert_eq!(glob_to_regex("a[0-9]b"), "a[0-9]b");
    assert_eq!(glob_to_regex("x[!ab]"), "x[^ab]");
    assert_eq!(glob_to_regex("(a)+"), "\\(a\\)\\+");
}

#[test]
fn glob_star_and_question_mark_match_newlines() {
    let star = FilenameMatch::Glob("*".into()).compile().unwrap();
    assert!(star.matches("new\nline.png"));
    assert!(star.matches(""));
    let q = FilenameMatch::Glob("new?line.*".into()).compile().unwrap();
    assert!(q.matches("new\nline.png"));
    let p = FilenameMatch::Prefix("new".into());
    assert_eq!(p.to_regex().unwrap(), "(?s)new.*");
    assert!(p.compile().unwrap().matches("new\nline.png"));
}

#[test]
fn class_set_operators_are_literal_characters_in_a_glob() {
    let m = FilenameMatch::Glob("[a&&b]x".into()).compile().unwrap();
    assert!(m.matches("&x") && m.matches("ax") && !m.matches("cx"));
    let m = FilenameMatch::Glob("[~~]x".into()).compile().unwrap();
    assert!(m.matches("~x"));
    // Not a class: literal.
    let m = FilenameMatch::Glob("a[]b".into()).compile().unwrap();
    assert!(m.matches("a[]b"));
    let m = FilenameMatch::Glob("a[!".into()).compile().unwrap();
    assert!(m.matches("a[!"));
    let m = FilenameMatch::Glob("a[\\".into()).compile().unwrap();
    assert!(m.matches("a[\\"));
}

#[test]
fn a_long_or_invalid_pattern_is_refused_without_echoing_it() {
    let long = FilenameMatch::Glob("?".repeat(MAX_PATTERN_CHARS + 1));
    let e = long.compile().unwrap_err();
    assert!(e.to_string().len() < 200, "{e}");
    assert!(e.reason.contains("512"), "{e}");
    assert!(
        FilenameMatch::Glob("?".repeat(MAX_PATTERN_CHARS))
            .compile()
            .is_ok()
    );
    let e = FilenameMatch::Glob(format!("[z-a]{}", "b".repeat(400)))
        .compile()
        .unwrap_err();
    assert!(!e.to_string().contains(&"b".repeat(100)), "{e}");
    assert!(e.reason.contains("range"), "{e}");
}

#[test]
fn a_compiled_filter_matches_payloads_like_the_uncompiled_one() {
    let mut p = Payload::default();
    p.insert("labels", serde_json::json!(["car", "dog"]));
    p.insert("dataset", "d1");
    p.insert("filename", "IMG_1.jpg");
    p.insert("captured", 100);
    let f = RecordFilter {
        source_ids: Vec::new(),
        labels: vec![" Car ".into()],
        no_labels: vec!["cat".into()],
        datasets: vec!["d1".into()],
        splits: Vec::new(),
        attrs: Vec::new(),
        dates: vec![DateRange {
            axis: DateAxis::Captured,
            after: DateTime::from_timestamp(50, 0),
            before: DateTime::from_timestamp(150, 0),
        }],
        filename: Some(FilenameMatch::Glob("IMG_?.jpg".into())),
    };
    assert!(f.compile().unwrap().matches(&p));
    assert!(f.matches_payload(&p));
    let mut g = f.clone();
    g.no_labels.push("DOG".into());
    assert!(!g.compile().unwrap().matches(&p));
    let mut g = f.clone();
    g.filename = Some(FilenameMatch::Glob("[z-a]".into()));
    assert!(g.compile().is_err());
    assert!(
        !g.matches_payload(&p),
        "a filter that does not compile matches nothing"
    );
}

#[test]
fn only_prefix_and_glob_filenames_are_not_pushable() {
    let mut f = RecordFilter::default();
    assert!(f.fully_pushable());
    f.filename = Some(FilenameMatch::Exact("a.jpg".into()));
    assert!(f.fully_pushable());
    assert_eq!(f.to_vector_filter().must.len(), 1);
    f.filename = Some(FilenameMatch::Glob("*.jpg".into()));
    assert!(!f.fully_pushable());
}
