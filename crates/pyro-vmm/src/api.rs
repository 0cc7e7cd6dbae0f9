//! A minimal client for Firecracker's HTTP API over its Unix socket: one
//! connection per request, JSON in, `fault_message` out on errors.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::VmmError;

/// How long one API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest API answer read (Firecracker's are a few hundred bytes).
const MAX_BODY_BYTES: usize = 1 << 20;

/// Client for one VM's API socket.
#[derive(Debug, Clone)]
pub struct ApiClient {
    sock: PathBuf,
    peer_uid: Option<u32>,
    timeout: Duration,
}

impl ApiClient {
    /// A client for the socket at `sock`.
    pub fn new(sock: impl Into<PathBuf>) -> Self {
        Self {
            sock: sock.into(),
            peer_uid: None,
            timeout: CALL_TIMEOUT,
        }
    }

    /// Gives each call `timeout` instead of the default 30 s (a snapshot
    /// writes all of guest memory).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Talks only to a server running as `uid` (the jailed Firecracker), so a
    /// socket path swapped for a link to another socket is refused before
    /// anything is sent.
    pub fn expecting_peer(mut self, uid: Option<u32>) -> Self {
        self.peer_uid = uid;
        self
    }

    /// `PUT path body`.
    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, VmmError> {
        self.call(Method::PUT, path, Some(body)).await
    }

    /// `PATCH path body`.
    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value, VmmError> {
        self.call(Method::PATCH, path, Some(body)).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Value, VmmError> {
        self.call(Method::GET, path, None).await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, VmmError> {
        tokio::time::timeout(self.timeout, self.call_inner(method.clone(), path, body))
            .await
            .map_err(|_| VmmError::ApiTransport {
                sock: self.sock.clone(),
                reason: format!(
                    "{method} {path} took longer than {}s",
                    self.timeout.as_secs()
                ),
            })?
    }

    async fn call_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, VmmError> {
        let transport = |reason: String| VmmError::ApiTransport {
            sock: self.sock.clone(),
            reason,
        };
        let stream = tokio::net::UnixStream::connect(&self.sock)
            .await
            .map_err(|e| transport(e.to_string()))?;
        crate::vsock::check_peer(&stream, self.peer_uid, &self.sock)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| transport(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let payload = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("Host", "localhost")
            .header("Accept", "application/json")
            .header("Content-Type", "application/json")
            .body(Full::new(payload))
            .map_err(|e| transport(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| transport(e.to_string()))?;
        let status = resp.status();
        let bytes = http_body_util::Limited::new(resp.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| transport(format!("reading the answer: {e}")))?
            .to_bytes();
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        if status.is_success() {
            return Ok(value);
        }
        let fault = value
            .get("fault_message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_string());
        Err(VmmError::Api {
            method: method.to_string(),
            path: path.into(),
            status: status.as_u16(),
            fault,
        })
    }
}

#[cfg(test)]
mod tests;
