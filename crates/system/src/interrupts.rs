//! `/proc/interrupts`: per-CPU counts for every line, IPI lines named by type, and the
//! difference between two snapshots.
//!
//! The header names the online CPUs (`CPU0 CPU1 ...`). Every following line is `NAME:`,
//! one count per online CPU, then a description: for device interrupts the chip, hardware
//! IRQ, trigger and handler names; for architecture lines (x86 `LOC`, `RES`, `CAL`, `TLB`,
//! ...; arm64 `IPI0`..`IPI6`) a sentence such as `Rescheduling interrupts`. A few lines
//! (`ERR`, `MIS`, arm's `Err`) carry one global count only.

use serde::{Deserialize, Serialize};

use crate::error::{cpu_header, excerpt, numbered_lines, Error};

const FILE: &str = "/proc/interrupts";

/// A parsed `/proc/interrupts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interrupts {
    /// The online CPUs named in the header, in column order.
    pub cpus: Vec<u32>,
    /// Every line, in file order.
    pub lines: Vec<InterruptLine>,
}

/// One line of `/proc/interrupts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterruptLine {
    /// The name before the colon: an IRQ number (`"24"`) or a code (`"LOC"`, `"IPI1"`).
    pub name: String,
    /// One count per CPU of [`Interrupts::cpus`], or a single global count when
    /// [`InterruptLine::global`] is set.
    pub counts: Vec<u64>,
    /// True for lines with one system-wide count (`ERR`, `MIS`, `Err`).
    pub global: bool,
    /// The rest of the line, trimmed (may be empty).
    pub description: String,
    /// What kind of interrupt this line counts.
    pub kind: InterruptKind,
}

/// What a line counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterruptKind {
    /// A numbered device interrupt.
    Device,
    /// An inter-processor interrupt of a known type.
    Ipi(IpiKind),
    /// The per-CPU local timer (x86 `LOC`; on arm64 it is a device line, `arch_timer`).
    LocalTimer,
    /// Non-maskable interrupts (x86 `NMI`).
    Nmi,
    /// Performance monitoring interrupts (x86 `PMI`).
    Pmi,
    /// Error and miscount lines (`ERR`, `MIS`, `Err`).
    Error,
    /// Any other architecture line (thermal, machine check, hypervisor callbacks, ...).
    Other,
}

/// The type of an inter-processor interrupt, from its x86 code or its arm/arm64/RISC-V
/// description (the IPI numbers differ between architectures and kernel versions, the
/// descriptions do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpiKind {
    /// Wake a CPU to run the scheduler (x86 `RES`, arm64 `IPI0`).
    Reschedule,
    /// Run a function on other CPUs (x86 `CAL`, arm64 `IPI1`).
    FunctionCall,
    /// Run a function on one other CPU (32-bit arm).
    FunctionCallSingle,
    /// Flush other CPUs' TLBs (x86 `TLB`; arm64 flushes by broadcast instructions, no IPI).
    TlbShootdown,
    /// Run deferred irq_work (x86 `IWI`, arm64 `IPI5`).
    IrqWork,
    /// Stop the CPU (panic, reboot).
    CpuStop,
    /// Stop the CPU for a crash dump.
    CpuStopCrash,
    /// Broadcast tick for CPUs whose timer stops in deep idle.
    TimerBroadcast,
    /// Wake a CPU (arm64 `IPI6`, used by parking protocols).
    Wakeup,
    /// Completion of a CPU operation (32-bit arm).
    Completion,
    /// x86 posted-interrupt notifications to a running vCPU (`PIN`, `NPI`, `PIW`).
    PostedInterrupt,
}

impl IpiKind {
    /// Short stable name, as used in reports.
    pub fn name(self) -> &'static str {
        match self {
            IpiKind::Reschedule => "reschedule",
            IpiKind::FunctionCall => "function_call",
            IpiKind::FunctionCallSingle => "function_call_single",
            IpiKind::TlbShootdown => "tlb_shootdown",
            IpiKind::IrqWork => "irq_work",
            IpiKind::CpuStop => "cpu_stop",
            IpiKind::CpuStopCrash => "cpu_stop_crash",
            IpiKind::TimerBroadcast => "timer_broadcast",
            IpiKind::Wakeup => "wakeup",
            IpiKind::Completion => "completion",
            IpiKind::PostedInterrupt => "posted_interrupt",
        }
    }
}

/// Classifies a line by its name and description.
pub fn classify(name: &str, description: &str) -> InterruptKind {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        return InterruptKind::Device;
    }
    // x86 codes (arch/x86/kernel/irq.c).
    match name {
        "LOC" => return InterruptKind::LocalTimer,
        "NMI" => return InterruptKind::Nmi,
        "PMI" => return InterruptKind::Pmi,
        "RES" => return InterruptKind::Ipi(IpiKind::Reschedule),
        "CAL" => return InterruptKind::Ipi(IpiKind::FunctionCall),
        "TLB" => return InterruptKind::Ipi(IpiKind::TlbShootdown),
        "IWI" => return InterruptKind::Ipi(IpiKind::IrqWork),
        "PIN" | "NPI" | "PIW" => return InterruptKind::Ipi(IpiKind::PostedInterrupt),
        "ERR" | "MIS" | "Err" => return InterruptKind::Error,
        _ => {}
    }
    // arm, arm64, RISC-V, ...: IPIn with a description.
    if name.starts_with("IPI") {
        let d = description.to_ascii_lowercase();
        let kind = if d.starts_with("rescheduling") {
            Some(IpiKind::Reschedule)
        } else if d.starts_with("single function call") {
            Some(IpiKind::FunctionCallSingle)
        } else if d.starts_with("function call") {
            Some(IpiKind::FunctionCall)
        } else if d.starts_with("cpu stop (for crash dump)") {
            Some(IpiKind::CpuStopCrash)
        } else if d.starts_with("cpu stop") {
            Some(IpiKind::CpuStop)
        } else if d.starts_with("timer broadcast") {
            Some(IpiKind::TimerBroadcast)
        } else if d.starts_with("irq work") {
            Some(IpiKind::IrqWork)
        } else if d.starts_with("cpu wake-up") || d.starts_with("cpu wakeup") {
            Some(IpiKind::Wakeup)
        } else if d.starts_with("completion") {
            Some(IpiKind::Completion)
        } else if d.starts_with("tlb") {
            Some(IpiKind::TlbShootdown)
        } else {
            None
        };
        if let Some(kind) = kind {
            return InterruptKind::Ipi(kind);
        }
    }
    InterruptKind::Other
}

/// Parses the text of `/proc/interrupts`.
pub fn parse(text: &str) -> Result<Interrupts, Error> {
    let mut lines = numbered_lines(text).filter(|l| !l.text.trim().is_empty());
    let cpus = cpu_header(&mut lines, FILE)?;
    let ncpu = cpus.len();
    let mut out = Vec::new();
    for line in lines {
        let t = line.text.trim_start();
        let (name, rest) = t.split_once(':').ok_or_else(|| {
            line.error(
                FILE,
                format!("expected \"NAME: counts...\", found {}", excerpt(line.text)),
            )
        })?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(line.error(
                FILE,
                format!("bad interrupt name before ':' in {}", excerpt(line.text)),
            ));
        }
        let mut counts = Vec::with_capacity(ncpu);
        let mut rest = rest;
        while counts.len() < ncpu {
            let trimmed = rest.trim_start();
            let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
            let token = &trimmed[..end];
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
                break;
            }
            let value: u64 = token
                .parse()
                .map_err(|_| line.error(FILE, format!("count {} is too large", excerpt(token))))?;
            counts.push(value);
            rest = &trimmed[end..];
        }
        let description = rest.trim().to_string();
        let global = match counts.len() {
            0 => return Err(line.error(FILE, format!("line {:?} has no counts", name))),
            n if n == ncpu => false,
            1 if description.is_empty() => true,
            n => {
                return Err(line.error(
                    FILE,
                    format!("line {name:?} has {n} counts but the header names {ncpu} CPUs"),
                ))
            }
        };
        let kind = classify(name, &description);
        out.push(InterruptLine {
            name: name.to_string(),
            counts,
            global,
            description,
            kind,
        });
    }
    Ok(Interrupts { cpus, lines: out })
}

impl Interrupts {
    /// The line with this name (`"TLB"`, `"IPI1"`, `"24"`).
    pub fn line(&self, name: &str) -> Option<&InterruptLine> {
        self.lines.iter().find(|l| l.name == name)
    }

    /// The first line of this IPI type.
    pub fn ipi(&self, kind: IpiKind) -> Option<&InterruptLine> {
        self.lines
            .iter()
            .find(|l| l.kind == InterruptKind::Ipi(kind))
    }

    /// The count of a line on a CPU (by CPU number, not column).
    pub fn count(&self, name: &str, cpu: u32) -> Option<u64> {
        let line = self.line(name)?;
        if line.global {
            return None;
        }
        let col = self.cpus.iter().position(|&c| c == cpu)?;
        line.counts.get(col).copied()
    }
}

impl InterruptLine {
    /// The sum over all CPUs (or the global count).
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, &b| a.saturating_add(b))
    }
}

/// The change of one line between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineDelta {
    /// The line's name.
    pub name: String,
    /// The description in the later snapshot.
    pub description: String,
    /// The kind of interrupt.
    pub kind: InterruptKind,
    /// True for a global (single count) line.
    pub global: bool,
    /// One delta per CPU of [`InterruptsDelta::cpus`] (one value for a global line).
    pub deltas: Vec<u64>,
    /// Sum of [`LineDelta::deltas`].
    pub total: u64,
}

/// The difference between two `/proc/interrupts` snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterruptsDelta {
    /// CPUs of the later snapshot, in column order.
    pub cpus: Vec<u32>,
    /// One entry per line of the later snapshot, in its order.
    pub lines: Vec<LineDelta>,
    /// Lines of the earlier snapshot that are gone (an IRQ freed during the interval).
    pub removed: Vec<String>,
    /// Number of counters that went backwards and were taken to have wrapped at 2^32
    /// (the kernel keeps these counters as 32-bit `unsigned int`).
    pub wrapped: u32,
}

/// Per line and per CPU: `after - before`. A line new in `after` counts from zero; a CPU
/// absent from `before` (hotplugged during the interval) counts from zero; a counter that
/// went backwards is taken to have wrapped at 2^32.
pub fn diff(before: &Interrupts, after: &Interrupts) -> InterruptsDelta {
    let mut wrapped = 0u32;
    let mut lines = Vec::with_capacity(after.lines.len());
    for line in &after.lines {
        let old = before.line(&line.name);
        let deltas: Vec<u64> = if line.global {
            let prev = old
                .filter(|o| o.global)
                .and_then(|o| o.counts.first().copied())
                .unwrap_or(0);
            vec![delta(
                prev,
                line.counts.first().copied().unwrap_or(0),
                &mut wrapped,
            )]
        } else {
            after
                .cpus
                .iter()
                .zip(&line.counts)
                .map(|(cpu, &now)| {
                    let prev = old
                        .filter(|o| !o.global)
                        .and_then(|o| {
                            let col = before.cpus.iter().position(|c| c == cpu)?;
                            o.counts.get(col).copied()
                        })
                        .unwrap_or(0);
                    delta(prev, now, &mut wrapped)
                })
                .collect()
        };
        let total = deltas.iter().fold(0u64, |a, &b| a.saturating_add(b));
        lines.push(LineDelta {
            name: line.name.clone(),
            description: line.description.clone(),
            kind: line.kind,
            global: line.global,
            deltas,
            total,
        });
    }
    let removed = before
        .lines
        .iter()
        .filter(|l| after.line(&l.name).is_none())
        .map(|l| l.name.clone())
        .collect();
    InterruptsDelta {
        cpus: after.cpus.clone(),
        lines,
        removed,
        wrapped,
    }
}

fn delta(before: u64, after: u64, wrapped: &mut u32) -> u64 {
    if after >= before {
        after - before
    } else if before <= u64::from(u32::MAX) {
        *wrapped += 1;
        after + (1u64 << 32) - before
    } else {
        *wrapped += 1;
        after
    }
}

impl InterruptsDelta {
    /// The delta of the line with this name.
    pub fn line(&self, name: &str) -> Option<&LineDelta> {
        self.lines.iter().find(|l| l.name == name)
    }

    /// Total delta of all lines of this IPI type, on the given CPUs (all when `None`).
    pub fn ipi_total(&self, kind: IpiKind, cpus: Option<&[u32]>) -> u64 {
        self.lines
            .iter()
            .filter(|l| l.kind == InterruptKind::Ipi(kind) && !l.global)
            .map(|l| {
                self.cpus
                    .iter()
                    .zip(&l.deltas)
                    .filter(|(c, _)| cpus.is_none_or(|set| set.contains(c)))
                    .map(|(_, &d)| d)
                    .sum::<u64>()
            })
            .sum()
    }
}
