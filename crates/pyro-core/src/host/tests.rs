use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    paths: Paths,
    dirs: HostDirs,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    for d in ["home", "project", "state"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    Fixture {
        paths: Paths::with_cache_dir(root.join("state"), root.join("cache")),
        dirs: HostDirs {
            home: root.join("home"),
            project: root.join("project"),
            codex_home: None,
            xdg_config_home: None,
        },
        _dir: dir,
    }
}

fn server(profile: &str) -> ServerCommand {
    ServerCommand::for_exe(Path::new("/opt/pyro/bin/pyro"), profile)
}

const SERVE: [&str; 4] = ["mcp", "serve", "--profile", "workspace-core"];

/// What each host's own reader would find under the `pyro` name.
fn entry_of(host: Host, text: &str) -> serde_json::Value {
    match host {
        Host::Codex => {
            let t: toml::Table = toml::from_str(text).unwrap();
            serde_json::to_value(&t["mcp_servers"]["pyro"]).unwrap()
        }
        Host::ClaudeCode => {
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            v["mcpServers"]["pyro"].clone()
        }
        Host::OpenCode => {
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            v["mcp"]["pyro"].clone()
        }
    }
}

#[test]
fn print_config_has_each_hosts_shape() {
    let f = fixture();
    for host in Host::ALL {
        let c = print_config(&f.dirs, host, Scope::User, server("workspace-core"));
        let e = entry_of(host, &c.snippet);
        match host {
            Host::ClaudeCode => {
                assert_eq!(e["type"], "stdio");
                assert_eq!(e["command"], "/opt/pyro/bin/pyro");
                assert_eq!(e["args"], serde_json::json!(SERVE));
                assert!(e["env"].is_object());
                assert_eq!(c.file, f.dirs.home.join(".claude.json"));
            }
            Host::Codex => {
                assert_eq!(e["command"], "/opt/pyro/bin/pyro");
                assert_eq!(e["args"], serde_json::json!(SERVE));
                assert_eq!(e["tool_timeout_sec"], CODEX_TOOL_TIMEOUT_SECONDS);
                assert!(
                    c.snippet.starts_with("[mcp_servers.pyro]\n"),
                    "{}",
                    c.snippet
                );
                assert_eq!(c.file, f.dirs.home.join(".codex/config.toml"));
            }
            Host::OpenCode => {
                assert_eq!(e["type"], "local");
                assert_eq!(e["enabled"], true);
                let mut cmd = vec!["/opt/pyro/bin/pyro"];
                cmd.extend(SERVE);
                assert_eq!(e["command"], serde_json::json!(cmd));
                // OpenCode rejects Claude's shape.
                assert!(e.get("args").is_none());
                assert_eq!(c.file, f.dirs.home.join(".config/opencode/opencode.json"));
            }
        }
    }
    let p = print_config(&f.dirs, Host::OpenCode, Scope::Project, server("vm-run"));
    assert_eq!(p.file, f.dirs.project.join("opencode.json"));
    assert!(p.snippet.contains("\"vm-run\""));
}

#[test]
fn uvx_environments_get_the_uvx_command() {
    let s = ServerCommand::for_exe(
        Path::new("/root/.cache/uv/archive-v0/AbC123/bin/pyro"),
        "workspace-full",
    );
    assert_eq!(s.command, "uvx");
    let from = format!("pyro-mcp=={}", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        s.args,
        [
            "--from",
            from.as_str(),
            "pyro",
            "mcp",
            "serve",
            "--profile",
            "workspace-full"
        ]
    );
    let venv = ServerCommand::for_exe(Path::new("/srv/venv/bin/pyro"), "vm-run");
    assert_eq!(venv.command, "/srv/venv/bin/pyro");
    let odd = ServerCommand::for_exe(Path::new("/x/archive-vault/bin/pyro"), "vm-run");
    assert_eq!(odd.command, "/x/archive-vault/bin/pyro");
}

const CLAUDE_USER: &str = "{\n  \"numStartups\": 12,\n  \"projects\": {\"/r\": {\"allowedTools\": []}},\n  \"mcpServers\": {\n    \"git\": {\"command\": \"git-mcp\"}\n  }\n}\n";
const CODEX_USER: &str =
    "# my settings\nmodel = \"o4-mini\"\n\n[mcp_servers.docs]\ncommand = \"docs-mcp\" # keep\n";
const OPENCODE_USER: &str =
    "{\n\t// OpenCode reads JSONC\n\t\"theme\": \"tokyo\",\n\t\"mcp\": {},\n}\n";

#[test]
fn connect_twice_is_once_and_disconnect_restores_every_byte() {
    for (host, original) in [
        (Host::ClaudeCode, CLAUDE_USER),
        (Host::Codex, CODEX_USER),
        (Host::OpenCode, OPENCODE_USER),
    ] {
        let f = fixture();
        let file = f.dirs.config_file(host, Scope::User);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, original).unwrap();
        let c1 = connect(
            &f.paths,
            &f.dirs,
            host,
            Scope::User,
            server("workspace-core"),
        )
        .unwrap();
        assert!(c1.changed);
        let once = std::fs::read_to_string(&file).unwrap();
        if host != Host::OpenCode {
            assert_eq!(entry_of(host, &once)["command"], "/opt/pyro/bin/pyro");
        }
        assert!(once.contains("/opt/pyro/bin/pyro"));
        let c2 = connect(
            &f.paths,
            &f.dirs,
            host,
            Scope::User,
            server("workspace-core"),
        )
        .unwrap();
        assert!(!c2.changed, "{host:?}: {}", c2.summary);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), once);
        let backups: Vec<_> = std::fs::read_dir(file.parent().unwrap())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".pyro-backup"))
            .collect();
        assert_eq!(backups.len(), 1, "{host:?}");
        assert_eq!(
            std::fs::read_to_string(backups[0].path()).unwrap(),
            original
        );
        // Another profile replaces the entry; the backup stays the original.
        connect(
            &f.paths,
            &f.dirs,
            host,
            Scope::User,
            server("workspace-full"),
        )
        .unwrap();
        assert!(
            std::fs::read_to_string(&file)
                .unwrap()
                .contains("workspace-full")
        );
        let d = disconnect(&f.paths, &f.dirs, host, Scope::User).unwrap();
        assert!(d.changed && d.restored, "{host:?}: {}", d.summary);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            original,
            "{host:?}"
        );
        assert!(!backup_path(&file).exists());
        let again = disconnect(&f.paths, &f.dirs, host, Scope::User).unwrap();
        assert!(!again.changed, "{}", again.summary);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    }
}

#[test]
fn disconnect_after_a_hand_edit_cuts_only_the_entry() {
    let f = fixture();
    let file = f.dirs.config_file(Host::ClaudeCode, Scope::Project);
    std::fs::write(&file, "{\"mcpServers\": {\"a\": {}}}").unwrap();
    connect(
        &f.paths,
        &f.dirs,
        Host::ClaudeCode,
        Scope::Project,
        server("vm-run"),
    )
    .unwrap();
    let edited = std::fs::read_to_string(&file)
        .unwrap()
        .replacen('{', "{\"added\": true, ", 1);
    std::fs::write(&file, &edited).unwrap();
    let d = disconnect(&f.paths, &f.dirs, Host::ClaudeCode, Scope::Project).unwrap();
    assert!(d.changed && !d.restored, "{}", d.summary);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "{\"added\": true, \"mcpServers\": {\"a\": {}}}"
    );
}

#[test]
fn a_file_connect_created_is_removed_and_codex_project_scope_works() {
    let f = fixture();
    let file = f.dirs.config_file(Host::Codex, Scope::Project);
    assert_eq!(file, f.dirs.project.join(".codex/config.toml"));
    let c = connect(
        &f.paths,
        &f.dirs,
        Host::Codex,
        Scope::Project,
        server("vm-run"),
    )
    .unwrap();
    assert!(c.changed && c.backup.is_none());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let d = disconnect(&f.paths, &f.dirs, Host::Codex, Scope::Project).unwrap();
    assert!(d.restored);
    assert!(!file.exists());
}

#[test]
fn a_broken_file_is_left_alone_with_a_next_step() {
    let f = fixture();
    let file = f.dirs.config_file(Host::OpenCode, Scope::Project);
    std::fs::write(&file, "{\"mcp\": [}").unwrap();
    let e = connect(
        &f.paths,
        &f.dirs,
        Host::OpenCode,
        Scope::Project,
        server("vm-run"),
    )
    .unwrap_err();
    assert_eq!(e.kind(), "invalid_argument");
    assert!(e.to_string().contains("nothing was changed"), "{e}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "{\"mcp\": [}");
    assert!(!backup_path(&file).exists());
    assert!(
        Host::from_name("cursor")
            .unwrap_err()
            .to_string()
            .contains("claude-code")
    );
}

#[test]
fn a_symlinked_config_is_edited_where_it_points() {
    let f = fixture();
    let real = f.dirs.home.join("dotfiles-claude.json");
    std::fs::write(&real, "{}").unwrap();
    let link = f.dirs.config_file(Host::ClaudeCode, Scope::User);
    std::os::unix::fs::symlink(&real, &link).unwrap();
    connect(
        &f.paths,
        &f.dirs,
        Host::ClaudeCode,
        Scope::User,
        server("vm-run"),
    )
    .unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        std::fs::read_to_string(&real)
            .unwrap()
            .contains("mcpServers")
    );
    disconnect(&f.paths, &f.dirs, Host::ClaudeCode, Scope::User).unwrap();
    assert_eq!(std::fs::read_to_string(&real).unwrap(), "{}");
}

#[test]
fn a_backup_from_an_earlier_connect_is_never_restored_over_newer_edits() {
    let f = fixture();
    let file = f.dirs.config_file(Host::ClaudeCode, Scope::User);
    std::fs::write(&file, "{\"a\": 1}").unwrap();
    connect(
        &f.paths,
        &f.dirs,
        Host::ClaudeCode,
        Scope::User,
        server("vm-run"),
    )
    .unwrap();
    // The host rewrites its file (another server added), then pyro is
    // connected again with another profile.
    let newer = std::fs::read_to_string(&file)
        .unwrap()
        .replacen('{', "{\"github\": true, ", 1);
    std::fs::write(&file, &newer).unwrap();
    connect(
        &f.paths,
        &f.dirs,
        Host::ClaudeCode,
        Scope::User,
        server("workspace-full"),
    )
    .unwrap();
    assert_eq!(std::fs::read_to_string(backup_path(&file)).unwrap(), newer);
    let d = disconnect(&f.paths, &f.dirs, Host::ClaudeCode, Scope::User).unwrap();
    assert!(d.restored, "{}", d.summary);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), newer);
}

#[test]
fn a_missing_or_changed_backup_means_cutting_the_entry_out() {
    let f = fixture();
    let file = f.dirs.config_file(Host::OpenCode, Scope::Project);
    std::fs::write(&file, "{\"theme\": \"x\"}").unwrap();
    connect(
        &f.paths,
        &f.dirs,
        Host::OpenCode,
        Scope::Project,
        server("vm-run"),
    )
    .unwrap();
    std::fs::write(backup_path(&file), "{\"tampered\": true}").unwrap();
    let d = disconnect(&f.paths, &f.dirs, Host::OpenCode, Scope::Project).unwrap();
    assert!(d.changed && !d.restored, "{}", d.summary);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "{\"theme\": \"x\"}"
    );
    connect(
        &f.paths,
        &f.dirs,
        Host::OpenCode,
        Scope::Project,
        server("vm-run"),
    )
    .unwrap();
    std::fs::remove_file(backup_path(&file)).unwrap();
    let d = disconnect(&f.paths, &f.dirs, Host::OpenCode, Scope::Project).unwrap();
    assert!(d.changed && !d.restored, "{}", d.summary);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "{\"theme\": \"x\"}"
    );
}

#[test]
fn a_project_file_may_not_lead_outside_the_project() {
    let f = fixture();
    let outside = f.dirs.home.join("daemon.json");
    std::fs::write(&outside, "{}").unwrap();
    std::os::unix::fs::symlink(&outside, f.dirs.project.join(".mcp.json")).unwrap();
    let e = connect(
        &f.paths,
        &f.dirs,
        Host::ClaudeCode,
        Scope::Project,
        server("vm-run"),
    )
    .unwrap_err();
    assert_eq!(e.kind(), "invalid_argument");
    assert!(e.to_string().contains("outside the project"), "{e}");
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "{}");
    // Through a linked directory too.
    std::os::unix::fs::symlink(&f.dirs.home, f.dirs.project.join(".codex")).unwrap();
    assert!(
        connect(
            &f.paths,
            &f.dirs,
            Host::Codex,
            Scope::Project,
            server("vm-run")
        )
        .is_err()
    );
    assert!(!f.dirs.home.join("config.toml").exists());
    // A dangling link is named, not replaced.
    let dangling = f.dirs.config_file(Host::OpenCode, Scope::User);
    std::fs::create_dir_all(dangling.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/nonexistent/x.json", &dangling).unwrap();
    assert!(
        connect(
            &f.paths,
            &f.dirs,
            Host::OpenCode,
            Scope::User,
            server("vm-run")
        )
        .is_err()
    );
    assert!(
        std::fs::symlink_metadata(&dangling)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn the_backup_keeps_the_files_mode() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    let file = f.dirs.config_file(Host::ClaudeCode, Scope::Project);
    std::fs::write(
        &file,
        "{\"mcpServers\": {\"x\": {\"env\": {\"TOKEN\": \"s\"}}}}",
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    connect(
        &f.paths,
        &f.dirs,
        Host::ClaudeCode,
        Scope::Project,
        server("vm-run"),
    )
    .unwrap();
    for p in [&file, &backup_path(&file)] {
        assert_eq!(
            std::fs::metadata(p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
