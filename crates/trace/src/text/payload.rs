//! Typed decoding of printed tracepoint payloads, one small function per event. Every function
//! returns `None` when the text does not have the expected shape; the caller then keeps the
//! event as [`EventKind::Other`] (counted as "fields not decoded"), never an error.

use crate::bytes::{find_any, find_byte};
use crate::event::{ArmExitKind, EventKind, ExitReason, KvmExit, MmioKind, MmuKind};
use crate::fields::{
    contains, dec, dec32, dec_i64, find, find_str, hex, hex32, split_once, symbol, Cursor,
};
use crate::tables;

/// The tracepoint system of an event printed without one (ftrace text), for the events we know.
pub fn system_of(name: &str) -> &'static str {
    if let Some(rest) = name.strip_prefix("kvm_") {
        if rest.starts_with("mmu_") || rest.starts_with("tdp_mmu_") {
            return "kvmmmu";
        }
        return "kvm";
    }
    match name {
        "mark_mmio_spte" | "handle_mmio_page_fault" | "fast_page_fault" | "check_mmio_spte" => {
            "kvmmmu"
        }
        // arm64's vgic tracepoint is in the kvm system without the prefix.
        "vcpu_match_mmio" | "vgic_update_irq_pending" => "kvm",
        "irq_handler_entry" | "irq_handler_exit" | "softirq_entry" | "softirq_exit"
        | "softirq_raise" => "irq",
        "tlb_flush" => "tlb",
        "tracing_mark_write" | "print" => "ftrace",
        "write_msr" | "read_msr" | "rdpmc" => "msr",
        "sched_switch" | "sched_wakeup" | "sched_wakeup_new" | "sched_waking"
        | "sched_migrate_task" => "sched",
        _ if name.starts_with("ipi_") => "ipi",
        _ if name.starts_with("csd_") => "csd",
        _ if name.starts_with("hrtimer_")
            || name.starts_with("timer_")
            || name.starts_with("tick_") =>
        {
            "timer"
        }
        _ if irq_vector_name(name).is_some() => "irq_vectors",
        _ => "",
    }
}

fn irq_vector_name(name: &str) -> Option<(&str, bool)> {
    let (base, entry) = if let Some(b) = name.strip_suffix("_entry") {
        (b, true)
    } else {
        (name.strip_suffix("_exit")?, false)
    };
    matches!(
        base,
        "local_timer"
            | "spurious_apic"
            | "error_apic"
            | "x86_platform_ipi"
            | "irq_work"
            | "reschedule"
            | "call_function"
            | "call_function_single"
            | "threshold_apic"
            | "deferred_error_apic"
            | "thermal_apic"
            | "posted_interrupt"
            | "posted_interrupt_wakeup"
            | "posted_interrupt_nested"
    )
    .then_some((base, entry))
}

/// Decodes the payload of `system:name` (system may be empty). Events without a typed decoder
/// give [`EventKind::Other`]; `None` means the event has a decoder but its text did not have
/// the expected shape.
pub fn decode<'a>(system: &str, name: &str, p: &'a str) -> Option<EventKind<'a>> {
    decoder(system, name).decode(name, p)
}

/// A payload decoder whose kinds hold no string of the payload.
pub type OwnedFn = fn(&str, &str) -> Option<EventKind<'static>>;
/// A payload decoder whose kinds may hold strings of the payload.
pub type BorrowingFn = for<'a> fn(&str, &'a str) -> Option<EventKind<'a>>;

/// A payload decoder: `(name, payload)` → the typed payload, as [`decode`] gives it. Most
/// events' kinds hold no string of the payload: their decoder says so in its type, so that a
/// consumer that keeps kinds past their line (the two-thread decoder) keeps them as they are,
/// without a pass over their strings.
#[derive(Clone, Copy)]
pub enum Decoder {
    Owned(OwnedFn),
    Borrowing(BorrowingFn),
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decoder::Owned(_) => "Decoder::Owned",
            Decoder::Borrowing(_) => "Decoder::Borrowing",
        })
    }
}

impl Decoder {
    #[inline(always)]
    pub fn decode<'a>(self, name: &str, p: &'a str) -> Option<EventKind<'a>> {
        match self {
            Decoder::Owned(f) => f(name, p),
            Decoder::Borrowing(f) => f(name, p),
        }
    }
}

/// The decoder of `system:name` (system may be empty): resolved once per name by callers that
/// intern names, so that the per-event work is the decoder alone.
pub fn decoder(system: &str, name: &str) -> Decoder {
    if system == "msr" || (system.is_empty() && matches!(name, "write_msr" | "read_msr" | "rdpmc"))
    {
        return Decoder::Owned(guest_msr);
    }
    match borrowing_decoder(name) {
        Some(f) => Decoder::Borrowing(f),
        None => Decoder::Owned(owned_decoder(system, name)),
    }
}

/// The decoders of the events whose kinds hold strings of the payload; `None` for the others.
fn borrowing_decoder(name: &str) -> Option<BorrowingFn> {
    Some(match name {
        "kvm_exit" => |_, p| Some(EventKind::KvmExit(kvm_exit(p)?)),
        "kvm_apic" => |_, p| apic(p),
        "kvm_sys_access" => |_, p| sys_access(p),
        "ipi_send_cpu" => |_, p| {
            let mut c = Cursor::new(p);
            Some(EventKind::IpiSend {
                cpu: Some(dec32(c.find("cpu")?)?),
                cpumask: "",
                callsite: symbol(c.find("callsite")?),
                callback: symbol(c.find("callback")?),
            })
        },
        "ipi_send_cpumask" => |_, p| {
            let mut c = Cursor::new(p);
            Some(EventKind::IpiSend {
                cpu: None,
                cpumask: c.find("cpumask")?,
                callsite: symbol(c.find("callsite")?),
                callback: symbol(c.find("callback")?),
            })
        },
        "ipi_raise" => |_, p| {
            Some({
                let target = find(p, "target_mask")?;
                EventKind::IpiRaise {
                    target,
                    reason: paren_tail(p)?,
                }
            })
        },
        "ipi_entry" | "ipi_exit" => |_, p| {
            Some(EventKind::IpiEntry {
                reason: paren_tail(p)?,
            })
        },
        "csd_queue_cpu" => |_, p| {
            let mut c = Cursor::new(p);
            Some(EventKind::CsdQueue {
                cpu: dec32(c.find("cpu")?)?,
                func: symbol(c.find("func")?),
            })
        },
        "csd_function_entry" | "csd_function_exit" => |name, p| {
            Some(EventKind::CsdFunction {
                entry: name == "csd_function_entry",
                func: symbol(find(p, "func")?),
            })
        },
        "hrtimer_start" => |_, p| {
            let mut c = Cursor::new(p);
            Some(EventKind::HrtimerStart {
                hrtimer: hex(c.find("hrtimer")?)?,
                function: symbol(c.find("function")?),
                expires_ns: c.find("expires").and_then(dec),
            })
        },
        "hrtimer_expire_entry" => |_, p| {
            let mut c = Cursor::new(p);
            Some(EventKind::HrtimerExpireEntry {
                hrtimer: hex(c.find("hrtimer")?)?,
                function: symbol(c.find("function")?),
            })
        },
        "sched_switch" => |_, p| sched_switch(p),
        "sched_wakeup" | "sched_wakeup_new" | "sched_waking" => |_, p| {
            Some(EventKind::SchedWakeup {
                comm: between(p, "comm=", " pid=")?,
                tid: dec32(find(p, "pid")?)?,
                target_cpu: find(p, "target_cpu").and_then(dec32),
            })
        },
        _ => return None,
    })
}

/// The decoders of the other events (their kinds hold no string of the payload), and of events
/// without a typed decoder.
fn owned_decoder(system: &str, name: &str) -> OwnedFn {
    match name {
        "kvm_entry" => |_, p| Some(kvm_entry(p)),
        "kvm_userspace_exit" => |_, p| userspace_exit(p),
        "kvm_pio" => |_, p| pio(p),
        "kvm_mmio" => |_, p| mmio(p),
        "kvm_msr" => |_, p| msr(p),
        "kvm_cr" => |_, p| cr(p),
        "kvm_page_fault" => |_, p| page_fault(p),
        "kvm_inj_virq" => |_, p| inj_virq(p),
        "kvm_inj_exception" => |_, p| {
            Some(EventKind::InjException {
                vector: exception_vector(p)?,
            })
        },
        "kvm_apic_ipi" => |_, p| {
            let mut c = Cursor::new(p);
            Some(EventKind::ApicIpi {
                dst: hex32(c.find("dst")?)?,
                vec: dec32(c.find("vec")?)?,
            })
        },
        "kvm_apic_accept_irq" => |_, p| {
            let mut c = Cursor::new(p);
            Some(EventKind::ApicAcceptIrq {
                apicid: dec32(c.find("apicid")?)?,
                vec: dec32(c.find("vec")?)?,
                coalesced: p.ends_with("(coalesced)"),
            })
        },
        "kvm_eoi" => |_, p| {
            Some(EventKind::Eoi {
                vector: dec_i64(find(p, "vector")?)?,
            })
        },
        "kvm_hv_timer_state" => |_, p| {
            let mut c = Cursor::new(p);
            Some(EventKind::HvTimerState {
                vcpu: dec32(c.find("vcpu_id")?)?,
                hv_timer: c.find("hv_timer")? != "0",
            })
        },
        "kvm_wait_lapic_expire" => |_, p| {
            let mut c = Cursor::new(p);
            Some(EventKind::WaitLapicExpire {
                vcpu: dec32(c.find("vcpu")?)?,
                delta_ns: dec_i64(c.find("delta")?)?,
            })
        },
        "kvm_vcpu_wakeup" => |_, p| {
            let mut c = Cursor::new(p);
            Some(EventKind::VcpuWakeup {
                ns: dec(c.find("time")?)?,
                waited: p.starts_with("wait"),
                valid: c.find("polling")? == "valid",
            })
        },
        "kvm_halt_poll_ns" => |_, p| halt_poll_ns(p),
        "kvm_fpu" => |_, p| {
            Some(EventKind::Fpu {
                load: p.trim_ascii_end() == "load",
            })
        },
        "kvm_emulate_insn" => |_, p| {
            Some(EventKind::EmulateInsn {
                failed: p.trim_ascii_end().ends_with(" failed"),
            })
        },
        "kvm_cpuid" => |_, p| {
            Some(EventKind::Cpuid {
                function: hex32(find(p, "func")?)?,
            })
        },
        "kvm_pv_tlb_flush" => |_, p| {
            let mut c = Cursor::new(p);
            Some(EventKind::PvTlbFlush {
                vcpu: dec32(c.find("vcpu")?)?,
                need_flush: c.find("need_flush_tlb")? == "true",
            })
        },
        "kvm_set_irq" => |_, p| {
            let mut c = Cursor::new(p);
            Some(EventKind::SetIrq {
                gsi: dec32(c.find("gsi")?)?,
                level: i32::try_from(dec_i64(c.find("level")?)?).ok()?,
            })
        },
        "kvm_msi_set_irq" => |_, p| {
            let mut c = Cursor::new(p);
            Some(EventKind::MsiSetIrq {
                dst: hex(c.find("dst")?)?,
                vec: dec32(c.find("vec")?)?,
            })
        },
        "kvm_wfx_arm64" => |_, p| wfx(p),
        "kvm_get_timer_map" => |_, p| {
            let v = p.strip_prefix("VCPU: ")?;
            let end = find_byte(v.as_bytes(), 0, b',').unwrap_or(v.len());
            Some(EventKind::VcpuIndex {
                vcpu: v[..end].trim_ascii().parse().ok()?,
            })
        },
        "kvm_handle_sys_reg" => |_, p| {
            Some({
                let esr = find(p, "HSR").or_else(|| find(p, "ESR")).and_then(hex);
                let decoded = esr.and_then(crate::tables::sysreg_from_esr);
                EventKind::SysReg {
                    esr,
                    enc: decoded.map(|d| d.0),
                    name: decoded
                        .and_then(|d| crate::tables::sysreg_name(d.0))
                        .unwrap_or(""),
                    write: decoded.map(|d| d.1),
                }
            })
        },
        "hrtimer_expire_exit" => |_, p| {
            Some(EventKind::HrtimerExpireExit {
                hrtimer: hex(find(p, "hrtimer")?)?,
            })
        },
        "hrtimer_cancel" => |_, p| {
            Some(EventKind::HrtimerCancel {
                hrtimer: hex(find(p, "hrtimer")?)?,
            })
        },
        _ if system == "kvmmmu" || system_of(name) == "kvmmmu" => mmu_decoder(mmu_kind(name)),
        _ => match irq_vector_name(name) {
            Some((_, true)) => |_, p| {
                Some(EventKind::IrqVector {
                    entry: true,
                    vector: find(p, "vector").and_then(dec32),
                })
            },
            Some((_, false)) => |_, p| {
                Some(EventKind::IrqVector {
                    entry: false,
                    vector: find(p, "vector").and_then(dec32),
                })
            },
            None => |_, _| Some(EventKind::Other),
        },
    }
}

/// The text between `start` and the next `end`.
fn between<'a>(p: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = p.find(start)? + start.len();
    let len = p[from..].find(end)?;
    Some(&p[from..from + len])
}

/// The text inside the last `(...)`.
fn paren_tail(p: &str) -> Option<&str> {
    let p = p.trim_ascii_end();
    let open = memchr::memrchr(b'(', p.as_bytes())?;
    p[open + 1..].strip_suffix(')')
}

/// Resolves a printed exit reason to a code where our tables know it.
pub fn exit_reason(text: &str) -> ExitReason<'_> {
    if let Some(code) = tables::vmx_exit_code(text) {
        return ExitReason::Vmx(code);
    }
    if let Some(code) = tables::svm_exit_code(text) {
        return ExitReason::Svm(code);
    }
    if let Some(h) = text.strip_prefix("0x") {
        if let Ok(v) = u64::from_str_radix(h, 16) {
            return ExitReason::Code(v);
        }
    }
    if let Ok(v) = text.parse() {
        return ExitReason::Code(v);
    }
    ExitReason::Named(text)
}

fn kvm_exit(p: &str) -> Option<KvmExit<'_>> {
    let (vcpu, rest) = match p.strip_prefix("vcpu ") {
        Some(r) => {
            let sp = find_byte(r.as_bytes(), 0, b' ')?;
            (dec32(&r[..sp]), &r[sp + 1..])
        }
        None => (None, p),
    };
    let Some(rest) = rest.strip_prefix("reason ") else {
        let pos = find_str(p, "SR_EC: ")?;
        return arm64_exit(p, pos);
    };
    // The reason runs up to the ` rip ` token; SVM names may hold a space (`PF excp`).
    let b = rest.as_bytes();
    let mut end = b.len();
    let mut from = 0;
    while let Some(sp) = find_byte(b, from, b' ') {
        if b[sp + 1..].starts_with(b"rip ") {
            end = sp;
            break;
        }
        from = sp + 1;
    }
    let mut text = crate::fields::trim_end_blank(&rest[..end]);
    let mut failed_vmentry = false;
    if let Some(t) = text.strip_suffix(" FAILED_VMENTRY") {
        text = t.trim_ascii_end();
        failed_vmentry = true;
    }
    let (rip, info1, info2) =
        exit_fields(&rest[end..]).unwrap_or_else(|| exit_tokens(&rest[end..]));
    Some(KvmExit {
        reason: exit_reason(text),
        failed_vmentry,
        vcpu,
        rip,
        info1,
        info2,
    })
}

type ExitFields = (Option<u64>, Option<u64>, Option<u64>);

/// The hex value up to the next space (or the end), and the text from that space on.
#[inline]
fn value(t: &str) -> Option<(u64, &str)> {
    let end = find_byte(t.as_bytes(), 0, b' ').unwrap_or(t.len());
    Some((hex(&t[..end])?, &t[end..]))
}

/// ` rip X info1 Y info2 Z` (the kernel's format since it prints intr_info and error_code) or
/// ` rip X info Y Z` (older kernels, and trace-cmd's kvm plugin), read in one walk; `None` for
/// anything else (or a value that is not hex), which [`exit_tokens`] reads.
#[inline]
fn exit_fields(t: &str) -> Option<ExitFields> {
    let (rip, t) = value(t.strip_prefix(" rip ")?)?;
    let (info1, info2) = if let Some(t) = t.strip_prefix(" info1 ") {
        let (info1, t) = value(t)?;
        (info1, value(t.strip_prefix(" info2 ")?)?.0)
    } else {
        // `info %llx %llx`
        let (info1, t) = value(t.strip_prefix(" info ")?)?;
        (info1, value(t.strip_prefix(' ')?)?.0)
    };
    Some((Some(rip), Some(info1), Some(info2)))
}

/// The fields after the reason, token by token, in any layout.
fn exit_tokens(t: &str) -> ExitFields {
    let (mut rip, mut info1, mut info2) = (None, None, None);
    let mut tokens = crate::fields::tokens(t);
    while let Some(key) = tokens.next() {
        match key {
            "rip" => rip = tokens.next().and_then(hex),
            "info1" => info1 = tokens.next().and_then(hex),
            // info2 is the last field read in every layout (intr_info and error_code follow)
            "info2" => {
                info2 = tokens.next().and_then(hex);
                break;
            }
            // old layout: `info %llx %llx`
            "info" => {
                info1 = tokens.next().and_then(hex);
                info2 = tokens.next().and_then(hex);
                break;
            }
            _ => {
                tokens.next();
            }
        }
    }
    (rip, info1, info2)
}

/// The kernel's own text of a kvm_exit or kvm_entry payload that trace-cmd's kvm plugin
/// prefixed with the x86 fields it could not find on an arm64 host: `<CANT FIND FIELD
/// exit_reason>TRAP: HSR_EC: ...`, `CAN'T FIND FIELD "vcpu_id"<CANT FIND FIELD rip>PC: ...`.
/// Other payloads come back whole.
fn without_plugin_notes(p: &str) -> &str {
    match p.as_bytes().first() {
        Some(b'<' | b'C') if contains(p, "FIND FIELD") => {
            match memchr::memrchr(b'>', p.as_bytes()) {
                Some(gt) => &p[gt + 1..],
                None => p,
            }
        }
        _ => p,
    }
}

fn arm64_exit(p: &str, ec_pos: usize) -> Option<KvmExit<'_>> {
    let head = without_plugin_notes(&p[..ec_pos]);
    let head = &head[..find_byte(head.as_bytes(), 0, b':').unwrap_or(head.len())];
    let kind = match head.trim_ascii() {
        "IRQ" => ArmExitKind::Irq,
        "SERROR" => ArmExitKind::Serror,
        "TRAP" | "H" | "E" => ArmExitKind::Trap,
        "ILLEGAL" => ArmExitKind::Il,
        _ if ec_pos <= 1 => ArmExitKind::Trap,
        _ => ArmExitKind::Other,
    };
    let ec_text = &p[ec_pos + "SR_EC: ".len()..];
    let ec_text =
        &ec_text[..find_any(ec_text.as_bytes(), 0, [b' ', b',']).unwrap_or(ec_text.len())];
    let ec = hex32(ec_text)?;
    let rip = find(p, "PC").and_then(hex);
    Some(KvmExit {
        reason: ExitReason::Arm64 { kind, ec },
        failed_vmentry: false,
        vcpu: None,
        rip,
        info1: None,
        info2: None,
    })
}

fn kvm_entry(p: &str) -> EventKind<'static> {
    if let Some((vcpu, rip)) = entry_fields(p) {
        return EventKind::KvmEntry {
            vcpu: Some(vcpu),
            rip: Some(rip),
        };
    }
    entry_keys(p)
}

/// Any kvm_entry payload, field by field: `vcpu`, then `rip` (x86) or `PC` (arm64).
fn entry_keys(p: &str) -> EventKind<'static> {
    let mut c = Cursor::new(without_plugin_notes(p));
    let vcpu = c.find("vcpu").and_then(dec32);
    let rip = c.find("rip").or_else(|| c.find("PC")).and_then(hex);
    EventKind::KvmEntry { vcpu, rip }
}

/// `vcpu N, rip X` (the kernel's format) or `vcpu N rip X` (trace-cmd's kvm plugin), with
/// anything after the rip, read in one walk; `None` for anything else, which the key search
/// in [`kvm_entry`] reads.
#[inline]
fn entry_fields(p: &str) -> Option<(u32, u64)> {
    let t = p.strip_prefix("vcpu ")?;
    let b = t.as_bytes();
    let end = find_any(b, 0, [b',', b' '])?;
    let vcpu = dec32(&t[..end])?;
    let t = &t[end..];
    let t = t.strip_prefix(',').unwrap_or(t).strip_prefix(" rip ")?;
    Some((vcpu, value(t)?.0))
}

fn userspace_exit(p: &str) -> Option<EventKind<'static>> {
    let n = dec32(paren_tail(p)?)?;
    let what = find(p, "reason")?;
    Some(match what {
        "restart" | "error" => EventKind::UserspaceExit {
            reason: 0,
            errno: Some(n),
        },
        _ => EventKind::UserspaceExit {
            reason: n,
            errno: None,
        },
    })
}

fn pio(p: &str) -> Option<EventKind<'static>> {
    let mut c = Cursor::new(p);
    let write = if p.starts_with("pio_write") {
        true
    } else if p.starts_with("pio_read") {
        false
    } else {
        return None;
    };
    Some(EventKind::Pio {
        write,
        port: hex32(c.find("at")?)?,
        size: dec32(c.find("size")?)?,
        count: dec32(c.find("count")?)?,
        val: c.find("val").and_then(hex).unwrap_or(0),
    })
}

fn mmio(p: &str) -> Option<EventKind<'static>> {
    let mut c = Cursor::new(p);
    let kind = match p.strip_prefix("mmio ")?.split(' ').next()? {
        "write" => MmioKind::Write,
        "read" => MmioKind::Read,
        "unsatisfied-read" => MmioKind::UnsatisfiedRead,
        _ => return None,
    };
    Some(EventKind::Mmio {
        kind,
        len: dec32(c.find("len")?)?,
        gpa: hex(c.find("gpa")?)?,
        val: c.find("val").and_then(hex).unwrap_or(0),
    })
}

fn msr(p: &str) -> Option<EventKind<'static>> {
    let (write, rest) = if let Some(r) = p.strip_prefix("msr_write ") {
        (true, r)
    } else {
        (false, p.strip_prefix("msr_read ")?)
    };
    let (idx, val) = split_once(rest, " = ")?;
    let val = val.trim_ascii_end();
    let (val, gp) = match val.strip_suffix(" (#GP)") {
        Some(v) => (v, true),
        None => (val, false),
    };
    Some(EventKind::Msr {
        write,
        msr: hex32(idx)?,
        data: hex(val)?,
        gp,
    })
}

fn guest_msr(name: &str, p: &str) -> Option<EventKind<'static>> {
    let (idx, rest) = split_once(p, ", value ")?;
    let rest = rest.trim_ascii_end();
    let (val, failed) = match rest.strip_suffix(" #GP") {
        Some(v) => (v, true),
        None => (rest, false),
    };
    Some(EventKind::GuestMsr {
        write: name == "write_msr",
        msr: hex32(idx)?,
        val: hex(val)?,
        failed,
    })
}

fn cr(p: &str) -> Option<EventKind<'static>> {
    let (write, rest) = if let Some(r) = p.strip_prefix("cr_write ") {
        (true, r)
    } else {
        (false, p.strip_prefix("cr_read ")?)
    };
    let (idx, val) = split_once(rest, " = ")?;
    Some(EventKind::Cr {
        write,
        cr: dec32(idx)?,
        val: hex(val.trim_ascii_end())?,
    })
}

fn page_fault(p: &str) -> Option<EventKind<'static>> {
    let mut c = Cursor::new(p);
    Some(EventKind::PageFault {
        vcpu: c.find("vcpu").and_then(dec32),
        addr: hex(c.find("address")?)?,
        error_code: hex(c.find("error_code")?)?,
    })
}

fn inj_virq(p: &str) -> Option<EventKind<'static>> {
    let reinjected = contains(p, "[reinjected]");
    if let Some(v) = find(p, "irq") {
        return Some(EventKind::InjVirq {
            irq: dec32(v)?,
            soft: false,
            reinjected,
        });
    }
    let soft = p.starts_with("Soft");
    let v = p.split(' ').nth(1)?;
    Some(EventKind::InjVirq {
        irq: hex32(v)?,
        soft,
        reinjected,
    })
}

fn exception_vector(p: &str) -> Option<u32> {
    let name = &p[..find_any(p.as_bytes(), 0, [b' ', b'(']).unwrap_or(p.len())];
    Some(match name {
        "#DE" => 0,
        "#DB" => 1,
        "#BP" => 3,
        "#OF" => 4,
        "#BR" => 5,
        "#UD" => 6,
        "#NM" => 7,
        "#DF" => 8,
        "#TS" => 10,
        "#NP" => 11,
        "#SS" => 12,
        "#GP" => 13,
        "#PF" => 14,
        "#MF" => 16,
        "#AC" => 17,
        "#MC" => 18,
        _ => dec32(name).or_else(|| hex32(name))?,
    })
}

fn apic(p: &str) -> Option<EventKind<'_>> {
    let (write, rest) = if let Some(r) = p.strip_prefix("apic_write ") {
        (true, r)
    } else {
        (false, p.strip_prefix("apic_read ")?)
    };
    let (reg, val) = split_once(rest, " = ")?;
    Some(EventKind::Apic {
        write,
        reg,
        val: hex(val.trim_ascii_end())?,
    })
}

fn halt_poll_ns(p: &str) -> Option<EventKind<'static>> {
    let mut c = Cursor::new(p);
    let vcpu = dec32(c.find("vcpu")?)?;
    let new = dec(c.find("halt_poll_ns")?)?;
    let (grow, old) = if let Some(v) = c.find("(grow") {
        (true, v)
    } else {
        (false, c.find("(shrink")?)
    };
    Some(EventKind::HaltPollNs {
        vcpu,
        grow,
        new,
        old: dec(old)?,
    })
}

fn wfx(p: &str) -> Option<EventKind<'static>> {
    let rest = p.strip_prefix("guest executed wf")?;
    let wfe = match rest.as_bytes().first()? {
        b'e' => true,
        b'i' => false,
        _ => return None,
    };
    let pc = rest.rsplit(' ').next().and_then(hex).unwrap_or(0);
    Some(EventKind::Wfx { wfe, pc })
}

fn sys_access(p: &str) -> Option<EventKind<'_>> {
    let write = if contains(p, " write to ") {
        Some(true)
    } else if contains(p, " read from ") {
        Some(false)
    } else {
        None
    };
    // "PC: 0x... write to (3,0,12,11,5) SYS_ICC_SGI1R_EL1"
    let name = p.trim_ascii_end().rsplit(' ').next()?;
    let enc = p
        .find('(')
        .and_then(|i| p[i + 1..].split_once(')'))
        .and_then(|(inside, _)| {
            let mut v = [0u8; 5];
            let mut parts = inside.split(',');
            for slot in &mut v {
                *slot = parts.next()?.trim_ascii().parse().ok()?;
            }
            parts.next().is_none().then_some(v)
        });
    let name = if name.ends_with(')') { "" } else { name };
    Some(EventKind::SysReg {
        esr: None,
        enc,
        name,
        write,
    })
}

fn sched_switch(p: &str) -> Option<EventKind<'_>> {
    let (prev, next) = split_once(p, " ==> ")?;
    Some(EventKind::SchedSwitch {
        prev_comm: between(prev, "prev_comm=", " prev_pid=")?,
        prev_tid: dec32(find(prev, "prev_pid")?)?,
        prev_state: find(prev, "prev_state").unwrap_or(""),
        next_comm: between(next, "next_comm=", " next_pid=")?,
        next_tid: dec32(find(next, "next_pid")?)?,
    })
}

/// The kvmmmu event kind of a tracepoint name.
pub fn mmu_kind(name: &str) -> MmuKind {
    match name {
        "kvm_mmu_get_page" => MmuKind::GetPage,
        "kvm_mmu_sync_page" => MmuKind::SyncPage,
        "kvm_mmu_unsync_page" => MmuKind::Unsync,
        "kvm_mmu_prepare_zap_page" => MmuKind::PrepareZap,
        "kvm_mmu_zap_page" => MmuKind::ZapPage,
        "kvm_mmu_set_spte" => MmuKind::SetSpte,
        "kvm_mmu_spte_requested" => MmuKind::SptePrequested,
        "kvm_mmu_set_dirty_bit" => MmuKind::SetDirtyBit,
        "kvm_mmu_set_accessed_bit" => MmuKind::SetAccessedBit,
        "kvm_mmu_pagetable_walk" => MmuKind::PagetableWalk,
        "kvm_mmu_paging_element" => MmuKind::PagingElement,
        "kvm_mmu_walker_error" => MmuKind::WalkerError,
        "fast_page_fault" => MmuKind::FastPageFault,
        "mark_mmio_spte" => MmuKind::MmioSpte,
        "handle_mmio_page_fault" => MmuKind::HandleMmioPageFault,
        "check_mmio_spte" => MmuKind::CheckMmioSpte,
        "kvm_mmu_zap_all_fast" | "kvm_mmu_invalidate_zap_all_pages" => {
            MmuKind::InvalidateZapAllFast
        }
        "kvm_mmu_split_huge_page" => MmuKind::SplitHugePage,
        "kvm_tdp_mmu_spte_changed" => MmuKind::TdpMmuSptChanged,
        _ => MmuKind::Other,
    }
}

/// Whether a kvmmmu event describes a shadow page with its role (`sp gen N gfn X lL ...`):
/// only those have a gfn, a level and new/existing.
pub fn mmu_has_role(kind: MmuKind) -> bool {
    matches!(
        kind,
        MmuKind::GetPage | MmuKind::SyncPage | MmuKind::Unsync | MmuKind::PrepareZap
    )
}

/// A kvmmmu event from its parts, whatever the source. A page is a root when
/// `kvm_mmu_get_page` returns a level-4 (or 5) page: that is a (re)load of an MMU root.
pub fn mmu_event(
    kind: MmuKind,
    gfn: Option<u64>,
    level: Option<u32>,
    created: bool,
) -> EventKind<'static> {
    let role = mmu_has_role(kind);
    EventKind::Mmu {
        kind,
        gfn: gfn.filter(|_| role),
        level: level.filter(|_| role),
        created: created && role,
        root: role && kind == MmuKind::GetPage && level.is_some_and(|l| l >= 4),
    }
}

/// The decoder of kvmmmu events of `kind`: the kind is resolved from the name once, not per
/// event (kvm_mmu_paging_element alone can be a third of a shadow-paging trace).
fn mmu_decoder(kind: MmuKind) -> OwnedFn {
    use MmuKind as M;
    macro_rules! of {
        ($k:expr) => {
            |_, p| Some(mmu($k, p))
        };
    }
    match kind {
        M::GetPage => of!(M::GetPage),
        M::SyncPage => of!(M::SyncPage),
        M::Unsync => of!(M::Unsync),
        M::PrepareZap => of!(M::PrepareZap),
        M::ZapPage => of!(M::ZapPage),
        M::SetSpte => of!(M::SetSpte),
        M::SptePrequested => of!(M::SptePrequested),
        M::SetDirtyBit => of!(M::SetDirtyBit),
        M::SetAccessedBit => of!(M::SetAccessedBit),
        M::PagetableWalk => of!(M::PagetableWalk),
        M::PagingElement => of!(M::PagingElement),
        M::WalkerError => of!(M::WalkerError),
        M::FastPageFault => of!(M::FastPageFault),
        M::MmioSpte => of!(M::MmioSpte),
        M::HandleMmioPageFault => of!(M::HandleMmioPageFault),
        M::CheckMmioSpte => of!(M::CheckMmioSpte),
        M::InvalidateZapAllFast => of!(M::InvalidateZapAllFast),
        M::SplitHugePage => of!(M::SplitHugePage),
        M::TdpMmuSptChanged => of!(M::TdpMmuSptChanged),
        M::Other => of!(M::Other),
    }
}

#[inline(always)]
fn mmu(kind: MmuKind, p: &str) -> EventKind<'static> {
    if !mmu_has_role(kind) {
        return mmu_event(kind, None, None, false);
    }
    let mut gfn = None;
    let mut level = None;
    let mut tokens = crate::fields::tokens(p);
    while let Some(t) = tokens.next() {
        if t == "gfn" {
            gfn = tokens.next().and_then(hex);
        } else if let Some(l) = t.strip_prefix('l').filter(|l| l.len() == 1) {
            level = dec32(l);
            break;
        }
    }
    let created = crate::fields::trim_end_blank(p).ends_with(" new");
    mmu_event(kind, gfn, level, created)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d<'a>(name: &str, p: &'a str) -> EventKind<'a> {
        decode(system_of(name), name, p).unwrap_or_else(|| panic!("{name}: {p}"))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// The one-walk read of `rip .. info1 .. info2 ..` gives the token loop's values
        /// wherever it accepts the text.
        #[test]
        fn exit_fields_equal_tokens(
            seps in proptest::collection::vec(proptest::sample::select(
                vec![" ", " ", " ", " ", " ", " ", " ", " ", "  ", "\t", ",", " ,"]), 6),
            values in proptest::collection::vec(proptest::sample::select(
                vec!["0x1f", "12", "ffff", "0", "0xg", "1,", "0x", "f:", ""]), 3),
            tail in "( intr_info 0x0| ,|\t|)",
        ) {
            let t = format!(
                "{}rip{}{}{}info1{}{}{}info2{}{}{tail}",
                seps[0], seps[1], values[0], seps[2], seps[3], values[1], seps[4], seps[5],
                values[2],
            );
            let old = format!(
                "{}rip{}{}{}info{}{}{}{}{tail}",
                seps[0], seps[1], values[0], seps[2], seps[3], values[1], seps[4], values[2],
            );
            if let Some(fast) = exit_fields(&old) {
                proptest::prop_assert_eq!(fast, exit_tokens(&old));
            }
            if let Some(fast) = exit_fields(&t) {
                proptest::prop_assert_eq!(fast, exit_tokens(&t));
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// The one-walk read of `vcpu N, rip X` gives the key search's values wherever it
        /// accepts the text.
        #[test]
        fn entry_fields_equal_keys(
            seps in proptest::collection::vec(proptest::sample::select(
                vec![" ", " ", " ", ", ", ",", "  ", "\t", " ,", "("]), 3),
            values in proptest::collection::vec(proptest::sample::select(
                vec!["0x1f", "12", "ffff", "0", "0xg", "1,", "0x", "f:", "", "4294967296"]), 2),
            tail in "( intr_info 0x0 error_code 0x0| \\[guest\\]| ,|\t|\\(|)",
        ) {
            let p = format!(
                "vcpu{}{}{}rip{}{}{tail}",
                seps[0], values[0], seps[1], seps[2], values[1],
            );
            if let Some((vcpu, rip)) = entry_fields(&p) {
                proptest::prop_assert_eq!(
                    EventKind::KvmEntry { vcpu: Some(vcpu), rip: Some(rip) },
                    entry_keys(&p)
                );
            }
        }
    }

    /// Text without the system column (`trace-cmd report`) names arm64's and the IRQ core's
    /// events as trace.dat's formats do.
    #[test]
    fn systems_of_names_without_their_prefix() {
        assert_eq!(system_of("vgic_update_irq_pending"), "kvm");
        assert_eq!(system_of("kvm_wfx_arm64"), "kvm");
        for n in [
            "irq_handler_entry",
            "irq_handler_exit",
            "softirq_raise",
            "softirq_entry",
        ] {
            assert_eq!(system_of(n), "irq", "{n}");
        }
        assert_eq!(system_of("local_timer_entry"), "irq_vectors");
    }

    /// `trace-cmd report` of an arm64 host (Debian's 6.x kernel under the emulated host): its
    /// kvm plugin prints the x86 fields it cannot find before the kernel's own text.
    #[test]
    fn arm64_lines_through_trace_cmds_kvm_plugin() {
        let exit = |p| match d("kvm_exit", p) {
            EventKind::KvmExit(e) => (e.reason, e.rip),
            k => panic!("{k:?}"),
        };
        assert_eq!(
            exit(
                "<CANT FIND FIELD exit_reason>TRAP: HSR_EC: 0x0018 (SYS64), PC: 0xffff8000807707f4"
            ),
            (
                ExitReason::Arm64 {
                    kind: ArmExitKind::Trap,
                    ec: 0x18
                },
                Some(0xffff8000807707f4)
            )
        );
        assert_eq!(
            exit("<CANT FIND FIELD exit_reason>IRQ: HSR_EC: 0x0000 (UNKNOWN), PC: 0xffff80008"),
            (
                ExitReason::Arm64 {
                    kind: ArmExitKind::Irq,
                    ec: 0
                },
                Some(0xffff80008)
            )
        );
        assert_eq!(
            d(
                "kvm_entry",
                "CAN'T FIND FIELD \"vcpu_id\"<CANT FIND FIELD rip>PC: 0xffff800080f1792c"
            ),
            EventKind::KvmEntry {
                vcpu: None,
                rip: Some(0xffff800080f1792c)
            }
        );
        // A payload of its own that happens to start so is read whole.
        assert_eq!(without_plugin_notes("CPU 1 > 2"), "CPU 1 > 2");
    }

    #[test]
    fn kvm_exit_layouts() {
        let EventKind::KvmExit(e) = d(
            "kvm_exit",
            "reason EPT_VIOLATION rip 0xffffffff8103 info 181 0",
        ) else {
            panic!()
        };
        assert_eq!(e.reason, ExitReason::Vmx(48));
        assert_eq!(
            (e.rip, e.info1, e.info2, e.vcpu),
            (Some(0xffffffff8103), Some(0x181), Some(0), None)
        );
        let EventKind::KvmExit(e) = d("kvm_exit", "vcpu 1 reason MSR_WRITE rip 0xffffffff810 info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000") else { panic!() };
        assert_eq!((e.reason, e.vcpu), (ExitReason::Vmx(32), Some(1)));
        let EventKind::KvmExit(e) = d(
            "kvm_exit",
            "reason npf rip 0xffffffff81 info 100000004 7f000",
        ) else {
            panic!()
        };
        assert_eq!(e.reason, ExitReason::Svm(0x400));
        let EventKind::KvmExit(e) = d("kvm_exit", "reason PF excp rip 0x1 info 6 7f000") else {
            panic!()
        };
        assert_eq!(e.reason, ExitReason::Svm(0x4e));
        let EventKind::KvmExit(e) = d("kvm_exit", "TRAP: ESR_EC: 0x01 (WFx), PC: 0xffff800010")
        else {
            panic!()
        };
        assert_eq!(
            e.reason,
            ExitReason::Arm64 {
                kind: ArmExitKind::Trap,
                ec: 1
            }
        );
        let EventKind::KvmExit(e) = d("kvm_exit", "IRQ: HSR_EC: 0x0024 (DABT_LOW), PC: 0xffff")
        else {
            panic!()
        };
        assert_eq!(
            e.reason,
            ExitReason::Arm64 {
                kind: ArmExitKind::Irq,
                ec: 0x24
            }
        );
        let EventKind::KvmExit(e) = d(
            "kvm_exit",
            "vcpu 0 reason 0x5a rip 0x1 info1 0x0 info2 0x0 intr_info 0x0 error_code 0x0",
        ) else {
            panic!()
        };
        assert_eq!(e.reason, ExitReason::Code(0x5a));
        let EventKind::KvmExit(e) = d("kvm_exit", "vcpu 0 reason EXTERNAL_INTERRUPT FAILED_VMENTRY rip 0x1 info1 0x0 info2 0x0 intr_info 0x0 error_code 0x0") else { panic!() };
        assert!(e.failed_vmentry);
        assert_eq!(e.reason, ExitReason::Vmx(1));
    }

    #[test]
    fn host_events_seen_here() {
        assert_eq!(
            d("kvm_pio", "pio_write at 0x3f8 size 1 count 1 val 0x41 "),
            EventKind::Pio {
                write: true,
                port: 0x3f8,
                size: 1,
                count: 1,
                val: 0x41
            }
        );
        assert_eq!(
            d("kvm_mmio", "mmio write len 4 gpa 0xd0000000 val 0x1"),
            EventKind::Mmio {
                kind: MmioKind::Write,
                len: 4,
                gpa: 0xd000_0000,
                val: 1
            }
        );
        assert_eq!(
            d("kvm_msr", "msr_write 6e0 = 0x1234"),
            EventKind::Msr {
                write: true,
                msr: 0x6e0,
                data: 0x1234,
                gp: false
            }
        );
        assert_eq!(
            d("kvm_msr", "msr_read 1b = 0x0 (#GP)"),
            EventKind::Msr {
                write: false,
                msr: 0x1b,
                data: 0,
                gp: true
            }
        );
        assert_eq!(
            d("kvm_userspace_exit", "reason KVM_EXIT_IO (2)"),
            EventKind::UserspaceExit {
                reason: 2,
                errno: None
            }
        );
        assert_eq!(
            d("kvm_userspace_exit", "reason restart (4)"),
            EventKind::UserspaceExit {
                reason: 0,
                errno: Some(4)
            }
        );
        assert_eq!(
            d("kvm_vcpu_wakeup", "wait time 1234 ns, polling valid"),
            EventKind::VcpuWakeup {
                ns: 1234,
                waited: true,
                valid: true
            }
        );
        assert_eq!(
            d(
                "kvm_halt_poll_ns",
                "vcpu 0: halt_poll_ns 10000 (shrink 20000)"
            ),
            EventKind::HaltPollNs {
                vcpu: 0,
                grow: false,
                new: 10000,
                old: 20000
            }
        );
        assert_eq!(
            d("kvm_eoi", "apicid 0 vector -1"),
            EventKind::Eoi { vector: -1 }
        );
        let EventKind::Mmu {
            kind,
            level,
            created,
            root,
            ..
        } = d(
            "kvm_mmu_get_page",
            "sp gen 0 gfn 1000 l4 8-byte q0 wux nxe ad root 0 sync new",
        )
        else {
            panic!()
        };
        assert_eq!(
            (kind, level, created, root),
            (MmuKind::GetPage, Some(4), true, true)
        );
    }

    #[test]
    fn guest_events_seen_here() {
        assert_eq!(
            d("write_msr", "830, value 1000000fb"),
            EventKind::GuestMsr {
                write: true,
                msr: 0x830,
                val: 0x1_0000_00fb,
                failed: false
            }
        );
        let EventKind::IpiSend { cpu, callback, callsite, .. } = d("ipi_send_cpu", "cpu=1 callsite=on_each_cpu_cond_mask+0x20/0x60 callback=generic_smp_call_function_single_interrupt+0x0/0x10") else { panic!() };
        assert_eq!(
            (cpu, callsite, callback),
            (
                Some(1),
                "on_each_cpu_cond_mask",
                "generic_smp_call_function_single_interrupt"
            )
        );
        assert_eq!(
            d(
                "csd_function_exit",
                "func=do_sync_core, csd=00000000dada4b8b"
            ),
            EventKind::CsdFunction {
                entry: false,
                func: "do_sync_core"
            }
        );
        assert_eq!(
            d("local_timer_entry", "vector=236"),
            EventKind::IrqVector {
                entry: true,
                vector: Some(236)
            }
        );
        let EventKind::SchedSwitch { prev_comm, next_tid, .. } = d("sched_switch", "prev_comm=CPU 0/KVM prev_pid=5 prev_prio=120 prev_state=S ==> next_comm=swapper/0 next_pid=0 next_prio=120") else { panic!() };
        assert_eq!((prev_comm, next_tid), ("CPU 0/KVM", 0));
    }
}
