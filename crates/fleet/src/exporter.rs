//! The live state behind `kvmscope exporter`.
//!
//! Counting is `kvmscope top`'s: the kernel counts every `kvm` tracepoint and the
//! drill-down children (kvm_exit per exit reason, kvm_userspace_exit per reason, kvm_msr per
//! MSR, kvm_pio per port) as perf_event_open tracepoint counters with kernel filters, on each
//! vCPU thread of each VM. A scrape reads them (one `read(2)` per counter group) and writes
//! the exposition text; nothing is sampled or estimated, so a series is exact to the event.
//!
//! Cardinality: series are written in a fixed order (VMs by pid, vCPUs by index, then the
//! catalog's order) and at most [`Options::max_series`] of them per scrape; the rest of that
//! scrape is left out and counted in `kvmscope_exporter_series_dropped`. Children are
//! written from their first hit on (a counter at zero is not a series yet), except the ports
//! and MSRs named explicitly (`--port`, `--msr`), which are written from the start so that a
//! rise from zero is visible to `increase()`. Memory is bounded by the counters held (one
//! per catalog entry per vCPU thread) and the text of one scrape (bounded by the cap).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kvmscope_capture::counters::{CounterError, CounterSet, CounterSpec, Target};
use kvmscope_top::catalog::{Catalog, Extra};
use kvmscope_top::vms::{self, VmProcess};

use kvmscope_lab::stats::{self as kstats, StatDesc, StatKind, StatUnit};
use kvmscope_lab::StatsFile;

use crate::exposition::{metric_name, render, Family, Histogram, Kind, Labels};

/// What a counter of the flat catalog measures, i.e. which metric and labels it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Measure {
    /// A whole tracepoint: `kvmscope_events_total{event}`.
    Event { event: String },
    /// kvm_exit with one exit reason: `kvmscope_exits_total{reason}`.
    Exit { reason: String },
    /// kvm_userspace_exit with one reason: `kvmscope_userspace_exits_total{reason}`.
    UserspaceExit { reason: String },
    /// kvm_msr with one MSR: `kvmscope_msr_total{msr,name}`.
    Msr { msr: String, name: String },
    /// kvm_pio with one port: `kvmscope_pio_total{port}`.
    Pio { port: String },
    /// Any other filtered child: `kvmscope_filtered_events_total{event,filter}`.
    Other { event: String, filter: String },
}

/// One counter of the flat catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub measure: Measure,
    /// Written even while zero (parents, and ports/MSRs asked for by name).
    pub always: bool,
}

fn filter_value(filter: &str) -> String {
    filter
        .rsplit_once("==")
        .map_or(filter, |(_, v)| v)
        .trim()
        .to_string()
}

fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The entries of a catalog, in [`Catalog::specs`] order.
pub fn entries(catalog: &Catalog, extra: &Extra) -> Vec<Entry> {
    let mut out = Vec::new();
    for e in &catalog.events {
        out.push(Entry {
            measure: Measure::Event {
                event: e.name.clone(),
            },
            always: true,
        });
        for c in &e.children {
            let value = filter_value(&c.filter);
            let num = parse_num(&value);
            let (measure, always) = match e.name.as_str() {
                "kvm_exit" => (
                    Measure::Exit {
                        reason: c.label.clone(),
                    },
                    false,
                ),
                "kvm_userspace_exit" => (
                    Measure::UserspaceExit {
                        reason: c.label.clone(),
                    },
                    false,
                ),
                "kvm_msr" | "write_msr" => (
                    Measure::Msr {
                        msr: num.map_or(value.clone(), |n| format!("{n:#x}")),
                        name: c.label.clone(),
                    },
                    num.is_some_and(|n| extra.msrs.iter().any(|&m| u64::from(m) == n)),
                ),
                "kvm_pio" => (
                    Measure::Pio {
                        port: num.map_or(value.clone(), |n| format!("{n:#x}")),
                    },
                    num.is_some_and(|n| extra.ports.iter().any(|&p| u64::from(p) == n)),
                ),
                _ => (
                    Measure::Other {
                        event: e.name.clone(),
                        filter: c.label.clone(),
                    },
                    false,
                ),
            };
            out.push(Entry { measure, always });
        }
    }
    out
}

/// The vCPU index in a vCPU thread's name (`CPU 3/KVM`, `kvmscope-vcpu0`, `fc_vcpu 1`).
pub fn vcpu_index(comm: &str) -> Option<u32> {
    let c = comm.trim();
    if let Some(rest) = c.strip_prefix("CPU ") {
        return rest.split('/').next()?.trim().parse().ok();
    }
    let digits: String = c
        .chars()
        .rev()
        .take_while(|ch| ch.is_ascii_digit())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().ok()
}

/// How the exporter runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Watch only these VM processes (empty: every VM on the host).
    pub pids: Vec<i32>,
    /// Most series written per scrape.
    pub max_series: usize,
    /// How often to look for new VMs and vCPU threads.
    pub rescan: Duration,
    /// How long the series of a VM that has gone stay exported.
    pub keep_gone: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            pids: Vec::new(),
            max_series: 20_000,
            rescan: Duration::from_secs(10),
            keep_gone: Duration::from_secs(300),
        }
    }
}

/// One finding of the rolling diagnosis.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveFinding {
    pub rule: String,
    pub severity: String,
    pub score: f64,
}

/// What the latest rolling diagnosis found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DiagnosisResult {
    pub findings: Vec<ActiveFinding>,
    /// Events the window recorded, and lost in the ring buffers.
    pub events: u64,
    pub lost: u64,
    /// How long recording and diagnosing took.
    pub took: Duration,
    /// When it finished (seconds since the epoch).
    pub at_unix: f64,
}

#[derive(Debug)]
struct Vm {
    pid: i32,
    name: String,
    /// vCPU thread id → vCPU label.
    vcpus: BTreeMap<i32, String>,
    /// Counter sets, one per batch of vCPU threads attached together.
    sets: Vec<CounterSet>,
    /// KVM binary stats fds the VMM holds, duplicated (fd number in the VMM → file).
    stats: BTreeMap<i32, StatsFile>,
    gone_since: Option<Instant>,
}

/// The exporter's own counters.
#[derive(Debug, Default, Clone)]
struct Health {
    scrapes: u64,
    last_scrape: Duration,
    series: usize,
    dropped: usize,
    open_errors: u64,
    read_errors: u64,
    diagnoses: u64,
    diagnosis_errors: u64,
    lost_events: u64,
}

/// The exporter.
#[derive(Debug)]
pub struct Exporter {
    tracefs: PathBuf,
    specs: Vec<CounterSpec>,
    entries: Vec<Entry>,
    vms: BTreeMap<i32, Vm>,
    opts: Options,
    last_scan: Option<Instant>,
    health: Health,
    diagnosis: Option<DiagnosisResult>,
    /// Errors to say once on stderr (the caller drains them).
    notes: Vec<String>,
    capped_said: bool,
}

impl Exporter {
    /// An exporter counting `catalog` (with children) on the VMs `opts` selects.
    pub fn new(tracefs: &Path, catalog: &Catalog, extra: &Extra, opts: Options) -> Exporter {
        Exporter {
            tracefs: tracefs.to_path_buf(),
            specs: catalog.specs(),
            entries: entries(catalog, extra),
            vms: BTreeMap::new(),
            opts,
            last_scan: None,
            health: Health::default(),
            diagnosis: None,
            notes: Vec::new(),
            capped_said: false,
        }
    }

    /// Messages for the operator since the last call (counter errors, the cap reached).
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// True when the rescan interval has passed.
    pub fn rescan_due(&self) -> bool {
        self.last_scan
            .is_none_or(|t| t.elapsed() >= self.opts.rescan)
    }

    /// Number of VMs watched (including gone ones still exported).
    pub fn vms(&self) -> usize {
        self.vms.len()
    }

    /// KVM binary stats files held (VM and vCPU).
    pub fn stats_files(&self) -> usize {
        self.vms.values().map(|v| v.stats.len()).sum()
    }

    /// Open counters (file descriptors).
    pub fn counters(&self) -> usize {
        self.vms
            .values()
            .flat_map(|v| &v.sets)
            .map(CounterSet::len)
            .sum()
    }

    /// The vCPU thread ids watched, of every VM (for the rolling diagnosis's filter).
    pub fn vcpu_threads(&self) -> Vec<i32> {
        self.vms
            .values()
            .filter(|v| v.gone_since.is_none())
            .flat_map(|v| v.vcpus.keys().copied())
            .collect()
    }

    /// Finds VMs and vCPU threads that appeared, attaches counters to them, and forgets VMs
    /// gone longer than `keep_gone` (their counters are closed).
    pub fn rescan(&mut self) {
        self.last_scan = Some(Instant::now());
        let found: Vec<VmProcess> = if self.opts.pids.is_empty() {
            vms::list()
        } else {
            self.opts
                .pids
                .iter()
                .filter_map(|&p| vms::describe(p))
                .collect()
        };
        let alive: BTreeSet<i32> = found.iter().map(|v| v.pid).collect();
        for vm in self.vms.values_mut() {
            if !alive.contains(&vm.pid) && vm.gone_since.is_none() {
                vm.gone_since = Some(Instant::now());
                // A stats fd keeps its VM alive in the kernel: never hold one past the VMM.
                vm.stats.clear();
            }
        }
        let keep = self.opts.keep_gone;
        self.vms
            .retain(|_, v| v.gone_since.is_none_or(|t| t.elapsed() < keep));
        for p in found {
            let entry = self.vms.entry(p.pid).or_insert_with(|| Vm {
                pid: p.pid,
                name: p.name.clone(),
                vcpus: BTreeMap::new(),
                sets: Vec::new(),
                stats: BTreeMap::new(),
                gone_since: None,
            });
            entry.gone_since = None;
            refresh_stats(entry);
            let new: Vec<(i32, String)> = p
                .vcpus
                .iter()
                .filter(|(t, _)| !entry.vcpus.contains_key(t))
                .map(|(t, c)| {
                    let label = vcpu_index(c).map_or_else(|| format!("tid{t}"), |i| i.to_string());
                    (*t, label)
                })
                .collect();
            if new.is_empty() {
                continue;
            }
            let targets: Vec<Target> = new.iter().map(|(t, _)| Target::Thread(*t)).collect();
            match open_set(&self.tracefs, &self.specs, &targets) {
                Ok(set) => {
                    entry.sets.push(set);
                    entry.vcpus.extend(new);
                }
                Err(e) => {
                    self.health.open_errors += 1;
                    self.notes.push(format!(
                        "cannot count VM pid {} ({}): {e}",
                        entry.pid, entry.name
                    ));
                }
            }
        }
    }

    /// Takes the result of a rolling diagnosis.
    pub fn set_diagnosis(&mut self, d: Result<DiagnosisResult, String>) {
        match d {
            Ok(d) => {
                self.health.diagnoses += 1;
                self.health.lost_events += d.lost;
                self.diagnosis = Some(d);
            }
            Err(e) => {
                self.health.diagnosis_errors += 1;
                self.notes.push(format!("rolling diagnosis failed: {e}"));
            }
        }
    }

    /// Reads every counter and writes the exposition text.
    pub fn scrape(&mut self) -> String {
        let started = Instant::now();
        let mut families = self.counter_families();
        families.extend(self.stat_families());
        families.extend(self.diagnosis_families());
        families.extend(self.health_families());
        let text = render(&families);
        self.health.scrapes += 1;
        self.health.last_scrape = started.elapsed();
        text
    }

    fn counter_families(&mut self) -> Vec<Family> {
        let mut out = CounterFamilies::new(self.opts.max_series);
        for vm in self.vms.values_mut() {
            for set in &mut vm.sets {
                let per = match set.read_each() {
                    Ok(p) => p,
                    Err(e) => {
                        self.health.read_errors += 1;
                        self.notes.push(format!(
                            "cannot read the counters of VM pid {}: {e}",
                            vm.pid
                        ));
                        continue;
                    }
                };
                for (target, counts) in per {
                    let Target::Thread(tid) = target else {
                        continue;
                    };
                    let vcpu = vm
                        .vcpus
                        .get(&tid)
                        .cloned()
                        .unwrap_or_else(|| format!("tid{tid}"));
                    out.add(&self.entries, &vm.name, vm.pid, &vcpu, &counts);
                }
            }
        }
        let (written, dropped) = (out.written, out.dropped);
        if dropped > 0 && !self.capped_said {
            self.capped_said = true;
            self.notes.push(format!(
                "label cardinality cap reached: {written} series written, {dropped} left out of this scrape \
                 (raise --max-series, or watch fewer VMs with --pid); kvmscope_exporter_series_dropped says how many"
            ));
        }
        self.health.series = written;
        self.health.dropped = dropped;
        out.into_families()
    }

    /// KVM's binary statistics of the VMs whose stats fds could be taken: scalars as
    /// counters or gauges in the descriptor's unit (seconds scaled from the exponent),
    /// histograms (halt-polling) as Prometheus histograms.
    fn stat_families(&mut self) -> Vec<Family> {
        let mut fams: Vec<Family> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let max = self.opts.max_series;
        for vm in self.vms.values() {
            for f in vm.stats.values() {
                let Ok(snap) = f.read() else {
                    self.health.read_errors += 1;
                    continue;
                };
                let (scope, vcpu) = match snap.id.split_once("/vcpu-") {
                    Some((_, n)) => ("vcpu", Some(n.to_string())),
                    None => ("vm", None),
                };
                for (d, values) in &snap.stats {
                    if self.health.series >= max {
                        self.health.dropped += 1;
                        continue;
                    }
                    let Some((name, kind, help)) = stat_metric(scope, d) else {
                        continue;
                    };
                    let mut labels: Labels =
                        vec![("vm", vm.name.clone()), ("pid", vm.pid.to_string())];
                    if let Some(v) = &vcpu {
                        labels.push(("vcpu", v.clone()));
                    }
                    let i = *index.entry(name.clone()).or_insert_with(|| {
                        fams.push(Family::new(name.clone(), kind, help));
                        fams.len() - 1
                    });
                    self.health.series += 1;
                    match d.kind {
                        StatKind::LinearHist | StatKind::LogHist => {
                            let sum = companion_sum(d, &snap.stats);
                            fams[i].push_histogram(labels, histogram(d, values, sum));
                        }
                        _ => {
                            let v = values.first().copied().unwrap_or(0) as f64;
                            fams[i].push(labels, scaled(d, v));
                        }
                    }
                }
            }
        }
        fams
    }

    fn diagnosis_families(&self) -> Vec<Family> {
        let mut active = Family::new(
            "kvmscope_finding",
            Kind::Gauge,
            "1 for each finding of the latest rolling diagnosis (kvmscope diagnose's rules over a short live recording).",
        );
        let mut score = Family::new(
            "kvmscope_finding_score",
            Kind::Gauge,
            "How far past its warning threshold each active finding's main signal is (1 = at the threshold).",
        );
        let mut took = Family::new(
            "kvmscope_diagnosis_duration_seconds",
            Kind::Gauge,
            "How long the latest rolling diagnosis took (recording window included).",
        );
        let mut at = Family::new(
            "kvmscope_diagnosis_timestamp_seconds",
            Kind::Gauge,
            "When the latest rolling diagnosis finished (Unix time).",
        );
        let mut events = Family::new(
            "kvmscope_diagnosis_events",
            Kind::Gauge,
            "Events recorded by the latest rolling diagnosis window.",
        );
        if let Some(d) = &self.diagnosis {
            for f in &d.findings {
                let l: Labels = vec![("rule", f.rule.clone()), ("severity", f.severity.clone())];
                active.push(l.clone(), 1.0);
                score.push(l, f.score);
            }
            took.push(vec![], d.took.as_secs_f64());
            at.push(vec![], d.at_unix);
            events.push(vec![], d.events as f64);
        }
        vec![active, score, took, at, events]
    }

    fn health_families(&self) -> Vec<Family> {
        let h = &self.health;
        let gauge = |name: &str, help: &str, v: f64| {
            let mut f = Family::new(name, Kind::Gauge, help);
            f.push(vec![], v);
            f
        };
        let counter = |name: &str, help: &str, v: u64| {
            let mut f = Family::new(name, Kind::Counter, help);
            f.push(vec![], v as f64);
            f
        };
        let mut errors = Family::new(
            "kvmscope_exporter_errors_total",
            Kind::Counter,
            "Errors by stage: opening counters, reading them, the rolling diagnosis.",
        );
        errors.push(vec![("stage", "open".into())], h.open_errors as f64);
        errors.push(vec![("stage", "read".into())], h.read_errors as f64);
        errors.push(
            vec![("stage", "diagnosis".into())],
            h.diagnosis_errors as f64,
        );
        vec![
            gauge(
                "kvmscope_exporter_scrape_duration_seconds",
                "How long the previous scrape took to read the counters and write the text.",
                h.last_scrape.as_secs_f64(),
            ),
            counter(
                "kvmscope_exporter_scrapes_total",
                "Scrapes served before this one.",
                h.scrapes,
            ),
            gauge(
                "kvmscope_exporter_vms",
                "VMs watched.",
                self.vms.len() as f64,
            ),
            gauge(
                "kvmscope_exporter_vcpus",
                "vCPU threads counted.",
                self.vms.values().map(|v| v.vcpus.len()).sum::<usize>() as f64,
            ),
            gauge(
                "kvmscope_exporter_counters",
                "Open perf_event counters (file descriptors).",
                self.counters() as f64,
            ),
            gauge(
                "kvmscope_exporter_kvm_stats_files",
                "KVM binary stats fds taken from the VMMs (VM and vCPU); 0 when no VMM opened one.",
                self.stats_files() as f64,
            ),
            gauge(
                "kvmscope_exporter_series",
                "Counter series written in this scrape.",
                h.series as f64,
            ),
            gauge(
                "kvmscope_exporter_series_limit",
                "The label cardinality cap (--max-series).",
                self.opts.max_series as f64,
            ),
            gauge(
                "kvmscope_exporter_series_dropped",
                "Counter series left out of this scrape by the cap.",
                h.dropped as f64,
            ),
            counter(
                "kvmscope_exporter_lost_events_total",
                "Events the rolling diagnosis's ring buffers lost (counters never lose events).",
                h.lost_events,
            ),
            counter(
                "kvmscope_exporter_diagnoses_total",
                "Rolling diagnoses completed.",
                h.diagnoses,
            ),
            errors,
        ]
    }
}

/// The counter series of one scrape, written up to the cardinality cap.
#[derive(Debug)]
pub struct CounterFamilies {
    events: Family,
    exits: Family,
    uexits: Family,
    msr: Family,
    pio: Family,
    other: Family,
    max: usize,
    /// Series written, and left out by the cap.
    pub written: usize,
    pub dropped: usize,
}

impl CounterFamilies {
    /// Empty families that take at most `max` series.
    pub fn new(max: usize) -> CounterFamilies {
        let events = Family::new(
            "kvmscope_events_total",
            Kind::Counter,
            "KVM tracepoint hits on a vCPU thread (every event of the kvm system), counted in the kernel.",
        );
        let exits = Family::new(
            "kvmscope_exits_total",
            Kind::Counter,
            "VM exits by exit reason (kvm_exit with a kernel filter on exit_reason, or on esr_ec on arm64).",
        );
        let uexits = Family::new(
            "kvmscope_userspace_exits_total",
            Kind::Counter,
            "Exits to the VMM by reason (kvm_userspace_exit with a kernel filter on reason).",
        );
        let msr = Family::new(
            "kvmscope_msr_total",
            Kind::Counter,
            "MSR accesses that exited, by MSR (kvm_msr filtered on ecx; reads and writes).",
        );
        let pio = Family::new(
            "kvmscope_pio_total",
            Kind::Counter,
            "Port IO exits by port (kvm_pio filtered on port; in and out).",
        );
        let other = Family::new(
            "kvmscope_filtered_events_total",
            Kind::Counter,
            "Other drill-down counters (a tracepoint with a kernel filter).",
        );
        CounterFamilies {
            events,
            exits,
            uexits,
            msr,
            pio,
            other,
            max,
            written: 0,
            dropped: 0,
        }
    }

    /// Adds one vCPU thread's counts (in `entries` order).
    pub fn add(&mut self, entries: &[Entry], vm: &str, pid: i32, vcpu: &str, counts: &[u64]) {
        for (entry, &n) in entries.iter().zip(counts) {
            if n == 0 && !entry.always {
                continue;
            }
            if self.written >= self.max {
                self.dropped += 1;
                continue;
            }
            self.written += 1;
            let mut labels: Labels = vec![
                ("vm", vm.to_string()),
                ("pid", pid.to_string()),
                ("vcpu", vcpu.to_string()),
            ];
            let fam = match &entry.measure {
                Measure::Event { event } => {
                    labels.push(("event", event.clone()));
                    &mut self.events
                }
                Measure::Exit { reason } => {
                    labels.push(("reason", reason.clone()));
                    &mut self.exits
                }
                Measure::UserspaceExit { reason } => {
                    labels.push(("reason", reason.clone()));
                    &mut self.uexits
                }
                Measure::Msr { msr: m, name } => {
                    labels.push(("msr", m.clone()));
                    labels.push(("name", name.clone()));
                    &mut self.msr
                }
                Measure::Pio { port } => {
                    labels.push(("port", port.clone()));
                    &mut self.pio
                }
                Measure::Other { event, filter } => {
                    labels.push(("event", event.clone()));
                    labels.push(("filter", filter.clone()));
                    &mut self.other
                }
            };
            fam.push(labels, n as f64);
        }
    }

    /// The families, in exposition order.
    pub fn into_families(self) -> Vec<Family> {
        vec![
            self.events,
            self.exits,
            self.uexits,
            self.msr,
            self.pio,
            self.other,
        ]
    }
}

/// Takes the stats fds the VMM opened since the last look; forgets those it closed.
fn refresh_stats(vm: &mut Vm) {
    let open: BTreeSet<i32> = std::fs::read_dir(format!("/proc/{}/fd", vm.pid))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path())
                .ok()
                .is_some_and(|l| kstats::is_stats_link(&l.to_string_lossy()))
        })
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    vm.stats.retain(|fd, _| open.contains(fd));
    if open.iter().any(|fd| !vm.stats.contains_key(fd)) {
        for (fd, f) in kstats::foreign_stats_files(vm.pid) {
            vm.stats.entry(fd).or_insert(f);
        }
    }
}

/// A stat's raw value in its exported unit (seconds for time): divided rather than
/// multiplied for negative exponents, so that 3 ns prints as 0.000000003.
fn scaled(d: &StatDesc, v: f64) -> f64 {
    let base: f64 = if d.base2 { 2.0 } else { 10.0 };
    match d.unit {
        StatUnit::Seconds if d.exponent < 0 => v / base.powi(-i32::from(d.exponent)),
        StatUnit::Seconds => v * base.powi(i32::from(d.exponent)),
        _ => v,
    }
}

/// Metric name, type and help of one KVM statistic, or None for kinds not exported.
fn stat_metric(scope: &str, d: &StatDesc) -> Option<(String, Kind, String)> {
    let mut base = metric_name(&d.name);
    let hist = matches!(d.kind, StatKind::LinearHist | StatKind::LogHist);
    if hist {
        base = base.trim_end_matches("_hist").to_string();
    }
    let unit = match d.unit {
        StatUnit::Seconds => {
            for suffix in ["_ns", "_us", "_ms"] {
                if let Some(b) = base.strip_suffix(suffix) {
                    base = b.to_string();
                }
            }
            "_seconds"
        }
        StatUnit::Bytes => "_bytes",
        StatUnit::Cycles => "_cycles",
        _ => "",
    };
    let (kind, total) = match d.kind {
        StatKind::Cumulative => (Kind::Counter, "_total"),
        StatKind::Instant | StatKind::Peak => (Kind::Gauge, ""),
        StatKind::LinearHist | StatKind::LogHist => (Kind::Histogram, ""),
        _ => return None,
    };
    let what = match d.kind {
        StatKind::Cumulative => "cumulative",
        StatKind::Instant => "instant",
        StatKind::Peak => "peak",
        StatKind::LinearHist => "linear histogram",
        _ => "log2 histogram",
    };
    Some((
        format!("kvmscope_kvm_{scope}_{base}{unit}{total}"),
        kind,
        format!(
            "KVM binary statistic {} ({scope}, {what}) from the VMM's stats fd",
            d.name
        ),
    ))
}

/// A histogram from KVM's buckets: log2 bucket i holds values in [2^(i-1), 2^i), bucket 0
/// the value 0; linear bucket i holds [i*size, (i+1)*size); the last bucket holds everything
/// above, so it becomes `+Inf`.
fn histogram(d: &StatDesc, values: &[u64], sum: Option<f64>) -> Histogram {
    let mut buckets = Vec::new();
    let mut cum = 0u64;
    let n = values.len();
    for (i, &v) in values.iter().enumerate() {
        cum = cum.saturating_add(v);
        if i + 1 == n {
            break;
        }
        let upper = match d.kind {
            StatKind::LogHist if i == 0 => 0.0,
            StatKind::LogHist => (2f64.powi(i as i32)) - 1.0,
            _ => ((i as f64 + 1.0) * f64::from(d.bucket_size.max(1))) - 1.0,
        };
        buckets.push((scaled(d, upper), cum));
    }
    Histogram {
        buckets,
        sum,
        count: cum,
    }
}

/// The sum for a histogram `X_hist`: its companion total `X_ns` (halt_poll_success_hist ↔
/// halt_poll_success_ns), in seconds.
fn companion_sum(d: &StatDesc, stats: &[(StatDesc, Vec<u64>)]) -> Option<f64> {
    let stem = d.name.strip_suffix("_hist")?;
    stats
        .iter()
        .find(|(c, _)| c.name == format!("{stem}_ns") && c.size == 1)
        .map(|(c, v)| scaled(c, v.first().copied().unwrap_or(0) as f64))
}

fn open_set(
    tracefs: &Path,
    specs: &[CounterSpec],
    targets: &[Target],
) -> Result<CounterSet, CounterError> {
    let mut set = CounterSet::open(tracefs, specs, &[])?;
    set.add_targets(targets)?;
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvmscope_top::catalog::{CatEvent, Child, Mode};

    fn desc(name: &str, kind: StatKind, unit: StatUnit, exponent: i16, size: u16) -> StatDesc {
        StatDesc {
            name: name.into(),
            kind,
            unit,
            exponent,
            size,
            offset: 0,
            bucket_size: 0,
            base2: false,
        }
    }

    #[test]
    fn kvm_stats_in_their_units() {
        let ns = desc(
            "halt_poll_success_ns",
            StatKind::Cumulative,
            StatUnit::Seconds,
            -9,
            1,
        );
        let (name, kind, _) = stat_metric("vcpu", &ns).unwrap();
        assert_eq!(name, "kvmscope_kvm_vcpu_halt_poll_success_seconds_total");
        assert_eq!(kind, Kind::Counter);
        assert_eq!(scaled(&ns, 3.0), 3e-9);
        let h = desc(
            "halt_poll_success_hist",
            StatKind::LogHist,
            StatUnit::Seconds,
            -9,
            4,
        );
        let (name, kind, _) = stat_metric("vcpu", &h).unwrap();
        assert_eq!(name, "kvmscope_kvm_vcpu_halt_poll_success_seconds");
        assert_eq!(kind, Kind::Histogram);
        let stats = vec![(ns.clone(), vec![3000])];
        let hist = histogram(&h, &[1, 2, 3, 4], companion_sum(&h, &stats));
        assert_eq!(hist.count, 10);
        assert_eq!(hist.buckets.len(), 3);
        assert_eq!(hist.buckets[0], (0.0, 1));
        assert_eq!(hist.buckets[2].1, 6);
        assert_eq!(hist.buckets[2].0, 3e-9);
        assert!((hist.sum.unwrap() - 3e-6).abs() < 1e-15);
        let g = desc("pages_4k", StatKind::Instant, StatUnit::None, 0, 1);
        assert_eq!(stat_metric("vm", &g).unwrap().0, "kvmscope_kvm_vm_pages_4k");
    }

    #[test]
    fn the_cap_leaves_out_the_rest_of_a_scrape() {
        let entries = vec![
            Entry {
                measure: Measure::Event {
                    event: "kvm_pio".into(),
                },
                always: true,
            },
            Entry {
                measure: Measure::Pio {
                    port: "0x3f8".into(),
                },
                always: false,
            },
        ];
        let mut f = CounterFamilies::new(3);
        f.add(&entries, "web1", 10, "0", &[5, 0]);
        assert_eq!(
            (f.written, f.dropped),
            (1, 0),
            "a child at zero is no series yet"
        );
        f.add(&entries, "web1", 10, "1", &[7, 7]);
        f.add(&entries, "web2", 11, "0", &[1, 1]);
        assert_eq!((f.written, f.dropped), (3, 2));
        let text = render(&f.into_families());
        assert!(text
            .contains("kvmscope_pio_total{vm=\"web1\",pid=\"10\",vcpu=\"1\",port=\"0x3f8\"} 7\n"));
        assert!(!text.contains("web2"), "{text}");
    }

    #[test]
    fn vcpu_indices() {
        assert_eq!(vcpu_index("CPU 3/KVM"), Some(3));
        assert_eq!(vcpu_index("kvmscope-vcpu12"), Some(12));
        assert_eq!(vcpu_index("fc_vcpu 1"), Some(1));
        assert_eq!(vcpu_index("qemu"), None);
    }

    #[test]
    fn entries_name_their_labels() {
        let cat = Catalog {
            mode: Mode::Host,
            events: vec![
                CatEvent {
                    system: "kvm".into(),
                    name: "kvm_pio".into(),
                    children: vec![
                        Child {
                            label: "0x3f8".into(),
                            filter: "port == 0x3f8".into(),
                        },
                        Child {
                            label: "0x1234".into(),
                            filter: "port == 0x1234".into(),
                        },
                    ],
                },
                CatEvent {
                    system: "kvm".into(),
                    name: "kvm_msr".into(),
                    children: vec![Child {
                        label: "IA32_TSC_DEADLINE".into(),
                        filter: "ecx == 0x6e0".into(),
                    }],
                },
                CatEvent {
                    system: "kvm".into(),
                    name: "kvm_exit".into(),
                    children: vec![Child {
                        label: "HLT".into(),
                        filter: "exit_reason == 120".into(),
                    }],
                },
            ],
        };
        let extra = Extra {
            ports: vec![0x1234],
            msrs: vec![],
        };
        let e = entries(&cat, &extra);
        assert_eq!(e.len(), cat.specs().len());
        assert!(e[0].always);
        assert_eq!(
            e[1],
            Entry {
                measure: Measure::Pio {
                    port: "0x3f8".into()
                },
                always: false
            }
        );
        assert!(e[2].always, "a port named with --port is written from zero");
        assert_eq!(
            e[4].measure,
            Measure::Msr {
                msr: "0x6e0".into(),
                name: "IA32_TSC_DEADLINE".into()
            }
        );
        assert_eq!(
            e[6].measure,
            Measure::Exit {
                reason: "HLT".into()
            }
        );
    }

    #[test]
    fn health_without_vms() {
        let cat = Catalog {
            mode: Mode::Host,
            events: vec![],
        };
        let mut x = Exporter::new(
            Path::new("/nonexistent"),
            &cat,
            &Extra::default(),
            Options::default(),
        );
        x.set_diagnosis(Ok(DiagnosisResult {
            findings: vec![ActiveFinding {
                rule: "timer-storm".into(),
                severity: "warning".into(),
                score: 3.5,
            }],
            events: 10,
            lost: 2,
            took: Duration::from_secs(2),
            at_unix: 1.0,
        }));
        let text = x.scrape();
        assert!(text.contains("kvmscope_finding{rule=\"timer-storm\",severity=\"warning\"} 1\n"));
        assert!(text
            .contains("kvmscope_finding_score{rule=\"timer-storm\",severity=\"warning\"} 3.5\n"));
        assert!(text.contains("kvmscope_exporter_lost_events_total 2\n"));
        assert!(text.contains("kvmscope_exporter_scrapes_total 0\n"));
        assert!(!text.contains("kvmscope_events_total"));
        let again = x.scrape();
        assert!(again.contains("kvmscope_exporter_scrapes_total 1\n"));
    }
}
