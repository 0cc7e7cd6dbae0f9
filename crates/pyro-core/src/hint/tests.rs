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
        "stopped; call workspace_start first, or ask the user to run `pyro env pull \
             debian:12` on this host (this server has no tool for it)"
    );
}

#[test]
fn a_tool_the_server_lacks_is_a_command_for_the_user() {
    let m = "stopped; ⟨do:workspace start ab12⟩ first";
    let core_profile = |t: &str| t != "workspace_start";
    assert_eq!(
        render_for(m, FrontEnd::Mcp, &core_profile),
        "stopped; ask the user to run `pyro workspace start ab12` on this host (this server \
             has no tool for it) first"
    );
}

#[test]
fn arguments_the_tools_name_otherwise_or_lack() {
    let m = "pass ⟨arg:label⟩ or ⟨arg:clear_label⟩; ⟨say:host_compat_fallback⟩";
    assert_eq!(
        render(m, FrontEnd::Mcp),
        "pass the labels argument or the clear_labels argument; ask the user to start this \
             server with the host-compat backend (PYRO_BACKEND=host-compat) to run there instead"
    );
    assert_eq!(
        render(m, FrontEnd::Cli),
        "pass --label or --clear-label; pass --allow-host-compat to run on the host-compat \
             backend instead"
    );
    assert!(render("⟨arg:boot_timeout_seconds⟩", FrontEnd::Mcp).contains("not a tool argument"));
}

#[test]
fn text_without_markup_or_with_broken_markup_is_kept() {
    for t in ["plain text", "a ⟨ lone bracket", "⟨unknown:x⟩ stays", ""] {
        assert_eq!(render(t, FrontEnd::Mcp), t);
    }
}

/// Each front end's words for the shared phrases; an unknown key has none.
#[test]
fn phrases_are_worded_per_front_end() {
    assert_eq!(
        phrase("host_compat_fallback", FrontEnd::Neutral),
        Some("the host-compat backend can run it instead")
    );
    assert!(
        phrase("slow_boot", FrontEnd::Cli).is_some_and(|p| p.contains("--boot-timeout-seconds"))
    );
    for front in [FrontEnd::Mcp, FrontEnd::Neutral] {
        let p = phrase("slow_boot", front).unwrap();
        assert!(p.contains("tell the user") && !p.contains("--"), "{p}");
    }
    assert_eq!(phrase("no_such_phrase", FrontEnd::Cli), None);
}
