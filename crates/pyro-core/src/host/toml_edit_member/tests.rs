use super::*;

fn entries() -> Vec<(&'static str, toml_edit::Value)> {
    let args: toml_edit::Array = ["mcp", "serve"].into_iter().collect();
    vec![("command", "/p/pyro".into()), ("args", args.into())]
}

#[test]
fn upsert_then_remove_gives_the_bytes_back() {
    for text in [
        "",
        "model = \"o4\" # mine\n\n[profiles.x]\nmodel = \"y\"\n",
        "[mcp_servers.other]\ncommand = \"x\"\n",
    ] {
        let (once, created) = upsert(text, "mcp_servers", "pyro", &entries()).unwrap();
        assert!(
            once.contains(
                "[mcp_servers.pyro]\ncommand = \"/p/pyro\"\nargs = [\"mcp\", \"serve\"]\n"
            ),
            "{once}"
        );
        assert!(!once.contains("[mcp_servers]\n"), "{once}");
        let (twice, _) = upsert(&once, "mcp_servers", "pyro", &entries()).unwrap();
        assert_eq!(once, twice);
        let got = get(&once, "mcp_servers", "pyro").unwrap().unwrap();
        assert_eq!(got["command"].as_str(), Some("/p/pyro"));
        let back = remove(&once, "mcp_servers", "pyro", created)
            .unwrap()
            .unwrap();
        assert_eq!(back, text);
    }
    assert!(upsert("x = ", "a", "b", &[]).is_err());
    assert!(
        upsert("mcp_servers = 1\n", "mcp_servers", "b", &[])
            .unwrap_err()
            .contains("not a table")
    );
    assert_eq!(
        remove("a = 1\n", "mcp_servers", "pyro", true).unwrap(),
        None
    );
}

#[test]
fn inline_tables_and_crlf_keep_their_form() {
    let args: toml_edit::Array = ["mcp"].into_iter().collect();
    let e = vec![
        ("command", toml_edit::Value::from("/p")),
        ("args", args.into()),
    ];
    let text = "mcp_servers = { docs = { command = \"d\" } }\n";
    let (out, _) = upsert(text, "mcp_servers", "pyro", &e).unwrap();
    assert!(
        out.starts_with("mcp_servers = { docs = { command = \"d\" }")
            && out.contains("pyro = { command = \"/p\", args = [\"mcp\"] }"),
        "{out}"
    );
    let kept = "[mcp_servers]\npyro = { command = \"x\", env = { A = \"1\" } }\n";
    let (out, _) = upsert(kept, "mcp_servers", "pyro", &e).unwrap();
    assert!(
        out.contains("env = { A = \"1\" }") && out.contains("\"/p\""),
        "{out}"
    );
    let crlf = "model = \"o\"\r\n";
    let (out, created) = upsert(crlf, "mcp_servers", "pyro", &e).unwrap();
    assert!(!out.replace("\r\n", "").contains('\n'), "{out:?}");
    let back = remove(&out, "mcp_servers", "pyro", created)
        .unwrap()
        .unwrap();
    assert_eq!(back, crlf);
    let bom = "\u{feff}model = \"o\"\n";
    let (out, created) = upsert(bom, "mcp_servers", "pyro", &e).unwrap();
    assert!(out.starts_with('\u{feff}'));
    assert_eq!(
        remove(&out, "mcp_servers", "pyro", created)
            .unwrap()
            .unwrap(),
        bom
    );
}
