//! The process-wide guard that keeps kvmscope from leaving tracing state behind.
//!
//! [`install`] removes instances left by killed runs ([`crate::tracefs::remove_stale`]), sets a
//! panic hook that removes every live [`crate::tracefs::Instance`] of this process, and starts
//! a thread that receives SIGINT, SIGTERM and SIGHUP through a self-pipe (signal-hook).
//!
//! With [`OnSignal::Stop`] the first signal only asks the program to stop
//! ([`stop_requested`]); the program finishes its work (e.g. writes the capture file) and
//! drops its instances normally. A second signal, or no exit within the grace period, removes
//! the instances and exits with status 128+signal. With [`OnSignal::Exit`] the first signal
//! does that at once. SIGKILL cannot be caught: the next [`install`] cleans up after it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Condvar, Mutex, Once};
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::error::CaptureError;
use crate::tracefs;

/// The signals the guard handles.
pub const SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// What the first SIGINT/SIGTERM/SIGHUP does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSignal {
    /// Set [`stop_requested`] and give the program `grace` to finish; a second signal or the
    /// end of the grace period removes the instances and exits.
    Stop { grace: Duration },
    /// Remove the instances and exit with 128+signal at once.
    Exit,
}

static SIGNALLED: AtomicI32 = AtomicI32::new(0);
static ACKNOWLEDGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static WAKE: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());
static INSTALL: Once = Once::new();

/// What [`install`] did.
#[derive(Debug)]
pub struct Guard {
    /// Instances of dead kvmscope processes that were removed.
    pub removed_stale: Vec<PathBuf>,
    /// Why stale instances could not all be removed (the guard is installed anyway).
    pub stale_error: Option<String>,
}

/// Installs the guard (once per process; later calls only remove stale instances).
pub fn install(tracefs_root: &Path, on_signal: OnSignal) -> Result<Guard, CaptureError> {
    let (removed_stale, stale_error) = match tracefs::remove_stale(tracefs_root) {
        Ok(v) => (v, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let mut result = Ok(());
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            tracefs::teardown_live();
            previous(info);
        }));
        result = start_signal_thread(on_signal);
    });
    result?;
    Ok(Guard {
        removed_stale,
        stale_error,
    })
}

fn start_signal_thread(on_signal: OnSignal) -> Result<(), CaptureError> {
    let mut signals =
        signal_hook::iterator::Signals::new(SIGNALS).map_err(|source| CaptureError::Io {
            context: "cannot install handlers for SIGINT/SIGTERM/SIGHUP".into(),
            path: PathBuf::from("/proc/self"),
            source,
        })?;
    std::thread::Builder::new()
        .name("kvmscope-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let first = SIGNALLED
                    .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok();
                wake_waiters();
                match on_signal {
                    OnSignal::Stop { grace } if first => {
                        std::thread::spawn(move || {
                            std::thread::sleep(grace);
                            if !ACKNOWLEDGED.load(Ordering::SeqCst) {
                                exit_now(sig);
                            }
                        });
                    }
                    _ => exit_now(sig),
                }
            }
        })
        .map_err(|source| CaptureError::Io {
            context: "cannot start the signal thread".into(),
            path: PathBuf::from("/proc/self"),
            source,
        })?;
    Ok(())
}

fn exit_now(sig: i32) -> ! {
    tracefs::teardown_live();
    std::process::exit(128 + sig);
}

fn wake_waiters() {
    let (lock, cvar) = &WAKE;
    *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
    cvar.notify_all();
}

/// The signal that asked the program to stop, if one arrived.
pub fn stop_requested() -> Option<i32> {
    match SIGNALLED.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// Tells the guard that the program has seen the stop request and is finishing (e.g.
/// writing a large capture file): the grace period no longer ends the process. A second
/// signal still does.
pub fn acknowledge_stop() {
    ACKNOWLEDGED.store(true, Ordering::SeqCst);
}

/// Asks the program to stop as if a signal had arrived (e.g. `--duration` elapsed or the
/// traced command exited). Uses signal number 0 internally, so [`stop_requested`] stays
/// `None`; use [`wait_stop`] to wait for either.
pub fn request_stop() {
    wake_waiters();
}

/// Sleeps up to `timeout`, returning early when a signal arrives or [`request_stop`] is
/// called. Returns true when a stop was requested.
pub fn wait_stop(timeout: Duration) -> bool {
    let (lock, cvar) = &WAKE;
    let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
    let (guard, _) = cvar
        .wait_timeout_while(guard, timeout, |woken| !*woken)
        .unwrap_or_else(|p| p.into_inner());
    *guard || stop_requested().is_some()
}

/// Sends `sig` to process `pid` (e.g. to pass a stop on to a traced command).
pub fn signal_process(pid: u32, sig: i32) -> std::io::Result<()> {
    let pid =
        i32::try_from(pid).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
