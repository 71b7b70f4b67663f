//! hrtimers by function and CPU, the "re-armed from its own interrupt" pattern, and local
//! timer interrupts per CPU.
//!
//! A timer is re-armed from its own interrupt when, on the CPU where timer T just expired,
//! T is started again before that timer interrupt ends: either by its callback
//! (`hrtimer_start` of T between `hrtimer_expire_entry` and `hrtimer_expire_exit` of T), or by
//! the hrtimer core because the callback returned HRTIMER_RESTART (`hrtimer_start` of T after
//! its `hrtimer_expire_exit`, before `irq_vectors:local_timer_exit`). That is what a tick that
//! never stops looks like (`nohz=off`, field report 003: `enqueue_hrtimer` under
//! `__hrtimer_run_queues`). A timer re-armed later by a task (a `nanosleep` loop) is not.
//! Without `irq_vectors:local_timer_*` events the interrupt's end is unknown; then a start of
//! T that is the very next hrtimer event on that CPU after T's expiry counts, and
//! [`TimerReport::irq_context_known`] is false.

use std::collections::{BTreeMap, HashMap, HashSet};

use kvmscope_trace::{Event, EventKind};
use serde::Serialize;

use crate::keys::{KeyMap, Strings};

/// Hash sets and maps by timer address (foldhash: these are looked up per timer event).
type ByTimer<V> = HashMap<u64, V, foldhash::fast::FixedState>;
type Timerset = HashSet<u64, foldhash::fast::FixedState>;

#[derive(Debug, Default)]
struct CpuState {
    in_local_timer: bool,
    last_expired: Option<u64>,
    running: Vec<u64>,
    expired_in_irq: Timerset,
    last_exit: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    tsc_deadline_writes_in_irq: u64,
    starts: u64,
    starts_by_scope: u64,
    expiries: u64,
    expiries_of_scope_timers: u64,
    cancels: u64,
    rearmed_in_handler: u64,
    restarted_in_interrupt: u64,
}

#[derive(Debug, Default)]
pub(super) struct Timers {
    cpus: KeyMap<u32, CpuState>,
    /// By (function id in `names`, CPU).
    rows: KeyMap<(u32, u32), Counts>,
    /// The function of each timer seen, by address.
    functions: ByTimer<u32>,
    names: Strings,
    scope_timers: Timerset,
    local_timer: BTreeMap<u32, u64>,
    irq_context_known: bool,
    scope_deadline_writes_task: u64,
    scope_deadline_writes_irq: u64,
}

/// One hrtimer function on one CPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HrtimerRow {
    /// The callback (`tick_nohz_handler`, `hrtimer_wakeup`, `apic_timer_fn`, ...).
    pub function: String,
    pub cpu: u32,
    /// `hrtimer_start` events.
    pub starts: u64,
    /// Of which by a thread of the scope.
    pub starts_by_scope: u64,
    /// `hrtimer_expire_entry` events.
    pub expiries: u64,
    /// Expiries of timers a thread of the scope started (matched by timer address).
    pub expiries_of_scope_timers: u64,
    /// `hrtimer_cancel` events.
    pub cancels: u64,
    /// Starts from inside the timer's own callback.
    pub rearmed_in_handler: u64,
    /// Restarts after the callback, in the same timer interrupt (HRTIMER_RESTART).
    pub restarted_in_interrupt: u64,
    /// IA32_TSC_DEADLINE writes in timer interrupts whose last expired timer was this
    /// function (the interrupt programming the next event after running it).
    pub tsc_deadline_writes_in_irq: u64,
}

impl HrtimerRow {
    /// Both kinds of re-arming from the timer's own interrupt.
    pub fn rearmed_from_own_interrupt(&self) -> u64 {
        self.rearmed_in_handler + self.restarted_in_interrupt
    }
}

/// Local timer interrupts (`irq_vectors:local_timer_entry`) on one CPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalTimerRow {
    pub cpu: u32,
    pub interrupts: u64,
}

/// hrtimers and timer interrupts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TimerReport {
    /// Sorted by function, then CPU.
    pub hrtimers: Vec<HrtimerRow>,
    pub local_timer: Vec<LocalTimerRow>,
    /// True when local timer interrupt boundaries were traced (see the module docs).
    pub irq_context_known: bool,
    /// IA32_TSC_DEADLINE writes caused by the scope: written by a scope thread outside a
    /// timer interrupt (arming its timer), or inside a timer interrupt that expired a timer a
    /// scope thread started (needs `irq_context_known`).
    pub scope_tsc_deadline_writes: ScopeDeadlineWrites,
}

/// IA32_TSC_DEADLINE writes attributed to the scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ScopeDeadlineWrites {
    /// By a scope thread, outside timer interrupts.
    pub by_task: u64,
    /// In timer interrupts that expired a scope timer.
    pub in_interrupt: u64,
}

impl ScopeDeadlineWrites {
    pub fn total(&self) -> u64 {
        self.by_task + self.in_interrupt
    }
}

impl Timers {
    fn row(&mut self, function: u32, cpu: u32) -> &mut Counts {
        self.rows.entry((function, cpu)).1
    }

    pub fn observe(&mut self, ev: &Event<'_>, ours: bool) {
        let cpu = ev.cpu;
        match ev.kind {
            EventKind::HrtimerStart {
                hrtimer, function, ..
            } => {
                let function = self.names.id(function);
                self.functions.insert(hrtimer, function);
                let known = self.irq_context_known;
                let st = self.cpus.entry(cpu).1;
                // A start inside a timer interrupt belongs to whatever task the interrupt
                // hit (the tick restarting itself), not to that task: only task-context
                // starts make a timer the scope's.
                if ours && !st.in_local_timer {
                    self.scope_timers.insert(hrtimer);
                }
                let in_handler = st.running.contains(&hrtimer);
                let restarted = !in_handler
                    && if known {
                        st.in_local_timer && st.expired_in_irq.contains(&hrtimer)
                    } else {
                        st.last_exit == Some(hrtimer)
                    };
                st.last_exit = None;
                let row = self.row(function, cpu);
                row.starts += 1;
                row.starts_by_scope += u64::from(ours);
                row.rearmed_in_handler += u64::from(in_handler);
                row.restarted_in_interrupt += u64::from(restarted);
            }
            EventKind::HrtimerExpireEntry { hrtimer, function } => {
                let function = self.names.id(function);
                self.functions.insert(hrtimer, function);
                let st = self.cpus.entry(cpu).1;
                st.running.push(hrtimer);
                st.expired_in_irq.insert(hrtimer);
                st.last_expired = Some(hrtimer);
                st.last_exit = None;
                let of_scope = self.scope_timers.contains(&hrtimer);
                let row = self.row(function, cpu);
                row.expiries += 1;
                row.expiries_of_scope_timers += u64::from(of_scope);
            }
            EventKind::HrtimerExpireExit { hrtimer } => {
                let st = self.cpus.entry(cpu).1;
                if let Some(i) = st.running.iter().rposition(|&t| t == hrtimer) {
                    st.running.remove(i);
                }
                st.last_exit = Some(hrtimer);
            }
            EventKind::HrtimerCancel { hrtimer } => {
                let st = self.cpus.entry(cpu).1;
                st.last_exit = None;
                let function = match self.functions.get(&hrtimer) {
                    Some(&f) => f,
                    None => self.names.id("unknown"),
                };
                self.row(function, cpu).cancels += 1;
            }
            EventKind::GuestMsr {
                write: true,
                msr: super::MSR_TSC_DEADLINE,
                ..
            } => {
                let st = self.cpus.entry(cpu).1;
                if st.in_local_timer {
                    let scope_irq = st
                        .expired_in_irq
                        .iter()
                        .any(|t| self.scope_timers.contains(t));
                    let last = st.last_expired;
                    self.scope_deadline_writes_irq += u64::from(scope_irq);
                    if let Some(&f) = last.and_then(|t| self.functions.get(&t)) {
                        self.row(f, cpu).tsc_deadline_writes_in_irq += 1;
                    }
                } else if ours {
                    self.scope_deadline_writes_task += 1;
                }
            }
            EventKind::IrqVector { entry, .. } if ev.name.starts_with("local_timer_") => {
                self.irq_context_known = true;
                let st = self.cpus.entry(cpu).1;
                st.in_local_timer = entry;
                st.expired_in_irq.clear();
                st.last_expired = None;
                if entry {
                    *self.local_timer.entry(cpu).or_default() += 1;
                }
            }
            _ => {}
        }
    }

    pub fn finish(&self) -> TimerReport {
        // Sorted by function, then CPU.
        let mut rows: Vec<_> = self
            .rows
            .iter()
            .map(|(&(f, cpu), c)| (self.names.get(f), cpu, c))
            .collect();
        rows.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        TimerReport {
            hrtimers: rows
                .into_iter()
                .map(|(function, cpu, c)| HrtimerRow {
                    function: function.to_string(),
                    cpu,
                    starts: c.starts,
                    starts_by_scope: c.starts_by_scope,
                    expiries: c.expiries,
                    expiries_of_scope_timers: c.expiries_of_scope_timers,
                    cancels: c.cancels,
                    rearmed_in_handler: c.rearmed_in_handler,
                    restarted_in_interrupt: c.restarted_in_interrupt,
                    tsc_deadline_writes_in_irq: c.tsc_deadline_writes_in_irq,
                })
                .collect(),
            local_timer: self
                .local_timer
                .iter()
                .map(|(&cpu, &interrupts)| LocalTimerRow { cpu, interrupts })
                .collect(),
            irq_context_known: self.irq_context_known,
            scope_tsc_deadline_writes: ScopeDeadlineWrites {
                by_task: self.scope_deadline_writes_task,
                in_interrupt: self.scope_deadline_writes_irq,
            },
        }
    }
}

impl TimerReport {
    /// Expiries of `function` (any when `None`) on `cpu` (all when `None`).
    pub fn expiries(&self, function: Option<&str>, cpu: Option<u32>) -> u64 {
        self.hrtimers
            .iter()
            .filter(|r| function.is_none_or(|f| f == r.function) && cpu.is_none_or(|c| c == r.cpu))
            .map(|r| r.expiries)
            .sum()
    }

    /// Per function, over all CPUs: expiries of timers started by the scope, most first.
    pub fn scope_functions(&self) -> Vec<(String, u64)> {
        let mut m: BTreeMap<&str, u64> = BTreeMap::new();
        for r in &self.hrtimers {
            if r.expiries_of_scope_timers > 0 || r.starts_by_scope > 0 {
                *m.entry(&r.function).or_default() += r.expiries_of_scope_timers;
            }
        }
        let mut v: Vec<(String, u64)> = m.into_iter().map(|(f, n)| (f.to_string(), n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }

    /// The function with the most expiries on `cpu` (all CPUs when `None`).
    pub fn top_function(&self, cpu: Option<u32>) -> Option<(&str, u64)> {
        let mut m: BTreeMap<&str, u64> = BTreeMap::new();
        for r in self
            .hrtimers
            .iter()
            .filter(|r| cpu.is_none_or(|c| c == r.cpu))
        {
            *m.entry(&r.function).or_default() += r.expiries;
        }
        m.into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
    }

    /// Re-arms from the timer's own interrupt of `function` on `cpu` (all when `None`).
    pub fn rearmed_from_own_interrupt(&self, function: &str, cpu: Option<u32>) -> u64 {
        self.hrtimers
            .iter()
            .filter(|r| r.function == function && cpu.is_none_or(|c| c == r.cpu))
            .map(HrtimerRow::rearmed_from_own_interrupt)
            .sum()
    }

    /// Local timer interrupts on `cpu` (all when `None`).
    pub fn local_timer_interrupts(&self, cpu: Option<u32>) -> u64 {
        self.local_timer
            .iter()
            .filter(|r| cpu.is_none_or(|c| c == r.cpu))
            .map(|r| r.interrupts)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Guest, Scope};

    fn run(text: &str, scope: Scope) -> super::TimerReport {
        let mut g = Guest::new(scope);
        kvmscope_trace::text::decode(text.as_bytes(), |ev| g.observe(ev)).unwrap();
        g.finish().timers
    }

    const IN_IRQ: &str = "\
          <idle>-0       [001] d.h..   100.000000: local_timer_entry: vector=236
          <idle>-0       [001] d.h..   100.000001: hrtimer_expire_entry: hrtimer=00000000aaaa0001 function=tick_nohz_handler now=100000000000
          <idle>-0       [001] d.h..   100.000002: hrtimer_expire_exit: hrtimer=00000000aaaa0001
          <idle>-0       [001] d.h1.   100.000003: hrtimer_start: hrtimer=00000000aaaa0001 function=tick_nohz_handler expires=100004000000 softexpires=100004000000 mode=ABS was_armed=0
          <idle>-0       [001] d.h..   100.000004: hrtimer_expire_entry: hrtimer=00000000bbbb0002 function=apic_timer_fn now=100000000000
          <idle>-0       [001] d.h1.   100.000005: hrtimer_start: hrtimer=00000000bbbb0002 function=apic_timer_fn expires=100000100000 softexpires=100000100000 mode=ABS_HARD was_armed=0
          <idle>-0       [001] d.h..   100.000006: hrtimer_expire_exit: hrtimer=00000000bbbb0002
          <idle>-0       [001] d.h..   100.000007: hrtimer_expire_entry: hrtimer=00000000cccc0003 function=hrtimer_wakeup now=100000000000
          <idle>-0       [001] d.h..   100.000008: hrtimer_expire_exit: hrtimer=00000000cccc0003
          <idle>-0       [001] d.h..   100.000009: local_timer_exit: vector=236
           storm-42      [001] d..1.   100.000050: hrtimer_start: hrtimer=00000000cccc0003 function=hrtimer_wakeup expires=100000200000 softexpires=100000200000 mode=ABS was_armed=0
           storm-42      [001] d..1.   100.000051: write_msr: 6e0, value 1234
";

    #[test]
    fn rearm_kinds_are_told_apart() {
        let r = run(IN_IRQ, Scope::tids([42]));
        assert!(r.irq_context_known);
        let row = |f: &str| r.hrtimers.iter().find(|h| h.function == f).unwrap().clone();
        // The tick returned HRTIMER_RESTART: restarted after its exit, same interrupt.
        assert_eq!(row("tick_nohz_handler").restarted_in_interrupt, 1);
        assert_eq!(row("tick_nohz_handler").rearmed_in_handler, 0);
        // apic_timer_fn called hrtimer_start from inside its handler.
        assert_eq!(row("apic_timer_fn").rearmed_in_handler, 1);
        // The sleep was re-armed by its task after the interrupt ended: not from its interrupt.
        let w = row("hrtimer_wakeup");
        assert_eq!(w.rearmed_from_own_interrupt(), 0);
        assert_eq!(w.starts_by_scope, 1);
        assert_eq!(w.expiries, 1);
        assert_eq!(r.local_timer_interrupts(Some(1)), 1);
        assert_eq!(
            r.top_function(Some(1)).map(|(f, _)| f),
            Some("apic_timer_fn")
        );
        assert_eq!(r.rearmed_from_own_interrupt("tick_nohz_handler", None), 1);
        // The task's arming write is the scope's; no write happened inside the interrupt.
        assert_eq!(r.scope_tsc_deadline_writes.by_task, 1);
        assert_eq!(r.scope_tsc_deadline_writes.in_interrupt, 0);
    }

    #[test]
    fn without_interrupt_boundaries_the_next_event_decides() {
        let text: String = IN_IRQ
            .lines()
            .filter(|l| !l.contains("local_timer"))
            .map(|l| format!("{l}\n"))
            .collect();
        let r = run(&text, Scope::all());
        assert!(!r.irq_context_known);
        let row = |f: &str| r.hrtimers.iter().find(|h| h.function == f).unwrap().clone();
        assert_eq!(row("tick_nohz_handler").restarted_in_interrupt, 1);
        assert_eq!(row("apic_timer_fn").rearmed_in_handler, 1);
        // The task's start directly follows the expiry of the same timer: without interrupt
        // boundaries this is indistinguishable, and is counted (irq_context_known says so).
        assert_eq!(row("hrtimer_wakeup").restarted_in_interrupt, 1);
    }

    #[test]
    fn deadline_writes_are_attributed_to_the_scope() {
        let text = "\
           storm-42      [001] d..1.   1.000000: hrtimer_start: hrtimer=00000000cccc0003 function=hrtimer_wakeup expires=1 softexpires=1 mode=ABS was_armed=0
           storm-42      [001] d..1.   1.000001: write_msr: 6e0, value 100
          <idle>-0       [001] d.h..   1.000100: local_timer_entry: vector=236
          <idle>-0       [001] d.h..   1.000101: hrtimer_expire_entry: hrtimer=00000000cccc0003 function=hrtimer_wakeup now=1
          <idle>-0       [001] d.h..   1.000102: hrtimer_expire_exit: hrtimer=00000000cccc0003
          <idle>-0       [001] d.h..   1.000103: write_msr: 6e0, value 200
          <idle>-0       [001] d.h..   1.000104: local_timer_exit: vector=236
          <idle>-0       [001] d.h..   1.000200: local_timer_entry: vector=236
          <idle>-0       [001] d.h..   1.000201: hrtimer_expire_entry: hrtimer=00000000aaaa0001 function=tick_nohz_handler now=1
          <idle>-0       [001] d.h..   1.000202: hrtimer_expire_exit: hrtimer=00000000aaaa0001
          <idle>-0       [001] d.h..   1.000203: write_msr: 6e0, value 300
          <idle>-0       [001] d.h..   1.000204: local_timer_exit: vector=236
           other-7       [001] d..1.   1.000300: write_msr: 6e0, value 400
";
        let r = run(text, Scope::tids([42]));
        assert_eq!(r.scope_tsc_deadline_writes.by_task, 1);
        assert_eq!(r.scope_tsc_deadline_writes.in_interrupt, 1);
        assert_eq!(r.scope_tsc_deadline_writes.total(), 2);
        let row = |f: &str| r.hrtimers.iter().find(|h| h.function == f).unwrap().clone();
        assert_eq!(row("hrtimer_wakeup").tsc_deadline_writes_in_irq, 1);
        assert_eq!(row("tick_nohz_handler").tsc_deadline_writes_in_irq, 1);
    }

    #[test]
    fn scope_timers_are_matched_by_address() {
        let text = "\
           storm-42      [000] d..1.   1.000000: hrtimer_start: hrtimer=00000000cccc0003 function=hrtimer_wakeup expires=1 softexpires=1 mode=ABS was_armed=0
          <idle>-0       [000] d.h..   1.000100: hrtimer_expire_entry: hrtimer=00000000cccc0003 function=hrtimer_wakeup now=1
          <idle>-0       [000] d.h..   1.000101: hrtimer_expire_exit: hrtimer=00000000cccc0003
           other-7       [000] d..1.   1.000200: hrtimer_start: hrtimer=00000000dddd0004 function=hrtimer_wakeup expires=1 softexpires=1 mode=ABS was_armed=0
          <idle>-0       [000] d.h..   1.000300: hrtimer_expire_entry: hrtimer=00000000dddd0004 function=hrtimer_wakeup now=1
          <idle>-0       [000] d.h..   1.000301: hrtimer_expire_exit: hrtimer=00000000dddd0004
";
        let r = run(text, Scope::tids([42]));
        assert_eq!(r.expiries(Some("hrtimer_wakeup"), Some(0)), 2);
        assert_eq!(r.scope_functions(), vec![("hrtimer_wakeup".to_string(), 1)]);
    }
}
