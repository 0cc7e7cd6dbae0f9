use super::*;

/// A layer held in memory: path -> node, and file contents.
#[derive(Default)]
pub(crate) struct MemLayer {
    pub nodes: BTreeMap<Vec<Vec<u8>>, Node>,
    pub data: BTreeMap<Vec<Vec<u8>>, Vec<u8>>,
}

/// A guest path as the names from `/` (shared by the disk modules' tests).
pub(crate) fn p(s: &str) -> Vec<Vec<u8>> {
    s.split('/')
        .filter(|c| !c.is_empty())
        .map(|c| c.as_bytes().to_vec())
        .collect()
}

fn node(kind: NodeKind) -> Node {
    Node {
        kind,
        mode: 0o644,
        size: 0,
        link: None,
        opaque: false,
    }
}

impl MemLayer {
    pub fn add(&mut self, path: &str, kind: NodeKind) -> &mut Self {
        self.nodes.insert(p(path), node(kind));
        self
    }
    pub fn file(&mut self, path: &str, content: &str) -> &mut Self {
        let mut n = node(NodeKind::File);
        n.size = content.len() as u64;
        self.nodes.insert(p(path), n);
        self.data.insert(p(path), content.as_bytes().to_vec());
        self
    }
    pub fn opaque(&mut self, path: &str) -> &mut Self {
        let mut n = node(NodeKind::Dir);
        n.opaque = true;
        self.nodes.insert(p(path), n);
        self
    }
}

impl Layer for MemLayer {
    fn stat(&self, path: &[Vec<u8>]) -> Result<Option<Node>, CoreError> {
        Ok(self.nodes.get(path).cloned())
    }
    fn list(&self, path: &[Vec<u8>]) -> Result<Vec<(Vec<u8>, Node)>, CoreError> {
        Ok(self
            .nodes
            .iter()
            .filter(|(k, _)| k.len() == path.len() + 1 && k.starts_with(path))
            .map(|(k, n)| (k.last().unwrap().clone(), n.clone()))
            .collect())
    }
    fn open(&self, path: &[Vec<u8>]) -> Result<Box<dyn Read + '_>, CoreError> {
        Ok(Box::new(self.data[path].as_slice()))
    }
}

fn names(m: &Merged<'_>, path: &str) -> Vec<String> {
    let f = m.lookup(&p(path)).unwrap().unwrap();
    m.list(&p(path), &f)
        .unwrap()
        .keys()
        .map(|k| String::from_utf8(k.clone()).unwrap())
        .collect()
}

fn read(m: &Merged<'_>, path: &str) -> Option<String> {
    let f = m.lookup(&p(path)).unwrap().ok()?;
    let mut out = Vec::new();
    m.copy(&p(path), &f, &mut out, 1 << 20).unwrap();
    Some(String::from_utf8(out).unwrap())
}

#[test]
fn upper_wins_whiteouts_hide_and_opaque_directories_cut_off_the_lower() {
    let mut lower = MemLayer::default();
    lower
        .add("etc", NodeKind::Dir)
        .file("etc/a", "lower a")
        .file("etc/gone", "lower gone")
        .add("opt", NodeKind::Dir)
        .file("opt/old", "old")
        .add("usr", NodeKind::Dir)
        .file("usr/x", "x");
    let mut upper = MemLayer::default();
    upper
        .add("etc", NodeKind::Dir)
        .file("etc/a", "upper a")
        .add("etc/gone", NodeKind::Whiteout)
        .file("etc/new", "new")
        .opaque("opt")
        .file("opt/fresh", "fresh");
    let m = Merged {
        upper: &upper,
        lower: &lower,
    };
    assert_eq!(names(&m, "/"), ["etc", "opt", "usr"]);
    assert_eq!(names(&m, "etc"), ["a", "new"]);
    assert_eq!(names(&m, "opt"), ["fresh"]);
    assert_eq!(names(&m, "usr"), ["x"]);
    assert_eq!(read(&m, "etc/a").as_deref(), Some("upper a"));
    assert_eq!(read(&m, "usr/x").as_deref(), Some("x"));
    assert_eq!(read(&m, "etc/gone"), None);
    assert_eq!(read(&m, "opt/old"), None);
}

#[test]
fn an_upper_file_over_a_lower_directory_hides_it_and_links_are_not_followed() {
    let mut lower = MemLayer::default();
    lower
        .add("d", NodeKind::Dir)
        .file("d/inner", "i")
        .add("l", NodeKind::Dir)
        .file("l/f", "f");
    let mut upper = MemLayer::default();
    upper.file("d", "now a file").add("l", NodeKind::Symlink);
    let m = Merged {
        upper: &upper,
        lower: &lower,
    };
    assert!(matches!(
        m.lookup(&p("d/inner")).unwrap(),
        Err(Miss::Through(_, NodeKind::File, _))
    ));
    assert!(matches!(
        m.lookup(&p("l/f")).unwrap(),
        Err(Miss::Through(at, NodeKind::Symlink, _)) if at == "/l"
    ));
    assert_eq!(read(&m, "d").as_deref(), Some("now a file"));
}
