//! IPIs inside the guest: sent (`ipi:ipi_send_cpu`, `ipi:ipi_send_cpumask`) by sender CPU,
//! target CPU and type, attributed to the function they carry (`csd:csd_queue_cpu` just
//! before the send on x86, where the IPI callback is the generic handler); functions run by
//! IPI on each CPU (`csd:csd_function_entry`); IPI vectors received
//! (`irq_vectors:call_function*_entry`, `reschedule_entry`, ...) and `tlb:tlb_flush` by
//! reason. Field report 004 attributed IPI1 to `do_nothing` and `tlb_remove_table_smp_sync`
//! this way.

use std::collections::{BTreeMap, HashMap};

use kvmscope_trace::{Event, EventKind};
use serde::Serialize;

use crate::keys::Strings;

type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// The IPI type of a function run through an IPI: `tlb_shootdown` (`flush_tlb_func`),
/// `reschedule` (no function), `irq_work`, `membarrier` (`ipi_mb`, `ipi_sync_core`, ...) or
/// `function_call`.
pub fn classify_function(function: &str) -> &'static str {
    if function.is_empty() || function == "0x0" || function == "(null)" {
        "reschedule"
    } else if function.starts_with("flush_tlb") || function.contains("tlb_remove_table") {
        "tlb_shootdown"
    } else if function.starts_with("ipi_mb")
        || function.starts_with("ipi_sync")
        || function.starts_with("ipi_rseq")
    {
        "membarrier"
    } else if function.contains("irq_work") {
        "irq_work"
    } else {
        "function_call"
    }
}

/// True for the generic handler x86 passes as the callback of every function-call IPI.
fn is_generic_handler(callback: &str) -> bool {
    callback.starts_with("generic_smp_call_function")
}

#[derive(Debug, Default)]
struct SendCounts {
    sent: u64,
    sent_by_scope: u64,
}

#[derive(Debug, Default)]
pub(super) struct Ipis {
    /// Per sender CPU: the functions queued (csd_queue_cpu) since its last IPI send, by target.
    queued: BTreeMap<u32, BTreeMap<u32, u32>>,
    /// By sender CPU, target CPU, function. The strings (functions, vectors, reasons) are
    /// ids in `names`.
    sent: Map<(u32, u32, u32), SendCounts>,
    csd: Map<(u32, u32), (u64, u64)>,
    vectors: Map<(u32, u32), u64>,
    tlb: Map<(u32, u32), u64>,
    names: Strings,
}

/// The rows of `map` keyed by `(cpu, string id)`, sorted by CPU then string.
fn by_cpu_and_name<'a, V>(
    map: &'a Map<(u32, u32), V>,
    names: &'a Strings,
) -> Vec<(u32, &'a str, &'a V)> {
    let mut rows: Vec<_> = map
        .iter()
        .map(|(&(cpu, id), v)| (cpu, names.get(id), v))
        .collect();
    rows.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    rows
}

/// IPIs from one CPU to another carrying one function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpiSentRow {
    pub sender_cpu: u32,
    pub target_cpu: u32,
    /// [`classify_function`] of the function.
    pub kind: &'static str,
    /// The function the IPI makes the target run (empty for a reschedule IPI).
    pub function: String,
    pub sent: u64,
    /// Of which sent by a thread of the scope.
    pub sent_by_scope: u64,
}

/// A function run through an IPI on one CPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CsdRow {
    pub cpu: u32,
    pub function: String,
    pub kind: &'static str,
    /// Runs because another CPU sent an IPI.
    pub runs: u64,
    /// Runs by the sending CPU itself (`csd=0`: no IPI).
    pub local_runs: u64,
}

/// `tlb:tlb_flush` events of one reason on one CPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlbFlushRow {
    pub cpu: u32,
    /// `remote shootdown` is a flush this CPU did because another CPU asked (it is what
    /// /proc/interrupts counts as TLB on x86).
    pub reason: String,
    pub flushes: u64,
}

/// IPI vectors received on one CPU (`irq_vectors:*_entry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VectorRow {
    pub cpu: u32,
    pub vector: String,
    pub count: u64,
}

/// IPIs sent and received.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IpiReport {
    pub sent: Vec<IpiSentRow>,
    pub csd_functions: Vec<CsdRow>,
    pub received_vectors: Vec<VectorRow>,
    pub tlb_flushes: Vec<TlbFlushRow>,
}

/// Parses a `%*pb` hex CPU mask (`3`, `00000000,00000003`).
fn mask_cpus(mask: &str) -> Vec<u32> {
    let digits: Vec<u32> = mask
        .chars()
        .filter(|&c| c != ',')
        .map(|c| c.to_digit(16))
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default();
    let mut cpus = Vec::new();
    for (i, v) in digits.iter().rev().enumerate() {
        for bit in 0..4u32 {
            if v & (1 << bit) != 0 {
                if let Ok(i) = u32::try_from(i) {
                    cpus.push(i * 4 + bit);
                }
            }
        }
    }
    cpus
}

impl Ipis {
    /// Functions run by IPI that x86 uses to synchronise CPUs after patching kernel text.
    pub fn text_patching_runs(&self) -> u64 {
        self.csd
            .iter()
            .filter(|((_, f), _)| {
                let f = self.names.get(*f);
                f == "do_sync_core" || f.starts_with("text_poke")
            })
            .map(|(_, &(remote, _))| remote)
            .sum()
    }

    pub fn observe(&mut self, ev: &Event<'_>, ours: bool) {
        match ev.kind {
            EventKind::CsdQueue { cpu, func } => {
                let func = self.names.id(func);
                self.queued.entry(ev.cpu).or_default().insert(cpu, func);
            }
            EventKind::IpiSend {
                cpu,
                cpumask,
                callback,
                ..
            } => {
                let targets = match cpu {
                    Some(c) => vec![c],
                    None => mask_cpus(cpumask),
                };
                let queued = self.queued.remove(&ev.cpu).unwrap_or_default();
                for t in targets {
                    let function = if is_generic_handler(callback) {
                        match queued.get(&t) {
                            Some(&f) => f,
                            None => self.names.id(callback),
                        }
                    } else if callback == "0x0" {
                        self.names.id("")
                    } else {
                        self.names.id(callback)
                    };
                    let e = self.sent.entry((ev.cpu, t, function)).or_default();
                    e.sent += 1;
                    e.sent_by_scope += u64::from(ours);
                }
            }
            EventKind::CsdFunction { entry: true, func } => {
                // The sender runs the function itself too when it is in the mask: that run
                // has no csd (printed as a null pointer) and is no IPI.
                let local = ev
                    .field("csd")
                    .is_some_and(|c| c.bytes().all(|b| b == b'0') || c == "(null)");
                let func = self.names.id(func);
                let e = self.csd.entry((ev.cpu, func)).or_default();
                if local {
                    e.1 += 1;
                } else {
                    e.0 += 1;
                }
            }
            EventKind::IrqVector { entry: true, .. } => {
                if let Some(v) = ev.name.strip_suffix("_entry") {
                    if v != "local_timer" {
                        let v = self.names.id(v);
                        *self.vectors.entry((ev.cpu, v)).or_default() += 1;
                    }
                }
            }
            _ if ev.name == "tlb_flush" => {
                // "pages:1 reason:remote shootdown (1)"
                let reason = ev
                    .payload
                    .split_once("reason:")
                    .map(|(_, r)| r.rsplit_once(" (").map_or(r, |(name, _)| name).trim())
                    .unwrap_or("unknown");
                let reason = self.names.id(reason);
                *self.tlb.entry((ev.cpu, reason)).or_default() += 1;
            }
            _ => {}
        }
    }

    pub fn finish(&self) -> IpiReport {
        // Sorted by sender, target, function.
        let mut sent: Vec<_> = self
            .sent
            .iter()
            .map(|(&(s, t, f), c)| (s, t, self.names.get(f), c))
            .collect();
        sent.sort_unstable_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        IpiReport {
            sent: sent
                .into_iter()
                .map(|(s, t, f, c)| IpiSentRow {
                    sender_cpu: s,
                    target_cpu: t,
                    kind: classify_function(f),
                    function: f.to_string(),
                    sent: c.sent,
                    sent_by_scope: c.sent_by_scope,
                })
                .collect(),
            csd_functions: by_cpu_and_name(&self.csd, &self.names)
                .into_iter()
                .map(|(cpu, f, &(runs, local_runs))| CsdRow {
                    cpu,
                    function: f.to_string(),
                    kind: classify_function(f),
                    runs,
                    local_runs,
                })
                .collect(),
            received_vectors: by_cpu_and_name(&self.vectors, &self.names)
                .into_iter()
                .map(|(cpu, v, &count)| VectorRow {
                    cpu,
                    vector: v.to_string(),
                    count,
                })
                .collect(),
            tlb_flushes: by_cpu_and_name(&self.tlb, &self.names)
                .into_iter()
                .map(|(cpu, r, &flushes)| TlbFlushRow {
                    cpu,
                    reason: r.to_string(),
                    flushes,
                })
                .collect(),
        }
    }
}

impl IpiReport {
    /// IPIs sent of a kind (`tlb_shootdown`, ...) to `target` (all when `None`); only those
    /// sent by the scope when `scope_only`.
    pub fn sent(&self, kind: &str, target: Option<u32>, scope_only: bool) -> u64 {
        self.sent
            .iter()
            .filter(|r| r.kind == kind && target.is_none_or(|t| t == r.target_cpu))
            .map(|r| if scope_only { r.sent_by_scope } else { r.sent })
            .sum()
    }

    /// Functions of a kind run on `cpu` (all when `None`) because another CPU sent an IPI.
    pub fn runs(&self, kind: &str, cpu: Option<u32>) -> u64 {
        self.csd_functions
            .iter()
            .filter(|r| r.kind == kind && cpu.is_none_or(|c| c == r.cpu))
            .map(|r| r.runs)
            .sum()
    }

    /// TLB flushes done on `cpu` (all when `None`) because another CPU asked: what x86
    /// /proc/interrupts counts as `TLB`.
    pub fn remote_tlb_flushes(&self, cpu: Option<u32>) -> u64 {
        self.tlb_flushes
            .iter()
            .filter(|r| r.reason == "remote shootdown" && cpu.is_none_or(|c| c == r.cpu))
            .map(|r| r.flushes)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_kinds() {
        assert_eq!(mask_cpus("3"), vec![0, 1]);
        assert_eq!(mask_cpus("00000000,00000010"), vec![4]);
        assert_eq!(mask_cpus("1,00000000"), vec![32]);
        assert_eq!(classify_function("flush_tlb_func"), "tlb_shootdown");
        assert_eq!(
            classify_function("tlb_remove_table_smp_sync"),
            "tlb_shootdown"
        );
        assert_eq!(classify_function(""), "reschedule");
        assert_eq!(classify_function("ipi_mb"), "membarrier");
        assert_eq!(classify_function("do_nothing"), "function_call");
    }
}

#[cfg(test)]
mod trace_tests {
    use super::super::{Guest, Scope};

    #[test]
    fn sends_are_attributed_to_the_queued_function() {
        let text = "\
           storm-42      [000] d..1.   1.000000: csd_queue_cpu: cpu=1 callsite=on_each_cpu_cond_mask+0x20/0x60 func=flush_tlb_func csd=00000000e025bcc4
           storm-42      [000] d..1.   1.000001: ipi_send_cpu: cpu=1 callsite=on_each_cpu_cond_mask+0x20/0x60 callback=generic_smp_call_function_single_interrupt+0x0/0x10
           storm-42      [000] d..1.   1.000002: csd_function_entry: func=flush_tlb_func, csd=0000000000000000
           spin-43       [001] d.h..   1.000003: call_function_single_entry: vector=251
           spin-43       [001] d.h..   1.000004: csd_function_entry: func=flush_tlb_func, csd=00000000dada4b8b
           spin-43       [001] d.h1.   1.000005: tlb_flush: pages:1 reason:remote shootdown (1)
           other-7       [000] dNs4.   1.000006: ipi_send_cpu: cpu=1 callsite=wakeup_preempt+0x92/0xa0 callback=0x0
           other-7       [000] d..1.   1.000007: ipi_send_cpumask: cpumask=3 callsite=smp_call_function_many_cond+0x1/0x2 callback=do_nothing+0x0/0x10
";
        let mut g = Guest::new(Scope::tids([42]));
        kvmscope_trace::text::decode(text.as_bytes(), |ev| g.observe(ev)).unwrap();
        let r = g.finish().ipi;
        assert_eq!(r.sent("tlb_shootdown", Some(1), true), 1);
        assert_eq!(r.sent("tlb_shootdown", None, false), 1);
        assert_eq!(r.sent("reschedule", Some(1), false), 1);
        assert_eq!(r.sent("function_call", None, false), 2, "{:?}", r.sent);
        assert_eq!(r.runs("tlb_shootdown", Some(1)), 1);
        assert_eq!(r.runs("tlb_shootdown", Some(0)), 0);
        assert_eq!(
            r.csd_functions
                .iter()
                .find(|c| c.cpu == 0)
                .unwrap()
                .local_runs,
            1
        );
        assert_eq!(r.remote_tlb_flushes(Some(1)), 1);
        assert_eq!(r.received_vectors[0].vector, "call_function_single");
        let f = r.sent.iter().find(|s| s.kind == "tlb_shootdown").unwrap();
        assert_eq!(f.function, "flush_tlb_func");
    }
}
