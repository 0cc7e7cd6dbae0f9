//! The limits lines of a workspace's status: what holds it in, its disk's
//! space, and the protections this host does not give it.

use crate::output::{self, YELLOW};

/// The limits lines of a workspace's status.
pub fn print(p: &pyro_core::protections::Protections) {
    if let Some(h) = &p.host {
        let mut caps = Vec::new();
        if let Some(m) = h.memory_bytes {
            caps.push(format!("{} MiB memory", m >> 20));
        }
        if let Some(c) = h.cpu_millicores {
            caps.push(format!("{:.2} CPU", c as f64 / 1000.0));
        }
        if let Some(t) = h.pids {
            caps.push(format!("{t} tasks"));
        }
        if !caps.is_empty() {
            output::out(format!(
                "Host limits: {} (cgroups of its VM)",
                caps.join(", ")
            ));
        }
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
