use super::*;

#[test]
fn a_character_cut_at_the_end_is_held_back() {
    assert_eq!(incomplete_tail(b"abc"), 0);
    assert_eq!(incomplete_tail("é".as_bytes()), 0);
    assert_eq!(incomplete_tail(&"aé".as_bytes()[..2]), 1);
    assert_eq!(incomplete_tail(&"a€".as_bytes()[..3]), 2);
    assert_eq!(incomplete_tail(&"€€".as_bytes()[..5]), 2);
    assert_eq!(incomplete_tail(&"a😀".as_bytes()[..4]), 3);
    assert_eq!(incomplete_tail("😀".as_bytes()), 0);
    assert_eq!(incomplete_tail(b""), 0);
}
