//! KVM's own statistics in debugfs, as `kvm_stat -d` reads them: `/sys/kernel/debug/kvm/<stat>`
//! holds each statistic summed over the live VMs, `<pid>-<fd>/<stat>` one VM's (VM-wide and
//! vCPU statistics summed over its vCPUs), `<pid>-<fd>/vcpuN/<stat>` one vCPU's. The kernel
//! keeps these counters anyway, so reading them costs nothing per event: the cheap source
//! where the kernel lets it be read (not under lockdown, which blocks debugfs).
//!
//! Statistics of VMs that have exited disappear from the sums; cumulative counters (exits,
//! io_exits...) and instantaneous ones (pages_4k, halt_poll_success_ns...) are shown alike,
//! as kvm_stat does.

use std::path::{Path, PathBuf};

use crate::catalog::Key;
use crate::live::Sample;

/// Where debugfs puts KVM's statistics.
pub const ROOT: &str = "/sys/kernel/debug/kvm";

/// Why the statistics cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DebugfsError {
    #[error(
        "KVM's debugfs statistics are not readable at {path}: {why}; mount debugfs \
         (`mount -t debugfs none /sys/kernel/debug`) as root, or leave out --debugfs to count \
         tracepoints instead (kernel lockdown blocks debugfs)"
    )]
    Unavailable { path: PathBuf, why: String },
    #[error("{path}: {why}")]
    Read { path: PathBuf, why: String },
    #[error("no VM with pid {pid} in {root} (its directories are named <pid>-<fd>)")]
    NoSuchVm { pid: i32, root: PathBuf },
}

/// The pid of a per-VM directory name `<pid>-<fd>`.
pub fn vm_dir_pid(name: &str) -> Option<i32> {
    let (pid, fd) = name.split_once('-')?;
    fd.parse::<u32>().ok()?;
    pid.parse().ok()
}

/// A statistic file's content: one decimal number and a newline.
pub fn parse_value(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The statistics of one scope, read on demand.
#[derive(Debug)]
pub struct Debugfs {
    root: PathBuf,
    pid: Option<i32>,
    names: Vec<String>,
}

fn entries(dir: &Path) -> Result<Vec<(String, bool)>, DebugfsError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DebugfsError::Read {
        path: dir.to_path_buf(),
        why: e.to_string(),
    })?;
    let mut out = Vec::new();
    for e in rd.flatten() {
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if let Some(n) = e.file_name().to_str() {
            out.push((n.to_string(), is_dir));
        }
    }
    out.sort();
    Ok(out)
}

fn read_value(path: &Path) -> Result<Option<u64>, DebugfsError> {
    match std::fs::read_to_string(path) {
        Ok(t) => parse_value(&t).map(Some).ok_or_else(|| DebugfsError::Read {
            path: path.to_path_buf(),
            why: format!("not a number: {:?}", t.trim()),
        }),
        // A VM or vCPU that went away between listing and reading, or a statistic that this
        // directory does not have (VM-wide ones in a vcpuN directory).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DebugfsError::Read {
            path: path.to_path_buf(),
            why: e.to_string(),
        }),
    }
}

impl Debugfs {
    /// The statistics under `root` (normally [`ROOT`]), of every VM or of the VM process `pid`.
    pub fn open(root: &Path, pid: Option<i32>) -> Result<Debugfs, DebugfsError> {
        let list = entries(root).map_err(|e| DebugfsError::Unavailable {
            path: root.to_path_buf(),
            why: match e {
                DebugfsError::Read { why, .. } => why,
                other => other.to_string(),
            },
        })?;
        let names: Vec<String> = list
            .into_iter()
            .filter(|(_, dir)| !dir)
            .map(|(n, _)| n)
            .collect();
        if names.is_empty() {
            return Err(DebugfsError::Unavailable {
                path: root.to_path_buf(),
                why: "no statistics there (is the kvm module loaded?)".into(),
            });
        }
        let d = Debugfs {
            root: root.to_path_buf(),
            pid,
            names,
        };
        if let Some(pid) = pid {
            if d.vm_dirs()?.is_empty() {
                return Err(DebugfsError::NoSuchVm {
                    pid,
                    root: root.to_path_buf(),
                });
            }
        }
        Ok(d)
    }

    /// One row per statistic, named as the file is (`exits`, `io_exits`, `halt_exits`...).
    pub fn keys(&self) -> Vec<Key> {
        self.names
            .iter()
            .map(|n| Key {
                name: n.clone(),
                parent: None,
            })
            .collect()
    }

    fn vm_dirs(&self) -> Result<Vec<String>, DebugfsError> {
        Ok(entries(&self.root)?
            .into_iter()
            .filter(|(n, dir)| {
                *dir && vm_dir_pid(n).is_some_and(|p| self.pid.is_none_or(|want| want == p))
            })
            .map(|(n, _)| n)
            .collect())
    }

    fn values(&self, dir: &Path) -> Result<Vec<u64>, DebugfsError> {
        self.names
            .iter()
            .map(|n| Ok(read_value(&dir.join(n))?.unwrap_or(0)))
            .collect()
    }

    /// The statistics now: for every VM the global sums with one target per VM directory;
    /// for one VM the sums over its directories with one target per vCPU.
    pub fn read(&self) -> Result<Sample, DebugfsError> {
        let mut s = Sample::default();
        match self.pid {
            None => {
                s.counts = self.values(&self.root)?;
                for d in self.vm_dirs()? {
                    s.per_target
                        .push((format!("vm {d}"), self.values(&self.root.join(&d))?));
                }
            }
            Some(_) => {
                s.counts = vec![0; self.names.len()];
                for d in self.vm_dirs()? {
                    let dir = self.root.join(&d);
                    for (c, v) in s.counts.iter_mut().zip(self.values(&dir)?) {
                        *c += v;
                    }
                    for (n, is_dir) in entries(&dir)? {
                        if is_dir && n.starts_with("vcpu") {
                            s.per_target.push((n.clone(), self.values(&dir.join(&n))?));
                        }
                    }
                }
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout debugfs has (the files are the kernel's; this tree copies their names).
    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let w = |p: &str, v: &str| {
            let p = t.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, v).unwrap();
        };
        w("exits", "30\n");
        w("io_exits", "7\n");
        w("pages_4k", "512\n");
        w("100-12/exits", "20\n");
        w("100-12/io_exits", "5\n");
        w("100-12/pages_4k", "500\n");
        w("100-12/vcpu0/exits", "15\n");
        w("100-12/vcpu0/io_exits", "5\n");
        w("100-12/vcpu1/exits", "5\n");
        w("100-12/vcpu1/io_exits", "0\n");
        w("200-9/exits", "10\n");
        w("200-9/io_exits", "2\n");
        w("200-9/pages_4k", "12\n");
        t
    }

    #[test]
    fn every_vm_gives_the_global_sums_and_one_target_per_vm() {
        let t = tree();
        let d = Debugfs::open(t.path(), None).unwrap();
        let names: Vec<String> = d.keys().into_iter().map(|k| k.name).collect();
        assert_eq!(names, ["exits", "io_exits", "pages_4k"]);
        let s = d.read().unwrap();
        assert_eq!(s.counts, [30, 7, 512]);
        assert_eq!(s.per_target.len(), 2);
        assert_eq!(s.per_target[0], ("vm 100-12".to_string(), vec![20, 5, 500]));
    }

    #[test]
    fn one_vm_gives_its_sums_and_one_target_per_vcpu() {
        let t = tree();
        let s = Debugfs::open(t.path(), Some(100)).unwrap().read().unwrap();
        assert_eq!(s.counts, [20, 5, 500]);
        // VM-wide statistics are not in vcpuN directories: 0 there.
        assert_eq!(s.per_target[0], ("vcpu0".to_string(), vec![15, 5, 0]));
        assert_eq!(s.per_target[1], ("vcpu1".to_string(), vec![5, 0, 0]));
    }

    #[test]
    fn missing_root_vm_and_bad_values_are_clear_errors() {
        let e = Debugfs::open(Path::new("/nonexistent/kvm"), None).unwrap_err();
        assert!(e.to_string().contains("mount -t debugfs"), "{e}");
        let t = tree();
        let e = Debugfs::open(t.path(), Some(4242)).unwrap_err();
        assert!(e.to_string().contains("no VM with pid 4242"), "{e}");
        std::fs::write(t.path().join("exits"), "lots\n").unwrap();
        let e = Debugfs::open(t.path(), None).unwrap().read().unwrap_err();
        assert!(e.to_string().contains("exits: not a number"), "{e}");
    }

    #[test]
    fn names_and_values_parse_without_panics() {
        assert_eq!(vm_dir_pid("1234-11"), Some(1234));
        for bad in ["", "-", "12", "12-", "a-1", "1-b", "vcpu0"] {
            assert_eq!(vm_dir_pid(bad), None, "{bad}");
        }
        assert_eq!(parse_value(" 42\n"), Some(42));
        assert_eq!(parse_value("-1"), None);
        assert_eq!(parse_value(""), None);
    }
}
