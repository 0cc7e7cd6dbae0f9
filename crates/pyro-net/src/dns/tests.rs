use super::*;

fn query(labels: &[&[u8]], qtype: u16, edns: bool) -> Vec<u8> {
    let mut m = vec![0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
    for label in labels {
        m.push(u8::try_from(label.len()).unwrap());
        m.extend_from_slice(label);
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    if edns {
        // Root name, type OPT (41), payload size 4096, TTL 0, no data.
        m.extend_from_slice(&[0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0]);
    }
    m
}

/// ID, flags, QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT.
fn header(m: &[u8]) -> [u16; 6] {
    std::array::from_fn(|i| u16::from_be_bytes([m[2 * i], m[2 * i + 1]]))
}

#[test]
fn a_reply_without_the_request_bytes_encodes_the_same_question() {
    let req = query(&[b"git", b"example", b"com"], TYPE_A, false);
    let q = parse_query(&req).unwrap();
    let from_request = reply_with(&req, &q, Rcode::ServFail);
    let from_query = reply_with(&[], &q, Rcode::ServFail);
    assert_eq!(from_query, from_request);
    assert_eq!(header(&from_query)[1] & 0x000F, Rcode::ServFail as u16);
}

#[test]
fn answers_an_a_query() {
    let req = query(&[b"GitHub", b"com"], TYPE_A, true);
    let q = parse_query(&req).unwrap();
    assert_eq!(q.name, "github.com");
    assert_eq!(
        (q.id, q.qtype, q.qclass, q.question_end),
        (0xABCD, TYPE_A, CLASS_IN, 28)
    );
    assert!(q.recursion_desired);

    let addrs = [
        Ipv4Addr::new(140, 82, 112, 3),
        Ipv4Addr::new(140, 82, 112, 4),
    ];
    let r = answer(&req, &q, &addrs, 300);
    // QR, RD copied, RA; AA, TC, opcode and rcode clear.
    assert_eq!(header(&r), [0xABCD, 0x8180, 1, 2, 0, 0]);
    assert_eq!(r[12..28], req[12..28]);
    assert_eq!(r.len(), 28 + 2 * A_RECORD_LEN);
    for (rec, addr) in r[28..].chunks(A_RECORD_LEN).zip(addrs) {
        assert_eq!(rec[..12], [0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0x01, 0x2C, 0, 4]);
        assert_eq!(Ipv4Addr::new(rec[12], rec[13], rec[14], rec[15]), addr);
    }
}

#[test]
fn caps_answers_and_gives_nodata_or_rcodes() {
    let req = query(&[b"example", b"com"], TYPE_A, false);
    let q = parse_query(&req).unwrap();
    let r = answer(&req, &q, &[Ipv4Addr::LOCALHOST; 100], 60);
    assert!(r.len() <= MAX_UDP_RESPONSE);
    let count = usize::from(header(&r)[3]);
    assert!(count <= 32 && count == (r.len() - q.question_end) / A_RECORD_LEN);

    let req = query(&[b"github", b"com"], TYPE_AAAA, false);
    let q = parse_query(&req).unwrap();
    let r = answer(&req, &q, &[Ipv4Addr::LOCALHOST], 60);
    assert_eq!(
        (header(&r)[1] & 0x000F, header(&r)[3], r.len()),
        (0, 0, q.question_end)
    );
    let r = reply_with(&req, &q, Rcode::Refused);
    assert_eq!(header(&r), [0xABCD, 0x8185, 1, 0, 0, 0]);
    assert_eq!(r[12..], req[12..]);
}

#[test]
fn refuses_bad_names_and_counts() {
    let bad_name = |m: &[u8]| matches!(parse_query(m), Err(ParseError::BadName(_)));
    let mut pointer = query(&[], TYPE_A, false);
    pointer.insert(12, 0x0C);
    pointer.insert(12, 0xC0);
    assert!(bad_name(&pointer));
    assert!(bad_name(&query(&[&[b'a'; 64]], TYPE_A, false)));
    let long: [&[u8]; 6] = [&[b'a'; 50]; 6];
    assert!(bad_name(&query(&long, TYPE_A, false)));
    let fits: [&[u8]; 4] = [&[b'a'; 63], &[b'b'; 63], &[b'c'; 63], &[b'd'; 61]];
    let q = parse_query(&query(&fits, TYPE_A, false)).unwrap();
    assert_eq!(q.name.len(), 253);
    assert!(bad_name(&query(&[b"a b", b"com"], TYPE_A, false)));
    assert!(bad_name(&query(&[&[b'a', 0xFF]], TYPE_A, false)));
    assert_eq!(parse_query(&query(&[], TYPE_A, false)).unwrap().name, "");

    let altered = |at: usize, bits: u8| {
        let mut m = query(&[b"a"], TYPE_A, false);
        m[at] ^= bits;
        m
    };
    assert_eq!(
        parse_query(&altered(5, 3)),
        Err(ParseError::QuestionCount(2))
    );
    assert_eq!(parse_query(&altered(7, 1)), Err(ParseError::HasRecords));
    assert_eq!(parse_query(&altered(11, 2)), Err(ParseError::HasRecords));
    assert_eq!(parse_query(&altered(2, 0x80)), Err(ParseError::NotAQuery));
    assert_eq!(format_error(&altered(2, 0x80)), None);
    assert_eq!(parse_query(&altered(2, 0x10)), Err(ParseError::BadOpcode));
    assert_eq!(parse_query(&[0; MAX_MESSAGE + 1]), Err(ParseError::TooLong));
}

#[test]
fn truncated_queries_are_errors() {
    let req = query(&[b"github", b"com"], TYPE_A, false);
    for n in 0..req.len() {
        assert!(parse_query(&req[..n]).is_err(), "prefix of {n} bytes");
    }
}

#[test]
fn format_error_copies_the_id() {
    let req = query(&[b"a b"], TYPE_A, false);
    let r = format_error(&req).unwrap();
    assert_eq!(r.len(), 12);
    assert_eq!(header(&r), [0xABCD, 0x8181, 0, 0, 0, 0]);
    assert_eq!(format_error(&req[..11]), None);
}

#[test]
fn random_input_never_panics() {
    for seed in 0..2000u64 {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let len = usize::try_from(next() % 600).unwrap();
        let mut msg: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
        if seed & 1 == 0 && msg.len() >= 13 {
            // A plausible header and a short first label, to reach the name.
            msg[2..12].copy_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
            msg[12] &= 0x0F;
        }
        if let Ok(q) = parse_query(&msg) {
            assert!(answer(&msg, &q, &[Ipv4Addr::LOCALHOST; 40], 1).len() <= 512);
            let _ = reply_with(&msg, &q, Rcode::ServFail);
        }
        let _ = format_error(&msg);
    }
}
