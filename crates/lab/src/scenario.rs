//! The scenarios: each a small guest program, the VM it needs, and the ground truth it
//! promises.
//!
//! Register convention of every program: `r15` counts operations (the VMM reads it at the
//! end), `r14` is the per-vCPU limit (`u64::MAX` in duration mode), `r13` is a scenario
//! parameter (a timer period in TSC ticks).

use std::time::Duration;

use iced_x86::code_asm::*;
use kvm_bindings::kvm_regs;
use serde::Serialize;

use crate::layout::{self, MMIO_GPA};
use crate::program::{Assembled, Program, DONE_PORT};
use crate::truth::{expect, expect_stat, Count, GroundTruth, HostScope, Privilege};
use crate::vm::{VcpuStart, VmSpec};
use crate::LabError;

/// A guest behaviour the lab can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Scenario {
    /// OUT to an I/O port (CPL3).
    Pio,
    /// Stores to a guest-physical address no memory slot backs (CPL3).
    Mmio,
    /// WRMSR to IA32_TSC_DEADLINE or a chosen MSR (CPL0).
    Msr,
    /// LAPIC TSC-deadline timer re-armed from its own interrupt handler (CPL0).
    TimerStorm,
    /// HLT woken by the LAPIC timer (CPL0).
    Hlt,
    /// First touch of N distinct 4 KiB pages (CPL3).
    Pagefault,
    /// MOV CR3 among K page-table roots (CPL0).
    Cr3,
    /// CPUID (CPL3).
    Cpuid,
    /// Two vCPUs sending each other IPIs through the x2APIC ICR (CPL0).
    Ipi,
    /// HLT with nothing to wake it: the healthy idle baseline (CPL0).
    Idle,
    /// Arithmetic that never exits: the healthy busy baseline (CPL3).
    Compute,
}

/// Static description of a scenario.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ScenarioInfo {
    /// Name on the command line.
    pub name: &'static str,
    /// What the guest does.
    pub summary: &'static str,
    /// Which field report (docs/field-reports.md) it reproduces, if any.
    pub reproduces: &'static str,
    /// Privilege level of the measured code.
    pub privilege: Privilege,
    /// The guest action counted as one operation.
    pub action: &'static str,
    /// Default `--count` (0: duration-only).
    pub default_count: u64,
}

const TIMER_VECTOR: u8 = 0xec;
const PING_VECTOR: u8 = 0xfd;
const PONG_VECTOR: u8 = 0xfc;
const STOP_VECTOR: u8 = 0xf3;

/// IA32_TSC_DEADLINE.
pub const MSR_TSC_DEADLINE: u32 = 0x6e0;

impl Scenario {
    /// Every scenario, in `lab list` order.
    pub const ALL: [Scenario; 11] = [
        Scenario::Pio,
        Scenario::Mmio,
        Scenario::Msr,
        Scenario::TimerStorm,
        Scenario::Hlt,
        Scenario::Pagefault,
        Scenario::Cr3,
        Scenario::Cpuid,
        Scenario::Ipi,
        Scenario::Idle,
        Scenario::Compute,
    ];

    /// Looks a scenario up by its command-line name.
    pub fn from_name(name: &str) -> Option<Scenario> {
        Self::ALL.into_iter().find(|s| s.info().name == name)
    }

    /// Name on the command line.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// Static description.
    pub fn info(self) -> ScenarioInfo {
        use Privilege::*;
        let (name, summary, reproduces, privilege, action, default_count) = match self {
            Scenario::Pio => ("pio", "OUT to an I/O port (default 0x3f8, a UART) in a loop; each one exits to the VMM", "baseline for kvm_stat/perf kvm stat `ioport` rows", Cpl3, "one OUT", 10_000),
            Scenario::Mmio => ("mmio", "32-bit stores to guest-physical 0xd0000000, which no memory slot backs; each one exits to the VMM", "baseline for perf kvm stat `mmio` rows", Cpl3, "one store", 10_000),
            Scenario::Msr => ("msr", "WRMSR in a loop, to IA32_TSC_DEADLINE (0x6e0) with a far-future deadline by default, or to --msr", "003 (kvm_msr writes to MSR_IA32_TSC_DEADLINE dominate)", Cpl0, "one WRMSR", 10_000),
            Scenario::TimerStorm => ("timer-storm", "LAPIC timer in TSC-deadline mode, re-armed from its own interrupt handler every --period; the vCPU halts in between", "003 (guest with nohz=off: hrtimer re-armed from its own interrupt, 66k exits/s)", Cpl0, "one timer interrupt", 2_000),
            Scenario::Hlt => ("hlt", "arm the TSC-deadline timer --period ahead, HLT, wake on the timer interrupt", "004 (WFI/HLT traps and wakeups)", Cpl0, "one HLT/wake cycle", 1_000),
            Scenario::Pagefault => ("pagefault", "write one byte to each of N distinct 4 KiB pages mapped by 4 KiB guest PTEs (first touch)", "000 (host time in the MMU fault path)", Cpl3, "one first touch", 4_096),
            Scenario::Cr3 => ("cr3", "MOV CR3 round-robin among --roots page-table roots (<= 4 fit KVM's root cache, >= 5 do not)", "001 (root reloads, prev_roots cache misses)", Cpl0, "one MOV CR3", 10_000),
            Scenario::Cpuid => ("cpuid", "CPUID leaf 0 in a loop", "baseline: the cheapest unconditional exit", Cpl0, "one CPUID", 10_000),
            Scenario::Ipi => ("ipi", "vCPU 0 and vCPU 1 ping-pong fixed IPIs through the x2APIC ICR (MSR 0x830), halting in between", "004 (IPI traps and vCPU kicks)", Cpl0, "one round trip (two IPIs)", 1_000),
            Scenario::Idle => ("idle", "HLT with interrupts enabled and no interrupt source: the vCPU sleeps", "healthy idle baseline (003's distribution kernel)", Cpl0, "none", 0),
            Scenario::Compute => ("compute", "a multiply-add loop that never exits", "healthy busy baseline", Cpl3, "one loop iteration", 100_000_000),
        };
        ScenarioInfo {
            name,
            summary,
            reproduces,
            privilege,
            action,
            default_count,
        }
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How long a run lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Length {
    /// Exactly this many operations per vCPU (the ground truth is exact).
    Count(u64),
    /// Run this long, then stop the vCPUs (the ground truth uses the operations done).
    Duration(Duration),
}

/// A scenario with its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScenarioSpec {
    /// Which scenario.
    pub scenario: Scenario,
    /// Count or duration.
    pub length: Length,
    /// vCPUs (each runs the program; `ipi` needs exactly 2).
    pub vcpus: u32,
    /// Port for `pio`.
    pub port: u16,
    /// MSR for `msr`.
    pub msr: u32,
    /// Value written by `msr` to MSRs other than IA32_TSC_DEADLINE.
    pub msr_value: u64,
    /// Number of roots for `cr3`.
    pub roots: u32,
    /// Timer period for `timer-storm` and `hlt`.
    pub period: Duration,
    /// Give up (an error) after this long.
    pub timeout: Duration,
    /// Run the measured code at this privilege level instead of the scenario's own (only
    /// `pio`, `mmio`, `cpuid` and `compute`, whose action works at both).
    pub cpl: Option<Privilege>,
    /// Keep the VM (its fds, its debugfs directory, its binary stats) this long after the guest
    /// finished, before tearing it down: for readers of KVM's statistics from outside
    /// (`kvm_stat -d`, `kvmscope top --debugfs`), which see only live VMs.
    pub hold: Duration,
}

impl ScenarioSpec {
    /// The scenario with its defaults.
    pub fn new(scenario: Scenario) -> ScenarioSpec {
        let info = scenario.info();
        ScenarioSpec {
            scenario,
            length: if info.default_count == 0 {
                Length::Duration(Duration::from_secs(1))
            } else {
                Length::Count(info.default_count)
            },
            vcpus: if scenario == Scenario::Ipi { 2 } else { 1 },
            port: 0x3f8,
            msr: MSR_TSC_DEADLINE,
            msr_value: 0,
            roots: 5,
            period: Duration::from_micros(100),
            timeout: Duration::from_secs(300),
            cpl: None,
            hold: Duration::ZERO,
        }
    }

    /// Sets an exact operation count per vCPU.
    pub fn count(mut self, n: u64) -> Self {
        self.length = Length::Count(n);
        self
    }

    /// Sets a duration.
    pub fn duration(mut self, d: Duration) -> Self {
        self.length = Length::Duration(d);
        self
    }

    /// Sets the number of vCPUs.
    pub fn vcpus(mut self, n: u32) -> Self {
        self.vcpus = n;
        self
    }

    /// What the host should show for a run in which each vCPU did `ops_per_vcpu[i]`
    /// operations (for `ipi`: vCPU 0's count is the round trips).
    pub fn ground_truth(&self, ops_per_vcpu: &[u64]) -> GroundTruth {
        ground_truth(self, ops_per_vcpu)
    }

    /// The promise of a count-mode run that completes (every vCPU does `--count` operations;
    /// `cr3` rounds up to whole rounds of roots). In duration mode the counts are 0: use
    /// [`ScenarioSpec::ground_truth`] with the operations done.
    pub fn expected(&self) -> GroundTruth {
        let per = match self.length {
            Length::Count(_) => self.limit(),
            Length::Duration(_) => 0,
        };
        let ops: Vec<u64> = (0..self.vcpus).map(|_| per).collect();
        ground_truth(self, &ops)
    }

    /// The privilege level the measured code runs at.
    pub fn privilege(&self) -> Privilege {
        self.cpl.unwrap_or(self.scenario.info().privilege)
    }

    pub(crate) fn validate(&self) -> Result<(), LabError> {
        let bad = |m: String| Err(LabError::InvalidSpec(m));
        let s = self.scenario;
        if s == Scenario::Ipi && self.vcpus != 2 {
            return bad(format!("ipi runs on exactly 2 vCPUs, not {}", self.vcpus));
        }
        if self.vcpus == 0 || self.vcpus > layout::MAX_VCPUS {
            return bad(format!("--vcpus must be 1..={}", layout::MAX_VCPUS));
        }
        match self.length {
            Length::Count(0) => return bad("--count must be at least 1".into()),
            Length::Count(_) if s == Scenario::Idle => {
                return bad("idle does nothing to count: use --duration".into())
            }
            Length::Duration(_) if s == Scenario::Pagefault => {
                return bad("pagefault touches each page once: use --count".into())
            }
            Length::Duration(d) if d.is_zero() => return bad("--duration must be > 0".into()),
            _ => {}
        }
        if s == Scenario::Pio && (self.port == DONE_PORT || self.port == crate::program::FAULT_PORT)
        {
            return bad(format!(
                "port {:#x} is reserved by the lab (done/fault signals)",
                self.port
            ));
        }
        let flexible = matches!(
            s,
            Scenario::Pio | Scenario::Mmio | Scenario::Cpuid | Scenario::Compute
        );
        if self.cpl.is_some_and(|c| c != s.info().privilege) && !flexible {
            return bad(format!(
                "{s} runs at {} only (WRMSR, HLT, MOV CR3 need CPL0; first-touch faults need CPL3); --cpl works for pio, mmio, cpuid and compute",
                s.info().privilege
            ));
        }
        if s == Scenario::Cr3 && !(1..=layout::MAX_ROOTS).contains(&self.roots) {
            return bad(format!("--roots must be 1..={}", layout::MAX_ROOTS));
        }
        if matches!(s, Scenario::Hlt | Scenario::TimerStorm) && self.period.is_zero() {
            return bad("--period must be > 0".into());
        }
        Ok(())
    }

    /// Per-vCPU operation limit loaded into r14.
    pub(crate) fn limit(&self) -> u64 {
        match (self.scenario, self.length) {
            (Scenario::Cr3, Length::Count(n)) => n.next_multiple_of(u64::from(self.roots)),
            (_, Length::Count(n)) => n,
            (_, Length::Duration(_)) => u64::MAX,
        }
    }
}

/// Everything needed to build and start the VM of a spec.
#[derive(Debug)]
pub(crate) struct Plan {
    pub vm: VmSpec,
    pub program: Assembled,
    pub starts: Vec<VcpuStart>,
}

fn counted_loop_tail(p: &mut Program, top: CodeLabel) -> Result<(), LabError> {
    // inc r15; cmp r15, r14; jb top; jmp done
    p.a.inc(r15)?;
    p.a.cmp(r15, r14)?;
    p.a.jb(top)?;
    p.a.jmp(p.done)?;
    Ok(())
}

fn regs() -> kvm_regs {
    kvm_regs::default()
}

/// Builds the guest program and VM settings for `spec`. `r13` (the period in TSC ticks) is
/// filled in once the VM exists and its TSC frequency is known.
pub(crate) fn plan(spec: &ScenarioSpec) -> Result<Plan, LabError> {
    spec.validate()?;
    let limit = spec.limit();
    let mut p = Program::new()?;
    let mut vm = VmSpec {
        vcpus: spec.vcpus,
        irqchip: false,
        timer_vector: None,
        roots: 1,
        region_pages: 0,
        user_ports: vec![DONE_PORT],
    };
    let mut base = regs();
    base.r14 = limit;
    let mut user = false;
    let mut interrupts = false;
    let mut per_vcpu: Vec<kvm_regs> = (0..spec.vcpus).map(|_| base).collect();
    let mut entries: Vec<usize> = vec![0; spec.vcpus as usize];

    match spec.scenario {
        Scenario::Pio => {
            user = spec.privilege() == Privilege::Cpl3;
            vm.user_ports.push(spec.port);
            let top = p.entry_here()?;
            p.a.out(dx, al)?; // one PIO write
            counted_loop_tail(&mut p, top)?;
            for r in &mut per_vcpu {
                r.rdx = u64::from(spec.port);
            }
        }
        Scenario::Mmio => {
            user = spec.privilege() == Privilege::Cpl3;
            let top = p.entry_here()?;
            p.a.mov(dword_ptr(rbx), eax)?; // one MMIO write
            counted_loop_tail(&mut p, top)?;
            for r in &mut per_vcpu {
                r.rbx = MMIO_GPA;
            }
        }
        Scenario::Msr => {
            vm.irqchip = true;
            if spec.msr == MSR_TSC_DEADLINE {
                vm.timer_vector = Some(TIMER_VECTOR);
            }
            let mut top = p.entry_here()?;
            if spec.msr == MSR_TSC_DEADLINE {
                // edx:eax = now + 2^40 ticks: never expires during the run.
                p.a.rdtsc()?;
                p.a.add(edx, 0x100)?;
                top = p.a.create_label();
                p.a.set_label(&mut top)?;
            }
            p.a.wrmsr()?; // one WRMSR
            counted_loop_tail(&mut p, top)?;
            for r in &mut per_vcpu {
                r.rcx = u64::from(spec.msr);
                r.rax = spec.msr_value & 0xffff_ffff;
                r.rdx = spec.msr_value >> 32;
            }
        }
        Scenario::TimerStorm => {
            vm.irqchip = true;
            vm.timer_vector = Some(TIMER_VECTOR);
            interrupts = true;
            // handler: count; EOI; stop at the limit, else re-arm from the handler.
            p.handler_here(TIMER_VECTOR)?;
            p.a.inc(r15)?;
            p.eoi()?;
            p.a.cmp(r15, r14)?;
            p.a.jae(p.done)?;
            p.arm_tsc_deadline()?;
            p.a.iretq()?;
            // main: arm once, then halt forever.
            p.entry_here()?;
            p.arm_tsc_deadline()?;
            let mut idle = p.a.create_label();
            p.a.set_label(&mut idle)?;
            p.a.hlt()?;
            p.a.jmp(idle)?;
        }
        Scenario::Hlt => {
            vm.irqchip = true;
            vm.timer_vector = Some(TIMER_VECTOR);
            interrupts = true;
            let mut hlt_at = p.a.create_label();
            // handler: if it interrupted the HLT before it ran (timer already expired),
            // skip the HLT so the vCPU does not sleep forever; then EOI.
            p.handler_here(TIMER_VECTOR)?;
            p.a.lea(rax, ptr(hlt_at))?;
            p.a.cmp(qword_ptr(rsp), rax)?;
            let mut no_fix = p.a.create_label();
            p.a.jne(no_fix)?;
            p.a.add(qword_ptr(rsp), 1)?; // HLT is one byte
            p.a.set_label(&mut no_fix)?;
            p.eoi()?;
            p.a.iretq()?;
            // main: arm; hlt; count.
            let top = p.entry_here()?;
            p.arm_tsc_deadline()?;
            p.a.set_label(&mut hlt_at)?;
            p.a.hlt()?;
            counted_loop_tail(&mut p, top)?;
        }
        Scenario::Pagefault => {
            user = true;
            let Length::Count(n) = spec.length else {
                return Err(LabError::InvalidSpec("pagefault needs --count".into()));
            };
            vm.region_pages = n
                .checked_mul(u64::from(spec.vcpus))
                .ok_or_else(|| LabError::InvalidSpec("--count too large".into()))?;
            let top = p.entry_here()?;
            p.a.mov(byte_ptr(rbx), 1)?; // first touch (write) of a page
            p.a.add(rbx, 4096)?;
            counted_loop_tail(&mut p, top)?;
            let (region, _) = layout::plan(vm.region_pages)?;
            let start = region.map(|r| r.start).unwrap_or(0);
            for (i, r) in per_vcpu.iter_mut().enumerate() {
                r.rbx = start + i as u64 * n * 4096;
            }
        }
        Scenario::Cr3 => {
            vm.roots = spec.roots;
            let top = p.entry_here()?;
            // Switch to root 1, 2, ..., K-1, 0 (start is on root 0).
            for k in 1..=spec.roots {
                let root = layout::root_addr(k % spec.roots);
                p.a.mov(rax, root)?;
                p.a.mov(cr3, rax)?; // one MOV CR3
            }
            p.a.add(r15, spec.roots as i32)?;
            p.a.cmp(r15, r14)?;
            p.a.jb(top)?;
            p.a.jmp(p.done)?;
        }
        Scenario::Cpuid => {
            user = spec.privilege() == Privilege::Cpl3;
            let top = p.entry_here()?;
            p.a.xor(eax, eax)?;
            p.a.cpuid()?; // one CPUID (leaf 0)
            counted_loop_tail(&mut p, top)?;
        }
        Scenario::Ipi => {
            vm.irqchip = true;
            interrupts = true;
            // vCPU 1: ping handler counts and answers; stop handler finishes.
            p.handler_here(PING_VECTOR)?;
            p.a.inc(r15)?;
            p.eoi()?;
            p.send_ipi(0, PONG_VECTOR)?;
            p.a.iretq()?;
            p.handler_here(STOP_VECTOR)?;
            p.eoi()?;
            p.a.jmp(p.done)?;
            // vCPU 0: pong handler counts round trips; pings again or stops both.
            p.handler_here(PONG_VECTOR)?;
            p.a.inc(r15)?;
            p.eoi()?;
            p.a.cmp(r15, r14)?;
            let mut finish = p.a.create_label();
            p.a.jae(finish)?;
            p.send_ipi(1, PING_VECTOR)?;
            p.a.iretq()?;
            p.a.set_label(&mut finish)?;
            p.send_ipi(1, STOP_VECTOR)?;
            p.a.jmp(p.done)?;
            // entry 0 (vCPU 0): first ping, then halt.
            p.entry_here()?;
            p.send_ipi(1, PING_VECTOR)?;
            let mut idle0 = p.a.create_label();
            p.a.set_label(&mut idle0)?;
            p.a.hlt()?;
            p.a.jmp(idle0)?;
            // entry 1 (vCPU 1): halt.
            let idle1 = p.entry_here()?;
            p.a.hlt()?;
            p.a.jmp(idle1)?;
            entries = vec![0, 1];
            per_vcpu[1].r14 = u64::MAX;
        }
        Scenario::Idle => {
            vm.irqchip = true;
            interrupts = true;
            let top = p.entry_here()?;
            p.a.hlt()?;
            p.a.jmp(top)?;
        }
        Scenario::Compute => {
            user = spec.privilege() == Privilege::Cpl3;
            let top = p.entry_here()?;
            p.a.imul_3(rax, rax, 0x5851_f42d)?;
            p.a.add(rax, 1)?;
            counted_loop_tail(&mut p, top)?;
        }
    }
    let program = p.assemble()?;
    let starts = per_vcpu
        .into_iter()
        .zip(entries)
        .map(|(regs, entry)| VcpuStart {
            entry,
            user,
            interrupts,
            regs,
        })
        .collect();
    Ok(Plan {
        vm,
        program,
        starts,
    })
}

/// The events `spec` promises, given the operations each vCPU performed.
///
/// `HostScope::Any` promises follow from the guest's action on every x86 KVM host;
/// `Pvm`/`ShadowPaging` ones were measured on PVM (docs/lab.md) and depend on how that host
/// handles the action (emulation, shadow page tables).
pub(crate) fn ground_truth(spec: &ScenarioSpec, ops_per_vcpu: &[u64]) -> GroundTruth {
    use HostScope::*;
    // SVM exit codes (AMD APM vol. 2, appendix C), as kvm_exit's exit_reason prints them.
    const CR3_WRITE: u32 = 0x13;
    const EXCP_PF: u32 = 0x4e;
    const CPUID: u32 = 0x72;
    const HLT: u32 = 0x78;
    const IOIO: u32 = 0x7b;
    const MSR: u32 = 0x7c;
    const NPF: u32 = 0x400;
    let svm_exits = |code: u32, extra: &str, count: Count, scope: HostScope, why: &str| {
        expect(
            "kvm",
            "kvm_exit",
            Some(format!("exit_reason == {code:#x}{extra}")),
            count,
            scope,
            why,
        )
    };
    let info = spec.scenario.info();
    let ops: u64 = match spec.scenario {
        Scenario::Ipi => ops_per_vcpu.first().copied().unwrap_or(0),
        _ => ops_per_vcpu.iter().sum(),
    };
    let v = u64::from(spec.vcpus);
    let exact = Count::exact;
    let done_exits = || {
        expect("kvm", "kvm_userspace_exit", Some("reason == 2".into()), exact(v), Any,
            "only the final OUT to the done port of each vCPU: the action itself is handled in the kernel")
    };
    let msr = |index: u32| Some(format!("write == 1 && ecx == {index:#x}"));
    let mut e = Vec::new();
    let mut st = Vec::new();
    let at_least = |n: u64| Count::between(n, u64::MAX);
    match spec.scenario {
        Scenario::Pio => {
            e.push(expect(
                "kvm",
                "kvm_pio",
                Some(format!("rw == 1 && port == {:#x}", spec.port)),
                exact(ops),
                Any,
                "each OUT",
            ));
            e.push(expect(
                "kvm",
                "kvm_userspace_exit",
                Some("reason == 2".into()),
                exact(ops + v),
                Any,
                "each OUT exits to the VMM (KVM_EXIT_IO), plus each vCPU's done OUT",
            ));
            e.push(expect("kvm", "kvm_emulate_insn", None, exact(ops + 3 * v), Pvm, "PVM decodes each trapped OUT with the emulator; 3 per vCPU for entry (IRETQ) and the done OUT"));
            e.push(svm_exits(
                IOIO,
                "",
                exact(ops + v),
                Svm,
                "each OUT, and the done OUT, is an IOIO intercept",
            ));
            e.push(expect(
                "kvm",
                "kvm_emulate_insn",
                None,
                exact(0),
                Svm,
                "SVM's IOIO exit info describes the OUT: no instruction is emulated",
            ));
            e.push(expect(
                "kvm",
                "kvm_fpu",
                None,
                exact(2 * (ops + v)),
                Any,
                "guest FPU state put and reloaded around each exit to userspace (x86.c, every vendor)",
            ));
            st.push(expect_stat(
                "exits",
                at_least(ops),
                Any,
                "each OUT is an exit",
            ));
            st.push(expect_stat(
                "fpu_reload",
                exact(ops + v),
                Any,
                "each exit to userspace reloads the guest FPU",
            ));
            st.push(expect_stat(
                "insn_emulation",
                exact(ops + 2 * v),
                Pvm,
                "each OUT and the done OUT are emulated",
            ));
        }
        Scenario::Mmio => {
            e.push(expect(
                "kvm",
                "kvm_mmio",
                Some(format!("type == 2 && gpa == {MMIO_GPA:#x}")),
                exact(ops),
                Any,
                "each store to the unbacked GPA",
            ));
            e.push(expect(
                "kvm",
                "kvm_userspace_exit",
                Some("reason == 6".into()),
                exact(ops),
                Any,
                "each store exits to the VMM (KVM_EXIT_MMIO)",
            ));
            e.push(expect(
                "kvm",
                "vcpu_match_mmio",
                None,
                exact(ops),
                ShadowPaging,
                "each store faults and is matched as MMIO (no MMIO SPTE caching)",
            ));
            let at = Some(format!("fault_address == {MMIO_GPA:#x}"));
            e.push(expect(
                "kvm",
                "kvm_page_fault",
                at,
                exact(ops),
                Svm,
                "each store is a guest page fault at the unbacked GPA",
            ));
            let gpa = format!(" && info2 == {MMIO_GPA:#x}");
            e.push(svm_exits(
                NPF,
                &gpa,
                exact(ops),
                SvmNpt,
                "each store is a nested page fault on the unbacked GPA (exit_info2)",
            ));
            e.push(svm_exits(EXCP_PF, &gpa, exact(ops), SvmShadow, "each store is an intercepted #PF at the address (identity-mapped, exit_info2 = CR2)"));
            e.push(expect(
                "kvm",
                "kvm_emulate_insn",
                None,
                exact(ops),
                Svm,
                "each store is emulated to learn its address and value",
            ));
            e.push(expect(
                "kvm",
                "vcpu_match_mmio",
                None,
                exact(ops),
                SvmNpt,
                "each emulated store is matched as MMIO",
            ));
            st.push(expect_stat(
                "mmio_exits",
                exact(ops),
                Any,
                "each store exits to the VMM",
            ));
            st.push(expect_stat(
                "pf_emulate",
                exact(ops),
                ShadowPaging,
                "each store page-faults and is emulated",
            ));
        }
        Scenario::Msr => {
            e.push(expect(
                "kvm",
                "kvm_msr",
                msr(spec.msr),
                exact(ops),
                Any,
                "each WRMSR",
            ));
            e.push(done_exits());
            e.push(svm_exits(
                MSR,
                "",
                exact(ops),
                Svm,
                "each WRMSR is an MSR intercept",
            ));
            e.push(expect(
                "kvm",
                "kvm_emulate_insn",
                None,
                exact(ops),
                SvmNoAssists,
                "without NRIPS KVM emulates each WRMSR to skip it",
            ));
            if spec.msr == MSR_TSC_DEADLINE {
                e.push(expect("kvm", "kvm_hv_timer_state", None, exact(ops), Svm, "each TSC-deadline write re-programs the LAPIC timer, a software hrtimer on SVM (no VMX preemption timer)"));
                e.push(expect(
                    "kvm",
                    "kvm_hv_timer_state",
                    None,
                    exact(ops),
                    Pvm,
                    "each TSC-deadline write re-programs the LAPIC timer (software hrtimer on PVM)",
                ));
            }
        }
        Scenario::TimerStorm | Scenario::Hlt => {
            let why_arm = if spec.scenario == Scenario::Hlt {
                "each cycle arms the timer before HLT"
            } else {
                "one arm before the first interrupt, then one re-arm in each handler but the last"
            };
            e.push(expect(
                "kvm",
                "kvm_msr",
                msr(MSR_TSC_DEADLINE),
                exact(ops),
                Any,
                why_arm,
            ));
            e.push(expect(
                "kvm",
                "kvm_apic_accept_irq",
                Some(format!("vec == {TIMER_VECTOR}")),
                exact(ops),
                Any,
                "each timer expiry raises the timer vector",
            ));
            e.push(expect(
                "kvm",
                "kvm_msr",
                msr(0x80b),
                exact(ops),
                Any,
                "each handler writes x2APIC EOI",
            ));
            e.push(expect("kvm", "kvm_eoi", Some(format!("vector == {TIMER_VECTOR}")), exact(ops), Pvm, "PVM EOIs the timer vector when it injects it (the guest's own EOI then logs vector -1)"));
            e.push(expect(
                "kvm",
                "kvm_eoi",
                Some(format!("vector == {TIMER_VECTOR}")),
                exact(ops),
                Svm,
                "each handler's x2APIC EOI ends the timer vector",
            ));
            e.push(svm_exits(
                MSR,
                "",
                exact(2 * ops),
                Svm,
                "two WRMSR per interrupt: the deadline and the x2APIC EOI",
            ));
            e.push(expect(
                "kvm",
                "kvm_hv_timer_state",
                None,
                exact(ops),
                Svm,
                "each deadline write re-programs the software LAPIC timer",
            ));
            st.push(expect_stat(
                "halt_exits",
                Count::between(0, ops),
                Any,
                "at most one HLT per timer interrupt (none when the next expiry is already pending, as under host load)",
            ));
            e.push(done_exits());
        }
        Scenario::Pagefault => {
            let pages = ops;
            if let Ok((Some(r), _)) = layout::plan(pages.max(1)) {
                let (g0, g1) = (r.start >> 12, (r.start >> 12) + pages);
                let gfns = Some(format!("gfn >= {g0:#x} && gfn < {g1:#x}"));
                let pts = Some(format!(
                    "gpa >= {:#x} && gpa < {:#x}",
                    layout::PT_BASE,
                    r.start
                ));
                e.push(expect(
                    "kvmmmu",
                    "kvm_mmu_spte_requested",
                    gfns.clone(),
                    exact(pages),
                    ShadowPaging,
                    "each first touch maps one 4 KiB page",
                ));
                e.push(expect(
                    "kvmmmu",
                    "kvm_mmu_set_spte",
                    gfns,
                    exact(pages),
                    ShadowPaging,
                    "each first touch installs one shadow PTE",
                ));
                e.push(expect(
                    "kvmmmu",
                    "kvm_mmu_set_dirty_bit",
                    pts.clone(),
                    exact(pages),
                    ShadowPaging,
                    "each first write sets the dirty bit of the guest PTE",
                ));
                e.push(expect(
                    "kvmmmu",
                    "kvm_mmu_set_accessed_bit",
                    pts,
                    exact(pages),
                    ShadowPaging,
                    "each first touch sets the accessed bit of the guest PTE",
                ));
                let pt_gfns = Some(format!(
                    "gfn >= {:#x} && gfn < {:#x} && created == 1",
                    layout::PT_BASE >> 12,
                    r.start >> 12
                ));
                e.push(expect(
                    "kvmmmu",
                    "kvm_mmu_get_page",
                    pt_gfns,
                    exact(pages.div_ceil(512)),
                    ShadowPaging,
                    "one new shadow page per guest page table (512 PTEs)",
                ));
                let addrs = format!(
                    " && info2 >= {:#x} && info2 < {:#x}",
                    r.start,
                    r.start + pages * 4096
                );
                e.push(svm_exits(
                    EXCP_PF,
                    &addrs,
                    exact(pages),
                    SvmShadow,
                    "each first touch is an intercepted #PF (exit_info2 = the address)",
                ));
                e.push(svm_exits(
                    NPF,
                    &addrs,
                    exact(pages),
                    SvmNpt,
                    "the region is backed by 4 KiB host pages (MADV_NOHUGEPAGE): each first touch is one NPF (exit_info2 = the GPA)",
                ));
                st.push(expect_stat(
                    "pf_fixed",
                    Count::between(pages, pages + 2 * v),
                    ShadowPaging,
                    "each first touch is a fixed page fault (plus the code/stack page)",
                ));
            }
            e.push(svm_exits(
                EXCP_PF,
                "",
                exact(0),
                SvmNpt,
                "with nested paging #PF is not intercepted: the guest handles its own faults",
            ));
            e.push(done_exits());
        }
        Scenario::Cr3 => {
            let k = u64::from(spec.roots);
            let roots_filter = Some(format!(
                "gfn >= {:#x} && gfn < {:#x}",
                layout::root_addr(0) >> 12,
                layout::root_addr(spec.roots) >> 12
            ));
            let (loads, why) = if k <= 4 {
                (exact(k.min(ops + 1) * v), "K <= 4: one lookup per root the first time it is loaded; after that the current root + 3 prev_roots are cached, so switches cost no lookup")
            } else {
                (exact(ops + v), "K >= 5: the prev_roots cache (3 entries) misses, so every switch looks the root up again (one more per vCPU for the first load)")
            };
            e.push(expect(
                "kvmmmu",
                "kvm_mmu_get_page",
                roots_filter,
                loads,
                ShadowPaging,
                why,
            ));
            if k >= 5 {
                st.push(expect_stat(
                    "tlb_flush",
                    exact(ops + v),
                    ShadowPaging,
                    "each root miss loads a new root and flushes",
                ));
            }
            e.push(svm_exits(
                CR3_WRITE,
                "",
                exact(ops),
                SvmShadow,
                "with shadow paging every MOV CR3 is intercepted",
            ));
            e.push(expect(
                "kvm",
                "kvm_emulate_insn",
                None,
                exact(ops),
                SvmShadowNoAssists,
                "without decode assists KVM emulates each intercepted MOV CR3",
            ));
            e.push(svm_exits(
                CR3_WRITE,
                "",
                exact(0),
                SvmNpt,
                "with nested paging the guest owns CR3: no intercept",
            ));
            e.push(done_exits());
        }
        Scenario::Cpuid => {
            if spec.privilege() == Privilege::Cpl3 {
                e.push(expect(
                    "kvm",
                    "kvm_cpuid",
                    Some("function == 0".into()),
                    exact(ops),
                    HardwareVirt,
                    "VMX and SVM intercept every CPUID",
                ));
                // PVM runs CPL3 guest code natively; CPUID traps there only through CPUID
                // faulting, which it uses where the CPU has it (both seen on this machine's
                // kind: native on one boot, trapped on another with `cpuid_fault`).
                let faulting = cpu_has_cpuid_faulting();
                e.push(expect(
                    "kvm",
                    "kvm_cpuid",
                    Some("function == 0".into()),
                    exact(if faulting { ops } else { 0 }),
                    Pvm,
                    if faulting {
                        "PVM traps CPUID at CPL3 through CPUID faulting (cpuid_fault in /proc/cpuinfo)"
                    } else {
                        "without CPUID faulting (no cpuid_fault in /proc/cpuinfo) PVM runs CPUID at CPL3 natively"
                    },
                ));
            } else {
                e.push(expect(
                    "kvm",
                    "kvm_cpuid",
                    Some("function == 0".into()),
                    exact(ops),
                    Any,
                    "each CPUID",
                ));
            }
            e.push(svm_exits(
                CPUID,
                "",
                exact(ops),
                Svm,
                "SVM intercepts every CPUID",
            ));
            e.push(expect(
                "kvm",
                "kvm_emulate_insn",
                None,
                exact(ops),
                SvmNoAssists,
                "without NRIPS KVM emulates each CPUID to skip it",
            ));
            e.push(done_exits());
        }
        Scenario::Ipi => {
            let sent = 2 * ops + 1;
            e.push(expect(
                "kvm",
                "kvm_msr",
                msr(0x830),
                exact(sent),
                Any,
                "two ICR writes per round trip, plus the final stop IPI",
            ));
            e.push(expect(
                "kvm",
                "kvm_apic_ipi",
                None,
                exact(sent),
                Any,
                "each ICR write sends one IPI",
            ));
            e.push(expect(
                "kvm",
                "kvm_apic_accept_irq",
                None,
                exact(sent),
                Any,
                "each IPI is accepted by the other LAPIC",
            ));
            e.push(expect(
                "kvm",
                "kvm_msr",
                msr(0x80b),
                exact(sent),
                Any,
                "each IPI handler writes x2APIC EOI",
            ));
            e.push(expect(
                "kvm",
                "kvm_userspace_exit",
                Some("reason == 2".into()),
                exact(2),
                Any,
                "only the two done OUTs",
            ));
            e.push(svm_exits(
                MSR,
                "",
                exact(2 * sent),
                Svm,
                "each IPI is one ICR write and one EOI write, both MSR intercepts",
            ));
            st.push(expect_stat(
                "halt_exits",
                Count::between(0, 2 * ops + 2),
                Any,
                "at most one HLT per IPI a vCPU waits for (none when the IPI is already pending)",
            ));
        }
        Scenario::Idle => {
            e.push(expect(
                "kvm",
                "kvm_msr",
                None,
                exact(0),
                Any,
                "an idle guest does nothing",
            ));
            e.push(expect(
                "kvm",
                "kvm_pio",
                None,
                exact(0),
                Any,
                "an idle guest does nothing",
            ));
            e.push(expect(
                "kvm",
                "kvm_apic_accept_irq",
                None,
                exact(0),
                Any,
                "no interrupt source",
            ));
            e.push(expect(
                "kvm",
                "kvm_userspace_exit",
                Some("reason == 2".into()),
                exact(0),
                Any,
                "the VMM stops the vCPU with a signal (KVM_EXIT_INTR), never an I/O exit",
            ));
            e.push(svm_exits(HLT, "", exact(v), Svm, "one HLT per vCPU"));
            st.push(expect_stat(
                "halt_exits",
                exact(v),
                Any,
                "one HLT per vCPU, which sleeps until the VMM stops it",
            ));
            st.push(expect_stat(
                "signal_exits",
                at_least(v),
                Any,
                "the VMM's stop signal",
            ));
        }
        Scenario::Compute => {
            e.push(expect(
                "kvm",
                "kvm_pio",
                Some(format!("port != {DONE_PORT:#x}")),
                exact(0),
                Any,
                "arithmetic does not exit",
            ));
            e.push(expect(
                "kvm",
                "kvm_userspace_exit",
                None,
                exact(v),
                Any,
                "only the done OUT",
            ));
            e.push(expect(
                "kvm",
                "kvm_msr",
                None,
                exact(0),
                Any,
                "arithmetic does not exit",
            ));
            e.push(expect(
                "kvm",
                "kvm_emulate_insn",
                None,
                exact(3 * v),
                Pvm,
                "CPL3 code runs natively: only entry and the done OUT are emulated",
            ));
            e.push(svm_exits(IOIO, "", exact(v), Svm, "only the done OUT"));
            e.push(expect(
                "kvm",
                "kvm_emulate_insn",
                None,
                exact(0),
                Svm,
                "nothing to emulate",
            ));
            st.push(expect_stat(
                "insn_emulation",
                exact(2 * v),
                Pvm,
                "only the done OUT (and entry) are emulated",
            ));
        }
    }
    if spec.privilege() != info.privilege {
        // Host-specific promises were measured at the scenario's own level only.
        e.retain(|x| x.host.any_privilege() || x.event == "kvm_cpuid");
        st.retain(|x| x.host == Any);
    }
    GroundTruth {
        scenario: info.name,
        privilege: spec.privilege(),
        action: info.action,
        ops,
        expectations: e,
        stats: st,
    }
}

/// Whether this machine's CPU can fault CPUID at CPL3 (`cpuid_fault` in /proc/cpuinfo), which
/// PVM uses to intercept a CPL3 guest's CPUID.
fn cpu_has_cpuid_faulting() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| {
        c.lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|w| w == "cpuid_fault"))
    })
}
