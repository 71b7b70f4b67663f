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

/// The counters of a catalog on a scope: the parent events always, the drill-down children
/// only while they are shown (as kvm_stat does: every child is one more kernel filter run on
/// each hit of its parent, so they cost only when asked for).
#[derive(Debug)]
pub struct Collector {
    tracefs: PathBuf,
    parents: CounterSet,
    /// Flat catalog index of each parent counter.
    parent_idx: Vec<usize>,
    children: Option<CounterSet>,
    child_specs: Vec<CounterSpec>,
    /// Flat catalog index of each child counter.
    child_idx: Vec<usize>,
    n: usize,
    pid: Option<i32>,
    labels: HashMap<Target, String>,
}

fn thread_label(pid: i32, tid: i32) -> String {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap_or_default();
    format!("tid {tid} {}", comm.trim_end())
}

impl Collector {
    /// Opens the parent counters, and the children's when `children` is true.
    pub fn open(
        tracefs: &Path,
        catalog: &Catalog,
        scope: &Scope,
        children: bool,
    ) -> Result<Collector, TopError> {
        let specs = catalog.specs();
        if specs.is_empty() {
            return Err(TopError::NoEvents {
                tracefs: tracefs.to_path_buf(),
                why: "the filter left no event, or this kernel has none of them".into(),
            });
        }
        let keys = catalog.keys();
        let (mut parent_specs, mut parent_idx, mut child_specs, mut child_idx) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, (spec, key)) in specs.into_iter().zip(&keys).enumerate() {
            if key.parent.is_none() {
                parent_specs.push(spec);
                parent_idx.push(i);
            } else {
                child_specs.push(spec);
                child_idx.push(i);
            }
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
        let mut parents = CounterSet::open(tracefs, &parent_specs, &[])?;
        parents.add_targets(&targets)?;
        let mut c = Collector {
            tracefs: tracefs.to_path_buf(),
            parents,
            parent_idx,
            children: None,
            child_specs,
            child_idx,
            n: keys.len(),
            pid,
            labels: HashMap::new(),
        };
        c.set_children(children)?;
        c.label_targets();
        Ok(c)
    }

    /// Opens (or closes) the drill-down children's counters. Closing happens on another
    /// thread: the kernel waits a grace period per tracepoint.
    pub fn set_children(&mut self, on: bool) -> Result<(), TopError> {
        match (on, self.children.is_some()) {
            (true, false) if !self.child_specs.is_empty() => {
                let mut set = CounterSet::open(&self.tracefs, &self.child_specs, &[])?;
                set.add_targets(&self.parents.targets())?;
                self.children = Some(set);
            }
            (false, true) => {
                if let Some(old) = self.children.take() {
                    std::thread::spawn(move || drop(old));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// True while the children are counted.
    pub fn children_on(&self) -> bool {
        self.children.is_some()
    }

    fn label_targets(&mut self) {
        for t in self.parents.targets() {
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
        let have = self.parents.targets();
        let new: Vec<Target> = now
            .into_iter()
            .map(Target::Thread)
            .filter(|t| !have.contains(t))
            .collect();
        self.parents.add_targets(&new)?;
        if let Some(c) = self.children.as_mut() {
            c.add_targets(&new)?;
        }
        self.label_targets();
        Ok(())
    }

    /// Reads every counter; counts come in catalog key order (children read 0 while they
    /// are not counted).
    pub fn read(&mut self) -> Result<Sample, TopError> {
        let mut per: Vec<(Target, Vec<u64>)> = Vec::new();
        for (t, c) in self.parents.read_each()? {
            let mut full = vec![0u64; self.n];
            for (k, v) in self.parent_idx.iter().zip(&c) {
                full[*k] = *v;
            }
            per.push((t, full));
        }
        if let Some(set) = self.children.as_mut() {
            for (t, c) in set.read_each()? {
                if let Some((_, full)) = per.iter_mut().find(|(x, _)| *x == t) {
                    for (k, v) in self.child_idx.iter().zip(&c) {
                        full[*k] = *v;
                    }
                }
            }
        }
        let mut counts = vec![0u64; self.n];
        let mut per_target = Vec::with_capacity(per.len());
        for (t, c) in per {
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
        self.parents.len() + self.children.as_ref().map_or(0, |c| c.len())
    }

    /// True when nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Targets counted.
    pub fn targets(&self) -> usize {
        self.parents.targets().len()
    }

    /// A sentence when the fd limit had to be raised.
    pub fn fd_note(&self) -> Option<String> {
        let raised = |l: FdLimit| match l {
            FdLimit::Raised { from, to } => Some((from, to)),
            FdLimit::Enough { .. } => None,
        };
        let a = raised(self.parents.fd_limit);
        let b = self.children.as_ref().and_then(|c| raised(c.fd_limit));
        let (from, to) = match (a, b) {
            (Some((f, _)), Some((_, t))) => (f, t),
            (Some(x), None) | (None, Some(x)) => x,
            (None, None) => return None,
        };
        Some(format!(
            "raised the open-file limit (RLIMIT_NOFILE) from {from} to {to} for the counters"
        ))
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
