//! The track model both formats share, fed one event at a time:
//!
//! * a process track per VM (thread group; a thread whose process is unknown is its own) and
//!   a thread track per vCPU thread (any thread with KVM events);
//! * on a thread track, one slice per exit, from `kvm_exit` to the next `kvm_entry` (a second
//!   exit before an entry ends the first, as the exit table pairs them; an exit still open at
//!   the end of the input ends at the thread's last event), named by the exit reason, with
//!   `rip`, `info1`, `info2` (VMX/SVM) or `esr_ec` (arm64) as arguments;
//! * inside an exit, nested slices for the exit's trip to the VMM (`kvm_userspace_exit` ->
//!   entry) and for MMIO, port I/O and MSR handling (`kvm_mmio`/`kvm_pio`/`kvm_msr` -> entry);
//!   outside an exit (hosts whose KVM prints no kvm_exit, such as PVM) those are instants;
//! * instants for injected interrupts, IPIs, APIC interrupt acceptance, wake-ups and every
//!   other KVM event;
//! * a track per physical CPU with the same exit slices (named by reason, argument `tid`),
//!   from the exit to its entry wherever that ran, so migrations and CPU sharing show;
//! * counter tracks: exits per second per reason (in fixed windows) and each vCPU's
//!   `halt_poll_ns`.
//!
//! Memory is flat: state per thread (the open slices), per exit reason and per interned
//! name; nothing per event.

use std::collections::HashMap;
use std::io;

use kvmscope_analysis::keys::{IdMap, ReasonKey};
use kvmscope_trace::{tables, Event, EventKind, ExitReason, MmioKind};

/// A track's id in the output.
pub type Uuid = u64;

/// A track and the process/thread it belongs to (Chrome JSON needs pid/tid on each event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Track {
    pub uuid: Uuid,
    pub pid: u32,
    pub tid: u32,
}

/// An argument of a slice or instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arg<'a> {
    U(&'static str, u64),
    S(&'static str, &'a str),
}

/// An output format.
pub trait Sink {
    fn process(&mut self, track: Track, name: &str) -> io::Result<()>;
    fn thread(&mut self, track: Track, parent: Uuid, name: &str) -> io::Result<()>;
    /// A track of one physical CPU.
    fn cpu(&mut self, track: Track, cpu: u32) -> io::Result<()>;
    /// A counter track; `parent` is a thread track or none (global).
    fn counter_track(
        &mut self,
        track: Track,
        parent: Option<Uuid>,
        name: &str,
        unit: &str,
    ) -> io::Result<()>;
    fn begin(&mut self, ts: u64, track: Track, name: &str, args: &[Arg<'_>]) -> io::Result<()>;
    fn end(&mut self, ts: u64, track: Track) -> io::Result<()>;
    fn instant(&mut self, ts: u64, track: Track, name: &str, args: &[Arg<'_>]) -> io::Result<()>;
    fn counter(&mut self, ts: u64, track: Track, name: &str, value: f64) -> io::Result<()>;
    fn finish(&mut self) -> io::Result<()>;
}

/// What was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Events read.
    pub events: u64,
    /// Events not exported (not `kvm`/`kvmmmu`).
    pub skipped: u64,
    /// Exit slices.
    pub exits: u64,
    /// Nested slices (userspace, MMIO, PIO, MSR).
    pub nested: u64,
    pub instants: u64,
    pub counter_values: u64,
    /// Events whose time was earlier than the previous one of their thread (placed at that
    /// one's time, so every track's timestamps stay monotonic).
    pub clamped: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Exit,
    Nested,
}

#[derive(Debug)]
struct Thread {
    track: Track,
    stack: Vec<Open>,
    last_ts: u64,
    halt_poll: Option<Track>,
    /// The CPU whose track shows this thread's open exit.
    exit_cpu: Option<u32>,
}

#[derive(Debug)]
struct Cpu {
    track: Track,
    /// The thread whose exit is open on this CPU's track.
    open: Option<u32>,
    last_ts: u64,
}

#[derive(Debug)]
struct Rate {
    track: Track,
    /// The exit reason's name.
    reason: Box<str>,
    /// The counter's name.
    name: String,
    count: u64,
    shown: bool,
}

/// The pseudo process that holds global counters in Chrome JSON.
pub const COUNTER_PID: u32 = 0;
/// The pseudo process that holds the per-CPU tracks in Chrome JSON (thread id = CPU).
pub const CPU_PID: u32 = 0x7fff_fff0;

/// Turns events into tracks, slices, instants and counters for a [`Sink`].
#[derive(Debug)]
pub struct Exporter<S: Sink> {
    sink: S,
    threads: IdMap<u32, Thread>,
    cpus: IdMap<u32, Cpu>,
    processes: IdMap<u32, Uuid>,
    next_uuid: Uuid,
    window_ns: u64,
    window: Option<u64>,
    rates: HashMap<ReasonKey, Rate, foldhash::fast::FixedState>,
    scratch: String,
    stats: ExportStats,
}

impl<S: Sink> Exporter<S> {
    /// `window_ns`: width of the exits-per-second counter windows.
    pub fn new(sink: S, window_ns: u64) -> Self {
        Self {
            sink,
            threads: IdMap::default(),
            cpus: IdMap::default(),
            processes: IdMap::default(),
            next_uuid: 1,
            window_ns: window_ns.max(1),
            window: None,
            rates: HashMap::default(),
            scratch: String::new(),
            stats: ExportStats::default(),
        }
    }

    fn uuid(&mut self) -> Uuid {
        let u = self.next_uuid;
        self.next_uuid += 1;
        u
    }

    fn thread(&mut self, ev: &Event<'_>) -> io::Result<()> {
        if self.threads.contains_key(&ev.tid) {
            return Ok(());
        }
        let pid = ev.tgid.unwrap_or(ev.tid);
        let puuid = match self.processes.get(&pid) {
            Some(&u) => u,
            None => {
                let u = self.uuid();
                self.processes.insert(pid, u);
                let name = if ev.tgid.is_some() {
                    format!("VM {pid}")
                } else {
                    format!("{} ({})", ev.comm, ev.tid)
                };
                self.sink.process(
                    Track {
                        uuid: u,
                        pid,
                        tid: pid,
                    },
                    &name,
                )?;
                u
            }
        };
        let track = Track {
            uuid: self.uuid(),
            pid,
            tid: ev.tid,
        };
        let name = if ev.comm.is_empty() || ev.comm == "<...>" {
            format!("tid {}", ev.tid)
        } else {
            ev.comm.to_string()
        };
        self.sink.thread(track, puuid, &name)?;
        self.threads.insert(
            ev.tid,
            Thread {
                track,
                stack: Vec::new(),
                last_ts: 0,
                halt_poll: None,
                exit_cpu: None,
            },
        );
        Ok(())
    }

    /// Emits the exits-per-second counters of windows that ended before `ts`.
    fn tick(&mut self, ts: u64) -> io::Result<()> {
        let w = self.window_ns;
        let start = match self.window {
            None => {
                self.window = Some(ts - ts % w);
                return Ok(());
            }
            Some(s) => s,
        };
        if ts < start + w {
            return Ok(());
        }
        let next = ts - ts % w;
        self.flush(start, next)
    }

    fn flush(&mut self, start: u64, next: u64) -> io::Result<()> {
        let w = self.window_ns;
        let per_s = 1e9 / w as f64;
        let mut rates: Vec<&mut Rate> = self.rates.values_mut().collect();
        rates.sort_by_key(|r| r.track.uuid);
        for r in rates {
            if r.count > 0 {
                self.sink
                    .counter(start, r.track, &r.name, r.count as f64 * per_s)?;
                self.stats.counter_values += 1;
                r.shown = true;
                if next > start + w {
                    self.sink.counter(start + w, r.track, &r.name, 0.0)?;
                    self.stats.counter_values += 1;
                    r.shown = false;
                }
            } else if r.shown {
                self.sink.counter(start, r.track, &r.name, 0.0)?;
                self.stats.counter_values += 1;
                r.shown = false;
            }
            r.count = 0;
        }
        self.window = Some(next);
        Ok(())
    }

    fn close_all(&mut self, tid: u32, ts: u64) -> io::Result<()> {
        let Some(t) = self.threads.get_mut(&tid) else {
            return Ok(());
        };
        while t.stack.pop().is_some() {
            self.sink.end(ts, t.track)?;
        }
        if let Some(c) = t.exit_cpu.take() {
            if let Some(cpu) = self.cpus.get_mut(&c) {
                if cpu.open == Some(tid) {
                    cpu.last_ts = cpu.last_ts.max(ts);
                    self.sink.end(cpu.last_ts, cpu.track)?;
                    cpu.open = None;
                }
            }
        }
        Ok(())
    }

    /// Starts the exit's slice on its CPU's track (ending another thread's still open there).
    fn cpu_exit(&mut self, cpu: u32, tid: u32, ts: u64, name: &str) -> io::Result<()> {
        if !self.cpus.contains_key(&cpu) {
            let track = Track {
                uuid: self.uuid(),
                pid: CPU_PID,
                tid: cpu,
            };
            self.sink.cpu(track, cpu)?;
            self.cpus.insert(
                cpu,
                Cpu {
                    track,
                    open: None,
                    last_ts: 0,
                },
            );
        }
        let c = self.cpus.get_mut(&cpu).expect("cpu just added");
        c.last_ts = c.last_ts.max(ts);
        if let Some(other) = c.open.take() {
            self.sink.end(c.last_ts, c.track)?;
            if let Some(t) = self.threads.get_mut(&other) {
                t.exit_cpu = None;
            }
        }
        self.sink
            .begin(c.last_ts, c.track, name, &[Arg::U("tid", u64::from(tid))])?;
        c.open = Some(tid);
        if let Some(t) = self.threads.get_mut(&tid) {
            t.exit_cpu = Some(cpu);
        }
        Ok(())
    }

    fn in_exit(&self, tid: u32) -> bool {
        self.threads
            .get(&tid)
            .is_some_and(|t| t.stack.first() == Some(&Open::Exit))
    }

    /// A nested slice inside an open exit, or an instant outside one.
    fn nested(&mut self, ts: u64, tid: u32, name: &str, args: &[Arg<'_>]) -> io::Result<()> {
        let inside = self.in_exit(tid);
        let Some(t) = self.threads.get_mut(&tid) else {
            return Ok(());
        };
        if inside {
            self.sink.begin(ts, t.track, name, args)?;
            t.stack.push(Open::Nested);
            self.stats.nested += 1;
        } else {
            self.sink.instant(ts, t.track, name, args)?;
            self.stats.instants += 1;
        }
        Ok(())
    }

    fn instant(&mut self, ts: u64, tid: u32, name: &str, args: &[Arg<'_>]) -> io::Result<()> {
        if let Some(t) = self.threads.get(&tid) {
            self.sink.instant(ts, t.track, name, args)?;
            self.stats.instants += 1;
        }
        Ok(())
    }

    pub fn observe(&mut self, ev: &Event<'_>) -> io::Result<()> {
        self.stats.events += 1;
        if ev.system != "kvm" && ev.system != "kvmmmu" {
            self.stats.skipped += 1;
            return Ok(());
        }
        self.thread(ev)?;
        let tid = ev.tid;
        let ts = {
            let t = self.threads.get_mut(&tid).expect("thread just added");
            if ev.ts_ns < t.last_ts {
                self.stats.clamped += 1;
            }
            t.last_ts = t.last_ts.max(ev.ts_ns);
            t.last_ts
        };
        self.tick(ts)?;
        match &ev.kind {
            EventKind::KvmExit(e) => {
                self.close_all(tid, ts)?;
                let key = ReasonKey::from_reason(&e.reason);
                if !self.rates.contains_key(&key) {
                    let track = Track {
                        uuid: self.uuid(),
                        pid: COUNTER_PID,
                        tid: 0,
                    };
                    let reason: Box<str> = key.name().into();
                    let name = format!("exits/s {reason}");
                    self.sink.counter_track(track, None, &name, "exits/s")?;
                    self.rates.insert(
                        key.clone(),
                        Rate {
                            track,
                            reason,
                            name,
                            count: 0,
                            shown: false,
                        },
                    );
                }
                let rate = self.rates.get_mut(&key).expect("rate just added");
                rate.count += 1;
                self.scratch.clear();
                self.scratch.push_str(&rate.reason);
                let mut args: [Arg<'_>; 4] = [Arg::U("", 0); 4];
                let mut n = 0;
                let mut push = |a: Arg<'static>| {
                    if n < args.len() {
                        args[n] = a;
                        n += 1;
                    }
                };
                if let Some(v) = e.vcpu {
                    push(Arg::U("vcpu", u64::from(v)));
                }
                if let Some(r) = e.rip {
                    push(Arg::U("rip", r));
                }
                if let ExitReason::Arm64 { ec, .. } = e.reason {
                    push(Arg::U("esr_ec", u64::from(ec)));
                } else {
                    if let Some(i) = e.info1 {
                        push(Arg::U("info1", i));
                    }
                    if let Some(i) = e.info2 {
                        push(Arg::U("info2", i));
                    }
                }
                let t = self.threads.get_mut(&tid).expect("thread exists");
                self.sink.begin(ts, t.track, &self.scratch, &args[..n])?;
                t.stack.push(Open::Exit);
                self.stats.exits += 1;
                let name = std::mem::take(&mut self.scratch);
                self.cpu_exit(ev.cpu, tid, ts, &name)?;
                self.scratch = name;
            }
            EventKind::KvmEntry { .. } => self.close_all(tid, ts)?,
            EventKind::UserspaceExit { reason, .. } => {
                self.scratch.clear();
                self.scratch.push_str("userspace ");
                match tables::userspace_exit_name(*reason) {
                    Some(n) => self.scratch.push_str(n),
                    None => self.scratch.push_str(&reason.to_string()),
                }
                let name = std::mem::take(&mut self.scratch);
                self.nested(ts, tid, &name, &[Arg::U("reason", u64::from(*reason))])?;
                self.scratch = name;
            }
            EventKind::Pio {
                write, port, size, ..
            } => {
                let name = if *write { "PIO write" } else { "PIO read" };
                self.nested(
                    ts,
                    tid,
                    name,
                    &[
                        Arg::U("port", u64::from(*port)),
                        Arg::U("size", u64::from(*size)),
                    ],
                )?;
            }
            EventKind::Mmio { kind, gpa, len, .. } => {
                let name = match kind {
                    MmioKind::Write => "MMIO write",
                    MmioKind::Read => "MMIO read",
                    MmioKind::UnsatisfiedRead => "MMIO unsatisfied read",
                };
                self.nested(
                    ts,
                    tid,
                    name,
                    &[Arg::U("gpa", *gpa), Arg::U("len", u64::from(*len))],
                )?;
            }
            EventKind::Msr {
                write, msr, data, ..
            } => {
                let name = if *write { "MSR write" } else { "MSR read" };
                let msr_name = tables::msr_name(*msr).unwrap_or("");
                self.nested(
                    ts,
                    tid,
                    name,
                    &[
                        Arg::U("msr", u64::from(*msr)),
                        Arg::S("name", msr_name),
                        Arg::U("data", *data),
                    ],
                )?;
            }
            EventKind::InjVirq { irq, .. } => {
                self.instant(ts, tid, "inject IRQ", &[Arg::U("vector", u64::from(*irq))])?
            }
            EventKind::ApicIpi { dst, vec } => self.instant(
                ts,
                tid,
                "IPI",
                &[
                    Arg::U("dst", u64::from(*dst)),
                    Arg::U("vector", u64::from(*vec)),
                ],
            )?,
            EventKind::ApicAcceptIrq { apicid, vec, .. } => self.instant(
                ts,
                tid,
                "APIC accept IRQ",
                &[
                    Arg::U("apicid", u64::from(*apicid)),
                    Arg::U("vector", u64::from(*vec)),
                ],
            )?,
            EventKind::VcpuWakeup { ns, waited, .. } => self.instant(
                ts,
                tid,
                if *waited {
                    "wakeup (slept)"
                } else {
                    "wakeup (polled)"
                },
                &[Arg::U("ns", *ns)],
            )?,
            EventKind::HaltPollNs { new, .. } => {
                let t = self.threads.get(&tid).expect("thread exists");
                let (ttrack, pid) = (t.track, t.track.pid);
                let counter = match t.halt_poll {
                    Some(c) => c,
                    None => {
                        let c = Track {
                            uuid: self.uuid(),
                            pid,
                            tid,
                        };
                        self.sink.counter_track(
                            c,
                            Some(ttrack.uuid),
                            &format!("halt_poll_ns {tid}"),
                            "ns",
                        )?;
                        if let Some(t) = self.threads.get_mut(&tid) {
                            t.halt_poll = Some(c);
                        }
                        c
                    }
                };
                self.sink
                    .counter(ts, counter, &format!("halt_poll_ns {tid}"), *new as f64)?;
                self.stats.counter_values += 1;
            }
            _ => self.instant(ts, tid, ev.name, &[])?,
        }
        Ok(())
    }

    /// Ends open slices at their thread's last event, writes the last counters, finishes
    /// the output.
    pub fn finish(mut self) -> io::Result<(S, ExportStats)> {
        let mut tids: Vec<(u32, u64)> = self
            .threads
            .iter()
            .map(|(&tid, t)| (tid, t.last_ts))
            .collect();
        tids.sort_unstable();
        for (tid, ts) in tids {
            self.close_all(tid, ts)?;
        }
        if let Some(start) = self.window {
            self.flush(start, start + 2 * self.window_ns)?;
        }
        self.sink.finish()?;
        Ok((self.sink, self.stats))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvmscope_trace::text::decode_sequential;

    /// Records what the exporter asked for, as text.
    #[derive(Debug, Default)]
    struct Rec(Vec<String>);

    impl Sink for Rec {
        fn process(&mut self, t: Track, name: &str) -> io::Result<()> {
            self.0.push(format!("process {} {name}", t.pid));
            Ok(())
        }
        fn thread(&mut self, t: Track, _: Uuid, name: &str) -> io::Result<()> {
            self.0.push(format!("thread {} {name}", t.tid));
            Ok(())
        }
        fn cpu(&mut self, _: Track, cpu: u32) -> io::Result<()> {
            self.0.push(format!("cpu {cpu}"));
            Ok(())
        }
        fn counter_track(
            &mut self,
            _: Track,
            _: Option<Uuid>,
            name: &str,
            _: &str,
        ) -> io::Result<()> {
            self.0.push(format!("counter {name}"));
            Ok(())
        }
        fn begin(&mut self, ts: u64, t: Track, name: &str, args: &[Arg<'_>]) -> io::Result<()> {
            let cpu = if t.pid == CPU_PID { "cpu " } else { "" };
            self.0
                .push(format!("{cpu}B {ts} {} {name} {}", t.tid, args.len()));
            Ok(())
        }
        fn end(&mut self, ts: u64, t: Track) -> io::Result<()> {
            let cpu = if t.pid == CPU_PID { "cpu " } else { "" };
            self.0.push(format!("{cpu}E {ts} {}", t.tid));
            Ok(())
        }
        fn instant(&mut self, ts: u64, t: Track, name: &str, _: &[Arg<'_>]) -> io::Result<()> {
            self.0.push(format!("I {ts} {} {name}", t.tid));
            Ok(())
        }
        fn counter(&mut self, ts: u64, _: Track, name: &str, v: f64) -> io::Result<()> {
            self.0.push(format!("C {ts} {name} {v}"));
            Ok(())
        }
        fn finish(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    const PIO_EXIT: &str = "kvm_exit: vcpu 0 reason IO_INSTRUCTION rip 0x1 info1 0x3f80008 info2 0x0 intr_info 0x0 error_code 0x0";
    const HLT: &str =
        "kvm_exit: vcpu 0 reason HLT rip 0x1 info1 0x0 info2 0x0 intr_info 0x0 error_code 0x0";

    #[test]
    fn exits_nest_userspace_and_pio_and_restart_and_end() {
        let text = format!(
            "a-1 [000] .... 1.000000: {PIO_EXIT}\n\
             a-1 [000] .... 1.000001: kvm_pio: pio_write at 0x3f8 size 1 count 1 val 0x41\n\
             a-1 [000] .... 1.000002: kvm_userspace_exit: reason KVM_EXIT_IO (2)\n\
             a-1 [000] .... 1.000009: kvm_entry: vcpu 0, rip 0x2\n\
             a-1 [000] .... 1.000010: {HLT}\n\
             a-1 [000] .... 1.000020: {HLT}\n\
             a-1 [000] .... 1.000030: kvm_inj_virq: IRQ 0xec\n"
        );
        let mut ex = Exporter::new(Rec::default(), 1_000_000_000);
        decode_sequential(text.as_bytes(), |ev| ex.observe(ev).unwrap()).unwrap();
        let (rec, stats) = ex.finish().unwrap();
        let ev: Vec<&str> = rec
            .0
            .iter()
            .map(String::as_str)
            .filter(|l| !l.starts_with("C ") && !l.starts_with("counter") && !l.starts_with("cpu"))
            .collect();
        assert_eq!(
            ev,
            [
                "process 1 a (1)",
                "thread 1 a",
                "B 1000000000 1 IO_INSTRUCTION 4",
                "B 1000001000 1 PIO write 2",
                "B 1000002000 1 userspace KVM_EXIT_IO 1",
                "E 1000009000 1",
                "E 1000009000 1",
                "E 1000009000 1",
                "B 1000010000 1 HLT 4",
                "E 1000020000 1",
                "B 1000020000 1 HLT 4",
                "I 1000030000 1 inject IRQ",
                "E 1000030000 1",
            ]
        );
        assert_eq!((stats.exits, stats.nested, stats.instants), (3, 2, 1));
        let cpu: Vec<&str> = rec
            .0
            .iter()
            .map(String::as_str)
            .filter(|l| l.starts_with("cpu"))
            .collect();
        assert_eq!(
            cpu,
            [
                "cpu 0",
                "cpu B 1000000000 0 IO_INSTRUCTION 1",
                "cpu E 1000009000 0",
                "cpu B 1000010000 0 HLT 1",
                "cpu E 1000020000 0",
                "cpu B 1000020000 0 HLT 1",
                "cpu E 1000030000 0",
            ]
        );
        // Counters: 1 IO and 2 HLT exits in the one-second window, then zero.
        assert!(rec.0.contains(&"C 1000000000 exits/s HLT 2".to_string()));
        assert!(rec
            .0
            .contains(&"C 1000000000 exits/s IO_INSTRUCTION 1".to_string()));
    }
}
