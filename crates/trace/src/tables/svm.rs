//! AMD SVM exit codes.
//!
//! Source: `SVM_EXIT_REASONS` in `arch/x86/include/uapi/asm/svm.h`, identical to the
//! `__print_symbolic` list in the `kvm_exit` print fmt of Linux 6.18 (which includes
//! `invpcid` 0xa2, `buslock` 0xa5, `idle-halt` 0xa6 and the SEV-ES `vmgexit_*` codes).
//! `mwait_cond` (0x8c) and `rdpru` (0x8e) are defined in `svm.h` but not printed by the
//! kernel; they are named here in the kernel's style so they do not stay bare numbers.
//!
//! Aliases: libtraceevent's kvm plugin (used by `trace-cmd report` and `perf script`)
//! prints its own names, `EXIT_` plus the `svm.h` macro stem (`EXIT_NPF`, `EXIT_IOIO`,
//! `EXIT_EXCP_GP`, `EXIT_ERR`); [`svm_exit_code`] accepts them.

use super::code_table;

/// `SVM_EXIT_ERR` (-1): the 64-bit VMCB exit code of a failed VMRUN.
const SVM_EXIT_ERR: u64 = u64::MAX;

code_table! {
    u64;
    entries {
        0x000 => "read_cr0",
        0x002 => "read_cr2",
        0x003 => "read_cr3",
        0x004 => "read_cr4",
        0x008 => "read_cr8",
        0x010 => "write_cr0",
        0x012 => "write_cr2",
        0x013 => "write_cr3",
        0x014 => "write_cr4",
        0x018 => "write_cr8",
        0x020 => "read_dr0",
        0x021 => "read_dr1",
        0x022 => "read_dr2",
        0x023 => "read_dr3",
        0x024 => "read_dr4",
        0x025 => "read_dr5",
        0x026 => "read_dr6",
        0x027 => "read_dr7",
        0x030 => "write_dr0",
        0x031 => "write_dr1",
        0x032 => "write_dr2",
        0x033 => "write_dr3",
        0x034 => "write_dr4",
        0x035 => "write_dr5",
        0x036 => "write_dr6",
        0x037 => "write_dr7",
        0x040 => "DE excp",
        0x041 => "DB excp",
        0x043 => "BP excp",
        0x044 => "OF excp",
        0x045 => "BR excp",
        0x046 => "UD excp",
        0x047 => "NM excp",
        0x048 => "DF excp",
        0x04a => "TS excp",
        0x04b => "NP excp",
        0x04c => "SS excp",
        0x04d => "GP excp",
        0x04e => "PF excp",
        0x050 => "MF excp",
        0x051 => "AC excp",
        0x052 => "MC excp",
        0x053 => "XF excp",
        0x060 => "interrupt",
        0x061 => "nmi",
        0x062 => "smi",
        0x063 => "init",
        0x064 => "vintr",
        0x065 => "cr0_sel_write",
        0x066 => "read_idtr",
        0x067 => "read_gdtr",
        0x068 => "read_ldtr",
        0x069 => "read_rt",
        0x06a => "write_idtr",
        0x06b => "write_gdtr",
        0x06c => "write_ldtr",
        0x06d => "write_rt",
        0x06e => "rdtsc",
        0x06f => "rdpmc",
        0x070 => "pushf",
        0x071 => "popf",
        0x072 => "cpuid",
        0x073 => "rsm",
        0x074 => "iret",
        0x075 => "swint",
        0x076 => "invd",
        0x077 => "pause",
        0x078 => "hlt",
        0x079 => "invlpg",
        0x07a => "invlpga",
        0x07b => "io",
        0x07c => "msr",
        0x07d => "task_switch",
        0x07e => "ferr_freeze",
        0x07f => "shutdown",
        0x080 => "vmrun",
        0x081 => "hypercall",
        0x082 => "vmload",
        0x083 => "vmsave",
        0x084 => "stgi",
        0x085 => "clgi",
        0x086 => "skinit",
        0x087 => "rdtscp",
        0x088 => "icebp",
        0x089 => "wbinvd",
        0x08a => "monitor",
        0x08b => "mwait",
        0x08c => "mwait_cond",
        0x08d => "xsetbv",
        0x08e => "rdpru",
        0x08f => "write_efer_trap",
        0x090 => "write_cr0_trap",
        0x094 => "write_cr4_trap",
        0x098 => "write_cr8_trap",
        0x0a2 => "invpcid",
        0x0a5 => "buslock",
        0x0a6 => "idle-halt",
        0x400 => "npf",
        0x401 => "avic_incomplete_ipi",
        0x402 => "avic_unaccelerated_access",
        0x403 => "vmgexit",
        0x8000_0001 => "vmgexit_mmio_read",
        0x8000_0002 => "vmgexit_mmio_write",
        0x8000_0003 => "vmgexit_nmi_complete",
        0x8000_0004 => "vmgexit_ap_hlt_loop",
        0x8000_0005 => "vmgexit_ap_jump_table",
        0x8000_0010 => "vmgexit_page_state_change",
        0x8000_0011 => "vmgexit_guest_request",
        0x8000_0012 => "vmgexit_ext_guest_request",
        0x8000_0013 => "vmgexit_ap_creation",
        0x8000_fffd => "vmgexit_hypervisor_feature",
        0xffff_ffff_ffff_ffff => "invalid_guest_state",
    }
    aliases {
        "EXIT_READ_CR0" => 0x000,
        "EXIT_READ_CR2" => 0x002,
        "EXIT_READ_CR3" => 0x003,
        "EXIT_READ_CR4" => 0x004,
        "EXIT_READ_CR8" => 0x008,
        "EXIT_WRITE_CR0" => 0x010,
        "EXIT_WRITE_CR2" => 0x012,
        "EXIT_WRITE_CR3" => 0x013,
        "EXIT_WRITE_CR4" => 0x014,
        "EXIT_WRITE_CR8" => 0x018,
        "EXIT_READ_DR0" => 0x020,
        "EXIT_READ_DR1" => 0x021,
        "EXIT_READ_DR2" => 0x022,
        "EXIT_READ_DR3" => 0x023,
        "EXIT_READ_DR4" => 0x024,
        "EXIT_READ_DR5" => 0x025,
        "EXIT_READ_DR6" => 0x026,
        "EXIT_READ_DR7" => 0x027,
        "EXIT_WRITE_DR0" => 0x030,
        "EXIT_WRITE_DR1" => 0x031,
        "EXIT_WRITE_DR2" => 0x032,
        "EXIT_WRITE_DR3" => 0x033,
        "EXIT_WRITE_DR4" => 0x034,
        "EXIT_WRITE_DR5" => 0x035,
        "EXIT_WRITE_DR6" => 0x036,
        "EXIT_WRITE_DR7" => 0x037,
        "EXIT_EXCP_DE" => 0x040,
        "EXIT_EXCP_DB" => 0x041,
        "EXIT_EXCP_BP" => 0x043,
        "EXIT_EXCP_OF" => 0x044,
        "EXIT_EXCP_BR" => 0x045,
        "EXIT_EXCP_UD" => 0x046,
        "EXIT_EXCP_NM" => 0x047,
        "EXIT_EXCP_DF" => 0x048,
        "EXIT_EXCP_TS" => 0x04a,
        "EXIT_EXCP_NP" => 0x04b,
        "EXIT_EXCP_SS" => 0x04c,
        "EXIT_EXCP_GP" => 0x04d,
        "EXIT_EXCP_PF" => 0x04e,
        "EXIT_EXCP_MF" => 0x050,
        "EXIT_EXCP_AC" => 0x051,
        "EXIT_EXCP_MC" => 0x052,
        "EXIT_EXCP_XF" => 0x053,
        "EXIT_INTR" => 0x060,
        "EXIT_NMI" => 0x061,
        "EXIT_SMI" => 0x062,
        "EXIT_INIT" => 0x063,
        "EXIT_VINTR" => 0x064,
        "EXIT_CR0_SEL_WRITE" => 0x065,
        "EXIT_IDTR_READ" => 0x066,
        "EXIT_GDTR_READ" => 0x067,
        "EXIT_LDTR_READ" => 0x068,
        "EXIT_TR_READ" => 0x069,
        "EXIT_IDTR_WRITE" => 0x06a,
        "EXIT_GDTR_WRITE" => 0x06b,
        "EXIT_LDTR_WRITE" => 0x06c,
        "EXIT_TR_WRITE" => 0x06d,
        "EXIT_RDTSC" => 0x06e,
        "EXIT_RDPMC" => 0x06f,
        "EXIT_PUSHF" => 0x070,
        "EXIT_POPF" => 0x071,
        "EXIT_CPUID" => 0x072,
        "EXIT_RSM" => 0x073,
        "EXIT_IRET" => 0x074,
        "EXIT_SWINT" => 0x075,
        "EXIT_INVD" => 0x076,
        "EXIT_PAUSE" => 0x077,
        "EXIT_HLT" => 0x078,
        "EXIT_INVLPG" => 0x079,
        "EXIT_INVLPGA" => 0x07a,
        "EXIT_IOIO" => 0x07b,
        "EXIT_MSR" => 0x07c,
        "EXIT_TASK_SWITCH" => 0x07d,
        "EXIT_FERR_FREEZE" => 0x07e,
        "EXIT_SHUTDOWN" => 0x07f,
        "EXIT_VMRUN" => 0x080,
        "EXIT_VMMCALL" => 0x081,
        "EXIT_VMLOAD" => 0x082,
        "EXIT_VMSAVE" => 0x083,
        "EXIT_STGI" => 0x084,
        "EXIT_CLGI" => 0x085,
        "EXIT_SKINIT" => 0x086,
        "EXIT_RDTSCP" => 0x087,
        "EXIT_ICEBP" => 0x088,
        "EXIT_WBINVD" => 0x089,
        "EXIT_MONITOR" => 0x08a,
        "EXIT_MWAIT" => 0x08b,
        "EXIT_MWAIT_COND" => 0x08c,
        "EXIT_XSETBV" => 0x08d,
        "EXIT_RDPRU" => 0x08e,
        "EXIT_INVPCID" => 0x0a2,
        "EXIT_NPF" => 0x400,
        "EXIT_AVIC_INCOMPLETE_IPI" => 0x401,
        "EXIT_AVIC_UNACCELERATED_ACCESS" => 0x402,
        "EXIT_ERR" => 0xffff_ffff_ffff_ffff,
    }
}

/// Name of an SVM exit code as the kernel's `kvm_exit` prints it (`"npf"`, `"msr"`,
/// `"PF excp"`, `"vmgexit_page_state_change"`). `None` for a code the kernel does not name:
/// show it as its number.
///
/// `SVM_EXIT_ERR` is -1; the tracepoint stores the exit code in a 32-bit field, so it
/// reaches a trace as `0xffffffff`. Both that and the 64-bit `u64::MAX` name
/// `invalid_guest_state`.
pub fn svm_exit_name(code: u64) -> Option<&'static str> {
    if code == 0xffff_ffff {
        return name_of(SVM_EXIT_ERR);
    }
    name_of(code)
}

/// Exit code for an SVM exit name (`"npf"` -> 0x400), or for the name libtraceevent's kvm
/// plugin prints for it (`"EXIT_NPF"` -> 0x400). `invalid_guest_state` is `u64::MAX`
/// (`SVM_EXIT_ERR`, -1).
pub fn svm_exit_code(name: &str) -> Option<u64> {
    code_of(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(svm_exit_name(0x400), Some("npf"));
        assert_eq!(svm_exit_name(0x7c), Some("msr"));
        assert_eq!(svm_exit_name(0x78), Some("hlt"));
        assert_eq!(svm_exit_name(0x7b), Some("io"));
        assert_eq!(svm_exit_name(0x4e), Some("PF excp"));
        assert_eq!(svm_exit_name(0x60), Some("interrupt"));
        assert_eq!(svm_exit_name(0x64), Some("vintr"));
        assert_eq!(svm_exit_name(0x81), Some("hypercall"));
        assert_eq!(svm_exit_name(0xa6), Some("idle-halt"));
        assert_eq!(svm_exit_name(0x403), Some("vmgexit"));
        assert_eq!(
            svm_exit_name(0x8000_0010),
            Some("vmgexit_page_state_change")
        );
        assert_eq!(
            svm_exit_name(0x8000_fffd),
            Some("vmgexit_hypervisor_feature")
        );
        assert_eq!(svm_exit_code("npf"), Some(0x400));
        assert_eq!(svm_exit_code("msr"), Some(0x7c));
    }

    #[test]
    fn invalid_guest_state_in_both_widths() {
        assert_eq!(svm_exit_name(0xffff_ffff), Some("invalid_guest_state"));
        assert_eq!(svm_exit_name(u64::MAX), Some("invalid_guest_state"));
        assert_eq!(svm_exit_code("invalid_guest_state"), Some(u64::MAX));
        assert_eq!(svm_exit_code("EXIT_ERR"), Some(u64::MAX));
    }

    #[test]
    fn unknown_codes_stay_numbers() {
        // NMI vector 2 and #VC (29) are not in the kernel's exception list.
        for code in [
            0x001,
            0x042,
            0x05d,
            0x091,
            0x404,
            0x8000_0000,
            0x8000_ffff,
            0xfffe,
        ] {
            assert_eq!(svm_exit_name(code), None, "code {code:#x}");
        }
        assert_eq!(svm_exit_code("NPF"), None);
        assert_eq!(svm_exit_code("EPT_VIOLATION"), None);
    }

    #[test]
    fn trace_cmd_plugin_names() {
        assert_eq!(svm_exit_code("EXIT_NPF"), Some(0x400));
        assert_eq!(svm_exit_code("EXIT_RSM"), Some(0x73));
        assert_eq!(svm_exit_code("EXIT_EXCP_GP"), Some(0x4d));
        assert_eq!(svm_exit_code("EXIT_IOIO"), Some(0x7b));
        assert_eq!(svm_exit_code("EXIT_VMMCALL"), Some(0x81));
    }

    #[test]
    fn every_entry_round_trips() {
        crate::tables::test_support::check_table(ENTRIES, ALIASES, svm_exit_name, svm_exit_code);
    }
}
