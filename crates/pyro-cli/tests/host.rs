//! `pyro host print-config|connect|disconnect` through the built binary, for
//! each chat host, against a scratch HOME, CODEX_HOME, XDG_CONFIG_HOME and
//! project directory: the shape of each host's entry, `connect` twice equal
//! to once with one backup, `disconnect` giving the file back byte for byte,
//! and bad input refused with the file untouched.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Home, json, ok, stderr, stdout};

/// A scratch user: where each host keeps its files.
struct User {
    _dir: tempfile::TempDir,
    home: PathBuf,
    codex: PathBuf,
    xdg: PathBuf,
    project: PathBuf,
    state: Home,
}

impl User {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let [home, codex, xdg, project] = ["home", "codex", "xdg", "project"].map(|d| root.join(d));
        for d in [&home, &codex, &xdg, &project] {
            std::fs::create_dir_all(d).unwrap();
        }
        User {
            _dir: dir,
            home,
            codex,
            xdg,
            project,
            state: Home::new(),
        }
    }

    fn host(&self, args: &[&str]) -> Output {
        self.state
            .cmd()
            .env("HOME", &self.home)
            .env("CODEX_HOME", &self.codex)
            .env("XDG_CONFIG_HOME", &self.xdg)
            .current_dir(&self.project)
            .arg("host")
            .args(args)
            .output()
            .unwrap()
    }

    /// Every file under the user's directories (print-config writes none).
    fn files(&self) -> Vec<PathBuf> {
        fn walk(d: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(d).unwrap().flatten() {
                if e.path().is_dir() {
                    walk(&e.path(), out);
                } else {
                    out.push(e.path());
                }
            }
        }
        let mut out = Vec::new();
        for d in [&self.home, &self.codex, &self.xdg, &self.project] {
            walk(d, &mut out);
        }
        out
    }
}

fn parse(snippet: &str) -> serde_json::Value {
    serde_json::from_str(snippet).unwrap_or_else(|e| panic!("{e}: {snippet}"))
}

fn is_pyro(command: &serde_json::Value) -> bool {
    command.as_str().is_some_and(|c| c.ends_with("/pyro"))
}

#[test]
fn print_config_gives_each_hosts_own_shape_and_writes_nothing() {
    let u = User::new();

    let c = json(ok(&u.host(&["print-config", "claude-code", "--json"])));
    assert_eq!(c["host"], "claude-code", "{c}");
    assert_eq!(c["file"], u.home.join(".claude.json").to_str().unwrap());
    let entry = &parse(c["snippet"].as_str().unwrap())["mcpServers"]["pyro"];
    assert_eq!(entry["type"], "stdio", "{entry}");
    assert!(is_pyro(&entry["command"]), "{entry}");
    let args: Vec<&str> = entry["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(&args[..2], ["mcp", "serve"], "{entry}");

    let c = json(ok(&u.host(&[
        "print-config",
        "claude-code",
        "--scope",
        "project",
        "--json",
    ])));
    assert_eq!(c["file"], u.project.join(".mcp.json").to_str().unwrap());

    let c = json(ok(&u.host(&["print-config", "codex", "--json"])));
    assert_eq!(c["file"], u.codex.join("config.toml").to_str().unwrap());
    let snippet = c["snippet"].as_str().unwrap();
    for want in [
        "[mcp_servers.pyro]",
        "command = \"",
        "tool_timeout_sec = 300",
    ] {
        assert!(snippet.contains(want), "{want}: {snippet}");
    }

    let c = json(ok(&u.host(&["print-config", "opencode", "--json"])));
    assert_eq!(
        c["file"],
        u.xdg.join("opencode/opencode.json").to_str().unwrap()
    );
    let entry = &parse(c["snippet"].as_str().unwrap())["mcp"]["pyro"];
    assert_eq!(entry["type"], "local", "{entry}");
    assert!(is_pyro(&entry["command"][0]), "{entry}");
    assert_eq!(entry["command"][1], "mcp", "{entry}");

    // Human form: the snippet on stdout, where it belongs on stderr.
    let o = ok(&u.host(&["print-config", "opencode"])).clone();
    assert_eq!(parse(&stdout(&o))["mcp"]["pyro"]["type"], "local");
    assert!(
        stderr(&o).contains(&format!(
            "belongs in {}",
            u.xdg.join("opencode/opencode.json").display()
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(u.files(), Vec::<PathBuf>::new(), "print-config wrote files");
}

#[test]
fn connect_twice_is_connect_once_and_disconnect_gives_the_file_back() {
    let u = User::new();
    let cases: [(&str, PathBuf, &str); 3] = [
        (
            "claude-code",
            u.home.join(".claude.json"),
            "{\"theme\":  \"dark\",\n \"mcpServers\": {\"other\": {\"command\": \"x\"}}}\n",
        ),
        (
            "codex",
            u.codex.join("config.toml"),
            "model = \"o3\"  # kept as written\n\n[mcp_servers.other]\ncommand = \"x\"\n",
        ),
        (
            "opencode",
            u.xdg.join("opencode/opencode.json"),
            "{ \"$schema\": \"https://example.invalid/s.json\", \"mcp\": {} }",
        ),
    ];
    for (host, file, original) in &cases {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, original).unwrap();

        let first = json(ok(&u.host(&["connect", host, "--json"])));
        assert_eq!(first["changed"], true, "{host}: {first}");
        let backup = PathBuf::from(first["backup"].as_str().unwrap());
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), *original);
        let after_once = std::fs::read(file).unwrap();
        let text = String::from_utf8_lossy(&after_once).into_owned();
        assert!(text.contains("pyro"), "{host}: {text}");
        assert!(text.contains("other") || text.contains("$schema"), "{text}");

        let second = json(ok(&u.host(&["connect", host, "--json"])));
        assert_eq!(second["changed"], false, "{host}: {second}");
        assert_eq!(std::fs::read(file).unwrap(), after_once, "{host}");
        let backups = std::fs::read_dir(file.parent().unwrap())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("backup"))
            .count();
        assert_eq!(backups, 1, "{host}");

        // Human form of disconnect.
        let o = ok(&u.host(&["disconnect", host])).clone();
        assert!(!stdout(&o).trim().is_empty(), "{host}: no summary");
        assert_eq!(
            std::fs::read_to_string(file).unwrap(),
            *original,
            "{host}: not restored byte for byte"
        );
        assert!(!backup.exists(), "{host}: the backup outlived its restore");
    }

    // A file connect created is removed by disconnect.
    let mcp = u.project.join(".mcp.json");
    let o = ok(&u.host(&["connect", "claude-code", "--scope", "project"])).clone();
    assert!(stdout(&o).contains(".mcp.json"), "{}", stdout(&o));
    assert!(mcp.exists());
    let gone = json(ok(&u.host(&[
        "disconnect",
        "claude-code",
        "--scope",
        "project",
        "--json",
    ])));
    assert_eq!(gone["restored"], true, "{gone}");
    assert!(!mcp.exists(), "{gone}");
}

#[test]
fn a_file_the_host_cannot_read_is_refused_and_left_as_it_was() {
    let u = User::new();
    let file = u.home.join(".claude.json");
    let broken = "{\"mcpServers\": [not json";
    std::fs::write(&file, broken).unwrap();
    let o = u.host(&["connect", "claude-code"]);
    assert!(!o.status.success(), "{}", stdout(&o));
    let msg = stderr(&o);
    assert!(msg.contains(".claude.json"), "{msg}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), broken);
    assert_eq!(
        u.files(),
        vec![file.clone()],
        "something was written beside it"
    );
    // Nor one that is not UTF-8 text.
    let binary = [0xffu8, 0xfe, b'{', b'}'];
    std::fs::write(&file, binary).unwrap();
    let o = u.host(&["connect", "claude-code"]);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(stderr(&o).contains("is not UTF-8 text"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&file).unwrap(), binary);
    // Disconnecting from a file that is not there: nothing to do, said so.
    std::fs::remove_file(&file).unwrap();
    let o = u.host(&["disconnect", "claude-code"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        format!("{}{}", stdout(&o), stderr(&o)).contains("does not exist; nothing to remove"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );

    // No HOME: the error names it, in JSON on stdout with --json.
    let o = u
        .state
        .cmd()
        .env_remove("HOME")
        .current_dir(&u.project)
        .args(["host", "connect", "codex", "--json"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = json(&o);
    assert!(e.to_string().contains("HOME"), "{e}");
}
