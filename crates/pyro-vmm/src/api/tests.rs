use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A one-shot fake API server answering with `reply`.
async fn fake(
    reply: &'static str,
) -> (tempfile::TempDir, PathBuf, tokio::task::JoinHandle<String>) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("api.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let h = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        s.write_all(reply.as_bytes()).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    (dir, sock, h)
}

#[tokio::test]
async fn passes_fault_message_through() {
    let (_d, sock, h) = fake(
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 37\r\n\r\n{\"fault_message\":\"bad drive config\"}\n",
        )
        .await;
    let err = ApiClient::new(&sock)
        .put("/drives/x", &serde_json::json!({"a":1}))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Firecracker rejected PUT /drives/x (HTTP 400): bad drive config"
    );
    let req = h.await.unwrap();
    assert!(req.starts_with("PUT /drives/x HTTP/1.1"), "{req}");
    assert!(req.ends_with("{\"a\":1}"), "{req}");
}

#[tokio::test]
async fn success_returns_the_json_body() {
    let (_d, sock, _h) =
        fake("HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{\"state\":\"Ready\"}").await;
    let v = ApiClient::new(&sock).get("/").await.unwrap();
    assert_eq!(v["state"], "Ready");
}

#[tokio::test]
async fn missing_socket_is_a_transport_error() {
    let err = ApiClient::new("/nonexistent/api.sock")
        .get("/")
        .await
        .unwrap_err();
    assert!(matches!(err, VmmError::ApiTransport { .. }), "{err}");
}
