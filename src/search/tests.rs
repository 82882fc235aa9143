//! Unit tests of the parent module.

use super::*;

#[test]
fn long_text_is_refused_and_control_characters_dropped() {
    assert!(clean_text(&"a".repeat(MAX_QUERY_CHARS + 1), "query").is_err());
    assert_eq!(clean_text("a\u{0}b\nc", "query").unwrap(), "a b c");
}
