//! The KVM MMU as the `kvmmmu:*` events and `kvm_page_fault` show it: event counts by kind,
//! shadow root (re)loads per vCPU thread (a `kvm_mmu_get_page` of a root-level page: `new`
//! when built, `existing` when found in the hash after a prev_roots cache miss), and guest page
//! faults that reached KVM, by error-code bits (field report 001, 000).

use kvmscope_trace::{Event, EventKind, MmuKind};
use serde::Serialize;

use crate::keys::ThreadSlots;

#[derive(Debug, Default)]
pub struct Mmu {
    /// Events per kind, indexed by `MmuKind as usize` (a third of an SVM shadow-paging
    /// trace's events are kvmmmu: an array index, not a hash probe, per event).
    kinds: [u64; MmuKind::ALL.len()],
    roots: ThreadSlots<RootCounts>,
    page_faults: u64,
    pf_write: u64,
    pf_user: u64,
    pf_present: u64,
    pf_fetch: u64,
    cr3_writes: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RootCounts {
    pub new: u64,
    pub existing: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MmuReport {
    /// Events per kvmmmu kind.
    pub events: Vec<(MmuKind, u64)>,
    /// Root-level `kvm_mmu_get_page` per vCPU thread: (tid, counts).
    pub root_loads: Vec<(u32, RootCounts)>,
    /// `kvm_cr` writes to CR3.
    pub cr3_writes: u64,
    pub page_faults: PageFaults,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PageFaults {
    pub total: u64,
    pub write: u64,
    pub user: u64,
    pub present: u64,
    pub fetch: u64,
}

impl Mmu {
    /// Inlined into the caller: the events this does nothing with cost a branch, not a call.
    #[inline]
    pub fn observe(&mut self, ev: &Event<'_>) {
        match ev.kind {
            EventKind::Mmu {
                kind,
                created,
                root,
                ..
            } => {
                if let Some(n) = self.kinds.get_mut(kind as usize) {
                    *n += 1;
                }
                if root {
                    let c = self.roots.slot(ev.tid);
                    if created {
                        c.new += 1;
                    } else {
                        c.existing += 1;
                    }
                }
            }
            EventKind::PageFault { error_code, .. } => {
                self.page_faults += 1;
                self.pf_present += error_code & 1;
                self.pf_write += (error_code >> 1) & 1;
                self.pf_user += (error_code >> 2) & 1;
                self.pf_fetch += (error_code >> 4) & 1;
            }
            EventKind::Cr {
                write: true, cr: 3, ..
            } => self.cr3_writes += 1,
            _ => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.iter().all(|&n| n == 0) && self.page_faults == 0 && self.cr3_writes == 0
    }

    pub fn finish(&self) -> MmuReport {
        let mut root_loads: Vec<_> = self.roots.iter().map(|(t, &c)| (t, c)).collect();
        root_loads.sort_unstable_by_key(|&(t, _)| t);
        MmuReport {
            events: MmuKind::ALL
                .into_iter()
                .zip(self.kinds)
                .filter(|&(_, n)| n > 0)
                .collect(),
            root_loads,
            cr3_writes: self.cr3_writes,
            page_faults: PageFaults {
                total: self.page_faults,
                write: self.pf_write,
                user: self.pf_user,
                present: self.pf_present,
                fetch: self.pf_fetch,
            },
        }
    }
}
