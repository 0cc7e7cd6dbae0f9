use super::*;

#[tokio::test]
async fn a_silent_peer_fails_the_handshake_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let listener = tokio::net::UnixListener::bind(&uds).unwrap();
    // Accepts and then says nothing (a wedged VMM, or a guest-side
    // impostor that holds the connection).
    let _server = tokio::spawn(async move {
        let (_s, _) = listener.accept().await.unwrap();
        std::future::pending::<()>().await;
    });
    let t = std::time::Instant::now();
    let err = connect_within(&uds, 5000, std::time::Duration::from_millis(300), None)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("did not answer the vsock handshake"),
        "{err}"
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn handshake_then_raw_stream() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let listener = tokio::net::UnixListener::bind(&uds).unwrap();
    let server = tokio::spawn(async move {
        // The refused connection first: it sends nothing.
        let (mut refused, _) = listener.accept().await.unwrap();
        let mut nothing = Vec::new();
        refused.read_to_end(&mut nothing).await.unwrap();
        assert!(nothing.is_empty());
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 13];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"CONNECT 5000\n");
        s.write_all(b"OK 1073741824\nagent bytes").await.unwrap();
    });
    // Served by us (root in CI): a VM's uid would be refused before
    // anything is sent.
    let me = nix::unistd::geteuid().as_raw();
    let err = connect(&uds, 5000, Some(me + 1)).await.unwrap_err();
    assert!(err.to_string().contains("not by the VM's uid"), "{err}");
    let mut s = connect(&uds, 5000, Some(me)).await.unwrap();
    let mut rest = String::new();
    s.read_to_string(&mut rest).await.unwrap();
    assert_eq!(rest, "agent bytes");
    server.await.unwrap();
}

#[tokio::test]
async fn closed_connection_means_not_listening() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let listener = tokio::net::UnixListener::bind(&uds).unwrap();
    // Firecracker reads the CONNECT line, then closes when no guest
    // socket listens on that port.
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 13];
        let _ = s.read_exact(&mut buf).await;
        drop(s);
    });
    let err = connect(&uds, 5000, None).await.unwrap_err();
    assert!(err.to_string().contains("nothing listens"), "{err}");
}

#[tokio::test]
async fn refused_and_malformed_replies_are_errors() {
    for (reply, says) in [
        (
            b"FAILURE no route\n".to_vec(),
            "vsock handshake refused: FAILURE no route",
        ),
        (vec![b'x'; 100], "malformed vsock handshake reply"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let uds = dir.path().join("v.sock");
        let listener = tokio::net::UnixListener::bind(&uds).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 13];
            let _ = s.read_exact(&mut buf).await;
            let _ = s.write_all(&reply).await;
            std::future::pending::<()>().await;
        });
        let err = connect(&uds, 5000, None).await.unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
    }
    // No socket at all.
    let dir = tempfile::tempdir().unwrap();
    let err = connect(&dir.path().join("none.sock"), 5000, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("connecting to"), "{err}");
}

#[test]
fn long_socket_paths_are_refused() {
    assert!(check_socket_path(Path::new("/short")).is_ok());
    let long = PathBuf::from(format!("/{}", "x".repeat(120)));
    assert!(matches!(
        check_socket_path(&long),
        Err(VmmError::SocketPathTooLong(_))
    ));
}
