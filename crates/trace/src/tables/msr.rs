//! MSR names and a coarse classification.
//!
//! Names: the Intel SDM architectural name (`IA32_*`, also used for the x86-64 MSRs AMD
//! defined: `IA32_EFER`, `IA32_LSTAR`, `IA32_FMASK`, ...) where the SDM has one; otherwise
//! the name in the kernel's `arch/x86/include/asm/msr-index.h` without its `MSR_` prefix
//! (`K7_EVNTSEL0`, `F15H_PERF_CTL0`, `AMD64_SEV`); `KVM_*` from `asm/kvm_para.h`;
//! `HV_X64_MSR_*` from `asm/hyperv-tlfs.h`; x2APIC registers as `X2APIC_<register>`
//! (MSR 0x800 + MMIO offset / 16: `X2APIC_ICR` 0x830, `X2APIC_TMICT` 0x838).
//!
//! Covered: TSC/TSC_ADJUST/TSC_DEADLINE/TSC_AUX, APIC base, the x2APIC registers, Intel
//! architectural PMU (PMCx, full-width A_PMCx, PERFEVTSELx, FIXED_CTRx, global
//! control/status), AMD PMU (K7 and F15H counters, global control), EFER/STAR/LSTAR/CSTAR/
//! FMASK, FS/GS/KERNEL_GS base, PAT and MTRRs, SPEC_CTRL/PRED_CMD/FLUSH_CMD/
//! ARCH_CAPABILITIES, MISC_ENABLE, SYSENTER, machine check (MCG_*, MCi_* for 32 banks),
//! power (PERF_CTL/STATUS, MPERF/APERF, HWP, RAPL energy counters), VMX capability MSRs,
//! CET, kvmclock and the other KVM paravirtual MSRs, Hyper-V synthetic MSRs (SynIC, SINTx,
//! synthetic timers, reference TSC, crash), SVM/SEV MSRs.

use super::code_table;

code_table! {
    u32;
    entries {
        0x10 => "IA32_TSC",
        0x11 => "KVM_WALL_CLOCK",
        0x12 => "KVM_SYSTEM_TIME",
        0x17 => "IA32_PLATFORM_ID",
        0x1b => "IA32_APIC_BASE",
        0x34 => "SMI_COUNT",
        0x3a => "IA32_FEATURE_CONTROL",
        0x3b => "IA32_TSC_ADJUST",
        0x48 => "IA32_SPEC_CTRL",
        0x49 => "IA32_PRED_CMD",
        0x4e => "IA32_PPIN_CTL",
        0x4f => "IA32_PPIN",
        0x79 => "IA32_BIOS_UPDT_TRIG",
        0x8b => "IA32_BIOS_SIGN_ID",
        0xc1 => "IA32_PMC0",
        0xc2 => "IA32_PMC1",
        0xc3 => "IA32_PMC2",
        0xc4 => "IA32_PMC3",
        0xc5 => "IA32_PMC4",
        0xc6 => "IA32_PMC5",
        0xc7 => "IA32_PMC6",
        0xc8 => "IA32_PMC7",
        0xce => "PLATFORM_INFO",
        0xcf => "IA32_CORE_CAPABILITIES",
        0xe1 => "IA32_UMWAIT_CONTROL",
        0xe2 => "PKG_CST_CONFIG_CONTROL",
        0xe7 => "IA32_MPERF",
        0xe8 => "IA32_APERF",
        0xfe => "IA32_MTRRCAP",
        0x10a => "IA32_ARCH_CAPABILITIES",
        0x10b => "IA32_FLUSH_CMD",
        0x122 => "IA32_TSX_CTRL",
        0x140 => "MISC_FEATURES_ENABLES",
        0x174 => "IA32_SYSENTER_CS",
        0x175 => "IA32_SYSENTER_ESP",
        0x176 => "IA32_SYSENTER_EIP",
        0x179 => "IA32_MCG_CAP",
        0x17a => "IA32_MCG_STATUS",
        0x17b => "IA32_MCG_CTL",
        0x186 => "IA32_PERFEVTSEL0",
        0x187 => "IA32_PERFEVTSEL1",
        0x188 => "IA32_PERFEVTSEL2",
        0x189 => "IA32_PERFEVTSEL3",
        0x18a => "IA32_PERFEVTSEL4",
        0x18b => "IA32_PERFEVTSEL5",
        0x18c => "IA32_PERFEVTSEL6",
        0x18d => "IA32_PERFEVTSEL7",
        0x198 => "IA32_PERF_STATUS",
        0x199 => "IA32_PERF_CTL",
        0x19a => "IA32_CLOCK_MODULATION",
        0x19b => "IA32_THERM_INTERRUPT",
        0x19c => "IA32_THERM_STATUS",
        0x1a0 => "IA32_MISC_ENABLE",
        0x1ad => "TURBO_RATIO_LIMIT",
        0x1b0 => "IA32_ENERGY_PERF_BIAS",
        0x1b1 => "IA32_PACKAGE_THERM_STATUS",
        0x1b2 => "IA32_PACKAGE_THERM_INTERRUPT",
        0x1c4 => "IA32_XFD",
        0x1c5 => "IA32_XFD_ERR",
        0x1d9 => "IA32_DEBUGCTL",
        0x200 => "IA32_MTRR_PHYSBASE0",
        0x201 => "IA32_MTRR_PHYSMASK0",
        0x202 => "IA32_MTRR_PHYSBASE1",
        0x203 => "IA32_MTRR_PHYSMASK1",
        0x204 => "IA32_MTRR_PHYSBASE2",
        0x205 => "IA32_MTRR_PHYSMASK2",
        0x206 => "IA32_MTRR_PHYSBASE3",
        0x207 => "IA32_MTRR_PHYSMASK3",
        0x208 => "IA32_MTRR_PHYSBASE4",
        0x209 => "IA32_MTRR_PHYSMASK4",
        0x20a => "IA32_MTRR_PHYSBASE5",
        0x20b => "IA32_MTRR_PHYSMASK5",
        0x20c => "IA32_MTRR_PHYSBASE6",
        0x20d => "IA32_MTRR_PHYSMASK6",
        0x20e => "IA32_MTRR_PHYSBASE7",
        0x20f => "IA32_MTRR_PHYSMASK7",
        0x210 => "IA32_MTRR_PHYSBASE8",
        0x211 => "IA32_MTRR_PHYSMASK8",
        0x212 => "IA32_MTRR_PHYSBASE9",
        0x213 => "IA32_MTRR_PHYSMASK9",
        0x250 => "IA32_MTRR_FIX64K_00000",
        0x258 => "IA32_MTRR_FIX16K_80000",
        0x259 => "IA32_MTRR_FIX16K_A0000",
        0x268 => "IA32_MTRR_FIX4K_C0000",
        0x269 => "IA32_MTRR_FIX4K_C8000",
        0x26a => "IA32_MTRR_FIX4K_D0000",
        0x26b => "IA32_MTRR_FIX4K_D8000",
        0x26c => "IA32_MTRR_FIX4K_E0000",
        0x26d => "IA32_MTRR_FIX4K_E8000",
        0x26e => "IA32_MTRR_FIX4K_F0000",
        0x26f => "IA32_MTRR_FIX4K_F8000",
        0x277 => "IA32_PAT",
        0x280 => "IA32_MC0_CTL2",
        0x281 => "IA32_MC1_CTL2",
        0x282 => "IA32_MC2_CTL2",
        0x283 => "IA32_MC3_CTL2",
        0x284 => "IA32_MC4_CTL2",
        0x285 => "IA32_MC5_CTL2",
        0x286 => "IA32_MC6_CTL2",
        0x287 => "IA32_MC7_CTL2",
        0x288 => "IA32_MC8_CTL2",
        0x289 => "IA32_MC9_CTL2",
        0x28a => "IA32_MC10_CTL2",
        0x28b => "IA32_MC11_CTL2",
        0x28c => "IA32_MC12_CTL2",
        0x28d => "IA32_MC13_CTL2",
        0x28e => "IA32_MC14_CTL2",
        0x28f => "IA32_MC15_CTL2",
        0x290 => "IA32_MC16_CTL2",
        0x291 => "IA32_MC17_CTL2",
        0x292 => "IA32_MC18_CTL2",
        0x293 => "IA32_MC19_CTL2",
        0x294 => "IA32_MC20_CTL2",
        0x295 => "IA32_MC21_CTL2",
        0x296 => "IA32_MC22_CTL2",
        0x297 => "IA32_MC23_CTL2",
        0x298 => "IA32_MC24_CTL2",
        0x299 => "IA32_MC25_CTL2",
        0x29a => "IA32_MC26_CTL2",
        0x29b => "IA32_MC27_CTL2",
        0x29c => "IA32_MC28_CTL2",
        0x29d => "IA32_MC29_CTL2",
        0x29e => "IA32_MC30_CTL2",
        0x29f => "IA32_MC31_CTL2",
        0x2ff => "IA32_MTRR_DEF_TYPE",
        0x309 => "IA32_FIXED_CTR0",
        0x30a => "IA32_FIXED_CTR1",
        0x30b => "IA32_FIXED_CTR2",
        0x30c => "IA32_FIXED_CTR3",
        0x345 => "IA32_PERF_CAPABILITIES",
        0x38d => "IA32_FIXED_CTR_CTRL",
        0x38e => "IA32_PERF_GLOBAL_STATUS",
        0x38f => "IA32_PERF_GLOBAL_CTRL",
        0x390 => "IA32_PERF_GLOBAL_OVF_CTRL",
        0x391 => "IA32_PERF_GLOBAL_STATUS_SET",
        0x392 => "IA32_PERF_GLOBAL_INUSE",
        0x3f1 => "IA32_PEBS_ENABLE",
        0x3f2 => "PEBS_DATA_CFG",
        0x400 => "IA32_MC0_CTL",
        0x401 => "IA32_MC0_STATUS",
        0x402 => "IA32_MC0_ADDR",
        0x403 => "IA32_MC0_MISC",
        0x404 => "IA32_MC1_CTL",
        0x405 => "IA32_MC1_STATUS",
        0x406 => "IA32_MC1_ADDR",
        0x407 => "IA32_MC1_MISC",
        0x408 => "IA32_MC2_CTL",
        0x409 => "IA32_MC2_STATUS",
        0x40a => "IA32_MC2_ADDR",
        0x40b => "IA32_MC2_MISC",
        0x40c => "IA32_MC3_CTL",
        0x40d => "IA32_MC3_STATUS",
        0x40e => "IA32_MC3_ADDR",
        0x40f => "IA32_MC3_MISC",
        0x410 => "IA32_MC4_CTL",
        0x411 => "IA32_MC4_STATUS",
        0x412 => "IA32_MC4_ADDR",
        0x413 => "IA32_MC4_MISC",
        0x414 => "IA32_MC5_CTL",
        0x415 => "IA32_MC5_STATUS",
        0x416 => "IA32_MC5_ADDR",
        0x417 => "IA32_MC5_MISC",
        0x418 => "IA32_MC6_CTL",
        0x419 => "IA32_MC6_STATUS",
        0x41a => "IA32_MC6_ADDR",
        0x41b => "IA32_MC6_MISC",
        0x41c => "IA32_MC7_CTL",
        0x41d => "IA32_MC7_STATUS",
        0x41e => "IA32_MC7_ADDR",
        0x41f => "IA32_MC7_MISC",
        0x420 => "IA32_MC8_CTL",
        0x421 => "IA32_MC8_STATUS",
        0x422 => "IA32_MC8_ADDR",
        0x423 => "IA32_MC8_MISC",
        0x424 => "IA32_MC9_CTL",
        0x425 => "IA32_MC9_STATUS",
        0x426 => "IA32_MC9_ADDR",
        0x427 => "IA32_MC9_MISC",
        0x428 => "IA32_MC10_CTL",
        0x429 => "IA32_MC10_STATUS",
        0x42a => "IA32_MC10_ADDR",
        0x42b => "IA32_MC10_MISC",
        0x42c => "IA32_MC11_CTL",
        0x42d => "IA32_MC11_STATUS",
        0x42e => "IA32_MC11_ADDR",
        0x42f => "IA32_MC11_MISC",
        0x430 => "IA32_MC12_CTL",
        0x431 => "IA32_MC12_STATUS",
        0x432 => "IA32_MC12_ADDR",
        0x433 => "IA32_MC12_MISC",
        0x434 => "IA32_MC13_CTL",
        0x435 => "IA32_MC13_STATUS",
        0x436 => "IA32_MC13_ADDR",
        0x437 => "IA32_MC13_MISC",
        0x438 => "IA32_MC14_CTL",
        0x439 => "IA32_MC14_STATUS",
        0x43a => "IA32_MC14_ADDR",
        0x43b => "IA32_MC14_MISC",
        0x43c => "IA32_MC15_CTL",
        0x43d => "IA32_MC15_STATUS",
        0x43e => "IA32_MC15_ADDR",
        0x43f => "IA32_MC15_MISC",
        0x440 => "IA32_MC16_CTL",
        0x441 => "IA32_MC16_STATUS",
        0x442 => "IA32_MC16_ADDR",
        0x443 => "IA32_MC16_MISC",
        0x444 => "IA32_MC17_CTL",
        0x445 => "IA32_MC17_STATUS",
        0x446 => "IA32_MC17_ADDR",
        0x447 => "IA32_MC17_MISC",
        0x448 => "IA32_MC18_CTL",
        0x449 => "IA32_MC18_STATUS",
        0x44a => "IA32_MC18_ADDR",
        0x44b => "IA32_MC18_MISC",
        0x44c => "IA32_MC19_CTL",
        0x44d => "IA32_MC19_STATUS",
        0x44e => "IA32_MC19_ADDR",
        0x44f => "IA32_MC19_MISC",
        0x450 => "IA32_MC20_CTL",
        0x451 => "IA32_MC20_STATUS",
        0x452 => "IA32_MC20_ADDR",
        0x453 => "IA32_MC20_MISC",
        0x454 => "IA32_MC21_CTL",
        0x455 => "IA32_MC21_STATUS",
        0x456 => "IA32_MC21_ADDR",
        0x457 => "IA32_MC21_MISC",
        0x458 => "IA32_MC22_CTL",
        0x459 => "IA32_MC22_STATUS",
        0x45a => "IA32_MC22_ADDR",
        0x45b => "IA32_MC22_MISC",
        0x45c => "IA32_MC23_CTL",
        0x45d => "IA32_MC23_STATUS",
        0x45e => "IA32_MC23_ADDR",
        0x45f => "IA32_MC23_MISC",
        0x460 => "IA32_MC24_CTL",
        0x461 => "IA32_MC24_STATUS",
        0x462 => "IA32_MC24_ADDR",
        0x463 => "IA32_MC24_MISC",
        0x464 => "IA32_MC25_CTL",
        0x465 => "IA32_MC25_STATUS",
        0x466 => "IA32_MC25_ADDR",
        0x467 => "IA32_MC25_MISC",
        0x468 => "IA32_MC26_CTL",
        0x469 => "IA32_MC26_STATUS",
        0x46a => "IA32_MC26_ADDR",
        0x46b => "IA32_MC26_MISC",
        0x46c => "IA32_MC27_CTL",
        0x46d => "IA32_MC27_STATUS",
        0x46e => "IA32_MC27_ADDR",
        0x46f => "IA32_MC27_MISC",
        0x470 => "IA32_MC28_CTL",
        0x471 => "IA32_MC28_STATUS",
        0x472 => "IA32_MC28_ADDR",
        0x473 => "IA32_MC28_MISC",
        0x474 => "IA32_MC29_CTL",
        0x475 => "IA32_MC29_STATUS",
        0x476 => "IA32_MC29_ADDR",
        0x477 => "IA32_MC29_MISC",
        0x478 => "IA32_MC30_CTL",
        0x479 => "IA32_MC30_STATUS",
        0x47a => "IA32_MC30_ADDR",
        0x47b => "IA32_MC30_MISC",
        0x47c => "IA32_MC31_CTL",
        0x47d => "IA32_MC31_STATUS",
        0x47e => "IA32_MC31_ADDR",
        0x47f => "IA32_MC31_MISC",
        0x480 => "IA32_VMX_BASIC",
        0x481 => "IA32_VMX_PINBASED_CTLS",
        0x482 => "IA32_VMX_PROCBASED_CTLS",
        0x483 => "IA32_VMX_EXIT_CTLS",
        0x484 => "IA32_VMX_ENTRY_CTLS",
        0x485 => "IA32_VMX_MISC",
        0x486 => "IA32_VMX_CR0_FIXED0",
        0x487 => "IA32_VMX_CR0_FIXED1",
        0x488 => "IA32_VMX_CR4_FIXED0",
        0x489 => "IA32_VMX_CR4_FIXED1",
        0x48a => "IA32_VMX_VMCS_ENUM",
        0x48b => "IA32_VMX_PROCBASED_CTLS2",
        0x48c => "IA32_VMX_EPT_VPID_CAP",
        0x48d => "IA32_VMX_TRUE_PINBASED_CTLS",
        0x48e => "IA32_VMX_TRUE_PROCBASED_CTLS",
        0x48f => "IA32_VMX_TRUE_EXIT_CTLS",
        0x490 => "IA32_VMX_TRUE_ENTRY_CTLS",
        0x491 => "IA32_VMX_VMFUNC",
        0x492 => "IA32_VMX_PROCBASED_CTLS3",
        0x4c1 => "IA32_A_PMC0",
        0x4c2 => "IA32_A_PMC1",
        0x4c3 => "IA32_A_PMC2",
        0x4c4 => "IA32_A_PMC3",
        0x4c5 => "IA32_A_PMC4",
        0x4c6 => "IA32_A_PMC5",
        0x4c7 => "IA32_A_PMC6",
        0x4c8 => "IA32_A_PMC7",
        0x4d0 => "IA32_MCG_EXT_CTL",
        0x570 => "IA32_RTIT_CTL",
        0x571 => "IA32_RTIT_STATUS",
        0x600 => "IA32_DS_AREA",
        0x606 => "RAPL_POWER_UNIT",
        0x610 => "PKG_POWER_LIMIT",
        0x611 => "PKG_ENERGY_STATUS",
        0x619 => "DRAM_ENERGY_STATUS",
        0x639 => "PP0_ENERGY_STATUS",
        0x641 => "PP1_ENERGY_STATUS",
        0x64d => "PLATFORM_ENERGY_STATUS",
        0x6a0 => "IA32_U_CET",
        0x6a2 => "IA32_S_CET",
        0x6a4 => "IA32_PL0_SSP",
        0x6a5 => "IA32_PL1_SSP",
        0x6a6 => "IA32_PL2_SSP",
        0x6a7 => "IA32_PL3_SSP",
        0x6a8 => "IA32_INTERRUPT_SSP_TABLE_ADDR",
        0x6e0 => "IA32_TSC_DEADLINE",
        0x6e1 => "IA32_PKRS",
        0x770 => "IA32_PM_ENABLE",
        0x771 => "IA32_HWP_CAPABILITIES",
        0x774 => "IA32_HWP_REQUEST",
        0x777 => "IA32_HWP_STATUS",
        0x802 => "X2APIC_APICID",
        0x803 => "X2APIC_VERSION",
        0x808 => "X2APIC_TPR",
        0x80a => "X2APIC_PPR",
        0x80b => "X2APIC_EOI",
        0x80d => "X2APIC_LDR",
        0x80f => "X2APIC_SIVR",
        0x810 => "X2APIC_ISR0",
        0x811 => "X2APIC_ISR1",
        0x812 => "X2APIC_ISR2",
        0x813 => "X2APIC_ISR3",
        0x814 => "X2APIC_ISR4",
        0x815 => "X2APIC_ISR5",
        0x816 => "X2APIC_ISR6",
        0x817 => "X2APIC_ISR7",
        0x818 => "X2APIC_TMR0",
        0x819 => "X2APIC_TMR1",
        0x81a => "X2APIC_TMR2",
        0x81b => "X2APIC_TMR3",
        0x81c => "X2APIC_TMR4",
        0x81d => "X2APIC_TMR5",
        0x81e => "X2APIC_TMR6",
        0x81f => "X2APIC_TMR7",
        0x820 => "X2APIC_IRR0",
        0x821 => "X2APIC_IRR1",
        0x822 => "X2APIC_IRR2",
        0x823 => "X2APIC_IRR3",
        0x824 => "X2APIC_IRR4",
        0x825 => "X2APIC_IRR5",
        0x826 => "X2APIC_IRR6",
        0x827 => "X2APIC_IRR7",
        0x828 => "X2APIC_ESR",
        0x82f => "X2APIC_LVT_CMCI",
        0x830 => "X2APIC_ICR",
        0x832 => "X2APIC_LVT_TIMER",
        0x833 => "X2APIC_LVT_THERMAL",
        0x834 => "X2APIC_LVT_PMI",
        0x835 => "X2APIC_LVT_LINT0",
        0x836 => "X2APIC_LVT_LINT1",
        0x837 => "X2APIC_LVT_ERROR",
        0x838 => "X2APIC_TMICT",
        0x839 => "X2APIC_TMCCT",
        0x83e => "X2APIC_TDCR",
        0x83f => "X2APIC_SELF_IPI",
        0xd90 => "IA32_BNDCFGS",
        0xda0 => "IA32_XSS",
        0x4000_0000 => "HV_X64_MSR_GUEST_OS_ID",
        0x4000_0001 => "HV_X64_MSR_HYPERCALL",
        0x4000_0002 => "HV_X64_MSR_VP_INDEX",
        0x4000_0003 => "HV_X64_MSR_RESET",
        0x4000_0010 => "HV_X64_MSR_VP_RUNTIME",
        0x4000_0020 => "HV_X64_MSR_TIME_REF_COUNT",
        0x4000_0021 => "HV_X64_MSR_REFERENCE_TSC",
        0x4000_0022 => "HV_X64_MSR_TSC_FREQUENCY",
        0x4000_0023 => "HV_X64_MSR_APIC_FREQUENCY",
        0x4000_0070 => "HV_X64_MSR_EOI",
        0x4000_0071 => "HV_X64_MSR_ICR",
        0x4000_0072 => "HV_X64_MSR_TPR",
        0x4000_0073 => "HV_X64_MSR_VP_ASSIST_PAGE",
        0x4000_0080 => "HV_X64_MSR_SCONTROL",
        0x4000_0081 => "HV_X64_MSR_SVERSION",
        0x4000_0082 => "HV_X64_MSR_SIEFP",
        0x4000_0083 => "HV_X64_MSR_SIMP",
        0x4000_0084 => "HV_X64_MSR_EOM",
        0x4000_0090 => "HV_X64_MSR_SINT0",
        0x4000_0091 => "HV_X64_MSR_SINT1",
        0x4000_0092 => "HV_X64_MSR_SINT2",
        0x4000_0093 => "HV_X64_MSR_SINT3",
        0x4000_0094 => "HV_X64_MSR_SINT4",
        0x4000_0095 => "HV_X64_MSR_SINT5",
        0x4000_0096 => "HV_X64_MSR_SINT6",
        0x4000_0097 => "HV_X64_MSR_SINT7",
        0x4000_0098 => "HV_X64_MSR_SINT8",
        0x4000_0099 => "HV_X64_MSR_SINT9",
        0x4000_009a => "HV_X64_MSR_SINT10",
        0x4000_009b => "HV_X64_MSR_SINT11",
        0x4000_009c => "HV_X64_MSR_SINT12",
        0x4000_009d => "HV_X64_MSR_SINT13",
        0x4000_009e => "HV_X64_MSR_SINT14",
        0x4000_009f => "HV_X64_MSR_SINT15",
        0x4000_00b0 => "HV_X64_MSR_STIMER0_CONFIG",
        0x4000_00b1 => "HV_X64_MSR_STIMER0_COUNT",
        0x4000_00b2 => "HV_X64_MSR_STIMER1_CONFIG",
        0x4000_00b3 => "HV_X64_MSR_STIMER1_COUNT",
        0x4000_00b4 => "HV_X64_MSR_STIMER2_CONFIG",
        0x4000_00b5 => "HV_X64_MSR_STIMER2_COUNT",
        0x4000_00b6 => "HV_X64_MSR_STIMER3_CONFIG",
        0x4000_00b7 => "HV_X64_MSR_STIMER3_COUNT",
        0x4000_00f0 => "HV_X64_MSR_GUEST_IDLE",
        0x4000_0100 => "HV_X64_MSR_CRASH_P0",
        0x4000_0101 => "HV_X64_MSR_CRASH_P1",
        0x4000_0102 => "HV_X64_MSR_CRASH_P2",
        0x4000_0103 => "HV_X64_MSR_CRASH_P3",
        0x4000_0104 => "HV_X64_MSR_CRASH_P4",
        0x4000_0105 => "HV_X64_MSR_CRASH_CTL",
        0x4000_0106 => "HV_X64_MSR_REENLIGHTENMENT_CONTROL",
        0x4000_0107 => "HV_X64_MSR_TSC_EMULATION_CONTROL",
        0x4000_0108 => "HV_X64_MSR_TSC_EMULATION_STATUS",
        0x4000_0118 => "HV_X64_MSR_TSC_INVARIANT_CONTROL",
        0x4b56_4d00 => "KVM_WALL_CLOCK_NEW",
        0x4b56_4d01 => "KVM_SYSTEM_TIME_NEW",
        0x4b56_4d02 => "KVM_ASYNC_PF_EN",
        0x4b56_4d03 => "KVM_STEAL_TIME",
        0x4b56_4d04 => "KVM_PV_EOI_EN",
        0x4b56_4d05 => "KVM_POLL_CONTROL",
        0x4b56_4d06 => "KVM_ASYNC_PF_INT",
        0x4b56_4d07 => "KVM_ASYNC_PF_ACK",
        0x4b56_4d08 => "KVM_MIGRATION_CONTROL",
        0xc000_0080 => "IA32_EFER",
        0xc000_0081 => "IA32_STAR",
        0xc000_0082 => "IA32_LSTAR",
        0xc000_0083 => "IA32_CSTAR",
        0xc000_0084 => "IA32_FMASK",
        0xc000_0100 => "IA32_FS_BASE",
        0xc000_0101 => "IA32_GS_BASE",
        0xc000_0102 => "IA32_KERNEL_GS_BASE",
        0xc000_0103 => "IA32_TSC_AUX",
        0xc000_0104 => "AMD64_TSC_RATIO",
        0xc000_0300 => "AMD64_PERF_CNTR_GLOBAL_STATUS",
        0xc000_0301 => "AMD64_PERF_CNTR_GLOBAL_CTL",
        0xc000_0302 => "AMD64_PERF_CNTR_GLOBAL_STATUS_CLR",
        0xc000_0303 => "AMD64_PERF_CNTR_GLOBAL_STATUS_SET",
        0xc001_0000 => "K7_EVNTSEL0",
        0xc001_0001 => "K7_EVNTSEL1",
        0xc001_0002 => "K7_EVNTSEL2",
        0xc001_0003 => "K7_EVNTSEL3",
        0xc001_0004 => "K7_PERFCTR0",
        0xc001_0005 => "K7_PERFCTR1",
        0xc001_0006 => "K7_PERFCTR2",
        0xc001_0007 => "K7_PERFCTR3",
        0xc001_0010 => "AMD64_SYSCFG",
        0xc001_0015 => "K7_HWCR",
        0xc001_001a => "K8_TOP_MEM1",
        0xc001_001d => "K8_TOP_MEM2",
        0xc001_0055 => "K8_INT_PENDING_MSG",
        0xc001_0062 => "AMD_PERF_CTL",
        0xc001_0063 => "AMD_PERF_STATUS",
        0xc001_0114 => "VM_CR",
        0xc001_0115 => "VM_IGNNE",
        0xc001_0117 => "VM_HSAVE_PA",
        0xc001_011f => "AMD64_VIRT_SPEC_CTRL",
        0xc001_0130 => "AMD64_SEV_ES_GHCB",
        0xc001_0131 => "AMD64_SEV",
        0xc001_0140 => "AMD64_OSVW_ID_LENGTH",
        0xc001_0141 => "AMD64_OSVW_STATUS",
        0xc001_0200 => "F15H_PERF_CTL0",
        0xc001_0201 => "F15H_PERF_CTR0",
        0xc001_0202 => "F15H_PERF_CTL1",
        0xc001_0203 => "F15H_PERF_CTR1",
        0xc001_0204 => "F15H_PERF_CTL2",
        0xc001_0205 => "F15H_PERF_CTR2",
        0xc001_0206 => "F15H_PERF_CTL3",
        0xc001_0207 => "F15H_PERF_CTR3",
        0xc001_0208 => "F15H_PERF_CTL4",
        0xc001_0209 => "F15H_PERF_CTR4",
        0xc001_020a => "F15H_PERF_CTL5",
        0xc001_020b => "F15H_PERF_CTR5",
        0xc001_0299 => "AMD_RAPL_POWER_UNIT",
        0xc001_029a => "AMD_CORE_ENERGY_STATUS",
        0xc001_029b => "AMD_PKG_ENERGY_STATUS",
        0xc001_1020 => "AMD64_LS_CFG",
        0xc001_1029 => "AMD64_DE_CFG",
        0xc001_102a => "AMD64_BU_CFG2",
    }
    aliases {}
}

/// What an MSR access is about, for grouping in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MsrClass {
    /// `IA32_TSC_DEADLINE` (0x6e0): the guest arming its local APIC timer in TSC-deadline
    /// mode, typically once per timer interrupt.
    TscDeadline,
    /// `X2APIC_ICR` (0x830): the guest sending an IPI in x2APIC mode.
    X2ApicIcr,
    /// Any other MSR in the x2APIC range 0x800..=0x8ff (EOI, TPR, TMICT, ...).
    X2Apic,
    /// Performance monitoring: Intel architectural PMU and AMD core PMU counters, event
    /// selectors and global control/status, PEBS and DS area.
    Pmu,
    /// KVM paravirtual MSRs: the old kvmclock pair 0x11/0x12 and 0x4b564d00..=0x4b564dff.
    KvmPv,
    /// Everything else.
    Other,
}

/// Name of an MSR (`0x6e0` -> `"IA32_TSC_DEADLINE"`), or `None` for an MSR this table does
/// not know: show it as its number.
pub fn msr_name(msr: u32) -> Option<&'static str> {
    name_of(msr)
}

/// MSR index for a name of this table (`"IA32_TSC_DEADLINE"` -> 0x6e0), e.g. for a
/// command-line filter.
pub fn msr_code(name: &str) -> Option<u32> {
    code_of(name)
}

/// Classifies an MSR index. Total: every index has a class (`Other` when unknown).
pub fn msr_class(msr: u32) -> MsrClass {
    match msr {
        0x6e0 => MsrClass::TscDeadline,
        0x830 => MsrClass::X2ApicIcr,
        0x800..=0x8ff => MsrClass::X2Apic,
        // Intel: PMCx, PERFEVTSELx, FIXED_CTRx, PERF_CAPABILITIES, fixed-counter control and
        // global control/status/overflow/set/inuse, PEBS, full-width A_PMCx, DS area.
        0xc1..=0xc8
        | 0x186..=0x18d
        | 0x309..=0x30c
        | 0x345
        | 0x38d..=0x392
        | 0x3f1..=0x3f2
        | 0x4c1..=0x4c8
        | 0x600 => MsrClass::Pmu,
        // AMD: K7 event selects/counters, F15H core counters, global control/status.
        0xc001_0000..=0xc001_0007 | 0xc001_0200..=0xc001_020b | 0xc000_0300..=0xc000_0303 => {
            MsrClass::Pmu
        }
        0x11 | 0x12 | 0x4b56_4d00..=0x4b56_4dff => MsrClass::KvmPv,
        _ => MsrClass::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let cases = [
            (0x10, "IA32_TSC"),
            (0x1b, "IA32_APIC_BASE"),
            (0x3b, "IA32_TSC_ADJUST"),
            (0x48, "IA32_SPEC_CTRL"),
            (0x49, "IA32_PRED_CMD"),
            (0x1a0, "IA32_MISC_ENABLE"),
            (0x199, "IA32_PERF_CTL"),
            (0xe7, "IA32_MPERF"),
            (0xe8, "IA32_APERF"),
            (0x277, "IA32_PAT"),
            (0x6e0, "IA32_TSC_DEADLINE"),
            (0x808, "X2APIC_TPR"),
            (0x80b, "X2APIC_EOI"),
            (0x830, "X2APIC_ICR"),
            (0x838, "X2APIC_TMICT"),
            (0xc1, "IA32_PMC0"),
            (0xc8, "IA32_PMC7"),
            (0x186, "IA32_PERFEVTSEL0"),
            (0x309, "IA32_FIXED_CTR0"),
            (0x38d, "IA32_FIXED_CTR_CTRL"),
            (0x38e, "IA32_PERF_GLOBAL_STATUS"),
            (0x38f, "IA32_PERF_GLOBAL_CTRL"),
            (0x390, "IA32_PERF_GLOBAL_OVF_CTRL"),
            (0x179, "IA32_MCG_CAP"),
            (0x401, "IA32_MC0_STATUS"),
            (0x47f, "IA32_MC31_MISC"),
            (0xc000_0080, "IA32_EFER"),
            (0xc000_0081, "IA32_STAR"),
            (0xc000_0082, "IA32_LSTAR"),
            (0xc000_0083, "IA32_CSTAR"),
            (0xc000_0084, "IA32_FMASK"),
            (0xc000_0100, "IA32_FS_BASE"),
            (0xc000_0101, "IA32_GS_BASE"),
            (0xc000_0102, "IA32_KERNEL_GS_BASE"),
            (0xc000_0103, "IA32_TSC_AUX"),
            (0xc001_0000, "K7_EVNTSEL0"),
            (0xc001_0007, "K7_PERFCTR3"),
            (0xc001_0200, "F15H_PERF_CTL0"),
            (0xc001_020b, "F15H_PERF_CTR5"),
            (0x11, "KVM_WALL_CLOCK"),
            (0x12, "KVM_SYSTEM_TIME"),
            (0x4b56_4d00, "KVM_WALL_CLOCK_NEW"),
            (0x4b56_4d01, "KVM_SYSTEM_TIME_NEW"),
            (0x4b56_4d02, "KVM_ASYNC_PF_EN"),
            (0x4b56_4d03, "KVM_STEAL_TIME"),
            (0x4b56_4d04, "KVM_PV_EOI_EN"),
            (0x4b56_4d05, "KVM_POLL_CONTROL"),
            (0x4b56_4d06, "KVM_ASYNC_PF_INT"),
            (0x4b56_4d07, "KVM_ASYNC_PF_ACK"),
            (0x4b56_4d08, "KVM_MIGRATION_CONTROL"),
            (0x4000_0090, "HV_X64_MSR_SINT0"),
            (0x4000_00b0, "HV_X64_MSR_STIMER0_CONFIG"),
            (0x4000_00b7, "HV_X64_MSR_STIMER3_COUNT"),
        ];
        for (msr, name) in cases {
            assert_eq!(msr_name(msr), Some(name), "msr {msr:#x}");
        }
    }

    #[test]
    fn unknown_msrs_stay_numbers() {
        for msr in [0x0, 0x801, 0x8ff, 0x4b56_4d09, 0xdead_beef, u32::MAX] {
            assert_eq!(msr_name(msr), None, "msr {msr:#x}");
        }
    }

    #[test]
    fn classes() {
        assert_eq!(msr_class(0x6e0), MsrClass::TscDeadline);
        assert_eq!(msr_class(0x830), MsrClass::X2ApicIcr);
        for msr in [0x800, 0x808, 0x80b, 0x838, 0x83f, 0x8ff] {
            assert_eq!(msr_class(msr), MsrClass::X2Apic, "msr {msr:#x}");
        }
        for msr in [
            0xc1,
            0x186,
            0x309,
            0x38d,
            0x38f,
            0x4c1,
            0xc001_0004,
            0xc001_0201,
        ] {
            assert_eq!(msr_class(msr), MsrClass::Pmu, "msr {msr:#x}");
        }
        for msr in [0x11, 0x12, 0x4b56_4d00, 0x4b56_4d08, 0x4b56_4dff] {
            assert_eq!(msr_class(msr), MsrClass::KvmPv, "msr {msr:#x}");
        }
        for msr in [0x10, 0x199, 0x1a0, 0x7ff, 0x900, 0xc000_0080, 0x4b56_4e00] {
            assert_eq!(msr_class(msr), MsrClass::Other, "msr {msr:#x}");
        }
    }

    #[test]
    fn class_agrees_with_names() {
        for &(msr, name) in ENTRIES {
            let class = msr_class(msr);
            if name.starts_with("X2APIC_") {
                assert!(
                    matches!(class, MsrClass::X2Apic | MsrClass::X2ApicIcr),
                    "{name}"
                );
            }
            if name.starts_with("KVM_") {
                assert_eq!(class, MsrClass::KvmPv, "{name}");
            }
            let pmu_name = [
                "IA32_PMC",
                "IA32_A_PMC",
                "IA32_PERFEVTSEL",
                "IA32_FIXED_CTR",
            ]
            .iter()
            .any(|p| name.starts_with(p))
                || name.starts_with("IA32_PERF_GLOBAL")
                || name.starts_with("K7_EVNTSEL")
                || name.starts_with("K7_PERFCTR")
                || name.starts_with("F15H_PERF_")
                || name.starts_with("AMD64_PERF_CNTR_GLOBAL");
            if pmu_name {
                assert_eq!(class, MsrClass::Pmu, "{name}");
            }
        }
    }

    #[test]
    fn every_entry_round_trips() {
        crate::tables::test_support::check_table(ENTRIES, ALIASES, msr_name, msr_code);
        assert!(
            ENTRIES.windows(2).all(|w| w[0].0 < w[1].0),
            "entries sorted by index"
        );
    }
}
