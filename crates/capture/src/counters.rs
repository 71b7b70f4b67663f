//! Tracepoint counters through perf_event_open: the kernel counts, user space only reads.
//!
//! One counter per event per target, where a target is either one CPU (system-wide counting,
//! as kvm_stat does) or one thread (the vCPU threads of one VM). A counter may carry a kernel
//! filter (the `PERF_EVENT_IOC_SET_FILTER` ioctl, tracefs filter syntax), which is how the
//! drill-down children are counted: `kvm_exit` with `exit_reason == 30`, `kvm_pio` with
//! `port == 0x3f8`, and so on. No record ever reaches user space.
//!
//! The counters of one target form perf groups (one leader, the others siblings), so that
//! one `read(2)` of the leader returns every count of the group at once
//! (`PERF_FORMAT_GROUP`): reading all counters of a CPU costs one system call per group.
//!
//! Event ids come from tracefs (`events/<sys>/<name>/id`). Counting needs many file
//! descriptors (events x targets); [`CounterSet::open`] raises the soft `RLIMIT_NOFILE` up
//! to the hard limit when needed and fails with [`CounterError::TooFewFds`] when even that is
//! not enough.
//!
//! Closing is slow: when the last counter of a tracepoint closes, the kernel waits for an RCU
//! grace period under its global `event_mutex` (`perf_trace_event_unreg`), so dropping a set
//! costs one grace period per distinct tracepoint (about 3 s for the ~90 `kvm` events here),
//! whatever the number of threads closing. Drop a set off the interactive thread.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Why counting failed, with what the user can do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CounterError {
    /// The tracepoint does not exist on this kernel.
    #[error("trace event {system}:{name} does not exist ({path} is missing): load the module that provides it, or see {} for what this kernel offers", .path.parent().and_then(|p| p.parent()).and_then(|p| p.parent()).map(|p| p.display().to_string()).unwrap_or_default())]
    NoSuchEvent {
        system: String,
        name: String,
        path: PathBuf,
    },
    /// A tracefs file could not be read or made sense of.
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    /// The kernel refused to open a counter for lack of privilege.
    #[error("perf_event_open({event}, {target}) was refused: {source}. {advice}")]
    Permission {
        event: String,
        target: String,
        advice: String,
        #[source]
        source: std::io::Error,
    },
    /// The process ran out of file descriptors.
    #[error("too few file descriptors: {needed} counters need about {needed} descriptors, the limit is {soft} (hard limit {hard}); raise it with `ulimit -n {want}` (as root, or raise the hard limit in /etc/security/limits.conf), or count fewer events (`-f`) or fewer drill-down children")]
    TooFewFds {
        needed: u64,
        soft: u64,
        hard: u64,
        want: u64,
    },
    /// The kernel refused to open a counter for another reason.
    #[error("perf_event_open({event}, {target}) failed: {source}")]
    Open {
        event: String,
        target: String,
        #[source]
        source: std::io::Error,
    },
    /// The kernel rejected a filter.
    #[error("the kernel rejected filter {filter:?} on {event}: {source}; see the event's `format` file for field names")]
    Filter {
        event: String,
        filter: String,
        #[source]
        source: std::io::Error,
    },
    /// Reading a counter group failed.
    #[error("reading the counters of {target} failed: {source}")]
    ReadCounters {
        target: String,
        #[source]
        source: std::io::Error,
    },
}

/// One counter to open: a tracepoint, optionally with a kernel filter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterSpec {
    /// Trace system (`kvm`).
    pub system: String,
    /// Tracepoint name (`kvm_pio`).
    pub name: String,
    /// Tracefs filter expression (`port == 0x3f8`), if any.
    pub filter: Option<String>,
}

impl CounterSpec {
    /// A counter of every `system:name` event.
    pub fn new(system: &str, name: &str) -> CounterSpec {
        CounterSpec {
            system: system.into(),
            name: name.into(),
            filter: None,
        }
    }

    /// The same counter, counting only events that match `filter`.
    pub fn filtered(system: &str, name: &str, filter: impl Into<String>) -> CounterSpec {
        CounterSpec {
            system: system.into(),
            name: name.into(),
            filter: Some(filter.into()),
        }
    }

    fn label(&self) -> String {
        match &self.filter {
            None => format!("{}:{}", self.system, self.name),
            Some(f) => format!("{}:{} if {f}", self.system, self.name),
        }
    }
}

/// Where counters count.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Every task on one CPU.
    Cpu(u32),
    /// One thread, on whatever CPU it runs.
    Thread(i32),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Cpu(c) => write!(f, "cpu {c}"),
            Target::Thread(t) => write!(f, "thread {t}"),
        }
    }
}

/// The id of tracepoint `system:name`, read from `<tracefs>/events/<system>/<name>/id`.
pub fn event_id(tracefs: &Path, system: &str, name: &str) -> Result<u64, CounterError> {
    let bad = |s: &str| s.is_empty() || s.contains('/') || s == "." || s == "..";
    let path = tracefs.join("events").join(system).join(name).join("id");
    if bad(system) || bad(name) {
        return Err(CounterError::NoSuchEvent {
            system: system.into(),
            name: name.into(),
            path,
        });
    }
    match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse::<u64>().map_err(|e| CounterError::Read {
            path,
            message: format!("not an event id: {e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CounterError::NoSuchEvent {
            system: system.into(),
            name: name.into(),
            path,
        }),
        Err(e) => Err(CounterError::Read {
            path,
            message: e.to_string(),
        }),
    }
}

/// The tracepoints of one trace system (`kvm`), sorted; empty when the system does not exist.
pub fn system_events(tracefs: &Path, system: &str) -> Vec<String> {
    let dir = tracefs.join("events").join(system);
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("id").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    out.sort();
    out
}

/// The online CPUs.
pub fn online_cpus() -> Result<Vec<u32>, CounterError> {
    let path = Path::new("/sys/devices/system/cpu/online");
    let text = std::fs::read_to_string(path).map_err(|e| CounterError::Read {
        path: path.into(),
        message: e.to_string(),
    })?;
    Ok(crate::perf_sample::parse_cpu_list(text.trim()))
}

/// The thread ids of process `pid` (`/proc/<pid>/task`), sorted.
pub fn threads_of(pid: i32) -> Result<Vec<i32>, CounterError> {
    let dir = PathBuf::from(format!("/proc/{pid}/task"));
    let rd = std::fs::read_dir(&dir).map_err(|e| CounterError::Read {
        path: dir.clone(),
        message: format!("{e} (is process {pid} running?)"),
    })?;
    let mut out: Vec<i32> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// The file-descriptor limit: (soft, hard).
pub fn fd_limit() -> (u64, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `struct rlimit` to the valid pointer we pass.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    if rc != 0 {
        return (1024, 1024);
    }
    (r.rlim_cur, r.rlim_max)
}

/// What [`ensure_fds`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdLimit {
    /// The soft limit was already high enough.
    Enough { soft: u64 },
    /// The soft limit was raised from `from` to `to`.
    Raised { from: u64, to: u64 },
}

/// Makes room for `needed` more descriptors (plus a reserve for the program itself): raises
/// the soft `RLIMIT_NOFILE` (up to the hard limit) when needed.
pub fn ensure_fds(needed: u64) -> Result<FdLimit, CounterError> {
    const RESERVE: u64 = 64;
    let in_use = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(16);
    let want = needed + in_use + RESERVE;
    let (soft, hard) = fd_limit();
    if want <= soft {
        return Ok(FdLimit::Enough { soft });
    }
    let too_few = CounterError::TooFewFds {
        needed,
        soft,
        hard,
        want,
    };
    if want > hard {
        return Err(too_few);
    }
    let r = libc::rlimit {
        rlim_cur: want,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads one `struct rlimit` from the valid pointer we pass.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
    if rc != 0 {
        return Err(too_few);
    }
    Ok(FdLimit::Raised {
        from: soft,
        to: want,
    })
}

/// What the kernel allows unprivileged users (`/proc/sys/kernel/perf_event_paranoid`).
pub fn perf_event_paranoid() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// True when this process has CAP_PERFMON (38) or CAP_SYS_ADMIN (21) in its effective set.
pub fn has_perfmon() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 38) != 0 || caps & (1 << 21) != 0)
}

/// What to do when perf_event_open says EACCES/EPERM, for `target`.
pub fn permission_advice(target: &Target) -> String {
    let paranoid = perf_event_paranoid();
    let need = match target {
        Target::Cpu(_) => 0,
        Target::Thread(_) => 1,
    };
    let mut s = String::new();
    if !has_perfmon() {
        s.push_str("this process is not root and has no CAP_PERFMON; ");
    }
    match paranoid {
        Some(p) if p > need => s.push_str(&format!(
            "/proc/sys/kernel/perf_event_paranoid is {p}, counting kernel tracepoints {} needs {need} or less: run as root, give the binary CAP_PERFMON (`setcap cap_perfmon+ep $(which kvmscope)`), or `sysctl kernel.perf_event_paranoid={need}`",
            match target {
                Target::Cpu(_) => "on every CPU",
                Target::Thread(_) => "of a thread",
            }
        )),
        _ => s.push_str("run as root, or give the binary CAP_PERFMON (`setcap cap_perfmon+ep $(which kvmscope)`); counting another user's threads also needs ptrace permission"),
    }
    if paranoid.is_some_and(|p| p > 2) {
        s.push_str(" (a value above 2 is a distribution patch that blocks perf_event_open for all non-root users)");
    }
    s
}

const PERF_TYPE_TRACEPOINT: u32 = 2;
const FLAG_DISABLED: u64 = 1 << 0;
const IOC_ENABLE: libc::c_ulong = 0x2400;
const FORMAT_GROUP: u64 = 1 << 3;
/// `_IOW('$', 6, char *)`.
const IOC_SET_FILTER: libc::c_ulong = 0x4008_2406;
/// The biggest group we make: the kernel refuses groups whose read size nears 16 KiB.
const MAX_GROUP: usize = 512;

/// `struct perf_event_attr` up to `config2` (PERF_ATTR_SIZE_VER1, 72 bytes): enough for a
/// counting tracepoint.
#[repr(C)]
#[derive(Default)]
struct Attr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
}

/// Counters of one target, in groups of at most [`MAX_GROUP`].
#[derive(Debug)]
struct Group {
    /// Index into the set's spec list of the first counter of this group.
    first: usize,
    fds: Vec<OwnedFd>,
}

/// The counters of one target.
#[derive(Debug)]
struct TargetCounters {
    target: Target,
    groups: Vec<Group>,
    /// The last counts read (kept when a thread has gone and its counters read nothing).
    last: Vec<u64>,
    gone: bool,
}

/// Counters of a list of events on a list of targets, read together.
#[derive(Debug)]
pub struct CounterSet {
    specs: Vec<CounterSpec>,
    ids: Vec<u64>,
    targets: Vec<TargetCounters>,
    /// What was done about the fd limit, for the caller to say.
    pub fd_limit: FdLimit,
}

impl CounterSet {
    /// Opens one counter per spec per target. Event ids come from `tracefs`.
    pub fn open(
        tracefs: &Path,
        specs: &[CounterSpec],
        targets: &[Target],
    ) -> Result<CounterSet, CounterError> {
        let ids = specs
            .iter()
            .map(|s| event_id(tracefs, &s.system, &s.name))
            .collect::<Result<Vec<_>, _>>()?;
        let fd_limit = ensure_fds((specs.len() * targets.len()) as u64)?;
        let mut set = CounterSet {
            specs: specs.to_vec(),
            ids,
            targets: Vec::new(),
            fd_limit,
        };
        for t in targets {
            let tc = set.open_target(t)?;
            set.targets.push(tc);
        }
        Ok(set)
    }

    /// Adds targets (e.g. threads a VM started after the set was opened). Threads that exit
    /// before their counters open are skipped.
    pub fn add_targets(&mut self, targets: &[Target]) -> Result<(), CounterError> {
        if targets.is_empty() {
            return Ok(());
        }
        let total = (self.specs.len() * (self.targets.len() + targets.len())) as u64;
        if let FdLimit::Raised { from, to } = ensure_fds(total)? {
            self.fd_limit = match self.fd_limit {
                FdLimit::Raised { from: f, .. } => FdLimit::Raised { from: f, to },
                FdLimit::Enough { .. } => FdLimit::Raised { from, to },
            };
        }
        for t in targets {
            if self.targets.iter().any(|x| &x.target == t) {
                continue;
            }
            match self.open_target(t) {
                Ok(tc) => self.targets.push(tc),
                Err(CounterError::Open { source, .. })
                    if matches!(t, Target::Thread(_))
                        && source.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn open_target(&self, target: &Target) -> Result<TargetCounters, CounterError> {
        let (pid, cpu) = match *target {
            Target::Cpu(c) => (-1, c as libc::c_int),
            Target::Thread(t) => (t, -1),
        };
        let mut groups = Vec::new();
        for first in (0..self.specs.len()).step_by(MAX_GROUP) {
            let end = (first + MAX_GROUP).min(self.specs.len());
            let mut fds: Vec<OwnedFd> = Vec::with_capacity(end - first);
            for i in first..end {
                let leader = fds.first().map_or(-1, |f| f.as_raw_fd());
                let fd = open_counter(self.ids[i], pid, cpu, leader).map_err(|source| {
                    let event = self.specs[i].label();
                    let advice = permission_advice(target);
                    let target = target.to_string();
                    match source.raw_os_error() {
                        Some(libc::EACCES) | Some(libc::EPERM) => CounterError::Permission {
                            event,
                            target,
                            advice,
                            source,
                        },
                        Some(libc::EMFILE) | Some(libc::ENFILE) => {
                            let (soft, hard) = fd_limit();
                            let needed = (self.specs.len() * (self.targets.len() + 1)) as u64;
                            CounterError::TooFewFds {
                                needed,
                                soft,
                                hard,
                                want: needed + 128,
                            }
                        }
                        _ => CounterError::Open {
                            event,
                            target,
                            source,
                        },
                    }
                })?;
                if let Some(filter) = &self.specs[i].filter {
                    set_filter(&fd, filter).map_err(|source| CounterError::Filter {
                        event: format!("{}:{}", self.specs[i].system, self.specs[i].name),
                        filter: filter.clone(),
                        source,
                    })?;
                }
                enable(&fd).map_err(|source| CounterError::Open {
                    event: self.specs[i].label(),
                    target: target.to_string(),
                    source,
                })?;
                fds.push(fd);
            }
            groups.push(Group { first, fds });
        }
        Ok(TargetCounters {
            target: target.clone(),
            groups,
            last: vec![0; self.specs.len()],
            gone: false,
        })
    }

    /// The counters' specs, in the order of the counts [`CounterSet::read`] returns.
    pub fn specs(&self) -> &[CounterSpec] {
        &self.specs
    }

    /// The targets, in the order of [`CounterSet::read_each`].
    pub fn targets(&self) -> Vec<Target> {
        self.targets.iter().map(|t| t.target.clone()).collect()
    }

    /// Reads every counter of every target (one read per group) and returns the counts per
    /// target, each in spec order. A thread that has exited keeps its last counts.
    pub fn read_each(&mut self) -> Result<Vec<(Target, Vec<u64>)>, CounterError> {
        let n = self.specs.len();
        let mut buf = vec![0u64; 1 + MAX_GROUP.min(n.max(1))];
        for tc in &mut self.targets {
            if tc.gone {
                continue;
            }
            for g in &tc.groups {
                let leader = &g.fds[0];
                let want = (1 + g.fds.len()) * 8;
                // SAFETY: `buf` is a live, writable buffer of at least `want` bytes (it holds
                // 1 + MAX_GROUP u64s and a group has at most MAX_GROUP counters); `leader` is
                // an open perf event fd we own.
                let got = unsafe { libc::read(leader.as_raw_fd(), buf.as_mut_ptr().cast(), want) };
                if got == 0 {
                    // The thread has exited and its counters were torn down: keep what we had.
                    tc.gone = true;
                    break;
                }
                if got < 0 {
                    let source = std::io::Error::last_os_error();
                    if source.raw_os_error() == Some(libc::ESRCH) {
                        tc.gone = true;
                        break;
                    }
                    return Err(CounterError::ReadCounters {
                        target: tc.target.to_string(),
                        source,
                    });
                }
                let nr = (buf[0] as usize)
                    .min(g.fds.len())
                    .min((got as usize / 8).saturating_sub(1));
                for k in 0..nr {
                    tc.last[g.first + k] = buf[1 + k];
                }
            }
        }
        Ok(self
            .targets
            .iter()
            .map(|t| (t.target.clone(), t.last.clone()))
            .collect())
    }

    /// Reads every counter and sums over the targets: one count per spec.
    pub fn read(&mut self) -> Result<Vec<u64>, CounterError> {
        let each = self.read_each()?;
        let mut sum = vec![0u64; self.specs.len()];
        for (_, counts) in &each {
            for (s, c) in sum.iter_mut().zip(counts) {
                *s += c;
            }
        }
        Ok(sum)
    }

    /// Number of open counters (= file descriptors).
    pub fn len(&self) -> usize {
        self.targets
            .iter()
            .map(|t| t.groups.iter().map(|g| g.fds.len()).sum::<usize>())
            .sum()
    }

    /// True when no counter is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn open_counter(id: u64, pid: i32, cpu: i32, group: i32) -> std::io::Result<OwnedFd> {
    let attr = Attr {
        type_: PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<Attr>() as u32,
        config: id,
        // Counting only (no sample period); kernel events included (exclude_kernel = 0),
        // otherwise a tracepoint counter reads 0. Opened disabled: a filtered counter must
        // not count anything before its filter is set; [`enable`] starts it.
        read_format: if group == -1 { FORMAT_GROUP } else { 0 },
        flags: FLAG_DISABLED,
        ..Attr::default()
    };
    // SAFETY: `attr` is a fully initialised perf_event_attr whose `size` field matches its
    // layout (the kernel accepts any published size); pid/cpu select one thread on any CPU
    // or every task on one CPU; `group` is -1 or a perf fd we own; PERF_FLAG_FD_CLOEXEC.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const Attr,
            pid as libc::pid_t,
            cpu as libc::c_int,
            group as libc::c_int,
            8 as libc::c_ulong,
        )
    } as libc::c_int;
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by perf_event_open, is open, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn enable(fd: &OwnedFd) -> std::io::Result<()> {
    // SAFETY: `fd` is an open perf event fd we own; ENABLE takes no argument.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), IOC_ENABLE, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn set_filter(fd: &OwnedFd, filter: &str) -> std::io::Result<()> {
    let c = std::ffi::CString::new(filter)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `fd` is an open perf event fd we own; the kernel copies the NUL-terminated
    // string `c`, which outlives the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), IOC_SET_FILTER, c.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_size_is_ver1() {
        assert_eq!(std::mem::size_of::<Attr>(), 72);
    }

    #[test]
    fn bad_names_are_no_such_event() {
        let e = event_id(Path::new("/nonexistent"), "kvm", "../x").unwrap_err();
        assert!(matches!(e, CounterError::NoSuchEvent { .. }), "{e}");
        let e = event_id(Path::new("/nonexistent"), "kvm", "kvm_pio").unwrap_err();
        assert!(e.to_string().contains("kvm:kvm_pio does not exist"), "{e}");
    }

    #[test]
    fn too_few_fds_message_says_what_to_do() {
        let e = CounterError::TooFewFds {
            needed: 50_000,
            soft: 1024,
            hard: 4096,
            want: 50_100,
        };
        let s = e.to_string();
        assert!(
            s.contains("ulimit -n 50100") && s.contains("limit is 1024"),
            "{s}"
        );
    }
}
