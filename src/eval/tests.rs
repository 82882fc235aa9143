//! Unit tests of the parent module.

use super::*;

#[test]
fn systems_run_one_list_alone_or_all() {
    let h = Fusion::default();
    let k = System::Keyword.fusion(h);
    assert_eq!((k.keyword, k.image, k.region, k.text), (1.0, 0.0, 0.0, 0.0));
    let r = System::Region.fusion(h);
    assert_eq!((r.keyword, r.image, r.region, r.text), (0.0, 0.0, 1.0, 0.0));
    assert_eq!(r.k, h.k);
    assert_eq!(System::Hybrid.fusion(h), h);
}

#[test]
fn samples_are_fixed_by_the_seed() {
    let items: Vec<String> = (0..50).map(|i| format!("id{i}")).collect();
    let a = sample(&items, |s| s.as_str(), 7, 10);
    assert_eq!(a, sample(&items, |s| s.as_str(), 7, 10));
    assert_ne!(a, sample(&items, |s| s.as_str(), 8, 10));
    assert_eq!(a.len(), 10);
    assert_eq!(sample(&items, |s| s.as_str(), 7, 100).len(), 50);
}

#[test]
fn options_are_checked() {
    assert!(EvalOptions::default().check().is_ok());
    for bad in [
        EvalOptions {
            template: "a photo".into(),
            ..Default::default()
        },
        EvalOptions {
            sample: 0,
            ..Default::default()
        },
        EvalOptions {
            sample: MAX_SAMPLE + 1,
            ..Default::default()
        },
        EvalOptions {
            min_records: 0,
            ..Default::default()
        },
    ] {
        assert!(bad.check().is_err(), "{bad:?}");
    }
}

#[test]
fn means_divide_sums_by_the_query_count() {
    let mut s = Scores::default();
    s.add(&Scores {
        recall_1: 1.0,
        recall_5: 1.0,
        recall_10: 1.0,
        ndcg_10: 1.0,
        mrr: 1.0,
    });
    s.add(&Scores::default());
    let m = s.divided(2);
    assert_eq!(m.ndcg_10, 0.5);
    assert_eq!(m.mrr, 0.5);
}
