//! The VM builder and the vCPU run loop.
//!
//! One memory slot at guest-physical 0, 64-bit long mode set up directly through
//! KVM_SET_SREGS (no real-mode boot code: some hosts, PVM among them, cannot run it),
//! optional in-kernel irqchip with every LAPIC in x2APIC mode, and one host thread per vCPU.
//! [`Vm::run`] starts all vCPU threads, reports their tids before any guest code runs, and
//! joins every thread on every path (scoped threads); all fds are closed when the [`Vm`] drops.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex, Once};
use std::time::{Duration, Instant};

use kvm_bindings::{
    kvm_lapic_state, kvm_mp_state, kvm_regs, kvm_segment, kvm_userspace_memory_region, Msrs,
    KVM_MAX_CPUID_ENTRIES, KVM_MP_STATE_RUNNABLE,
};
use kvm_ioctls::{Cap, Kvm, VcpuExit, VcpuFd, VmFd};

use crate::error::exception_name;
use crate::layout;
use crate::memory::GuestMemory;
use crate::program::{Assembled, DONE_PORT, FAULT_PORT};
use crate::LabError;

/// What a scenario needs from its VM.
#[derive(Debug, Clone)]
pub(crate) struct VmSpec {
    pub vcpus: u32,
    /// The scenario needs the in-kernel irqchip (PIC, IOAPIC, LAPICs; LAPICs put in x2APIC
    /// mode). Scenarios that do not need it still get it where the host has it, as every
    /// real x86 VMM sets it up.
    pub irqchip: bool,
    /// LAPIC timer in TSC-deadline mode with this vector (needs `irqchip`).
    pub timer_vector: Option<u8>,
    /// Number of PML4 roots to build.
    pub roots: u32,
    /// Pages in the 4 KiB-mapped region.
    pub region_pages: u64,
    /// Ports CPL3 code may use (TSS I/O bitmap).
    pub user_ports: Vec<u16>,
}

/// Where and how a vCPU starts.
#[derive(Debug, Clone)]
pub(crate) struct VcpuStart {
    /// Index into `Assembled::entries`.
    pub entry: usize,
    /// Start at CPL3 (through an IRETQ from the kernel stack).
    pub user: bool,
    /// RFLAGS.IF at start.
    pub interrupts: bool,
    /// General-purpose registers (rip, rsp, rflags are overwritten).
    pub regs: kvm_regs,
}

/// Userspace exits one vCPU saw.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExitCounts {
    pub io_out: BTreeMap<u16, u64>,
    pub io_in: u64,
    pub mmio_write: u64,
    pub mmio_read: u64,
    pub hlt: u64,
    pub intr: u64,
}

/// How one vCPU ended.
#[derive(Debug)]
pub(crate) struct VcpuEnd {
    pub regs: kvm_regs,
    pub exits: ExitCounts,
}

/// Ids of the threads running a VM, handed out before the guest runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threads {
    /// Process id.
    pub pid: i32,
    /// Thread id (gettid) of each vCPU thread, by vCPU index.
    pub vcpu_tids: Vec<i32>,
}

/// A built VM, ready to run. Field order is drop order: vCPU fds, VM fd, /dev/kvm, memory.
#[derive(Debug)]
pub(crate) struct Vm {
    pub vcpus: Vec<VcpuFd>,
    pub vm: VmFd,
    _kvm: Kvm,
    pub mem: GuestMemory,
    pub tsc_khz: Option<u32>,
}

/// Opens /dev/kvm with an error that says what to do.
pub(crate) fn open_kvm() -> Result<Kvm, LabError> {
    if !std::path::Path::new("/dev/kvm").exists() {
        return Err(LabError::NoKvm);
    }
    Kvm::new().map_err(|e| match e.errno() {
        libc::EACCES | libc::EPERM => LabError::KvmPermission,
        libc::ENOENT | libc::ENXIO | libc::ENODEV => LabError::NoKvm,
        n => LabError::KvmOpen(std::io::Error::from_raw_os_error(n)),
    })
}

/// The type of TR's cached descriptor. LTR leaves it busy (11), and VMX's guest-state checks
/// demand busy; on SVM, which does not check it, QEMU's emulated CPU (an emulated SVM host)
/// accepts only an available TSS (9) when it checks a CPL3 OUT against the I/O permission
/// bitmap, and raises #GP for type 11. Real AMD CPUs accept either.
fn tss_type() -> u8 {
    if crate::HostKind::detect() == crate::HostKind::Svm {
        0x9
    } else {
        0xb
    }
}

fn segment(selector: u16, code: bool, dpl: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 0xb } else { 0x3 },
        present: 1,
        dpl,
        db: u8::from(!code),
        s: 1,
        l: u8::from(code),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

const MSR_APIC_BASE: u32 = 0x1b;
const APIC_BASE_DEFAULT: u64 = 0xfee0_0000;
const APIC_EN: u64 = 1 << 11;
const APIC_EXTD: u64 = 1 << 10;
const APIC_BSP: u64 = 1 << 8;

fn set_lapic_reg(l: &mut kvm_lapic_state, off: usize, v: u32) {
    for (i, b) in v.to_le_bytes().iter().enumerate() {
        l.regs[off + i] = *b as _;
    }
}

impl Vm {
    /// Creates the VM, its memory, tables and vCPUs for `spec` running `prog`.
    pub(crate) fn new(
        spec: &VmSpec,
        prog: &Assembled,
        starts: &[VcpuStart],
    ) -> Result<Vm, LabError> {
        if spec.vcpus == 0 || spec.vcpus > layout::MAX_VCPUS {
            return Err(LabError::InvalidSpec(format!(
                "--vcpus must be 1..={}, not {}",
                layout::MAX_VCPUS,
                spec.vcpus
            )));
        }
        let kvm = open_kvm()?;
        if kvm.get_api_version() != 12 {
            return Err(LabError::MissingCapability {
                cap: "API_VERSION",
                what: "KVM API version 12",
                fix: "this kernel's KVM is too old or too new for kvmscope",
            });
        }
        if spec.irqchip && !kvm.check_extension(Cap::Irqchip) {
            return Err(LabError::MissingCapability {
                cap: "IRQCHIP",
                what: "an in-kernel interrupt controller",
                fix: "this scenario needs the in-kernel LAPIC; pick another scenario on this host",
            });
        }
        if spec.timer_vector.is_some() && !kvm.check_extension(Cap::TscDeadlineTimer) {
            return Err(LabError::MissingCapability {
                cap: "TSC_DEADLINE_TIMER",
                what: "the LAPIC TSC-deadline timer",
                fix: "this scenario needs it; pick another scenario on this host",
            });
        }
        if !kvm.check_extension(Cap::MpState) && spec.vcpus > 1 {
            return Err(LabError::MissingCapability {
                cap: "MP_STATE",
                what: "setting vCPU run states",
                fix: "use --vcpus 1",
            });
        }
        let irqchip = spec.irqchip || kvm.check_extension(Cap::Irqchip);
        let (region, mem_size) = layout::plan(spec.region_pages)?;
        let vm = kvm
            .create_vm()
            .map_err(|e| LabError::kvm("KVM_CREATE_VM", e))?;
        let mem = GuestMemory::new(mem_size)?;
        if let Some(r) = &region {
            mem.no_huge_pages(r.start, r.pages * 4096)?;
        }
        let slot = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: mem.size(),
            userspace_addr: mem.host_addr(),
        };
        // SAFETY: the region is our own live mapping of exactly `memory_size` bytes; it outlives
        // the VM fd because `Vm` drops `vm` before `mem`.
        unsafe { vm.set_user_memory_region(slot) }
            .map_err(|e| LabError::kvm("KVM_SET_USER_MEMORY_REGION", e))?;
        // Only used for real-mode emulation on VMX; harmless elsewhere, so errors are ignored.
        let _ = vm.set_tss_address(0xfffb_d000);
        if irqchip {
            vm.create_irq_chip()
                .map_err(|e| LabError::kvm("KVM_CREATE_IRQCHIP", e))?;
        }

        layout::write_tables(&mem, &spec.user_ports, spec.vcpus)?;
        layout::write_page_tables(&mem, spec.roots, region)?;
        mem.write(layout::CODE_BASE, &prog.code)?;
        for &(v, addr) in &prog.gates {
            layout::write_idt_gate(&mem, v, addr)?;
        }

        let mut cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| LabError::kvm("KVM_GET_SUPPORTED_CPUID", e))?;
        let deadline_ok = kvm.check_extension(Cap::TscDeadlineTimer);
        let mut vcpus = Vec::new();
        for i in 0..spec.vcpus {
            let vcpu = vm
                .create_vcpu(u64::from(i))
                .map_err(|e| LabError::kvm("KVM_CREATE_VCPU", e))?;
            for e in cpuid.as_mut_slice() {
                match e.function {
                    1 => {
                        e.ebx = (e.ebx & 0x00ff_ffff) | (i << 24);
                        if irqchip {
                            e.ecx |= 1 << 21; // x2APIC
                            if deadline_ok {
                                e.ecx |= 1 << 24; // TSC-deadline timer
                            }
                        }
                    }
                    0xb | 0x1f => e.edx = i,
                    _ => {}
                }
            }
            vcpu.set_cpuid2(&cpuid)
                .map_err(|e| LabError::kvm("KVM_SET_CPUID2", e))?;
            if spec.irqchip {
                let base =
                    APIC_BASE_DEFAULT | APIC_EN | APIC_EXTD | if i == 0 { APIC_BSP } else { 0 };
                let msrs = Msrs::from_entries(&[kvm_bindings::kvm_msr_entry {
                    index: MSR_APIC_BASE,
                    data: base,
                    ..Default::default()
                }])
                .map_err(|_| LabError::Assemble("MSR list".into()))?;
                let n = vcpu
                    .set_msrs(&msrs)
                    .map_err(|e| LabError::kvm("KVM_SET_MSRS (APIC base)", e))?;
                if n != 1 {
                    return Err(LabError::MissingCapability {
                        cap: "X2APIC_API",
                        what: "x2APIC mode for the in-kernel LAPIC",
                        fix: "this scenario needs x2APIC; pick another scenario on this host",
                    });
                }
                let mut lapic = vcpu
                    .get_lapic()
                    .map_err(|e| LabError::kvm("KVM_GET_LAPIC", e))?;
                set_lapic_reg(&mut lapic, 0xf0, 0x1ff); // SVR: APIC enabled, spurious vector 0xff
                set_lapic_reg(&mut lapic, 0x80, 0); // TPR 0: accept every vector
                set_lapic_reg(&mut lapic, 0x350, 1 << 16); // LINT0 masked
                set_lapic_reg(&mut lapic, 0x360, 1 << 16); // LINT1 masked
                let lvtt = match spec.timer_vector {
                    Some(v) => u32::from(v) | (2 << 17), // TSC-deadline mode
                    None => 1 << 16,                     // masked
                };
                set_lapic_reg(&mut lapic, 0x320, lvtt);
                vcpu.set_lapic(&lapic)
                    .map_err(|e| LabError::kvm("KVM_SET_LAPIC", e))?;
            }
            let start = starts
                .get(i as usize)
                .ok_or_else(|| LabError::InvalidSpec(format!("no start state for vCPU {i}")))?;
            Self::setup_vcpu(&vcpu, &mem, prog, start, i)?;
            vcpus.push(vcpu);
        }
        let tsc_khz = vcpus.first().and_then(|v| v.get_tsc_khz().ok());
        Ok(Vm {
            vcpus,
            vm,
            _kvm: kvm,
            mem,
            tsc_khz,
        })
    }

    fn setup_vcpu(
        vcpu: &VcpuFd,
        mem: &GuestMemory,
        prog: &Assembled,
        start: &VcpuStart,
        index: u32,
    ) -> Result<(), LabError> {
        let mut sregs = vcpu
            .get_sregs()
            .map_err(|e| LabError::kvm("KVM_GET_SREGS", e))?;
        sregs.cs = segment(layout::SEL_KCODE, true, 0);
        let data = segment(layout::SEL_KDATA, false, 0);
        sregs.ds = data;
        sregs.es = data;
        sregs.fs = data;
        sregs.gs = data;
        sregs.ss = data;
        sregs.tr = kvm_segment {
            base: layout::tss_addr(index),
            limit: layout::TSS_LIMIT,
            selector: layout::SEL_TSS,
            type_: tss_type(),
            present: 1,
            dpl: 0,
            db: 0,
            s: 0,
            l: 0,
            g: 0,
            avl: 0,
            unusable: 0,
            padding: 0,
        };
        sregs.gdt.base = layout::GDT_BASE;
        sregs.gdt.limit = 7 * 8 - 1;
        sregs.idt.base = layout::IDT_BASE;
        sregs.idt.limit = 256 * 16 - 1;
        sregs.cr0 = 0x8001_0033; // PG | WP | NE | ET | MP | PE
        sregs.cr3 = layout::root_addr(0);
        sregs.cr4 = 0x620; // OSXMMEXCPT | OSFXSR | PAE
        sregs.efer = 0x500; // LMA | LME
        vcpu.set_sregs(&sregs)
            .map_err(|e| LabError::kvm("KVM_SET_SREGS", e))?;

        let entry = *prog
            .entries
            .get(start.entry)
            .ok_or_else(|| LabError::InvalidSpec("no such entry point".into()))?;
        let mut regs = start.regs;
        let rflags = 0x2 | if start.interrupts { 0x200 } else { 0 };
        let ksp = layout::kernel_stack_top(index);
        if start.user {
            // IRET frame: rip, cs, rflags, rsp, ss.
            let frame_at = ksp - 5 * 8;
            let frame = [
                entry,
                u64::from(layout::SEL_UCODE),
                rflags,
                layout::user_stack_top(index),
                u64::from(layout::SEL_UDATA),
            ];
            for (k, v) in frame.iter().enumerate() {
                mem.write_u64(frame_at + 8 * k as u64, *v)?;
            }
            regs.rip = prog.iret_stub;
            regs.rsp = frame_at;
            regs.rflags = 0x2;
        } else {
            regs.rip = entry;
            regs.rsp = ksp;
            regs.rflags = rflags;
        }
        vcpu.set_regs(&regs)
            .map_err(|e| LabError::kvm("KVM_SET_REGS", e))?;
        vcpu.set_mp_state(kvm_mp_state {
            mp_state: KVM_MP_STATE_RUNNABLE,
        })
        .map_err(|e| LabError::kvm("KVM_SET_MP_STATE", e))?;
        Ok(())
    }

    /// Runs every vCPU on its own thread until all are done, `stop_after` passes (then they
    /// are kicked out of KVM_RUN), `timeout` passes (an error), or one fails (the others are
    /// stopped). `ready` is called with the thread ids before any guest instruction runs.
    /// Returns per-vCPU ends and the time from release to the last vCPU's end.
    pub(crate) fn run(
        &mut self,
        stop_after: Option<Duration>,
        timeout: Duration,
        ready: &mut dyn FnMut(&Threads),
    ) -> Result<(Vec<VcpuEnd>, Duration), LabError> {
        install_kick_handler()?;
        let n = self.vcpus.len();
        let stop = AtomicBool::new(false);
        let gate = Gate::default();
        let mem = &self.mem;
        let (tx, rx) = mpsc::channel::<Msg>();
        std::thread::scope(|s| {
            let mut spawned = 0usize;
            let mut spawn_err = None;
            for (i, vcpu) in self.vcpus.iter_mut().enumerate() {
                let tx = tx.clone();
                let (stop, gate) = (&stop, &gate);
                let r = std::thread::Builder::new()
                    .name(format!("kvmscope-vcpu{i}"))
                    .spawn_scoped(s, move || {
                        // SAFETY: gettid has no preconditions.
                        let tid = unsafe { libc::gettid() };
                        // SAFETY: pthread_self has no preconditions.
                        let pthread = unsafe { libc::pthread_self() };
                        let _ = tx.send(Msg::Started { i, tid, pthread });
                        let result = if gate.wait() {
                            vcpu_loop(vcpu, mem, i as u32, stop)
                        } else {
                            Err(None)
                        };
                        let _ = tx.send(Msg::Ended {
                            i,
                            result: Box::new(result),
                        });
                    });
                match r {
                    Ok(_) => spawned += 1,
                    Err(e) => {
                        spawn_err = Some(LabError::Thread(e));
                        break;
                    }
                }
            }
            drop(tx);
            let mut supervisor = Supervisor {
                n: spawned,
                tids: vec![0; n],
                pthreads: vec![None; n],
                ends: (0..n).map(|_| None).collect(),
                first_err: spawn_err,
                stop: &stop,
            };
            // Collect the thread ids.
            let mut started = 0;
            while started < spawned {
                match rx.recv() {
                    Ok(msg) => {
                        if matches!(msg, Msg::Started { .. }) {
                            started += 1;
                        }
                        supervisor.take(msg);
                    }
                    Err(_) => break,
                }
            }
            let ok = supervisor.first_err.is_none() && spawned == n;
            if ok {
                let threads = Threads {
                    pid: std::process::id() as i32,
                    vcpu_tids: supervisor.tids.clone(),
                };
                // A panicking callback must not leave the vCPU threads waiting at the gate
                // (the scope would never join): release them as "stopped", then re-raise.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ready(&threads)));
                if let Err(panic) = r {
                    gate.open(false);
                    drop(rx);
                    std::panic::resume_unwind(panic);
                }
            }
            let t0 = Instant::now();
            gate.open(ok);
            let mut finished_at = t0;
            let mut finished = supervisor.ends.iter().filter(|e| e.is_some()).count();
            let mut stopping = !ok;
            while finished < spawned {
                let wait = if stopping {
                    Duration::from_millis(2)
                } else {
                    Duration::from_millis(20)
                };
                match rx.recv_timeout(wait) {
                    Ok(msg) => {
                        if matches!(msg, Msg::Ended { .. }) {
                            finished += 1;
                            finished_at = Instant::now();
                        }
                        supervisor.take(msg);
                        if supervisor.first_err.is_some() {
                            stopping = true;
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
                let now = t0.elapsed();
                if !stopping && stop_after.is_some_and(|d| now >= d) {
                    stopping = true;
                }
                if !stopping && now >= timeout {
                    stopping = true;
                    supervisor.first_err = Some(LabError::Timeout(timeout, 0));
                }
                if stopping && finished < spawned {
                    stop.store(true, Ordering::SeqCst);
                    supervisor.kick_unfinished();
                }
            }
            let elapsed = finished_at.duration_since(t0);
            if let Some(e) = supervisor.first_err {
                if let LabError::Timeout(t, _) = e {
                    let ops = supervisor.ends.iter().flatten().map(|e| e.regs.r15).sum();
                    return Err(LabError::Timeout(t, ops));
                }
                return Err(e);
            }
            let ends: Vec<VcpuEnd> = supervisor.ends.into_iter().flatten().collect();
            if ends.len() != n {
                return Err(LabError::Thread(std::io::Error::other(
                    "a vCPU thread ended without reporting",
                )));
            }
            Ok((ends, elapsed))
        })
    }
}

enum Msg {
    Started {
        i: usize,
        tid: i32,
        pthread: libc::pthread_t,
    },
    Ended {
        i: usize,
        result: Box<Result<VcpuEnd, Option<LabError>>>,
    },
}

struct Supervisor<'a> {
    n: usize,
    tids: Vec<i32>,
    pthreads: Vec<Option<libc::pthread_t>>,
    ends: Vec<Option<VcpuEnd>>,
    first_err: Option<LabError>,
    stop: &'a AtomicBool,
}

impl Supervisor<'_> {
    fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Started { i, tid, pthread } => {
                self.tids[i] = tid;
                self.pthreads[i] = Some(pthread);
            }
            Msg::Ended { i, result } => {
                // The thread is about to return: never signal it again.
                self.pthreads[i] = None;
                match *result {
                    Ok(end) => self.ends[i] = Some(end),
                    Err(e) => {
                        if let (None, Some(e)) = (&self.first_err, e) {
                            self.first_err = Some(e);
                        }
                        self.stop.store(true, Ordering::SeqCst);
                    }
                }
            }
        }
    }

    fn kick_unfinished(&self) {
        for p in self.pthreads.iter().take(self.n).flatten() {
            // SAFETY: `p` is a thread of this scope that has not yet sent `Ended`, so it has
            // not returned and its pthread_t is valid (scoped threads are joined only after
            // this supervisor finishes). The signal has a no-op handler installed.
            unsafe {
                libc::pthread_kill(*p, kick_signal());
            }
        }
    }
}

/// Start gate: vCPU threads wait here until the supervisor has reported their tids.
#[derive(Default)]
struct Gate {
    state: Mutex<Option<bool>>,
    cv: Condvar,
}

impl Gate {
    fn wait(&self) -> bool {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while g.is_none() {
            g = self.cv.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        g.unwrap_or(false)
    }

    fn open(&self, go: bool) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = Some(go);
        self.cv.notify_all();
    }
}

fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN() + 5
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

fn install_kick_handler() -> Result<(), LabError> {
    static ONCE: Once = Once::new();
    static FAILED: AtomicBool = AtomicBool::new(false);
    ONCE.call_once(|| {
        if vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick).is_err() {
            FAILED.store(true, Ordering::SeqCst);
        }
    });
    if FAILED.load(Ordering::SeqCst) {
        return Err(LabError::Thread(std::io::Error::other(
            "cannot install the signal handler used to stop vCPUs",
        )));
    }
    Ok(())
}

/// Runs one vCPU. `Err(None)` means "stopped before starting".
fn vcpu_loop(
    vcpu: &mut VcpuFd,
    mem: &GuestMemory,
    index: u32,
    stop: &AtomicBool,
) -> Result<VcpuEnd, Option<LabError>> {
    let mut exits = ExitCounts::default();
    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let rip_of = |v: &VcpuFd| v.get_regs().map(|r| r.rip).unwrap_or(0);
        match vcpu.run() {
            Ok(VcpuExit::IoOut(port, _)) => {
                if port == DONE_PORT {
                    break;
                }
                if port == FAULT_PORT {
                    return Err(Some(guest_fault(vcpu, mem, index)));
                }
                *exits.io_out.entry(port).or_default() += 1;
            }
            Ok(VcpuExit::IoIn(_, data)) => {
                data.fill(0);
                exits.io_in += 1;
            }
            Ok(VcpuExit::MmioWrite(..)) => exits.mmio_write += 1,
            Ok(VcpuExit::MmioRead(_, data)) => {
                data.fill(0);
                exits.mmio_read += 1;
            }
            Ok(VcpuExit::Hlt) => exits.hlt += 1,
            Ok(VcpuExit::Intr) => exits.intr += 1,
            Ok(VcpuExit::Shutdown) => {
                return Err(Some(LabError::Shutdown {
                    vcpu: index,
                    rip: rip_of(vcpu),
                }))
            }
            Ok(VcpuExit::InternalError) => {
                let run = vcpu.get_kvm_run();
                // SAFETY: exit_reason is KVM_EXIT_INTERNAL_ERROR, for which the kernel fills
                // the `internal` member of the union.
                let internal = unsafe { run.__bindgen_anon_1.internal };
                let nd = (internal.ndata as usize).min(internal.data.len());
                let data = internal.data[..nd].to_vec();
                return Err(Some(LabError::InternalError {
                    vcpu: index,
                    suberror: internal.suberror,
                    rip: rip_of(vcpu),
                    data,
                }));
            }
            Ok(VcpuExit::FailEntry(reason, cpu)) => {
                return Err(Some(LabError::FailEntry {
                    vcpu: index,
                    reason,
                    cpu,
                }))
            }
            Ok(other) => {
                let exit = format!("{other:?}");
                return Err(Some(LabError::UnexpectedExit {
                    vcpu: index,
                    exit,
                    rip: rip_of(vcpu),
                }));
            }
            Err(e) if e.errno() == libc::EINTR => exits.intr += 1,
            Err(e) if e.errno() == libc::EAGAIN => {}
            Err(e) => return Err(Some(LabError::kvm("KVM_RUN", e))),
        }
    }
    let regs = vcpu
        .get_regs()
        .map_err(|e| Some(LabError::kvm("KVM_GET_REGS", e)))?;
    Ok(VcpuEnd { regs, exits })
}

/// Reads the frame the exception stub pushed: vector, error code, rip, cs, rflags, rsp, ss.
fn guest_fault(vcpu: &VcpuFd, mem: &GuestMemory, index: u32) -> LabError {
    let regs = match vcpu.get_regs() {
        Ok(r) => r,
        Err(e) => return LabError::kvm("KVM_GET_REGS", e),
    };
    let cr2 = vcpu.get_sregs().map(|s| s.cr2).unwrap_or(0);
    let word = |k: u64| mem.read_u64(regs.rsp + 8 * k).unwrap_or(0);
    let vector = word(0) as u8;
    let (error_code, rip) = (word(1), word(2));
    let hint = match vector {
        13 => "; a #GP at a WRMSR means this host rejects that MSR or value (try another --msr)"
            .to_string(),
        6 => "; a #UD means this host cannot run that instruction at that privilege level"
            .to_string(),
        _ => String::new(),
    };
    LabError::GuestFault {
        vcpu: index,
        vector,
        name: exception_name(vector),
        error_code,
        rip,
        cr2,
        hint,
    }
}
