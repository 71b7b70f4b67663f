//! trace.dat records → the typed [`Event`]s every analysis takes, so a recording is reported
//! exactly as a text trace is.
//!
//! Fields are read by name from each event's `format` (field lookups are resolved once per
//! event id), so a kernel that moves fields around still decodes. Pointer-valued fields that
//! the kernel prints as symbols (`%ps`/`%pS`: IPI callbacks and callsites, csd and hrtimer
//! functions) are named from the kallsyms the file itself holds (never from the reading
//! machine's `/proc/kallsyms`, which may be another kernel's); those the file cannot name stay
//! hex and are counted ([`DatSummary::unresolved_pointers`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use kvmscope_trace::{ArmExitKind, Event, EventKind, ExitReason, KvmExit, MmioKind, MmuKind};

use crate::error::TraceDatError;
use crate::file::{BufferMerger, FileAt, TraceDat};
use crate::format::{integer, EventFormat, FieldKind};
use crate::symbols::Kallsyms;

/// What a trace.dat file held besides its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatSummary {
    pub version: u32,
    pub compression: Option<String>,
    /// Buffers read, by name (`""` is the top-level buffer).
    pub buffers: Vec<String>,
    pub events: u64,
    /// Per CPU: events the kernel said it dropped (page headers), and pages that said events
    /// were lost without a count.
    pub lost: Vec<(u32, u64, u64)>,
    /// kvmscope's JSON sidecar (system snapshot and recording settings), when present.
    pub sidecar: Option<String>,
    /// Kernel symbols the file holds (its kallsyms).
    pub symbols: usize,
    /// Non-null pointer fields that the file's symbols could not name (given as hex).
    pub unresolved_pointers: u64,
}

impl DatSummary {
    pub fn lost_total(&self) -> u64 {
        self.lost.iter().map(|l| l.1).sum()
    }

    pub fn lost_unknown_pages(&self) -> u64 {
        self.lost.iter().map(|l| l.2).sum()
    }
}

/// True when `magic` (the first bytes of a file) starts a trace.dat file.
pub fn is_tracedat(magic: &[u8]) -> bool {
    magic.starts_with(b"\x17\x08\x44tracing")
}

/// Reads every event of every data buffer of the trace.dat file at `path`, each buffer's
/// CPUs merged by time, and calls `sink` with it, in time order.
///
/// Two threads share the work: a decoder thread merges the CPUs' records and hands them
/// over in batches of [`BATCH`] records (at most [`DEPTH`] batches in flight, so memory does
/// not grow with the file); the calling thread turns each record into an [`Event`] and runs
/// `sink`. Which of the two decodes a batch's payloads follows the load
/// ([`DECODE_WHEN_WAITING`]). Events before a read error are delivered, then the error is
/// returned.
pub fn for_each_event(
    path: &Path,
    sink: impl FnMut(&Event<'_>),
) -> Result<DatSummary, TraceDatError> {
    read(path, Split::Balance, sink)
}

/// Which thread decodes the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    /// As [`DECODE_WHEN_WAITING`] says.
    Balance,
    /// Tests: each path on its own.
    #[cfg(test)]
    Decoder,
    #[cfg(test)]
    Caller,
}

impl Split {
    /// Whether the decoder thread decodes its next batch itself, with `waiting` batches
    /// waiting for the caller's thread.
    fn decoder_decodes(self, waiting: usize) -> bool {
        match self {
            Split::Balance => waiting > DECODE_WHEN_WAITING,
            #[cfg(test)]
            Split::Decoder => true,
            #[cfg(test)]
            Split::Caller => false,
        }
    }
}

fn read(
    path: &Path,
    split: Split,
    mut sink: impl FnMut(&Event<'_>),
) -> Result<DatSummary, TraceDatError> {
    let file = FileAt::open(path)?;
    let td = TraceDat::parse(&file)?;
    let mut summary = DatSummary {
        version: td.version,
        compression: td.compression.clone(),
        sidecar: td.kvmscope_json().map(str::to_string),
        ..DatSummary::default()
    };
    summary.symbols = td.kallsyms.len();
    summary.buffers = td.data_buffers().map(|b| b.name.clone()).collect();
    // The file's event ids name the events for consumers that intern names.
    let names = kvmscope_trace::names::new_table();
    let tgids = summary
        .sidecar
        .as_deref()
        .map(sidecar_tgids)
        .unwrap_or_default();
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Batch>(DEPTH);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Batch>();
    let waiting = AtomicUsize::new(0);
    let mut unresolved = 0u64;
    let decoded = std::thread::scope(|scope| {
        let decoder = std::thread::Builder::new()
            .name("kvmscope-dat".into())
            .spawn_scoped(scope, || {
                decode(&td, &file, full_tx, empty_rx, &waiting, split)
            })
            .map_err(|e| TraceDatError::read(path, e))?;
        // Per event id its plan (its format, and how to decode the records the decoder left
        // raw), and the strings decoding them made.
        let mut plans: Vec<Option<Plan<'_>>> = Vec::new();
        let mut own = String::new();
        // Per thread, its name and process (looked up once per thread), and per CPU the
        // thread of its last event (most records repeat it).
        let mut threads: foldhash::HashMap<i32, Thread<'_>> = foldhash::HashMap::default();
        let mut last: Vec<(i32, Thread<'_>)> = Vec::new();
        for mut batch in full_rx {
            waiting.fetch_sub(1, Ordering::Relaxed);
            let Batch {
                items,
                kinds,
                scratch,
                raw,
            } = &mut batch;
            for it in items.iter() {
                let id = usize::from(it.id);
                if plans.len() <= id {
                    plans.resize_with(id + 1, || None);
                }
                if plans[id].is_none() {
                    // The decoder sends only records whose format the file has.
                    let Some(fmt) = td.formats.get(it.id) else {
                        continue;
                    };
                    plans[id] = Some(Plan::new(fmt, &td.kallsyms));
                }
                let Some(plan) = plans[id].as_mut() else {
                    continue;
                };
                let cpu = it.cpu as usize;
                if last.len() <= cpu {
                    last.resize(cpu + 1, (-1, ("", None)));
                }
                if last[cpu].0 != it.pid {
                    let t = *threads
                        .entry(it.pid)
                        .or_insert_with(|| thread(&td, &tgids, it.pid));
                    last[cpu] = (it.pid, t);
                }
                let (comm, tgid) = last[cpu].1;
                let decoded;
                let (kind, strs) = if it.raw {
                    own.clear();
                    let data = raw
                        .get(it.at as usize..(it.at as usize).saturating_add(it.len as usize))
                        .unwrap_or(&[]);
                    decoded = plan.kind(data, &mut own, &mut unresolved);
                    (&decoded, own.as_str())
                } else {
                    let Some(kind) = kinds.get(it.at as usize) else {
                        continue;
                    };
                    (kind, scratch.as_str())
                };
                let fmt = plan.fmt;
                sink(&Event {
                    ts_ns: it.ts_ns,
                    cpu: it.cpu,
                    tid: u32::try_from(it.pid).unwrap_or(0),
                    tgid,
                    comm,
                    system: &fmt.system,
                    name: &fmt.name,
                    payload: payload_of(kind, strs),
                    kind: resolve_scratch(kind, strs),
                    name_ref: kvmscope_trace::names::NameRef::new(names, u32::from(it.id)),
                });
            }
            items.clear();
            kinds.clear();
            scratch.clear();
            raw.clear();
            // The decoder may be done: then the batch is dropped here.
            let _ = empty_tx.send(batch);
        }
        match decoder.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })?;
    for l in decoded.lost {
        summary.lost.push((l.cpu, l.known, l.unknown_pages));
    }
    summary.events = decoded.events;
    summary.unresolved_pointers = decoded.unresolved + unresolved;
    Ok(summary)
}

/// A thread's name and process.
type Thread<'f> = (&'f str, Option<u32>);

/// Thread `pid`'s name (the file's cmdlines) and process (kvmscope's sidecar).
fn thread<'f>(td: &'f TraceDat, tgids: &HashMap<u32, u32>, pid: i32) -> Thread<'f> {
    let comm = td.cmdlines.get(&pid).map_or("<...>", String::as_str);
    (
        comm,
        u32::try_from(pid).ok().and_then(|t| tgids.get(&t).copied()),
    )
}

/// Events per batch handed from the decoder thread to the caller's (in tests, few enough
/// that the fixtures make several).
const BATCH: usize = if cfg!(test) { 128 } else { 2048 };
/// Batches in flight between the two threads (besides the one each is working on).
const DEPTH: usize = 4;
/// The decoder decodes the next batch's records itself when more than this many batches
/// wait for the caller's thread, counting the one just sent (that thread is the slower one),
/// and leaves them raw for that thread to decode otherwise (it would wait for the decoder):
/// the work balances itself whichever side the sink or the file makes heavier. (1, 2 and 3
/// measured the same.)
const DECODE_WHEN_WAITING: usize = 1;

/// Records on their way to the caller's thread: their strings that exist only as formatted
/// text are in `scratch`, and the bytes of the records left raw are in `raw`.
#[derive(Debug)]
struct Batch {
    items: Vec<Item>,
    /// The kinds of the records the decoder decoded.
    kinds: Vec<Decoded>,
    scratch: String,
    raw: Vec<u8>,
}

/// One record, small (32 bytes: the two threads write and read millions of them): decoded
/// (its kind is `kinds[at]`), or left raw (its bytes are `raw[at..at + len]`) for the caller's
/// thread to decode.
#[derive(Debug)]
struct Item {
    ts_ns: u64,
    cpu: u32,
    /// `common_pid`.
    pid: i32,
    at: u32,
    len: u32,
    id: u16,
    raw: bool,
}

/// What the decoder thread counted.
#[derive(Debug)]
struct Tally {
    lost: Vec<crate::file::LostEvents>,
    events: u64,
    unresolved: u64,
}

/// The decoder thread: merges every buffer's records by time, decodes them or leaves them raw
/// ([`Split`]) and sends them in batches. Stops early when the caller's thread is gone.
fn decode<'f>(
    td: &'f TraceDat,
    file: &FileAt,
    full: std::sync::mpsc::SyncSender<Batch>,
    empty: std::sync::mpsc::Receiver<Batch>,
    waiting: &AtomicUsize,
    split: Split,
) -> Result<Tally, TraceDatError> {
    // Per event id, its plan (a Vec: hashing the id per record cost more than decoding).
    let mut plans: Vec<Slot<'f>> = Vec::new();
    let mut unresolved = 0u64;
    let mut events = 0u64;
    let fresh = || Batch {
        items: Vec::with_capacity(BATCH),
        kinds: Vec::new(),
        scratch: String::new(),
        raw: Vec::new(),
    };
    let mut batch = fresh();
    let mut decode_here = split.decoder_decodes(0);
    // False once the caller's thread stopped taking batches.
    let mut open = true;
    let mut handle = |rec: &crate::ringbuf::Record<'_>| {
        let id = rec.id as usize;
        if plans.len() <= id {
            plans.resize_with(id + 1, || Slot::Unknown);
        }
        if let Slot::Unknown = plans[id] {
            plans[id] = match td.formats.get(rec.id) {
                Some(fmt) => Slot::Plan(Plan::new(fmt, &td.kallsyms)),
                None => Slot::NoFormat,
            };
        }
        let Slot::Plan(plan) = &mut plans[id] else {
            return true;
        };
        events += 1;
        let (at, len) = if decode_here {
            let at = batch.kinds.len() as u32;
            let kind = plan.kind(rec.data, &mut batch.scratch, &mut unresolved);
            batch.kinds.push(kind);
            (at, 0)
        } else {
            let at = batch.raw.len() as u32;
            batch.raw.extend_from_slice(rec.data);
            (at, rec.data.len() as u32)
        };
        batch.items.push(Item {
            ts_ns: rec.ts_ns,
            cpu: rec.cpu,
            pid: rec.common_pid,
            at,
            len,
            id: rec.id,
            raw: !decode_here,
        });
        if batch.items.len() >= BATCH {
            let next = empty.try_recv().unwrap_or_else(|_| fresh());
            waiting.fetch_add(1, Ordering::Relaxed);
            open = full.send(std::mem::replace(&mut batch, next)).is_ok();
            decode_here = split.decoder_decodes(waiting.load(Ordering::Relaxed));
        }
        open
    };
    let buffers: Vec<_> = td.data_buffers().collect();
    // One loop for one buffer or several, so `handle` has one call site and is inlined
    // (with two, it was a call per record, the record passed through memory).
    let merge = || -> Result<Vec<crate::file::LostEvents>, TraceDatError> {
        let mut m = BufferMerger::of(td, buffers, file)?;
        while let Some((_, rec)) = m.next_record()? {
            if !handle(&rec) {
                break;
            }
        }
        Ok(m.lost_events())
    };
    let merged = merge();
    // What was decoded before an error is delivered too.
    if !batch.items.is_empty() {
        waiting.fetch_add(1, Ordering::Relaxed);
        let _ = full.send(batch);
    }
    let lost = merged?;
    Ok(Tally {
        lost,
        events,
        unresolved,
    })
}

/// What is known about an event id.
#[derive(Debug)]
enum Slot<'f> {
    Unknown,
    NoFormat,
    Plan(Plan<'f>),
}

/// Thread → process from kvmscope's sidecar (`"tgids": [[tid, tgid], ...]`).
fn sidecar_tgids(json: &str) -> HashMap<u32, u32> {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(json) else {
        return HashMap::new();
    };
    doc.get("tgids")
        .and_then(|t| t.as_array())
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|p| {
                    let tid = u32::try_from(p.get(0)?.as_u64()?).ok()?;
                    let tgid = u32::try_from(p.get(1)?.as_u64()?).ok()?;
                    Some((tid, tgid))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The few fields analyses read from the payload text rather than the kind (csd's `csd`
/// pointer: null for a function the sending CPU runs itself).
fn payload_of<'a>(kind: &Decoded, scratch: &'a str) -> &'a str {
    match kind {
        Decoded::CsdFunction { payload, .. } => scratch.get(payload.clone()).unwrap_or(""),
        _ => "",
    }
}

/// Strings that exist only as formatted text (hex addresses, symbol names) are written to a
/// scratch buffer while decoding; this swaps the placeholders for slices of it.
fn resolve_scratch<'a>(kind: &Decoded, scratch: &'a str) -> EventKind<'a> {
    let s = |r: &std::ops::Range<usize>| scratch.get(r.clone()).unwrap_or("");
    match *kind {
        Decoded::Plain(k) => k,
        Decoded::IpiSend {
            cpu,
            ref cpumask,
            ref callsite,
            ref callback,
        } => EventKind::IpiSend {
            cpu,
            cpumask: s(cpumask),
            callsite: s(callsite),
            callback: s(callback),
        },
        Decoded::CsdQueue { cpu, ref func } => EventKind::CsdQueue { cpu, func: s(func) },
        Decoded::CsdFunction {
            entry, ref func, ..
        } => EventKind::CsdFunction {
            entry,
            func: s(func),
        },
        Decoded::HrtimerStart {
            hrtimer,
            ref function,
            expires_ns,
        } => EventKind::HrtimerStart {
            hrtimer,
            function: s(function),
            expires_ns,
        },
        Decoded::HrtimerExpireEntry {
            hrtimer,
            ref function,
        } => EventKind::HrtimerExpireEntry {
            hrtimer,
            function: s(function),
        },
        Decoded::Apic {
            write,
            ref reg,
            val,
        } => EventKind::Apic {
            write,
            reg: s(reg),
            val,
        },
        Decoded::ExitNamed { exit, ref name } => EventKind::KvmExit(KvmExit {
            reason: ExitReason::Named(s(name)),
            ..exit
        }),
    }
}

/// A decoded kind whose strings may live in the scratch buffer.
#[derive(Debug)]
enum Decoded {
    Plain(EventKind<'static>),
    IpiSend {
        cpu: Option<u32>,
        /// `%*pb` hex of `ipi_send_cpumask`'s mask (empty for `ipi_send_cpu`).
        cpumask: std::ops::Range<usize>,
        callsite: std::ops::Range<usize>,
        callback: std::ops::Range<usize>,
    },
    CsdQueue {
        cpu: u32,
        func: std::ops::Range<usize>,
    },
    CsdFunction {
        entry: bool,
        func: std::ops::Range<usize>,
        /// `csd=ADDR` (`csd=0` for none), as the kernel's text has it.
        payload: std::ops::Range<usize>,
    },
    HrtimerStart {
        hrtimer: u64,
        function: std::ops::Range<usize>,
        expires_ns: Option<u64>,
    },
    HrtimerExpireEntry {
        hrtimer: u64,
        function: std::ops::Range<usize>,
    },
    Apic {
        write: bool,
        reg: std::ops::Range<usize>,
        val: u64,
    },
    /// An exit whose reason our tables do not know but the kernel's print fmt names.
    ExitNamed {
        exit: KvmExit<'static>,
        name: std::ops::Range<usize>,
    },
}

/// Which decoder an event id takes: chosen from its system and name once per id, not per
/// record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Exit,
    Entry,
    UserspaceExit,
    Pio,
    Mmio,
    Msr,
    Cr,
    PageFault,
    InjVirq,
    InjException,
    ApicIpi,
    ApicAcceptIrq,
    Apic,
    Eoi,
    HvTimerState,
    WaitLapicExpire,
    VcpuWakeup,
    HaltPollNs,
    Fpu,
    EmulateInsn,
    Cpuid,
    PvTlbFlush,
    SetIrq,
    MsiSetIrq,
    Wfx,
    GetTimerMap,
    SysAccess,
    HandleSysReg,
    /// A `kvmmmu` event, of this kind.
    Mmu(MmuKind),
    GuestMsr {
        write: bool,
    },
    IpiSendCpu,
    IpiSendCpumask,
    CsdQueueCpu,
    CsdFunction {
        entry: bool,
    },
    HrtimerStart,
    HrtimerExpireEntry,
    HrtimerExpireExit,
    HrtimerCancel,
    /// An `irq_vectors` `*_entry` or `*_exit` event.
    IrqVector {
        entry: bool,
    },
    Other,
}

impl Which {
    fn of(system: &str, name: &str) -> Which {
        match (system, name) {
            ("kvm", "kvm_exit") => Which::Exit,
            ("kvm", "kvm_entry") => Which::Entry,
            ("kvm", "kvm_userspace_exit") => Which::UserspaceExit,
            ("kvm", "kvm_pio") => Which::Pio,
            ("kvm", "kvm_mmio") => Which::Mmio,
            ("kvm", "kvm_msr") => Which::Msr,
            ("kvm", "kvm_cr") => Which::Cr,
            ("kvm", "kvm_page_fault") => Which::PageFault,
            ("kvm", "kvm_inj_virq") => Which::InjVirq,
            ("kvm", "kvm_inj_exception") => Which::InjException,
            ("kvm", "kvm_apic_ipi") => Which::ApicIpi,
            ("kvm", "kvm_apic_accept_irq") => Which::ApicAcceptIrq,
            ("kvm", "kvm_apic") => Which::Apic,
            ("kvm", "kvm_eoi") => Which::Eoi,
            ("kvm", "kvm_hv_timer_state") => Which::HvTimerState,
            ("kvm", "kvm_wait_lapic_expire") => Which::WaitLapicExpire,
            ("kvm", "kvm_vcpu_wakeup") => Which::VcpuWakeup,
            ("kvm", "kvm_halt_poll_ns") => Which::HaltPollNs,
            ("kvm", "kvm_fpu") => Which::Fpu,
            ("kvm", "kvm_emulate_insn") => Which::EmulateInsn,
            ("kvm", "kvm_cpuid") => Which::Cpuid,
            ("kvm", "kvm_pv_tlb_flush") => Which::PvTlbFlush,
            ("kvm", "kvm_set_irq") => Which::SetIrq,
            ("kvm", "kvm_msi_set_irq") => Which::MsiSetIrq,
            ("kvm", "kvm_wfx_arm64") => Which::Wfx,
            ("kvm", "kvm_get_timer_map") => Which::GetTimerMap,
            ("kvm", "kvm_sys_access") => Which::SysAccess,
            ("kvm", "kvm_handle_sys_reg") => Which::HandleSysReg,
            ("kvmmmu", _) => Which::Mmu(kvmscope_trace::text::payload::mmu_kind(name)),
            ("msr", "write_msr") => Which::GuestMsr { write: true },
            ("msr", "read_msr" | "rdpmc") => Which::GuestMsr { write: false },
            ("ipi", "ipi_send_cpu") => Which::IpiSendCpu,
            ("ipi", "ipi_send_cpumask") => Which::IpiSendCpumask,
            ("csd", "csd_queue_cpu") => Which::CsdQueueCpu,
            ("csd", "csd_function_entry") => Which::CsdFunction { entry: true },
            ("csd", "csd_function_exit") => Which::CsdFunction { entry: false },
            ("timer", "hrtimer_start") => Which::HrtimerStart,
            ("timer", "hrtimer_expire_entry") => Which::HrtimerExpireEntry,
            ("timer", "hrtimer_expire_exit") => Which::HrtimerExpireExit,
            ("timer", "hrtimer_cancel") => Which::HrtimerCancel,
            ("irq_vectors", n) if n.ends_with("_entry") => Which::IrqVector { entry: true },
            ("irq_vectors", n) if n.ends_with("_exit") => Which::IrqVector { entry: false },
            _ => Which::Other,
        }
    }
}

/// A field a [`Plan`] reads: its index in the format, where it is, and for a plain integer its
/// size (0 for anything else: `integer` refuses it, as `Field::u64` does), so that integers
/// are read without going back to the format.
#[derive(Debug, Clone, Copy)]
struct Access {
    index: usize,
    offset: usize,
    size: u8,
    signed: bool,
}

/// How to decode one event id: the event's format and which of its fields we read.
#[derive(Debug)]
struct Plan<'f> {
    fmt: &'f EventFormat,
    /// The file's kernel symbols, for pointer fields.
    syms: &'f Kallsyms,
    /// Its decoder.
    which: Which,
    /// Field indices by the names the decoder asks for, resolved on first use, in the order
    /// asked.
    cache: Vec<(&'static str, Option<Access>)>,
    /// Where in `cache` the next lookup of this record is expected: a decoder asks for the
    /// same fields in the same order record after record, so a lookup is one comparison.
    next: usize,
    /// The last pointer values this event named, by a hash of each, with the name of the
    /// symbol containing each (None: not in the table). A few functions (hrtimer callbacks,
    /// IPI functions) recur millions of times, and a binary search of the whole table per
    /// record was the biggest single cost on arm64 hosts.
    /// Boxed: most events have no pointer field.
    symbols: Box<[(u64, Option<&'f str>); SYMBOL_MEMO]>,
}

/// Entries of a plan's symbol memo (a power of two).
const SYMBOL_MEMO: usize = 8;

impl<'f> Plan<'f> {
    fn new(fmt: &'f EventFormat, syms: &'f Kallsyms) -> Plan<'f> {
        Plan {
            fmt,
            syms,
            which: Which::of(&fmt.system, &fmt.name),
            cache: Vec::new(),
            next: 0,
            // Address 0 is never looked up (a null pointer prints as 0x0).
            symbols: Box::new([(0, None); SYMBOL_MEMO]),
        }
    }

    #[inline(always)]
    fn index(&mut self, name: &'static str) -> Option<Access> {
        if let Some(&(n, a)) = self.cache.get(self.next) {
            if std::ptr::eq(n, name) || n == name {
                self.next += 1;
                return a;
            }
        }
        self.index_slow(name)
    }

    #[cold]
    #[inline(never)]
    fn index_slow(&mut self, name: &'static str) -> Option<Access> {
        let at = match self.cache.iter().position(|(n, _)| *n == name) {
            Some(at) => at,
            None => {
                let a = self
                    .fmt
                    .fields
                    .iter()
                    .position(|f| f.name == name)
                    .map(|i| {
                        let f = &self.fmt.fields[i];
                        let scalar = f.kind == FieldKind::Scalar && matches!(f.size, 1 | 2 | 4 | 8);
                        Access {
                            index: i,
                            offset: f.offset,
                            size: if scalar { f.size as u8 } else { 0 },
                            signed: f.signed,
                        }
                    });
                self.cache.push((name, a));
                self.cache.len() - 1
            }
        };
        self.next = at + 1;
        self.cache[at].1
    }

    #[inline(always)]
    fn u64(&mut self, data: &[u8], name: &'static str) -> Option<u64> {
        // What Field::u64 gives, without going back to the format.
        let a = self.index(name)?;
        integer(data, a.offset, usize::from(a.size), a.signed)
    }

    #[inline(always)]
    fn i64(&mut self, data: &[u8], name: &'static str) -> Option<i64> {
        self.u64(data, name).map(|v| v as i64)
    }

    #[inline(always)]
    fn u32(&mut self, data: &[u8], name: &'static str) -> Option<u32> {
        self.u64(data, name).map(|v| v as u32)
    }

    #[inline(always)]
    fn flag(&mut self, data: &[u8], name: &'static str) -> Option<bool> {
        self.u64(data, name).map(|v| v != 0)
    }

    /// A function-pointer field (`%ps`/`%pS`) named from the file's kallsyms (the symbol
    /// that contains the address, as the text decoders keep it), or written as hex when the
    /// file cannot name it (counted in `unresolved`; a null pointer is `0x0`, as the kernel
    /// prints it, and is not counted). Returns its range in `scratch`.
    fn addr(
        &mut self,
        data: &[u8],
        name: &'static str,
        scratch: &mut String,
        unresolved: &mut u64,
    ) -> std::ops::Range<usize> {
        let start = scratch.len();
        if let Some(v) = self.u64(data, name) {
            match self.symbol(v) {
                Some(sym) if v != 0 => scratch.push_str(sym),
                _ => {
                    *unresolved += u64::from(v != 0);
                    let _ = write!(scratch, "{v:#x}");
                }
            }
        }
        start..scratch.len()
    }

    /// The name of the symbol containing `addr`, memoized in a slot chosen by a multiplicative
    /// hash of the address: function addresses are aligned (to 64 bytes on some arm64
    /// kernels), so their low bits alone would put them all in one slot.
    #[inline]
    fn symbol(&mut self, addr: u64) -> Option<&'f str> {
        if addr == 0 {
            return None;
        }
        let hash = addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SYMBOL_MEMO.trailing_zeros());
        let slot = &mut self.symbols[hash as usize];
        if slot.0 != addr {
            *slot = (addr, self.syms.lookup(addr));
        }
        slot.1
    }

    /// A `__data_loc cpumask_t` field as `%*pb` prints it: hex, most significant first.
    fn cpumask(
        &mut self,
        data: &[u8],
        name: &'static str,
        scratch: &mut String,
    ) -> std::ops::Range<usize> {
        let start = scratch.len();
        let bytes = self
            .index(name)
            .and_then(|a| self.fmt.fields[a.index].bytes(data))
            .unwrap_or(&[]);
        let hex = b"0123456789abcdef";
        let mut seen = false;
        for &b in bytes.iter().rev() {
            for nib in [b >> 4, b & 0xf] {
                if nib != 0 || seen {
                    seen = true;
                    scratch.push(hex[nib as usize] as char);
                }
            }
        }
        if !seen && !bytes.is_empty() {
            scratch.push('0');
        }
        start..scratch.len()
    }

    fn kind(&mut self, d: &[u8], scratch: &mut String, unresolved: &mut u64) -> Decoded {
        self.next = 0;
        self.try_kind(d, scratch, unresolved)
            .unwrap_or(Decoded::Plain(EventKind::Other))
    }

    fn try_kind(
        &mut self,
        d: &[u8],
        scratch: &mut String,
        unresolved: &mut u64,
    ) -> Option<Decoded> {
        let plain = |k: EventKind<'static>| Some(Decoded::Plain(k));
        match self.which {
            Which::Exit => {
                let exit = self.kvm_exit(d)?;
                // The kernel's own name for a reason newer than our tables.
                let known = match exit.reason {
                    ExitReason::Vmx(c) => kvmscope_trace::tables::vmx_exit_name(c).is_some(),
                    ExitReason::Svm(c) => kvmscope_trace::tables::svm_exit_name(c).is_some(),
                    _ => true,
                };
                if !known {
                    if let Some(sym) = self.fmt.symbol(d, "exit_reason") {
                        let start = scratch.len();
                        scratch.push_str(&sym);
                        return Some(Decoded::ExitNamed {
                            exit,
                            name: start..scratch.len(),
                        });
                    }
                }
                plain(EventKind::KvmExit(exit))
            }
            Which::Entry => plain(EventKind::KvmEntry {
                vcpu: self.u32(d, "vcpu_id"),
                rip: self.u64(d, "rip").or_else(|| self.u64(d, "vcpu_pc")),
            }),
            Which::UserspaceExit => {
                let errno = self.i64(d, "errno").unwrap_or(0);
                plain(EventKind::UserspaceExit {
                    reason: self.u32(d, "reason")?,
                    errno: (errno < 0).then(|| errno.unsigned_abs() as u32),
                })
            }
            Which::Pio => plain(EventKind::Pio {
                write: self.flag(d, "rw")?,
                port: self.u32(d, "port")?,
                size: self.u32(d, "size")?,
                count: self.u32(d, "count")?,
                val: self.u64(d, "val").unwrap_or(0),
            }),
            Which::Mmio => plain(EventKind::Mmio {
                kind: match self.u64(d, "type")? {
                    0 => MmioKind::UnsatisfiedRead,
                    1 => MmioKind::Read,
                    _ => MmioKind::Write,
                },
                len: self.u32(d, "len")?,
                gpa: self.u64(d, "gpa")?,
                val: self.u64(d, "val").unwrap_or(0),
            }),
            Which::Msr => plain(EventKind::Msr {
                write: self.flag(d, "write")?,
                msr: self.u32(d, "ecx")?,
                data: self.u64(d, "data")?,
                gp: self.flag(d, "exception").unwrap_or(false),
            }),
            Which::Cr => plain(EventKind::Cr {
                write: self.flag(d, "rw")?,
                cr: self.u32(d, "cr")?,
                val: self.u64(d, "val")?,
            }),
            Which::PageFault => plain(EventKind::PageFault {
                vcpu: self.u32(d, "vcpu_id"),
                addr: self.u64(d, "fault_address")?,
                error_code: self.u64(d, "error_code")?,
            }),
            Which::InjVirq => plain(EventKind::InjVirq {
                irq: self.u32(d, "vector").or_else(|| self.u32(d, "irq"))?,
                soft: self.flag(d, "soft").unwrap_or(false),
                reinjected: self.flag(d, "reinjected").unwrap_or(false),
            }),
            Which::InjException => plain(EventKind::InjException {
                vector: self.u32(d, "exception")?,
            }),
            Which::ApicIpi => plain(EventKind::ApicIpi {
                dst: self.u32(d, "dest_id")?,
                vec: self.u32(d, "icr_low")? & 0xff,
            }),
            Which::ApicAcceptIrq => plain(EventKind::ApicAcceptIrq {
                apicid: self.u32(d, "apicid")?,
                vec: self.u32(d, "vec")?,
                coalesced: self.flag(d, "coalesced").unwrap_or(false),
            }),
            Which::Apic => {
                let start = scratch.len();
                if let Some(sym) = self.fmt.symbol(d, "reg") {
                    scratch.push_str(&sym);
                } else if let Some(r) = self.u64(d, "reg") {
                    let _ = write!(scratch, "{r:#x}");
                }
                Some(Decoded::Apic {
                    write: self.flag(d, "rw")?,
                    reg: start..scratch.len(),
                    val: self.u64(d, "val")?,
                })
            }
            Which::Eoi => plain(EventKind::Eoi {
                vector: self.i64(d, "vector")?,
            }),
            Which::HvTimerState => plain(EventKind::HvTimerState {
                vcpu: self.u32(d, "vcpu_id")?,
                hv_timer: self.flag(d, "hv_timer_in_use")?,
            }),
            Which::WaitLapicExpire => plain(EventKind::WaitLapicExpire {
                vcpu: self.u32(d, "vcpu_id")?,
                delta_ns: self.i64(d, "delta")?,
            }),
            Which::VcpuWakeup => plain(EventKind::VcpuWakeup {
                ns: self.u64(d, "ns")?,
                waited: self.flag(d, "waited")?,
                valid: self.flag(d, "valid")?,
            }),
            Which::HaltPollNs => plain(EventKind::HaltPollNs {
                vcpu: self.u32(d, "vcpu_id")?,
                grow: self.flag(d, "grow")?,
                new: self.u64(d, "new")?,
                old: self.u64(d, "old")?,
            }),
            Which::Fpu => plain(EventKind::Fpu {
                load: self.flag(d, "load")?,
            }),
            Which::EmulateInsn => plain(EventKind::EmulateInsn {
                failed: self.flag(d, "failed")?,
            }),
            Which::Cpuid => plain(EventKind::Cpuid {
                function: self.u32(d, "function")?,
            }),
            Which::PvTlbFlush => plain(EventKind::PvTlbFlush {
                vcpu: self.u32(d, "vcpu_id")?,
                need_flush: self.flag(d, "need_flush_tlb")?,
            }),
            Which::SetIrq => plain(EventKind::SetIrq {
                gsi: self.u32(d, "gsi")?,
                level: self.i64(d, "level")? as i32,
            }),
            Which::MsiSetIrq => plain(EventKind::MsiSetIrq {
                dst: (self.u64(d, "address")? >> 12) & 0xff,
                vec: self.u32(d, "data")? & 0xff,
            }),
            Which::Wfx => plain(EventKind::Wfx {
                wfe: self.flag(d, "is_wfe")?,
                pc: self.u64(d, "vcpu_pc").unwrap_or(0),
            }),
            Which::GetTimerMap => plain(EventKind::VcpuIndex {
                vcpu: self.u32(d, "vcpu_id")?,
            }),
            Which::SysAccess => {
                // `name` is a kernel pointer in the record: the name comes from the encoding.
                let enc = [
                    self.u32(d, "Op0")? as u8,
                    self.u32(d, "Op1")? as u8,
                    self.u32(d, "CRn")? as u8,
                    self.u32(d, "CRm")? as u8,
                    self.u32(d, "Op2")? as u8,
                ];
                plain(EventKind::SysReg {
                    esr: None,
                    enc: Some(enc),
                    name: kvmscope_trace::tables::sysreg_name(enc).unwrap_or(""),
                    write: self.flag(d, "is_write"),
                })
            }
            Which::HandleSysReg => {
                let esr = self.u64(d, "hsr")?;
                let decoded = kvmscope_trace::tables::sysreg_from_esr(esr);
                plain(EventKind::SysReg {
                    esr: Some(esr),
                    enc: decoded.map(|x| x.0),
                    name: decoded
                        .and_then(|x| kvmscope_trace::tables::sysreg_name(x.0))
                        .unwrap_or(""),
                    write: decoded.map(|x| x.1),
                })
            }
            Which::Mmu(kind) => plain(self.mmu(kind, d)),
            Which::GuestMsr { write } => plain(EventKind::GuestMsr {
                write,
                msr: self.u32(d, "msr")?,
                val: self.u64(d, "val")?,
                failed: self.flag(d, "failed").unwrap_or(false),
            }),
            Which::IpiSendCpu => Some(Decoded::IpiSend {
                cpu: self.u32(d, "cpu"),
                cpumask: 0..0,
                callsite: self.addr(d, "callsite", scratch, unresolved),
                callback: self.addr(d, "callback", scratch, unresolved),
            }),
            Which::IpiSendCpumask => Some(Decoded::IpiSend {
                cpu: None,
                cpumask: self.cpumask(d, "cpumask", scratch),
                callsite: self.addr(d, "callsite", scratch, unresolved),
                callback: self.addr(d, "callback", scratch, unresolved),
            }),
            Which::CsdQueueCpu => Some(Decoded::CsdQueue {
                cpu: self.u32(d, "cpu")?,
                func: self.addr(d, "func", scratch, unresolved),
            }),
            Which::CsdFunction { entry } => {
                let func = self.addr(d, "func", scratch, unresolved);
                let start = scratch.len();
                match self.u64(d, "csd") {
                    Some(0) | None => scratch.push_str("csd=0"),
                    Some(c) => {
                        let _ = write!(scratch, "csd={c:x}");
                    }
                }
                Some(Decoded::CsdFunction {
                    entry,
                    func,
                    payload: start..scratch.len(),
                })
            }
            Which::HrtimerStart => Some(Decoded::HrtimerStart {
                hrtimer: self.u64(d, "hrtimer")?,
                function: self.addr(d, "function", scratch, unresolved),
                expires_ns: self.u64(d, "expires"),
            }),
            Which::HrtimerExpireEntry => Some(Decoded::HrtimerExpireEntry {
                hrtimer: self.u64(d, "hrtimer")?,
                function: self.addr(d, "function", scratch, unresolved),
            }),
            Which::HrtimerExpireExit => plain(EventKind::HrtimerExpireExit {
                hrtimer: self.u64(d, "hrtimer")?,
            }),
            Which::HrtimerCancel => plain(EventKind::HrtimerCancel {
                hrtimer: self.u64(d, "hrtimer")?,
            }),
            Which::IrqVector { entry } => plain(EventKind::IrqVector {
                entry,
                vector: self.u32(d, "vector"),
            }),
            Which::Other => None,
        }
    }

    fn kvm_exit(&mut self, d: &[u8]) -> Option<KvmExit<'static>> {
        if let Some(ec) = self.u32(d, "esr_ec") {
            // arm64: `ret` is the exception type (ARM_EXCEPTION_IRQ 0, EL1_SERROR 1, TRAP 2,
            // IL 3).
            let kind = match self.u64(d, "ret").unwrap_or(2) {
                0 => ArmExitKind::Irq,
                1 => ArmExitKind::Serror,
                2 => ArmExitKind::Trap,
                3 => ArmExitKind::Il,
                _ => ArmExitKind::Other,
            };
            return Some(KvmExit {
                reason: ExitReason::Arm64 { kind, ec },
                failed_vmentry: false,
                vcpu: None,
                rip: self.u64(d, "vcpu_pc"),
                info1: None,
                info2: None,
            });
        }
        let raw = self.u64(d, "exit_reason")?;
        let (reason, failed_vmentry) = match self.u64(d, "isa") {
            Some(1) => (
                ExitReason::Vmx((raw & 0xffff) as u32),
                raw & 0x8000_0000 != 0,
            ),
            Some(2) => (ExitReason::Svm(raw & 0xffff_ffff), false),
            _ => (ExitReason::Code(raw), false),
        };
        Some(KvmExit {
            reason,
            failed_vmentry,
            vcpu: self.u32(d, "vcpu_id"),
            rip: self.u64(d, "guest_rip"),
            info1: self.u64(d, "info1"),
            info2: self.u64(d, "info2"),
        })
    }

    fn mmu(&mut self, kind: MmuKind, d: &[u8]) -> EventKind<'static> {
        use kvmscope_trace::text::payload::{mmu_event, mmu_has_role};
        if !mmu_has_role(kind) {
            return mmu_event(kind, None, None, false);
        }
        // union kvm_mmu_page_role: `level` is bits 0-3.
        let level = self.u64(d, "role").map(|r| (r & 0xf) as u32);
        let gfn = self.u64(d, "gfn");
        mmu_event(kind, gfn, level, self.flag(d, "created").unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kvm_exit format of a 6.18 kernel, with one reason our tables do not know added to
    /// its print fmt, as a newer kernel would print it.
    fn future_kvm_exit() -> EventFormat {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/tracedat/kvm_exit.format"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let text = text.replace(
            "{ 85, \"MSR_WRITE_IMM\" }",
            "{ 85, \"MSR_WRITE_IMM\" }, { 99, \"FUTURE_EXIT\" }",
        );
        EventFormat::parse("kvm", &text, "kvm_exit.format").unwrap()
    }

    fn record(fmt: &EventFormat, values: &[(&str, u64)]) -> Vec<u8> {
        let end = fmt.fields.iter().map(|f| f.offset + f.size).max().unwrap();
        let mut data = vec![0u8; end];
        for (name, v) in values {
            let f = fmt.field(name).unwrap();
            data[f.offset..f.offset + f.size].copy_from_slice(&v.to_le_bytes()[..f.size]);
        }
        data
    }

    fn decode(fmt: &EventFormat, data: &[u8]) -> String {
        decode_with(fmt, data, &Kallsyms::default()).0
    }

    fn decode_with(fmt: &EventFormat, data: &[u8], syms: &Kallsyms) -> (String, u64) {
        let mut scratch = String::new();
        let mut unresolved = 0;
        let kind = Plan::new(fmt, syms).kind(data, &mut scratch, &mut unresolved);
        (
            format!("{:?}", resolve_scratch(&kind, &scratch)),
            unresolved,
        )
    }

    const IPI_SEND_CPUMASK: &str = "name: ipi_send_cpumask\nID: 7\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:__data_loc cpumask_t cpumask;\toffset:8;\tsize:4;\tsigned:0;\n\tfield:void * callsite;\toffset:16;\tsize:8;\tsigned:0;\n\tfield:void * callback;\toffset:24;\tsize:8;\tsigned:0;\n\nprint fmt: \"cpumask=%s callsite=%pS callback=%pS\", __get_cpumask(cpumask), REC->callsite, REC->callback\n";

    #[test]
    fn pointer_fields_are_named_from_the_files_symbols_or_counted() {
        let fmt = EventFormat::parse("ipi", IPI_SEND_CPUMASK, "t").unwrap();
        let syms = Kallsyms::parse(
            b"ffffffff81000100 T smp_call_function_many_cond\nffffffff81000400 T generic_smp_call_function_interrupt\nffffffff81000500 T _etext\n",
        );
        let mut data = record(
            &fmt,
            &[
                ("callsite", 0xffffffff81000234),
                ("callback", 0xffffffff81000400),
            ],
        );
        // cpumask: 8 bytes at offset 32 (loc = len << 16 | offset), CPUs 0 and 3
        data.resize(40, 0);
        data[8..12].copy_from_slice(&((8u32 << 16) | 32).to_le_bytes());
        data[32] = 0b1001;
        let (got, unresolved) = decode_with(&fmt, &data, &syms);
        assert_eq!(unresolved, 0);
        assert!(got.contains("cpumask: \"9\""), "{got}");
        assert!(
            got.contains("callsite: \"smp_call_function_many_cond\""),
            "{got}"
        );
        assert!(
            got.contains("callback: \"generic_smp_call_function_interrupt\""),
            "{got}"
        );
        // Another kernel's addresses stay hex and are counted; null is 0x0, not counted.
        let other = record(&fmt, &[("callsite", 0xffffffff90000000), ("callback", 0)]);
        let (got, unresolved) = decode_with(&fmt, &other, &syms);
        assert_eq!(unresolved, 1);
        assert!(got.contains("callsite: \"0xffffffff90000000\""), "{got}");
        assert!(got.contains("callback: \"0x0\""), "{got}");
    }

    #[test]
    fn one_plan_names_every_pointer_as_a_fresh_lookup_would() {
        // More addresses than the memo has slots (so some share one), 64-byte aligned as on
        // arm64, with offsets inside symbols, unknown and null ones: one plan reused record
        // after record, as the reader does, names each as the table does.
        let fmt = EventFormat::parse("ipi", IPI_SEND_CPUMASK, "t").unwrap();
        let mut table = String::new();
        for k in 0..20u64 {
            table += &format!("{:016x} T f{k}\n", 0xffff_8000_8000_0000u64 + k * 0x40);
        }
        table += "ffff800080000800 T _etext\n";
        let syms = Kallsyms::parse(table.as_bytes());
        let mut addrs: Vec<u64> = (0..20u64)
            .map(|k| 0xffff_8000_8000_0000 + k * 0x40 + (k % 3) * 4)
            .collect();
        addrs.extend([0xffff_8000_9000_0000, 0, 0xffff_8000_8000_0040]);
        assert!(addrs.len() > 2 * SYMBOL_MEMO);
        let mut plan = Plan::new(&fmt, &syms);
        let (mut scratch, mut unresolved) = (String::new(), 0);
        for (k, &a) in addrs.iter().cycle().take(3 * addrs.len()).enumerate() {
            let b = addrs[(k * 3 + 1) % addrs.len()];
            let data = record(&fmt, &[("callsite", a), ("callback", b)]);
            scratch.clear();
            let kind = plan.kind(&data, &mut scratch, &mut unresolved);
            let got = format!("{:?}", resolve_scratch(&kind, &scratch));
            let name = |v: u64| match syms.lookup(v) {
                Some(n) if v != 0 => n.to_string(),
                _ => format!("{v:#x}"),
            };
            assert!(
                got.contains(&format!("callsite: \"{}\"", name(a))),
                "{k}: {got}"
            );
            assert!(
                got.contains(&format!("callback: \"{}\"", name(b))),
                "{k}: {got}"
            );
        }
    }

    #[test]
    fn exit_reasons_unknown_to_our_tables_take_the_kernels_name() {
        let fmt = future_kvm_exit();
        let new = record(&fmt, &[("exit_reason", 99), ("isa", 1), ("vcpu_id", 3)]);
        let got = decode(&fmt, &new);
        assert!(
            got.contains("Named(\"FUTURE_EXIT\")") && got.contains("vcpu: Some(3)"),
            "{got}"
        );
        // A known reason keeps its code (named from our tables at render time).
        let known = record(&fmt, &[("exit_reason", 48), ("isa", 1)]);
        assert!(decode(&fmt, &known).contains("Vmx(48)"));
        // A code nobody names stays a number.
        let unknown = record(&fmt, &[("exit_reason", 98), ("isa", 1)]);
        assert!(decode(&fmt, &unknown).contains("Vmx(98)"));
        // SVM codes are read with the SVM table.
        let svm = record(&fmt, &[("exit_reason", 0x400), ("isa", 2)]);
        assert!(decode(&fmt, &svm).contains("Svm(1024)"));
    }

    /// A plan reads every integer field as the format's own `Field::u64` does: each size,
    /// signed or not, arrays and strings refused, short records refused.
    #[test]
    fn plan_reads_fields_as_the_format_does() {
        let text = "name: x\nID: 7\nformat:\n\tfield:u8 a;\toffset:0;\tsize:1;\tsigned:0;\n\tfield:s8 b;\toffset:1;\tsize:1;\tsigned:1;\n\tfield:u16 c;\toffset:2;\tsize:2;\tsigned:0;\n\tfield:s16 d;\toffset:4;\tsize:2;\tsigned:1;\n\tfield:u32 e;\toffset:8;\tsize:4;\tsigned:0;\n\tfield:int f;\toffset:12;\tsize:4;\tsigned:1;\n\tfield:u64 g;\toffset:16;\tsize:8;\tsigned:0;\n\tfield:s64 h;\toffset:24;\tsize:8;\tsigned:1;\n\tfield:char s[4];\toffset:32;\tsize:4;\tsigned:0;\n\tfield:__data_loc char[] m;\toffset:36;\tsize:4;\tsigned:0;\n\nprint fmt: \"%d\", REC->a\n";
        let fmt = EventFormat::parse("s", text, "t").unwrap();
        let syms = Kallsyms::default();
        let data: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37) ^ 0x80).collect();
        for len in [40, 30, 20, 13, 9, 5, 2, 0] {
            let d = &data[..len];
            let mut plan = Plan::new(&fmt, &syms);
            for name in ["a", "b", "c", "d", "e", "f", "g", "h", "s", "m", "none"] {
                let want = fmt.field(name).and_then(|f| f.u64(d));
                assert_eq!(plan.u64(d, name), want, "{name} of {len} bytes");
            }
        }
    }

    /// Records decoded on the decoder thread, on the caller's, or split between them as the
    /// load says: the same events, in the same order, with the same counts.
    #[test]
    fn either_thread_decodes_to_the_same_events() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/tracedat");
        for f in [
            "kvmscope-record-lab-v6.dat",
            "svm-emulated-pio.dat",
            "trace-cmd-extract-lab-v7-zstd.dat",
        ] {
            let path = Path::new(dir).join(f);
            let run = |split| {
                let mut out = Vec::new();
                let summary = read(&path, split, |ev| out.push(format!("{ev:?}"))).unwrap();
                (out, summary)
            };
            let decoder = run(Split::Decoder);
            assert!(decoder.0.len() > BATCH, "{f}: {} events", decoder.0.len());
            assert_eq!(decoder, run(Split::Caller), "{f}");
            assert_eq!(decoder, run(Split::Balance), "{f}");
        }
    }
}
