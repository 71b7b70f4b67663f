//! The event model: one [`Event`] per trace record, whatever the source.
//!
//! An event borrows its strings from the input buffer (comm, function names, the raw payload)
//! and owns everything else; typed payloads are small `Copy` structs so decoding allocates
//! nothing on the hot path.

use serde::Serialize;

/// One trace record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event<'a> {
    /// Nanoseconds since the trace clock's origin.
    pub ts_ns: u64,
    pub cpu: u32,
    /// The thread that emitted the event (ftrace's "pid" is a thread id).
    pub tid: u32,
    /// Thread group (process) id, when the source says it.
    pub tgid: Option<u32>,
    pub comm: &'a str,
    /// Tracepoint system, e.g. `kvm`; empty when the source does not print it and the name is
    /// not one we know.
    pub system: &'a str,
    /// Tracepoint name, e.g. `kvm_exit`.
    pub name: &'a str,
    /// The event's fields as printed (text sources).
    pub payload: &'a str,
    pub kind: EventKind<'a>,
    /// The decoder's id of `(system, name)`, for consumers that intern names too.
    pub name_ref: crate::names::NameRef,
}

/// Which virtualisation extension produced an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Isa {
    Vmx,
    Svm,
    Arm64,
    /// Printed as a bare number by a source that did not name it.
    Unknown,
}

/// arm64 exit kinds (the `ret` of `handle_exit`, printed as the prefix of kvm_exit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ArmExitKind {
    Irq,
    Serror,
    Trap,
    Il,
    Other,
}

/// Why the vCPU left the guest. Equal reasons compare equal whatever layout printed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExitReason<'a> {
    /// VMX basic exit reason (low 16 bits).
    Vmx(u32),
    /// SVM exit code.
    Svm(u64),
    /// arm64: exit kind and, for traps, the ESR exception class.
    Arm64 { kind: ArmExitKind, ec: u32 },
    /// A number the source printed without a name and whose ISA is unknown.
    Code(u64),
    /// A name the source printed that is not in our tables (a newer kernel): kept verbatim.
    Named(&'a str),
}

impl ExitReason<'_> {
    /// The same reason when it holds no string (every reason but [`ExitReason::Named`]).
    #[inline]
    pub fn without_str(self) -> Option<ExitReason<'static>> {
        match self {
            ExitReason::Vmx(c) => Some(ExitReason::Vmx(c)),
            ExitReason::Svm(c) => Some(ExitReason::Svm(c)),
            ExitReason::Arm64 { kind, ec } => Some(ExitReason::Arm64 { kind, ec }),
            ExitReason::Code(c) => Some(ExitReason::Code(c)),
            ExitReason::Named(_) => None,
        }
    }
}

impl KvmExit<'_> {
    /// The same exit when its reason holds no string.
    #[inline]
    pub fn without_str(self) -> Option<KvmExit<'static>> {
        Some(KvmExit {
            reason: self.reason.without_str()?,
            failed_vmentry: self.failed_vmentry,
            vcpu: self.vcpu,
            rip: self.rip,
            info1: self.info1,
            info2: self.info2,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KvmExit<'a> {
    pub reason: ExitReason<'a>,
    /// `FAILED_VMENTRY` flag set (VMX).
    pub failed_vmentry: bool,
    pub vcpu: Option<u32>,
    pub rip: Option<u64>,
    pub info1: Option<u64>,
    pub info2: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MmioKind {
    UnsatisfiedRead,
    Read,
    Write,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MmuKind {
    GetPage,
    SyncPage,
    Unsync,
    PrepareZap,
    ZapPage,
    SetSpte,
    SptePrequested,
    SetDirtyBit,
    SetAccessedBit,
    PagetableWalk,
    PagingElement,
    WalkerError,
    FastPageFault,
    MmioSpte,
    HandleMmioPageFault,
    CheckMmioSpte,
    InvalidateZapAllFast,
    SplitHugePage,
    TdpMmuSptChanged,
    Other,
}

impl MmuKind {
    /// Every kind, in declaration order: `ALL[k as usize] == k`, so counts per kind can live
    /// in an array.
    pub const ALL: [MmuKind; 20] = [
        MmuKind::GetPage,
        MmuKind::SyncPage,
        MmuKind::Unsync,
        MmuKind::PrepareZap,
        MmuKind::ZapPage,
        MmuKind::SetSpte,
        MmuKind::SptePrequested,
        MmuKind::SetDirtyBit,
        MmuKind::SetAccessedBit,
        MmuKind::PagetableWalk,
        MmuKind::PagingElement,
        MmuKind::WalkerError,
        MmuKind::FastPageFault,
        MmuKind::MmioSpte,
        MmuKind::HandleMmioPageFault,
        MmuKind::CheckMmioSpte,
        MmuKind::InvalidateZapAllFast,
        MmuKind::SplitHugePage,
        MmuKind::TdpMmuSptChanged,
        MmuKind::Other,
    ];
}

/// Typed payloads for the events kvmscope analyses. Anything else is [`EventKind::Other`]:
/// still an event, with its name and raw fields.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum EventKind<'a> {
    KvmExit(KvmExit<'a>),
    KvmEntry {
        vcpu: Option<u32>,
        rip: Option<u64>,
    },
    /// `kvm_userspace_exit`: reason is KVM_EXIT_*; `errno` set for "restart"/"error".
    UserspaceExit {
        reason: u32,
        errno: Option<u32>,
    },
    Pio {
        write: bool,
        port: u32,
        size: u32,
        count: u32,
        val: u64,
    },
    Mmio {
        kind: MmioKind,
        len: u32,
        gpa: u64,
        val: u64,
    },
    /// Host-side `kvm_msr` (an MSR access the guest made that KVM handled).
    Msr {
        write: bool,
        msr: u32,
        data: u64,
        gp: bool,
    },
    Cr {
        write: bool,
        cr: u32,
        val: u64,
    },
    PageFault {
        vcpu: Option<u32>,
        addr: u64,
        error_code: u64,
    },
    InjVirq {
        irq: u32,
        soft: bool,
        reinjected: bool,
    },
    InjException {
        vector: u32,
    },
    ApicIpi {
        dst: u32,
        vec: u32,
    },
    ApicAcceptIrq {
        apicid: u32,
        vec: u32,
        coalesced: bool,
    },
    Apic {
        write: bool,
        reg: &'a str,
        val: u64,
    },
    Eoi {
        vector: i64,
    },
    HvTimerState {
        vcpu: u32,
        hv_timer: bool,
    },
    WaitLapicExpire {
        vcpu: u32,
        delta_ns: i64,
    },
    /// `kvm_vcpu_wakeup`: a halted vCPU woke after `ns`; `waited` false means halt-polling
    /// succeeded; `valid` is the poll-validity flag.
    VcpuWakeup {
        ns: u64,
        waited: bool,
        valid: bool,
    },
    HaltPollNs {
        vcpu: u32,
        grow: bool,
        new: u64,
        old: u64,
    },
    Fpu {
        load: bool,
    },
    EmulateInsn {
        failed: bool,
    },
    Cpuid {
        function: u32,
    },
    PvTlbFlush {
        vcpu: u32,
        need_flush: bool,
    },
    SetIrq {
        gsi: u32,
        level: i32,
    },
    MsiSetIrq {
        dst: u64,
        vec: u32,
    },
    /// `kvmmmu:*`. For `GetPage`, `created` is new vs existing and `root` says it is a root
    /// (level >= 4, or the role printed `root`); `level` when printed.
    Mmu {
        kind: MmuKind,
        gfn: Option<u64>,
        level: Option<u32>,
        created: bool,
        root: bool,
    },
    /// arm64 `kvm_get_timer_map` (`VCPU: N`, traced when the vCPU is loaded on its own
    /// thread): the vCPU index, which arm64's kvm_exit/kvm_entry do not print.
    /// (`kvm_timer_update_irq` also names a vCPU but may run in another task's interrupt.)
    VcpuIndex {
        vcpu: u32,
    },
    /// arm64 `kvm_wfx_arm64`.
    Wfx {
        wfe: bool,
        pc: u64,
    },
    /// arm64 `kvm_handle_sys_reg` / `kvm_sys_access`: the ESR, the register's encoding
    /// (op0, op1, CRn, CRm, op2) and name (as the trace prints it, else from the encoding;
    /// empty when unknown), and the direction.
    SysReg {
        esr: Option<u64>,
        enc: Option<[u8; 5]>,
        name: &'a str,
        write: Option<bool>,
    },
    /// Guest-side `msr:write_msr` / `msr:read_msr` / `msr:rdpmc`.
    GuestMsr {
        write: bool,
        msr: u32,
        val: u64,
        failed: bool,
    },
    /// `ipi:ipi_send_cpu` (one target) and `ipi:ipi_send_cpumask` (cpus as printed).
    IpiSend {
        cpu: Option<u32>,
        cpumask: &'a str,
        callsite: &'a str,
        callback: &'a str,
    },
    /// `ipi:ipi_raise` (older kernels): target mask and reason text.
    IpiRaise {
        target: &'a str,
        reason: &'a str,
    },
    IpiEntry {
        reason: &'a str,
    },
    CsdQueue {
        cpu: u32,
        func: &'a str,
    },
    CsdFunction {
        entry: bool,
        func: &'a str,
    },
    /// `irq_vectors:*_entry` / `*_exit`: the vector name is the event name minus the suffix.
    IrqVector {
        entry: bool,
        vector: Option<u32>,
    },
    HrtimerStart {
        hrtimer: u64,
        function: &'a str,
        expires_ns: Option<u64>,
    },
    HrtimerExpireEntry {
        hrtimer: u64,
        function: &'a str,
    },
    HrtimerExpireExit {
        hrtimer: u64,
    },
    HrtimerCancel {
        hrtimer: u64,
    },
    SchedSwitch {
        prev_tid: u32,
        next_tid: u32,
        prev_comm: &'a str,
        next_comm: &'a str,
        prev_state: &'a str,
    },
    SchedWakeup {
        tid: u32,
        comm: &'a str,
        target_cpu: Option<u32>,
    },
    /// Any event without a typed decoder, or whose fields did not parse (see
    /// [`Event::payload`]).
    Other,
}

impl Event<'_> {
    /// A `key=value` or `key value` field from the printed payload, for events without typed
    /// decoding.
    pub fn field(&self, key: &str) -> Option<&str> {
        crate::fields::find(self.payload, key)
    }
}

impl<'a> EventKind<'a> {
    /// The same kind with every borrowed string replaced by `f` of it, visited in a fixed
    /// order (the order of the fields, variant by variant), so that a second call can put back
    /// what a first one took out: the text decoder decodes a payload on one thread and hands
    /// the kind to another with its strings as offsets into a buffer that moved there.
    #[inline]
    pub fn map_strs<'b>(self, f: &mut impl FnMut(&'a str) -> &'b str) -> EventKind<'b> {
        use EventKind as K;
        match self {
            K::KvmExit(e) => K::KvmExit(KvmExit {
                reason: match e.reason {
                    ExitReason::Vmx(c) => ExitReason::Vmx(c),
                    ExitReason::Svm(c) => ExitReason::Svm(c),
                    ExitReason::Arm64 { kind, ec } => ExitReason::Arm64 { kind, ec },
                    ExitReason::Code(c) => ExitReason::Code(c),
                    ExitReason::Named(s) => ExitReason::Named(f(s)),
                },
                failed_vmentry: e.failed_vmentry,
                vcpu: e.vcpu,
                rip: e.rip,
                info1: e.info1,
                info2: e.info2,
            }),
            K::KvmEntry { vcpu, rip } => K::KvmEntry { vcpu, rip },
            K::UserspaceExit { reason, errno } => K::UserspaceExit { reason, errno },
            K::Pio {
                write,
                port,
                size,
                count,
                val,
            } => K::Pio {
                write,
                port,
                size,
                count,
                val,
            },
            K::Mmio {
                kind,
                len,
                gpa,
                val,
            } => K::Mmio {
                kind,
                len,
                gpa,
                val,
            },
            K::Msr {
                write,
                msr,
                data,
                gp,
            } => K::Msr {
                write,
                msr,
                data,
                gp,
            },
            K::Cr { write, cr, val } => K::Cr { write, cr, val },
            K::PageFault {
                vcpu,
                addr,
                error_code,
            } => K::PageFault {
                vcpu,
                addr,
                error_code,
            },
            K::InjVirq {
                irq,
                soft,
                reinjected,
            } => K::InjVirq {
                irq,
                soft,
                reinjected,
            },
            K::InjException { vector } => K::InjException { vector },
            K::ApicIpi { dst, vec } => K::ApicIpi { dst, vec },
            K::ApicAcceptIrq {
                apicid,
                vec,
                coalesced,
            } => K::ApicAcceptIrq {
                apicid,
                vec,
                coalesced,
            },
            K::Apic { write, reg, val } => K::Apic {
                write,
                reg: f(reg),
                val,
            },
            K::Eoi { vector } => K::Eoi { vector },
            K::HvTimerState { vcpu, hv_timer } => K::HvTimerState { vcpu, hv_timer },
            K::WaitLapicExpire { vcpu, delta_ns } => K::WaitLapicExpire { vcpu, delta_ns },
            K::VcpuWakeup { ns, waited, valid } => K::VcpuWakeup { ns, waited, valid },
            K::HaltPollNs {
                vcpu,
                grow,
                new,
                old,
            } => K::HaltPollNs {
                vcpu,
                grow,
                new,
                old,
            },
            K::Fpu { load } => K::Fpu { load },
            K::EmulateInsn { failed } => K::EmulateInsn { failed },
            K::Cpuid { function } => K::Cpuid { function },
            K::PvTlbFlush { vcpu, need_flush } => K::PvTlbFlush { vcpu, need_flush },
            K::SetIrq { gsi, level } => K::SetIrq { gsi, level },
            K::MsiSetIrq { dst, vec } => K::MsiSetIrq { dst, vec },
            K::Mmu {
                kind,
                gfn,
                level,
                created,
                root,
            } => K::Mmu {
                kind,
                gfn,
                level,
                created,
                root,
            },
            K::VcpuIndex { vcpu } => K::VcpuIndex { vcpu },
            K::Wfx { wfe, pc } => K::Wfx { wfe, pc },
            K::SysReg {
                esr,
                enc,
                name,
                write,
            } => K::SysReg {
                esr,
                enc,
                name: f(name),
                write,
            },
            K::GuestMsr {
                write,
                msr,
                val,
                failed,
            } => K::GuestMsr {
                write,
                msr,
                val,
                failed,
            },
            K::IpiSend {
                cpu,
                cpumask,
                callsite,
                callback,
            } => K::IpiSend {
                cpu,
                cpumask: f(cpumask),
                callsite: f(callsite),
                callback: f(callback),
            },
            K::IpiRaise { target, reason } => K::IpiRaise {
                target: f(target),
                reason: f(reason),
            },
            K::IpiEntry { reason } => K::IpiEntry { reason: f(reason) },
            K::CsdQueue { cpu, func } => K::CsdQueue { cpu, func: f(func) },
            K::CsdFunction { entry, func } => K::CsdFunction {
                entry,
                func: f(func),
            },
            K::IrqVector { entry, vector } => K::IrqVector { entry, vector },
            K::HrtimerStart {
                hrtimer,
                function,
                expires_ns,
            } => K::HrtimerStart {
                hrtimer,
                function: f(function),
                expires_ns,
            },
            K::HrtimerExpireEntry { hrtimer, function } => K::HrtimerExpireEntry {
                hrtimer,
                function: f(function),
            },
            K::HrtimerExpireExit { hrtimer } => K::HrtimerExpireExit { hrtimer },
            K::HrtimerCancel { hrtimer } => K::HrtimerCancel { hrtimer },
            K::SchedSwitch {
                prev_tid,
                next_tid,
                prev_comm,
                next_comm,
                prev_state,
            } => K::SchedSwitch {
                prev_tid,
                next_tid,
                prev_comm: f(prev_comm),
                next_comm: f(next_comm),
                prev_state: f(prev_state),
            },
            K::SchedWakeup {
                tid,
                comm,
                target_cpu,
            } => K::SchedWakeup {
                tid,
                comm: f(comm),
                target_cpu,
            },
            K::Other => K::Other,
        }
    }
}

#[cfg(test)]
mod mmu_kind_tests {
    use super::MmuKind;

    /// No wildcard: a kind added to the enum fails to compile here until it is placed, and
    /// then the test below fails until `ALL` has it.
    fn position(k: MmuKind) -> usize {
        match k {
            MmuKind::GetPage => 0,
            MmuKind::SyncPage => 1,
            MmuKind::Unsync => 2,
            MmuKind::PrepareZap => 3,
            MmuKind::ZapPage => 4,
            MmuKind::SetSpte => 5,
            MmuKind::SptePrequested => 6,
            MmuKind::SetDirtyBit => 7,
            MmuKind::SetAccessedBit => 8,
            MmuKind::PagetableWalk => 9,
            MmuKind::PagingElement => 10,
            MmuKind::WalkerError => 11,
            MmuKind::FastPageFault => 12,
            MmuKind::MmioSpte => 13,
            MmuKind::HandleMmioPageFault => 14,
            MmuKind::CheckMmioSpte => 15,
            MmuKind::InvalidateZapAllFast => 16,
            MmuKind::SplitHugePage => 17,
            MmuKind::TdpMmuSptChanged => 18,
            MmuKind::Other => 19,
        }
    }

    #[test]
    fn all_lists_every_kind_at_its_own_index_in_order() {
        for (i, k) in MmuKind::ALL.into_iter().enumerate() {
            assert_eq!(k as usize, i, "{k:?}");
            assert_eq!(position(k), i, "{k:?}");
        }
        assert_eq!(position(MmuKind::Other) + 1, MmuKind::ALL.len());
        assert!(MmuKind::ALL.windows(2).all(|w| w[0] < w[1]));
    }
}
