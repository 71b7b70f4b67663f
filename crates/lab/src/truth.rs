//! Ground truth: which host events a scenario's guest actions must cause.

use serde::Serialize;

/// Privilege level the scenario's measured guest code runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Privilege {
    /// Guest kernel mode. On PVM every CPL0 instruction is emulated.
    Cpl0,
    /// Guest user mode: runs natively everywhere; only sensitive instructions trap.
    Cpl3,
}

impl std::fmt::Display for Privilege {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Privilege::Cpl0 => "CPL0",
            Privilege::Cpl3 => "CPL3",
        })
    }
}

/// Which hosts an expectation holds on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HostScope {
    /// Every x86 KVM host (VMX, SVM, PVM): the event follows from the guest's action itself.
    Any,
    /// Hosts with shadow paging (no EPT/NPT): PVM, or VMX/SVM with `tdp_mmu`/`ept` off.
    ShadowPaging,
    /// PVM (`kvm_pvm`), where CPL0 code is emulated and CPL3 code runs natively.
    Pvm,
    /// Hardware virtualisation (VMX or SVM), where every guest instruction runs natively.
    HardwareVirt,
    /// AMD SVM (`kvm_amd`), nested or shadow paging: SVM's exit codes (measured on the
    /// emulated SVM host, `kvmscope lab run --host svm`).
    Svm,
    /// AMD SVM with nested paging (`kvm_amd npt=1`).
    SvmNpt,
    /// AMD SVM with shadow paging (`kvm_amd npt=0`).
    SvmShadow,
    /// AMD SVM on a CPU without NRIPS and decode assists (QEMU's emulated EPYC): KVM runs its
    /// instruction emulator to skip or decode what the exit info does not describe.
    SvmNoAssists,
    /// Both of the above: shadow paging on a CPU without decode assists.
    SvmShadowNoAssists,
}

impl HostScope {
    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            HostScope::Any => "any",
            HostScope::ShadowPaging => "shadow",
            HostScope::Pvm => "pvm",
            HostScope::HardwareVirt => "vmx/svm",
            HostScope::Svm => "svm",
            HostScope::SvmNpt => "svm+npt",
            HostScope::SvmShadow => "svm-shadow",
            HostScope::SvmNoAssists => "svm-tcg",
            HostScope::SvmShadowNoAssists => "svm-sh-tcg",
        }
    }

    /// True when the promise follows from the action whatever the guest's privilege level
    /// (the other promises were measured at the scenario's own level only).
    pub fn any_privilege(self) -> bool {
        !matches!(
            self,
            HostScope::Pvm
                | HostScope::ShadowPaging
                | HostScope::SvmNoAssists
                | HostScope::SvmShadowNoAssists
        )
    }
}

/// The KVM flavour of this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HostKind {
    /// Intel VMX (`kvm_intel`).
    Vmx,
    /// AMD SVM (`kvm_amd`).
    Svm,
    /// PVM (`kvm_pvm`): shadow paging, no hardware virtualisation.
    Pvm,
    /// Something else, or not loaded.
    Unknown,
}

impl HostKind {
    /// Detects the loaded KVM vendor module.
    pub fn detect() -> HostKind {
        let loaded = |m: &str| std::path::Path::new("/sys/module").join(m).exists();
        if loaded("kvm_pvm") {
            HostKind::Pvm
        } else if loaded("kvm_intel") {
            HostKind::Vmx
        } else if loaded("kvm_amd") {
            HostKind::Svm
        } else {
            HostKind::Unknown
        }
    }

    /// True when guest page tables are shadowed: always on PVM; on VMX/SVM when EPT/NPT is
    /// off (`kvm_intel ept=N`, `kvm_amd npt=0`).
    pub fn shadow_paging(self) -> bool {
        let param = |p: &str| {
            std::fs::read_to_string(p)
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        // Boolean parameters read `N`/`Y`, older integer ones `0`/`1`.
        let off = |p: &str| matches!(param(p).as_str(), "N" | "n" | "0");
        match self {
            HostKind::Pvm => true,
            HostKind::Vmx => off("/sys/module/kvm_intel/parameters/ept"),
            HostKind::Svm => off("/sys/module/kvm_amd/parameters/npt"),
            _ => false,
        }
    }

    /// True when expectations of `scope` hold on this host.
    pub fn covers(self, scope: HostScope) -> bool {
        match scope {
            HostScope::Any => true,
            HostScope::ShadowPaging => self.shadow_paging(),
            HostScope::Pvm => self == HostKind::Pvm,
            HostScope::HardwareVirt => matches!(self, HostKind::Vmx | HostKind::Svm),
            HostScope::Svm => self == HostKind::Svm,
            HostScope::SvmNpt => self == HostKind::Svm && !self.shadow_paging(),
            HostScope::SvmShadow => self == HostKind::Svm && self.shadow_paging(),
            HostScope::SvmNoAssists => self == HostKind::Svm && !cpu_flag("nrip_save"),
            HostScope::SvmShadowNoAssists => {
                self.covers(HostScope::SvmShadow) && !cpu_flag("decodeassists")
            }
        }
    }
}

/// True when /proc/cpuinfo lists `flag` for the first CPU.
fn cpu_flag(flag: &str) -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("flags"))
                .map(|l| l.split_whitespace().any(|f| f == flag))
        })
        .unwrap_or(false)
}

/// An inclusive range of event counts; `min == max` is an exact promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Count {
    /// Fewest events.
    pub min: u64,
    /// Most events.
    pub max: u64,
}

impl Count {
    /// Exactly `n`.
    pub fn exact(n: u64) -> Count {
        Count { min: n, max: n }
    }

    /// Between `min` and `max` inclusive.
    pub fn between(min: u64, max: u64) -> Count {
        Count { min, max }
    }

    /// True when `n` satisfies the promise.
    pub fn contains(&self, n: u64) -> bool {
        (self.min..=self.max).contains(&n)
    }
}

impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}..={}", self.min, self.max)
        }
    }
}

/// One promised count: events `system:event` matching `filter`, on this VM's vCPU threads,
/// from the moment the guest starts until it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expectation {
    /// Trace system, `kvm` or `kvmmmu`.
    pub system: &'static str,
    /// Tracepoint name.
    pub event: &'static str,
    /// A tracefs filter expression (kernel syntax) selecting the events that count, if any.
    pub filter: Option<String>,
    /// How many.
    pub count: Count,
    /// Hosts on which the promise holds.
    pub host: HostScope,
    /// Which guest action causes it.
    pub why: String,
}

/// One promised change of a per-vCPU KVM binary statistic (KVM_GET_STATS_FD), summed over
/// the VM's vCPUs, between just before the guest starts and just after it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatExpectation {
    /// Statistic name, e.g. `halt_exits`.
    pub name: &'static str,
    /// How much it grows.
    pub delta: Count,
    /// Hosts on which the promise holds.
    pub host: HostScope,
    /// Why.
    pub why: String,
}

/// What a run promises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroundTruth {
    /// Scenario name.
    pub scenario: &'static str,
    /// Privilege level of the measured guest code.
    pub privilege: Privilege,
    /// The guest action counted as one operation.
    pub action: &'static str,
    /// Operations the guest performed (all vCPUs).
    pub ops: u64,
    /// The promised event counts.
    pub expectations: Vec<Expectation>,
    /// The promised per-vCPU binary stats deltas.
    pub stats: Vec<StatExpectation>,
}

pub(crate) fn expect(
    system: &'static str,
    event: &'static str,
    filter: Option<String>,
    count: Count,
    host: HostScope,
    why: impl Into<String>,
) -> Expectation {
    Expectation {
        system,
        event,
        filter,
        count,
        host,
        why: why.into(),
    }
}

pub(crate) fn expect_stat(
    name: &'static str,
    delta: Count,
    host: HostScope,
    why: impl Into<String>,
) -> StatExpectation {
    StatExpectation {
        name,
        delta,
        host,
        why: why.into(),
    }
}

/// The value of `field` in an event printed with tracefs's `fields` option:
/// `port=0x3f8 (1016)`, `failed=(0)` (u8 and bool), or `vec='<byte>'(236)` (u8 also printed
/// as a character). None when the field is absent or not a number.
pub fn field_value(payload: &str, name: &str) -> Option<i128> {
    let key = format!("{name}=");
    let mut from = 0;
    let at = loop {
        let pos = from + payload.get(from..)?.find(&key)?;
        if pos == 0 || payload.as_bytes()[pos - 1] == b' ' {
            break pos + key.len();
        }
        from = pos + 1;
    };
    let v = &payload[at..];
    let num = if v.starts_with('\'') {
        // '<char>'(N): the char may be any byte, so look for the closing "'(".
        let open = v.get(1..)?.find("'(")? + 3;
        let rest = v.get(open..)?;
        &rest[..rest.find(')')?]
    } else if let Some(r) = v.strip_prefix('(') {
        &r[..r.find(')')?]
    } else {
        &v[..v.find(' ').unwrap_or(v.len())]
    };
    match num.strip_prefix("0x") {
        Some(h) => i128::from_str_radix(h, 16).ok(),
        None => num.parse().ok(),
    }
}

impl Expectation {
    /// True when an event printed with tracefs's `fields` option matches this expectation's
    /// filter (a conjunction of `field OP number`, OP one of `== != < <= > >=`). An event
    /// without the field, or a clause this cannot read, does not match.
    pub fn matches_fields(&self, payload: &str) -> bool {
        let Some(filter) = &self.filter else {
            return true;
        };
        filter.split("&&").all(|clause| {
            let parts: Vec<&str> = clause.split_whitespace().collect();
            let [name, op, value] = parts[..] else {
                return false;
            };
            let want = match value.strip_prefix("0x") {
                Some(h) => i128::from_str_radix(h, 16).ok(),
                None => value.parse().ok(),
            };
            let (Some(want), Some(have)) = (want, field_value(payload, name)) else {
                return false;
            };
            match op {
                "==" => have == want,
                "!=" => have != want,
                ">=" => have >= want,
                "<=" => have <= want,
                "<" => have < want,
                ">" => have > want,
                _ => false,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(filter: &str) -> Expectation {
        expect(
            "kvm",
            "x",
            Some(filter.into()),
            Count::exact(1),
            HostScope::Any,
            "",
        )
    }

    #[test]
    fn reads_fields_option_payloads() {
        let p = "rw=0x1 (1) port=0x3f8 (1016) size=0x1 (1) count=0x1 (1) val=0x0 (0)";
        assert_eq!(field_value(p, "port"), Some(0x3f8));
        assert_eq!(field_value(p, "rw"), Some(1));
        assert_eq!(field_value(p, "w"), None);
        assert_eq!(
            field_value("apicid=0x0 (0) vec='\u{fffd}'(236)", "vec"),
            Some(236)
        );
        assert_eq!(field_value("x=''(39)", "x"), Some(39));
        assert_eq!(field_value("failed=(0) created=(1)", "created"), Some(1));
        assert!(e("rw == 1 && port == 0x3f8").matches_fields(p));
        assert!(!e("port != 0x3f8").matches_fields(p));
        assert!(e("port >= 1016 && port < 1017").matches_fields(p));
        assert!(!e("nosuch == 1").matches_fields(p));
        assert!(!e("port ~ 1").matches_fields(p));
    }

    #[test]
    fn never_panics_on_odd_payloads() {
        for p in [
            "",
            "=",
            "x=",
            "x='",
            "x='(",
            "x=(",
            "x=(1",
            "x='a'(",
            "é=1 x=é",
            "x=0x",
        ] {
            let _ = field_value(p, "x");
            let _ = e("x == 1 && y != 2").matches_fields(p);
        }
    }
}
