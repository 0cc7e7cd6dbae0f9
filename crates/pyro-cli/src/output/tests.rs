#[test]
fn control_characters_are_shown_escaped() {
    assert_eq!(super::shown("plain/name", false), "plain/name");
    assert_eq!(super::shown("a\x1b[2Jb\nc", false), "a\\u{1b}[2Jb\\nc");
    assert_eq!(
        super::shown("a\x1b]0;t\x07\n\tb", true),
        "a\\u{1b}]0;t\\u{7}\n\tb"
    );
}
