//! The system snapshot and the one function that reads the live files.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cmdline::Cmdline;
use crate::cpuinfo::CpuInfo;
use crate::interrupts::Interrupts;
use crate::kconfig::KernelConfig;
use crate::kvm_params::KvmParams;
use crate::softirqs::Softirqs;
use crate::timer_list::TimerList;
use crate::{cmdline, cpuinfo, cpulist, interrupts, kconfig, softirqs, timer_list, Error};

/// Isolation facts: `/sys/devices/system/cpu/{isolated,nohz_full}` and the sysctl.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Isolation {
    /// `/sys/devices/system/cpu/isolated` (CPUs isolated from the scheduler domains).
    pub isolated: Option<Vec<u32>>,
    /// `/sys/devices/system/cpu/nohz_full` (absent when the kernel lacks NO_HZ_FULL).
    pub nohz_full: Option<Vec<u32>>,
    /// `kernel.timer_migration`: when on, timers of idle CPUs move to busy ones — which on
    /// `nohz_full` systems wakes isolated CPUs with IPIs (field report 004).
    pub timer_migration: Option<bool>,
}

/// A file that could not be read or parsed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Absent {
    /// The path (under the root given to [`collect_from`], shown as on the live system).
    pub path: String,
    /// Why: "not present", an I/O error, or the parse error.
    pub reason: String,
}

/// Everything kvmscope records about the system a capture ran on. Fields missing from a
/// snapshot written by an older kvmscope read as their defaults (unknown, empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SystemSnapshot {
    /// `/proc/sys/kernel/osrelease` (`6.18.44-...`).
    pub kernel_release: Option<String>,
    /// `/proc/version`.
    pub kernel_version: Option<String>,
    /// The architecture kvmscope was built for (`x86_64`, `aarch64`).
    pub arch: String,
    /// `/proc/cmdline`.
    pub cmdline: Option<Cmdline>,
    /// The relevant lines of the kernel configuration ([`kconfig::is_relevant`]).
    pub config: Option<KernelConfig>,
    /// Where the configuration was read from.
    pub config_source: Option<String>,
    /// `/sys/module/kvm*/parameters/*`.
    pub kvm_params: KvmParams,
    /// `/proc/cpuinfo`.
    pub cpuinfo: Option<CpuInfo>,
    /// Isolated and nohz_full CPUs, timer migration.
    pub isolation: Isolation,
    /// `/proc/interrupts`.
    pub interrupts: Option<Interrupts>,
    /// `/proc/softirqs`.
    pub softirqs: Option<Softirqs>,
    /// `/proc/timer_list` (needs root).
    pub timer_list: Option<TimerList>,
    /// Processes holding a KVM VM, by pid (reading other processes' descriptors needs root;
    /// those that cannot be read are skipped).
    pub vms: Vec<crate::vms::RunningVm>,
    /// Files that were missing, unreadable or unparsable.
    pub absent: Vec<Absent>,
}

/// Reads the live system. Never fails: what cannot be read is listed in
/// [`SystemSnapshot::absent`].
pub fn collect() -> SystemSnapshot {
    collect_from(Path::new("/"))
}

/// Reads a system whose `/proc` and `/sys` are under `root` (a copy, a container, or
/// `/` for the live one).
pub fn collect_from(root: &Path) -> SystemSnapshot {
    let mut c = Collector {
        root: root.to_path_buf(),
        absent: Vec::new(),
    };
    let mut snap = SystemSnapshot {
        arch: std::env::consts::ARCH.to_string(),
        ..SystemSnapshot::default()
    };
    snap.kernel_release = c
        .text("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string());
    snap.kernel_version = c.text("/proc/version").map(|s| s.trim().to_string());
    snap.cmdline = c.text("/proc/cmdline").map(|s| cmdline::parse(&s));
    snap.cpuinfo = c.parsed("/proc/cpuinfo", cpuinfo::parse);
    snap.interrupts = c.parsed("/proc/interrupts", interrupts::parse);
    snap.softirqs = c.parsed("/proc/softirqs", softirqs::parse);
    snap.timer_list = c.parsed("/proc/timer_list", timer_list::parse);
    snap.isolation.isolated = c.parsed("/sys/devices/system/cpu/isolated", |t| {
        cpulist::parse("/sys/devices/system/cpu/isolated", t)
    });
    snap.isolation.nohz_full = c.parsed("/sys/devices/system/cpu/nohz_full", |t| {
        cpulist::parse("/sys/devices/system/cpu/nohz_full", t)
    });
    snap.isolation.timer_migration = c.parsed(
        "/proc/sys/kernel/timer_migration",
        crate::parse_timer_migration,
    );
    snap.kvm_params = c.kvm_params();
    snap.vms = c.vms();
    let (config, source) = c.config(snap.kernel_release.as_deref());
    snap.config = config;
    snap.config_source = source;
    snap.absent = c.absent;
    snap
}

struct Collector {
    root: PathBuf,
    absent: Vec<Absent>,
}

impl Collector {
    fn path(&self, live: &str) -> PathBuf {
        self.root.join(live.trim_start_matches('/'))
    }

    fn read(&self, live: &str) -> Result<Vec<u8>, std::io::Error> {
        let mut buf = Vec::new();
        std::fs::File::open(self.path(live))?.read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn note(&mut self, live: &str, reason: String) {
        self.absent.push(Absent {
            path: live.to_string(),
            reason,
        });
    }

    fn text(&mut self, live: &str) -> Option<String> {
        match self.read(live) {
            Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) => {
                let reason = if e.kind() == std::io::ErrorKind::NotFound {
                    "not present".to_string()
                } else {
                    e.to_string()
                };
                self.note(live, reason);
                None
            }
        }
    }

    fn parsed<T>(&mut self, live: &str, parse: impl FnOnce(&str) -> Result<T, Error>) -> Option<T> {
        let text = self.text(live)?;
        match parse(&text) {
            Ok(v) => Some(v),
            Err(e) => {
                self.note(live, e.to_string());
                None
            }
        }
    }

    fn kvm_params(&mut self) -> KvmParams {
        let mut params = KvmParams::default();
        let modules = self.path("/sys/module");
        let Ok(entries) = std::fs::read_dir(&modules) else {
            self.note("/sys/module", "not readable".into());
            return params;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n == "kvm" || n.starts_with("kvm_") || n.starts_with("kvm-"))
            .collect();
        names.sort();
        for module in names {
            let dir = modules.join(&module).join("parameters");
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.filter_map(|e| e.ok()) {
                let Ok(param) = entry.file_name().into_string() else {
                    continue;
                };
                // Some parameters are write-only or root-only; skip what cannot be read.
                if let Ok(value) = std::fs::read_to_string(entry.path()) {
                    params.insert(&module, &param, &value);
                }
            }
        }
        params
    }

    fn vms(&mut self) -> Vec<crate::vms::RunningVm> {
        let proc_dir = self.path("/proc");
        let Ok(entries) = std::fs::read_dir(&proc_dir) else {
            return Vec::new();
        };
        let mut pids: Vec<u32> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect();
        pids.sort_unstable();
        let mut vms = Vec::new();
        for pid in pids {
            let dir = proc_dir.join(pid.to_string());
            let Ok(fds) = std::fs::read_dir(dir.join("fd")) else {
                continue;
            };
            let vm_fds = fds
                .filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|t| t.as_os_str() == "anon_inode:kvm-vm")
                .count();
            if vm_fds == 0 {
                continue;
            }
            let comm = std::fs::read_to_string(dir.join("comm"))
                .unwrap_or_default()
                .trim()
                .to_string();
            let name = std::fs::read(dir.join("cmdline"))
                .ok()
                .and_then(|c| crate::vms::qemu_name(&c));
            let mut vcpu_threads = Vec::new();
            if let Ok(tasks) = std::fs::read_dir(dir.join("task")) {
                for t in tasks.filter_map(|e| e.ok()) {
                    let Some(tid) = t.file_name().to_str().and_then(|n| n.parse::<u32>().ok())
                    else {
                        continue;
                    };
                    let tcomm = std::fs::read_to_string(t.path().join("comm"))
                        .unwrap_or_default()
                        .trim()
                        .to_string();
                    if crate::vms::is_vcpu_thread(&tcomm) {
                        vcpu_threads.push((tid, tcomm));
                    }
                }
            }
            vcpu_threads.sort();
            vms.push(crate::vms::RunningVm {
                pid,
                comm,
                name,
                vm_fds: u32::try_from(vm_fds).unwrap_or(u32::MAX),
                vcpu_threads,
            });
        }
        vms
    }

    fn config(&mut self, release: Option<&str>) -> (Option<KernelConfig>, Option<String>) {
        let gz = "/proc/config.gz";
        if let Ok(bytes) = self.read(gz) {
            let mut text = String::new();
            let decoded = flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text);
            return match decoded {
                Ok(_) => match kconfig::parse_filtered(&text, kconfig::is_relevant) {
                    Ok(c) => (Some(c), Some(gz.to_string())),
                    Err(e) => {
                        self.note(gz, e.to_string());
                        (None, None)
                    }
                },
                Err(e) => {
                    self.note(gz, format!("not valid gzip: {e}"));
                    (None, None)
                }
            };
        }
        if let Some(release) = release {
            let boot = format!("/boot/config-{release}");
            if let Some(text) = self.text(&boot) {
                return match kconfig::parse_filtered(&text, kconfig::is_relevant) {
                    Ok(c) => (Some(c), Some(boot)),
                    Err(e) => {
                        self.note(&boot, e.to_string());
                        (None, None)
                    }
                };
            }
        }
        self.note(
            gz,
            "no kernel configuration found (/proc/config.gz or /boot/config-<release>)".into(),
        );
        (None, None)
    }
}

/// Isolation and tick facts gathered from every source of a snapshot, for reports and
/// diagnosis rules (field report 003: `nohz=off`; 004: isolated CPUs whose tick did not
/// stop because `kernel.timer_migration=1` moved timers onto them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolationSummary {
    /// Tick, isolation and idle parameters of the command line.
    pub cmdline: Option<cmdline::TimingParams>,
    /// A CPU list on the command line that did not parse (the kernel ignored it).
    pub cmdline_error: Option<String>,
    /// `CONFIG_HZ`.
    pub hz: Option<u32>,
    /// `CONFIG_NO_HZ_FULL=y`.
    pub config_no_hz_full: Option<bool>,
    /// `/sys/devices/system/cpu/isolated`.
    pub isolated: Option<Vec<u32>>,
    /// `/sys/devices/system/cpu/nohz_full`.
    pub nohz_full: Option<Vec<u32>>,
    /// `kernel.timer_migration`.
    pub timer_migration: Option<bool>,
    /// `nohz=off` on the command line: no CPU ever stops its tick.
    pub nohz_off: bool,
    /// `nohz_full=` asked for on the command line but the running kernel has no
    /// NO_HZ_FULL (config or sysfs says so): the request was ignored.
    pub nohz_full_ignored: bool,
    /// nohz_full CPUs whose tick was running when /proc/timer_list was read.
    pub nohz_full_tick_running: Vec<u32>,
    /// Timer migration is on while nohz_full CPUs exist.
    pub timer_migration_with_nohz_full: bool,
    /// The per-CPU tick summary of isolated or nohz_full CPUs.
    pub isolated_cpu_ticks: Vec<timer_list::CpuTickSummary>,
}

impl SystemSnapshot {
    /// The isolation and tick facts of this snapshot.
    pub fn isolation_summary(&self) -> IsolationSummary {
        let (params, cmdline_error) = match self.cmdline.as_ref().map(Cmdline::timing) {
            Some(Ok(p)) => (Some(p), None),
            Some(Err(e)) => (None, Some(e.to_string())),
            None => (None, None),
        };
        let tick = self.config.as_ref().map(KernelConfig::tick);
        let nohz_full_asked = params
            .as_ref()
            .and_then(|p| p.nohz_full.as_ref())
            .is_some_and(|c| !c.is_empty());
        let nohz_full: Vec<u32> = self.isolation.nohz_full.clone().unwrap_or_default();
        let mut interesting: Vec<u32> = nohz_full
            .iter()
            .chain(self.isolation.isolated.iter().flatten())
            .copied()
            .collect();
        interesting.sort_unstable();
        interesting.dedup();
        let ticks: Vec<timer_list::CpuTickSummary> = self
            .timer_list
            .as_ref()
            .map(|t| {
                t.summary()
                    .into_iter()
                    .filter(|s| interesting.contains(&s.cpu))
                    .collect()
            })
            .unwrap_or_default();
        let nohz_full_tick_running = ticks
            .iter()
            .filter(|s| nohz_full.contains(&s.cpu) && s.tick_stopped == Some(false))
            .map(|s| s.cpu)
            .collect();
        IsolationSummary {
            nohz_off: params.as_ref().and_then(|p| p.nohz) == Some(false),
            nohz_full_ignored: nohz_full_asked
                && (tick.as_ref().is_some_and(|t| !t.no_hz_full)
                    || (self.isolation.nohz_full.is_some() && nohz_full.is_empty())),
            timer_migration_with_nohz_full: !nohz_full.is_empty()
                && self.isolation.timer_migration == Some(true),
            nohz_full_tick_running,
            hz: tick.as_ref().and_then(|t| t.hz),
            config_no_hz_full: tick.as_ref().map(|t| t.no_hz_full),
            isolated: self.isolation.isolated.clone(),
            nohz_full: self.isolation.nohz_full.clone(),
            timer_migration: self.isolation.timer_migration,
            cmdline: params,
            cmdline_error,
            isolated_cpu_ticks: ticks,
        }
    }
}
