//! What an imported container image says about running commands, as pyro
//! baked it into `/etc/pyro-environment` (`image.env`), and running a
//! command as another user (`pyro-agent run-as`).
//!
//! The image's `Env` is the base of every command's environment (exec,
//! shells, services), under the request's own variables. Its `WorkingDir`
//! and `User` are applied by the host to `run` commands, through the
//! request's `cwd` and `run_as`.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::sync::OnceLock;

use pyro_protocol::{base_command_env, valid_env_name};

/// Where pyro bakes what it knows about the environment.
const ABOUT: &str = "/etc/pyro-environment";

/// The image's variables (`KEY=VALUE`), read once.
fn image_env() -> &'static [(String, String)] {
    static ENV: OnceLock<Vec<(String, String)>> = OnceLock::new();
    ENV.get_or_init(|| {
        let Ok(text) = std::fs::read(ABOUT) else {
            return Vec::new();
        };
        if text.len() > 1 << 20 {
            return Vec::new();
        }
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
        parse_env(&v["image"]["env"])
    })
}

fn parse_env(v: &serde_json::Value) -> Vec<(String, String)> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str()?.split_once('='))
        .filter(|(k, _)| valid_env_name(k))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The environment every command starts from: pyro's base, with the
/// image's variables replacing any of the same name.
pub fn command_env() -> BTreeMap<String, String> {
    let mut env = base_command_env();
    env.extend(image_env().iter().cloned());
    env
}

/// `HOME`, `USER` and `LOGNAME` of user `uid`, from `/etc/passwd` (a
/// command run as that user must not be pointed at root's home).
pub fn user_env(uid: u32) -> Vec<(String, String)> {
    let passwd = std::fs::read("/etc/passwd")
        .ok()
        .filter(|t| t.len() <= 1 << 20)
        .unwrap_or_default();
    user_env_from(&String::from_utf8_lossy(&passwd), uid)
}

fn user_env_from(passwd: &str, uid: u32) -> Vec<(String, String)> {
    let entry = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.get(2)?.parse::<u32>().ok()? == uid)
            .then(|| (f[0].to_owned(), f.get(5).map(|h| (*h).to_owned())))
    });
    let (name, home) = match entry {
        Some((name, home)) => (
            name,
            home.filter(|h| h.starts_with('/'))
                .unwrap_or_else(|| "/".into()),
        ),
        None => (uid.to_string(), "/".into()),
    };
    vec![
        ("HOME".into(), home),
        ("USER".into(), name.clone()),
        ("LOGNAME".into(), name),
    ]
}

/// The path of this agent inside the guest, which `run-as` runs.
pub const AGENT_PATH: &str = "/usr/sbin/pyro-agent";

/// `pyro-agent run-as UID GID PATH ARGV0 ARGS...`: drops to the user and
/// group, then executes PATH (a script without `#!` through `/bin/sh`).
/// Returns only on failure, with the exit status to use.
pub fn run_as(args: &[String]) -> u8 {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        crate::log::error(&format!("pyro-agent: {what}: {e}"));
        126
    };
    let [uid, gid, path, argv @ ..] = args else {
        return fail("run-as", &"usage: run-as UID GID PATH ARGV0 [ARGS...]");
    };
    let (Ok(uid), Ok(gid)) = (uid.parse::<u32>(), gid.parse::<u32>()) else {
        return fail("run-as", &"UID and GID must be numbers");
    };
    let gid = nix::unistd::Gid::from_raw(gid);
    if let Err(e) = nix::unistd::setgroups(&[gid]).and_then(|()| nix::unistd::setgid(gid)) {
        return fail("setting the group", &e);
    }
    if let Err(e) = nix::unistd::setuid(nix::unistd::Uid::from_raw(uid)) {
        return fail("setting the user", &e);
    }
    let c = |s: &str| CString::new(s).unwrap_or_default();
    let argv: Vec<CString> = argv.iter().map(|a| c(a)).collect();
    let e = match nix::unistd::execv(&c(path), &argv) {
        Err(nix::errno::Errno::ENOEXEC) => {
            let mut sh = vec![c("/bin/sh"), c(path)];
            sh.extend(argv.iter().skip(1).cloned());
            nix::unistd::execv(&c("/bin/sh"), &sh).err()
        }
        r => r.err(),
    };
    match e {
        Some(nix::errno::Errno::ENOENT) => {
            crate::log::error(&format!("pyro-agent: {path}: not found"));
            127
        }
        Some(e) => fail(path, &e),
        None => 0,
    }
}

#[cfg(test)]
mod tests;
