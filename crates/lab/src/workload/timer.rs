//! The timer storm: one thread arming a short hrtimer over and over.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{backstop, sys, WorkloadError, WorkloadThreads};

const NAME: &str = "timer storm";

/// How the storm thread arms its timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerMethod {
    /// `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)` to the next period boundary: one
    /// `hrtimer_start` and one expiry of `hrtimer_wakeup` per period.
    Nanosleep,
    /// A periodic `timerfd` read in a loop: the timer function is `timerfd_tmrproc`.
    Timerfd,
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerStorm {
    /// Timer period.
    pub period: Duration,
    /// Number of expiries to wait for.
    pub count: u64,
    /// How the timer is armed.
    pub method: TimerMethod,
    /// CPU to pin the storm thread to (`None`: not pinned).
    pub cpu: Option<usize>,
}

impl TimerStorm {
    /// A storm of `count` expiries, `period` apart, with `clock_nanosleep`, unpinned.
    pub fn new(period: Duration, count: u64) -> TimerStorm {
        TimerStorm {
            period,
            count,
            method: TimerMethod::Nanosleep,
            cpu: None,
        }
    }

    /// Sets the method.
    pub fn method(mut self, method: TimerMethod) -> TimerStorm {
        self.method = method;
        self
    }

    /// Pins the storm thread to `cpu`.
    pub fn cpu(mut self, cpu: usize) -> TimerStorm {
        self.cpu = Some(cpu);
        self
    }
}

/// What the storm did, by its own count.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TimerStormOutcome {
    /// The thread that armed the timer.
    pub threads: WorkloadThreads,
    /// The method used.
    pub method: TimerMethod,
    /// Timer arm-and-wait operations completed (`clock_nanosleep` or `read` calls).
    pub ops: u64,
    /// Timer expiries the thread observed: one per `clock_nanosleep`, the sum of the counts
    /// returned by `read` for a timerfd (more than one when the thread was late).
    pub expiries: u64,
    /// Periods whose deadline had already passed when the thread armed the timer
    /// (`Nanosleep` only): these return without a timer interrupt.
    pub late: u64,
    /// True when the time limit stopped the storm before `count` expiries.
    pub stopped_by_time_limit: bool,
    /// Wall-clock duration of the storm (informational; never use it in a test).
    pub elapsed: Duration,
}

/// Runs a timer storm on a new thread; `on_ready` is called with the thread id before the
/// first timer is armed and the storm waits for it to return (start a tracer there).
pub fn timer_storm(
    spec: &TimerStorm,
    on_ready: impl FnOnce(&WorkloadThreads),
) -> Result<TimerStormOutcome, WorkloadError> {
    if spec.period.is_zero() || spec.period > Duration::from_secs(1) {
        return Err(WorkloadError::Invalid {
            workload: NAME,
            why: format!("period {:?} must be between 1 ns and 1 s", spec.period),
        });
    }
    if let Some(cpu) = spec.cpu {
        let allowed = super::allowed_cpus()?;
        if !allowed.contains(&cpu) {
            return Err(WorkloadError::CpuUnavailable { cpu, allowed });
        }
    }
    let limit = backstop(
        spec.period
            .saturating_mul(u32::try_from(spec.count).unwrap_or(u32::MAX)),
    );
    let (ready_tx, ready_rx) = mpsc::channel::<Result<u32, WorkloadError>>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let spec2 = spec.clone();
    let handle = std::thread::Builder::new()
        .name("kvmscope-timer-storm".into())
        .spawn(move || -> Result<TimerStormOutcome, WorkloadError> {
            if let Some(cpu) = spec2.cpu {
                if let Err(source) = sys::pin_to(cpu) {
                    let e = WorkloadError::Syscall {
                        workload: NAME,
                        call: "sched_setaffinity",
                        source,
                    };
                    let _ = ready_tx.send(Err(WorkloadError::Thread {
                        workload: NAME,
                        why: e.to_string(),
                    }));
                    return Err(e);
                }
            }
            let tid = sys::gettid();
            let _ = ready_tx.send(Ok(tid));
            if go_rx.recv().is_err() {
                return Err(WorkloadError::Thread {
                    workload: NAME,
                    why: "caller went away".into(),
                });
            }
            run(&spec2, tid, limit)
        })
        .map_err(|e| WorkloadError::Thread {
            workload: NAME,
            why: e.to_string(),
        })?;
    let tid = match ready_rx.recv() {
        Ok(Ok(tid)) => tid,
        Ok(Err(e)) => {
            let _ = handle.join();
            return Err(e);
        }
        Err(_) => {
            return Err(join_error(handle));
        }
    };
    let threads = WorkloadThreads {
        pid: std::process::id(),
        driver_tid: tid,
        driver_cpu: spec.cpu,
        helpers: Vec::new(),
    };
    on_ready(&threads);
    let _ = go_tx.send(());
    match handle.join() {
        Ok(r) => r,
        Err(_) => Err(WorkloadError::Thread {
            workload: NAME,
            why: "the storm thread panicked".into(),
        }),
    }
}

fn join_error(
    handle: std::thread::JoinHandle<Result<TimerStormOutcome, WorkloadError>>,
) -> WorkloadError {
    match handle.join() {
        Ok(Err(e)) => e,
        _ => WorkloadError::Thread {
            workload: NAME,
            why: "the storm thread ended before starting".into(),
        },
    }
}

fn run(spec: &TimerStorm, tid: u32, limit: Duration) -> Result<TimerStormOutcome, WorkloadError> {
    let started = Instant::now();
    let mut ops = 0u64;
    let mut expiries = 0u64;
    let mut late = 0u64;
    let mut stopped = false;
    let syscall = |call, source| WorkloadError::Syscall {
        workload: NAME,
        call,
        source,
    };
    match spec.method {
        TimerMethod::Nanosleep => {
            let mut next = sys::add(sys::monotonic(), spec.period);
            while expiries < spec.count {
                if started.elapsed() > limit {
                    stopped = true;
                    break;
                }
                let now = sys::monotonic();
                if (now.tv_sec, now.tv_nsec) >= (next.tv_sec, next.tv_nsec) {
                    late += 1;
                }
                sys::sleep_until(&next).map_err(|e| syscall("clock_nanosleep", e))?;
                ops += 1;
                expiries += 1;
                next = sys::add(next, spec.period);
                // Never queue up missed periods: re-base on now when far behind.
                let now = sys::monotonic();
                if (now.tv_sec, now.tv_nsec) > (next.tv_sec, next.tv_nsec) {
                    next = sys::add(now, spec.period);
                }
            }
        }
        TimerMethod::Timerfd => {
            let fd =
                sys::timerfd_periodic(spec.period).map_err(|e| syscall("timerfd_settime", e))?;
            while expiries < spec.count {
                if started.elapsed() > limit {
                    stopped = true;
                    break;
                }
                let n = sys::timerfd_wait(&fd).map_err(|e| syscall("read(timerfd)", e))?;
                ops += 1;
                expiries += n;
            }
        }
    }
    Ok(TimerStormOutcome {
        threads: WorkloadThreads {
            pid: std::process::id(),
            driver_tid: tid,
            driver_cpu: spec.cpu,
            helpers: Vec::new(),
        },
        method: spec.method,
        ops,
        expiries,
        late,
        stopped_by_time_limit: stopped,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_its_own_expiries() {
        let mut seen = None;
        let out = timer_storm(&TimerStorm::new(Duration::from_micros(200), 200), |t| {
            seen = Some(t.clone())
        })
        .unwrap();
        assert_eq!(out.ops, 200);
        assert_eq!(out.expiries, 200);
        assert_eq!(seen.unwrap().driver_tid, out.threads.driver_tid);
        assert!(!out.stopped_by_time_limit);

        let out = timer_storm(
            &TimerStorm::new(Duration::from_micros(500), 100)
                .method(TimerMethod::Timerfd)
                .cpu(0),
            |_| {},
        )
        .unwrap();
        assert!(out.expiries >= 100 && out.ops <= out.expiries);
        assert_eq!(out.threads.driver_cpu, Some(0));
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(timer_storm(&TimerStorm::new(Duration::ZERO, 1), |_| {}).is_err());
        let err = timer_storm(
            &TimerStorm::new(Duration::from_micros(100), 1).cpu(100_000),
            |_| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("not available"), "{err}");
    }
}
