//! arm64 system registers that guests commonly trap on, by their encoding (op0, op1, CRn, CRm,
//! op2) as the Arm ARM gives it and `kvm_sys_access` prints it, with the register's name as the
//! kernel spells it (`SYS_` prefix dropped) and what a trap of it usually means.
//!
//! A trace.dat carries `kvm_sys_access`'s name only as a kernel pointer, so the name of a
//! binary record comes from here; text traces print the name themselves.

/// A system-register encoding: op0, op1, CRn, CRm, op2.
pub type SysRegEnc = [u8; 5];

/// What a trapped access to a register usually means.
pub fn sysreg_meaning(name: &str) -> Option<&'static str> {
    let n = name.strip_prefix("SYS_").unwrap_or(name);
    Some(match n {
        "ICC_SGI1R_EL1" | "ICC_ASGI1R_EL1" | "ICC_SGI0R_EL1" => {
            "guest IPI (SGI): one trap per IPI sent (GICv4.1 vSGIs still trap the write)"
        }
        "CNTV_CTL_EL0" | "CNTV_CVAL_EL0" | "CNTV_TVAL_EL0" => "virtual timer programmed",
        "CNTP_CTL_EL0" | "CNTP_CVAL_EL0" | "CNTP_TVAL_EL0" => {
            "physical timer programmed (trapped unless the host gives it to the guest)"
        }
        "CNTPCT_EL0" | "CNTVCT_EL0" | "CNTPCTSS_EL0" | "CNTVCTSS_EL0" => "counter read",
        "CTR_EL0" => "cache type read (traps without FEAT_EVT's TID4 split)",
        "DC_ISW" | "DC_CSW" | "DC_CISW" => "cache maintenance by set/way (emulated, costly)",
        "ICC_IAR1_EL1" | "ICC_EOIR1_EL1" | "ICC_DIR_EL1" | "ICC_PMR_EL1" | "ICC_CTLR_EL1"
        | "ICC_IGRPEN1_EL1" => "GIC CPU interface (trapped for a GICv2-on-v3 or errata setup)",
        "OSLAR_EL1" | "OSLSR_EL1" | "OSDLR_EL1" | "MDSCR_EL1" | "MDCCINT_EL1" => {
            "debug state (boot, or a debugger in the guest)"
        }
        "SCTLR_EL1" | "TTBR0_EL1" | "TTBR1_EL1" | "TCR_EL1" | "MAIR_EL1" | "AMAIR_EL1"
        | "CONTEXTIDR_EL1" | "ACTLR_EL1" => {
            "MMU control (trapped while the host tracks it, e.g. for set/way)"
        }
        _ if n.starts_with("PM") => "PMU register (vPMU: guest perf)",
        _ if n.starts_with("ID_") => "ID register read (boot, feature probing)",
        _ => return None,
    })
}

macro_rules! sysregs {
    ($($enc:pat => $name:literal,)*) => {
        /// The name of a register encoding, when it is one of the common ones.
        pub fn sysreg_name(enc: SysRegEnc) -> Option<&'static str> {
            match enc {
                $($enc => Some($name),)*
                [3, 0, 0, crm @ 1..=7, _] => Some(id_reg_name(crm, enc[4])),
                [3, 3, 14, crm @ 8..=11, op2] => Some(PMEVCNTR[usize::from((crm - 8) * 8 + op2)]),
                [3, 3, 14, crm @ 12..=15, op2] => Some(PMEVTYPER[usize::from((crm - 12) * 8 + op2)]),
                _ => None,
            }
        }
    };
}

sysregs! {
    [3, 0, 12, 11, 5] => "ICC_SGI1R_EL1",
    [3, 0, 12, 11, 6] => "ICC_ASGI1R_EL1",
    [3, 0, 12, 11, 7] => "ICC_SGI0R_EL1",
    [3, 0, 12, 11, 1] => "ICC_DIR_EL1",
    [3, 0, 12, 12, 0] => "ICC_IAR1_EL1",
    [3, 0, 12, 12, 1] => "ICC_EOIR1_EL1",
    [3, 0, 12, 12, 4] => "ICC_CTLR_EL1",
    [3, 0, 12, 12, 7] => "ICC_IGRPEN1_EL1",
    [3, 0, 4, 6, 0] => "ICC_PMR_EL1",
    [3, 3, 14, 0, 1] => "CNTPCT_EL0",
    [3, 3, 14, 0, 2] => "CNTVCT_EL0",
    [3, 3, 14, 0, 5] => "CNTPCTSS_EL0",
    [3, 3, 14, 0, 6] => "CNTVCTSS_EL0",
    [3, 3, 14, 2, 0] => "CNTP_TVAL_EL0",
    [3, 3, 14, 2, 1] => "CNTP_CTL_EL0",
    [3, 3, 14, 2, 2] => "CNTP_CVAL_EL0",
    [3, 3, 14, 3, 0] => "CNTV_TVAL_EL0",
    [3, 3, 14, 3, 1] => "CNTV_CTL_EL0",
    [3, 3, 14, 3, 2] => "CNTV_CVAL_EL0",
    [3, 3, 0, 0, 1] => "CTR_EL0",
    [3, 0, 1, 0, 0] => "SCTLR_EL1",
    [3, 0, 1, 0, 1] => "ACTLR_EL1",
    [3, 0, 2, 0, 0] => "TTBR0_EL1",
    [3, 0, 2, 0, 1] => "TTBR1_EL1",
    [3, 0, 2, 0, 2] => "TCR_EL1",
    [3, 0, 10, 2, 0] => "MAIR_EL1",
    [3, 0, 10, 3, 0] => "AMAIR_EL1",
    [3, 0, 13, 0, 1] => "CONTEXTIDR_EL1",
    [1, 0, 7, 6, 2] => "DC_ISW",
    [1, 0, 7, 10, 2] => "DC_CSW",
    [1, 0, 7, 14, 2] => "DC_CISW",
    [2, 0, 1, 0, 4] => "OSLAR_EL1",
    [2, 0, 1, 1, 4] => "OSLSR_EL1",
    [2, 0, 1, 3, 4] => "OSDLR_EL1",
    [2, 0, 0, 2, 2] => "MDSCR_EL1",
    [2, 0, 0, 2, 0] => "MDCCINT_EL1",
    [3, 3, 9, 12, 0] => "PMCR_EL0",
    [3, 3, 9, 12, 1] => "PMCNTENSET_EL0",
    [3, 3, 9, 12, 2] => "PMCNTENCLR_EL0",
    [3, 3, 9, 12, 3] => "PMOVSCLR_EL0",
    [3, 3, 9, 12, 4] => "PMSWINC_EL0",
    [3, 3, 9, 12, 5] => "PMSELR_EL0",
    [3, 3, 9, 12, 6] => "PMCEID0_EL0",
    [3, 3, 9, 12, 7] => "PMCEID1_EL0",
    [3, 3, 9, 13, 0] => "PMCCNTR_EL0",
    [3, 3, 9, 13, 1] => "PMXEVTYPER_EL0",
    [3, 3, 9, 13, 2] => "PMXEVCNTR_EL0",
    [3, 3, 9, 14, 0] => "PMUSERENR_EL0",
    [3, 3, 9, 14, 3] => "PMOVSSET_EL0",
    [3, 0, 9, 14, 1] => "PMINTENSET_EL1",
    [3, 0, 9, 14, 2] => "PMINTENCLR_EL1",
    [3, 3, 14, 15, 7] => "PMCCFILTR_EL0",
}

const PMEVCNTR: [&str; 32] = [
    "PMEVCNTR0_EL0",
    "PMEVCNTR1_EL0",
    "PMEVCNTR2_EL0",
    "PMEVCNTR3_EL0",
    "PMEVCNTR4_EL0",
    "PMEVCNTR5_EL0",
    "PMEVCNTR6_EL0",
    "PMEVCNTR7_EL0",
    "PMEVCNTR8_EL0",
    "PMEVCNTR9_EL0",
    "PMEVCNTR10_EL0",
    "PMEVCNTR11_EL0",
    "PMEVCNTR12_EL0",
    "PMEVCNTR13_EL0",
    "PMEVCNTR14_EL0",
    "PMEVCNTR15_EL0",
    "PMEVCNTR16_EL0",
    "PMEVCNTR17_EL0",
    "PMEVCNTR18_EL0",
    "PMEVCNTR19_EL0",
    "PMEVCNTR20_EL0",
    "PMEVCNTR21_EL0",
    "PMEVCNTR22_EL0",
    "PMEVCNTR23_EL0",
    "PMEVCNTR24_EL0",
    "PMEVCNTR25_EL0",
    "PMEVCNTR26_EL0",
    "PMEVCNTR27_EL0",
    "PMEVCNTR28_EL0",
    "PMEVCNTR29_EL0",
    "PMEVCNTR30_EL0",
    "PMEVCNTR31_EL0",
];

const PMEVTYPER: [&str; 32] = [
    "PMEVTYPER0_EL0",
    "PMEVTYPER1_EL0",
    "PMEVTYPER2_EL0",
    "PMEVTYPER3_EL0",
    "PMEVTYPER4_EL0",
    "PMEVTYPER5_EL0",
    "PMEVTYPER6_EL0",
    "PMEVTYPER7_EL0",
    "PMEVTYPER8_EL0",
    "PMEVTYPER9_EL0",
    "PMEVTYPER10_EL0",
    "PMEVTYPER11_EL0",
    "PMEVTYPER12_EL0",
    "PMEVTYPER13_EL0",
    "PMEVTYPER14_EL0",
    "PMEVTYPER15_EL0",
    "PMEVTYPER16_EL0",
    "PMEVTYPER17_EL0",
    "PMEVTYPER18_EL0",
    "PMEVTYPER19_EL0",
    "PMEVTYPER20_EL0",
    "PMEVTYPER21_EL0",
    "PMEVTYPER22_EL0",
    "PMEVTYPER23_EL0",
    "PMEVTYPER24_EL0",
    "PMEVTYPER25_EL0",
    "PMEVTYPER26_EL0",
    "PMEVTYPER27_EL0",
    "PMEVTYPER28_EL0",
    "PMEVTYPER29_EL0",
    "PMEVTYPER30_EL0",
    "PMEVTYPER31_EL0",
];

/// The ID-register space (op0 3, op1 0, CRn 0, CRm 1-7): named ones, else a generic name.
fn id_reg_name(crm: u8, op2: u8) -> &'static str {
    match (crm, op2) {
        (4, 0) => "ID_AA64PFR0_EL1",
        (4, 1) => "ID_AA64PFR1_EL1",
        (4, 4) => "ID_AA64ZFR0_EL1",
        (5, 0) => "ID_AA64DFR0_EL1",
        (5, 1) => "ID_AA64DFR1_EL1",
        (6, 0) => "ID_AA64ISAR0_EL1",
        (6, 1) => "ID_AA64ISAR1_EL1",
        (6, 2) => "ID_AA64ISAR2_EL1",
        (7, 0) => "ID_AA64MMFR0_EL1",
        (7, 1) => "ID_AA64MMFR1_EL1",
        (7, 2) => "ID_AA64MMFR2_EL1",
        (1, 0) => "ID_PFR0_EL1",
        (1, 1) => "ID_PFR1_EL1",
        (1, 2) => "ID_DFR0_EL1",
        (1, 4) => "ID_MMFR0_EL1",
        (2, 0) => "ID_ISAR0_EL1",
        _ => "ID_(other)_EL1",
    }
}

/// The register and direction of a trapped MSR/MRS from the ISS of its ESR (exception class
/// 0x18): op0 [21:20], op2 [19:17], op1 [16:14], CRn [13:10], CRm [4:1], direction [0]
/// (1 = read). `None` when the ESR is not of class 0x18.
pub fn sysreg_from_esr(esr: u64) -> Option<(SysRegEnc, bool)> {
    if (esr >> 26) & 0x3f != 0x18 {
        return None;
    }
    let f = |shift: u32, bits: u32| ((esr >> shift) & ((1 << bits) - 1)) as u8;
    let enc = [f(20, 2), f(14, 3), f(10, 4), f(1, 4), f(17, 3)];
    Some((enc, esr & 1 == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_registers_and_their_meaning() {
        assert_eq!(sysreg_name([3, 0, 12, 11, 5]), Some("ICC_SGI1R_EL1"));
        assert_eq!(sysreg_name([3, 3, 14, 3, 1]), Some("CNTV_CTL_EL0"));
        assert_eq!(sysreg_name([3, 0, 0, 4, 0]), Some("ID_AA64PFR0_EL1"));
        assert_eq!(sysreg_name([3, 3, 14, 9, 2]), Some("PMEVCNTR10_EL0"));
        assert_eq!(sysreg_name([3, 3, 14, 15, 6]), Some("PMEVTYPER30_EL0"));
        assert_eq!(sysreg_name([3, 3, 14, 15, 7]), Some("PMCCFILTR_EL0"));
        assert_eq!(sysreg_name([3, 7, 15, 15, 7]), None);
        assert!(sysreg_meaning("SYS_ICC_SGI1R_EL1").unwrap().contains("IPI"));
        assert!(sysreg_meaning("ID_AA64MMFR0_EL1")
            .unwrap()
            .contains("ID register"));
        assert!(sysreg_meaning("PMCR_EL0").unwrap().contains("PMU"));
        assert_eq!(sysreg_meaning("TPIDR_EL0"), None);
    }

    #[test]
    fn esr_iss_gives_the_register_and_direction() {
        // MSR ICC_SGI1R_EL1, x1: EC 0x18, op0 3, op2 5, op1 0, CRn 12, Rt 1, CRm 11, write.
        let esr =
            (0x18u64 << 26) | (1 << 25) | (3 << 20) | (5 << 17) | (12 << 10) | (1 << 5) | (11 << 1);
        assert_eq!(sysreg_from_esr(esr), Some(([3, 0, 12, 11, 5], true)));
        assert_eq!(sysreg_from_esr(esr | 1), Some(([3, 0, 12, 11, 5], false)));
        assert_eq!(sysreg_from_esr(0x1 << 26), None);
    }
}
