//! VM exits by reason, with handling latency paired per vCPU thread exactly as `perf kvm stat`
//! pairs them: a `kvm_exit` starts an interval on its thread, the next `kvm_entry` on the same
//! thread ends it. An entry with no exit before it (a trace that starts mid-exit) is ignored;
//! an exit followed by another exit before any entry restarts the interval (perf does the same);
//! an exit still open when the trace ends has no latency.
//!
//! Unlike perf, which counts only exits whose entry it saw, `count` is every exit observed;
//! `latency.samples` is the number of paired ones.

use kvmscope_trace::{Event, EventKind, Isa};
use serde::Serialize;

use crate::keys::{KeyMap, ReasonKey, ThreadSlots};
use crate::stats::{Latency, LatencySummary};

#[derive(Debug, Default)]
pub struct Exits {
    reasons: KeyMap<ReasonKey, Slot>,
    /// Per thread: the open exit (start ts, its reason's id in `reasons`).
    threads: ThreadSlots<Open>,
    entries_unpaired: u64,
    total: u64,
}

#[derive(Debug, Default)]
struct Slot {
    count: u64,
    latency: Latency,
    per_vcpu: ThreadSlots<u64>,
    emulated: Split,
    userspace: Split,
}

/// Paired exits of one kind within a reason: how many, and their exit → entry time.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Split {
    pub count: u64,
    pub time_ns: u64,
}

impl Split {
    fn add(&mut self, ns: u64) {
        self.count += 1;
        self.time_ns = self.time_ns.saturating_add(ns);
    }
}

#[derive(Debug, Default, Clone)]
struct Open {
    start: Option<(u64, u32)>,
    /// The open exit emulated a device access (kvm_pio, kvm_mmio or kvm_userspace_exit).
    emulated: bool,
    /// The open exit returned to the VMM (kvm_userspace_exit).
    userspace: bool,
}

/// One row of the VM-exit table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExitRow {
    pub reason: String,
    pub isa: Isa,
    pub code: Option<u64>,
    pub count: u64,
    /// Share of all exits, percent.
    pub count_pct: f64,
    /// Share of all paired handling time, percent.
    pub time_pct: f64,
    pub latency: LatencySummary,
    /// Paired exits during which KVM emulated a device access (`kvm_pio`, `kvm_mmio` or
    /// `kvm_userspace_exit` between the exit and the entry): on NPF/EPT/#PF exits, the MMIO
    /// ones, which are not page faults.
    pub emulated: Split,
    /// Paired exits that went back to the VMM (`kvm_userspace_exit` before the entry).
    pub userspace: Split,
    /// Exits per vCPU thread id.
    pub per_thread: Vec<(u32, u64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExitReport {
    pub total: u64,
    pub paired: u64,
    pub total_time_ns: u64,
    /// Exits still open at the end of the trace (no kvm_entry after them).
    pub unpaired_exits: u64,
    /// Entries with no exit before them on their thread (the trace started mid-exit).
    pub unpaired_entries: u64,
    /// Sorted by count, then name.
    pub rows: Vec<ExitRow>,
}

impl Exits {
    /// Inlined into the caller: the events this does nothing with cost a branch, not a call.
    #[inline]
    pub fn observe(&mut self, ev: &Event<'_>) {
        match &ev.kind {
            EventKind::KvmExit(e) => self.exit(ev, &e.reason),
            EventKind::Pio { .. } | EventKind::Mmio { .. } | EventKind::UserspaceExit { .. } => {
                self.emulated(ev)
            }
            EventKind::KvmEntry { .. } => self.entry(ev),
            _ => {}
        }
    }

    #[inline(never)]
    fn exit(&mut self, ev: &Event<'_>, reason: &kvmscope_trace::ExitReason<'_>) {
        self.total += 1;
        let (id, slot) = self.reasons.entry(ReasonKey::from_reason(reason));
        slot.count += 1;
        *slot.per_vcpu.slot(ev.tid) += 1;
        let open = self.threads.slot(ev.tid);
        *open = Open {
            start: Some((ev.ts_ns, id)),
            ..Open::default()
        };
    }

    #[inline(never)]
    fn emulated(&mut self, ev: &Event<'_>) {
        if let Some(open) = self.threads.get_mut(ev.tid) {
            if open.start.is_some() {
                open.emulated = true;
                open.userspace |= matches!(ev.kind, EventKind::UserspaceExit { .. });
            }
        }
    }

    #[inline(never)]
    fn entry(&mut self, ev: &Event<'_>) {
        let open = self.threads.slot(ev.tid);
        match open.start.take() {
            Some((start, id)) if ev.ts_ns >= start => {
                if let Some(slot) = self.reasons.by_id(id) {
                    let ns = ev.ts_ns - start;
                    slot.latency.add(ns);
                    if open.emulated {
                        slot.emulated.add(ns);
                    }
                    if open.userspace {
                        slot.userspace.add(ns);
                    }
                }
            }
            Some(_) => {} // clock went backwards: perf skips these too
            None => self.entries_unpaired += 1,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub fn finish(&self) -> ExitReport {
        let total_time: u128 = self.reasons.iter().map(|(_, s)| s.latency.total()).sum();
        let paired: u64 = self.reasons.iter().map(|(_, s)| s.latency.count()).sum();
        let mut rows: Vec<ExitRow> = self
            .reasons
            .iter()
            .map(|(key, slot)| {
                let mut per_thread: Vec<(u32, u64)> =
                    slot.per_vcpu.iter().map(|(t, &n)| (t, n)).collect();
                per_thread.sort_unstable();
                ExitRow {
                    reason: key.name(),
                    isa: key.isa(),
                    code: key.code(),
                    count: slot.count,
                    count_pct: pct(slot.count as f64, self.total as f64),
                    time_pct: pct(slot.latency.total() as f64, total_time as f64),
                    latency: slot.latency.summary(),
                    emulated: slot.emulated,
                    userspace: slot.userspace,
                    per_thread,
                }
            })
            .collect();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
        ExitReport {
            total: self.total,
            paired,
            total_time_ns: total_time.min(u128::from(u64::MAX)) as u64,
            unpaired_exits: self.threads.values().filter(|o| o.start.is_some()).count() as u64,
            unpaired_entries: self.entries_unpaired,
            rows,
        }
    }
}

pub(crate) fn pct(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        100.0 * part / whole
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvmscope_trace::text::decode_sequential;

    fn exits(text: &str) -> ExitReport {
        let mut e = Exits::default();
        decode_sequential(text.as_bytes(), |ev| e.observe(ev)).unwrap();
        e.finish()
    }

    const EXIT: &str =
        "kvm_exit: vcpu 0 reason HLT rip 0x1 info1 0x0 info2 0x0 intr_info 0x0 error_code 0x0";
    const MSR: &str = "kvm_exit: vcpu 0 reason MSR_WRITE rip 0x1 info1 0x0 info2 0x0 intr_info 0x0 error_code 0x0";
    const ENTRY: &str = "kvm_entry: vcpu 0, rip 0x1";

    #[test]
    fn trace_starting_mid_exit_is_not_miscounted() {
        // The first entry closes an exit the trace did not see: it is ignored, not paired.
        let r = exits(&format!(
            "a-1 [000] .... 1.000000: {ENTRY}\na-1 [000] .... 1.000010: {EXIT}\na-1 [000] .... 1.000030: {ENTRY}\n"
        ));
        assert_eq!(
            (r.total, r.paired, r.unpaired_entries, r.unpaired_exits),
            (1, 1, 1, 0)
        );
        assert_eq!(r.rows[0].latency.total_ns, 20_000);
    }

    #[test]
    fn exit_replaced_before_entry_and_open_at_end() {
        // perf kvm stat: a second exit before any entry restarts the interval; an exit open
        // at the end has no latency. Threads pair independently.
        let r = exits(&format!(
            "a-1 [000] .... 1.000000: {EXIT}\nb-2 [001] .... 1.000001: {MSR}\na-1 [000] .... 1.000005: {MSR}\n\
             a-1 [000] .... 1.000007: {ENTRY}\nb-2 [001] .... 1.000009: {ENTRY}\na-1 [000] .... 1.000020: {EXIT}\n"
        ));
        assert_eq!((r.total, r.paired, r.unpaired_exits), (4, 2, 1));
        let msr = r.rows.iter().find(|row| row.reason == "MSR_WRITE").unwrap();
        assert_eq!(
            (msr.count, msr.latency.samples, msr.latency.total_ns),
            (2, 2, 2_000 + 8_000)
        );
        let hlt = r.rows.iter().find(|row| row.reason == "HLT").unwrap();
        assert_eq!((hlt.count, hlt.latency.samples), (2, 0));
    }

    #[test]
    fn exits_that_emulated_or_went_to_userspace_are_split_out() {
        // SVM: an MMIO npf that went to the VMM, a page-fault npf, and an io exit handled in
        // the kernel (no kvm_userspace_exit).
        const NPF: &str =
            "kvm_exit: vcpu 0, reason npf rip 0x1 info1 0x0 info2 0x0 intr_info 0x0 error_code 0x0";
        const IO: &str =
            "kvm_exit: vcpu 0, reason io rip 0x1 info1 0x0 info2 0x0 intr_info 0x0 error_code 0x0";
        let r = exits(&format!(
            "a-1 [000] .... 1.000000: {NPF}\n\
             a-1 [000] .... 1.000001: kvm_mmio: mmio write len 4 gpa 0xd0000000 val 0x1\n\
             a-1 [000] .... 1.000002: kvm_userspace_exit: reason KVM_EXIT_MMIO (6)\n\
             a-1 [000] .... 1.000010: {ENTRY}\n\
             a-1 [000] .... 1.000020: {NPF}\n\
             a-1 [000] .... 1.000023: {ENTRY}\n\
             a-1 [000] .... 1.000030: kvm_pio: pio_write at 0x80 size 1 count 1 val 0x41 \n\
             a-1 [000] .... 1.000040: {IO}\n\
             a-1 [000] .... 1.000041: kvm_pio: pio_write at 0x40 size 1 count 1 val 0x41 \n\
             a-1 [000] .... 1.000044: {ENTRY}\n"
        ));
        let npf = r.rows.iter().find(|row| row.reason == "npf").unwrap();
        assert_eq!((npf.count, npf.latency.total_ns), (2, 13_000));
        assert_eq!(
            npf.emulated,
            Split {
                count: 1,
                time_ns: 10_000
            }
        );
        assert_eq!(
            npf.userspace,
            Split {
                count: 1,
                time_ns: 10_000
            }
        );
        // The kvm_pio before the io exit belongs to no exit.
        let io = r.rows.iter().find(|row| row.reason == "io").unwrap();
        assert_eq!(
            io.emulated,
            Split {
                count: 1,
                time_ns: 4_000
            }
        );
        assert_eq!(io.userspace, Split::default());
    }
}
