use super::overlay::tests::MemLayer;
use super::*;

fn merged_walk(
    upper: &MemLayer,
    lower: &MemLayer,
    deadline: std::time::Instant,
) -> Result<Vec<String>, CoreError> {
    let m = Merged { upper, lower };
    let root = m.lookup(&[]).unwrap().unwrap();
    let mut seen = Vec::new();
    walk_until(&m, &[], &root, true, deadline, &mut |p, _| {
        seen.push(overlay::display(p));
        Ok(())
    })?;
    Ok(seen)
}

#[test]
fn a_walk_goes_in_tree_order_and_stops_at_its_deadline() {
    let mut lower = MemLayer::default();
    lower.add("", NodeKind::Dir).add("a", NodeKind::Dir);
    lower
        .file("a/x", "1")
        .add("a/y", NodeKind::Dir)
        .file("a/y/z", "2");
    lower.file("b", "3");
    let upper = MemLayer::default();
    let later = std::time::Instant::now() + std::time::Duration::from_secs(60);
    assert_eq!(
        merged_walk(&upper, &lower, later).unwrap(),
        ["/a", "/a/x", "/a/y", "/a/y/z", "/b"]
    );
    for i in 0..3000 {
        lower.file(&format!("many/f{i}"), "");
    }
    lower.add("many", NodeKind::Dir);
    assert_eq!(merged_walk(&upper, &lower, later).unwrap().len(), 3006);
    let past = std::time::Instant::now();
    let err = merged_walk(&upper, &lower, past).unwrap_err();
    assert_eq!(err.kind(), "timeout", "{err}");
    assert!(err.to_string().contains("give a subdirectory"), "{err}");
}

/// A workspace that never wrote anything has an empty upper layer: the
/// merged view is the environment's tree, and reads come from below.
#[test]
fn an_empty_upper_layer_shows_the_lower_one() {
    let mut lower = MemLayer::default();
    lower.add("", NodeKind::Dir).file("etc", "base");
    let m = Merged {
        upper: &Empty,
        lower: &lower,
    };
    let root = m.lookup(&[]).unwrap().unwrap();
    let names: Vec<_> = m.list(&[], &root).unwrap().into_keys().collect();
    assert_eq!(names, [b"etc".to_vec()]);
    let path = [b"etc".to_vec()];
    let found = m.lookup(&path).unwrap().unwrap();
    let mut text = String::new();
    m.open(&path, &found)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "base");
    // The empty layer itself: a root directory and nothing in it.
    assert_eq!(Empty.stat(&[]).unwrap().unwrap().kind, NodeKind::Dir);
    assert!(Empty.stat(&path).unwrap().is_none());
    assert!(Empty.list(&[]).unwrap().is_empty());
    let e = Empty.open(&path).err().unwrap();
    assert!(e.to_string().contains("/etc does not exist"), "{e}");
}
