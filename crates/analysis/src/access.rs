//! Guest accesses that KVM handled: MSRs, port IO and MMIO, by key and direction, with handling
//! latency paired as `perf kvm stat --event=msr|ioport|mmio` pairs it:
//! - MSR: `kvm_msr` → next `kvm_entry` on the thread;
//! - port IO: `kvm_pio` → next `kvm_entry`;
//! - MMIO write: `kvm_mmio` (write) → next `kvm_entry`; MMIO read: `kvm_exit` → `kvm_mmio` (read).
//!
//! Traces without `kvm_entry` (PVM hosts, filtered recordings) still give counts; latencies
//! then have no samples.

use std::collections::BTreeMap;

use kvmscope_trace::{Event, EventKind, MmioKind};
use serde::Serialize;

use crate::keys::{IdMap, MsrLabel};
use crate::stats::{Latency, LatencySummary};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Msr { msr: u32, write: bool },
    Pio { port: u32, write: bool },
    Mmio { gpa: u64, write: bool },
}

#[derive(Debug, Default)]
struct Slot {
    count: u64,
    bytes: u64,
    faults: u64,
    latency: Latency,
    /// The last value written or read, as a hint of what the guest does.
    last_value: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Open {
    /// An access waiting for the next kvm_entry.
    access: Option<(u64, Key)>,
    /// The last kvm_exit, for MMIO reads.
    exit_ts: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Accesses {
    slots: BTreeMap<Key, Slot>,
    threads: IdMap<u32, Open>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MsrRow {
    #[serde(flatten)]
    pub msr: MsrLabel,
    pub write: bool,
    pub count: u64,
    /// Accesses that raised #GP in the guest.
    pub faults: u64,
    pub last_value: u64,
    pub latency: LatencySummary,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PioRow {
    pub port: u32,
    pub write: bool,
    pub count: u64,
    pub bytes: u64,
    pub latency: LatencySummary,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MmioRow {
    pub gpa: u64,
    pub write: bool,
    pub count: u64,
    pub bytes: u64,
    pub latency: LatencySummary,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AccessReport {
    pub msr: Vec<MsrRow>,
    pub pio: Vec<PioRow>,
    pub mmio: Vec<MmioRow>,
}

impl Accesses {
    pub fn observe(&mut self, ev: &Event<'_>) {
        let (key, bytes, value, fault) = match ev.kind {
            EventKind::KvmExit(_) => {
                self.threads.entry(ev.tid).or_default().exit_ts = Some(ev.ts_ns);
                return;
            }
            EventKind::KvmEntry { .. } => {
                let open = self.threads.entry(ev.tid).or_default();
                open.exit_ts = None;
                if let Some((start, key)) = open.access.take() {
                    if let (Some(slot), true) = (self.slots.get_mut(&key), ev.ts_ns >= start) {
                        slot.latency.add(ev.ts_ns - start);
                    }
                }
                return;
            }
            EventKind::Msr {
                write,
                msr,
                data,
                gp,
            } => (Key::Msr { msr, write }, 0, data, gp),
            EventKind::Pio {
                write,
                port,
                size,
                count,
                val,
            } => (
                Key::Pio { port, write },
                u64::from(size) * u64::from(count),
                val,
                false,
            ),
            EventKind::Mmio {
                kind,
                len,
                gpa,
                val,
            } => (
                Key::Mmio {
                    gpa,
                    write: kind == MmioKind::Write,
                },
                u64::from(len),
                val,
                false,
            ),
            _ => return,
        };
        let slot = self.slots.entry(key).or_default();
        slot.count += 1;
        slot.bytes += bytes;
        slot.faults += u64::from(fault);
        slot.last_value = value;
        let open = self.threads.entry(ev.tid).or_default();
        match key {
            Key::Mmio { write: false, .. } => {
                if let Some(start) = open.exit_ts.take() {
                    if ev.ts_ns >= start {
                        slot.latency.add(ev.ts_ns - start);
                    }
                }
            }
            _ => open.access = Some((ev.ts_ns, key)),
        }
    }

    pub fn finish(&self) -> AccessReport {
        let mut r = AccessReport::default();
        for (key, s) in &self.slots {
            let latency = s.latency.summary();
            match *key {
                Key::Msr { msr, write } => r.msr.push(MsrRow {
                    msr: MsrLabel::new(msr),
                    write,
                    count: s.count,
                    faults: s.faults,
                    last_value: s.last_value,
                    latency,
                }),
                Key::Pio { port, write } => r.pio.push(PioRow {
                    port,
                    write,
                    count: s.count,
                    bytes: s.bytes,
                    latency,
                }),
                Key::Mmio { gpa, write } => r.mmio.push(MmioRow {
                    gpa,
                    write,
                    count: s.count,
                    bytes: s.bytes,
                    latency,
                }),
            }
        }
        r.msr
            .sort_by(|a, b| b.count.cmp(&a.count).then(a.msr.msr.cmp(&b.msr.msr)));
        r.pio
            .sort_by(|a, b| b.count.cmp(&a.count).then(a.port.cmp(&b.port)));
        r.mmio
            .sort_by(|a, b| b.count.cmp(&a.count).then(a.gpa.cmp(&b.gpa)));
        r
    }
}
