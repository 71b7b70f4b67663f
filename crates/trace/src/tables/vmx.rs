//! Intel VMX basic exit reasons.
//!
//! Source: `VMX_EXIT_REASONS` in `arch/x86/include/uapi/asm/vmx.h`, identical to the
//! `__print_symbolic` list in the `kvm_exit` print fmt of Linux 6.18 (which ends with
//! TDCALL 77, MSR_READ_IMM 84, MSR_WRITE_IMM 85). SEAMCALL (76) is defined in `vmx.h` but
//! not in the printed list: a kernel prints it as a number, we still name it.

use super::code_table;

code_table! {
    u32;
    entries {
        0 => "EXCEPTION_NMI",
        1 => "EXTERNAL_INTERRUPT",
        2 => "TRIPLE_FAULT",
        3 => "INIT_SIGNAL",
        4 => "SIPI_SIGNAL",
        7 => "INTERRUPT_WINDOW",
        8 => "NMI_WINDOW",
        9 => "TASK_SWITCH",
        10 => "CPUID",
        12 => "HLT",
        13 => "INVD",
        14 => "INVLPG",
        15 => "RDPMC",
        16 => "RDTSC",
        18 => "VMCALL",
        19 => "VMCLEAR",
        20 => "VMLAUNCH",
        21 => "VMPTRLD",
        22 => "VMPTRST",
        23 => "VMREAD",
        24 => "VMRESUME",
        25 => "VMWRITE",
        26 => "VMOFF",
        27 => "VMON",
        28 => "CR_ACCESS",
        29 => "DR_ACCESS",
        30 => "IO_INSTRUCTION",
        31 => "MSR_READ",
        32 => "MSR_WRITE",
        33 => "INVALID_STATE",
        34 => "MSR_LOAD_FAIL",
        36 => "MWAIT_INSTRUCTION",
        37 => "MONITOR_TRAP_FLAG",
        39 => "MONITOR_INSTRUCTION",
        40 => "PAUSE_INSTRUCTION",
        41 => "MCE_DURING_VMENTRY",
        43 => "TPR_BELOW_THRESHOLD",
        44 => "APIC_ACCESS",
        45 => "EOI_INDUCED",
        46 => "GDTR_IDTR",
        47 => "LDTR_TR",
        48 => "EPT_VIOLATION",
        49 => "EPT_MISCONFIG",
        50 => "INVEPT",
        51 => "RDTSCP",
        52 => "PREEMPTION_TIMER",
        53 => "INVVPID",
        54 => "WBINVD",
        55 => "XSETBV",
        56 => "APIC_WRITE",
        57 => "RDRAND",
        58 => "INVPCID",
        59 => "VMFUNC",
        60 => "ENCLS",
        61 => "RDSEED",
        62 => "PML_FULL",
        63 => "XSAVES",
        64 => "XRSTORS",
        67 => "UMWAIT",
        68 => "TPAUSE",
        74 => "BUS_LOCK",
        75 => "NOTIFY",
        76 => "SEAMCALL",
        77 => "TDCALL",
        84 => "MSR_READ_IMM",
        85 => "MSR_WRITE_IMM",
    }
    aliases {
        // Kernels before 5.x (and libtraceevent's kvm plugin) call reason 7 this.
        "PENDING_INTERRUPT" => 7,
    }
}

/// Name of a VMX exit reason as the kernel's `kvm_exit` prints it (`"EPT_VIOLATION"`).
///
/// Only the basic reason (low 16 bits) selects the name; flag bits such as
/// `FAILED_VMENTRY` (bit 31) are ignored. `None` for a reason the kernel does not name:
/// show it as its number.
pub fn vmx_exit_name(code: u32) -> Option<&'static str> {
    name_of(code & 0xffff)
}

/// Basic exit reason for a VMX reason name (`"EPT_VIOLATION"` -> 48). Also accepts the old
/// name `PENDING_INTERRUPT` for 7 and an `EXIT_REASON_` prefix (the `vmx.h` macro names,
/// as bcc's kvmexit prints them).
pub fn vmx_exit_code(name: &str) -> Option<u32> {
    code_of(name).or_else(|| code_of(name.strip_prefix("EXIT_REASON_")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(vmx_exit_name(0), Some("EXCEPTION_NMI"));
        assert_eq!(vmx_exit_name(1), Some("EXTERNAL_INTERRUPT"));
        assert_eq!(vmx_exit_name(12), Some("HLT"));
        assert_eq!(vmx_exit_name(30), Some("IO_INSTRUCTION"));
        assert_eq!(vmx_exit_name(32), Some("MSR_WRITE"));
        assert_eq!(vmx_exit_name(48), Some("EPT_VIOLATION"));
        assert_eq!(vmx_exit_name(49), Some("EPT_MISCONFIG"));
        assert_eq!(vmx_exit_name(52), Some("PREEMPTION_TIMER"));
        assert_eq!(vmx_exit_name(85), Some("MSR_WRITE_IMM"));
        assert_eq!(vmx_exit_code("EPT_VIOLATION"), Some(48));
        assert_eq!(vmx_exit_code("HLT"), Some(12));
    }

    #[test]
    fn unknown_reasons_stay_numbers() {
        for code in [5, 6, 11, 17, 35, 38, 42, 65, 66, 69, 73, 78, 83, 86, 0xffff] {
            assert_eq!(vmx_exit_name(code), None, "reason {code}");
        }
        assert_eq!(vmx_exit_code("hlt"), None, "names are case-sensitive");
        assert_eq!(vmx_exit_code("npf"), None);
    }

    #[test]
    fn flag_bits_are_ignored() {
        // FAILED_VMENTRY | INVALID_STATE, as printed for a failed VM entry.
        assert_eq!(vmx_exit_name(0x8000_0021), Some("INVALID_STATE"));
        // Bit 27 (enclave mode) on EXTERNAL_INTERRUPT.
        assert_eq!(vmx_exit_name(0x0800_0001), Some("EXTERNAL_INTERRUPT"));
    }

    #[test]
    fn aliases() {
        assert_eq!(vmx_exit_code("PENDING_INTERRUPT"), Some(7));
        assert_eq!(vmx_exit_name(7), Some("INTERRUPT_WINDOW"));
        assert_eq!(vmx_exit_code("EXIT_REASON_EPT_VIOLATION"), Some(48));
        assert_eq!(vmx_exit_code("EXIT_REASON_"), None);
    }

    #[test]
    fn every_entry_round_trips() {
        crate::tables::test_support::check_table(ENTRIES, ALIASES, vmx_exit_name, vmx_exit_code);
        assert_eq!(ENTRIES.len(), 66);
        assert!(ENTRIES.iter().all(|&(c, _)| c <= 0xffff));
    }
}
