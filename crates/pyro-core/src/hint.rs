//! Next steps in messages, written once and worded by each front end.
//!
//! Core's messages name arguments and operations in a neutral markup:
//! `⟨arg:max_bytes⟩` (optionally `⟨arg:seed_mode=all⟩`),
//! `⟨op:workspace start ID⟩` (the operation), `⟨do:workspace start ID⟩`
//! (an instruction: "run `pyro workspace start ID`", "call
//! workspace_start") and `⟨say:key⟩` (a whole phrase worded per front end). [`render`] turns them into the CLI's words
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
    render_for(text, front, &|_| true)
}

/// [`render`] for an MCP server that has only the tools `has_tool` says:
/// an operation whose tool it lacks is named as a command for the user.
pub fn render_for(text: &str, front: FrontEnd, has_tool: &dyn Fn(&str) -> bool) -> String {
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
            Some(("op", o)) => out.push_str(&op(o, front, has_tool)),
            Some(("do", o)) => {
                let t = tool(&o.split_whitespace().collect::<Vec<_>>());
                match (front, t) {
                    (FrontEnd::Mcp, Some(t)) if has_tool(&t) => out.push_str(&format!("call {t}")),
                    (FrontEnd::Mcp, _) => out.push_str(&format!(
                        "ask the user to run `pyro {o}` on this host (this server has no tool \
                         for it)"
                    )),
                    _ => out.push_str(&format!("run {}", op(o, front, has_tool))),
                }
            }
            Some(("say", k)) => match phrase(k, front) {
                Some(p) => out.push_str(p),
                None => {
                    out.push_str(&rest[start..start + OPEN.len_utf8() + end + CLOSE.len_utf8()])
                }
            },
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
        FrontEnd::Cli if name == "command" => "the command after `--`".into(),
        FrontEnd::Cli if name == "service_name" => "the SERVICE_NAME argument".into(),
        FrontEnd::Cli if name == "published_ports" => "--publish".into(),
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
        FrontEnd::Mcp if mcp_name(name).is_none() => {
            format!("`{name}` (not a tool argument: the user sets it outside the tools)")
        }
        FrontEnd::Mcp => {
            let name = mcp_name(name).unwrap_or(name);
            match value {
                Some(v) if v.parse::<f64>().is_ok() || v == "true" || v == "false" => {
                    format!("{name}: {v}")
                }
                Some(v) => format!("{name}: \"{v}\""),
                None => format!("the {name} argument"),
            }
        }
    }
}

/// An argument's name in the MCP tools, when the tools have it.
fn mcp_name(name: &str) -> Option<&str> {
    match name {
        "label" => Some("labels"),
        "clear_label" => Some("clear_labels"),
        "allow_host" => Some("allow_hosts"),
        "allow_cidr" => Some("allow_cidrs"),
        // The CLI's own options: the tools have no such argument.
        "allow_host_compat" | "boot_timeout_seconds" | "backend" => None,
        other => Some(other),
    }
}

/// Whole phrases whose words differ by front end (`⟨say:key⟩`).
fn phrase(key: &str, front: FrontEnd) -> Option<&'static str> {
    Some(match (key, front) {
        ("host_compat_fallback", FrontEnd::Cli) => {
            "pass --allow-host-compat to run on the host-compat backend instead"
        }
        ("host_compat_fallback", FrontEnd::Mcp) => {
            "ask the user to start this server with the host-compat backend \
             (PYRO_BACKEND=host-compat) to run there instead"
        }
        ("host_compat_fallback", FrontEnd::Neutral) => "the host-compat backend can run it instead",
        ("slow_boot", FrontEnd::Cli) => "raise --boot-timeout-seconds if the host is slow",
        ("slow_boot", FrontEnd::Mcp | FrontEnd::Neutral) => {
            "the host may be slow: tell the user, who can allow a longer boot"
        }
        _ => return None,
    })
}

/// The MCP tool for an operation, if there is one.
fn tool(words: &[&str]) -> Option<String> {
    match words {
        ["workspace", "sync", "push", ..] => Some("workspace_sync_push".into()),
        ["workspace", "file", verb, ..] => Some(format!("workspace_file_{verb}")),
        ["workspace", "patch", "apply", ..] => Some("workspace_patch_apply".into()),
        ["workspace", "snapshot", verb, ..] => Some(format!("snapshot_{verb}")),
        ["workspace", "shell", verb, ..] => Some(format!("shell_{verb}")),
        ["workspace", "service", verb, ..] => Some(format!("service_{verb}")),
        ["workspace", "disk", verb, ..] => Some(format!("workspace_disk_{verb}")),
        ["workspace", verb, ..] => Some(format!("workspace_{}", verb.replace('-', "_"))),
        ["env", "list", ..] => Some("environment_list".into()),
        ["run", ..] => Some("vm_run".into()),
        _ => None,
    }
}

fn op(spec: &str, front: FrontEnd, has_tool: &dyn Fn(&str) -> bool) -> String {
    let words: Vec<&str> = spec.split_whitespace().collect();
    match (front, tool(&words)) {
        (FrontEnd::Mcp, Some(t)) if has_tool(&t) => t,
        // No tool for it here: a person runs it on the host.
        (FrontEnd::Mcp, _) => format!("`pyro {spec}` (in a terminal on this host)"),
        (FrontEnd::Cli | FrontEnd::Neutral, _) => format!("`pyro {spec}`"),
    }
}

#[cfg(test)]
mod tests;
