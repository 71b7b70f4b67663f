//! KVM attribution: where host CPU went (vCPU in guest, exit handlers by name, MMU,
//! emulation, halt, VMM user space, idle, other), from folded stacks.
//!
//! [`Attribution`] is plain data (serde) so that `diagnose` rules can read it: the dominant
//! MMU fault path, lock contention such as `perf_event_ctx_lock` under a virtual PMU.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::folded::Stack;
use crate::kvm::{base_name, classify_stack, exit_handler, frame_kind, looks_like_vmm};
use crate::kvm::{Category, FrameKind};

/// One category's part of the total.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoryShare {
    /// The category.
    pub category: Category,
    /// Its name in tables.
    pub label: &'static str,
    /// Summed weight (sample count, or summed periods when the samples carry them).
    pub weight: u64,
    /// `weight / total`, 0..=1.
    pub share: f64,
}

/// A named part of the total (an exit handler, a fault path, a contended lock).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedShare {
    /// The name (for paths, frames joined by ` > `, outermost first).
    pub name: String,
    /// Summed weight.
    pub weight: u64,
    /// `weight / total`, 0..=1.
    pub share: f64,
}

/// Where host CPU went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribution {
    /// Summed weight of all stacks.
    pub total: u64,
    /// Every category, in [`Category::ALL`] order (zeros included).
    pub categories: Vec<CategoryShare>,
    /// Exit handlers (the frame under the exit dispatch), heaviest first.
    pub exit_handlers: Vec<NamedShare>,
    /// MMU fault paths: the KVM MMU frames of MMU stacks from the exit handler on, heaviest
    /// first.
    pub mmu_paths: Vec<NamedShare>,
    /// Lock slow paths with the function that took the lock
    /// (`perf_event_ctx_lock_nested > __mutex_lock`), heaviest first.
    pub lock_contention: Vec<NamedShare>,
    /// Virtual PMU emulation: stacks through `kvm_pmu_*`, `reprogram_*counter`, `pmc_*`,
    /// `intel_pmu_*`/`amd_pmu_*` or `kvm_perf_overflow*`.
    pub vpmu: ShareOf,
    /// Stacks waiting for `perf_event_ctx_lock` (spinning or sleeping on the perf context
    /// mutex): the contention a busy virtual PMU causes.
    pub perf_event_ctx_lock: ShareOf,
    /// Process (thread) names seen running KVM_RUN.
    pub vcpu_threads: Vec<String>,
}

/// A weight and its share of the total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ShareOf {
    /// Summed weight.
    pub weight: u64,
    /// `weight / total`, 0..=1.
    pub share: f64,
}

/// How many entries the named lists keep.
pub const TOP: usize = 15;

impl Attribution {
    /// The share of one category.
    pub fn share(&self, c: Category) -> f64 {
        self.categories
            .iter()
            .find(|s| s.category == c)
            .map_or(0.0, |s| s.share)
    }

    /// The heaviest MMU fault path, if any.
    pub fn dominant_mmu_path(&self) -> Option<&NamedShare> {
        self.mmu_paths.first()
    }

    /// Computes the attribution of folded stacks.
    pub fn from_stacks(stacks: &[Stack]) -> Attribution {
        // vCPU threads: process names with the KVM_RUN ioctl in some stack; VMM processes:
        // their PIDs (when the names carry `-PID`) and names that look like VMMs.
        let mut vcpus: BTreeSet<&str> = BTreeSet::new();
        for s in stacks {
            let mut it = s.frames.split(';');
            let pname = it.next().unwrap_or("");
            if it.any(|f| base_name(f) == "kvm_arch_vcpu_ioctl_run") {
                vcpus.insert(pname);
            }
        }
        let vmm_pids: BTreeSet<&str> = vcpus.iter().filter_map(|p| pid_of(p)).collect();
        let is_vmm = |pname: &str| {
            vcpus.contains(pname)
                || looks_like_vmm(pname)
                || pid_of(pname).is_some_and(|p| vmm_pids.contains(p))
        };

        let mut total = 0u64;
        let mut cats: BTreeMap<Category, u64> = BTreeMap::new();
        let mut handlers: BTreeMap<String, u64> = BTreeMap::new();
        let mut mmu_paths: BTreeMap<String, u64> = BTreeMap::new();
        let mut locks: BTreeMap<String, u64> = BTreeMap::new();
        let (mut vpmu, mut ctx_lock) = (0u64, 0u64);
        let mut frames: Vec<&str> = Vec::with_capacity(128);
        for s in stacks {
            frames.clear();
            frames.extend(s.frames.split(';'));
            let pname = frames[0];
            let w = s.weight;
            total = total.saturating_add(w);
            let cat = classify_stack(&frames, vcpus.contains(pname), is_vmm(pname));
            let c = cats.entry(cat).or_default();
            *c = c.saturating_add(w);
            if let Some(h) = exit_handler(&frames) {
                let n = handlers.entry(h.to_string()).or_default();
                *n = n.saturating_add(w);
            }
            if cat == Category::Mmu {
                let n = mmu_paths.entry(mmu_path(&frames)).or_default();
                *n = n.saturating_add(w);
            }
            let lock = lock_site(&frames);
            if lock.is_some()
                && frames
                    .iter()
                    .any(|f| base_name(f).starts_with("perf_event_ctx_lock"))
            {
                ctx_lock = ctx_lock.saturating_add(w);
            }
            if let Some(l) = lock {
                let n = locks.entry(l).or_default();
                *n = n.saturating_add(w);
            }
            if frames.iter().any(|f| is_vpmu(base_name(f))) {
                vpmu = vpmu.saturating_add(w);
            }
        }
        let share = |w: u64| {
            if total == 0 {
                0.0
            } else {
                w as f64 / total as f64
            }
        };
        let ranked = |m: BTreeMap<String, u64>| {
            let mut v: Vec<NamedShare> = m
                .into_iter()
                .map(|(name, weight)| NamedShare {
                    name,
                    weight,
                    share: share(weight),
                })
                .collect();
            v.sort_by(|a, b| b.weight.cmp(&a.weight).then_with(|| a.name.cmp(&b.name)));
            v.truncate(TOP);
            v
        };
        Attribution {
            total,
            categories: Category::ALL
                .iter()
                .map(|&c| {
                    let weight = cats.get(&c).copied().unwrap_or(0);
                    CategoryShare {
                        category: c,
                        label: c.label(),
                        weight,
                        share: share(weight),
                    }
                })
                .collect(),
            exit_handlers: ranked(handlers),
            mmu_paths: ranked(mmu_paths),
            lock_contention: ranked(locks),
            vpmu: ShareOf {
                weight: vpmu,
                share: share(vpmu),
            },
            perf_event_ctx_lock: ShareOf {
                weight: ctx_lock,
                share: share(ctx_lock),
            },
            vcpu_threads: vcpus.into_iter().map(str::to_string).collect(),
        }
    }

    /// A terminal table.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "KVM attribution of host CPU (total weight {})",
            self.total
        );
        let _ = writeln!(out, "{:<32} {:>16} {:>7}", "Where", "Weight", "Share");
        for c in &self.categories {
            let _ = writeln!(
                out,
                "{:<32} {:>16} {:>6.2}%",
                c.label,
                c.weight,
                c.share * 100.0
            );
        }
        for (title, list) in [
            ("Exit handlers", &self.exit_handlers),
            ("MMU fault paths", &self.mmu_paths),
            ("Lock contention", &self.lock_contention),
        ] {
            if list.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n{title}");
            let width = list.iter().map(|n| n.name.len()).max().unwrap_or(0).max(30);
            for n in list {
                let _ = writeln!(
                    out,
                    "  {:<width$} {:>16} {:>6.2}%",
                    n.name,
                    n.weight,
                    n.share * 100.0
                );
            }
        }
        if self.vpmu.weight > 0 || self.perf_event_ctx_lock.weight > 0 {
            let _ = writeln!(
                out,
                "\nVirtual PMU emulation {:.2}%, waiting for perf_event_ctx_lock {:.2}%",
                self.vpmu.share * 100.0,
                self.perf_event_ctx_lock.share * 100.0
            );
        }
        if !self.vcpu_threads.is_empty() {
            let _ = writeln!(out, "\nvCPU threads: {}", self.vcpu_threads.join(", "));
        }
        out
    }
}

/// KVM's virtual PMU emulation.
fn is_vpmu(f: &str) -> bool {
    f.starts_with("kvm_pmu_")
        || f.starts_with("pmc_")
        || f.starts_with("intel_pmu_")
        || f.starts_with("amd_pmu_")
        || f.starts_with("kvm_perf_overflow")
        || (f.starts_with("reprogram_") && f.ends_with("counter"))
}

/// `comm-PID` or `comm-PID/TID` (the `--pid` / `--tid` forms): the PID.
fn pid_of(pname: &str) -> Option<&str> {
    let (_, rest) = pname.rsplit_once('-')?;
    let pid = rest.split('/').next()?;
    (!pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())).then_some(pid)
}

/// The MMU frames from the exit handler (or the first MMU frame) inward, de-duplicated.
fn mmu_path(frames: &[&str]) -> String {
    let start = frames
        .iter()
        .rposition(|f| frame_kind(f) == Some(FrameKind::ExitDispatch))
        .map_or(0, |i| i + 1);
    let mut path: Vec<&str> = Vec::new();
    for f in &frames[start..] {
        let keep = path.is_empty() && start > 0
            || matches!(
                frame_kind(f),
                Some(FrameKind::Specific(Category::Mmu)) | Some(FrameKind::InRun(Category::Mmu))
            );
        let b = base_name(f);
        if keep && path.last() != Some(&b) {
            path.push(b);
        }
    }
    path.join(" > ")
}

const LOCK_SLOW: [&str; 9] = [
    "native_queued_spin_lock_slowpath",
    "queued_spin_lock_slowpath",
    "__pv_queued_spin_lock_slowpath",
    "__mutex_lock",
    "mutex_spin_on_owner",
    "osq_lock",
    "rwsem_down_read_slowpath",
    "rwsem_down_write_slowpath",
    "__down_common",
];

/// For a stack spinning or sleeping on a lock: `caller > slow path`.
fn lock_site(frames: &[&str]) -> Option<String> {
    let i = frames.iter().position(|f| {
        let b = base_name(f);
        LOCK_SLOW.contains(&b)
    })?;
    let slow = base_name(frames[i]);
    let caller = frames[1..i].iter().rev().map(|f| base_name(f)).find(|b| {
        !(b.starts_with("_raw_spin_lock")
            || b.starts_with("mutex_lock")
            || b.starts_with("__mutex_lock")
            || b.starts_with("down_")
            || b.starts_with("queued_")
            || b.starts_with("do_raw_spin"))
    });
    Some(match caller {
        Some(c) => format!("{c} > {slow}"),
        None => slow.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(frames: &str, weight: u64) -> Stack {
        Stack {
            frames: frames.into(),
            weight,
        }
    }

    #[test]
    fn shares_and_paths() {
        let stacks = vec![
            st("CPU_0/KVM;ioctl;kvm_vcpu_ioctl;kvm_arch_vcpu_ioctl_run;vmx_handle_exit;handle_ept_violation;kvm_mmu_page_fault;tdp_page_fault", 6),
            st("CPU_0/KVM;ioctl;kvm_vcpu_ioctl;kvm_arch_vcpu_ioctl_run;vmx_vcpu_run;__vmx_vcpu_run", 2),
            st("CPU_0/KVM;ioctl;kvm_vcpu_ioctl;kvm_arch_vcpu_ioctl_run;kvm_pmu_handle_event;reprogram_counter;perf_event_ctx_lock_nested;mutex_lock;__mutex_lock", 1),
            st("swapper;do_idle;default_idle", 1),
        ];
        let a = Attribution::from_stacks(&stacks);
        assert_eq!(a.total, 10);
        assert!((a.share(Category::Mmu) - 0.6).abs() < 1e-9);
        assert!((a.share(Category::Guest) - 0.2).abs() < 1e-9);
        assert!((a.share(Category::Idle) - 0.1).abs() < 1e-9);
        assert_eq!(
            a.dominant_mmu_path().unwrap().name,
            "handle_ept_violation > kvm_mmu_page_fault > tdp_page_fault"
        );
        assert_eq!(a.exit_handlers[0].name, "handle_ept_violation");
        assert_eq!(
            a.lock_contention[0].name,
            "perf_event_ctx_lock_nested > __mutex_lock"
        );
        assert_eq!(a.vcpu_threads, vec!["CPU_0/KVM".to_string()]);
        assert!((a.vpmu.share - 0.1).abs() < 1e-9);
        assert_eq!(a.perf_event_ctx_lock.weight, 1);
    }
}
