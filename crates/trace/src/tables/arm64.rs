//! arm64 exception classes (ESR_ELx.EC, bits 31:26).
//!
//! Source: `ESR_ELx_EC_*` in `arch/arm64/include/asm/esr.h`. The arm64 `kvm_exit`
//! tracepoint prints `HSR_EC: 0x%04x (%s)` with the names of `kvm_arm_exception_class`
//! (`arch/arm64/include/asm/kvm_arm.h`: `ECN(x)` = the macro stem, e.g. `DABT_LOW`); the
//! classes that list leaves out (`ILL`, `SVC32`, `HVC32`, `SMC32`, `OTHER`, `BTI`, `FPAC`,
//! `SME`, `MOPS`, `GCS`) are named here the same way, so a class the kernel prints only as
//! a number still gets its `esr.h` name.
//!
//! Aliases: the `esr.h` macro names (`ESR_ELx_EC_DABT_LOW`), as libtraceevent's kvm plugin
//! prints them.

use super::code_table;

code_table! {
    u32;
    entries {
        0x00 => "UNKNOWN",
        0x01 => "WFx",
        0x03 => "CP15_32",
        0x04 => "CP15_64",
        0x05 => "CP14_MR",
        0x06 => "CP14_LS",
        0x07 => "FP_ASIMD",
        0x08 => "CP10_ID",
        0x09 => "PAC",
        0x0a => "OTHER",
        0x0c => "CP14_64",
        0x0d => "BTI",
        0x0e => "ILL",
        0x11 => "SVC32",
        0x12 => "HVC32",
        0x13 => "SMC32",
        0x15 => "SVC64",
        0x16 => "HVC64",
        0x17 => "SMC64",
        0x18 => "SYS64",
        0x19 => "SVE",
        0x1a => "ERET",
        0x1c => "FPAC",
        0x1d => "SME",
        0x1f => "IMP_DEF",
        0x20 => "IABT_LOW",
        0x21 => "IABT_CUR",
        0x22 => "PC_ALIGN",
        0x24 => "DABT_LOW",
        0x25 => "DABT_CUR",
        0x26 => "SP_ALIGN",
        0x27 => "MOPS",
        0x28 => "FP_EXC32",
        0x2c => "FP_EXC64",
        0x2d => "GCS",
        0x2f => "SERROR",
        0x30 => "BREAKPT_LOW",
        0x31 => "BREAKPT_CUR",
        0x32 => "SOFTSTP_LOW",
        0x33 => "SOFTSTP_CUR",
        0x34 => "WATCHPT_LOW",
        0x35 => "WATCHPT_CUR",
        0x38 => "BKPT32",
        0x3a => "VECTOR32",
        0x3c => "BRK64",
    }
    aliases {}
}

/// Name of an arm64 exception class as `kvm_exit` prints it in parentheses after
/// `HSR_EC:` (`0x24` -> `"DABT_LOW"`). Only the low 6 bits are the class; a larger value
/// (a whole ESR passed by mistake) is not guessed at and gives `None`.
pub fn arm64_ec_name(ec: u32) -> Option<&'static str> {
    name_of(ec)
}

/// Exception class for a name (`"DABT_LOW"` -> 0x24); also accepts the `esr.h` macro name
/// (`"ESR_ELx_EC_DABT_LOW"`).
pub fn arm64_ec_code(name: &str) -> Option<u32> {
    code_of(name).or_else(|| code_of(name.strip_prefix("ESR_ELx_EC_")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(arm64_ec_name(0x00), Some("UNKNOWN"));
        assert_eq!(arm64_ec_name(0x01), Some("WFx"));
        assert_eq!(arm64_ec_name(0x16), Some("HVC64"));
        assert_eq!(arm64_ec_name(0x18), Some("SYS64"));
        assert_eq!(arm64_ec_name(0x20), Some("IABT_LOW"));
        assert_eq!(arm64_ec_name(0x24), Some("DABT_LOW"));
        assert_eq!(arm64_ec_name(0x3c), Some("BRK64"));
        assert_eq!(arm64_ec_code("DABT_LOW"), Some(0x24));
        assert_eq!(arm64_ec_code("WFx"), Some(0x01));
        assert_eq!(arm64_ec_code("ESR_ELx_EC_SYS64"), Some(0x18));
    }

    #[test]
    fn unallocated_classes_stay_numbers() {
        for ec in [
            0x02, 0x0b, 0x0f, 0x10, 0x14, 0x1b, 0x1e, 0x23, 0x29, 0x2e, 0x36, 0x3f, 0x40,
        ] {
            assert_eq!(arm64_ec_name(ec), None, "ec {ec:#x}");
        }
        assert_eq!(arm64_ec_code("WFX"), None, "names are case-sensitive");
        assert_eq!(arm64_ec_code("ESR_ELx_EC_"), None);
    }

    #[test]
    fn every_entry_round_trips() {
        crate::tables::test_support::check_table(ENTRIES, ALIASES, arm64_ec_name, arm64_ec_code);
        assert!(ENTRIES.iter().all(|&(c, _)| c <= 0x3f));
        for &(code, name) in ENTRIES {
            assert_eq!(arm64_ec_code(&format!("ESR_ELx_EC_{name}")), Some(code));
        }
    }
}
