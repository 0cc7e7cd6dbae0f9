use super::*;
use serde_json::json;

const USER: &str = "{\n    \"theme\": \"dark\", // mine\n    \"mcpServers\": {\n        \"other\": {\"command\": \"x\"}\n    },\n    \"n\": [1, 2, {\"a\": null}]\n}\n";

#[test]
fn upsert_then_remove_gives_the_bytes_back() {
    for text in [
        USER,
        "{}",
        "{ \"a\": 1 }",
        "{\n  \"mcpServers\": {}\n}\n",
        "",
        "{\"mcpServers\":{\"pyro\":{\"old\":true},\"z\":1}}",
    ] {
        let v = json!({"command": "/p/pyro", "args": ["mcp", "serve"]});
        let (once, created) = upsert(text, "mcpServers", "pyro", &v).unwrap();
        check(&once).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(
            &once
                .lines()
                .map(|l| l.split(" //").next().unwrap())
                .collect::<String>(),
        )
        .unwrap();
        assert_eq!(parsed["mcpServers"]["pyro"], v, "{once}");
        assert_eq!(get(&once, "mcpServers", "pyro").unwrap(), Some(v.clone()));
        let (twice, _) = upsert(&once, "mcpServers", "pyro", &v).unwrap();
        assert_eq!(once, twice);
        if text.contains("\"pyro\"") || text.is_empty() {
            continue;
        }
        let back = remove(&once, "mcpServers", "pyro", created)
            .unwrap()
            .unwrap();
        if text == "{\n  \"mcpServers\": {}\n}\n" {
            assert_eq!(back, "{\n  \"mcpServers\": {}\n}\n");
        } else {
            assert_eq!(back, text, "from {once}");
        }
    }
}

#[test]
fn the_rest_of_the_file_keeps_its_bytes() {
    let v = json!({"command": "/p/pyro"});
    let (out, created) = upsert(USER, "mcpServers", "pyro", &v).unwrap();
    assert!(!created);
    assert!(out.starts_with("{\n    \"theme\": \"dark\", // mine\n    \"mcpServers\": {\n        \"other\": {\"command\": \"x\"},\n        \"pyro\": {\n            \"command\": \"/p/pyro\"\n        }\n    },"), "{out}");
    assert!(out.ends_with("\"n\": [1, 2, {\"a\": null}]\n}\n"));
}

#[test]
fn crlf_files_stay_crlf_and_a_bom_stays() {
    let text = "\u{feff}{\r\n  \"a\": 1\r\n}\r\n";
    let (out, created) = upsert(text, "mcp", "pyro", &json!({"x": [1]})).unwrap();
    assert!(out.starts_with('\u{feff}'));
    assert!(!out.replace("\r\n", "").contains('\n'), "{out:?}");
    assert_eq!(remove(&out, "mcp", "pyro", created).unwrap().unwrap(), text);
    // JSONC: trailing commas are fine.
    check("{\"a\": [1, 2,], \"b\": {\"c\": null,},}").unwrap();
}

#[test]
fn a_first_member_is_cut_with_its_comma() {
    let text = "{\"mcpServers\": {\"pyro\": {}, \"b\": 2}}";
    assert_eq!(
        remove(text, "mcpServers", "pyro", true).unwrap().unwrap(),
        "{\"mcpServers\": {\"b\": 2}}"
    );
    assert_eq!(remove(text, "mcpServers", "nope", true).unwrap(), None);
}

#[test]
fn broken_files_are_refused_with_a_line() {
    for bad in [
        "[1]",
        "{\"a\": }",
        "{\"a\": 1",
        "{\"a\" 1}",
        "{} x",
        "{\"a\": \"x\n\"}",
        "{/* x",
        "{\"a\": 1 \"b\": 2}",
        "{\"a\": 1,, \"b\": 2}",
        "{\"a\": [1 2]}",
        "{\"a\": hello}",
        "{, \"a\": 1}",
    ] {
        let e = upsert(bad, "mcpServers", "pyro", &json!({})).unwrap_err();
        assert!(e.contains("line"), "{bad}: {e}");
    }
    let deep = format!("{{\"a\": {}{}}}", "[".repeat(300), "]".repeat(300));
    assert!(check(&deep).unwrap_err().contains("256"));
    assert!(
        upsert("{\"mcpServers\": 3}", "mcpServers", "p", &json!({}))
            .unwrap_err()
            .contains("not an object")
    );
}
