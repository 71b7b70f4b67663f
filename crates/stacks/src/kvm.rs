//! What KVM frames mean: a classifier of kernel function names into the parts of a vCPU's
//! life (guest mode, exit dispatch, MMU faults, instruction emulation, halt), shared by the
//! flame graph colours and the attribution table.
//!
//! Names come from Linux's arch/x86/kvm (VMX, SVM, PVM) and virt/kvm; compiler suffixes
//! (`.isra.0`, `.constprop.0`, `.part.0`, `.cold`) and FlameGraph annotations (`_[k]`) are
//! ignored.

use serde::Serialize;

/// Where a sample's CPU time went, from the host's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// A vCPU thread running guest code (a sample with no stack on a vCPU thread, or one
    /// whose innermost frame is the guest entry).
    Guest,
    /// Exit dispatch and handlers other than MMU, emulation and halt.
    ExitHandling,
    /// Guest page faults and shadow/TDP page-table work.
    Mmu,
    /// Instruction decode and emulation.
    Emulation,
    /// A halted vCPU: halt polling and blocking.
    Halt,
    /// The rest of KVM's run loop (entry/exit bookkeeping, vcpu_load, interrupt injection).
    KvmOther,
    /// VMM processes in user space.
    VmmUser,
    /// VMM processes in the kernel outside KVM_RUN (I/O syscalls and the like).
    VmmKernel,
    /// Idle CPUs.
    Idle,
    /// Everything else on the host.
    Other,
}

impl Category {
    /// All categories, in table order.
    pub const ALL: [Category; 10] = [
        Category::Guest,
        Category::ExitHandling,
        Category::Mmu,
        Category::Emulation,
        Category::Halt,
        Category::KvmOther,
        Category::VmmUser,
        Category::VmmKernel,
        Category::Idle,
        Category::Other,
    ];

    /// Name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Category::Guest => "vCPU in guest",
            Category::ExitHandling => "exit handling",
            Category::Mmu => "MMU",
            Category::Emulation => "emulation",
            Category::Halt => "halt (polling, blocking)",
            Category::KvmOther => "KVM run loop, other",
            Category::VmmUser => "VMM user space",
            Category::VmmKernel => "VMM kernel, outside KVM_RUN",
            Category::Idle => "idle",
            Category::Other => "other",
        }
    }

    /// Flame graph fill colour (RGB).
    pub fn colour(self) -> (u8, u8, u8) {
        match self {
            Category::Guest => (60, 180, 75),
            Category::ExitHandling => (245, 130, 49),
            Category::Mmu => (230, 25, 75),
            Category::Emulation => (145, 30, 180),
            Category::Halt => (67, 99, 216),
            Category::KvmOther => (255, 200, 40),
            Category::VmmUser => (66, 212, 244),
            Category::VmmKernel => (120, 200, 220),
            Category::Idle => (200, 200, 200),
            Category::Other => (170, 170, 170),
        }
    }
}

/// A frame name without FlameGraph annotation (`_[k]`) and compiler suffixes (`.isra.0`).
pub fn base_name(frame: &str) -> &str {
    let mut f = frame;
    if f.ends_with(']') {
        if let Some(i) = f.rfind("_[") {
            if f.len() - i == 4 {
                f = &f[..i];
            }
        }
    }
    match f.find('.') {
        Some(i) if i > 0 => &f[..i],
        _ => f,
    }
}

/// Whether the frame carries the kernel annotation `_[k]`.
pub fn is_annotated_kernel(frame: &str) -> bool {
    frame.ends_with("_[k]")
}

/// What one frame is, when its name alone says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// The KVM_RUN ioctl and run loop (`kvm_vcpu_ioctl`, `kvm_arch_vcpu_ioctl_run`).
    RunLoop,
    /// Entering the guest: the innermost host frame while the guest runs.
    GuestEntry,
    /// Exit dispatch (`vmx_handle_exit`, `svm_invoke_exit_handler`, `pvm_handle_exit`).
    ExitDispatch,
    /// A specific handler or subsystem, whatever the context.
    Specific(Category),
    /// A name that means this subsystem only inside KVM_RUN (`mmu_*`, `em_*` and the like
    /// also name functions of other kernel parts).
    InRun(Category),
    /// A named exit handler without a more specific subsystem (`msr_interception`).
    Handler,
    /// A name that is an exit handler only inside KVM_RUN (`handle_io`; `handle_pte_fault`
    /// outside it is the kernel's own page fault path).
    HandlerInRun,
    /// An idle loop frame.
    Idle,
    /// Some other KVM function.
    Kvm,
}

/// Classifies one frame by name.
pub fn frame_kind(frame: &str) -> Option<FrameKind> {
    let f = base_name(frame);
    use Category::*;
    use FrameKind::*;
    let kind = match f {
        "kvm_vcpu_ioctl"
        | "kvm_arch_vcpu_ioctl_run"
        | "vcpu_run"
        | "kvm_arch_vcpu_ioctl"
        | "kvm_arm_vcpu_ioctl_run" => RunLoop,
        "vcpu_enter_guest" => RunLoop,
        "vmx_vcpu_run"
        | "__vmx_vcpu_run"
        | "vmx_vcpu_enter_exit"
        | "svm_vcpu_run"
        | "__svm_vcpu_run"
        | "svm_vcpu_enter_exit"
        | "__svm_sev_es_vcpu_run"
        | "pvm_vcpu_run"
        | "kvm_arm_vcpu_enter_exit"
        | "__kvm_vcpu_run"
        | "__guest_enter"
        | "vmx_vmexit"
        | "vmx_vmenter" => GuestEntry,
        "vmx_handle_exit"
        | "__vmx_handle_exit"
        | "svm_handle_exit"
        | "svm_invoke_exit_handler"
        | "pvm_handle_exit"
        | "__pvm_handle_exit"
        | "handle_exit"
        | "handle_trap_exceptions"
        | "vmx_handle_exit_irqoff"
        | "svm_handle_exit_irqoff"
        | "kvm_handle_sys_reg" => ExitDispatch,
        // MMU: the page fault paths of field report 000 and their neighbours.
        "handle_ept_violation"
        | "handle_ept_misconfig"
        | "npf_interception"
        | "pf_interception"
        | "tdp_page_fault"
        | "kvm_tdp_page_fault"
        | "direct_page_fault"
        | "fast_page_fault"
        | "kvm_handle_page_fault"
        | "__direct_map"
        | "direct_map"
        | "kvm_faultin_pfn"
        | "__kvm_faultin_pfn"
        | "__gfn_to_pfn_memslot"
        | "hva_to_pfn"
        | "make_spte"
        | "mmu_set_spte"
        | "kvm_sync_page"
        | "handle_mmio_page_fault"
        | "kvm_handle_guest_abort"
        | "user_mem_abort"
        | "kvm_pgtable_stage2_map"
        | "handle_guest_pf"
        | "pvm_handle_page_fault"
        | "account_shadowed"
        | "kvm_unsync_page"
        | "kvm_flush_remote_tlbs"
        | "kvm_flush_remote_tlbs_memslot" => Specific(Mmu),
        "x86_emulate_instruction"
        | "kvm_emulate_instruction"
        | "x86_emulate_insn"
        | "x86_decode_insn"
        | "x86_decode_emulated_instruction"
        | "handle_ud"
        | "kvm_emulate_instruction_from_buffer"
        | "__do_insn_fetch_bytes"
        | "handle_emulation_failure"
        | "io_mem_abort" => Specific(Emulation),
        "kvm_vcpu_halt"
        | "kvm_vcpu_block"
        | "kvm_emulate_halt"
        | "kvm_emulate_halt_noskip"
        | "handle_halt"
        | "halt_interception"
        | "kvm_vcpu_check_block"
        | "kvm_vcpu_wfi"
        | "kvm_handle_wfx"
        | "__kvm_emulate_halt"
        | "kvm_arch_vcpu_runnable" => Specific(Halt),
        "do_idle"
        | "cpu_idle"
        | "cpuidle_enter"
        | "cpuidle_enter_state"
        | "default_idle"
        | "default_idle_call"
        | "native_safe_halt"
        | "pv_native_safe_halt"
        | "acpi_idle_enter"
        | "intel_idle"
        | "mwait_idle"
        | "cpu_startup_entry"
        | "arch_cpu_idle"
        | "poll_idle" => FrameKind::Idle,
        _ => {
            if f.starts_with("kvm_mmu")
                || f.starts_with("kvm_tdp_mmu_")
                || f.starts_with("tdp_mmu_")
                || f.starts_with("paging64_")
                || f.starts_with("paging32_")
                || f.starts_with("paging32E_")
                || f.starts_with("kvm_zap_")
                || f.starts_with("__kvm_mmu_")
                || f.starts_with("kvm_arch_mmu_")
            {
                Specific(Mmu)
            } else if f.starts_with("ept_")
                || f.starts_with("mmu_")
                || f.starts_with("rmap_")
                || f.starts_with("shadow_walk")
            {
                InRun(Mmu)
            } else if f.starts_with("pvm_emulate") || f.starts_with("pvm_em_") {
                Specific(Emulation)
            } else if f.starts_with("emulator_")
                || f.starts_with("em_")
                || f.starts_with("complete_emulated_")
            {
                InRun(Emulation)
            } else if f.ends_with("_interception") || f.starts_with("kvm_emulate_") {
                Handler
            } else if f.starts_with("handle_") {
                HandlerInRun
            } else if f.starts_with("kvm_")
                || f.starts_with("__kvm_")
                || f.starts_with("vmx_")
                || f.starts_with("__vmx_")
                || f.starts_with("svm_")
                || f.starts_with("__svm_")
                || f.starts_with("pvm_")
                || f.starts_with("__pvm_")
                || f.starts_with("nested_")
            {
                Kvm
            } else {
                return None;
            }
        }
    };
    Some(kind)
}

/// Whether a process name looks like a VMM or one of its vCPU threads (`qemu-system-x86`,
/// `CPU_0/KVM`, `fc_vcpu_0`, `cloud-hypervisor`, `crosvm`, `kvmscope-vcpu0`).
pub fn looks_like_vmm(pname: &str) -> bool {
    let p = pname.to_ascii_lowercase();
    [
        "qemu",
        "/kvm",
        "vcpu",
        "firecracker",
        "cloud-hyperviso",
        "crosvm",
        "lkvm",
        "kvmtool",
    ]
    .iter()
    .any(|n| p.contains(n))
}

/// Where one folded stack's time went. `frames[0]` is the process name; `vcpu_thread`
/// says whether that process name belongs to a thread that runs KVM_RUN.
pub fn classify_stack(frames: &[&str], vcpu_thread: bool, vmm: bool) -> Category {
    let pname = frames.first().copied().unwrap_or("");
    let frames = frames.get(1..).unwrap_or(&[]);
    if frames.is_empty() {
        return if vcpu_thread {
            Category::Guest
        } else if pname.starts_with("swapper") {
            Category::Idle
        } else if vmm {
            Category::VmmUser
        } else {
            Category::Other
        };
    }
    let mut in_run = false;
    let mut dispatched = false;
    let mut idle = false;
    for f in frames {
        match frame_kind(f) {
            Some(FrameKind::RunLoop) => in_run = true,
            Some(FrameKind::ExitDispatch) | Some(FrameKind::Handler) => dispatched = true,
            Some(FrameKind::HandlerInRun) if in_run => dispatched = true,
            Some(FrameKind::Specific(c)) => return c,
            Some(FrameKind::InRun(c)) if in_run => return c,
            Some(FrameKind::Idle) => idle = true,
            _ => {}
        }
    }
    let leaf = frames[frames.len() - 1];
    if dispatched {
        return Category::ExitHandling;
    }
    if in_run {
        return if frame_kind(leaf) == Some(FrameKind::GuestEntry) {
            Category::Guest
        } else {
            Category::KvmOther
        };
    }
    if idle || pname.starts_with("swapper") {
        return Category::Idle;
    }
    if vmm || vcpu_thread {
        return if leaf_is_kernel(frames) {
            Category::VmmKernel
        } else {
            Category::VmmUser
        };
    }
    Category::Other
}

/// Whether the innermost frame of a stack runs in the kernel: by annotation when the stack
/// has them, else by the kernel entry frames it passes through.
pub fn leaf_is_kernel(frames: &[&str]) -> bool {
    let Some(leaf) = frames.last() else {
        return false;
    };
    if frames.iter().any(|f| f.ends_with("_[k]")) {
        return is_annotated_kernel(leaf);
    }
    frames.iter().any(|f| {
        let b = base_name(f);
        b.starts_with("entry_SYSCALL")
            || b == "do_syscall_64"
            || b.starts_with("asm_")
            || b == "ret_from_fork"
            || b == "ret_from_fork_asm"
            || b.starts_with("__x64_sys_")
            || b.starts_with("el0_")
    })
}

/// The category a frame's colour shows, given whether it was seen inside KVM_RUN.
pub fn frame_colour_category(frame: &str, in_run: bool) -> Option<Category> {
    match frame_kind(frame)? {
        FrameKind::GuestEntry => Some(Category::Guest),
        FrameKind::ExitDispatch | FrameKind::Handler => Some(Category::ExitHandling),
        FrameKind::HandlerInRun if in_run => Some(Category::ExitHandling),
        FrameKind::Specific(c) => Some(c),
        FrameKind::InRun(c) if in_run => Some(c),
        FrameKind::RunLoop | FrameKind::Kvm => Some(Category::KvmOther),
        FrameKind::Idle => Some(Category::Idle),
        _ => None,
    }
}

/// The exit handler a stack went through: the first frame after the exit dispatch that is
/// not itself dispatch (e.g. `handle_ept_violation`, `pf_interception`,
/// `pvm_emulate_insn_scrubbed`).
pub fn exit_handler<'a>(frames: &[&'a str]) -> Option<&'a str> {
    let i = frames
        .iter()
        .rposition(|f| frame_kind(f) == Some(FrameKind::ExitDispatch))?;
    frames.get(i + 1).map(|f| base_name(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvm_emulation_stack() {
        let s = [
            "kvmscope-vcpu0",
            "__GI___ioctl",
            "entry_SYSCALL_64_after_hwframe",
            "do_syscall_64",
            "__x64_sys_ioctl",
            "kvm_vcpu_ioctl",
            "kvm_arch_vcpu_ioctl_run",
            "pvm_handle_exit",
            "__pvm_handle_exit.isra.0",
            "pvm_emulate_insn_scrubbed.constprop.0",
            "x86_emulate_instruction",
            "x86_decode_emulated_instruction",
            "x86_decode_insn",
            "__do_insn_fetch_bytes",
            "kvm_fetch_guest_virt",
            "paging64_gva_to_gpa",
        ];
        assert_eq!(classify_stack(&s, true, true), Category::Emulation);
        assert_eq!(exit_handler(&s), Some("pvm_emulate_insn_scrubbed"));
    }

    #[test]
    fn vmx_tdp_fault_and_guest() {
        let s = [
            "CPU_0/KVM",
            "kvm_vcpu_ioctl_[k]",
            "kvm_arch_vcpu_ioctl_run_[k]",
            "vmx_handle_exit_[k]",
            "handle_ept_violation_[k]",
            "kvm_mmu_page_fault_[k]",
            "tdp_page_fault_[k]",
        ];
        assert_eq!(classify_stack(&s, true, true), Category::Mmu);
        assert_eq!(exit_handler(&s), Some("handle_ept_violation"));
        let g = [
            "CPU_0/KVM",
            "kvm_vcpu_ioctl",
            "kvm_arch_vcpu_ioctl_run",
            "vmx_vcpu_run",
            "__vmx_vcpu_run",
        ];
        assert_eq!(classify_stack(&g, true, true), Category::Guest);
        assert_eq!(
            classify_stack(&["kvmscope-vcpu0"], true, true),
            Category::Guest
        );
        assert_eq!(
            classify_stack(&["swapper", "do_idle", "default_idle"], false, false),
            Category::Idle
        );
    }
}
