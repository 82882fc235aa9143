//! Unit tests of the parent module.

use super::*;

#[test]
fn long_text_is_refused_and_control_characters_dropped() {
    assert!(clean_text(&"a".repeat(MAX_QUERY_CHARS + 1), "query").is_err());
    assert_eq!(clean_text("a\u{0}b\nc", "query").unwrap(), "a b c");
}

#[test]
fn a_core_is_spare_while_fewer_rankings_than_cores_run() {
    let lanes = Lanes::with_cores(2);
    let (first, spare) = lanes.enter();
    assert!(spare, "one ranking on two cores leaves one spare");
    let (second, spare) = lanes.enter();
    assert!(!spare, "two rankings on two cores leave none");
    drop(second);
    drop(first);
    assert!(lanes.enter().1, "the count falls as rankings end");
    let waiting = lanes.wait();
    assert!(
        !lanes.enter().1,
        "a search waiting to rank needs the other core"
    );
    drop(waiting);
    assert!(lanes.enter().1, "none waits any more");
    let one = Lanes::with_cores(1);
    assert!(!one.enter().1, "one core is never spare");
    assert!(!Lanes::with_cores(0).enter().1, "zero cores count as one");
}
