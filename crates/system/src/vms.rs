//! Running VMs: processes holding a KVM VM file descriptor (`anon_inode:kvm-vm`), with the
//! QEMU `-name` and the vCPU threads when there are any.

use serde::{Deserialize, Serialize};

/// A process that owns a KVM VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningVm {
    /// Process id.
    pub pid: u32,
    /// `/proc/<pid>/comm`.
    pub comm: String,
    /// The guest name from QEMU's `-name` (`guest=NAME,...` or `NAME,...`).
    pub name: Option<String>,
    /// Number of KVM VM descriptors the process holds.
    pub vm_fds: u32,
    /// Threads named like vCPU threads (QEMU: `CPU 0/KVM`), as (tid, comm).
    pub vcpu_threads: Vec<(u32, String)>,
}

/// The guest name from a QEMU command line (NUL-separated `/proc/<pid>/cmdline`).
pub fn qemu_name(cmdline: &[u8]) -> Option<String> {
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let i = args
        .iter()
        .position(|a| *a == b"-name" || *a == b"--name")?;
    let value = std::str::from_utf8(args.get(i + 1)?).ok()?;
    let mut first = None;
    for part in value.split(',') {
        if let Some(g) = part.strip_prefix("guest=") {
            return Some(g.to_string());
        }
        if first.is_none() && !part.contains('=') && !part.is_empty() {
            first = Some(part.to_string());
        }
    }
    first
}

/// True for a thread name a VMM gives its vCPU threads (QEMU `CPU 3/KVM`, the lab's
/// `kvmscope-vcpu3`, Firecracker `fc_vcpu 3`, cloud-hypervisor `vcpu3`).
pub fn is_vcpu_thread(comm: &str) -> bool {
    let c = comm.trim();
    if c.starts_with("CPU ") && c.ends_with("/KVM") {
        return true;
    }
    let stem = c.trim_end_matches(|ch: char| ch.is_ascii_digit());
    stem.len() < c.len() && stem.trim_end().ends_with("vcpu")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_threads() {
        assert_eq!(
            qemu_name(b"qemu-system-x86_64\0-name\0guest=web1,debug-threads=on\0-m\x004096\0"),
            Some("web1".into())
        );
        assert_eq!(qemu_name(b"qemu\0-name\0db,process=x\0"), Some("db".into()));
        assert_eq!(qemu_name(b"qemu\0-m\x00512\0"), None);
        assert_eq!(qemu_name(b"qemu\0-name\0"), None);
        assert!(is_vcpu_thread("CPU 0/KVM"));
        assert!(is_vcpu_thread("fc_vcpu 1"));
        assert!(is_vcpu_thread("vcpu12"));
        assert!(is_vcpu_thread("kvmscope-vcpu0"));
        assert!(!is_vcpu_thread("vcpu"));
        assert!(!is_vcpu_thread("kworker/0:1"));
    }
}
