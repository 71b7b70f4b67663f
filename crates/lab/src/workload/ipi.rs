//! The IPI storm: threads of one process spin on the other CPUs while a driver thread
//! changes the address space or asks for a memory barrier, so the kernel has to interrupt
//! the spinning CPUs.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::{backstop, sys, WorkloadError, WorkloadThreads};

const NAME: &str = "IPI storm";

/// What the driver thread does once per operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IpiMethod {
    /// `mmap` + touch + `munmap` of a few pages: the unmap flushes the TLBs of every CPU
    /// running the process (x86: `flush_tlb_func` through a function-call IPI, counted as
    /// `TLB` in /proc/interrupts).
    Munmap,
    /// `mprotect` of touched pages from read-write to read-only (counted), then back to
    /// read-write and touched again (not counted): a downgrade needs a TLB flush.
    Mprotect,
    /// `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`: an IPI (`ipi_mb`) to every CPU running
    /// a thread of the process (`CAL` on x86).
    Membarrier,
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpiStorm {
    /// The operation.
    pub method: IpiMethod,
    /// Number of counted operations.
    pub ops: u64,
    /// Pages per mapping (`Munmap`, `Mprotect`).
    pub pages: usize,
    /// CPU of the driver thread (default: the first allowed CPU).
    pub driver_cpu: Option<usize>,
    /// CPUs of the spinning threads (default: every other allowed CPU).
    pub spinner_cpus: Option<Vec<usize>>,
}

impl IpiStorm {
    /// `ops` operations of `method` on 4 pages, driver on the first CPU, spinners on the rest.
    pub fn new(method: IpiMethod, ops: u64) -> IpiStorm {
        IpiStorm {
            method,
            ops,
            pages: 4,
            driver_cpu: None,
            spinner_cpus: None,
        }
    }
}

/// What the storm did, by its own count.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IpiStormOutcome {
    /// Driver and spinner threads, with their CPUs.
    pub threads: WorkloadThreads,
    /// The operation.
    pub method: IpiMethod,
    /// Counted operations done (`munmap`, downgrading `mprotect`, or `membarrier` calls).
    pub ops: u64,
    /// All system calls of the driver that change the address space or barrier (includes
    /// the uncounted `mprotect` upgrades and the `mmap`s).
    pub syscalls: u64,
    /// Spin-loop iterations of each spinner (shows that they ran).
    pub spinner_loops: Vec<u64>,
    /// True when the time limit stopped the storm early.
    pub stopped_by_time_limit: bool,
    /// Wall-clock duration (informational; never use it in a test).
    pub elapsed: Duration,
}

/// Runs an IPI storm; `on_ready` is called with all thread ids once the spinners are
/// spinning and before the first operation (start a tracer there).
pub fn ipi_storm(
    spec: &IpiStorm,
    on_ready: impl FnOnce(&WorkloadThreads),
) -> Result<IpiStormOutcome, WorkloadError> {
    let allowed = super::allowed_cpus()?;
    let driver_cpu =
        spec.driver_cpu
            .or_else(|| allowed.first().copied())
            .ok_or(WorkloadError::Invalid {
                workload: NAME,
                why: "this process may run on no CPU".into(),
            })?;
    let spinner_cpus: Vec<usize> = match &spec.spinner_cpus {
        Some(c) => c.clone(),
        None => allowed
            .iter()
            .copied()
            .filter(|&c| c != driver_cpu)
            .collect(),
    };
    if spinner_cpus.is_empty() {
        return Err(WorkloadError::Invalid {
            workload: NAME,
            why: format!(
                "needs at least two CPUs (allowed: {allowed:?}); an IPI goes to another CPU"
            ),
        });
    }
    for &cpu in spinner_cpus.iter().chain(std::iter::once(&driver_cpu)) {
        if !allowed.contains(&cpu) {
            return Err(WorkloadError::CpuUnavailable { cpu, allowed });
        }
    }
    if spec.pages == 0 && spec.method != IpiMethod::Membarrier {
        return Err(WorkloadError::Invalid {
            workload: NAME,
            why: "pages must be at least 1".into(),
        });
    }

    let stop = Arc::new(AtomicBool::new(false));
    let spinning = Arc::new(AtomicUsize::new(0));
    let (tid_tx, tid_rx) = mpsc::channel::<(usize, Result<u32, String>)>();
    let mut spinners = Vec::new();
    for (i, &cpu) in spinner_cpus.iter().enumerate() {
        let stop2 = Arc::clone(&stop);
        let spinning = Arc::clone(&spinning);
        let tid_tx = tid_tx.clone();
        let loops = Arc::new(AtomicU64::new(0));
        let loops2 = Arc::clone(&loops);
        let h = std::thread::Builder::new()
            .name(format!("kvmscope-ipi-spin{i}"))
            .spawn(move || {
                if let Err(e) = sys::pin_to(cpu) {
                    let _ = tid_tx.send((i, Err(format!("sched_setaffinity({cpu}): {e}"))));
                    return;
                }
                let _ = tid_tx.send((i, Ok(sys::gettid())));
                spinning.fetch_add(1, Ordering::SeqCst);
                let mut n = 0u64;
                while !stop2.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                    n += 1;
                }
                loops2.store(n, Ordering::Relaxed);
            })
            .map_err(|e| WorkloadError::Thread {
                workload: NAME,
                why: e.to_string(),
            });
        match h {
            Ok(h) => spinners.push((h, loops)),
            Err(e) => {
                stop.store(true, Ordering::SeqCst);
                return Err(e);
            }
        }
    }
    drop(tid_tx);
    let stop_all = |spinners: Vec<(std::thread::JoinHandle<()>, Arc<AtomicU64>)>| -> Vec<u64> {
        stop.store(true, Ordering::SeqCst);
        spinners
            .into_iter()
            .map(|(h, loops)| {
                let _ = h.join();
                loops.load(Ordering::Relaxed)
            })
            .collect()
    };
    let mut helpers = vec![(0u32, 0usize); spinner_cpus.len()];
    for _ in 0..spinner_cpus.len() {
        match tid_rx.recv() {
            Ok((i, Ok(tid))) => helpers[i] = (tid, spinner_cpus[i]),
            Ok((_, Err(why))) => {
                stop_all(spinners);
                return Err(WorkloadError::Thread {
                    workload: NAME,
                    why,
                });
            }
            Err(_) => {
                stop_all(spinners);
                return Err(WorkloadError::Thread {
                    workload: NAME,
                    why: "a spinner ended before starting".into(),
                });
            }
        }
    }

    // The driver runs on this thread, pinned for the duration and restored afterwards.
    let previous = allowed.clone();
    if let Err(source) = sys::pin_to(driver_cpu) {
        stop_all(spinners);
        return Err(WorkloadError::Syscall {
            workload: NAME,
            call: "sched_setaffinity",
            source,
        });
    }
    while spinning.load(Ordering::SeqCst) < spinner_cpus.len() {
        std::thread::yield_now();
    }
    let threads = WorkloadThreads {
        pid: std::process::id(),
        driver_tid: sys::gettid(),
        driver_cpu: Some(driver_cpu),
        helpers,
    };
    on_ready(&threads);
    let result = drive(spec);
    let spinner_loops = stop_all(spinners);
    restore_affinity(&previous);
    let (ops, syscalls, stopped, elapsed) = result?;
    Ok(IpiStormOutcome {
        threads,
        method: spec.method,
        ops,
        syscalls,
        spinner_loops,
        stopped_by_time_limit: stopped,
        elapsed,
    })
}

fn restore_affinity(cpus: &[usize]) {
    // Best effort: re-allow every CPU the thread had before (pin_to takes one CPU, so set
    // the full mask directly).
    let _ = sys::set_affinity(cpus);
}

fn drive(spec: &IpiStorm) -> Result<(u64, u64, bool, Duration), WorkloadError> {
    let started = Instant::now();
    let limit = backstop(
        Duration::from_micros(100).saturating_mul(u32::try_from(spec.ops).unwrap_or(u32::MAX)),
    );
    let page = sys::page_size();
    let len = spec.pages.max(1) * page;
    let syscall = |call, source| WorkloadError::Syscall {
        workload: NAME,
        call,
        source,
    };
    let mut ops = 0u64;
    let mut syscalls = 0u64;
    let mut stopped = false;
    match spec.method {
        IpiMethod::Munmap => {
            while ops < spec.ops {
                if started.elapsed() > limit {
                    stopped = true;
                    break;
                }
                let m = sys::Mapping::new(len).map_err(|e| syscall("mmap", e))?;
                m.touch(page);
                m.unmap().map_err(|e| syscall("munmap", e))?;
                syscalls += 2;
                ops += 1;
            }
        }
        IpiMethod::Mprotect => {
            let m = sys::Mapping::new(len).map_err(|e| syscall("mmap", e))?;
            syscalls += 1;
            m.touch(page);
            while ops < spec.ops {
                if started.elapsed() > limit {
                    stopped = true;
                    break;
                }
                m.protect(libc::PROT_READ)
                    .map_err(|e| syscall("mprotect", e))?;
                ops += 1;
                m.protect(libc::PROT_READ | libc::PROT_WRITE)
                    .map_err(|e| syscall("mprotect", e))?;
                m.touch(page);
                syscalls += 2;
            }
            m.unmap().map_err(|e| syscall("munmap", e))?;
            syscalls += 1;
        }
        IpiMethod::Membarrier => {
            sys::membarrier_register()
                .map_err(|e| syscall("membarrier(REGISTER_PRIVATE_EXPEDITED)", e))?;
            syscalls += 1;
            while ops < spec.ops {
                if started.elapsed() > limit {
                    stopped = true;
                    break;
                }
                sys::membarrier_private_expedited()
                    .map_err(|e| syscall("membarrier(PRIVATE_EXPEDITED)", e))?;
                syscalls += 1;
                ops += 1;
            }
        }
    }
    Ok((ops, syscalls, stopped, started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_cpus() -> bool {
        super::super::allowed_cpus()
            .map(|c| c.len() >= 2)
            .unwrap_or(false)
    }

    #[test]
    fn every_method_counts_its_ops() {
        if !two_cpus() {
            eprintln!("SKIPPED: the IPI storm needs two CPUs");
            return;
        }
        for method in [
            IpiMethod::Munmap,
            IpiMethod::Mprotect,
            IpiMethod::Membarrier,
        ] {
            let mut ready = None;
            let out = ipi_storm(&IpiStorm::new(method, 50), |t| ready = Some(t.clone())).unwrap();
            assert_eq!(out.ops, 50, "{method:?}");
            assert!(!out.stopped_by_time_limit);
            let ready = ready.unwrap();
            assert_eq!(ready, out.threads);
            assert!(!ready.helpers.is_empty());
            assert_eq!(out.spinner_loops.len(), ready.helpers.len());
            assert!(out.spinner_loops.iter().all(|&n| n > 0), "spinners ran");
        }
    }

    #[test]
    fn needs_another_cpu() {
        let allowed = super::super::allowed_cpus().unwrap();
        let spec = IpiStorm {
            spinner_cpus: Some(vec![]),
            ..IpiStorm::new(IpiMethod::Munmap, 1)
        };
        let err = ipi_storm(&spec, |_| {}).unwrap_err();
        assert!(err.to_string().contains("two CPUs"), "{err} {allowed:?}");
    }
}
