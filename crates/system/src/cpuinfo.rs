//! `/proc/cpuinfo`: CPU model and the flags that matter for virtualisation.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::{excerpt, numbered_lines, Error};

const FILE: &str = "/proc/cpuinfo";

/// What kvmscope keeps from `/proc/cpuinfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuInfo {
    /// Number of `processor` entries.
    pub processors: u32,
    /// `vendor_id` (x86) or `CPU implementer` (arm).
    pub vendor: Option<String>,
    /// `model name` (x86, 32-bit arm) or `CPU part` (arm64).
    pub model_name: Option<String>,
    /// `flags` (x86) or `Features` (arm) of the first processor, plus x86 `vmx flags`.
    pub flags: BTreeSet<String>,
}

/// Virtualisation facts from the flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtFlags {
    /// Intel VT-x.
    pub vmx: bool,
    /// AMD-V.
    pub svm: bool,
    /// Intel EPT (two-dimensional paging).
    pub ept: bool,
    /// AMD NPT (nested paging).
    pub npt: bool,
    /// x2APIC (MSR-based APIC access).
    pub x2apic: bool,
    /// Running under a hypervisor (this is a guest).
    pub hypervisor: bool,
    /// TSC-deadline mode of the local APIC timer (writes MSR 0x6e0).
    pub tsc_deadline_timer: bool,
}

/// Parses `/proc/cpuinfo`.
pub fn parse(text: &str) -> Result<CpuInfo, Error> {
    let mut info = CpuInfo::default();
    let mut first_done = false;
    for line in numbered_lines(text) {
        let t = line.text.trim();
        if t.is_empty() {
            if info.processors > 0 {
                first_done = true;
            }
            continue;
        }
        let Some((key, value)) = t.split_once(':') else {
            return Err(line.error(
                FILE,
                format!("expected \"key : value\", found {}", excerpt(t)),
            ));
        };
        let key = key.trim();
        let value = value.trim();
        match key {
            "processor" => info.processors += 1,
            _ if first_done => {}
            "vendor_id" | "CPU implementer" if info.vendor.is_none() => {
                info.vendor = Some(value.to_string())
            }
            "model name" | "CPU part" if info.model_name.is_none() => {
                info.model_name = Some(value.to_string())
            }
            "flags" | "Features" | "vmx flags" => {
                info.flags
                    .extend(value.split_whitespace().map(str::to_string));
            }
            _ => {}
        }
    }
    if info.processors == 0 && !info.flags.is_empty() {
        info.processors = 1;
    }
    Ok(info)
}

impl CpuInfo {
    /// The virtualisation flags.
    pub fn virt(&self) -> VirtFlags {
        let has = |f: &str| self.flags.contains(f);
        VirtFlags {
            vmx: has("vmx"),
            svm: has("svm"),
            ept: has("ept"),
            npt: has("npt"),
            x2apic: has("x2apic"),
            hypervisor: has("hypervisor"),
            tsc_deadline_timer: has("tsc_deadline_timer"),
        }
    }
}
