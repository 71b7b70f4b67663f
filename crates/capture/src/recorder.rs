//! Recording a private tracefs instance into a trace.dat file.
//!
//! [`Recorder::start`] creates the instance, sets its buffer size, filters and events, opens
//! every CPU's `trace_pipe_raw` (non-blocking) and turns recording on. [`Recorder::poll`]
//! drains whole pages from every CPU into per-CPU spool files (unlinked temporary files beside
//! the output), counting
//! events and lost events as it goes. [`Recorder::finish`] stops recording, drains what is
//! left, writes the trace.dat (version 6) and removes the instance and the spool files.
//!
//! Only the instance's own files are written: kvmscope needs no global tracing state, so it
//! works under kernel lockdown.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::CaptureError;
use crate::tracefs::{read_file, Instance};
use kvmscope_tracedat::file::{
    self as tracedat, option, parse_stats, BufferPages, CpuPages, Metadata, Version,
};
use kvmscope_tracedat::format::{check_header_event, EventFormat, PageLayout};
use kvmscope_tracedat::ringbuf::{Missed, Page, Record};

/// The event presets of `kvmscope record --events`.
pub const PRESETS: &[(&str, &str)] = &[
    ("kvm", "every event of the kvm system (default)"),
    ("mmu", "kvmmmu:* and kvm:kvm_page_fault (shadow/TDP MMU activity)"),
    ("timers", "hrtimers, LAPIC timer interrupts, KVM timer state, TSC-deadline MSR writes"),
    ("ipi", "IPIs and cross-CPU calls, KVM APIC IPIs and injected interrupts"),
    ("guest", "what a guest kernel shows of its hypervisor: MSR writes, timers, IRQ vectors, IPIs, scheduling"),
    ("all", "kvm, kvmmmu, timer, irq_vectors, ipi, csd, msr and scheduler switches/wakeups"),
];

/// One thing to enable: a whole system or one event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventSel {
    pub system: String,
    /// None: every event of the system.
    pub event: Option<String>,
    /// From a preset: skipped (with a note) when this kernel lacks it.
    pub optional: bool,
}

impl EventSel {
    fn req(system: &str, event: Option<&str>) -> EventSel {
        EventSel {
            system: system.into(),
            event: event.map(Into::into),
            optional: false,
        }
    }
    fn opt(system: &str, event: Option<&str>) -> EventSel {
        EventSel {
            optional: true,
            ..EventSel::req(system, event)
        }
    }
}

impl std::fmt::Display for EventSel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}",
            self.system,
            self.event.as_deref().unwrap_or("*")
        )
    }
}

/// Parses `--events`: preset names and `system:event` / `system:*` / `system` items,
/// comma-separated.
pub fn parse_events(spec: &str) -> Result<Vec<EventSel>, CaptureError> {
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item {
            "kvm" => out.push(EventSel::req("kvm", None)),
            "mmu" => {
                out.push(EventSel::req("kvmmmu", None));
                out.push(EventSel::opt("kvm", Some("kvm_page_fault")));
            }
            "timers" => {
                for e in [
                    "hrtimer_start",
                    "hrtimer_cancel",
                    "hrtimer_expire_entry",
                    "hrtimer_expire_exit",
                ] {
                    out.push(EventSel::opt("timer", Some(e)));
                }
                out.push(EventSel::opt("irq_vectors", Some("local_timer_entry")));
                out.push(EventSel::opt("kvm", Some("kvm_hv_timer_state")));
                out.push(EventSel::opt("kvm", Some("kvm_timer_update_irq")));
                out.push(EventSel::opt("msr", Some("write_msr")));
            }
            "ipi" => {
                out.push(EventSel::opt("ipi", None));
                out.push(EventSel::opt("csd", None));
                out.push(EventSel::opt("kvm", Some("kvm_apic_ipi")));
                out.push(EventSel::opt("kvm", Some("kvm_apic_accept_irq")));
                out.push(EventSel::opt("irq_vectors", Some("call_function_entry")));
                out.push(EventSel::opt(
                    "irq_vectors",
                    Some("call_function_single_entry"),
                ));
                out.push(EventSel::opt("irq_vectors", Some("reschedule_entry")));
            }
            "guest" => {
                out.push(EventSel::opt("msr", Some("write_msr")));
                out.push(EventSel::opt("timer", None));
                out.push(EventSel::opt("irq_vectors", None));
                out.push(EventSel::opt("ipi", None));
                out.push(EventSel::opt("csd", None));
                out.push(EventSel::opt("sched", Some("sched_switch")));
                out.push(EventSel::opt("sched", Some("sched_wakeup")));
            }
            "all" => {
                for s in ["kvm", "kvmmmu", "timer", "irq_vectors", "ipi", "csd", "msr"] {
                    out.push(EventSel::opt(s, None));
                }
                out.push(EventSel::opt("sched", Some("sched_switch")));
                out.push(EventSel::opt("sched", Some("sched_wakeup")));
            }
            _ => {
                let (sys, ev) = item.split_once(':').unwrap_or((item, "*"));
                let ok = |s: &str| {
                    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                };
                if !ok(sys) || !(ev == "*" || ok(ev)) {
                    return Err(CaptureError::InvalidEventName(format!(
                        "{item} (presets: {})",
                        PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
                    )));
                }
                out.push(EventSel::req(sys, (ev != "*").then_some(ev)));
            }
        }
    }
    // A required selection wins over an optional duplicate.
    out.sort();
    out.dedup_by(|b, a| {
        if a.system == b.system && a.event == b.event {
            a.optional &= b.optional;
            true
        } else {
            false
        }
    });
    Ok(out)
}

/// What to record.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub events: Vec<EventSel>,
    /// (Some((system, event)) or None for every selected event, kernel filter expression).
    /// Filters that apply to the same event are combined with `&&`.
    pub filters: Vec<(Option<(String, String)>, String)>,
    /// Per-CPU buffer size in KiB (None: the kernel's default).
    pub buffer_kb: Option<u64>,
    /// Ring-buffer sub-buffer (page) size in KiB, on kernels that have
    /// `buffer_subbuf_size_kb` (6.8+); None keeps the default (the host page size).
    pub subbuf_kb: Option<u64>,
    /// Which of /proc/kallsyms to store in the file.
    pub kallsyms: KallsymsMode,
    /// The trace.dat version to write.
    pub version: Version,
}

/// How much of /proc/kallsyms a recording keeps (trace-cmd keeps all of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KallsymsMode {
    /// The symbols that the recorded pointer fields (`%ps`/`%pS`: hrtimer and csd functions,
    /// IPI callbacks and callsites) point into, and each one's successor (which bounds it):
    /// a few KiB where the whole table is ~5 MB, and the same names.
    #[default]
    Referenced,
    /// All of /proc/kallsyms, as trace-cmd stores it (for tools that name other addresses).
    All,
}

/// Counters while recording.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub events: u64,
    /// Bytes of pages read from the kernel.
    pub bytes: u64,
    pub pages: u64,
    /// Per CPU: lost events the kernel counted in page headers.
    pub lost_known: Vec<u64>,
    /// Per CPU: pages that say events were lost without a count.
    pub lost_unknown_pages: Vec<u64>,
    /// Per CPU: the kernel's own count of events the reader never saw (`overrun` plus
    /// `dropped events` of the instance's `per_cpu/cpuN/stats`), as of the last
    /// [`Recorder::refresh_kernel_stats`].
    pub lost_kernel: Vec<u64>,
    /// Events per event id.
    pub by_id: BTreeMap<u16, u64>,
    /// `system:event` of each enabled event id.
    pub names: BTreeMap<u16, String>,
}

impl Progress {
    /// Lost events per CPU: the larger of what the pages said and what the kernel counted
    /// (a page can only say "some were lost" when it has no room for the count).
    pub fn lost_per_cpu(&self) -> Vec<u64> {
        self.lost_known
            .iter()
            .zip(self.lost_kernel.iter().chain(std::iter::repeat(&0)))
            .map(|(a, b)| *a.max(b))
            .collect()
    }

    pub fn lost_total(&self) -> u64 {
        self.lost_per_cpu().iter().sum()
    }
    pub fn lost_pages(&self) -> u64 {
        self.lost_unknown_pages.iter().sum()
    }
}

#[derive(Debug)]
struct CpuSpool {
    /// None once closed (the instance cannot be removed while a pipe is open).
    pipe: Option<File>,
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
}

/// A recording in progress. Dropping it without [`Recorder::finish`] removes the instance
/// and the spool files and writes no output.
#[derive(Debug)]
pub struct Recorder {
    instance: Option<Instance>,
    root: PathBuf,
    output: PathBuf,
    layout: PageLayout,
    header_page: String,
    header_event: String,
    formats: Vec<EventFormat>,
    cpus: Vec<CpuSpool>,
    page: Vec<u8>,
    progress: Progress,
    pids: BTreeMap<i32, Option<String>>,
    /// Thread → thread group (process), read from /proc when a thread is first seen, so a
    /// report can group vCPU threads by VM (`--pid`).
    tgids: BTreeMap<i32, i32>,
    /// Per event id: the offsets and sizes of the fields printed as kernel symbols.
    pointer_fields: Vec<Vec<(usize, usize)>>,
    /// Every value those fields held (the kallsyms lines to keep).
    pointers: BTreeSet<u64>,
    /// Notes for the user (skipped optional events).
    pub notes: Vec<String>,
    enabled: Vec<String>,
    options: RecordOptions,
}

fn spool_path(output: &Path, cpu: usize) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".kvmscope-cpu{cpu}.tmp"));
    output.with_file_name(name)
}

impl Recorder {
    /// Sets up the instance and starts recording into spool files next to `output`.
    pub fn start(
        tracefs_root: &Path,
        options: RecordOptions,
        output: &Path,
    ) -> Result<Recorder, CaptureError> {
        let instance = Instance::create(tracefs_root, "record")?;
        instance.set_tracing_on(false)?;
        // Have the kernel note each thread's process at event time (read back from
        // saved_tgids at the end): vCPU threads are often gone before we could ask /proc.
        let _ = std::fs::write(instance.path().join("options/record-tgid"), "1");
        if let Some(kb) = options.subbuf_kb {
            crate::tracefs::write_file(
                &instance.path().join("buffer_subbuf_size_kb"),
                &kb.to_string(),
            )?;
        }
        if let Some(kb) = options.buffer_kb {
            instance.set_buffer_size_kb(kb)?;
        }
        // The instance's own page layout: its sub-buffer size may differ from the top level's.
        let events_dir = instance.path().join("events");
        let hp = events_dir.join("header_page");
        let he = events_dir.join("header_event");
        let header_page = read_file(&hp)?;
        let header_event = read_file(&he)?;
        let layout = PageLayout::parse(&header_page, &hp.display().to_string())?;
        check_header_event(&header_event, &he.display().to_string())?;
        // Resolve selections to concrete events.
        let mut notes = Vec::new();
        let mut concrete: BTreeSet<(String, String)> = BTreeSet::new();
        for sel in &options.events {
            let sys_dir = instance.path().join("events").join(&sel.system);
            match &sel.event {
                Some(ev) => {
                    if sys_dir.join(ev).is_dir() {
                        concrete.insert((sel.system.clone(), ev.clone()));
                    } else if sel.optional {
                        notes.push(format!("{sel} is not available on this kernel; skipped"));
                    } else {
                        instance.event_dir(&sel.system, ev)?;
                    }
                }
                None => {
                    let entries = match std::fs::read_dir(&sys_dir) {
                        Ok(e) => e,
                        Err(_) if sel.optional => {
                            notes.push(format!("{sel} is not available on this kernel; skipped"));
                            continue;
                        }
                        Err(_) => {
                            return Err(CaptureError::NoSuchEvent {
                                system: sel.system.clone(),
                                event: "*".into(),
                                path: sys_dir,
                                available: tracefs_root.join("available_events"),
                            })
                        }
                    };
                    for e in entries.flatten() {
                        if e.path().join("format").is_file() {
                            concrete.insert((
                                sel.system.clone(),
                                e.file_name().to_string_lossy().into_owned(),
                            ));
                        }
                    }
                }
            }
        }
        if concrete.is_empty() {
            return Err(CaptureError::NoSuchEvent {
                system: options
                    .events
                    .first()
                    .map_or("?".into(), |s| s.system.clone()),
                event: "*".into(),
                path: instance.path().join("events"),
                available: tracefs_root.join("available_events"),
            });
        }
        let mut formats = Vec::new();
        for (sys, ev) in &concrete {
            let path = events_dir.join(sys).join(ev).join("format");
            let text = read_file(&path)?;
            formats.push(EventFormat::parse(sys, &text, &path.display().to_string())?);
        }
        // Several filters for one event are combined with &&.
        for (sys, ev) in &concrete {
            let parts: Vec<&str> = options
                .filters
                .iter()
                .filter(|(t, _)| t.as_ref().is_none_or(|(s, e)| s == sys && e == ev))
                .map(|(_, e)| e.as_str())
                .collect();
            match parts.as_slice() {
                [] => {}
                [one] => instance.set_filter(sys, ev, one)?,
                many => {
                    let joined: Vec<String> = many.iter().map(|e| format!("({e})")).collect();
                    instance.set_filter(sys, ev, &joined.join(" && "))?;
                }
            }
        }
        for (target, expr) in &options.filters {
            if let Some((sys, ev)) = target {
                if !concrete.contains(&(sys.clone(), ev.clone())) {
                    return Err(CaptureError::InvalidEventName(format!(
                        "{sys}:{ev} in --filter {expr:?} is not among the recorded events"
                    )));
                }
            }
        }
        for (sys, ev) in &concrete {
            instance.enable(sys, ev)?;
        }
        let ncpu = count_cpus(instance.path())?;
        let mut cpus = Vec::new();
        for cpu in 0..ncpu {
            let pipe_path = instance.trace_pipe_raw(cpu);
            let pipe = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&pipe_path)
                .map_err(|e| CaptureError::read(&pipe_path, e))?;
            let path = spool_path(output, cpu);
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(|source| CaptureError::Io {
                    context: "cannot create a spool file beside the output".into(),
                    path: path.clone(),
                    source,
                })?;
            // Unlinked at once: the data lives as long as the descriptor, so even a run
            // killed with SIGKILL leaves no spool file behind.
            let _ = std::fs::remove_file(&path);
            cpus.push(CpuSpool {
                pipe: Some(pipe),
                path,
                out: BufWriter::with_capacity(1 << 20, f),
                size: 0,
            });
        }
        // Wake readers only when a quarter of a CPU's buffer is full (see `wait`); kernels
        // before 5.x have no such file and wake on any data.
        let _ = crate::tracefs::write_file(&instance.path().join("buffer_percent"), "25");
        instance.set_tracing_on(true)?;
        let enabled = concrete.iter().map(|(s, e)| format!("{s}:{e}")).collect();
        let mut pointer_fields = Vec::new();
        for f in &formats {
            let fields: Vec<(usize, usize)> = f
                .symbol_pointers()
                .into_iter()
                .map(|i| (f.fields[i].offset, f.fields[i].size))
                .filter(|&(_, size)| size <= 8)
                .collect();
            if !fields.is_empty() {
                let id = f.id as usize;
                if pointer_fields.len() <= id {
                    pointer_fields.resize(id + 1, Vec::new());
                }
                pointer_fields[id] = fields;
            }
        }
        Ok(Recorder {
            instance: Some(instance),
            root: tracefs_root.to_path_buf(),
            output: output.to_path_buf(),
            layout,
            header_page,
            header_event,
            page: vec![0u8; layout.page_size()],
            progress: Progress {
                names: formats.iter().map(|f| (f.id, f.full_name())).collect(),
                lost_known: vec![0; ncpu],
                lost_unknown_pages: vec![0; ncpu],
                lost_kernel: vec![0; ncpu],
                ..Progress::default()
            },
            cpus,
            formats,
            pids: BTreeMap::new(),
            tgids: BTreeMap::new(),
            pointer_fields,
            pointers: BTreeSet::new(),
            notes,
            enabled,
            options,
        })
    }

    /// The instance being recorded.
    pub fn instance(&self) -> Option<&Instance> {
        self.instance.as_ref()
    }

    /// The formats of the enabled events.
    pub fn formats(&self) -> &[EventFormat] {
        &self.formats
    }

    /// The concrete events enabled, as `system:event`.
    pub fn enabled_events(&self) -> &[String] {
        &self.enabled
    }

    /// The counters so far.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Waits until a CPU's buffer reaches the wake-up mark (a quarter full) or `timeout`
    /// passes. Reading right away would take the kernel's partly filled pages and store
    /// them whole; waiting lets them fill. Returns true when data is ready.
    pub fn wait(&self, timeout: std::time::Duration) -> Result<bool, CaptureError> {
        use std::os::fd::AsRawFd;
        let mut fds: Vec<libc::pollfd> = self
            .cpus
            .iter()
            .filter_map(|c| c.pipe.as_ref())
            .map(|f| libc::pollfd {
                fd: f.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        if fds.is_empty() {
            return Ok(false);
        }
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `fds` is a live, initialised array of `fds.len()` pollfd structs for the
        // duration of the call, and each fd is owned by a File in `self.cpus` that outlives it.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(CaptureError::Io {
                context: "poll on trace_pipe_raw failed".into(),
                path: self
                    .instance
                    .as_ref()
                    .map_or_else(PathBuf::new, |i| i.path().to_path_buf()),
                source: e,
            });
        }
        Ok(rc > 0)
    }

    /// Reads the kernel's per-CPU counters of events the reader lost (overrun, dropped)
    /// into [`Progress::lost_kernel`].
    pub fn refresh_kernel_stats(&mut self) {
        let Some(inst) = self.instance.as_ref() else {
            return;
        };
        for cpu in 0..self.progress.lost_kernel.len() {
            if let Ok(text) = inst.cpu_stats(cpu) {
                let st = parse_stats(&text);
                let lost = st.get("overrun").copied().unwrap_or(0)
                    + st.get("dropped events").copied().unwrap_or(0);
                self.progress.lost_kernel[cpu] = lost;
            }
        }
    }

    /// Reads every full or partial page the kernel has ready, on every CPU. Returns the
    /// number of pages read.
    pub fn poll(&mut self) -> Result<u64, CaptureError> {
        self.poll_with(|_| {})
    }

    /// Like [`Recorder::poll`], and hands every record read to `sink` as well (for live
    /// views and analyses that run while recording). Records come per CPU, in time order
    /// within a CPU; look their format up by id in [`Recorder::formats`].
    pub fn poll_with(&mut self, mut sink: impl FnMut(&Record<'_>)) -> Result<u64, CaptureError> {
        let mut pages = 0;
        for cpu in 0..self.cpus.len() {
            // Bound the work per CPU per call so one busy CPU cannot starve the others.
            for _ in 0..256 {
                let spool = &mut self.cpus[cpu];
                let Some(pipe) = spool.pipe.as_mut() else {
                    break;
                };
                let n = match pipe.read(&mut self.page) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(CaptureError::read(
                            self.instance
                                .as_ref()
                                .map_or_else(PathBuf::new, |i| i.trace_pipe_raw(cpu)),
                            e,
                        ))
                    }
                };
                // Keep pages whole in the file, as trace-cmd does.
                self.page[n..].fill(0);
                spool
                    .out
                    .write_all(&self.page)
                    .map_err(|source| CaptureError::Io {
                        context: "cannot write the spool file".into(),
                        path: spool.path.clone(),
                        source,
                    })?;
                spool.size += self.page.len() as u64;
                pages += 1;
                let filled = self.account(cpu, &mut sink)?;
                // A partly filled page is the one the kernel is still writing: reading on
                // would return a page per handful of new events. Come back later.
                if filled < self.layout.data_size / 2 {
                    break;
                }
            }
        }
        Ok(pages)
    }

    /// Counts the page just read; returns how many data bytes it held.
    fn account(
        &mut self,
        cpu: usize,
        sink: &mut impl FnMut(&Record<'_>),
    ) -> Result<usize, CaptureError> {
        let p = &mut self.progress;
        p.pages += 1;
        p.bytes += self.page.len() as u64;
        let page = Page::parse(&self.layout, &self.page, cpu as u32, 0)?;
        let filled = page.data.len();
        match page.missed {
            Missed::None => {}
            Missed::Unknown => p.lost_unknown_pages[cpu] += 1,
            Missed::Count(n) => p.lost_known[cpu] += n,
        }
        for rec in page.records() {
            let Ok(rec) = rec else { break };
            sink(&rec);
            if let Some(fields) = self.pointer_fields.get(rec.id as usize) {
                for &(off, size) in fields {
                    if let Some(b) = rec.data.get(off..off + size) {
                        let mut v = [0u8; 8];
                        v[..size.min(8)].copy_from_slice(&b[..size.min(8)]);
                        let v = u64::from_le_bytes(v);
                        if v != 0 {
                            self.pointers.insert(v);
                        }
                    }
                }
            }
            p.events += 1;
            *p.by_id.entry(rec.id).or_insert(0) += 1;
            if let std::collections::btree_map::Entry::Vacant(v) = self.pids.entry(rec.common_pid) {
                // Read the name now: the thread may be gone by the end.
                v.insert(comm_of(rec.common_pid));
                if let Some(tgid) = tgid_of(rec.common_pid) {
                    self.tgids.insert(rec.common_pid, tgid);
                }
            }
        }
        Ok(filled)
    }

    /// Stops recording, drains the buffers, writes the trace.dat file with `sidecar` (a
    /// JSON object, e.g. the system snapshot; kvmscope adds its own fields) and removes the
    /// instance. Returns the final counters.
    pub fn finish(mut self, sidecar: Option<serde_json::Value>) -> Result<Progress, CaptureError> {
        if let Some(inst) = self.instance.as_ref() {
            inst.set_tracing_on(false)?;
        }
        while self.poll()? > 0 {}
        for spool in &mut self.cpus {
            spool.pipe = None;
        }
        self.refresh_kernel_stats();
        let instance = self.instance.take().expect("instance present until finish");
        let ncpu = self.cpus.len();
        let mut cpustats = Vec::new();
        for cpu in 0..ncpu {
            let s = instance.cpu_stats(cpu).unwrap_or_default();
            cpustats.push(s);
        }
        let clock = read_file(&instance.path().join("trace_clock")).unwrap_or_default();
        instance.remove()?;

        let meta = self.metadata(&cpustats, clock.clone(), sidecar)?;
        let mut inputs = Vec::new();
        for spool in std::mem::take(&mut self.cpus) {
            let size = spool.size;
            let path = spool.path.clone();
            let mut f = spool.out.into_inner().map_err(|e| CaptureError::Io {
                context: "cannot flush the spool file".into(),
                path: path.clone(),
                source: e.into_error(),
            })?;
            f.rewind().map_err(|e| CaptureError::read(&path, e))?;
            inputs.push((path, CpuPages { reader: f, size }));
        }
        let out_path = self.output.clone();
        let tmp = out_path.with_extension("dat.kvmscope-tmp");
        let result = (|| {
            let f = File::create(&tmp)?;
            let mut w = BufWriter::with_capacity(1 << 20, f);
            let cpus: Vec<_> = inputs
                .iter_mut()
                .map(|(_, c)| CpuPages {
                    reader: &mut c.reader,
                    size: c.size,
                })
                .collect();
            let mut buffers = [BufferPages {
                name: String::new(),
                clock: current_clock(&clock),
                cpus,
            }];
            tracedat::write(&mut w, &meta, &mut buffers, self.options.version)?;
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, &out_path)
        })();
        if let Err(source) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(CaptureError::Io {
                context: "cannot write the trace.dat file".into(),
                path: out_path,
                source,
            });
        }
        Ok(std::mem::take(&mut self.progress))
    }

    fn metadata(
        &self,
        cpustats: &[String],
        clock: String,
        sidecar: Option<serde_json::Value>,
    ) -> Result<Metadata, CaptureError> {
        let mut systems: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in &self.formats {
            systems
                .entry(f.system.clone())
                .or_default()
                .push(f.text.clone());
        }
        let root = &self.root;
        let mut ftrace_formats = Vec::new();
        if let Ok(entries) = std::fs::read_dir(root.join("events/ftrace")) {
            let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            names.sort();
            for p in names {
                if let Ok(t) = read_file(&p.join("format")) {
                    ftrace_formats.push(t);
                }
            }
        }
        // pid → comm: what we saw live, then the kernel's saved_cmdlines for the rest.
        let saved = read_file(&root.join("saved_cmdlines")).unwrap_or_default();
        let saved: BTreeMap<i32, &str> = saved
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter_map(|(p, c)| Some((p.parse().ok()?, c)))
            .collect();
        let saved_tgids = read_file(&root.join("saved_tgids")).unwrap_or_default();
        let mut tgids = self.tgids.clone();
        for line in saved_tgids.lines() {
            if let Some((t, g)) = line.split_once(' ') {
                if let (Ok(t), Ok(g)) = (t.parse::<i32>(), g.trim().parse::<i32>()) {
                    if g > 0 && self.pids.contains_key(&t) {
                        tgids.entry(t).or_insert(g);
                    }
                }
            }
        }
        let mut cmdlines = String::new();
        for (pid, comm) in &self.pids {
            let name = comm.as_deref().or_else(|| saved.get(pid).copied());
            if let Some(name) = name {
                cmdlines.push_str(&format!("{pid} {name}\n"));
            } else if *pid == 0 {
                cmdlines.push_str("0 <idle>\n");
            }
        }
        let mut options = Vec::new();
        let mut cstr = |id: u16, s: &str| {
            let mut d = s.as_bytes().to_vec();
            d.push(0);
            options.push((id, d));
        };
        if !clock.is_empty() {
            cstr(option::TRACECLOCK, &clock);
        }
        cstr(option::UNAME, &uname());
        cstr(
            option::VERSION,
            concat!("kvmscope ", env!("CARGO_PKG_VERSION")),
        );
        for (cpu, s) in cpustats.iter().enumerate() {
            cstr(option::CPUSTAT, &format!("CPU: {cpu}\n{s}"));
        }
        options.push((
            option::CPUCOUNT,
            (cpustats.len() as u32).to_le_bytes().to_vec(),
        ));
        let lost: Vec<serde_json::Value> = (0..self.progress.lost_known.len())
            .map(|cpu| {
                let stats = parse_stats(cpustats.get(cpu).map_or("", String::as_str));
                serde_json::json!({
                    "cpu": cpu,
                    "lost": self.progress.lost_per_cpu()[cpu],
                    "lost_in_pages": self.progress.lost_known[cpu],
                    "pages_with_unknown_loss": self.progress.lost_unknown_pages[cpu],
                    "overrun": stats.get("overrun"),
                    "dropped_events": stats.get("dropped events"),
                })
            })
            .collect();
        let mut doc = serde_json::json!({
            "format": "kvmscope-sidecar",
            "format_version": 1,
            "tool": concat!("kvmscope ", env!("CARGO_PKG_VERSION")),
            "events": self.enabled,
            "filters": self.options.filters.iter().map(|(t, e)| serde_json::json!({
                "event": t.as_ref().map(|(s, ev)| format!("{s}:{ev}")),
                "filter": e,
            })).collect::<Vec<_>>(),
            "buffer_kb": self.options.buffer_kb,
            "lost_events": lost,
            "events_recorded": self.progress.events,
            "tgids": tgids.iter().map(|(t, g)| [*t, *g]).collect::<Vec<_>>(),
        });
        if let (Some(serde_json::Value::Object(extra)), Some(obj)) = (sidecar, doc.as_object_mut())
        {
            for (k, v) in extra {
                obj.insert(k, v);
            }
        }
        let mut json = serde_json::to_vec(&doc).unwrap_or_default();
        json.push(0);
        options.push((tracedat::OPTION_KVMSCOPE, json));
        // Read at the end: modules loaded while recording are in it.
        let all = std::fs::read("/proc/kallsyms").unwrap_or_default();
        let kallsyms = match self.options.kallsyms {
            KallsymsMode::All => all,
            KallsymsMode::Referenced => {
                kvmscope_tracedat::symbols::kallsyms_subset(&all, &self.pointers)
            }
        };
        // The strings `%s` pointer fields and trace_printk point to (global, not per instance).
        let printk = std::fs::read(root.join("printk_formats")).unwrap_or_default();
        Ok(Metadata {
            // trace-cmd reads v6 CPU data in units of this size: it must be the ring
            // buffer's page (sub-buffer) size, which is the host page size by default.
            page_size: self.layout.page_size() as u32,
            header_page: self.header_page.clone(),
            header_event: self.header_event.clone(),
            ftrace_formats,
            systems: systems.into_iter().collect(),
            kallsyms,
            printk,
            cmdlines,
            options,
        })
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // Close the pipes first: the instance cannot be removed while one is open.
        self.cpus.clear();
        drop(self.instance.take());
    }
}

/// Events recorded per `system:event` (ids without a known name as `id N`).
pub fn event_names(p: &Progress) -> BTreeMap<String, u64> {
    p.by_id
        .iter()
        .map(|(id, n)| {
            let name = p
                .names
                .get(id)
                .cloned()
                .unwrap_or_else(|| format!("id {id}"));
            (name, *n)
        })
        .collect()
}

/// A snapshot of the system (kernel, command line, KVM parameters, CPU, isolation,
/// interrupts, timers) from `kvmscope-system`.
pub fn collect_system() -> kvmscope_system::SystemSnapshot {
    kvmscope_system::collect()
}

/// The sidecar fields for a capture: the whole snapshot taken at the start as `system`,
/// and the counters that change during it (`/proc/interrupts`, `/proc/softirqs`) again
/// at the end as `interrupts_end` / `softirqs_end`.
pub fn system_sidecar(
    start: &kvmscope_system::SystemSnapshot,
    end: &kvmscope_system::SystemSnapshot,
) -> serde_json::Value {
    serde_json::json!({
        "system": start,
        "interrupts_end": end.interrupts,
        "softirqs_end": end.softirqs,
        "vms": running_vms(Path::new("/proc")),
    })
}

/// A process that holds a KVM VM file descriptor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunningVm {
    pub pid: i32,
    pub comm: String,
    /// The guest name from a QEMU-style `-name NAME` or `-name guest=NAME,...` argument.
    pub name: Option<String>,
    /// vCPU file descriptors held (`anon_inode:kvm-vcpu:N`).
    pub vcpus: usize,
}

/// The processes under `proc_root` (normally /proc) that hold a VM (`anon_inode:kvm-vm`),
/// sorted by pid. Processes that cannot be inspected are skipped.
pub fn running_vms(proc_root: &Path) -> Vec<RunningVm> {
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut vms = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(e.path().join("fd")) else {
            continue;
        };
        let (mut vm, mut vcpus) = (false, 0);
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let t = target.to_string_lossy();
                if t == "anon_inode:kvm-vm" {
                    vm = true;
                } else if t.starts_with("anon_inode:kvm-vcpu:") {
                    vcpus += 1;
                }
            }
        }
        if !vm {
            continue;
        }
        let comm = std::fs::read_to_string(e.path().join("comm"))
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default();
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        vms.push(RunningVm {
            pid,
            comm,
            name: guest_name(&cmdline),
            vcpus,
        });
    }
    vms.sort_by_key(|v| v.pid);
    vms
}

/// The guest name in a NUL-separated command line: QEMU's `-name NAME` /
/// `-name guest=NAME,debug-threads=on`.
pub fn guest_name(cmdline: &[u8]) -> Option<String> {
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let i = args
        .iter()
        .position(|a| *a == b"-name" || *a == b"--name")?;
    let v = String::from_utf8_lossy(args.get(i + 1)?).into_owned();
    let first = v.split(',').next().unwrap_or("");
    let name = first.strip_prefix("guest=").unwrap_or(first);
    (!name.is_empty()).then(|| name.to_string())
}

/// The clock in use from a `trace_clock` file (`[local] global ...` → `local`).
fn current_clock(trace_clock: &str) -> String {
    trace_clock
        .split_once('[')
        .and_then(|(_, r)| r.split_once(']'))
        .map_or_else(|| "local".to_string(), |(c, _)| c.to_string())
}

fn count_cpus(instance: &Path) -> Result<usize, CaptureError> {
    let dir = instance.join("per_cpu");
    let n = std::fs::read_dir(&dir)
        .map_err(|e| CaptureError::read(&dir, e))?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("cpu")?
                .parse::<usize>()
                .ok()
        })
        .map(|c| c + 1)
        .max()
        .unwrap_or(0);
    Ok(n)
}

fn tgid_of(tid: i32) -> Option<i32> {
    if tid <= 0 {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

fn comm_of(pid: i32) -> Option<String> {
    if pid == 0 {
        return Some("<idle>".into());
    }
    // common_pid is a thread id: /proc/<tid>/comm works for threads too.
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

fn uname() -> String {
    let r = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    format!(
        "Linux {} {} {}",
        r("/proc/sys/kernel/hostname"),
        r("/proc/sys/kernel/osrelease"),
        std::env::consts::ARCH
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_guest_names() {
        assert_eq!(
            guest_name(b"qemu-system-x86_64\0-name\0guest=web1,debug-threads=on\0-m\0\x31024\0")
                .as_deref(),
            Some("web1")
        );
        assert_eq!(guest_name(b"qemu\0-name\0db\0").as_deref(), Some("db"));
        assert_eq!(guest_name(b"qemu\0-name\0").as_deref(), None);
        assert_eq!(guest_name(b"firecracker\0--id\0x\0"), None);
    }

    #[test]
    fn presets_and_lists() {
        let e = parse_events("kvm").unwrap();
        assert_eq!(e, vec![EventSel::req("kvm", None)]);
        let e = parse_events("kvm:kvm_pio, msr:write_msr,kvm:kvm_pio").unwrap();
        assert_eq!(e.len(), 2);
        let e = parse_events("timers,msr:write_msr").unwrap();
        assert!(e.iter().any(|s| s.system == "msr" && !s.optional));
        assert!(parse_events("kvm:../x").is_err());
        assert!(parse_events("nope:").is_err());
        for (p, _) in PRESETS {
            assert!(!parse_events(p).unwrap().is_empty());
        }
    }
}

#[cfg(test)]
mod live {
    #[test]
    fn live_header_page_parses() {
        let Some(root) = crate::host::require_tracefs() else {
            return;
        };
        let t = crate::tracefs::read_file(&root.join("events/header_page")).unwrap();
        kvmscope_tracedat::format::PageLayout::parse(&t, "live").unwrap();
        let t = crate::tracefs::read_file(&root.join("events/header_event")).unwrap();
        kvmscope_tracedat::format::check_header_event(&t, "live").unwrap();
    }
}
