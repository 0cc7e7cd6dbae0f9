//! Next steps in messages, written once and worded by each front end.
//!
//! Core's messages name arguments and operations in a neutral markup:
//! `⟨arg:max_bytes⟩` (optionally `⟨arg:seed_mode=all⟩`),
//! `⟨op:workspace start ID⟩` (the operation) and `⟨do:workspace start ID⟩`
//! (an instruction: "run `pyro workspace start ID`", "call
//! workspace_start"). [`render`] turns them into the CLI's words
//! (`--max-bytes`, `` `pyro workspace start ID` ``) or the MCP server's
//! (`max_bytes`, `workspace_start`), so a model is never told to pass a
//! flag it cannot pass, and a person never a tool argument.

/// Who reads the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontEnd {
    /// A person at the `pyro` CLI.
    Cli,
    /// A model calling MCP tools.
    Mcp,
    /// Text kept in a record that both read (a fallback reason, a last
    /// error): arguments by their plain names.
    Neutral,
}

const OPEN: char = '⟨';
const CLOSE: char = '⟩';

/// Words `text`'s markup for `front`; text without markup is unchanged.
pub fn render(text: &str, front: FrontEnd) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len_utf8()..];
        let Some(end) = after.find(CLOSE) else {
            out.push_str(&rest[start..]);
            return out;
        };
        let token = &after[..end];
        match token.split_once(':') {
            Some(("arg", a)) => out.push_str(&arg(a, front)),
            Some(("op", o)) => out.push_str(&op(o, front)),
            Some(("do", o)) => {
                let verb = match (front, tool(&o.split_whitespace().collect::<Vec<_>>())) {
                    (FrontEnd::Mcp, Some(_)) => "call",
                    _ => "run",
                };
                out.push_str(&format!("{verb} {}", op(o, front)));
            }
            _ => out.push_str(&rest[start..start + OPEN.len_utf8() + end + CLOSE.len_utf8()]),
        }
        rest = &after[end + CLOSE.len_utf8()..];
    }
    out.push_str(rest);
    out
}

fn arg(spec: &str, front: FrontEnd) -> String {
    let (name, value) = match spec.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (spec, None),
    };
    match front {
        FrontEnd::Cli if name == "command" => {
            "the command after `--` (e.g. `pyro run debian:12 -- git --version`)".into()
        }
        FrontEnd::Cli => {
            let flag = format!("--{}", name.replace('_', "-"));
            match value {
                Some(v) => format!("{flag} {v}"),
                None => flag,
            }
        }
        FrontEnd::Neutral => match value {
            Some(v) => format!("`{name}` {v}"),
            None => format!("`{name}`"),
        },
        FrontEnd::Mcp => match value {
            Some(v) if v.parse::<f64>().is_ok() || v == "true" || v == "false" => {
                format!("{name}: {v}")
            }
            Some(v) => format!("{name}: \"{v}\""),
            None => format!("the {name} argument"),
        },
    }
}

/// The MCP tool for an operation, if there is one.
fn tool(words: &[&str]) -> Option<String> {
    match words {
        ["workspace", "sync", "push", ..] => Some("workspace_sync_push".into()),
        ["workspace", "file", verb, ..] => Some(format!("workspace_file_{verb}")),
        ["workspace", "patch", "apply", ..] => Some("workspace_patch_apply".into()),
        ["workspace", verb, ..] => Some(format!("workspace_{verb}")),
        ["env", "list", ..] => Some("environment_list".into()),
        ["run", ..] => Some("vm_run".into()),
        _ => None,
    }
}

fn op(spec: &str, front: FrontEnd) -> String {
    let words: Vec<&str> = spec.split_whitespace().collect();
    match (front, tool(&words)) {
        (FrontEnd::Mcp, Some(t)) => t,
        // No tool for it: a person runs it on the host.
        (FrontEnd::Mcp, None) => format!("`pyro {spec}` (in a terminal on this host)"),
        (FrontEnd::Cli | FrontEnd::Neutral, _) => format!("`pyro {spec}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_front_end_gets_its_own_words() {
        let m = "above the limit; raise it with ⟨arg:max_bytes⟩ or use ⟨op:workspace export⟩";
        assert_eq!(
            render(m, FrontEnd::Cli),
            "above the limit; raise it with --max-bytes or use `pyro workspace export`"
        );
        assert_eq!(
            render(m, FrontEnd::Mcp),
            "above the limit; raise it with the max_bytes argument or use workspace_export"
        );
        let m = "⟨arg:seed_mode=all⟩, ⟨arg:vcpu_count=1⟩, ⟨op:env pull debian:12⟩, ⟨op:workspace sync push⟩";
        assert_eq!(
            render(m, FrontEnd::Cli),
            "--seed-mode all, --vcpu-count 1, `pyro env pull debian:12`, `pyro workspace sync push`"
        );
        assert_eq!(
            render(m, FrontEnd::Mcp),
            "seed_mode: \"all\", vcpu_count: 1, `pyro env pull debian:12` (in a terminal on this \
             host), workspace_sync_push"
        );
    }

    #[test]
    fn instructions_get_their_verb() {
        let m = "stopped; ⟨do:workspace start ab12⟩ first, or ⟨do:env pull debian:12⟩";
        assert_eq!(
            render(m, FrontEnd::Cli),
            "stopped; run `pyro workspace start ab12` first, or run `pyro env pull debian:12`"
        );
        assert_eq!(
            render(m, FrontEnd::Mcp),
            "stopped; call workspace_start first, or run `pyro env pull debian:12` (in a terminal \
             on this host)"
        );
    }

    #[test]
    fn text_without_markup_or_with_broken_markup_is_kept() {
        for t in ["plain text", "a ⟨ lone bracket", "⟨unknown:x⟩ stays", ""] {
            assert_eq!(render(t, FrontEnd::Mcp), t);
        }
    }
}
