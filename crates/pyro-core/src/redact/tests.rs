use super::*;

const SECRET: &[u8] = b"hunter2-token-XYZ";

fn r() -> Redactor {
    Redactor::new([("TOKEN", SECRET)])
}

#[test]
fn exact_and_encoded_forms_are_redacted() {
    let b64 = base64::engine::general_purpose::STANDARD;
    for prefix in ["", "a", "ab", "abc"] {
        let mut v = prefix.as_bytes().to_vec();
        v.extend_from_slice(SECRET);
        v.extend_from_slice(b"tail");
        for enc in [
            b64.encode(&v),
            base64::engine::general_purpose::URL_SAFE.encode(&v),
        ] {
            let (out, n) = r().text(&enc);
            assert!(n >= 1, "{enc} not caught");
            assert!(out.contains("[redacted:TOKEN]"), "{out}");
        }
    }
    for enc in [
        String::from_utf8(SECRET.to_vec()).unwrap(),
        hex::encode(SECRET),
        hex::encode_upper(SECRET),
    ] {
        let (out, n) = r().text(&format!("x {enc} y"));
        assert_eq!((out.as_str(), n), ("x [redacted:TOKEN] y", 1), "{enc}");
    }
    let pw = Redactor::new([("PW", &b"p@ss w/rd!"[..])]);
    for enc in ["p%40ss%20w%2Frd%21", "p%40ss%20w%2frd%21"] {
        assert_eq!(pw.text(enc), ("[redacted:PW]".to_owned(), 1), "{enc}");
    }
    let (out, n) = r().text("nothing to see");
    assert_eq!((out.as_str(), n), ("nothing to see", 0));
}

#[test]
fn a_secret_split_over_pieces_is_caught() {
    let text = b"before hunter2-token-XYZ middle hunter2-token-XYZ after";
    for size in [1, 2, 3, 7, 16, 100] {
        let mut s = r().stream();
        let mut out = Vec::new();
        for piece in text.chunks(size) {
            out.extend(s.push(piece));
        }
        out.extend(s.finish());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "before [redacted:TOKEN] middle [redacted:TOKEN] after",
            "pieces of {size}"
        );
        assert_eq!(s.count(), 2);
    }
}

#[test]
fn only_a_possible_start_of_a_secret_is_left_for_the_next_call() {
    let r = r();
    assert_eq!(r.pending(b"prompt$ "), 0);
    assert_eq!(r.pending(b"token: hunt"), 4);
    assert_eq!(r.pending(b"token: hunter2-token-XYZ"), 0);
    let (out, n, keep) = r.settle(b"a hunter2-token-XYZ b hunter2-to", false);
    assert_eq!(
        (out.as_slice(), n, keep),
        (&b"a [redacted:TOKEN] b "[..], 1, 10)
    );
    // A value that ends where it could begin again is still whole.
    let abc = Redactor::new([("S", &b"abc123abc"[..])]);
    assert_eq!(abc.pending(b"x abc123abc"), 3);
    let (out, n, keep) = abc.settle(b"x abc123abc", false);
    assert_eq!((out.as_slice(), n, keep), (&b"x [redacted:S]"[..], 1, 0));
    let (out, _, keep) = abc.settle(b"abc123abc123", false);
    assert_eq!((out.as_slice(), keep), (&b"[redacted:S]123"[..], 0));
    let (out, _, keep) = abc.settle(b"abc123abc ab", false);
    assert_eq!((out.as_slice(), keep), (&b"[redacted:S] "[..], 2));
    let (out, _, keep) = r.settle(b"end hunter2-to", true);
    assert_eq!((out.as_slice(), keep), (&b"end hunter2-to"[..], 0));
    let mut s = r.stream();
    let mut out = s.push(b"hello hunter2-");
    out.extend(s.settle());
    assert_eq!(out, b"hello ");
    assert_eq!(s.held(), 8);
}

#[test]
fn nothing_is_held_without_secrets() {
    let mut s = Redactor::none().stream();
    assert_eq!(s.push(b"abc"), b"abc");
    assert!(s.finish().is_empty());
}

#[test]
fn the_longest_form_wins() {
    let r = Redactor::new([("A", &b"secret"[..]), ("B", &b"secret-longer"[..])]);
    assert_eq!(r.text("x secret-longer y").0, "x [redacted:B] y");
    assert_eq!(r.text("x secret y").0, "x [redacted:A] y");
}
