//! A minimal nfnetlink_log (NFLOG) client for what nftables logs with `log group N prefix "..."`,
//! and a parser for the logged (guest-sent) IPv4 packets: every length is checked, nothing panics.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, poll};

const NETLINK_NETFILTER: libc::c_int = 12;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST_ACK: u16 = 1 | 4;
const NFULNL_MSG_PACKET: u16 = 4 << 8;
const NFULNL_MSG_CONFIG: u16 = (4 << 8) | 1;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_QTHRESH: u16 = 4;
const CMD_BIND: u8 = 1;
const CMD_PF_BIND: u8 = 3;
const CMD_PF_UNBIND: u8 = 4;
const NFULNL_COPY_PACKET: u8 = 2;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;
const NLA_TYPE_MASK: u16 = !(0x8000 | 0x4000);
const RECV_BUFFER: usize = 64 * 1024;
const MAX_PACKETS: usize = 64;
const MAX_PREFIX_CHARS: usize = 64;
const ACK_TIMEOUT: Duration = Duration::from_millis(1000);

/// A netlink socket bound to one NFLOG group in the creating thread's namespace.
#[derive(Debug)]
pub struct NflogSocket {
    fd: OwnedFd,
}

/// What one read returned.
#[derive(Debug, Default)]
pub struct Batch {
    /// The logged packets, at most 64.
    pub packets: Vec<LoggedPacket>,
    /// The kernel dropped messages (ENOBUFS) since the last read.
    pub dropped: bool,
}

/// One logged packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoggedPacket {
    /// NFULA_PREFIX (attribute 10) up to its NUL: lossy UTF-8, at most 64 chars kept.
    pub prefix: String,
    /// NFULA_PAYLOAD (attribute 9): the packet from its network header.
    pub payload: Vec<u8>,
}

/// The IPv4 flow a logged packet belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// The IP protocol number (6 TCP, 17 UDP, 1 ICMP, ...).
    pub protocol: u8,
    /// The source address.
    pub source: Ipv4Addr,
    /// The destination address.
    pub destination: Ipv4Addr,
    /// Destination port for TCP (6) and UDP (17) when the transport header is present.
    pub port: Option<u16>,
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// The `N` bytes at `at`, if all are there.
fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn ne_u32(b: &[u8], at: usize) -> Option<u32> {
    array(b, at).map(u32::from_ne_bytes)
}

/// The netlink messages of a datagram as (type, sequence, payload after the
/// header), up to the first malformed or truncated one.
fn messages(buf: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
    let mut off = 0;
    std::iter::from_fn(move || {
        let rest = buf.get(off..)?;
        let len = usize::try_from(ne_u32(rest, 0)?).ok()?;
        // `None` for a length below the header's or past the end.
        let payload = rest.get(NLMSG_HDRLEN..len)?;
        off += align4(len);
        Some((
            array(rest, 4).map(u16::from_ne_bytes)?,
            ne_u32(rest, 8)?,
            payload,
        ))
    })
}

/// A config request to nfnetlink_log carrying one attribute.
fn config(seq: u32, family: u8, res_id: u16, ty: u16, value: &[u8]) -> Vec<u8> {
    let attr_len = 4 + value.len();
    let total = NLMSG_HDRLEN + NFGENMSG_LEN + align4(attr_len);
    let mut msg = Vec::with_capacity(total);
    msg.extend_from_slice(&u32::try_from(total).unwrap_or(0).to_ne_bytes());
    msg.extend_from_slice(&NFULNL_MSG_CONFIG.to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST_ACK.to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0 (the kernel), then nfgenmsg: family, NFNETLINK_V0, res_id.
    msg.extend_from_slice(&[0, 0, 0, 0, family, 0]);
    msg.extend_from_slice(&res_id.to_be_bytes());
    msg.extend_from_slice(&u16::try_from(attr_len).unwrap_or(0).to_ne_bytes());
    msg.extend_from_slice(&ty.to_ne_bytes());
    msg.extend_from_slice(value);
    msg.resize(total, 0);
    msg
}

/// The error code (0 or a negative errno) acknowledging request `seq`.
fn find_ack(data: &[u8], seq: u32) -> Option<i32> {
    messages(data)
        .filter(|&(ty, s, _)| ty == NLMSG_ERROR && s == seq)
        .find_map(|(_, _, payload)| array(payload, 0).map(i32::from_ne_bytes))
}

/// The logged packets in a datagram from the kernel, at most 64; other and
/// malformed messages are skipped.
pub fn packets_in(data: &[u8]) -> Vec<LoggedPacket> {
    messages(data)
        .filter(|&(ty, _, _)| ty == NFULNL_MSG_PACKET)
        .filter_map(|(_, _, payload)| payload.get(NFGENMSG_LEN..))
        .take(MAX_PACKETS)
        .map(parse_packet_attrs)
        .collect()
}

fn recv_into(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for `buf.len()` bytes for the whole call.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

impl NflogSocket {
    /// Opens a nonblocking NETLINK_NETFILTER socket and binds it to NFLOG
    /// `group` (after rebinding nfnetlink_log for AF_INET, errors tolerated),
    /// packets copied up to `copy_range` bytes and delivered one by one.
    pub fn bind(group: u16, copy_range: u16) -> io::Result<Self> {
        let kind = libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
        // SAFETY: socket() takes no pointers; the result is checked below.
        let raw = unsafe { libc::socket(libc::AF_NETLINK, kind, NETLINK_NETFILTER) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let socket = Self { fd };
        // SAFETY: sockaddr_nl is a plain C struct; all-zero bytes are valid.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let addr_ptr = std::ptr::from_ref(&addr).cast::<libc::sockaddr>();
        let addr_len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `addr_ptr` points to a live sockaddr_nl of `addr_len` bytes.
        if unsafe { libc::bind(socket.fd.as_raw_fd(), addr_ptr, addr_len) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let (inet, unspec) = (libc::AF_INET as u8, libc::AF_UNSPEC as u8);
        // Older kernels need these two; newer ones make them no-ops.
        let _ = socket.request(&config(1, inet, 0, NFULA_CFG_CMD, &[CMD_PF_UNBIND]));
        let _ = socket.request(&config(2, inet, 0, NFULA_CFG_CMD, &[CMD_PF_BIND]));
        socket.request(&config(3, unspec, group, NFULA_CFG_CMD, &[CMD_BIND]))?;
        let [a, b, c, d] = u32::from(copy_range).to_be_bytes();
        let mode = [a, b, c, d, NFULNL_COPY_PACKET, 0];
        socket.request(&config(4, unspec, group, NFULA_CFG_MODE, &mode))?;
        let one = 1u32.to_be_bytes();
        socket.request(&config(5, unspec, group, NFULA_CFG_QTHRESH, &one))?;
        Ok(socket)
    }

    /// Sends one request to the kernel (the socket is unconnected) and waits up
    /// to [`ACK_TIMEOUT`] for its acknowledgement, dropping packets read meanwhile.
    fn request(&self, msg: &[u8]) -> io::Result<()> {
        let seq = ne_u32(msg, 8).unwrap_or(0);
        // SAFETY: `msg` is readable for `msg.len()` bytes for the whole call.
        if unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let deadline = Instant::now() + ACK_TIMEOUT;
        let mut buf = vec![0; RECV_BUFFER];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let millis = left.as_millis().clamp(1, 1000) as u16;
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            if !matches!(poll(&mut fds, millis), Ok(n) if n > 0) {
                continue; // Timed out (caught above next time) or interrupted.
            }
            // Errors (WouldBlock, ENOBUFS, ...) read as nothing; retried until the deadline.
            let n = recv_into(self.fd.as_fd(), &mut buf).unwrap_or(0);
            match find_ack(buf.get(..n).unwrap_or_default(), seq) {
                Some(0) => return Ok(()),
                Some(code) => return Err(io::Error::from_raw_os_error(code.saturating_neg())),
                None => {}
            }
        }
    }

    /// Reads one datagram into a 64 KiB buffer (`Err(WouldBlock)` when none is queued) and
    /// returns its logged packets, at most 64, skipping other and malformed messages.
    /// ENOBUFS (the kernel dropped log messages) gives an empty batch with `dropped`.
    pub fn recv(&self) -> io::Result<Batch> {
        let mut buf = vec![0; RECV_BUFFER];
        let (packets, dropped) = match recv_into(self.fd.as_fd(), &mut buf) {
            Ok(n) => (packets_in(buf.get(..n).unwrap_or_default()), false),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => (Vec::new(), true),
            Err(e) => return Err(e),
        };
        Ok(Batch { packets, dropped })
    }
}

impl AsFd for NflogSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Parses the attributes of one NFULNL_MSG_PACKET (after its nlmsghdr and nfgenmsg). An
/// attribute shorter than its 4-byte header or running past the end stops the walk.
pub fn parse_packet_attrs(attrs: &[u8]) -> LoggedPacket {
    let (mut packet, mut off) = (LoggedPacket::default(), 0);
    while let Some([l0, l1, t0, t1]) = array::<4>(attrs, off) {
        let len = usize::from(u16::from_ne_bytes([l0, l1]));
        // `None` for a length below the header's or past the end.
        let Some(value) = attrs.get(off + 4..off + len) else {
            break;
        };
        match u16::from_ne_bytes([t0, t1]) & NLA_TYPE_MASK {
            NFULA_PREFIX => {
                let text = value.split(|&b| b == 0).next().unwrap_or_default();
                let text = String::from_utf8_lossy(text);
                packet.prefix = text.chars().take(MAX_PREFIX_CHARS).collect();
            }
            NFULA_PAYLOAD => packet.payload = value.to_vec(),
            _ => {}
        }
        off += align4(len);
    }
    packet
}

/// Parses an IPv4 header (version 4, IHL ≥ 5 and within the buffer); the port is read only
/// when the fragment offset is 0 and at least 4 bytes follow the header. `None` otherwise.
pub fn parse_ipv4(packet: &[u8]) -> Option<Flow> {
    let first = *packet.first()?;
    let header_len = usize::from(first & 0x0F) * 4;
    if first >> 4 != 4 || !(20..=packet.len()).contains(&header_len) {
        return None;
    }
    let fragment_offset = u16::from_be_bytes(array(packet, 6)?) & 0x1FFF;
    let protocol = *packet.get(9)?;
    let port = match (protocol, fragment_offset) {
        // The destination port is bytes 2-3 of both transport headers.
        (6 | 17, 0) => array(packet, header_len + 2).map(u16::from_be_bytes),
        _ => None,
    };
    let address = |at| array::<4>(packet, at).map(Ipv4Addr::from);
    Some(Flow {
        protocol,
        source: address(12)?,
        destination: address(16)?,
        port,
    })
}

#[cfg(test)]
mod tests;
