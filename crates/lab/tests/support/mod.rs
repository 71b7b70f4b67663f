//! Runs a lab scenario under a private tracefs instance and counts this VM's events.
//!
//! The instance prints raw fields (`options/fields`: `name=0x3f8 (1016)`), so the ground
//! truth's filters (kernel filter syntax, conjunctions of `field OP number`) are evaluated
//! here on each line; several expectations on one event with different filters need no
//! kernel filter juggling. Only lines from this VM's vCPU threads count.

#![allow(dead_code)]

use std::collections::BTreeSet;

use kvmscope_capture::tracefs::Instance;
use kvmscope_lab::{Expectation, HostKind, RunOutcome, ScenarioSpec};
use kvmscope_trace::text::line::{self, Line};

/// One event line from this VM.
#[derive(Debug, Clone)]
pub struct Seen {
    pub tid: u32,
    pub name: String,
    pub payload: String,
}

#[derive(Debug)]
pub struct Traced {
    pub outcome: RunOutcome,
    pub events: Vec<Seen>,
}

impl Traced {
    /// Events on this VM's vCPU threads that match `e` (name and filter).
    pub fn count(&self, e: &Expectation) -> u64 {
        self.events
            .iter()
            .filter(|s| s.name == e.event && e.matches_fields(&s.payload))
            .count() as u64
    }

    /// Checks every expectation that holds on this host; returns a table of
    /// (expectation, seen) and whether all held.
    pub fn check(&self) -> (String, bool) {
        let host = HostKind::detect();
        let mut ok = true;
        let mut table = String::new();
        for e in &self.outcome.ground_truth.expectations {
            if !host.covers(e.host) {
                continue;
            }
            let n = self.count(e);
            let good = e.count.contains(n);
            ok &= good;
            table.push_str(&format!(
                "{} {}:{} [{}] promised {} seen {}\n",
                if good { "ok  " } else { "FAIL" },
                e.system,
                e.event,
                e.filter.as_deref().unwrap_or(""),
                e.count,
                n
            ));
        }
        (table, ok)
    }
}

/// Value of `field` in a `fields`-option payload.
pub fn field(payload: &str, name: &str) -> Option<i128> {
    kvmscope_lab::field_value(payload, name)
}

/// The events a spec's ground truth names, plus `extra`.
pub fn events_of(expectations: &[Expectation], extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut set: BTreeSet<(String, String)> = expectations
        .iter()
        .map(|e| (e.system.to_string(), e.event.to_string()))
        .collect();
    for (s, e) in extra {
        set.insert((s.to_string(), e.to_string()));
    }
    set.into_iter().collect()
}

/// Runs `spec` with `events` enabled in a private instance (filtered in the kernel on the
/// VM's vCPU threads, set up before the guest runs); None when the host cannot
/// (skipped with a printed reason, or a panic under KVMSCOPE_REQUIRE_KVM=1).
pub fn traced_run(spec: &ScenarioSpec, events: &[(String, String)]) -> Option<Traced> {
    if !kvmscope_capture::host::require_kvm() {
        return None;
    }
    let root = kvmscope_capture::host::require_tracefs()?;
    let inst = Instance::create(&root, "labtest").expect("create tracefs instance");
    inst.set_buffer_size_kb(8 * 1024).expect("buffer size");
    std::fs::write(inst.path().join("options/fields"), "1").expect("options/fields");
    // Events are enabled once the vCPU threads exist, filtered in the kernel on their tids:
    // tests run in parallel, and other VMs' events must not fill this buffer.
    let outcome = kvmscope_lab::run_with(spec, |t| {
        let tids: Vec<String> = t
            .vcpu_tids
            .iter()
            .map(|tid| format!("common_pid == {tid}"))
            .collect();
        let filter = tids.join(" || ");
        for (s, e) in events {
            inst.set_filter(s, e, &filter).expect("set filter");
            inst.enable(s, e).expect("enable event");
        }
    })
    .unwrap_or_else(|e| panic!("lab run failed: {e}"));
    inst.set_tracing_on(false).expect("tracing off");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for cpu in 0..cpus {
        let stats = inst.cpu_stats(cpu).unwrap_or_default();
        for l in stats.lines() {
            if let Some(v) = l
                .strip_prefix("overrun: ")
                .or_else(|| l.strip_prefix("dropped events: "))
            {
                assert_eq!(v.trim(), "0", "events were lost on cpu {cpu}: {stats}");
            }
        }
    }
    // Not `trace_text`: with `options/fields` char arrays (kvm_emulate_insn's insn bytes) are
    // printed raw, so the text is not always UTF-8.
    let bytes = std::fs::read(inst.path().join("trace")).expect("read trace");
    let text = String::from_utf8_lossy(&bytes);
    let tids: BTreeSet<u32> = outcome.vcpu_tids.iter().map(|t| *t as u32).collect();
    let mut seen = Vec::new();
    for l in text.lines() {
        match line::parse(l) {
            Line::Event(h) if tids.contains(&h.tid) => seen.push(Seen {
                tid: h.tid,
                name: h.name.to_string(),
                payload: h.payload.to_string(),
            }),
            Line::Lost { cpu, count } => panic!("{count} events lost on cpu {cpu}"),
            _ => {}
        }
    }
    drop(inst);
    Some(Traced {
        outcome,
        events: seen,
    })
}
