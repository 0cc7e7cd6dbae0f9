use super::*;

/// The daemon's configuration round-trips through its file; a file it
/// cannot parse, or of another layout version, is refused with its path.
#[test]
fn a_config_round_trips_and_a_bad_one_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let c = Config {
        version: CONFIG_VERSION,
        netns: "pyro-test".into(),
        policy: Policy::off(),
        vm: None,
        log_dir: dir.path().to_owned(),
        generation: 3,
    };
    c.save(dir.path()).unwrap();
    let back = Config::load(dir.path()).unwrap();
    assert_eq!((back.netns.as_str(), back.generation), ("pyro-test", 3));
    let file = dir.path().join(CONFIG_FILE);
    std::fs::write(&file, b"{ not json").unwrap();
    let e = Config::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("parsing") && e.contains(CONFIG_FILE), "{e}");
    let other = Config { version: 99, ..c };
    other.save(dir.path()).unwrap();
    let e = Config::load(dir.path()).unwrap_err();
    assert!(
        matches!(&e, NetError::Unsupported(m) if m.contains("layout version 99")),
        "{e}"
    );
    let e = Config::load(&dir.path().join("missing")).unwrap_err();
    assert!(e.to_string().contains("reading"), "{e}");
}

/// A query for `name` of type `qtype` and class `qclass`.
fn query(name: &str, qtype: u16, qclass: u16) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.').filter(|l| !l.is_empty()) {
        m.push(u8::try_from(label.len()).unwrap());
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&qclass.to_be_bytes());
    m
}

/// A reply's rcode and answer count.
fn rcode_and_count(reply: &[u8]) -> (u16, u16) {
    let flags = u16::from_be_bytes([reply[2], reply[3]]);
    (flags & 0xF, u16::from_be_bytes([reply[6], reply[7]]))
}

/// The addresses in a reply's A records (each record is 16 bytes, the
/// address its last 4).
fn addresses(reply: &[u8]) -> Vec<Ipv4Addr> {
    let (_, n) = rcode_and_count(reply);
    let end = reply.len();
    (0..usize::from(n))
        .map(|i| {
            let at = end - (usize::from(n) - i) * 16 + 12;
            Ipv4Addr::new(reply[at], reply[at + 1], reply[at + 2], reply[at + 3])
        })
        .collect()
}

/// A daemon's state for `policy`, its log in `dir`, its namespace one that
/// does not exist (so changing the `dns_allow` set fails).
fn state(dir: &Path, policy: Policy) -> Arc<State> {
    Arc::new(State::new(
        dir,
        Config {
            version: CONFIG_VERSION,
            netns: "pyro-test-no-such-namespace".into(),
            policy,
            vm: None,
            log_dir: dir.to_owned(),
            generation: 0,
        },
    ))
}

/// Puts `name`'s host answer in the cache, so no host lookup is made.
fn seed(state: &State, name: &str, answer: Lookup) {
    lock(&state.cache).insert(name.into(), (answer, Instant::now() + CACHE_TTL));
}

fn egress(hosts: &[&str]) -> Policy {
    let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
    Policy::parse(crate::policy::Mode::Egress, &hosts, &[]).unwrap()
}

/// Malformed messages get FORMERR (or are dropped without a header),
/// other classes NOTIMP; a name the policy refuses gets REFUSED and a line
/// in the denial log; a type other than A gets an empty answer; an A
/// question gets the host's addresses, or its NXDOMAIN.
#[tokio::test]
async fn answers_follow_the_policy_and_the_host_resolver() {
    let dir = tempfile::tempdir().unwrap();
    let off = state(dir.path(), Policy::off());
    let mut bad = query("example.com", dns::TYPE_A, dns::CLASS_IN);
    bad[5] = 2; // two questions
    let r = answer(&off, &bad).await.unwrap();
    assert_eq!(rcode_and_count(&r), (Rcode::FormErr as u16, 0));
    assert_eq!(answer(&off, &bad[..6]).await, None);
    let chaos = query("example.com", dns::TYPE_A, 3);
    let r = answer(&off, &chaos).await.unwrap();
    assert_eq!(rcode_and_count(&r).0, Rcode::NotImp as u16);
    let r = answer(&off, &query("example.com", dns::TYPE_A, dns::CLASS_IN))
        .await
        .unwrap();
    assert_eq!(rcode_and_count(&r).0, Rcode::Refused as u16);
    let (logged, _) = crate::denials::read_recent(dir.path(), 10);
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].name.as_deref(), Some("example.com"));
    assert_eq!(
        (logged[0].protocol.as_str(), logged[0].rule.as_str()),
        ("dns", "dns")
    );

    let open = state(dir.path(), egress(&[]));
    let r = answer(&open, &query("example.com", dns::TYPE_AAAA, dns::CLASS_IN))
        .await
        .unwrap();
    assert_eq!(rcode_and_count(&r), (Rcode::NoError as u16, 0));
    let addrs = vec![Ipv4Addr::new(192, 0, 2, 7), Ipv4Addr::new(192, 0, 2, 8)];
    seed(&open, "example.com", Ok(addrs.clone()));
    let r = answer(&open, &query("example.com", dns::TYPE_A, dns::CLASS_IN))
        .await
        .unwrap();
    assert_eq!(rcode_and_count(&r), (Rcode::NoError as u16, 2));
    assert_eq!(addresses(&r), addrs);
    seed(&open, "gone.example", Err(Rcode::NxDomain));
    let r = answer(&open, &query("gone.example", dns::TYPE_A, dns::CLASS_IN))
        .await
        .unwrap();
    assert_eq!(rcode_and_count(&r).0, Rcode::NxDomain as u16);
    // Unrestricted egress learns nothing: there is no set to let it into.
    assert!(lock(&open.learned).is_empty());

    // A real host lookup, answered from the hosts file, then cached.
    let r = answer(&open, &query("localhost", dns::TYPE_A, dns::CLASS_IN))
        .await
        .unwrap();
    assert_eq!(addresses(&r), vec![Ipv4Addr::LOCALHOST]);
    let cached = lock(&open.cache).get("localhost").map(|(a, _)| a.clone());
    assert_eq!(cached, Some(Ok(vec![Ipv4Addr::LOCALHOST])));
}

/// Under an allowlist, an answer's addresses go into the `dns_allow` set
/// before the guest sees them: when that fails, or the set is full, the
/// guest gets SERVFAIL and the name is not learned; addresses already in
/// the set need no change and are learned at once.
#[tokio::test]
async fn allowlisted_answers_are_let_in_first_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path(), egress(&["api.example:443"]));
    let addr = Ipv4Addr::new(192, 0, 2, 9);
    seed(&st, "api.example", Ok(vec![addr]));
    let q = query("api.example", dns::TYPE_A, dns::CLASS_IN);
    // The namespace does not exist: `nft` cannot run in it.
    let r = answer(&st, &q).await.unwrap();
    assert_eq!(rcode_and_count(&r).0, Rcode::ServFail as u16);
    assert!(lock(&st.learned).is_empty());
    assert!(st.allowed.lock().await.is_empty());

    // Already in the set on every port: nothing to change.
    st.allowed.lock().await.insert(addr, None);
    let r = answer(&st, &q).await.unwrap();
    assert_eq!(addresses(&r), vec![addr]);
    assert_eq!(lock(&st.learned).get("api.example"), Some(&vec![addr]));
    // Asked again: the address is not learned twice.
    answer(&st, &q).await.unwrap();
    assert_eq!(lock(&st.learned)["api.example"].len(), 1);

    // A full set still answers for addresses already in it ...
    {
        let mut allowed = st.allowed.lock().await;
        for i in 0..MAX_LEARNED as u32 - 1 {
            allowed.insert(Ipv4Addr::from(0x0A00_0000 + i), None);
        }
        assert_eq!(allowed.len(), MAX_LEARNED);
    }
    let r = answer(&st, &q).await.unwrap();
    assert_eq!(addresses(&r), vec![addr]);
    // ... and refuses new ones.
    seed(&st, "api.example", Ok(vec![Ipv4Addr::new(192, 0, 2, 10)]));
    let r = answer(&st, &q).await.unwrap();
    assert_eq!(rcode_and_count(&r).0, Rcode::ServFail as u16);
    assert_eq!(st.allowed.lock().await.len(), MAX_LEARNED);
}

/// Why addresses are not let in, each named: a policy reloaded since the
/// question, a set at its cap (before `nft` is asked), `nft` failing.
#[tokio::test]
async fn addresses_not_let_in_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path(), egress(&["api.example"]));
    let (known, new) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    st.allowed.lock().await.insert(known, None);
    assert_eq!(let_in(&st, 0, "api.example", &[known], None).await, Ok(()));
    assert_eq!(lock(&st.learned)["api.example"], vec![known]);
    assert_eq!(
        let_in(&st, 0, "api.example", &[new], None).await,
        Err(NotLetIn::Nft)
    );
    st.generation.store(1, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        let_in(&st, 0, "api.example", &[known], None).await,
        Err(NotLetIn::Stale)
    );
    {
        let mut allowed = st.allowed.lock().await;
        for i in 0..MAX_LEARNED as u32 - 1 {
            allowed.insert(Ipv4Addr::from(0x0A00_0000 + i), None);
        }
    }
    assert_eq!(
        let_in(&st, 1, "api.example", &[new], None).await,
        Err(NotLetIn::Full)
    );
    assert_eq!(let_in(&st, 1, "api.example", &[known], None).await, Ok(()));
    assert_eq!(lock(&st.learned)["api.example"], vec![known]);
}

/// The set's cap counts only the addresses an answer would add.
#[test]
fn the_cap_counts_only_new_addresses() {
    let a = |i: u32| Ipv4Addr::from(0x0A00_0000 + i);
    let mut allowed: HashMap<Ipv4Addr, Option<BTreeSet<u16>>> = HashMap::new();
    for i in 0..MAX_LEARNED as u32 - 2 {
        allowed.insert(a(i), None);
    }
    assert!(room_for(
        &allowed,
        &[a(0), a(1), a(1_000_000), a(1_000_001)]
    ));
    assert!(!room_for(
        &allowed,
        &[a(1_000_000), a(1_000_001), a(1_000_002)]
    ));
    allowed.insert(a(1_000_000), Some(BTreeSet::from([443])));
    allowed.insert(a(1_000_001), None);
    assert!(room_for(&allowed, &[a(0), a(1_000_000), a(1_000_001)]));
    assert!(!room_for(&allowed, &[a(1_000_002)]));
}

/// Within one second at most 20 refused names are logged one by one; the
/// rest are counted, and the count is logged as one entry the next second.
#[test]
fn refused_names_are_logged_at_a_bounded_rate_and_the_rest_counted() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path(), Policy::off());
    let second = 1_800_000_000;
    for i in 0..25 {
        st.deny_name_at(&format!("n{i}.example"), second);
    }
    let (logged, total) = crate::denials::read_recent(dir.path(), 100);
    assert_eq!(total, DNS_LOG_PER_SECOND);
    assert!(logged.iter().all(|d| d.unlogged.is_none()));
    assert_eq!(lock(&st.dns_denials).0, 5);
    // The next second: the summary, then the name.
    st.deny_name_at("late.example", second + 1);
    let (logged, _) = crate::denials::read_recent(dir.path(), 2);
    assert_eq!(logged[0].unlogged, Some(5));
    assert_eq!(logged[0].name, None);
    assert_eq!(logged[1].name.as_deref(), Some("late.example"));
}

/// A log directory that cannot hold the log loses the entry without
/// stopping the daemon, and the next entry tries again.
#[test]
fn a_log_that_cannot_be_opened_is_tried_again() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(&dir.path().join("not-yet"), Policy::off());
    st.deny_name("a.example");
    assert!(lock(&st.log).is_none());
    std::fs::create_dir(dir.path().join("not-yet")).unwrap();
    st.deny_name("b.example");
    let (logged, _) = crate::denials::read_recent(&dir.path().join("not-yet"), 10);
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].name.as_deref(), Some("b.example"));
}

/// A reload takes the new policy, forgets cached answers, keeps learned
/// names the new policy still allows, and says which generation it took;
/// a configuration it cannot read leaves everything as it was.
#[tokio::test]
async fn a_reload_takes_the_new_policy_and_forgets_what_it_no_longer_allows() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path(), egress(&["a.example", "b.example"]));
    let a = Ipv4Addr::new(192, 0, 2, 1);
    seed(&st, "a.example", Ok(vec![a]));
    lock(&st.learned).insert("a.example".into(), vec![a]);
    lock(&st.learned).insert("b.example".into(), vec![Ipv4Addr::new(192, 0, 2, 2)]);
    st.allowed.lock().await.insert(a, None);

    // No configuration file: nothing changes.
    reload(&st).await;
    assert_eq!(st.generation.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(lock(&st.learned).len(), 2);
    assert!(!dir.path().join(APPLIED_FILE).exists());

    let mut next = lock(&st.config).clone();
    next.policy = egress(&["a.example"]);
    next.generation = 7;
    next.save(dir.path()).unwrap();
    reload(&st).await;
    assert_eq!(st.generation.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        std::fs::read_to_string(dir.path().join(APPLIED_FILE)).unwrap(),
        "7"
    );
    assert!(lock(&st.cache).is_empty());
    let learned: Vec<String> = lock(&st.learned).keys().cloned().collect();
    assert_eq!(learned, vec!["a.example".to_owned()]);
    // The set was emptied; letting `a` back in needed `nft`, which cannot
    // run in a namespace that does not exist.
    assert!(st.allowed.lock().await.is_empty());
    assert_eq!(st.policy(), egress(&["a.example"]));
}

/// Over UDP, a query is answered, and one that comes while every lookup
/// slot is taken gets SERVFAIL at once; over TCP, length-prefixed queries
/// are answered on one connection until it sends a bad length, and
/// connections beyond the limit are closed.
#[tokio::test]
async fn both_transports_answer_and_shed_load() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path(), egress(&[]));
    seed(&st, "example.com", Ok(vec![Ipv4Addr::new(192, 0, 2, 7)]));
    let q = query("example.com", dns::TYPE_A, dns::CLASS_IN);

    let server = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let at = server.local_addr().unwrap();
    let udp = tokio::spawn(serve_udp(server, st.clone()));
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = [0u8; 600];
    let ask = async |client: &tokio::net::UdpSocket, buf: &mut [u8]| {
        client.send_to(&q, at).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(10), client.recv(buf))
            .await
            .unwrap()
            .unwrap();
        rcode_and_count(&buf[..n])
    };
    assert_eq!(ask(&client, &mut buf).await, (0, 1));
    let all = st
        .lookups
        .clone()
        .acquire_many_owned(MAX_LOOKUPS as u32)
        .await
        .unwrap();
    assert_eq!(ask(&client, &mut buf).await.0, Rcode::ServFail as u16);
    drop(all);
    assert_eq!(ask(&client, &mut buf).await, (0, 1));
    udp.abort();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let tcp = tokio::spawn(serve_tcp(listener, st.clone()));
    let mut conn = tokio::net::TcpStream::connect(at).await.unwrap();
    for _ in 0..2 {
        conn.write_u16(q.len() as u16).await.unwrap();
        conn.write_all(&q).await.unwrap();
        let len = conn.read_u16().await.unwrap();
        let mut reply = vec![0u8; usize::from(len)];
        conn.read_exact(&mut reply).await.unwrap();
        assert_eq!(rcode_and_count(&reply), (0, 1));
    }
    // A length over the largest message: closed at once (not read as a
    // message, not left to the 10 s an idle connection is given).
    conn.write_u16(dns::MAX_MESSAGE as u16 + 1).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), conn.read_to_end(&mut rest));
    assert_eq!(closed.await.unwrap().unwrap(), 0);

    let mut held = Vec::new();
    for _ in 0..MAX_TCP {
        held.push(tokio::net::TcpStream::connect(at).await.unwrap());
    }
    // Let the server take them all before the one over the limit.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = tokio::net::TcpStream::connect(at).await.unwrap();
    // Closed at once: well before the 10 s an idle connection is given.
    let closed = tokio::time::timeout(Duration::from_secs(2), over.read_to_end(&mut rest));
    assert_eq!(closed.await.unwrap().unwrap(), 0);
    // The last connection within the limit is served.
    let last = held.last_mut().unwrap();
    last.write_u16(q.len() as u16).await.unwrap();
    last.write_all(&q).await.unwrap();
    let len = tokio::time::timeout(Duration::from_secs(10), last.read_u16());
    let mut reply = vec![0u8; usize::from(len.await.unwrap().unwrap())];
    last.read_exact(&mut reply).await.unwrap();
    assert_eq!(rcode_and_count(&reply), (0, 1));
    tcp.abort();
}
