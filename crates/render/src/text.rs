//! The terminal report: perf kvm stat's VM-exit table (same columns, plus p50/p99) and one
//! section per breakdown. Sections with no events are left out.

use std::collections::BTreeMap;
use std::fmt::Write;

use kvmscope_analysis::exits::ExitReport;
use kvmscope_analysis::stats::LatencySummary;
use kvmscope_analysis::Report;

use crate::table::{heading, pct, rate, us, Table};

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    header(&mut out, r);
    let d = r.overview.duration_ns;
    vms(&mut out, r);
    if let Some(exits) = &r.exits {
        exit_table(&mut out, exits);
    }
    accesses(&mut out, r, d);
    userspace(&mut out, r, d);
    mmu(&mut out, r, d);
    interrupts(&mut out, r, d);
    if let Some(g) = &r.guest {
        guest(&mut out, g);
    }
    events(&mut out, r, d);
    out
}

fn header(out: &mut String, r: &Report) {
    for input in &r.inputs {
        let lines = if input.read.lines > 0 {
            format!(" in {} lines", input.read.lines)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{}: {}, {} events{lines}",
            input.path, input.format, input.read.events
        );
        if input.read.unknown_lines > 0 {
            let _ = writeln!(
                out,
                "  {} lines not understood, first:",
                input.read.unknown_lines
            );
            for (line, text) in &input.read.unknown_examples {
                let _ = writeln!(out, "    line {line}: {text}");
            }
        }
        if input.read.undecoded > 0 {
            let _ = writeln!(
                out,
                "  {} events whose fields did not parse (counted by name only)",
                input.read.undecoded
            );
        }
        if input.unresolved_pointers > 0 {
            let _ = writeln!(
                out,
                "  {} function pointers shown as hex: the file's kallsyms has no symbol for them (a file without kallsyms, e.g. written before kvmscope kept them; re-record with `kvmscope record` or `trace-cmd record`)",
                input.unresolved_pointers
            );
        }
        if input.lost_total > 0 {
            let per_cpu: Vec<String> = input
                .read
                .lost
                .iter()
                .map(|(c, n)| format!("CPU {c}: {n}"))
                .collect();
            let _ = writeln!(
                out,
                "  LOST EVENTS: {} ({}) — counts below are lower bounds",
                input.lost_total,
                if per_cpu.is_empty() {
                    "overwritten in the ring buffer".to_string()
                } else {
                    per_cpu.join(", ")
                }
            );
        }
        if let Some(off) = input.read.truncated_at {
            let _ = writeln!(
                out,
                "  TRUNCATED: the input ends inside a line at byte offset {off}"
            );
        }
    }
    let o = &r.overview;
    let _ = writeln!(
        out,
        "Duration {:.6} s, {} events{}",
        o.duration_ns as f64 / 1e9,
        o.events,
        if r.partial { " (PARTIAL)" } else { "" }
    );
}

fn vms(out: &mut String, r: &Report) {
    if r.overview.vms.is_empty() {
        return;
    }
    heading(out, "VMs and vCPU threads:");
    let mut t = Table::new(&[
        "PID",
        "COMM",
        "TID",
        "THREAD",
        "VCPU",
        "EXITS",
        "KVM EVENTS",
        "USERSPACE EXITS",
    ])
    .left(1)
    .left(3);
    for vm in &r.overview.vms {
        for v in &vm.vcpus {
            t.row(vec![
                vm.pid.map_or("?".into(), |p| p.to_string()),
                vm.comm.clone(),
                v.tid.to_string(),
                v.comm.clone(),
                v.vcpu.map_or("-".into(), |c| c.to_string()),
                v.exits.to_string(),
                v.kvm_events.to_string(),
                v.userspace_exits.to_string(),
            ]);
        }
    }
    t.render(out, "  ");
}

fn avg_pm(l: &LatencySummary) -> String {
    format!("{} ( +- {:6.2}% )", us(l.mean_ns), l.rel_stderr_pct)
}

fn exit_table(out: &mut String, e: &ExitReport) {
    heading(out, "Analyze events for all VMs, all VCPUs:");
    let mut t = Table::new(&[
        "VM-EXIT", "Samples", "Samples%", "Time%", "Min Time", "Max Time", "Avg time", "p50", "p99",
    ]);
    for row in &e.rows {
        let l = &row.latency;
        let lat = |v: String| if l.samples == 0 { "-".to_string() } else { v };
        t.row(vec![
            row.reason.clone(),
            row.count.to_string(),
            pct(row.count_pct),
            pct(row.time_pct),
            lat(us(l.min_ns as f64)),
            lat(us(l.max_ns as f64)),
            lat(avg_pm(l)),
            lat(us(l.p50_ns as f64)),
            lat(us(l.p99_ns as f64)),
        ]);
    }
    t.render(out, "  ");
    let _ = writeln!(
        out,
        "\nTotal Samples:{}, Total events handled time:{}.",
        e.total,
        us(e.total_time_ns as f64)
    );
    if e.unpaired_exits > 0 || e.unpaired_entries > 0 || e.paired < e.total {
        let _ = writeln!(
            out,
            "Latency from {} paired exit/entry; {} exits had no entry after them, {} entries no exit before them.",
            e.paired, e.unpaired_exits, e.unpaired_entries
        );
    }
}

fn latency_cells(l: &LatencySummary) -> [String; 2] {
    if l.samples == 0 {
        ["-".into(), "-".into()]
    } else {
        [us(l.mean_ns), us(l.p99_ns as f64)]
    }
}

fn dir(write: bool) -> String {
    if write { "W" } else { "R" }.into()
}

fn accesses(out: &mut String, r: &Report, d: u64) {
    let a = &r.accesses;
    if !a.sysreg.is_empty() {
        heading(out, "System-register traps (kvm_sys_access):");
        let mut t = Table::new(&[
            "REGISTER", "ENCODING", "DIR", "COUNT", "RATE/s", "AVG", "P99", "BY vCPU", "MEANING",
        ])
        .left(0)
        .left(7)
        .left(8);
        // tid → "vCPU n" (or the thread's name), from the VMs seen.
        let vcpu_of: BTreeMap<u32, String> = r
            .overview
            .vms
            .iter()
            .flat_map(|vm| &vm.vcpus)
            .map(|v| {
                let label = v
                    .vcpu
                    .map_or_else(|| v.comm.clone(), |n| format!("vCPU {n}"));
                (v.tid, label)
            })
            .collect();
        for x in &a.sysreg {
            let [avg, p99] = latency_cells(&x.latency);
            let [o0, o1, n, m, o2] = x.enc;
            let by_vcpu: Vec<String> = x
                .by_thread
                .iter()
                .take(4)
                .map(|(tid, c)| {
                    let who = vcpu_of
                        .get(tid)
                        .cloned()
                        .unwrap_or_else(|| format!("tid {tid}"));
                    format!("{who}: {c}")
                })
                .collect();
            let more = x.by_thread.len().saturating_sub(4);
            t.row(vec![
                x.name.clone(),
                format!("({o0},{o1},{n},{m},{o2})"),
                dir(x.write),
                x.count.to_string(),
                rate(x.count, d),
                avg,
                p99,
                if more > 0 {
                    format!("{} +{more}", by_vcpu.join(", "))
                } else {
                    by_vcpu.join(", ")
                },
                x.meaning.unwrap_or("").into(),
            ]);
        }
        t.render(out, "  ");
    }
    if !a.msr.is_empty() {
        heading(out, "MSR accesses (kvm_msr):");
        let mut t = Table::new(&[
            "MSR",
            "NAME",
            "DIR",
            "COUNT",
            "RATE/s",
            "#GP",
            "LAST VALUE",
            "AVG",
            "P99",
        ])
        .left(1);
        for m in &a.msr {
            let [avg, p99] = latency_cells(&m.latency);
            t.row(vec![
                format!("{:#x}", m.msr.msr),
                m.msr.name.unwrap_or("?").into(),
                dir(m.write),
                m.count.to_string(),
                rate(m.count, d),
                m.faults.to_string(),
                format!("{:#x}", m.last_value),
                avg,
                p99,
            ]);
        }
        t.render(out, "  ");
    }
    if !a.pio.is_empty() {
        heading(out, "Port IO (kvm_pio):");
        let mut t = Table::new(&["PORT", "DIR", "COUNT", "RATE/s", "BYTES", "AVG", "P99"]);
        for p in &a.pio {
            let [avg, p99] = latency_cells(&p.latency);
            t.row(vec![
                format!("{:#x}", p.port),
                dir(p.write),
                p.count.to_string(),
                rate(p.count, d),
                p.bytes.to_string(),
                avg,
                p99,
            ]);
        }
        t.render(out, "  ");
    }
    if !a.mmio.is_empty() {
        heading(out, "MMIO (kvm_mmio):");
        let mut t = Table::new(&["GPA", "DIR", "COUNT", "RATE/s", "BYTES", "AVG", "P99"]);
        for m in &a.mmio {
            let [avg, p99] = latency_cells(&m.latency);
            t.row(vec![
                format!("{:#x}", m.gpa),
                dir(m.write),
                m.count.to_string(),
                rate(m.count, d),
                m.bytes.to_string(),
                avg,
                p99,
            ]);
        }
        t.render(out, "  ");
    }
}

fn userspace(out: &mut String, r: &Report, d: u64) {
    if r.overview.userspace_exits.is_empty() {
        return;
    }
    heading(out, "Exits to the VMM (kvm_userspace_exit):");
    let mut t = Table::new(&["REASON", "CODE", "COUNT", "RATE/s"]);
    for u in &r.overview.userspace_exits {
        t.row(vec![
            u.name.clone(),
            u.reason.to_string(),
            u.count.to_string(),
            rate(u.count, d),
        ]);
    }
    t.render(out, "  ");
}

fn mmu(out: &mut String, r: &Report, d: u64) {
    let Some(m) = &r.mmu else { return };
    heading(out, "MMU:");
    let mut t = Table::new(&["EVENT", "COUNT", "RATE/s"]);
    if m.page_faults.total > 0 {
        let pf = &m.page_faults;
        t.row(vec![
            "kvm_page_fault".into(),
            pf.total.to_string(),
            rate(pf.total, d),
        ]);
        t.row(vec![
            "  write".into(),
            pf.write.to_string(),
            rate(pf.write, d),
        ]);
        t.row(vec![
            "  fetch".into(),
            pf.fetch.to_string(),
            rate(pf.fetch, d),
        ]);
        t.row(vec![
            "  present (protection)".into(),
            pf.present.to_string(),
            rate(pf.present, d),
        ]);
    }
    if m.cr3_writes > 0 {
        t.row(vec![
            "CR3 writes".into(),
            m.cr3_writes.to_string(),
            rate(m.cr3_writes, d),
        ]);
    }
    for (kind, n) in &m.events {
        let name = serde_json::to_value(kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        t.row(vec![name, n.to_string(), rate(*n, d)]);
    }
    t.render(out, "  ");
    if !m.root_loads.is_empty() {
        heading(
            out,
            "Shadow MMU root loads (root-level kvm_mmu_get_page) per vCPU thread:",
        );
        let mut t = Table::new(&["TID", "NEW", "EXISTING", "RATE/s"]);
        for (tid, c) in &m.root_loads {
            t.row(vec![
                tid.to_string(),
                c.new.to_string(),
                c.existing.to_string(),
                rate(c.new + c.existing, d),
            ]);
        }
        t.render(out, "  ");
    }
}

fn interrupts(out: &mut String, r: &Report, d: u64) {
    let i = &r.interrupts;
    let mut t = Table::new(&["EVENT", "KEY", "COUNT", "RATE/s"]).left(1);
    for (vec, n) in &i.injected {
        t.row(vec![
            "injected IRQ".into(),
            format!("vector {vec}"),
            n.to_string(),
            rate(*n, d),
        ]);
    }
    for (vec, n) in &i.accepted {
        t.row(vec![
            "LAPIC accepted".into(),
            format!("vector {vec}"),
            n.to_string(),
            rate(*n, d),
        ]);
    }
    for (dst, vec, n) in &i.ipis {
        t.row(vec![
            "IPI".into(),
            format!("dst {dst} vector {vec}"),
            n.to_string(),
            rate(*n, d),
        ]);
    }
    for (vec, n) in &i.exceptions {
        t.row(vec![
            "injected exception".into(),
            format!("vector {vec}"),
            n.to_string(),
            rate(*n, d),
        ]);
    }
    let simple = [
        ("EOI", i.eoi),
        ("kvm_set_irq", i.set_irq),
        ("MSI", i.msi),
        ("hv_timer on", i.timer.hv_timer_on),
        ("hv_timer off", i.timer.hv_timer_off),
        ("LAPIC timer early", i.timer.lapic_early),
        ("LAPIC timer late", i.timer.lapic_late),
        ("halt wake: slept", i.halt.waited.samples),
        ("halt wake: polled", i.halt.polled.samples),
        ("halt-poll grow", i.halt.poll_grow),
        ("halt-poll shrink", i.halt.poll_shrink),
        ("WFI trap (arm64)", i.halt.wfi.count),
        ("WFE trap (arm64)", i.halt.wfe.count),
    ];
    for (name, n) in simple {
        if n > 0 {
            t.row(vec![name.into(), String::new(), n.to_string(), rate(n, d)]);
        }
    }
    if t.is_empty() {
        return;
    }
    heading(out, "Interrupts, timers and halts:");
    t.render(out, "  ");
    let h = &i.halt;
    if h.waited.samples + h.polled.samples > 0 {
        let _ = writeln!(
            out,
            "  halt-polling caught {:.1}% of wake-ups; slept avg {}, polled avg {}",
            h.poll_success_pct,
            us(h.waited.mean_ns),
            us(h.polled.mean_ns)
        );
    }
    for (what, w) in [("WFI", &h.wfi), ("WFE", &h.wfe)] {
        if w.wait.samples > 0 {
            let _ = writeln!(
                out,
                "  {what} trap to re-entry: avg {}, p50 {}, p99 {}, max {} ({} paired)",
                us(w.wait.mean_ns),
                us(w.wait.p50_ns as f64),
                us(w.wait.p99_ns as f64),
                us(w.wait.max_ns as f64),
                w.wait.samples
            );
        }
    }
}

/// How many rows of a guest table to print; `--json` has them all.
const GUEST_ROWS: usize = 15;

fn guest(out: &mut String, g: &kvmscope_analysis::guest::GuestReport) {
    // Whose events these are: the traced kernel's, which is a guest unless it runs KVM itself.
    let who = if g.host_side {
        "Host kernel's own"
    } else {
        "Guest"
    };
    let d = g.span_ns;
    for w in &g.warnings {
        let _ = writeln!(
            out,
            "\nWARNING ({}): {w}",
            if g.host_side {
                "host kernel's own events"
            } else {
                "guest side"
            }
        );
    }
    if !g.msr.rows.is_empty() {
        heading(
            out,
            &format!("{who} MSR writes (msr:write_msr) by MSR and CPU:"),
        );
        let mut t = Table::new(&["MSR", "NAME", "CPU", "WRITES", "RATE/s"]).left(1);
        for m in g.msr.rows.iter().take(GUEST_ROWS) {
            t.row(vec![
                format!("{:#x}", m.msr),
                m.name.unwrap_or("?").into(),
                m.cpu.to_string(),
                m.writes.to_string(),
                rate(m.writes, d),
            ]);
        }
        t.render(out, "  ");
    }
    let timers = &g.timers;
    if !timers.hrtimers.is_empty() {
        heading(
            out,
            &format!("{who} hrtimers by function and CPU (timer:hrtimer_*):"),
        );
        let mut t = Table::new(&[
            "FUNCTION",
            "CPU",
            "EXPIRIES",
            "RATE/s",
            "STARTS",
            "RE-ARMED IN OWN IRQ",
        ]);
        let mut rows: Vec<_> = timers.hrtimers.iter().collect();
        rows.sort_by(|a, b| {
            b.expiries
                .cmp(&a.expiries)
                .then(a.function.cmp(&b.function))
                .then(a.cpu.cmp(&b.cpu))
        });
        for h in rows.into_iter().take(GUEST_ROWS) {
            t.row(vec![
                h.function.clone(),
                h.cpu.to_string(),
                h.expiries.to_string(),
                rate(h.expiries, d),
                h.starts.to_string(),
                (h.rearmed_in_handler + h.restarted_in_interrupt).to_string(),
            ]);
        }
        t.render(out, "  ");
    }
    if !timers.local_timer.is_empty() {
        heading(
            out,
            &format!("{who} local timer interrupts (irq_vectors:local_timer_entry):"),
        );
        let mut t = Table::new(&["CPU", "INTERRUPTS", "RATE/s"]);
        for l in &timers.local_timer {
            t.row(vec![
                l.cpu.to_string(),
                l.interrupts.to_string(),
                rate(l.interrupts, d),
            ]);
        }
        t.render(out, "  ");
    }
    let ipi = &g.ipi;
    if !ipi.sent.is_empty() {
        heading(
            out,
            &format!("{who} IPIs sent, by type and function (ipi:*, csd:*):"),
        );
        let mut t = Table::new(&["FROM CPU", "TO CPU", "TYPE", "FUNCTION", "SENT", "RATE/s"])
            .left(2)
            .left(3);
        let mut rows: Vec<_> = ipi.sent.iter().collect();
        rows.sort_by(|a, b| b.sent.cmp(&a.sent).then(a.function.cmp(&b.function)));
        for r in rows.into_iter().take(GUEST_ROWS) {
            t.row(vec![
                r.sender_cpu.to_string(),
                r.target_cpu.to_string(),
                r.kind.into(),
                r.function.clone(),
                r.sent.to_string(),
                rate(r.sent, d),
            ]);
        }
        t.render(out, "  ");
    }
    if !ipi.csd_functions.is_empty() {
        heading(
            out,
            &format!("{who} functions run by IPI (csd:csd_function_entry):"),
        );
        let mut t = Table::new(&[
            "FUNCTION",
            "CPU",
            "TYPE",
            "REMOTE RUNS",
            "LOCAL RUNS",
            "RATE/s",
        ])
        .left(2);
        let mut rows: Vec<_> = ipi.csd_functions.iter().collect();
        rows.sort_by(|a, b| b.runs.cmp(&a.runs).then(a.function.cmp(&b.function)));
        for r in rows.into_iter().take(GUEST_ROWS) {
            t.row(vec![
                r.function.clone(),
                r.cpu.to_string(),
                r.kind.into(),
                r.runs.to_string(),
                r.local_runs.to_string(),
                rate(r.runs, d),
            ]);
        }
        t.render(out, "  ");
    }
}

fn events(out: &mut String, r: &Report, d: u64) {
    heading(out, "Events by name:");
    let mut t = Table::new(&["EVENT", "COUNT", "RATE/s"]);
    for (name, n) in &r.overview.by_name {
        t.row(vec![name.clone(), n.to_string(), rate(*n, d)]);
    }
    t.render(out, "  ");
}
