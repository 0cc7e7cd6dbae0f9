//! A minimal DNS message codec for the policy resolver, which answers only
//! `A` questions for allowed names. Requests come from the guest: every
//! length and offset is checked, nothing panics or recurses on input, and no
//! allocation grows with a count the message claims.

use std::net::Ipv4Addr;

/// DNS response codes used by the resolver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    /// No error.
    NoError = 0,
    /// The request was malformed.
    FormErr = 1,
    /// The host resolver failed or timed out.
    ServFail = 2,
    /// The name does not exist.
    NxDomain = 3,
    /// The kind of request is not implemented.
    NotImp = 4,
    /// The policy refuses the name.
    Refused = 5,
}

/// Record type `A` (an IPv4 address).
pub const TYPE_A: u16 = 1;
/// Record type `AAAA` (an IPv6 address).
pub const TYPE_AAAA: u16 = 28;
/// Class `IN` (the Internet).
pub const CLASS_IN: u16 = 1;

/// Largest message accepted (TCP messages can be up to this; UDP ones are
/// at most 512 in practice but up to 4096 are accepted).
pub const MAX_MESSAGE: usize = 4096;

const HEADER_LEN: usize = 12;
const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;
const MAX_WIRE_NAME: usize = 255;
const MAX_ANSWERS: usize = 32;
const MAX_UDP_RESPONSE: usize = 512;
/// Pointer to offset 12 (the question's name), type, class, TTL, length, address.
const A_RECORD_LEN: usize = 2 + 2 + 2 + 4 + 2 + 4;
const FLAG_QR: u16 = 0x8000;
const OPCODE_MASK: u16 = 0x7800;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;

/// One parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The message ID, copied into the response.
    pub id: u16,
    /// Lower-case, dot-separated, no trailing dot; "" for the root.
    pub name: String,
    /// The question's type (see [`TYPE_A`], [`TYPE_AAAA`]).
    pub qtype: u16,
    /// The question's class (see [`CLASS_IN`]).
    pub qclass: u16,
    /// Recursion desired flag as sent.
    pub recursion_desired: bool,
    /// Byte offset where the question section ends in the request (header + question).
    question_end: usize,
}

/// Why a request was not accepted as a query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The message ends before its header or question does.
    #[error("DNS message is truncated")]
    TooShort,
    /// The message is longer than [`MAX_MESSAGE`].
    #[error("DNS message is longer than 4096 bytes")]
    TooLong,
    /// The QR bit is set: the message is a response.
    #[error("DNS message is a response, not a query")]
    NotAQuery,
    /// The opcode is not QUERY (0).
    #[error("DNS opcode is not QUERY")]
    BadOpcode,
    /// QDCOUNT is not exactly 1.
    #[error("DNS query has {0} questions instead of 1")]
    QuestionCount(u16),
    /// Answer or authority records, or more than one additional record.
    #[error("DNS query carries records besides the question")]
    HasRecords,
    /// The question's name is not acceptable; the text says why.
    #[error("bad name in DNS question: {0}")]
    BadName(&'static str),
}

fn be16(msg: &[u8], at: usize) -> Option<u16> {
    let bytes = msg.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes(<[u8; 2]>::try_from(bytes).ok()?))
}

/// Parses a request holding exactly one question (and at most one ignored
/// additional record, EDNS's OPT).
pub fn parse_query(msg: &[u8]) -> Result<Query, ParseError> {
    if msg.len() < HEADER_LEN {
        return Err(ParseError::TooShort);
    }
    if msg.len() > MAX_MESSAGE {
        return Err(ParseError::TooLong);
    }
    let field = |at: usize| be16(msg, at).ok_or(ParseError::TooShort);
    let id = field(0)?;
    let flags = field(2)?;
    if flags & FLAG_QR != 0 {
        return Err(ParseError::NotAQuery);
    }
    if flags & OPCODE_MASK != 0 {
        return Err(ParseError::BadOpcode);
    }
    let qdcount = field(4)?;
    if qdcount != 1 {
        return Err(ParseError::QuestionCount(qdcount));
    }
    if field(6)? != 0 || field(8)? != 0 || field(10)? > 1 {
        return Err(ParseError::HasRecords);
    }

    let mut pos = HEADER_LEN;
    let mut name = String::new();
    loop {
        let len = usize::from(*msg.get(pos).ok_or(ParseError::TooShort)?);
        pos += 1;
        if len == 0 {
            break;
        }
        if len > MAX_LABEL_LEN {
            // Top bits set: a compression pointer (0xC0) or a reserved type.
            return Err(ParseError::BadName(
                "compression pointers are not accepted in a question",
            ));
        }
        let added = if name.is_empty() { len } else { len + 1 };
        if name.len() + added > MAX_NAME_LEN {
            return Err(ParseError::BadName("name is longer than 253 characters"));
        }
        let label = msg.get(pos..pos + len).ok_or(ParseError::TooShort)?;
        if !name.is_empty() {
            name.push('.');
        }
        for &b in label {
            if !matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_') {
                return Err(ParseError::BadName(
                    "labels may hold only ASCII letters, digits, '-' and '_'",
                ));
            }
            name.push(char::from(b.to_ascii_lowercase()));
        }
        pos += len;
    }
    Ok(Query {
        id,
        name,
        qtype: field(pos)?,
        qclass: field(pos + 2)?,
        recursion_desired: flags & FLAG_RD != 0,
        question_end: pos + 4,
    })
}

/// Writes the question from the parsed fields, for a request that does not
/// hold the question `q` was parsed from.
fn encode_question(out: &mut Vec<u8>, q: &Query) {
    let mut wire = 1;
    for label in q.name.split('.').filter(|l| !l.is_empty()) {
        let bytes = label.as_bytes();
        let bytes = bytes.get(..MAX_LABEL_LEN).unwrap_or(bytes);
        wire += 1 + bytes.len();
        if wire > MAX_WIRE_NAME {
            break;
        }
        out.push(u8::try_from(bytes.len()).unwrap_or(0));
        out.extend_from_slice(bytes);
    }
    out.push(0);
    out.extend_from_slice(&q.qtype.to_be_bytes());
    out.extend_from_slice(&q.qclass.to_be_bytes());
}

/// Header (ANCOUNT 0) and question of a response to `q`.
fn response(request: &[u8], q: &Query, rcode: Rcode) -> Vec<u8> {
    let mut flags = FLAG_QR | FLAG_RA | rcode as u16;
    if q.recursion_desired {
        flags |= FLAG_RD;
    }
    let mut out = Vec::with_capacity(MAX_UDP_RESPONSE);
    out.extend_from_slice(&q.id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    // QDCOUNT 1, ANCOUNT 0 (set by `answer`), NSCOUNT 0, ARCOUNT 0.
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    match request.get(HEADER_LEN..q.question_end) {
        Some(question) if !question.is_empty() => out.extend_from_slice(question),
        _ => encode_question(&mut out, q),
    }
    out
}

/// NOERROR with one A record per address (name as a compression pointer
/// 0xC00C to the question), class IN, given TTL. For a query that is not
/// type A (e.g. AAAA) the answer section is empty (NODATA). At most 32
/// addresses are written, and no more than keep the message within 512 bytes.
pub fn answer(request: &[u8], q: &Query, addrs: &[Ipv4Addr], ttl: u32) -> Vec<u8> {
    let mut out = response(request, q, Rcode::NoError);
    if q.qtype != TYPE_A {
        return out;
    }
    let room = MAX_UDP_RESPONSE.saturating_sub(out.len()) / A_RECORD_LEN;
    let count = addrs.len().min(MAX_ANSWERS).min(room);
    for addr in addrs.iter().take(count) {
        // Pointer to the question's name, TYPE_A, CLASS_IN.
        out.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]);
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&addr.octets());
    }
    let ancount = u16::try_from(count).unwrap_or(0);
    if let Some(slot) = out.get_mut(6..8) {
        slot.copy_from_slice(&ancount.to_be_bytes());
    }
    out
}

/// An empty response with the given rcode (REFUSED for names outside the
/// policy, NXDOMAIN when the host could not resolve the name, SERVFAIL on a
/// host resolver failure or timeout, NOTIMP for other classes).
pub fn reply_with(request: &[u8], q: &Query, rcode: Rcode) -> Vec<u8> {
    response(request, q, rcode)
}

/// FORMERR for a message that failed to parse, if at least its 12-byte
/// header is there and it is not itself a response: the header only
/// (QDCOUNT 0) with the ID and RD copied. `None` otherwise (drop it).
pub fn format_error(msg: &[u8]) -> Option<Vec<u8>> {
    let id = be16(msg, 0)?;
    let flags = be16(msg, 2)?;
    if msg.len() < HEADER_LEN || flags & FLAG_QR != 0 {
        return None;
    }
    let flags = FLAG_QR | FLAG_RA | (flags & FLAG_RD) | Rcode::FormErr as u16;
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    Some(out)
}

#[cfg(test)]
mod tests {
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
}
