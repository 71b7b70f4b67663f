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

use crate::keys::{KeyMap, MsrLabel, ThreadSlots};
use crate::stats::{Latency, LatencySummary};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Msr {
        msr: u32,
        write: bool,
    },
    Pio {
        port: u32,
        write: bool,
    },
    Mmio {
        gpa: u64,
        write: bool,
    },
    /// arm64 system register; `access` for kvm_sys_access, else kvm_handle_sys_reg.
    SysReg {
        enc: [u8; 5],
        write: bool,
        access: bool,
    },
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
    /// An access waiting for the next kvm_entry: its time and its slot's id.
    access: Option<(u64, u32)>,
    /// The last kvm_exit, for MMIO reads.
    exit_ts: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Accesses {
    slots: KeyMap<Key, Slot>,
    threads: ThreadSlots<Open>,
    /// System-register names as the trace printed them (`SYS_` dropped), by encoding.
    sysreg_names: BTreeMap<[u8; 5], String>,
    /// System-register traps per register and vCPU thread (few: SGI1R writes are one per IPI).
    sysreg_threads: BTreeMap<(Key, u32), u64>,
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

/// One arm64 system register and direction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SysRegRow {
    /// As the trace names it (`SYS_` dropped), else from the encoding, else `S<op0>_<op1>_C<n>_C<m>_<op2>`.
    pub name: String,
    /// op0, op1, CRn, CRm, op2.
    pub enc: [u8; 5],
    pub write: bool,
    pub count: u64,
    /// What a trap of this register usually means (IPI, timer, boot...).
    pub meaning: Option<&'static str>,
    /// kvm_sys_access → next kvm_entry.
    pub latency: LatencySummary,
    /// Traps per vCPU thread (tid, count), most first: for ICC_SGI1R_EL1, the IPIs each vCPU
    /// sent (the target is in the written value, which the tracepoint does not carry).
    pub by_thread: Vec<(u32, u64)>,
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
    /// arm64 system-register traps (kvm_sys_access; kvm_handle_sys_reg when the trace has
    /// only that), by register and direction.
    pub sysreg: Vec<SysRegRow>,
    pub msr: Vec<MsrRow>,
    pub pio: Vec<PioRow>,
    pub mmio: Vec<MmioRow>,
}

impl Accesses {
    /// Inlined into the caller: the events this does nothing with cost a branch, not a call.
    #[inline]
    pub fn observe(&mut self, ev: &Event<'_>) {
        match ev.kind {
            EventKind::KvmExit(_) => self.exit(ev),
            EventKind::KvmEntry { .. } => self.entry(ev),
            EventKind::Msr { .. }
            | EventKind::Pio { .. }
            | EventKind::Mmio { .. }
            | EventKind::SysReg { enc: Some(_), .. } => self.access(ev),
            _ => {}
        }
    }

    #[inline(never)]
    fn exit(&mut self, ev: &Event<'_>) {
        self.threads.slot(ev.tid).exit_ts = Some(ev.ts_ns);
    }

    #[inline(never)]
    fn entry(&mut self, ev: &Event<'_>) {
        let open = self.threads.slot(ev.tid);
        open.exit_ts = None;
        if let Some((start, id)) = open.access.take() {
            if let (Some(slot), true) = (self.slots.by_id(id), ev.ts_ns >= start) {
                slot.latency.add(ev.ts_ns - start);
            }
        }
    }

    /// An MSR, port, MMIO or system-register access.
    #[inline(never)]
    fn access(&mut self, ev: &Event<'_>) {
        let (key, bytes, value, fault) = match ev.kind {
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
            EventKind::SysReg {
                enc: Some(enc),
                name,
                write,
                ..
            } => {
                let name = name.strip_prefix("SYS_").unwrap_or(name);
                if !name.is_empty() && !self.sysreg_names.contains_key(&enc) {
                    self.sysreg_names.insert(enc, name.to_string());
                }
                (
                    Key::SysReg {
                        enc,
                        write: write.unwrap_or(false),
                        access: ev.name == "kvm_sys_access",
                    },
                    0,
                    0,
                    false,
                )
            }
            _ => return,
        };
        if matches!(key, Key::SysReg { .. }) {
            *self.sysreg_threads.entry((key, ev.tid)).or_default() += 1;
        }
        let (id, slot) = self.slots.entry(key);
        slot.count += 1;
        slot.bytes += bytes;
        slot.faults += u64::from(fault);
        slot.last_value = value;
        let open = self.threads.slot(ev.tid);
        match key {
            Key::Mmio { write: false, .. } => {
                if let Some(start) = open.exit_ts.take() {
                    if ev.ts_ns >= start {
                        slot.latency.add(ev.ts_ns - start);
                    }
                }
            }
            _ => open.access = Some((ev.ts_ns, id)),
        }
    }

    fn has_sys_access(&self) -> bool {
        self.slots
            .keys()
            .iter()
            .any(|k| matches!(k, Key::SysReg { access: true, .. }))
    }

    pub fn finish(&self) -> AccessReport {
        let mut r = AccessReport::default();
        let mut slots: Vec<(&Key, &Slot)> = self.slots.iter().collect();
        slots.sort_unstable_by_key(|&(k, _)| *k);
        for (key, s) in slots {
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
                Key::SysReg { enc, write, access } => {
                    if !access && self.has_sys_access() {
                        continue; // the same traps, counted by kvm_sys_access
                    }
                    let name = self.sysreg_names.get(&enc).cloned().unwrap_or_else(|| {
                        kvmscope_trace::tables::sysreg_name(enc).map_or_else(
                            || {
                                let [a, b, c, d, e] = enc;
                                format!("S{a}_{b}_C{c}_C{d}_{e}")
                            },
                            str::to_string,
                        )
                    });
                    let mut by_thread: Vec<(u32, u64)> = self
                        .sysreg_threads
                        .range((*key, 0)..=(*key, u32::MAX))
                        .map(|(&(_, tid), &n)| (tid, n))
                        .collect();
                    by_thread.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                    r.sysreg.push(SysRegRow {
                        meaning: kvmscope_trace::tables::sysreg_meaning(&name),
                        name,
                        enc,
                        write,
                        count: s.count,
                        latency,
                        by_thread,
                    });
                }
            }
        }
        r.sysreg
            .sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
        r.msr
            .sort_by(|a, b| b.count.cmp(&a.count).then(a.msr.msr.cmp(&b.msr.msr)));
        r.pio
            .sort_by(|a, b| b.count.cmp(&a.count).then(a.port.cmp(&b.port)));
        r.mmio
            .sort_by(|a, b| b.count.cmp(&a.count).then(a.gpa.cmp(&b.gpa)));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvmscope_trace::text::decode_sequential;

    fn report(text: &str) -> AccessReport {
        let mut a = Accesses::default();
        decode_sequential(text.as_bytes(), |ev| a.observe(ev)).unwrap();
        a.finish()
    }

    /// arm64 lines in the kernel's print formats (kvm_exit, kvm_handle_sys_reg,
    /// kvm_sys_access, kvm_entry).
    #[test]
    fn arm64_system_register_traps_by_register_with_latency_and_meaning() {
        let mut t = String::new();
        for (i, (enc, name, dir)) in [
            ("(3,0,12,11,5)", "SYS_ICC_SGI1R_EL1", "write to"),
            ("(3,0,12,11,5)", "SYS_ICC_SGI1R_EL1", "write to"),
            ("(3,3,14,3,1)", "SYS_CNTV_CTL_EL0", "read from"),
        ]
        .iter()
        .enumerate()
        {
            let ts = 100 + i * 10;
            t.push_str(&format!(
                "qemu-system-aar-300 [001] ..... {ts}.000000: kvm_exit: TRAP: HSR_EC: 0x0018 (SYS64), PC: 0x0000ffff80001000\n\
                 qemu-system-aar-300 [001] ..... {ts}.000001: kvm_handle_sys_reg: HSR 0x62300000\n\
                 qemu-system-aar-300 [001] ..... {ts}.000002: kvm_sys_access: PC: ffff80001000 {dir} {enc} {name}\n\
                 qemu-system-aar-300 [001] d.... {ts}.000007: kvm_entry: PC: 0x0000ffff80001004\n"
            ));
        }
        let r = report(&t);
        assert_eq!(r.sysreg.len(), 2, "{:#?}", r.sysreg);
        let sgi = &r.sysreg[0];
        assert_eq!(
            (sgi.name.as_str(), sgi.enc, sgi.write, sgi.count),
            ("ICC_SGI1R_EL1", [3, 0, 12, 11, 5], true, 2)
        );
        assert!(sgi.meaning.unwrap().contains("IPI"));
        assert_eq!(sgi.by_thread, vec![(300, 2)]);
        // kvm_sys_access → kvm_entry: 5 us each.
        assert_eq!((sgi.latency.samples, sgi.latency.min_ns), (2, 5_000));
        assert_eq!(r.sysreg[1].name, "CNTV_CTL_EL0");
        assert!(!r.sysreg[1].write);
    }

    #[test]
    fn kvm_handle_sys_reg_alone_names_the_register_from_the_esr() {
        // ESR of MSR ICC_SGI1R_EL1, x1 (EC 0x18, IL, op0 3, op2 5, CRn 12, Rt 1, CRm 11).
        let esr =
            (0x18u64 << 26) | (1 << 25) | (3 << 20) | (5 << 17) | (12 << 10) | (1 << 5) | (11 << 1);
        let r = report(&format!(
            "vcpu-7 [000] ..... 1.000000: kvm_handle_sys_reg: HSR 0x{esr:08x}\n"
        ));
        assert_eq!(r.sysreg.len(), 1);
        assert_eq!(
            (r.sysreg[0].name.as_str(), r.sysreg[0].write),
            ("ICC_SGI1R_EL1", true)
        );
    }
}
