//! SIGKILL a `pyro workspace` command mid-way: the workspace is then either
//! fully there or fully gone, and `status` says which (host-compat).

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Home, pyro_bin, require_debian12, stderr, stdout};
use serde_json::Value;

fn spawn(home: &Home, args: &[&str]) -> Child {
    std::process::Command::new(pyro_bin())
        .env("PYRO_HOME", home.path())
        .env("PYRO_BACKEND", "host-compat")
        .env("NO_COLOR", "1")
        .arg("workspace")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn run(home: &Home, args: &[&str]) -> std::process::Output {
    home.cmd()
        .env("PYRO_BACKEND", "host-compat")
        .arg("workspace")
        .args(args)
        .output()
        .unwrap()
}

/// Polls until `cond` holds (or fails after 60 s).
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn records(home: &Home) -> Vec<Value> {
    std::fs::read_dir(home.path().join("workspaces"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| std::fs::read(e.path().join("workspace.json")).ok())
                .filter_map(|b| serde_json::from_slice(&b).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A directory with one big (dense, so it really crosses the wire) file, so
/// transfers take a moment.
fn big_seed(root: &Path) -> std::path::PathBuf {
    let d = root.join("big");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("small.txt"), "small\n").unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(d.join("big.bin")).unwrap());
    let block = vec![0x5au8; 1 << 20];
    for _ in 0..256 {
        std::io::Write::write_all(&mut f, &block).unwrap();
    }
    d
}

fn kill(mut c: Child) {
    c.kill().unwrap();
    c.wait().unwrap();
}

#[test]
fn killed_during_create_is_fully_gone() {
    require_debian12();
    let home = Home::new();
    let seed = big_seed(home.path());
    let child = spawn(
        &home,
        &["create", "debian:12", "--seed-path", seed.to_str().unwrap()],
    );
    wait_for("the workspace record", || {
        records(&home).iter().any(|r| r["state"] == "creating")
    });
    kill(child);
    let id = records(&home)
        .first()
        .map(|r| r["workspace_id"].as_str().unwrap().to_owned());
    let id = id.expect("the record of the interrupted create");
    let o = run(&home, &["status", &id]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("workspace \"{id}\" does not exist")),
        "{}",
        stderr(&o)
    );
    assert!(!home.path().join("workspaces").join(&id).exists());
    home.assert_clean();
}

#[test]
fn killed_during_sync_push_leaves_the_workspace_whole() {
    require_debian12();
    let home = Home::new();
    let o = run(&home, &["create", "debian:12", "--id-only"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_owned();
    let seed = big_seed(home.path());
    let data = home
        .path()
        .join("workspaces")
        .join(&id)
        .join("upper/data/workspace");
    let child = spawn(&home, &["sync", "push", &id, seed.to_str().unwrap()]);
    wait_for("the transfer to start", || {
        std::fs::read_dir(&data).is_ok_and(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".pyro-stage-"))
        })
    });
    kill(child);
    // The agent notices the broken transfer and discards what arrived.
    wait_for("the staging area to go", || {
        !std::fs::read_dir(&data).is_ok_and(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".pyro-stage-"))
        })
    });
    let st: Value = serde_json::from_slice(&run(&home, &["status", &id, "--json"]).stdout).unwrap();
    assert_eq!(st["state"], "started");
    let o = run(&home, &["exec", &id, "--", "ls -A /workspace | wc -l"]);
    assert_eq!(stdout(&o), "0\n", "nothing of the interrupted push landed");
    assert!(run(&home, &["delete", &id]).status.success());
    home.assert_clean();
}

#[test]
fn killed_during_reset_is_stopped_with_the_reason_then_usable() {
    require_debian12();
    let home = Home::new();
    let seed = big_seed(home.path());
    let o = run(
        &home,
        &[
            "create",
            "debian:12",
            "--seed-path",
            seed.to_str().unwrap(),
            "--id-only",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_owned();
    assert!(
        run(&home, &["exec", &id, "--", "echo scratch > scratch.txt"])
            .status
            .success()
    );
    let child = spawn(&home, &["reset", &id]);
    wait_for("the reset to begin", || {
        records(&home).iter().any(|r| r["state"] == "resetting")
    });
    kill(child);
    let st: Value = serde_json::from_slice(&run(&home, &["status", &id, "--json"]).stdout).unwrap();
    assert_eq!(st["state"], "stopped", "{st}");
    assert!(
        st["state_reason"]
            .as_str()
            .unwrap()
            .contains("a reset was interrupted"),
        "{st}"
    );
    assert!(home.sandboxes_left().is_empty());
    let o = run(&home, &["start", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&home, &["exec", &id, "--", "cat small.txt"]);
    assert_eq!(
        stdout(&o),
        "small\n",
        "the workspace is whole: {}",
        stderr(&o)
    );
    assert!(run(&home, &["delete", &id]).status.success());
    home.assert_clean();
}

#[test]
fn a_vm_that_dies_turns_the_workspace_stopped_with_the_reason() {
    require_debian12();
    let home = Home::new();
    let o = run(&home, &["create", "debian:12", "--id-only"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_owned();
    assert!(
        run(&home, &["file", "write", &id, "kept.txt", "--text", "kept"])
            .status
            .success()
    );
    // Kill the sandbox behind pyro's back.
    let rec: Value = serde_json::from_slice(
        &std::fs::read(
            home.path()
                .join("workspaces")
                .join(&id)
                .join("workspace.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let vm = rec["vm_id"].as_str().unwrap();
    let vm_rec: Value = serde_json::from_slice(
        &std::fs::read(home.path().join("vms").join(vm).join("vm.json")).unwrap(),
    )
    .unwrap();
    let pid = vm_rec["process"]["pid"].as_u64().unwrap();
    // The sandbox's log keeper runs the pyro program in keeper mode.
    common::assert_keeper_execs_pyro(&vm_rec);
    assert!(
        std::process::Command::new("kill")
            .arg("-9")
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success()
    );
    wait_for("the sandbox to die", || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    let st: Value = serde_json::from_slice(&run(&home, &["status", &id, "--json"]).stdout).unwrap();
    assert_eq!(st["state"], "stopped", "{st}");
    let reason = st["state_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("its VM stopped unexpectedly") && reason.contains("the disk is kept"),
        "{reason}"
    );
    assert!(st["last_error"].is_string(), "{st}");
    assert!(
        home.sandboxes_left().is_empty(),
        "the dead sandbox was cleaned up"
    );
    assert!(run(&home, &["start", &id]).status.success());
    assert_eq!(
        stdout(&run(&home, &["file", "read", &id, "kept.txt"])),
        "kept"
    );
    assert!(run(&home, &["delete", &id]).status.success());
    home.assert_clean();
}

#[test]
fn killed_during_a_printing_exec_kills_the_command_and_logs_why() {
    require_debian12();
    let home = Home::new();
    let o = run(&home, &["create", "debian:12", "--id-only"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_owned();
    // A command that never stops printing, its pid in a file.
    let child = spawn(
        &home,
        &[
            "exec",
            &id,
            "--",
            "echo $$ > /workspace/pid; exec yes pyro-cancel-me",
        ],
    );
    let read_pid = || {
        let o = run(&home, &["file", "read", &id, "pid"]);
        o.status
            .success()
            .then(|| stdout(&o).trim().to_owned())
            .filter(|p| !p.is_empty())
    };
    wait_for("the command's pid", || read_pid().is_some());
    let pid = read_pid().unwrap();
    let alive = |pid: &str| {
        let o = run(
            &home,
            &[
                "exec",
                &id,
                "--",
                &format!("kill -0 {pid} && echo alive || echo gone"),
            ],
        );
        stdout(&o).trim().to_owned()
    };
    assert_eq!(alive(&pid), "alive");
    kill(child);
    // The agent sees the host go away (even while the command prints) and
    // kills the command's process group.
    wait_for("the command to be killed", || alive(&pid) == "gone");
    let logs: Value =
        serde_json::from_slice(&run(&home, &["logs", &id, "--json", "--sequence", "1"]).stdout)
            .unwrap();
    let entry = &logs["entries"][0];
    assert_eq!(entry["state"], "interrupted", "{entry}");
    assert!(
        entry["stdout"].as_str().unwrap().contains("pyro-cancel-me"),
        "{entry}"
    );
    assert!(run(&home, &["delete", &id]).status.success());
}

/// Entries under `dir` whose names start with `prefix`.
fn named(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn killed_during_an_export_leaves_nothing_after_the_next_command() {
    require_debian12();
    let home = Home::new();
    let seed = big_seed(home.path());
    let o = run(
        &home,
        &[
            "create",
            "debian:12",
            "--seed-path",
            seed.to_str().unwrap(),
            "--id-only",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_owned();
    let out = home.path().join("exports");
    std::fs::create_dir_all(&out).unwrap();
    // Into directories the export has to make.
    let dest = out.join("a/b/big.bin");
    let child = spawn(
        &home,
        &["export", &id, "big.bin", "--output", dest.to_str().unwrap()],
    );
    let made = out.join("a/b");
    wait_for("the export's temp file", || {
        !named(&made, ".pyro-export-").is_empty()
    });
    kill(child);
    assert!(!named(&made, ".pyro-export-").is_empty());
    let tmp = home.path().join("tmp");
    assert!(!named(&tmp, "").is_empty(), "the export had a temp dir");
    // Any command sweeps first.
    assert!(run(&home, &["list"]).status.success());
    assert_eq!(named(&out, ""), Vec::<String>::new(), "export debris left");
    assert_eq!(named(&tmp, ""), Vec::<String>::new(), "temp dirs left");
    // The export works afterwards, and leaves only its output.
    let s = out.join("s.txt");
    let o = run(
        &home,
        &["export", &id, "small.txt", "--output", s.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(named(&out, ""), vec!["s.txt".to_owned()]);
    assert!(run(&home, &["delete", &id]).status.success());
    home.assert_clean();
}

#[test]
fn a_sweep_removes_what_a_killed_reset_left_in_the_workspace() {
    require_debian12();
    let home = Home::new();
    let o = run(&home, &["create", "debian:12", "--id-only"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_owned();
    assert!(
        run(&home, &["file", "write", &id, "kept.txt", "--text", "kept"])
            .status
            .success()
    );
    // What a reset killed midway leaves beside the live layer.
    let dir = home.path().join("workspaces").join(&id);
    for d in ["upper.new/data", ".commands-123/x", "upper.old/data"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join(".tmpAbC123"), "half a record").unwrap();
    assert!(run(&home, &["list"]).status.success());
    for name in ["upper.new", "upper.old", ".commands-123", ".tmpAbC123"] {
        assert!(!dir.join(name).exists(), "{name} left");
    }
    assert_eq!(
        stdout(&run(&home, &["file", "read", &id, "kept.txt"])),
        "kept"
    );
    assert!(run(&home, &["delete", &id]).status.success());
    home.assert_clean();
}

#[test]
fn a_sweep_waits_for_a_lock_left_with_a_child_of_a_killed_create() {
    require_debian12();
    let home = Home::new();
    let o = run(&home, &["create", "debian:12", "--id-only"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_owned();
    // As a create killed while a child it forked (a console keeper starting
    // up) still holds a copy of the workspace's lock: the record says
    // creating, by a process that is gone.
    let file = home
        .path()
        .join("workspaces")
        .join(&id)
        .join("workspace.json");
    let mut rec: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let process = pyro_vmm::process::ProcessId::of(gone.id()).unwrap();
    gone.wait().unwrap();
    rec["state"] = "creating".into();
    rec["operation"] = serde_json::json!({"kind": "create", "process": process});
    std::fs::write(&file, serde_json::to_vec(&rec).unwrap()).unwrap();
    let lock = home.path().join("locks").join(format!("ws-{id}.lock"));
    let mut holder = std::process::Command::new("flock")
        .arg(&lock)
        .args(["sleep", "0.5"])
        .spawn()
        .unwrap();
    wait_for("the lock to be held", || {
        std::process::Command::new("flock")
            .args(["-n"])
            .arg(&lock)
            .arg("true")
            .status()
            .is_ok_and(|s| !s.success())
    });
    // The first command after it already finds the workspace gone.
    let o = run(&home, &["list", "--json"]);
    let l: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(l["count"], 0, "{l}");
    holder.wait().unwrap();
    home.assert_clean();
}

/// A workspace holding `big_seed`, and its id.
fn big_workspace(home: &Home) -> String {
    let seed = big_seed(home.path());
    let o = run(
        home,
        &[
            "create",
            "debian:12",
            "--seed-path",
            seed.to_str().unwrap(),
            "--id-only",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).trim().to_owned()
}

#[test]
fn killed_during_snapshot_create_leaves_no_half_snapshot() {
    require_debian12();
    let home = Home::new();
    let id = big_workspace(&home);
    let snaps = home.path().join("workspaces").join(&id).join("snapshots");
    let child = spawn(&home, &["snapshot", "create", &id, "cp1"]);
    // Killed mid-copy: the record names the copy (a paused guest would be
    // resumed by the next call, which also clears the mark).
    wait_for("the snapshot copy to start", || {
        records(&home)
            .first()
            .is_some_and(|r| r["operation"]["kind"] == "copy")
            && std::fs::read_dir(&snaps).is_ok_and(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            })
    });
    kill(child);
    let l: Value =
        serde_json::from_slice(&run(&home, &["snapshot", "list", &id, "--json"]).stdout).unwrap();
    assert_eq!(l["count"], 1, "only the baseline: {l}");
    assert_eq!(records(&home)[0]["operation"], Value::Null);
    // The debris is gone and the name is free; the workspace is whole.
    assert_eq!(std::fs::read_dir(&snaps).unwrap().count(), 0);
    let o = run(&home, &["snapshot", "create", &id, "cp1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(
        &home,
        &["exec", &id, "--", "cat small.txt && wc -c < big.bin"],
    );
    assert_eq!(stdout(&o), "small\n268435456\n", "{}", stderr(&o));
    assert!(run(&home, &["delete", &id]).status.success());
    home.assert_clean();
}

#[test]
fn killed_during_fork_leaves_no_fork_and_the_origin_untouched() {
    require_debian12();
    let home = Home::new();
    let id = big_workspace(&home);
    let child = spawn(&home, &["fork", &id, "--count", "2"]);
    wait_for("a fork's record", || {
        records(&home)
            .iter()
            .any(|r| r["state"] == "creating" && r["forked_from"]["workspace_id"] == id.as_str())
    });
    kill(child);
    let l: Value = serde_json::from_slice(&run(&home, &["list", "--json"]).stdout).unwrap();
    assert_eq!(l["count"], 1, "only the origin: {l}");
    assert_eq!(l["workspaces"][0]["workspace_id"], id.as_str());
    assert_eq!(l["workspaces"][0]["state"], "started");
    let o = run(&home, &["exec", &id, "--", "cat small.txt"]);
    assert_eq!(stdout(&o), "small\n", "{}", stderr(&o));
    assert_eq!(home.sandboxes_left().len(), 1, "the origin's sandbox only");
    assert!(run(&home, &["delete", &id]).status.success());
    home.assert_clean();
}

/// Rewrites fork `id`'s record as a fork still `creating` in group
/// `group`, made by a process that is gone (as a fork whose pyro was
/// killed while marking the group's forks started).
fn as_unfinished_fork(home: &Home, id: &str, group: &str) {
    let path = home
        .path()
        .join("workspaces")
        .join(id)
        .join("workspace.json");
    let mut rec: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    rec["state"] = "creating".into();
    rec["operation"] = serde_json::json!({
        "kind": "fork",
        "process": {"pid": pid, "start_ticks": 1},
        "group": group,
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&rec).unwrap()).unwrap();
}

#[test]
fn a_fork_group_is_kept_whole_once_committed_and_dropped_whole_before() {
    require_debian12();
    let home = Home::new();
    let o = run(&home, &["create", "debian:12", "--id-only"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let origin = stdout(&o).trim().to_owned();
    let o = run(&home, &["fork", &origin, "--count", "2", "--id-only"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let forks: Vec<String> = stdout(&o).lines().map(str::to_owned).collect();
    assert_eq!(forks.len(), 2);
    // The first fork was marked started, the second not yet, and the
    // group's commit is on disk: the second is finished, not removed.
    let commits = home.path().join("fork-commits");
    std::fs::create_dir_all(&commits).unwrap();
    let group = "0123456789abcdef";
    std::fs::write(commits.join(group), serde_json::to_vec(&forks).unwrap()).unwrap();
    as_unfinished_fork(&home, &forks[1], group);
    let l: Value = serde_json::from_slice(&run(&home, &["list", "--json"]).stdout).unwrap();
    assert_eq!(l["count"], 3, "{l}");
    let states: Vec<&str> = l["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["started"; 3], "{l}");
    let o = run(&home, &["exec", &forks[1], "--", "true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The commit is gone once none of its forks is unfinished.
    assert!(!commits.join(group).exists());
    // Without a commit, an unfinished fork of a dead process is removed.
    as_unfinished_fork(&home, &forks[1], "fedcba9876543210");
    let l: Value = serde_json::from_slice(&run(&home, &["list", "--json"]).stdout).unwrap();
    assert_eq!(l["count"], 2, "{l}");
    assert!(
        !l.to_string().contains(forks[1].as_str()),
        "the unfinished fork is gone: {l}"
    );
    for id in [&origin, &forks[0]] {
        assert!(run(&home, &["delete", id]).status.success());
    }
    home.assert_clean();
}

/// A network namespace left by a sandbox of this state directory that is
/// gone (a killed pyro), and one whose owning state directory is gone: the
/// next pyro removes both, and says so for its own.
#[test]
fn a_sweep_removes_networks_whose_sandbox_or_owner_is_gone() {
    let home = Home::new();
    let ours = format!("t{}", &pyro_vmm_free_id());
    let orphan = format!("t{}", &pyro_vmm_free_id());
    let owners = Path::new("/run/pyro-net");
    std::fs::create_dir_all(owners).unwrap();
    struct Gone(Vec<String>);
    impl Drop for Gone {
        fn drop(&mut self) {
            for id in &self.0 {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", &format!("pyro-{id}")])
                    .status();
                let _ = std::fs::remove_file(Path::new("/run/pyro-net").join(id));
            }
        }
    }
    let _gone = Gone(vec![ours.clone(), orphan.clone()]);
    for (id, owner) in [
        (&ours, std::fs::canonicalize(home.path()).unwrap()),
        (&orphan, "/nonexistent/pyro-state-gone".into()),
    ] {
        let st = std::process::Command::new("ip")
            .args(["netns", "add", &format!("pyro-{id}")])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add");
        std::fs::write(owners.join(id), owner.as_os_str().as_encoded_bytes()).unwrap();
    }
    // This state directory has had sandboxes (the sweep looks only then).
    std::fs::create_dir_all(home.path().join("vms")).unwrap();
    let o = home.cmd().args(["workspace", "list"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "Removed the network (namespace, links, rules) of sandbox {ours}, which no longer exists"
        )),
        "{}",
        stderr(&o)
    );
    // (Any pyro may remove the orphan first: only that it is gone counts.)
    for id in [&ours, &orphan] {
        assert!(
            !Path::new("/run/netns").join(format!("pyro-{id}")).exists(),
            "{id}"
        );
        assert!(!owners.join(id).exists(), "{id}");
    }
}

/// What a killed pyro leaves in the state directory: a workspace moved to
/// the trash but not deleted, a workspace directory whose create died
/// before its record, old loose temp files. The next pyro removes them and
/// keeps a recent temp file (another process may be writing it).
#[test]
fn a_sweep_removes_trash_recordless_workspaces_and_old_temp_files() {
    let home = Home::new();
    let ws = home.path().join("workspaces");
    let tmp = home.path().join("tmp");
    for d in [
        ws.join(".trash-0123456789abcdef-1/disk"),
        ws.join("fedcba9876543210"),
        tmp.clone(),
    ] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(tmp.join("old.part"), b"x").unwrap();
    std::fs::write(tmp.join("recent.part"), b"x").unwrap();
    let st = std::process::Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(tmp.join("old.part"))
        .status()
        .unwrap();
    assert!(st.success());
    let o = home
        .cmd()
        .args(["workspace", "list", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let mut left: Vec<String> = std::fs::read_dir(&ws)
        .unwrap()
        .chain(std::fs::read_dir(&tmp).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') || n.starts_with(".trash-"))
        .collect();
    left.sort();
    assert_eq!(left, ["recent.part"]);
}

/// Ten hex digits no other test uses.
fn pyro_vmm_free_id() -> String {
    let mut b = [0u8; 5];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    hex::encode(b)
}
