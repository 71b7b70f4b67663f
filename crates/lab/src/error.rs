//! The one error type of the lab.

use std::io;
use std::time::Duration;

/// Why a lab run could not be set up or did not finish.
///
/// Every message says what failed and, where the user can do something, what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// `/dev/kvm` is missing.
    #[error("/dev/kvm does not exist: load KVM (`modprobe kvm_intel` or `modprobe kvm_amd`), or enable nested virtualisation if this is a VM")]
    NoKvm,
    /// `/dev/kvm` exists but this user may not open it.
    #[error("cannot open /dev/kvm: permission denied; run as root or add your user to the `kvm` group (`usermod -aG kvm $USER`, then log in again)")]
    KvmPermission,
    /// `/dev/kvm` could not be opened for another reason.
    #[error("cannot open /dev/kvm")]
    KvmOpen(#[source] io::Error),
    /// The host's KVM lacks something the scenario needs.
    #[error("this host's KVM lacks {what} (KVM_CAP_{cap}); {fix}")]
    MissingCapability {
        /// Capability name without the `KVM_CAP_` prefix.
        cap: &'static str,
        /// What the capability provides.
        what: &'static str,
        /// What the user can do.
        fix: &'static str,
    },
    /// A KVM ioctl failed.
    #[error("KVM ioctl {op} failed")]
    Kvm {
        /// The ioctl or step.
        op: &'static str,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// Guest memory could not be mapped.
    #[error("cannot map {size} bytes of guest memory (try a smaller --count)")]
    Memory {
        /// Requested size in bytes.
        size: u64,
        /// The mmap error.
        #[source]
        source: io::Error,
    },
    /// The guest program could not be assembled (a bug in the lab).
    #[error("assembling the guest program failed: {0}")]
    Assemble(String),
    /// The scenario settings are out of range.
    #[error("invalid scenario settings: {0}")]
    InvalidSpec(String),
    /// A vCPU thread could not be started.
    #[error("cannot start a vCPU thread")]
    Thread(#[source] io::Error),
    /// The guest triple-faulted (KVM_EXIT_SHUTDOWN).
    #[error("vCPU {vcpu}: guest shut down (triple fault) at rip {rip:#x}")]
    Shutdown {
        /// vCPU index.
        vcpu: u32,
        /// Guest RIP after the exit.
        rip: u64,
    },
    /// KVM could not emulate something (KVM_EXIT_INTERNAL_ERROR).
    #[error("vCPU {vcpu}: KVM internal error, suberror {suberror} (1 = emulation failure) at rip {rip:#x}, data {data:x?}; this host may not support the instruction at that privilege level")]
    InternalError {
        /// vCPU index.
        vcpu: u32,
        /// `kvm_run.internal.suberror`.
        suberror: u32,
        /// Guest RIP.
        rip: u64,
        /// `kvm_run.internal.data[..ndata]`.
        data: Vec<u64>,
    },
    /// Hardware refused to enter the guest (KVM_EXIT_FAIL_ENTRY).
    #[error("vCPU {vcpu}: VM entry failed, hardware reason {reason:#x} on host CPU {cpu}")]
    FailEntry {
        /// vCPU index.
        vcpu: u32,
        /// `hardware_entry_failure_reason`.
        reason: u64,
        /// Host CPU.
        cpu: u32,
    },
    /// The guest took an exception that the lab's guest programs never cause on purpose.
    #[error("vCPU {vcpu}: guest exception {vector} ({name}) error code {error_code:#x} at rip {rip:#x}, cr2 {cr2:#x}{hint}")]
    GuestFault {
        /// vCPU index.
        vcpu: u32,
        /// Exception vector.
        vector: u8,
        /// Exception name (`#GP`, ...).
        name: &'static str,
        /// Error code (0 where the exception has none).
        error_code: u64,
        /// Faulting RIP.
        rip: u64,
        /// CR2 (meaningful for #PF).
        cr2: u64,
        /// Extra advice, may be empty.
        hint: String,
    },
    /// KVM_RUN returned an exit the lab does not expect.
    #[error("vCPU {vcpu}: unexpected exit {exit} at rip {rip:#x}")]
    UnexpectedExit {
        /// vCPU index.
        vcpu: u32,
        /// Description of the exit.
        exit: String,
        /// Guest RIP.
        rip: u64,
    },
    /// The guest did not finish in time.
    #[error("the guest did not finish within {0:?} (ops so far: {1}); the host may be overloaded, or the scenario hangs on this host")]
    Timeout(Duration, u64),
    /// Reading the VM's binary statistics failed.
    #[error("reading KVM binary stats ({what})")]
    Stats {
        /// What was being read.
        what: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A program or file an emulated host needs is missing.
    #[error("{tool} is missing: install it with `{install}`")]
    MissingTool {
        /// The program (or file).
        tool: String,
        /// The command that installs it.
        install: String,
    },
    /// Preparing or starting an emulated host failed.
    #[error("{what}{}", if detail.is_empty() { String::new() } else { format!(":\n{detail}") })]
    HostSetup {
        /// What was being done.
        what: String,
        /// The tool's error output or the host's console tail.
        detail: String,
    },
    /// The emulated host's kernel panicked or oopsed.
    #[error("the emulated {flavour} host's kernel crashed during {stage} ({attempts} boot(s) tried); QEMU's emulation of nested virtualisation is not flawless: run again, and if it repeats report it with the console below and console*.log in the output directory. Its console ended with:\n{tail}")]
    HostCrashed {
        /// Host flavour.
        flavour: &'static str,
        /// Boots tried.
        attempts: u32,
        /// What it was doing.
        stage: String,
        /// The console's last lines.
        tail: String,
    },
    /// The emulated host did not finish in time and was killed.
    #[error("the emulated {flavour} host did not finish within {limit:?} (stuck in {stage}) and was stopped; the machine may be overloaded (give a longer --timeout) or the host hangs. Its console ended with:\n{tail}")]
    HostHung {
        /// Host flavour.
        flavour: &'static str,
        /// The time limit.
        limit: Duration,
        /// What it was doing.
        stage: String,
        /// The console's last lines.
        tail: String,
    },
    /// QEMU exited before the host saved its outputs.
    #[error("QEMU ({flavour} host) exited with {status} during {stage}, before the outputs were saved. Console and QEMU errors:\n{tail}")]
    HostExited {
        /// Host flavour.
        flavour: &'static str,
        /// QEMU's exit status.
        status: String,
        /// What it was doing.
        stage: String,
        /// The console's last lines.
        tail: String,
    },
}

impl LabError {
    pub(crate) fn kvm(op: &'static str, e: kvm_ioctls::Error) -> Self {
        LabError::Kvm {
            op,
            source: io::Error::from_raw_os_error(e.errno()),
        }
    }
}

/// Short name of an x86 exception vector.
pub(crate) fn exception_name(vector: u8) -> &'static str {
    match vector {
        0 => "#DE",
        1 => "#DB",
        2 => "NMI",
        3 => "#BP",
        4 => "#OF",
        5 => "#BR",
        6 => "#UD",
        7 => "#NM",
        8 => "#DF",
        10 => "#TS",
        11 => "#NP",
        12 => "#SS",
        13 => "#GP",
        14 => "#PF",
        16 => "#MF",
        17 => "#AC",
        18 => "#MC",
        19 => "#XM",
        _ => "exception",
    }
}
