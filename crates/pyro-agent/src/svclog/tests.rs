use super::*;

#[test]
fn tails_count_lines_from_the_end() {
    assert_eq!(tail_start(b"a\nb\nc\n", 2), 2);
    assert_eq!(tail_start(b"a\nb\nc", 2), 2);
    assert_eq!(tail_start(b"a\nb\nc\n", 9), 0);
    assert_eq!(tail_start(b"a\n", 0), 2);
}

#[test]
fn rotation_keeps_two_files_and_offsets_say_what_went() {
    test_dir();
    let [out, _] = Writer::create_pair("t-rotate", false).unwrap();
    let line = vec![b'x'; 1023];
    let mut all = Vec::new();
    for i in 0..5000u32 {
        let mut l = line.clone();
        l.extend_from_slice(format!("{i:05}\n").as_bytes());
        out.append(&l);
        all.extend_from_slice(&l);
    }
    let total = all.len() as u64;
    let (data, span) = read("t-rotate", Stream::Stdout, Some(&out), Some(0), 0, 4096).unwrap();
    assert_eq!(span.end, total);
    assert!(span.start > 0 && total - span.start <= 2 * FILE_MAX);
    assert_eq!(span.dropped, span.start);
    assert_eq!(data, &all[span.start as usize..span.start as usize + 4096]);
    // A read across the two files.
    let base = out.lock().base;
    let (data, span) = read(
        "t-rotate",
        Stream::Stdout,
        Some(&out),
        Some(base - 10),
        0,
        20,
    )
    .unwrap();
    assert_eq!(span.dropped, 0);
    assert_eq!(data, &all[base as usize - 10..base as usize + 10]);
    // The tail, and the same read with no writer (an earlier boot).
    let (tail, _) = read("t-rotate", Stream::Stdout, None, None, 2, READ_MAX).unwrap();
    assert_eq!(tail, &all[all.len() - 2058..]);
    assert!(tail.starts_with(&line) && tail.ends_with(b"04999\n"));
    let (past, span) = read("t-rotate", Stream::Stdout, None, Some(total + 5), 0, 10).unwrap();
    assert!(past.is_empty());
    assert_eq!(span.next, total);
}

#[test]
fn memory_logs_stay_off_the_disk_and_a_disk_start_replaces_them() {
    test_dir();
    let [out, _] = Writer::create_pair("t-memory", true).unwrap();
    out.append(b"secret-ish\n");
    assert!(memory_root().join("t-memory").join("stdout").is_file());
    assert!(!root().join("t-memory").exists());
    let (data, _) = read("t-memory", Stream::Stdout, Some(&out), Some(0), 0, 1024).unwrap();
    assert_eq!(data, b"secret-ish\n");
    let [out, _] = Writer::create_pair("t-memory", false).unwrap();
    out.append(b"plain\n");
    assert!(!memory_root().join("t-memory").exists());
    let (data, _) = read("t-memory", Stream::Stdout, None, Some(0), 0, 1024).unwrap();
    assert_eq!(data, b"plain\n");
}

/// Points the logs at a private directory (unit tests run on the host),
/// after deleting those of test processes that are gone (each test runs
/// in a process of its own, which cannot clean up after itself).
pub fn test_dir() {
    let tmp = std::env::temp_dir();
    if let Ok(rd) = std::fs::read_dir(&tmp) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("pyro-svclog-")
                && pid.parse::<u32>().is_ok()
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = tmp.join(format!("pyro-svclog-{}", std::process::id()));
    let _ = MEMORY_ROOT.set(dir.join("memory"));
    let _ = ROOT.set(dir);
}
