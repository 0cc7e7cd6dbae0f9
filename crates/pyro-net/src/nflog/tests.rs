use super::*;

fn ipv4(protocol: u8, destination: [u8; 4], port: u16, transport_len: usize) -> Vec<u8> {
    let mut p = vec![0; 20 + transport_len];
    p[..10].copy_from_slice(&[0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, protocol]);
    p[12..20].copy_from_slice(&[[10, 0, 0, 2], destination].concat());
    p[22..24].copy_from_slice(&port.to_be_bytes());
    p
}

fn attr(ty: u16, value: &[u8]) -> Vec<u8> {
    let len = u16::try_from(4 + value.len()).unwrap();
    let mut a = [&len.to_ne_bytes()[..], &ty.to_ne_bytes(), value].concat();
    a.resize(align4(a.len()), 0);
    a
}

fn nlmsg(ty: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0; NLMSG_HDRLEN];
    m[..4].copy_from_slice(&u32::try_from(16 + body.len()).unwrap().to_ne_bytes());
    m[4..6].copy_from_slice(&ty.to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(body);
    m.resize(align4(m.len()), 0);
    m
}

#[test]
fn parses_ipv4_flows() {
    let mut syn = ipv4(6, [169, 254, 169, 254], 80, 20);
    syn[33] = 0x02;
    let flow = parse_ipv4(&syn).unwrap();
    let want = (6, Ipv4Addr::new(10, 0, 0, 2), Some(80));
    assert_eq!((flow.protocol, flow.source, flow.port), want);
    assert_eq!(flow.destination, Ipv4Addr::new(169, 254, 169, 254));
    for n in 0..=syn.len() {
        let port = parse_ipv4(&syn[..n]).map(|f| f.port);
        assert_eq!(port, (n >= 20).then_some((n >= 24).then_some(80)), "{n}");
    }
    let udp = ipv4(17, [10, 0, 0, 1], 53, 8);
    let flow = parse_ipv4(&udp).unwrap();
    let want = (17, Ipv4Addr::new(10, 0, 0, 1), Some(53));
    assert_eq!((flow.protocol, flow.destination, flow.port), want);
    let icmp = parse_ipv4(&ipv4(1, [10, 0, 0, 1], 0, 8)).unwrap();
    assert_eq!((icmp.protocol, icmp.port), (1, None));
    let altered = |at: usize, value: u8| {
        let mut p = udp.clone();
        p[at] = value;
        parse_ipv4(&p).map(|f| f.port)
    };
    assert_eq!(altered(7, 1), Some(None), "a later fragment");
    assert_eq!(altered(0, 0x44), None, "IHL below 5");
    assert_eq!(altered(0, 0x4F), None, "IHL past the end");
    assert_eq!(altered(0, 0x65), None, "version 6");
    let mut options = [&udp[..20], &[1, 1, 1, 1], &udp[20..]].concat();
    options[0] = 0x46;
    assert_eq!(parse_ipv4(&options).map(|f| f.port), Some(Some(53)));
}

#[test]
fn parses_packet_attributes() {
    let payload = ipv4(17, [10, 0, 0, 1], 53, 8);
    let mut attrs = attr(1, &[0, 0x08, 3, 0]);
    attrs.extend(attr(NFULA_PREFIX, b"deny:private\0"));
    attrs.extend(attr(0x8000 | 99, &[1, 2, 3]));
    attrs.extend(attr(NFULA_PAYLOAD | 0x4000, &payload));
    attrs.extend(&attr(NFULA_PREFIX, b"replaced\0")[..7]);
    let packet = parse_packet_attrs(&attrs);
    assert_eq!(packet.prefix, "deny:private");
    assert_eq!(packet.payload, payload);
    let stop = [&[0u8; 4][..], &attrs].concat();
    assert_eq!(parse_packet_attrs(&stop), LoggedPacket::default());
    let long = parse_packet_attrs(&attr(NFULA_PREFIX, &[b'x'; 100]));
    assert_eq!(long.prefix, "x".repeat(64));
    let bad = parse_packet_attrs(&attr(NFULA_PREFIX, &[b'a', 0xFF, 0, b'b']));
    assert_eq!(bad.prefix, "a\u{FFFD}");
}

#[test]
fn walks_datagrams_and_builds_requests() {
    let body = [&[2u8, 0, 0, 1][..], &attr(NFULA_PREFIX, b"deny:x\0")].concat();
    let packet = nlmsg(NFULNL_MSG_PACKET, 0, &body);
    let error = nlmsg(NLMSG_ERROR, 7, &(-1i32).to_ne_bytes());
    let other = nlmsg(NFULNL_MSG_CONFIG, 0, &body);
    let data = [&packet[..], &error, &other, &packet, &packet[..20]].concat();
    let packets = packets_in(&data);
    assert_eq!(packets.len(), 2);
    assert_eq!(packets[1].prefix, "deny:x");
    assert_eq!((find_ack(&data, 7), find_ack(&data, 8)), (Some(-1), None));
    assert_eq!(packets_in(&packet.repeat(100)).len(), MAX_PACKETS);
    let mode = [0, 0, 0xFF, 0xFF, 2, 0];
    let mut want = nlmsg(NFULNL_MSG_CONFIG, 5, &[0, 0, 0, 1]);
    want.extend(attr(NFULA_CFG_MODE, &mode));
    want[..4].copy_from_slice(&32u32.to_ne_bytes());
    want[6..8].copy_from_slice(&5u16.to_ne_bytes());
    assert_eq!(config(5, 0, 1, NFULA_CFG_MODE, &mode), want);
}

#[test]
fn random_input_never_panics() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..3000 {
        let len = next() % 200;
        let mut data: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
        if i & 1 == 0 {
            // Attribute and message lengths small enough to walk through.
            data.iter_mut().skip(1).step_by(4).for_each(|b| *b = 0);
            data.iter_mut().skip(2).take(2).for_each(|b| *b = 0);
        }
        let _ = (parse_packet_attrs(&data), parse_ipv4(&data));
        let _ = (packets_in(&data), find_ack(&data, 0));
    }
}
