//! KVM userspace exit reasons (`kvm_run.exit_reason`, `KVM_EXIT_*`).
//!
//! Source: `include/uapi/linux/kvm.h`. A 6.18 kernel's `kvm_userspace_exit` print fmt names
//! only 0..=30 (up to `KVM_EXIT_X86_WRMSR`) and prints newer reasons as a bare number
//! (`reason 0x1d (29)` on kernels older than the name); those are named here from `kvm.h`:
//! 31 `DIRTY_RING_FULL`, 32 `AP_RESET_HOLD`, 33 `X86_BUS_LOCK`, 34 `XEN`, 35 `RISCV_SBI`,
//! 36 `RISCV_CSR`, 37 `NOTIFY`, 38 `LOONGARCH_IOCSR`, 39 `MEMORY_FAULT`, 40 `TDX`,
//! 41 `ARM_SEA`.

use super::code_table;

code_table! {
    u32;
    entries {
        0 => "KVM_EXIT_UNKNOWN",
        1 => "KVM_EXIT_EXCEPTION",
        2 => "KVM_EXIT_IO",
        3 => "KVM_EXIT_HYPERCALL",
        4 => "KVM_EXIT_DEBUG",
        5 => "KVM_EXIT_HLT",
        6 => "KVM_EXIT_MMIO",
        7 => "KVM_EXIT_IRQ_WINDOW_OPEN",
        8 => "KVM_EXIT_SHUTDOWN",
        9 => "KVM_EXIT_FAIL_ENTRY",
        10 => "KVM_EXIT_INTR",
        11 => "KVM_EXIT_SET_TPR",
        12 => "KVM_EXIT_TPR_ACCESS",
        13 => "KVM_EXIT_S390_SIEIC",
        14 => "KVM_EXIT_S390_RESET",
        15 => "KVM_EXIT_DCR",
        16 => "KVM_EXIT_NMI",
        17 => "KVM_EXIT_INTERNAL_ERROR",
        18 => "KVM_EXIT_OSI",
        19 => "KVM_EXIT_PAPR_HCALL",
        20 => "KVM_EXIT_S390_UCONTROL",
        21 => "KVM_EXIT_WATCHDOG",
        22 => "KVM_EXIT_S390_TSCH",
        23 => "KVM_EXIT_EPR",
        24 => "KVM_EXIT_SYSTEM_EVENT",
        25 => "KVM_EXIT_S390_STSI",
        26 => "KVM_EXIT_IOAPIC_EOI",
        27 => "KVM_EXIT_HYPERV",
        28 => "KVM_EXIT_ARM_NISV",
        29 => "KVM_EXIT_X86_RDMSR",
        30 => "KVM_EXIT_X86_WRMSR",
        31 => "KVM_EXIT_DIRTY_RING_FULL",
        32 => "KVM_EXIT_AP_RESET_HOLD",
        33 => "KVM_EXIT_X86_BUS_LOCK",
        34 => "KVM_EXIT_XEN",
        35 => "KVM_EXIT_RISCV_SBI",
        36 => "KVM_EXIT_RISCV_CSR",
        37 => "KVM_EXIT_NOTIFY",
        38 => "KVM_EXIT_LOONGARCH_IOCSR",
        39 => "KVM_EXIT_MEMORY_FAULT",
        40 => "KVM_EXIT_TDX",
        41 => "KVM_EXIT_ARM_SEA",
    }
    aliases {}
}

/// Name of a KVM userspace exit reason (`2` -> `"KVM_EXIT_IO"`). `None` for a reason newer
/// than this table: show it as its number.
pub fn userspace_exit_name(reason: u32) -> Option<&'static str> {
    name_of(reason)
}

/// Reason number for a `KVM_EXIT_*` name; the `KVM_EXIT_` prefix may be left out
/// (`"IO"` -> 2), as `kvm_stat` shows child events.
pub fn userspace_exit_code(name: &str) -> Option<u32> {
    code_of(name).or_else(|| {
        if name.starts_with("KVM_EXIT_") || name.is_empty() {
            return None;
        }
        // A bounded stack buffer would do too; names are short and this is not a hot path.
        code_of(&format!("KVM_EXIT_{name}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(userspace_exit_name(2), Some("KVM_EXIT_IO"));
        assert_eq!(userspace_exit_name(6), Some("KVM_EXIT_MMIO"));
        assert_eq!(userspace_exit_name(5), Some("KVM_EXIT_HLT"));
        assert_eq!(userspace_exit_name(29), Some("KVM_EXIT_X86_RDMSR"));
        assert_eq!(userspace_exit_name(31), Some("KVM_EXIT_DIRTY_RING_FULL"));
        assert_eq!(userspace_exit_name(33), Some("KVM_EXIT_X86_BUS_LOCK"));
        assert_eq!(userspace_exit_name(37), Some("KVM_EXIT_NOTIFY"));
        assert_eq!(userspace_exit_name(39), Some("KVM_EXIT_MEMORY_FAULT"));
        assert_eq!(userspace_exit_code("KVM_EXIT_IO"), Some(2));
        assert_eq!(userspace_exit_code("IO"), Some(2));
        assert_eq!(userspace_exit_code("MEMORY_FAULT"), Some(39));
    }

    #[test]
    fn unknown_reasons_stay_numbers() {
        assert_eq!(userspace_exit_name(42), None);
        assert_eq!(userspace_exit_name(u32::MAX), None);
        assert_eq!(userspace_exit_code("KVM_EXIT_"), None);
        assert_eq!(userspace_exit_code("KVM_EXIT_KVM_EXIT_IO"), None);
        assert_eq!(userspace_exit_code("io"), None);
    }

    #[test]
    fn every_entry_round_trips() {
        crate::tables::test_support::check_table(
            ENTRIES,
            ALIASES,
            userspace_exit_name,
            userspace_exit_code,
        );
        // Dense 0..=41: every number up to the newest is named.
        for (i, &(code, _)) in ENTRIES.iter().enumerate() {
            assert_eq!(code as usize, i);
        }
    }
}
