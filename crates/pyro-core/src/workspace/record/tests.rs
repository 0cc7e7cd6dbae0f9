use super::*;

#[test]
fn ids_are_strict() {
    assert!(valid_id("0123456789abcdef"));
    assert!(!valid_id("0123456789ABCDEF"));
    assert!(!valid_id("../../etc/passwd"));
    assert!(!valid_id("abc"));
}

/// A state's wire name is its JSON name.
#[test]
fn state_names_match_their_json() {
    for s in [
        State::Creating,
        State::Started,
        State::Stopped,
        State::Resetting,
    ] {
        assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
    }
}
