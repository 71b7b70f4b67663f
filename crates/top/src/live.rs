//! Reading the kernel: the counters of the catalog on every CPU (system-wide) or on the
//! threads of one VM, and the per-VM totals of the VM list. The kernel counts; each reading
//! is one `read(2)` per counter group.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kvmscope_capture::counters::{
    online_cpus, threads_of, CounterError, CounterSet, CounterSpec, FdLimit, Target,
};

use crate::catalog::Catalog;
use crate::vms::VmProcess;

/// Why `top` cannot count, with what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopError {
    /// tracefs is missing and could not be mounted.
    #[error(transparent)]
    Unavailable(#[from] kvmscope_capture::host::Unavailable),
    /// perf_event_open or reading counters failed.
    #[error(transparent)]
    Counters(#[from] CounterError),
    /// Nothing to count.
    #[error("no trace events to count under {tracefs}: {why}")]
    NoEvents { tracefs: PathBuf, why: String },
    /// The VM asked for does not exist.
    #[error(
        "no VM process matches {0:?}: see the VM list (`kvmscope top`, key b) or `ps` for its pid"
    )]
    NoSuchVm(String),
    /// The terminal could not be drawn on or read from.
    #[error("terminal error: {0}; use --once, --log, --csv or --json when there is no terminal")]
    Terminal(String),
}

/// What to count on.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Every CPU.
    System,
    /// The threads of one VM process.
    Vm(VmProcess),
}

impl Scope {
    /// How the title names it: `summary` or `pid 1234 (web1)`.
    pub fn describe(&self) -> String {
        match self {
            Scope::System => "summary".into(),
            Scope::Vm(v) => format!("pid {} ({})", v.pid, v.name),
        }
    }
}

/// One reading.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Per counter, summed over the targets.
    pub counts: Vec<u64>,
    /// Per target: (label, counts).
    pub per_target: Vec<(String, Vec<u64>)>,
}

/// The counters of a catalog on a scope.
#[derive(Debug)]
pub struct Collector {
    set: CounterSet,
    pid: Option<i32>,
    labels: HashMap<Target, String>,
}

fn thread_label(pid: i32, tid: i32) -> String {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap_or_default();
    format!("tid {tid} {}", comm.trim_end())
}

impl Collector {
    /// Opens the counters.
    pub fn open(tracefs: &Path, catalog: &Catalog, scope: &Scope) -> Result<Collector, TopError> {
        let specs = catalog.specs();
        if specs.is_empty() {
            return Err(TopError::NoEvents {
                tracefs: tracefs.to_path_buf(),
                why: "the filter left no event, or this kernel has none of them".into(),
            });
        }
        let (targets, pid) = match scope {
            Scope::System => (
                online_cpus()?
                    .into_iter()
                    .map(Target::Cpu)
                    .collect::<Vec<_>>(),
                None,
            ),
            Scope::Vm(v) => (
                v.threads.iter().map(|&t| Target::Thread(t)).collect(),
                Some(v.pid),
            ),
        };
        let mut set = CounterSet::open(tracefs, &specs, &[])?;
        set.add_targets(&targets)?;
        let mut c = Collector {
            set,
            pid,
            labels: HashMap::new(),
        };
        c.label_targets();
        Ok(c)
    }

    fn label_targets(&mut self) {
        for t in self.set.targets() {
            if self.labels.contains_key(&t) {
                continue;
            }
            let label = match (&t, self.pid) {
                (Target::Cpu(c), _) => format!("cpu {c}"),
                (Target::Thread(tid), Some(pid)) => thread_label(pid, *tid),
                (Target::Thread(tid), None) => format!("tid {tid}"),
            };
            self.labels.insert(t, label);
        }
    }

    /// Attaches counters to threads the VM started since the last call.
    pub fn rescan(&mut self) -> Result<(), TopError> {
        let Some(pid) = self.pid else {
            return Ok(());
        };
        let Ok(now) = threads_of(pid) else {
            return Ok(());
        };
        let have = self.set.targets();
        let new: Vec<Target> = now
            .into_iter()
            .map(Target::Thread)
            .filter(|t| !have.contains(t))
            .collect();
        self.set.add_targets(&new)?;
        self.label_targets();
        Ok(())
    }

    /// Reads every counter.
    pub fn read(&mut self) -> Result<Sample, TopError> {
        let each = self.set.read_each()?;
        let n = self.set.specs().len();
        let mut counts = vec![0u64; n];
        let mut per_target = Vec::with_capacity(each.len());
        for (t, c) in each {
            for (s, v) in counts.iter_mut().zip(&c) {
                *s += v;
            }
            let label = self
                .labels
                .get(&t)
                .cloned()
                .unwrap_or_else(|| t.to_string());
            per_target.push((label, c));
        }
        Ok(Sample { counts, per_target })
    }

    /// Number of counters (file descriptors).
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// True when nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Targets counted.
    pub fn targets(&self) -> usize {
        self.set.targets().len()
    }

    /// A sentence when the fd limit had to be raised.
    pub fn fd_note(&self) -> Option<String> {
        match self.set.fd_limit {
            FdLimit::Raised { from, to } => Some(format!(
                "raised the open-file limit (RLIMIT_NOFILE) from {from} to {to} for the counters"
            )),
            FdLimit::Enough { .. } => None,
        }
    }
}

/// Per-VM totals for the VM list: every parent event counted on each VM's threads.
#[derive(Debug, Default)]
pub struct VmTotals {
    vms: Vec<(VmProcess, CounterSet)>,
    prev: HashMap<i32, u64>,
}

/// One line of the VM list.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VmRow {
    pub pid: i32,
    pub name: String,
    pub vcpus: usize,
    pub total: u64,
    pub rate: f64,
}

impl VmTotals {
    /// Opens parent-event counters on the threads of each VM (VMs whose threads cannot be
    /// counted are listed with zero).
    pub fn open(
        tracefs: &Path,
        catalog: &Catalog,
        vms: Vec<VmProcess>,
    ) -> Result<VmTotals, TopError> {
        let specs: Vec<CounterSpec> = catalog
            .events
            .iter()
            .map(|e| CounterSpec::new(&e.system, &e.name))
            .collect();
        let mut out = VmTotals::default();
        for vm in vms {
            let mut set = CounterSet::open(tracefs, &specs, &[])?;
            let targets: Vec<Target> = vm.threads.iter().map(|&t| Target::Thread(t)).collect();
            set.add_targets(&targets)?;
            out.vms.push((vm, set));
        }
        Ok(out)
    }

    /// Reads each VM's total; `secs` since the previous call.
    pub fn read(&mut self, secs: f64) -> Vec<VmRow> {
        let mut rows = Vec::new();
        for (vm, set) in &mut self.vms {
            let total: u64 = set.read().map(|c| c.iter().sum()).unwrap_or(0);
            let prev = self.prev.insert(vm.pid, total).unwrap_or(total);
            rows.push(VmRow {
                pid: vm.pid,
                name: vm.name.clone(),
                vcpus: vm.vcpus.len(),
                total,
                rate: if secs > 0.0 {
                    total.saturating_sub(prev) as f64 / secs
                } else {
                    0.0
                },
            });
        }
        rows.sort_by(|a, b| {
            b.rate
                .total_cmp(&a.rate)
                .then(b.total.cmp(&a.total))
                .then(a.pid.cmp(&b.pid))
        });
        rows
    }
}
