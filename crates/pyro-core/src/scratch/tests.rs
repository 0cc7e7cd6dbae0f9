use super::*;

fn paths() -> (tempfile::TempDir, Paths) {
    let t = tempfile::tempdir().unwrap();
    let p = Paths::new(
        t.path().join("state"),
        pyro_env::Cache::new(t.path().join("c")),
    );
    (t, p)
}

/// A process that has exited (its identity can never match again).
fn dead_process() -> ProcessId {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let p = ProcessId::of(child.id()).unwrap();
    child.wait().unwrap();
    p
}

/// Moves this process's notes into the temp dir of a dead process, as if
/// the process that wrote them had been killed.
fn orphan(paths: &Paths, notes: Vec<Note>) -> PathBuf {
    let dead = root(paths).join(dir_name(dead_process()));
    std::fs::create_dir_all(dead.join("notes")).unwrap();
    for n in notes {
        std::fs::rename(
            &n.marker,
            dead.join("notes").join(n.marker.file_name().unwrap()),
        )
        .unwrap();
    }
    dead
}

#[test]
fn a_dead_process_leaves_nothing_after_a_sweep() {
    let (t, paths) = paths();
    let out = t.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // As an export killed midway leaves it: a made directory, the
    // archive and the staging directory in it.
    let made = note(&paths, NoteKind::MadeDir, &out, Some("made"), "").unwrap();
    std::fs::create_dir(out.join("made")).unwrap();
    let tar = note(&paths, NoteKind::Temp, &out.join("made"), None, ".tar").unwrap();
    std::fs::write(out.join("made").join(&tar.name), "tar").unwrap();
    let staging = note(&paths, NoteKind::Temp, &out.join("made"), None, "").unwrap();
    std::fs::create_dir_all(out.join("made").join(&staging.name).join("sub")).unwrap();
    let dead = orphan(&paths, vec![made, tar, staging]);
    std::fs::write(dead.join("spool.jsonl"), "x").unwrap();
    // This process's own directory stays.
    let mine = temp_dir(&paths).unwrap();
    std::fs::write(mine.join("in-use"), "x").unwrap();

    let (removed, problems) = sweep(&paths);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(removed.len(), 3, "{removed:?}");
    assert!(!dead.exists());
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    assert!(mine.join("in-use").exists());
}

#[test]
fn notes_never_reach_past_what_they_name() {
    let (t, paths) = paths();
    let out = t.path().join("out");
    std::fs::create_dir_all(out.join("made")).unwrap();
    // A made directory that is no longer empty is the user's now.
    let made = note(&paths, NoteKind::MadeDir, &out, Some("made"), "").unwrap();
    std::fs::write(out.join("made/precious"), "keep").unwrap();
    // A temp whose directory was swapped for a link to another one
    // holding the same name.
    let moved = t.path().join("moved");
    std::fs::create_dir_all(&moved).unwrap();
    let tar = note(&paths, NoteKind::Temp, &moved, None, ".tar").unwrap();
    let other = t.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join(&tar.name), "not ours").unwrap();
    std::fs::remove_dir(&moved).unwrap();
    std::os::unix::fs::symlink(&other, &moved).unwrap();
    // A note naming something that is not an export temp.
    std::fs::write(out.join("data"), "keep").unwrap();
    let mut plain = note(&paths, NoteKind::Temp, &out, None, "").unwrap();
    let body = NoteBody {
        kind: NoteKind::Temp,
        parent: out.canonicalize().unwrap(),
        dev: 0,
        ino: 0,
        name: "data".into(),
    };
    std::fs::write(&plain.marker, serde_json::to_vec(&body).unwrap()).unwrap();
    plain.name = "data".into();
    orphan(&paths, vec![made, tar, plain]);

    let (removed, problems) = sweep(&paths);
    assert!(removed.is_empty(), "{removed:?}");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("moved"), "{problems:?}");
    assert_eq!(
        std::fs::read_to_string(out.join("made/precious")).unwrap(),
        "keep"
    );
    assert_eq!(std::fs::read_to_string(out.join("data")).unwrap(), "keep");
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 1);
}

#[test]
fn a_note_lives_until_dropped() {
    let (t, paths) = paths();
    let note = note(&paths, NoteKind::Temp, t.path(), None, ".tar").unwrap();
    assert!(note.name.starts_with(EXPORT_PREFIX) && note.name.ends_with(".tar"));
    assert!(!t.path().join(&note.name).exists());
    let marker = note.marker.clone();
    let body: NoteBody = serde_json::from_slice(&std::fs::read(&marker).unwrap()).unwrap();
    assert_eq!(body.parent, t.path().canonicalize().unwrap());
    drop(note);
    assert!(!marker.exists());
}
