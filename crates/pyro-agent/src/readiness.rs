//! Readiness checks of services: a file, a TCP port, an HTTP answer or a
//! command, each bounded in time.

use std::time::Duration;

use pyro_protocol::{AgentError, ErrorKind, ExecRequest, Readiness};

use crate::spawn;

/// Timeouts of single readiness checks.
const TCP_CHECK: Duration = Duration::from_secs(1);
const HTTP_CHECK: Duration = Duration::from_secs(2);
const COMMAND_CHECK: Duration = Duration::from_secs(10);

fn bad(m: impl Into<String>) -> AgentError {
    AgentError::new(ErrorKind::BadRequest, m)
}

/// Checks a readiness spec; the parsed TCP address or HTTP target.
pub fn check_readiness(r: &Readiness) -> Result<(), AgentError> {
    match r {
        Readiness::File { path } if path.is_empty() || path.contains('\0') => Err(bad(
            "the readiness file's path is empty or holds a NUL byte",
        )),
        Readiness::Tcp { address } => split_host_port(address).map(|_| ()),
        Readiness::Http { url } => parse_url(url).map(|_| ()),
        Readiness::Command { command } if command.trim().is_empty() => {
            Err(bad("the readiness command is empty"))
        }
        _ => Ok(()),
    }
}

/// `host:port` (the host may be empty: localhost).
fn split_host_port(address: &str) -> Result<(String, u16), AgentError> {
    let (host, port) = address.rsplit_once(':').ok_or_else(|| {
        bad(format!(
            "the readiness address {address:?} is not HOST:PORT"
        ))
    })?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| bad(format!("the port in {address:?} is not 1 to 65535")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((
        if host.is_empty() { "127.0.0.1" } else { host }.to_owned(),
        port,
    ))
}

/// `http://host[:port][/path]` into host, port and path.
fn parse_url(url: &str) -> Result<(String, u16, String), AgentError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        bad(format!(
            "the readiness URL {url:?} does not start with http://"
        ))
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty()
        || authority
            .bytes()
            .any(|c| c.is_ascii_whitespace() || c.is_ascii_control() || c == b'@')
        || path.bytes().any(|c| c.is_ascii_control() || c == b' ')
    {
        return Err(bad(format!("the readiness URL {url:?} is malformed")));
    }
    let (host, port) = if authority.ends_with(']') || !authority.contains(':') {
        (authority.to_owned(), 80)
    } else {
        split_host_port(authority)?
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok((host, port, path.to_owned()))
}

/// Sleeps `interval`, then runs one readiness check.
pub async fn probe_after(
    r: Option<&Readiness>,
    cwd: &str,
    env: &std::collections::BTreeMap<String, String>,
    interval: Duration,
) -> Result<(), String> {
    tokio::time::sleep(interval).await;
    let Some(r) = r else { return Ok(()) };
    match r {
        Readiness::File { path } => {
            let p = if path.starts_with('/') {
                std::path::PathBuf::from(path)
            } else {
                std::path::Path::new(cwd).join(path)
            };
            match tokio::fs::symlink_metadata(&p).await {
                Ok(_) => Ok(()),
                Err(e) => Err(format!("{}: {e}", p.display())),
            }
        }
        Readiness::Tcp { address } => {
            let (host, port) = split_host_port(address).map_err(|e| e.message)?;
            match tokio::time::timeout(TCP_CHECK, tokio::net::TcpStream::connect((host, port)))
                .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("connecting to {address}: {e}")),
                Err(_) => Err(format!("connecting to {address}: no answer within 1 s")),
            }
        }
        Readiness::Http { url } => match tokio::time::timeout(HTTP_CHECK, http_status(url)).await {
            Ok(Ok(code)) if (200..400).contains(&code) => Ok(()),
            Ok(Ok(code)) => Err(format!("GET {url} answered {code}")),
            Ok(Err(e)) => Err(format!("GET {url}: {e}")),
            Err(_) => Err(format!("GET {url}: no answer within 2 s")),
        },
        Readiness::Command { command } => run_check(command, cwd, env).await,
    }
}

/// The status code of a `GET` of `url` (HTTP/1.0, no body read).
async fn http_status(url: &str) -> Result<u16, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (host, port, path) = parse_url(url).map_err(|e| e.message)?;
    let mut s = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| e.to_string())?;
    let authority = if port == 80 {
        host.clone()
    } else {
        format!("{host}:{port}")
    };
    let req = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: pyro-ready\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    // The status line is all that is read (at most 256 bytes).
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < 256 {
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n.min(256 - buf.len())]);
    }
    let line = String::from_utf8_lossy(&buf);
    let mut parts = line.split_whitespace();
    match (
        parts.next(),
        parts.next().and_then(|c| c.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => Ok(code),
        _ => Err("the answer is not HTTP".into()),
    }
}

/// Runs a readiness command (`sh -c` in `cwd`); whether it exited 0 within
/// its time.
async fn run_check(
    command: &str,
    cwd: &str,
    env: &std::collections::BTreeMap<String, String>,
) -> Result<(), String> {
    let req = ExecRequest {
        command: pyro_protocol::Command::Shell {
            script: command.to_owned(),
        },
        cwd: Some(cwd.to_owned()),
        env: env.clone(),
        timeout_ms: 0,
        output_limit_bytes: 0,
        stdin: false,
        limits: Default::default(),
        run_as: None,
    };
    let spec = crate::exec::prepare(&req).map_err(|e| e.message)?;
    // Under the same limits as any command (its group goes with it).
    let group = crate::limits::Group::create();
    let mut child =
        spawn::spawn_in(&spec, group.as_ref()).map_err(|e| crate::exec::spawn_failure(&e).1)?;
    // Its output is not kept: close the pipes so it never blocks on them.
    drop(child.stdout.take());
    drop(child.stderr.take());
    let guard = KillOnDrop(&mut child);
    let status = tokio::time::timeout(COMMAND_CHECK, guard.0.wait()).await;
    drop(guard);
    crate::limits::kill(group.as_ref());
    match status {
        Ok(Ok(s)) if s.success() => Ok(()),
        Ok(Ok(s)) => Err(format!(
            "the readiness command exited {}",
            s.code()
                .map_or_else(|| "by a signal".into(), |c| c.to_string())
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the readiness command ran over 10 s".into()),
    }
}

/// Kills a readiness command's group when its check is over or abandoned.
struct KillOnDrop<'a>(&'a mut spawn::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        self.0.kill_group();
        let _ = self.0.try_status();
        self.0.reap();
    }
}

#[cfg(test)]
mod tests;
