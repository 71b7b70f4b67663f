//! A private tracefs instance owned by this process.
//!
//! kvmscope never writes to the global tracing files: everything it enables lives in
//! `instances/kvmscope-<purpose>-<pid>-<n>`, which is disabled and removed when the
//! [`Instance`] is dropped (and by [`crate::guard`] on signals and panics). Instances left by
//! a killed run are found by their name (the pid is no longer alive) and removed by
//! [`remove_stale`].

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::error::CaptureError;

/// Prefix of every instance kvmscope creates; [`remove_stale`] touches nothing else.
pub const INSTANCE_PREFIX: &str = "kvmscope-";

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(0);

/// Paths of the instances this process currently owns, so that a signal or panic can remove
/// them (see [`crate::guard`]).
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A tracefs instance created by this process. Dropping it disables all its events and
/// removes its directory.
#[derive(Debug)]
pub struct Instance {
    root: PathBuf,
    path: PathBuf,
    name: String,
    removed: bool,
}

impl Instance {
    /// Creates `instances/kvmscope-<purpose>-<pid>-<n>` under `tracefs_root`. `purpose` is a
    /// short word (e.g. `record`, `test`); characters other than `[A-Za-z0-9_]` become `_`.
    /// The new instance has no event enabled; its `tracing_on` is left at the kernel default
    /// (on).
    pub fn create(tracefs_root: &Path, purpose: &str) -> Result<Instance, CaptureError> {
        let purpose: String = purpose
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let pid = std::process::id();
        let instances = tracefs_root.join("instances");
        loop {
            let n = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
            let name = format!("{INSTANCE_PREFIX}{purpose}-{pid}-{n}");
            let path = instances.join(&name);
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    LIVE.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(path.clone());
                    return Ok(Instance {
                        root: tracefs_root.to_path_buf(),
                        path,
                        name,
                        removed: false,
                    });
                }
                // Left behind by an earlier process that had our pid: try the next number.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(CaptureError::CreateInstance { path, source }),
            }
        }
    }

    /// The instance directory (`<tracefs>/instances/<name>`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The instance name (`kvmscope-<purpose>-<pid>-<n>`), as `trace-cmd -B` expects it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tracefs root this instance lives under.
    pub fn tracefs_root(&self) -> &Path {
        &self.root
    }

    /// The directory of one event of this instance, checked to exist.
    pub fn event_dir(&self, system: &str, event: &str) -> Result<PathBuf, CaptureError> {
        check_name(system)?;
        check_name(event)?;
        let dir = self.path.join("events").join(system).join(event);
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(CaptureError::NoSuchEvent {
                system: system.to_string(),
                event: event.to_string(),
                path: dir,
                available: self.root.join("available_events"),
            })
        }
    }

    /// Enables `system:event` in this instance.
    pub fn enable(&self, system: &str, event: &str) -> Result<(), CaptureError> {
        let dir = self.event_dir(system, event)?;
        write_file(&dir.join("enable"), "1")
    }

    /// Enables every event of `system` (e.g. `kvm`) in this instance.
    pub fn enable_system(&self, system: &str) -> Result<(), CaptureError> {
        check_name(system)?;
        let dir = self.path.join("events").join(system);
        if !dir.is_dir() {
            return Err(CaptureError::NoSuchEvent {
                system: system.to_string(),
                event: "*".to_string(),
                path: dir,
                available: self.root.join("available_events"),
            });
        }
        write_file(&dir.join("enable"), "1")
    }

    /// Disables every event of this instance.
    pub fn disable_all(&self) -> Result<(), CaptureError> {
        write_file(&self.path.join("events").join("enable"), "0")
    }

    /// Sets the kernel filter of `system:event` (e.g. `port == 0x3f8`). An empty string or
    /// `"0"` clears it. A filter the kernel rejects gives [`CaptureError::InvalidFilter`] with
    /// the kernel's explanation.
    pub fn set_filter(&self, system: &str, event: &str, filter: &str) -> Result<(), CaptureError> {
        let path = self.event_dir(system, event)?.join("filter");
        let value = if filter.trim().is_empty() {
            "0"
        } else {
            filter
        };
        match write_raw(&path, value) {
            Ok(()) => Ok(()),
            Err(source) if source.raw_os_error() == Some(libc::EINVAL) => {
                let kernel_message = read_file(&path)
                    .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
                    .unwrap_or_default();
                Err(CaptureError::InvalidFilter {
                    path,
                    filter: filter.to_string(),
                    kernel_message,
                    source,
                })
            }
            Err(source) => Err(CaptureError::Write {
                path,
                value: value.to_string(),
                source,
            }),
        }
    }

    /// Sets the per-CPU ring-buffer size of this instance, in KiB.
    pub fn set_buffer_size_kb(&self, kb: u64) -> Result<(), CaptureError> {
        write_file(&self.path.join("buffer_size_kb"), &kb.to_string())
    }

    /// Reads the per-CPU ring-buffer size of this instance, in KiB.
    pub fn buffer_size_kb(&self) -> Result<u64, CaptureError> {
        let path = self.path.join("buffer_size_kb");
        let text = read_file(&path)?;
        // "7 (expanded: 1408)" before the first resize; a plain number after.
        text.split_whitespace()
            .next()
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| {
                kvmscope_tracedat::TraceDatError::Format {
                    what: path.display().to_string(),
                    line: 1,
                    message: format!("expected a number of KiB, found {text:?}"),
                }
                .into()
            })
    }

    /// Turns recording into this instance's ring buffers on or off.
    pub fn set_tracing_on(&self, on: bool) -> Result<(), CaptureError> {
        write_file(&self.path.join("tracing_on"), if on { "1" } else { "0" })
    }

    /// The instance's `trace` file: the buffered events as text (does not consume them).
    pub fn trace_text(&self) -> Result<String, CaptureError> {
        read_file(&self.path.join("trace"))
    }

    /// The binary ring-buffer pipe of one CPU.
    pub fn trace_pipe_raw(&self, cpu: usize) -> PathBuf {
        self.path
            .join("per_cpu")
            .join(format!("cpu{cpu}"))
            .join("trace_pipe_raw")
    }

    /// Per-CPU statistics (`entries`, `overrun`, `dropped events`, ...) of one CPU.
    pub fn cpu_stats(&self, cpu: usize) -> Result<String, CaptureError> {
        read_file(
            &self
                .path
                .join("per_cpu")
                .join(format!("cpu{cpu}"))
                .join("stats"),
        )
    }

    /// Disables everything and removes the instance now, reporting failure (dropping does the
    /// same but can only print).
    pub fn remove(mut self) -> Result<(), CaptureError> {
        self.removed = true;
        unregister(&self.path);
        teardown(&self.path)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        unregister(&self.path);
        if let Err(e) = teardown(&self.path) {
            eprintln!("kvmscope: {e}");
        }
    }
}

fn unregister(path: &Path) {
    LIVE.lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|p| p != path);
}

/// Paths of the instances this process owns right now.
pub fn live_instances() -> Vec<PathBuf> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Disables and removes every instance this process still owns, without waiting for their
/// owners to be dropped (for signal and panic paths). Returns how many were removed.
pub fn teardown_live() -> usize {
    let paths = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|p| p.into_inner()));
    paths.iter().filter(|p| teardown(p).is_ok()).count()
}

/// Disables all events, stops recording, and removes the instance directory, retrying
/// briefly while the kernel reports it busy (a reader still has a pipe open).
pub(crate) fn teardown(path: &Path) -> Result<(), CaptureError> {
    if !path.exists() {
        return Ok(());
    }
    // Best effort: rmdir removes the instance whatever is enabled, but a disabled instance
    // stops producing events at once even if rmdir has to wait.
    let _ = write_raw(&path.join("tracing_on"), "0");
    let _ = write_raw(&path.join("events").join("enable"), "0");
    let mut delay = Duration::from_millis(5);
    let mut waited = Duration::ZERO;
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && waited < Duration::from_secs(3) => {
                std::thread::sleep(delay);
                waited += delay;
                delay = (delay * 2).min(Duration::from_millis(200));
            }
            Err(source) => {
                return Err(CaptureError::RemoveInstance {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Removes `kvmscope-*` instances whose owning process no longer exists (left by a run that
/// was killed with SIGKILL). Instances of live processes and of other tools are never
/// touched. Returns the removed paths.
pub fn remove_stale(tracefs_root: &Path) -> Result<Vec<PathBuf>, CaptureError> {
    let dir = tracefs_root.join("instances");
    let entries = std::fs::read_dir(&dir).map_err(|e| CaptureError::read(&dir, e))?;
    let mut removed = Vec::new();
    let mut first_error = None;
    for entry in entries {
        let entry = entry.map_err(|e| CaptureError::read(&dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(pid) = owner_pid(name) else { continue };
        if pid_alive(pid) {
            continue;
        }
        let path = entry.path();
        // Try them all; report the first failure after.
        match teardown(&path) {
            Ok(()) => removed.push(path),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(removed),
    }
}

/// The pid encoded in a kvmscope instance name `kvmscope-<purpose>-<pid>-<n>`, or None for
/// any other name.
pub fn owner_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(INSTANCE_PREFIX)?;
    let mut parts = rest.rsplitn(3, '-');
    let n = parts.next()?;
    let pid = parts.next()?;
    let purpose = parts.next()?;
    if purpose.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.is_empty() {
        return None;
    }
    pid.parse::<i32>().ok().filter(|&p| p > 0)
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 sends nothing; it only checks that the pid exists and that
    // we may signal it. No memory is involved.
    let rc = unsafe { libc::kill(pid, 0) };
    if rc == 0 {
        return true;
    }
    // EPERM: it exists but belongs to someone else. Only ESRCH means gone.
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

fn check_name(name: &str) -> Result<(), CaptureError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        Err(CaptureError::InvalidEventName(name.to_string()))
    } else {
        Ok(())
    }
}

/// Writes `value` to an existing tracefs file (truncating, never creating).
fn write_raw(path: &Path, value: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    f.write_all(value.as_bytes())
}

pub(crate) fn write_file(path: &Path, value: &str) -> Result<(), CaptureError> {
    write_raw(path, value).map_err(|source| CaptureError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

/// Reads a tracefs file with one large first read: some tracefs files (`header_page`,
/// `header_event`) return their whole content on the first read and nothing after, so
/// the small probing reads of `std::fs::read_to_string` would cut them short.
pub fn read_file(path: &Path) -> Result<String, CaptureError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| CaptureError::read(path, e))?;
    let mut buf = Vec::with_capacity(1 << 16);
    f.read_to_end(&mut buf)
        .map_err(|e| CaptureError::read(path, e))?;
    String::from_utf8(buf).map_err(|e| {
        CaptureError::read(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_only_our_names() {
        assert_eq!(owner_pid("kvmscope-record-1234-0"), Some(1234));
        assert_eq!(owner_pid("kvmscope-a_b-77-12"), Some(77));
        assert_eq!(owner_pid("kvmscope-1234-0"), None);
        assert_eq!(owner_pid("trace-cmd-1234-0"), None);
        assert_eq!(owner_pid("kvmscope-x-abc-0"), None);
        assert_eq!(owner_pid("kvmscope-x-12-"), None);
        assert_eq!(owner_pid("kvmscope-x-0-1"), None);
    }

    #[test]
    fn instance_lifecycle_on_the_real_kernel() {
        let Some(root) = crate::host::require_tracefs() else {
            return;
        };
        let inst = Instance::create(&root, "test").unwrap();
        let path = inst.path().to_path_buf();
        assert!(path.is_dir());
        assert!(live_instances().contains(&path));
        inst.enable("kvm", "kvm_pio").unwrap();
        assert_eq!(
            read_file(&path.join("events/kvm/kvm_pio/enable"))
                .unwrap()
                .trim(),
            "1"
        );
        inst.set_filter("kvm", "kvm_pio", "port == 0x3f8").unwrap();
        assert!(read_file(&path.join("events/kvm/kvm_pio/filter"))
            .unwrap()
            .contains("0x3f8"));
        let err = inst
            .set_filter("kvm", "kvm_pio", "no_such_field == 1")
            .unwrap_err();
        assert!(matches!(err, CaptureError::InvalidFilter { .. }), "{err}");
        inst.set_buffer_size_kb(64).unwrap();
        // The kernel rounds up to whole pages.
        assert!(inst.buffer_size_kb().unwrap() >= 64);
        let _ = inst.trace_text().unwrap();
        assert!(matches!(
            inst.enable("kvm", "no_such_event"),
            Err(CaptureError::NoSuchEvent { .. })
        ));
        assert!(matches!(
            inst.enable("kvm", "../x"),
            Err(CaptureError::InvalidEventName(_))
        ));
        drop(inst);
        assert!(!path.exists(), "instance {} still exists", path.display());
        assert!(!live_instances().contains(&path));
    }

    #[test]
    fn parallel_instances_get_distinct_names() {
        let Some(root) = crate::host::require_tracefs() else {
            return;
        };
        let a = Instance::create(&root, "test").unwrap();
        let b = Instance::create(&root, "test").unwrap();
        assert_ne!(a.path(), b.path());
        b.remove().unwrap();
        drop(a);
    }

    #[test]
    fn stale_instances_of_dead_pids_are_removed_live_ones_kept() {
        let Some(root) = crate::host::require_tracefs() else {
            return;
        };
        // A pid that is surely dead: a child that has exited and been reaped.
        let child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        let mut child = child;
        child.wait().unwrap();
        let stale = root
            .join("instances")
            .join(format!("kvmscope-staletest-{dead_pid}-0"));
        std::fs::create_dir(&stale).unwrap();
        let mine = Instance::create(&root, "test").unwrap();
        let removed = remove_stale(&root).unwrap();
        assert!(removed.contains(&stale), "{removed:?}");
        assert!(!stale.exists());
        assert!(mine.path().exists());
    }
}
