//! Helpers for host-compat workspace tests.

use std::path::{Path, PathBuf};
use std::process::Output;

use super::{Home, ok, require_debian12, stdout};

pub fn filters(home: &Home) -> Vec<(String, String)> {
    vec![
        (
            regex_escape(&home.path().display().to_string()),
            "[HOME]".into(),
        ),
        (r"\b[0-9a-f]{16}\b".into(), "[ID]".into()),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ".into(), "[TIME]".into()),
        (r"duration_ms=\d+".into(), "duration_ms=[MS]".into()),
    ]
}

pub fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

pub fn ws(home: &Home, args: &[&str]) -> Output {
    home.cmd()
        .arg("workspace")
        .args(args)
        .env("PYRO_BACKEND", "host-compat")
        .output()
        .unwrap()
}

/// A shell line that prints how many processes run a command line starting
/// with `prefix` (arguments joined by spaces).
pub fn count_script(prefix: &str) -> String {
    format!(
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -c '^{prefix}' || true"
    )
}

/// How many processes in workspace `id` run a command line starting with
/// `prefix`, as printed (`"0\n"` for none).
pub fn running(home: &Home, id: &str, prefix: &str) -> String {
    stdout(ok(&ws(home, &["exec", id, "--", &count_script(prefix)])))
}

pub fn create(home: &Home, extra: &[&str]) -> String {
    require_debian12();
    let mut args = vec!["create", "debian:12", "--id-only"];
    args.extend(extra);
    let o = ws(home, &args);
    ok(&o);
    stdout(&o).trim().to_owned()
}

pub fn seed_dir(root: &Path) -> PathBuf {
    let d = root.join("seed");
    std::fs::create_dir_all(d.join("bin")).unwrap();
    std::fs::create_dir_all(d.join("node_modules/pkg")).unwrap();
    std::fs::create_dir_all(d.join("node_modules/.bin")).unwrap();
    std::fs::write(d.join("message.txt"), "broken\n").unwrap();
    std::fs::write(
        d.join("check.sh"),
        "#!/bin/sh\ngrep -qx fixed message.txt || { echo not fixed >&2; exit 1; }\necho fixed\n",
    )
    .unwrap();
    std::fs::write(d.join("node_modules/pkg/cli.js"), "console.log(1)\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.join("check.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("../pkg/cli.js", d.join("node_modules/.bin/cli")).unwrap();
    std::os::unix::fs::symlink("../check.sh", d.join("bin/check")).unwrap();
    d
}
