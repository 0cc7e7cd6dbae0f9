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
mod tests;
