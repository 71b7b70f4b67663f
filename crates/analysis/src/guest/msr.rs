//! `msr:write_msr` inside the guest, by MSR and CPU. Each write of an MSR that the
//! hypervisor intercepts is a VM exit; IA32_TSC_DEADLINE (0x6e0) is written every time the
//! next timer event is programmed (field report 003: 33,000/s from one re-armed hrtimer).

use std::collections::BTreeMap;

use kvmscope_trace::tables::msr_name;
use kvmscope_trace::{Event, EventKind};
use serde::Serialize;

/// IA32_TSC_DEADLINE.
pub const MSR_TSC_DEADLINE: u32 = 0x6e0;

#[derive(Debug, Default)]
pub(super) struct Msrs {
    writes: BTreeMap<(u32, u32), (u64, u64)>,
}

/// Writes of one MSR on one CPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MsrRow {
    pub msr: u32,
    /// Architectural name when known (`IA32_TSC_DEADLINE`, `X2APIC_ICR`).
    pub name: Option<&'static str>,
    pub cpu: u32,
    pub writes: u64,
    /// Of which written while a thread of the scope was current.
    pub writes_by_scope: u64,
}

/// MSR writes, sorted by MSR then CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MsrReport {
    pub rows: Vec<MsrRow>,
}

impl Msrs {
    pub fn observe(&mut self, ev: &Event<'_>, ours: bool) {
        if let EventKind::GuestMsr {
            write: true, msr, ..
        } = ev.kind
        {
            let e = self.writes.entry((msr, ev.cpu)).or_default();
            e.0 += 1;
            e.1 += u64::from(ours);
        }
    }

    pub fn finish(&self) -> MsrReport {
        MsrReport {
            rows: self
                .writes
                .iter()
                .map(|(&(msr, cpu), &(writes, by_scope))| MsrRow {
                    msr,
                    name: msr_name(msr),
                    cpu,
                    writes,
                    writes_by_scope: by_scope,
                })
                .collect(),
        }
    }
}

impl MsrReport {
    /// Writes of `msr` on `cpu` (all CPUs when `None`).
    pub fn writes(&self, msr: u32, cpu: Option<u32>) -> u64 {
        self.rows
            .iter()
            .filter(|r| r.msr == msr && cpu.is_none_or(|c| c == r.cpu))
            .map(|r| r.writes)
            .sum()
    }

    /// TSC-deadline writes on `cpu` (all CPUs when `None`).
    pub fn tsc_deadline_writes(&self, cpu: Option<u32>) -> u64 {
        self.writes(MSR_TSC_DEADLINE, cpu)
    }
}
