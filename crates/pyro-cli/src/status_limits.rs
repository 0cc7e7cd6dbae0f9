//! The limits lines of a workspace's status: what holds it in, its disk's
//! space, and the protections this host does not give it.

use crate::output::{self, YELLOW};

/// The limits lines of a workspace's status.
pub fn print(p: &pyro_core::protections::Protections) {
    if let Some(h) = &p.host {
        output::out(format!(
            "Host limits: {} MiB memory, {:.2} CPU, {} tasks (cgroups of its VM)",
            h.memory_bytes >> 20,
            h.cpu_millicores as f64 / 1000.0,
            h.pids
        ));
    }
    if let Some(g) = &p.guest {
        output::out(format!(
            "Guest limits: commands share {} MiB; {} tasks per command; {} CPU",
            g.memory_bytes >> 20,
            g.tasks_per_command,
            g.cpus
        ));
    }
    if let Some(d) = &p.disk {
        let full = if d.full {
            format!(" {YELLOW}(workspace disk full){YELLOW:#}")
        } else {
            String::new()
        };
        output::out(format!(
            "Disk: {} of {} MiB free{full}",
            d.free_mib, d.total_mib
        ));
    }
    for m in &p.missing {
        output::out(format!("{YELLOW}Missing protection:{YELLOW:#} {m}"));
    }
}
