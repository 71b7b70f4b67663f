//! How fast each KVM event repeats on its thread: the gaps between consecutive events of one
//! name on one vCPU thread. Where kvm_exit/kvm_entry pairs are missing (PVM hosts, filtered
//! recordings), the shortest of these gaps is the cost of one round trip measured in the same
//! capture: a guest that does nothing but trap repeats its trap as fast as the host handles
//! it, on a fast host and on a slow one alike. `diagnose` multiplies it by the count to
//! estimate the share of vCPU time a cost-driven pathology takes (docs/rules.md).
//!
//! Memory: one slot per event name and one timestamp per (name, thread).

use kvmscope_trace::Event;

use crate::names::{NameId, NameTable};
use serde::Serialize;

use crate::stats::{Latency, LatencySummary};

/// The quantile of the gaps taken as the cost of one round trip: the fastest repeats, with
/// the few that raced a preemption or a migration left out.
pub const COST_QUANTILE: f64 = 0.05;

#[derive(Debug, Default)]
struct Slot {
    /// `system:name`.
    event: String,
    gaps: Latency,
    last: crate::keys::ThreadSlots<u64>,
}

#[derive(Debug, Default)]
pub struct Pacing {
    /// By [`NameId`].
    slots: Vec<Option<Slot>>,
    /// For [`Pacing::observe`], when no caller interns the names.
    names: NameTable,
}

/// One event's repeat gaps on its threads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PacingRow {
    /// `system:name`.
    pub event: String,
    pub gaps: LatencySummary,
    /// The [`COST_QUANTILE`] of the gaps, nanoseconds.
    pub p5_ns: u64,
}

impl Pacing {
    /// Takes `kvm` and `kvmmmu` events of threads with a thread id (others are ignored).
    pub fn observe(&mut self, ev: &Event<'_>) {
        if !matches!(ev.system, "kvm" | "kvmmmu") {
            return;
        }
        let (id, _) = self.names.intern(ev);
        self.observe_id(ev, id);
    }

    /// [`Pacing::observe`] for a `kvm`/`kvmmmu` event whose name the caller interned as `id`.
    #[inline]
    pub fn observe_id(&mut self, ev: &Event<'_>, id: NameId) {
        if ev.tid == 0 {
            return;
        }
        let slot = match self.slots.get_mut(id as usize) {
            Some(Some(slot)) => slot,
            _ => self.new_slot(ev, id),
        };
        if let Some(prev) = slot.last.insert(ev.tid, ev.ts_ns) {
            // Out-of-order input (merged files) gives no gap rather than a wrapped one.
            if let Some(gap) = ev.ts_ns.checked_sub(prev) {
                slot.gaps.add(gap);
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn new_slot(&mut self, ev: &Event<'_>, id: NameId) -> &mut Slot {
        let i = id as usize;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        self.slots[i].get_or_insert_with(|| Slot {
            event: format!("{}:{}", ev.system, ev.name),
            ..Slot::default()
        })
    }

    pub fn finish(&self) -> Vec<PacingRow> {
        let mut rows: Vec<PacingRow> = self
            .slots
            .iter()
            .flatten()
            .filter(|s| s.gaps.count() > 0)
            .map(|s| PacingRow {
                event: s.event.clone(),
                gaps: s.gaps.summary(),
                p5_ns: s.gaps.quantile(COST_QUANTILE),
            })
            .collect();
        rows.sort_by(|a, b| {
            b.gaps
                .samples
                .cmp(&a.gaps.samples)
                .then_with(|| a.event.cmp(&b.event))
        });
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvmscope_trace::EventKind;

    fn ev(ts: u64, tid: u32, name: &'static str) -> Event<'static> {
        Event {
            ts_ns: ts,
            cpu: 0,
            tid,
            tgid: None,
            comm: "vcpu",
            system: "kvm",
            name,
            payload: "",
            kind: EventKind::Other,
            name_ref: Default::default(),
        }
    }

    #[test]
    fn gaps_are_per_thread_and_per_name() {
        let mut p = Pacing::default();
        // Two threads interleaved: thread 1 every 10 ns, thread 2 every 100 ns.
        for i in 0..20 {
            p.observe(&ev(i * 10, 1, "kvm_pio"));
            if i % 10 == 0 {
                p.observe(&ev(i * 10 + 1, 2, "kvm_pio"));
            }
        }
        p.observe(&ev(5, 1, "kvm_msr"));
        let rows = p.finish();
        assert_eq!(rows.len(), 1, "one kvm_msr gives no gap: {rows:?}");
        assert_eq!(rows[0].event, "kvm:kvm_pio");
        assert_eq!(rows[0].gaps.samples, 19 + 1);
        assert_eq!(rows[0].gaps.min_ns, 10);
        assert_eq!(rows[0].gaps.max_ns, 100);
        assert_eq!(rows[0].p5_ns, 10);
    }

    #[test]
    fn out_of_order_timestamps_give_no_gap() {
        let mut p = Pacing::default();
        p.observe(&ev(100, 1, "kvm_pio"));
        p.observe(&ev(50, 1, "kvm_pio"));
        assert!(p.finish().is_empty());
    }
}
