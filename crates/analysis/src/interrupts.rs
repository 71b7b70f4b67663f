//! Interrupts and timers as KVM delivers them: injected vectors, IPIs between vCPUs, the
//! in-kernel LAPIC timer (hv_timer state, early/late expiry), halt wake-ups and halt-polling
//! (field reports 003 and 004).

use kvmscope_trace::{Event, EventKind};
use serde::Serialize;

use crate::keys::Tally;
use crate::stats::{Latency, LatencySummary};

#[derive(Debug, Default)]
pub struct Interrupts {
    injected: Tally<u32>,
    accepted: Tally<u32>,
    ipis: Tally<(u32, u32)>,
    exceptions: Tally<u32>,
    eoi: u64,
    set_irq: u64,
    msi: u64,
    hv_timer_on: u64,
    hv_timer_off: u64,
    lapic_early: u64,
    lapic_late: u64,
    lapic_delta: Latency,
    wake_waited: Latency,
    wake_polled: Latency,
    wake_poll_invalid: u64,
    poll_grow: u64,
    poll_shrink: u64,
    /// arm64 WFI / WFE traps: count, and the time to the next kvm_entry on the thread.
    wfi: Latency,
    wfe: Latency,
    wfi_count: u64,
    wfe_count: u64,
    /// Per thread: an open WFx trap (ts, is WFE) waiting for its kvm_entry.
    wfx_open: crate::keys::IdMap<u32, (u64, bool)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InterruptReport {
    /// `kvm_inj_virq` by vector.
    pub injected: Vec<(u32, u64)>,
    /// `kvm_apic_accept_irq` by vector.
    pub accepted: Vec<(u32, u64)>,
    /// `kvm_apic_ipi` by (destination, vector).
    pub ipis: Vec<(u32, u32, u64)>,
    /// `kvm_inj_exception` by vector.
    pub exceptions: Vec<(u32, u64)>,
    pub eoi: u64,
    pub set_irq: u64,
    pub msi: u64,
    pub timer: TimerReport,
    pub halt: HaltReport,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimerReport {
    /// `kvm_hv_timer_state` with the VMX preemption timer in use / not in use.
    pub hv_timer_on: u64,
    pub hv_timer_off: u64,
    /// `kvm_wait_lapic_expire`: timer interrupts delivered before / after the deadline.
    pub lapic_early: u64,
    pub lapic_late: u64,
    /// |delta| of lapic expiry, ns.
    pub lapic_delta: LatencySummary,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HaltReport {
    /// Wake-ups after really sleeping (halt-polling did not catch the event).
    pub waited: LatencySummary,
    /// Wake-ups caught by halt-polling.
    pub polled: LatencySummary,
    /// Poll successes share of wake-ups, percent.
    pub poll_success_pct: f64,
    pub poll_invalid: u64,
    pub poll_grow: u64,
    pub poll_shrink: u64,
    /// arm64 WFI and WFE traps (`kvm_wfx_arm64`), each with its wait: the trap to the next
    /// `kvm_entry` on the thread (blocked in WFI, or yielding on WFE, plus the wake-up).
    pub wfi: WfxReport,
    pub wfe: WfxReport,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WfxReport {
    pub count: u64,
    pub wait: LatencySummary,
}

impl Interrupts {
    /// Inlined into the caller: the events this does nothing with cost a branch, not a call.
    #[inline]
    pub fn observe(&mut self, ev: &Event<'_>) {
        match ev.kind {
            EventKind::InjVirq { irq, .. } => self.injected.bump(irq),
            EventKind::ApicAcceptIrq { vec, .. } => self.accepted.bump(vec),
            EventKind::ApicIpi { dst, vec } => self.ipis.bump((dst, vec)),
            EventKind::InjException { vector } => self.exceptions.bump(vector),
            EventKind::Eoi { .. } => self.eoi += 1,
            EventKind::SetIrq { .. } => self.set_irq += 1,
            EventKind::MsiSetIrq { .. } => self.msi += 1,
            EventKind::HvTimerState { hv_timer, .. } => {
                if hv_timer {
                    self.hv_timer_on += 1;
                } else {
                    self.hv_timer_off += 1;
                }
            }
            EventKind::WaitLapicExpire { delta_ns, .. } => {
                if delta_ns < 0 {
                    self.lapic_late += 1;
                } else {
                    self.lapic_early += 1;
                }
                self.lapic_delta.add(delta_ns.unsigned_abs());
            }
            EventKind::VcpuWakeup { ns, waited, valid } => {
                if waited {
                    self.wake_waited.add(ns);
                } else {
                    self.wake_polled.add(ns);
                }
                self.wake_poll_invalid += u64::from(!valid);
            }
            EventKind::Wfx { wfe, .. } => {
                if wfe {
                    self.wfe_count += 1;
                } else {
                    self.wfi_count += 1;
                }
                self.wfx_open.insert(ev.tid, (ev.ts_ns, wfe));
            }
            // Most traces have no WFx: no hash per entry then.
            EventKind::KvmEntry { .. } if !self.wfx_open.is_empty() => {
                if let Some((start, wfe)) = self.wfx_open.remove(&ev.tid) {
                    if let Some(d) = ev.ts_ns.checked_sub(start) {
                        if wfe {
                            self.wfe.add(d);
                        } else {
                            self.wfi.add(d);
                        }
                    }
                }
            }
            EventKind::HaltPollNs { grow, .. } => {
                if grow {
                    self.poll_grow += 1;
                } else {
                    self.poll_shrink += 1;
                }
            }
            _ => {}
        }
    }

    pub fn finish(&self) -> InterruptReport {
        let wakes = self.wake_waited.count() + self.wake_polled.count();
        InterruptReport {
            injected: self.injected.sorted(),
            accepted: self.accepted.sorted(),
            ipis: self
                .ipis
                .sorted()
                .into_iter()
                .map(|((d, v), n)| (d, v, n))
                .collect(),
            exceptions: self.exceptions.sorted(),
            eoi: self.eoi,
            set_irq: self.set_irq,
            msi: self.msi,
            timer: TimerReport {
                hv_timer_on: self.hv_timer_on,
                hv_timer_off: self.hv_timer_off,
                lapic_early: self.lapic_early,
                lapic_late: self.lapic_late,
                lapic_delta: self.lapic_delta.summary(),
            },
            halt: HaltReport {
                waited: self.wake_waited.summary(),
                polled: self.wake_polled.summary(),
                poll_success_pct: crate::exits::pct(self.wake_polled.count() as f64, wakes as f64),
                poll_invalid: self.wake_poll_invalid,
                poll_grow: self.poll_grow,
                poll_shrink: self.poll_shrink,
                wfi: WfxReport {
                    count: self.wfi_count,
                    wait: self.wfi.summary(),
                },
                wfe: WfxReport {
                    count: self.wfe_count,
                    wait: self.wfe.summary(),
                },
            },
        }
    }
}

#[cfg(test)]
mod wfx_tests {
    use super::*;
    use kvmscope_trace::text::decode_sequential;

    #[test]
    fn arm64_wfi_and_wfe_are_split_with_their_waits() {
        let text = "vcpu-9 [000] ..... 1.000000: kvm_exit: TRAP: HSR_EC: 0x0001 (WFx), PC: 0x0000ffff80001000\n\
                    vcpu-9 [000] ..... 1.000001: kvm_wfx_arm64: guest executed wfi at: 0xffff80001000\n\
                    vcpu-9 [000] d.... 1.000501: kvm_entry: PC: 0x0000ffff80001004\n\
                    vcpu-9 [000] ..... 1.001000: kvm_wfx_arm64: guest executed wfe at: 0xffff80002000\n\
                    vcpu-9 [000] d.... 1.001003: kvm_entry: PC: 0x0000ffff80002004\n";
        let mut i = Interrupts::default();
        decode_sequential(text.as_bytes(), |ev| i.observe(ev)).unwrap();
        let h = i.finish().halt;
        assert_eq!(
            (h.wfi.count, h.wfi.wait.samples, h.wfi.wait.min_ns),
            (1, 1, 500_000)
        );
        assert_eq!((h.wfe.count, h.wfe.wait.min_ns), (1, 3_000));
    }
}
