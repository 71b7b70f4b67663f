//! Running VMs on this host: processes that hold a KVM VM descriptor, with the guest's name
//! from the VMM's command line (QEMU/libvirt `-name`, Firecracker `--id`, cloud-hypervisor
//! `--api-socket`, crosvm/kvmtool `--name`) and its threads.

use std::path::Path;

use kvmscope_system::vms::{is_vcpu_thread, qemu_name};

/// One VM process.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VmProcess {
    pub pid: i32,
    /// `/proc/<pid>/comm`.
    pub comm: String,
    /// The guest name, or the process name when the command line names none.
    pub name: String,
    /// All thread ids.
    pub threads: Vec<i32>,
    /// Threads named like vCPU threads, as (tid, comm).
    pub vcpus: Vec<(i32, String)>,
}

/// The guest name from a NUL-separated command line.
pub fn guest_name(cmdline: &[u8]) -> Option<String> {
    if let Some(n) = qemu_name(cmdline) {
        return Some(n);
    }
    let args: Vec<&str> = cmdline
        .split(|&b| b == 0)
        .filter_map(|a| std::str::from_utf8(a).ok())
        .collect();
    let value = |flags: &[&str]| -> Option<String> {
        for (i, a) in args.iter().enumerate() {
            for f in flags {
                if a == f {
                    return args.get(i + 1).map(|v| v.to_string());
                }
                if let Some(v) = a.strip_prefix(&format!("{f}=")) {
                    return Some(v.to_string());
                }
            }
        }
        None
    };
    // Firecracker: --id NAME.
    if let Some(id) = value(&["--id"]) {
        return Some(id);
    }
    // crosvm, kvmtool: --name NAME.
    if let Some(n) = value(&["--name"]) {
        return Some(n);
    }
    // cloud-hypervisor: --api-socket [path=]/run/NAME.sock: the socket's file stem.
    if let Some(s) = value(&["--api-socket"]) {
        let path = s
            .split(',')
            .find_map(|p| p.strip_prefix("path="))
            .unwrap_or(s.split(',').next().unwrap_or(""));
        if let Some(stem) = Path::new(path).file_stem().and_then(|s| s.to_str()) {
            if !stem.is_empty() {
                return Some(stem.to_string());
            }
        }
    }
    None
}

fn holds_vm_fd(pid: i32) -> bool {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    rd.flatten().any(|e| {
        std::fs::read_link(e.path())
            .ok()
            .is_some_and(|l| l.as_os_str() == "anon_inode:kvm-vm")
    })
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

/// Describes process `pid` (None when it has gone).
pub fn describe(pid: i32) -> Option<VmProcess> {
    let comm = read_trim(&format!("/proc/{pid}/comm"));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let threads = kvmscope_capture::counters::threads_of(pid).ok()?;
    let vcpus = threads
        .iter()
        .filter_map(|&t| {
            let c = read_trim(&format!("/proc/{pid}/task/{t}/comm"));
            is_vcpu_thread(&c).then_some((t, c))
        })
        .collect();
    Some(VmProcess {
        pid,
        name: guest_name(&cmdline).unwrap_or_else(|| comm.clone()),
        comm,
        threads,
        vcpus,
    })
}

/// Every process holding a KVM VM descriptor, by pid.
pub fn list() -> Vec<VmProcess> {
    let mut out: Vec<VmProcess> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| holds_vm_fd(pid))
        .filter_map(describe)
        .collect();
    out.sort_by_key(|v| v.pid);
    out
}

/// The VM whose pid or guest name is `query`.
pub fn find(query: &str) -> Option<VmProcess> {
    if let Ok(pid) = query.parse::<i32>() {
        return describe(pid);
    }
    list().into_iter().find(|v| v.name == query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_command_lines() {
        assert_eq!(
            guest_name(b"qemu-system-x86_64\0-name\0guest=web1,debug-threads=on\0").as_deref(),
            Some("web1")
        );
        assert_eq!(
            guest_name(b"firecracker\0--api-sock\0/tmp/fc.sock\0--id\0fc-7\0").as_deref(),
            Some("fc-7")
        );
        assert_eq!(
            guest_name(b"cloud-hypervisor\0--api-socket\0path=/run/ch/db2.sock\0--cpus\0boot=2\0")
                .as_deref(),
            Some("db2")
        );
        assert_eq!(
            guest_name(b"cloud-hypervisor\0--api-socket=/run/vm3.sock\0").as_deref(),
            Some("vm3")
        );
        assert_eq!(
            guest_name(b"crosvm\0run\0--name\0cros\0").as_deref(),
            Some("cros")
        );
        assert_eq!(guest_name(b"kvmscope\0lab\0run\0pio\0"), None);
    }
}
