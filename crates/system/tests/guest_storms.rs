//! The guest-side analyses against what the kernel really does here, under the lab's
//! workload generators, traced through a private tracefs instance.
//!
//! Acceptance tests (issue 8):
//! - timer storm: the TSC-deadline MSR write rate and the hrtimer expiry rate kvmscope reports
//!   agree with the generator's own count, and the storm's function is named;
//! - IPI storm: the IPIs attributed to TLB shootdown match the /proc/interrupts TLB delta.
//!
//! Tolerances come from the measurements in docs/guest.md (the `measure_*` tests, run with
//! `cargo test -p kvmscope-system --test guest_storms -- --ignored --nocapture`).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kvmscope_analysis::guest::{Guest, GuestReport, Scope};
use kvmscope_capture::tracefs::Instance;
use kvmscope_lab::workload::{
    ipi_storm, timer_storm, IpiMethod, IpiStorm, IpiStormOutcome, TimerMethod, TimerStorm,
    TimerStormOutcome, WorkloadError, WorkloadThreads,
};
use kvmscope_system::interrupts::{self, Interrupts, IpiKind};

const TIMER_EVENTS: &[(&str, &str)] = &[
    ("msr", "write_msr"),
    ("timer", "hrtimer_start"),
    ("timer", "hrtimer_expire_entry"),
    ("timer", "hrtimer_expire_exit"),
    ("timer", "hrtimer_cancel"),
    ("irq_vectors", "local_timer_entry"),
    ("irq_vectors", "local_timer_exit"),
];

const IPI_EVENTS: &[(&str, &str)] = &[
    ("ipi", "ipi_send_cpu"),
    ("ipi", "ipi_send_cpumask"),
    ("csd", "csd_queue_cpu"),
    ("csd", "csd_function_entry"),
    ("tlb", "tlb_flush"),
    ("irq_vectors", "call_function_entry"),
    ("irq_vectors", "call_function_single_entry"),
    ("irq_vectors", "reschedule_entry"),
];

const START: &str = "kvmscope-storm-start";
const END: &str = "kvmscope-storm-end";

/// A private instance (`instances/kvmscope-sys-<pid>-<n>`), removed on drop.
struct Session {
    inst: Instance,
}

impl Session {
    fn start(tracefs: &Path, events: &[(&str, &str)]) -> Session {
        let inst = Instance::create(tracefs, "sys").expect("create the tracefs instance");
        inst.set_buffer_size_kb(16 * 1024).expect("buffer size");
        for (system, event) in events {
            inst.enable(system, event)
                .unwrap_or_else(|e| panic!("enable {system}:{event}: {e}"));
        }
        inst.set_tracing_on(true).unwrap();
        Session { inst }
    }

    fn mark(&self, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.inst.path().join("trace_marker"))
            .expect("open the instance's trace_marker");
        f.write_all(text.as_bytes()).expect("write the marker");
    }

    /// Stops tracing, removes the instance and returns the trace text.
    fn stop_and_read(self) -> String {
        self.inst.set_tracing_on(false).unwrap();
        let text = self.inst.trace_text().expect("read the instance's trace");
        self.inst.remove().expect("remove the instance");
        text
    }

    /// Stops tracing and analyses the events between the two markers.
    fn finish(self, tids: &[u32], before: &Interrupts, after: &Interrupts) -> (GuestReport, u64) {
        self.inst.set_tracing_on(false).unwrap();
        let text = self.inst.trace_text().expect("read the instance's trace");
        self.inst.remove().expect("remove the instance");
        let (mut start, mut end) = (None, None);
        kvmscope_trace::text::decode(text.as_bytes(), |ev| {
            if ev.name == "tracing_mark_write" {
                if ev.payload.contains(START) {
                    start = Some(ev.ts_ns);
                } else if ev.payload.contains(END) {
                    end = Some(ev.ts_ns);
                }
            }
        })
        .unwrap();
        let (start, end) = (
            start.expect("start marker traced"),
            end.expect("end marker traced"),
        );
        let scope = Scope {
            tids: tids.iter().copied().collect::<BTreeSet<_>>(),
            cpus: None,
            window_ns: Some((start, end)),
        };
        let mut guest = Guest::new(scope);
        guest.set_interrupts(before, after);
        let stats = kvmscope_trace::text::decode(text.as_bytes(), |ev| guest.observe(ev)).unwrap();
        (guest.finish(), stats.lost_total())
    }
}

fn proc_interrupts() -> Interrupts {
    interrupts::parse(&std::fs::read_to_string("/proc/interrupts").unwrap()).unwrap()
}

/// tracefs and the CPU a storm runs on (the last one this process may use; the storms need
/// two), or `None` after saying why not.
fn storm_setup() -> Option<(PathBuf, usize)> {
    let tracefs = kvmscope_capture::host::require_tracefs()?;
    let cpus = kvmscope_lab::workload::allowed_cpus().unwrap();
    if cpus.len() < 2 {
        eprintln!("SKIPPED: the storms need two CPUs, this process may use {cpus:?}");
        return None;
    }
    Some((tracefs, *cpus.last().unwrap()))
}

/// Runs a storm traced with `events`: `storm` gets the callback its workload calls once its
/// threads are ready (their tids, the start marker, /proc/interrupts before); when it returns,
/// the end marker and /proc/interrupts after. Returns its outcome, the guest report of its
/// threads between the markers, and the events lost.
fn traced<O>(
    tracefs: &Path,
    events: &[(&str, &str)],
    storm: impl FnOnce(&mut dyn FnMut(&WorkloadThreads)) -> Result<O, WorkloadError>,
) -> (O, GuestReport, u64) {
    let s = Session::start(tracefs, events);
    let mut ready = None;
    let out = storm(&mut |threads| {
        ready = Some((threads.tids(), proc_interrupts()));
        s.mark(START);
    })
    .unwrap();
    s.mark(END);
    let after = proc_interrupts();
    let (tids, before) = ready.expect("the storm's threads were ready");
    let (report, lost) = s.finish(&tids, &before, &after);
    (out, report, lost)
}

/// Runs a traced timer storm on the last allowed CPU.
fn traced_timer_storm(tracefs: &Path, spec: TimerStorm) -> (TimerStormOutcome, GuestReport, u64) {
    traced(tracefs, TIMER_EVENTS, |ready| timer_storm(&spec, ready))
}

fn traced_ipi_storm(tracefs: &Path, spec: IpiStorm) -> (IpiStormOutcome, GuestReport, u64) {
    traced(tracefs, IPI_EVENTS, |ready| ipi_storm(&spec, ready))
}

fn timer_summary(out: &TimerStormOutcome, r: &GuestReport) -> serde_json::Value {
    let cpu = out.threads.driver_cpu.map(|c| c as u32);
    let gen = out.expiries as f64;
    let scope_expiries: u64 = r.timers.scope_functions().iter().map(|(_, n)| n).sum();
    let writes = r.msr.tsc_deadline_writes(cpu);
    let local = r.timers.local_timer_interrupts(cpu);
    let all_exp = r.timers.expiries(None, cpu);
    serde_json::json!({
        "method": out.method,
        "generator_expiries": out.expiries,
        "generator_late": out.late,
        "span_ms": r.span_ns as f64 / 1e6,
        "scope_functions": r.timers.scope_functions(),
        "top_function_on_cpu": r.timers.top_function(cpu),
        "scope_timer_expiries": scope_expiries,
        "scope_expiries_per_op": scope_expiries as f64 / gen,
        "tsc_deadline_writes_on_cpu": writes,
        "scope_tsc_deadline_writes": r.timers.scope_tsc_deadline_writes,
        "scope_tsc_deadline_writes_per_op": r.timers.scope_tsc_deadline_writes.total() as f64 / gen,
        "tsc_deadline_writes_per_op": writes as f64 / gen,
        "tsc_deadline_writes_per_expiry_on_cpu": writes as f64 / all_exp.max(1) as f64,
        "all_expiries_on_cpu": all_exp,
        "local_timer_on_cpu": local,
        "local_timer_per_op": local as f64 / gen,
        "tick_rearmed_from_own_interrupt_on_cpu": r.timers.rearmed_from_own_interrupt("tick_nohz_handler", cpu),
        "loc_delta_on_cpu": r.interrupts_delta.as_ref().and_then(|d| d.line("LOC")).map(|l| l.deltas.clone()),
    })
}

fn ipi_summary(out: &IpiStormOutcome, r: &GuestReport) -> serde_json::Value {
    let d = r.interrupts_delta.as_ref().unwrap();
    let spinners: Vec<u32> = out.threads.helpers.iter().map(|&(_, c)| c as u32).collect();
    let tlb_delta = d.ipi_total(IpiKind::TlbShootdown, Some(&spinners));
    let cal_delta = d.ipi_total(IpiKind::FunctionCall, Some(&spinners));
    let on_spinners =
        |f: &dyn Fn(Option<u32>) -> u64| spinners.iter().map(|&c| f(Some(c))).sum::<u64>();
    let tlb_runs = on_spinners(&|c| r.ipi.runs("tlb_shootdown", c));
    let remote = on_spinners(&|c| r.ipi.remote_tlb_flushes(c));
    let mb_runs = on_spinners(&|c| r.ipi.runs("membarrier", c));
    let sent_tlb_scope = r.ipi.sent("tlb_shootdown", None, true);
    let sent_mb_scope = r.ipi.sent("membarrier", None, true);
    let ops = out.ops as f64;
    serde_json::json!({
        "method": out.method,
        "generator_ops": out.ops,
        "span_ms": r.span_ns as f64 / 1e6,
        "tlb_delta_on_spinners": tlb_delta,
        "cal_delta_on_spinners": cal_delta,
        "csd_flush_tlb_runs_on_spinners": tlb_runs,
        "remote_shootdown_flushes_on_spinners": remote,
        "tlb_ipis_sent_by_scope": sent_tlb_scope,
        "tlb_ipis_sent_all": r.ipi.sent("tlb_shootdown", None, false),
        "membarrier_ipis_sent_by_scope": sent_mb_scope,
        "csd_membarrier_runs_on_spinners": mb_runs,
        "tlb_delta_per_op": tlb_delta as f64 / ops,
        "tlb_runs_per_tlb_delta": tlb_runs as f64 / tlb_delta.max(1) as f64,
        "scope_tlb_ipis_per_op": sent_tlb_scope as f64 / ops,
        "cal_delta_per_op": cal_delta as f64 / ops,
        "csd_functions": r.ipi.csd_functions,
        "warnings": r.warnings,
        "spinner_loops": out.spinner_loops,
    })
}

#[test]
#[ignore = "measurement: prints the ratios docs/guest.md records"]
fn measure_timer_storms() {
    let Some((tracefs, cpu)) = storm_setup() else {
        return;
    };
    for (method, period_us, count) in [
        (TimerMethod::Nanosleep, 200, 2000),
        (TimerMethod::Nanosleep, 100, 4000),
        (TimerMethod::Timerfd, 200, 2000),
        (TimerMethod::Nanosleep, 1000, 500),
    ] {
        let spec = TimerStorm::new(Duration::from_micros(period_us), count)
            .method(method)
            .cpu(cpu);
        let (out, r, lost) = traced_timer_storm(&tracefs, spec);
        let mut v = timer_summary(&out, &r);
        v["period_us"] = period_us.into();
        v["lost"] = lost.into();
        println!("MEASURE timer {}", v);
    }
}

#[test]
#[ignore = "measurement: prints the ratios docs/guest.md records"]
fn measure_ipi_storms() {
    let Some((tracefs, _)) = storm_setup() else {
        return;
    };
    for (method, ops) in [
        (IpiMethod::Munmap, 2000),
        (IpiMethod::Mprotect, 2000),
        (IpiMethod::Membarrier, 20000),
        (IpiMethod::Membarrier, 20000),
    ] {
        let (out, r, lost) = traced_ipi_storm(&tracefs, IpiStorm::new(method, ops));
        let mut v = ipi_summary(&out, &r);
        v["lost"] = lost.into();
        println!("MEASURE ipi {}", v);
    }
}

fn fail_on_loss(lost: u64) {
    assert_eq!(
        lost, 0,
        "the trace lost {lost} events: every comparison below would be skewed; raise the instance buffer"
    );
}

/// Acceptance: under the timer storm, kvmscope's TSC-deadline write rate and hrtimer expiry
/// rate agree with the generator's own count, and the storm's function is named.
///
/// Tolerances (docs/guest.md, measured here with load average 5-8 from parallel builds and
/// tests):
/// - expiries of the storm's own timers (matched by the address of the hrtimers its thread
///   started) equal the generator's count exactly in every run; allowed: 0.5% or 2, for a
///   period that straddles a marker;
/// - TSC-deadline writes made in the storm's timer interrupts (programming the next event)
///   were exactly one per generator expiry in every run; allowed: the same 0.5% or 2;
/// - writes by the storm thread itself (arming a timer that became the CPU's earliest) are
///   at most one per period: 0.22-0.99 per expiry measured, depending on the other timers of
///   the CPU; so the storm's writes are 1-2 per expiry, and the CPU's writes at least one.
#[test]
fn timer_storm_rates_match_the_generator() {
    let Some((tracefs, cpu)) = storm_setup() else {
        return;
    };
    let spec = TimerStorm::new(Duration::from_micros(200), 2000).cpu(cpu);
    let (out, r, lost) = traced_timer_storm(&tracefs, spec);
    fail_on_loss(lost);
    let summary = timer_summary(&out, &r);
    println!("{summary}");
    assert!(!out.stopped_by_time_limit);
    let cpu = cpu as u32;

    // The storm's function is named: first among the timers its thread started, and first
    // by expiries on its CPU.
    let scope = r.timers.scope_functions();
    assert_eq!(scope[0].0, "hrtimer_wakeup", "{summary}");
    assert_eq!(
        r.timers.top_function(Some(cpu)).map(|(f, _)| f),
        Some("hrtimer_wakeup"),
        "{summary}"
    );

    // Expiry rate.
    let traced = scope[0].1;
    let generated = out.expiries;
    let slack = (generated / 200).max(2);
    assert!(
        traced.abs_diff(generated) <= slack,
        "expiries: traced {traced}, generator {generated}; {summary}"
    );
    let (traced_rate, generated_rate) = (r.rate(traced), r.rate(generated));
    assert!((traced_rate / generated_rate - 1.0).abs() <= 0.005 + 2.0 / generated as f64);

    // TSC-deadline MSR write rate, relative to the generator's rate.
    let w = r.timers.scope_tsc_deadline_writes;
    let irq_rate = r.rate(w.in_interrupt);
    assert!(
        w.in_interrupt.abs_diff(generated) <= slack,
        "writes in the storm's interrupts {} vs generator expiries {generated}; {summary}",
        w.in_interrupt
    );
    assert!((irq_rate / generated_rate - 1.0).abs() <= 0.005 + 2.0 / generated as f64);
    assert!(w.by_task <= generated + slack, "{summary}");
    let storm_rate = r.rate(w.total()) / generated_rate;
    assert!(
        (0.995..=2.005).contains(&storm_rate),
        "storm's writes per expiry {storm_rate:.3}; {summary}"
    );
    let cpu_writes = r.msr.tsc_deadline_writes(Some(cpu));
    assert!(cpu_writes >= w.total(), "{summary}");
    let row = r
        .msr
        .rows
        .iter()
        .find(|m| m.msr == 0x6e0 && m.cpu == cpu)
        .unwrap();
    assert_eq!(row.name, Some("IA32_TSC_DEADLINE"));
    assert!(row.writes_by_scope >= w.by_task, "{summary}");

    // The sleep is re-armed by its task, not from its own interrupt.
    assert!(
        r.timers
            .rearmed_from_own_interrupt("hrtimer_wakeup", Some(cpu))
            * 100
            <= traced,
        "{summary}"
    );
    // Every expiry of the storm came with a local timer interrupt on its CPU.
    assert!(
        r.timers.local_timer_interrupts(Some(cpu)) >= traced,
        "{summary}"
    );
    let loc = r.interrupts_delta.as_ref().unwrap().line("LOC").unwrap();
    let col = r
        .interrupts_delta
        .as_ref()
        .unwrap()
        .cpus
        .iter()
        .position(|&c| c == cpu)
        .unwrap();
    assert!(
        loc.deltas[col] >= traced,
        "/proc/interrupts LOC delta {} < {traced}",
        loc.deltas[col]
    );
}

/// The "re-armed from its own interrupt" pattern, on the tick of a busy CPU: a CPU that never
/// goes idle keeps its tick, whose handler returns HRTIMER_RESTART every 1/HZ s (what a
/// guest booted with `nohz=off` does on every CPU, field report 003). Expected count:
/// CONFIG_HZ (read from this kernel's configuration) per second of trace time on that CPU;
/// allowed 75%-105% (a tick can be skipped while interrupts are off; never more than HZ).
#[test]
fn busy_cpu_tick_is_rearmed_from_its_own_interrupt() {
    let Some((tracefs, cpu)) = storm_setup() else {
        return;
    };
    let snap = kvmscope_system::collect();
    let Some(hz) = snap.config.as_ref().and_then(|c| c.tick().hz) else {
        eprintln!(
            "SKIPPED: no kernel configuration to read CONFIG_HZ from: {:?}",
            snap.absent
        );
        return;
    };
    let s = Session::start(&tracefs, TIMER_EVENTS);
    let before = proc_interrupts();
    let (tx, rx) = std::sync::mpsc::channel();
    let spinner = std::thread::spawn(move || {
        kvmscope_lab::workload::pin(cpu).unwrap();
        tx.send(kvmscope_lab::workload::current_tid()).unwrap();
        let t0 = std::time::Instant::now();
        // Busy for a bounded time (a loop count would depend on CPU speed).
        while t0.elapsed() < Duration::from_millis(400) {
            std::hint::spin_loop();
        }
    });
    let tid = rx.recv().unwrap();
    s.mark(START);
    spinner.join().unwrap();
    s.mark(END);
    let after = proc_interrupts();
    let (r, lost) = s.finish(&[tid], &before, &after);
    fail_on_loss(lost);
    let cpu = cpu as u32;
    let rearmed = r
        .timers
        .rearmed_from_own_interrupt("tick_nohz_handler", Some(cpu));
    let expected = f64::from(hz) * r.span_ns as f64 / 1e9;
    println!("tick re-armed from its own interrupt on CPU {cpu}: {rearmed} in {} ms, HZ={hz}, expected {expected:.0}", r.span_ns / 1_000_000);
    assert!(r.timers.irq_context_known);
    assert!(
        rearmed as f64 >= 0.75 * expected && rearmed as f64 <= 1.05 * expected + 1.0,
        "tick re-arms {rearmed}, expected about {expected:.0} (HZ={hz})"
    );
}

/// Acceptance: under the IPI storm, the IPIs kvmscope attributes to TLB shootdown match the
/// /proc/interrupts TLB delta, on the CPUs the spinners ran on.
///
/// The TLB line counts `flush_tlb_func` runs requested by another CPU; kvmscope attributes
/// each `ipi_send_cpu` to the function queued for that target just before
/// (`csd_queue_cpu`), and counts remote `flush_tlb_func` runs (`csd_function_entry` with a
/// csd). Measured: equal to the delta within 0.2% (1409/1409, 1144/1146, 307/307, 256/256). Allowed: 2% or 3, for IPIs in flight when the window
/// closes (the counters are read just after the end marker). An IPI is sent only when the
/// target's queue was empty, so under heavy load sent IPIs may fall below function runs: the
/// allowed range for sent IPIs is 90%-102% of the delta.
#[test]
fn ipi_storm_tlb_attribution_matches_proc_interrupts() {
    let Some((tracefs, _)) = storm_setup() else {
        return;
    };
    // Another tracer registering probes on the same tracepoints patches kernel text
    // (do_sync_core IPIs) and can make a few events go missing (measured once: 84 of 1326,
    // docs/guest.md). The report says so in its warnings; only then is the storm run again,
    // at most twice.
    for attempt in 1..=3 {
        let (out, r, lost) = traced_ipi_storm(&tracefs, IpiStorm::new(IpiMethod::Munmap, 3000));
        fail_on_loss(lost);
        let summary = ipi_summary(&out, &r);
        println!("{summary}");
        assert_eq!(out.ops, 3000);
        match check_tlb_attribution(&out, &r, &summary) {
            Ok(()) => return,
            Err(why) if !r.warnings.is_empty() && attempt < 3 => {
                eprintln!(
                    "attempt {attempt}: {why}; the capture warned {:?}: running again",
                    r.warnings
                );
            }
            Err(why) => panic!("{why} (warnings: {:?})", r.warnings),
        }
    }
}

fn check_tlb_attribution(
    out: &IpiStormOutcome,
    r: &GuestReport,
    summary: &serde_json::Value,
) -> Result<(), String> {
    let d = r.interrupts_delta.as_ref().unwrap();
    for &(_, spinner_cpu) in &out.threads.helpers {
        let c = spinner_cpu as u32;
        let delta = d.ipi_total(IpiKind::TlbShootdown, Some(&[c]));
        let runs = r.ipi.runs("tlb_shootdown", Some(c));
        let remote = r.ipi.remote_tlb_flushes(Some(c));
        let sent = r.ipi.sent("tlb_shootdown", Some(c), false);
        let slack = (delta / 50).max(3);
        if runs.abs_diff(delta) > slack {
            return Err(format!(
                "CPU {c}: flush_tlb_func runs {runs} vs TLB delta {delta}; {summary}"
            ));
        }
        // `tlb_flush` "remote shootdown" is traced only when the flush really had work to do
        // (not when the CPU already switched to another mm or was up to date), so it is a
        // lower bound of the TLB count, not a match (measured 248 for a delta of 256).
        if remote > delta + slack {
            return Err(format!(
                "CPU {c}: remote flushes {remote} vs TLB delta {delta}; {summary}"
            ));
        }
        if (sent as f64) < 0.9 * delta as f64 - 3.0 || sent as f64 > 1.02 * delta as f64 + 3.0 {
            return Err(format!(
                "CPU {c}: TLB IPIs sent {sent} vs TLB delta {delta}; {summary}"
            ));
        }
    }
    // The storm's own IPIs are at most one per munmap per spinner (fewer when a spinner was
    // preempted: a CPU not running the process gets no shootdown).
    let own = r.ipi.sent("tlb_shootdown", None, true);
    if own > out.ops * out.threads.helpers.len() as u64 || own == 0 {
        return Err(format!(
            "the storm's own TLB IPIs {own} are not in 1..=ops x spinners; {summary}"
        ));
    }
    Ok(())
}

fn fixture_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/system/traces")
}

/// Records `tests/fixtures/system/traces/guest-storms.{trace,json}`: a timer storm then an
/// IPI storm on this machine, the events between the markers, and /proc/interrupts around
/// them. Run by hand when the fixture must be remade.
#[test]
#[ignore = "records the fixture of recorded_trace_gives_the_golden_report (run by hand)"]
fn record_guest_trace_fixture() {
    let Some((tracefs, cpu)) = storm_setup() else {
        return;
    };
    let events: Vec<(&str, &str)> = TIMER_EVENTS.iter().chain(IPI_EVENTS).copied().collect();
    let s = Session::start(&tracefs, &events);
    // Keep the fixture small: only TLB flushes requested by another CPU (remote shootdown,
    // remote wrong CPU), not the local ones of every process.
    s.inst
        .set_filter("tlb", "tlb_flush", "reason == 1 || reason == 5")
        .unwrap();
    let before = std::fs::read_to_string("/proc/interrupts").unwrap();
    s.mark(START);
    let timer = timer_storm(
        &TimerStorm::new(Duration::from_micros(500), 100).cpu(cpu),
        |_| {},
    )
    .unwrap();
    let ipi = ipi_storm(&IpiStorm::new(IpiMethod::Munmap, 100), |_| {}).unwrap();
    s.mark(END);
    let after = std::fs::read_to_string("/proc/interrupts").unwrap();
    let text = s.stop_and_read();
    let mut inside = false;
    let mut kept = String::new();
    for line in text.lines() {
        if line.contains(START) {
            inside = true;
        }
        if inside {
            kept.push_str(line);
            kept.push('\n');
        }
        if line.contains(END) {
            break;
        }
    }
    let mut tids = timer.threads.tids();
    tids.extend(ipi.threads.tids());
    let meta = serde_json::json!({
        "command": "cargo test -p kvmscope-system --test guest_storms record_guest_trace_fixture -- --ignored",
        "timer_storm": {"period_us": 500, "count": 100, "cpu": cpu, "outcome": timer},
        "ipi_storm": {"method": "munmap", "ops": 100, "outcome": ipi},
        "tlb_flush_filter": "reason == 1 || reason == 5",
        "tids": tids,
        "interrupts_before": before,
        "interrupts_after": after,
    });
    let dir = fixture_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("guest-storms.trace"), kept).unwrap();
    std::fs::write(
        dir.join("guest-storms.json"),
        serde_json::to_string_pretty(&meta).unwrap() + "\n",
    )
    .unwrap();
}

/// The guest report of the recorded fixture, compared with its golden
/// (`KVMSCOPE_BLESS=1` rewrites it). Needs no kernel: deterministic.
#[test]
fn recorded_trace_gives_the_golden_report() {
    let dir = fixture_dir();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("guest-storms.json")).unwrap())
            .unwrap();
    let text = std::fs::read_to_string(dir.join("guest-storms.trace")).unwrap();
    let tids: Vec<u32> = meta["tids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect();
    let before = interrupts::parse(meta["interrupts_before"].as_str().unwrap()).unwrap();
    let after = interrupts::parse(meta["interrupts_after"].as_str().unwrap()).unwrap();
    let mut guest = Guest::new(Scope::tids(tids));
    guest.set_interrupts(&before, &after);
    let stats = kvmscope_trace::text::decode(text.as_bytes(), |ev| guest.observe(ev)).unwrap();
    assert_eq!(stats.undecoded, 0, "{:?}", stats.unknown_examples);
    let r = guest.finish();

    // What the generators said they did is what the report finds.
    let timer_cpu = meta["timer_storm"]["cpu"].as_u64().unwrap() as u32;
    let expiries = meta["timer_storm"]["outcome"]["expiries"].as_u64().unwrap();
    assert_eq!(
        r.timers.scope_functions()[0],
        ("hrtimer_wakeup".to_string(), expiries)
    );
    // The window also holds the IPI storm, whose time adds other timers' writes on that CPU:
    // only the lower bound of the live test applies here.
    let per = r.msr.tsc_deadline_writes(Some(timer_cpu)) as f64 / expiries as f64;
    assert!(per >= 1.8, "{per}");
    let d = r.interrupts_delta.as_ref().unwrap();
    for (_, c) in meta["ipi_storm"]["outcome"]["threads"]["helpers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h[0].as_u64().unwrap(), h[1].as_u64().unwrap() as u32))
    {
        let delta = d.ipi_total(IpiKind::TlbShootdown, Some(&[c]));
        let runs = r.ipi.runs("tlb_shootdown", Some(c));
        assert!(
            runs.abs_diff(delta) <= (delta / 50).max(3),
            "CPU {c}: runs {runs} vs TLB delta {delta}"
        );
    }

    let got = serde_json::to_string_pretty(&r).unwrap() + "\n";
    let golden = dir.join("guest-storms.report.json");
    if std::env::var_os("KVMSCOPE_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&golden, &got).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap();
    assert!(
        got == want,
        "the report differs from {}; check, then KVMSCOPE_BLESS=1",
        golden.display()
    );
}
