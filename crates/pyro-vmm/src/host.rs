//! Host facts that change how a guest boots.

use std::path::Path;

/// Kernel arguments every pyro guest boots with.
pub const BASE_BOOT_ARGS: &str =
    "console=ttyS0 quiet reboot=k panic=1 tsc=reliable init=/usr/sbin/pyro-agent";

/// Workarounds for PVM (software-assisted virtualization) hosts, where guest
/// kernel code runs in KVM's instruction emulator: the emulator cannot
/// execute `xrstor`, `int3` (the self-test), `popcnt`/`clac` as patched in by
/// alternatives, and does not switch to CPL0 on a user `syscall`. The
/// `noint3selftest` and `pvmsyscallfixup` flags are pyro's kernel patches.
/// `lapic=notscdeadline` is for snapshot restores: the APIC timer runs in
/// one-shot mode, whose count the APIC state carries, so a restore cannot
/// lose it (see "Boot path" in docs/architecture.md).
pub const PVM_BOOT_ARGS: &str = "lapic=notscdeadline noxsave noint3selftest nofsgsbase nopcid \
     clearcpuid=popcnt,smap,invpcid,rdrand,rdseed,rdpid pvmsyscallfixup";

/// Whether `/dev/kvm` is PVM (`kvm_pvm` loaded).
pub fn is_pvm() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
}

/// The kernel command line for a guest on this host.
pub fn boot_args(pvm: bool, extra: &[String]) -> String {
    let mut args = BASE_BOOT_ARGS.to_owned();
    if pvm {
        args.push(' ');
        args.push_str(PVM_BOOT_ARGS);
    }
    for e in extra {
        args.push(' ');
        args.push_str(e);
    }
    args
}

/// State of `/dev/kvm` for this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct KvmAccess {
    /// The device node exists.
    pub exists: bool,
    /// This process may read and write it.
    pub read_write: bool,
}

/// Checks `/dev/kvm`.
pub fn kvm_access() -> KvmAccess {
    let exists = Path::new("/dev/kvm").exists();
    let read_write = exists
        && nix::unistd::access(
            "/dev/kvm",
            nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK,
        )
        .is_ok();
    KvmAccess { exists, read_write }
}

#[cfg(test)]
mod tests;
