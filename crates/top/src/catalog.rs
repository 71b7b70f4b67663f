//! What to count: the parent events and their drill-down children (kernel filters).
//!
//! Host mode counts every tracepoint of the `kvm` system, as kvm_stat does, with children:
//! `kvm_exit` per exit reason (arm64: per exception class), `kvm_userspace_exit` per reason,
//! both named from the running kernel's `print fmt`; `kvm_msr` per MSR and `kvm_pio` per port
//! for a set of commonly hot MSRs and ports (plus any the user names). Guest mode counts the
//! events that show a guest's timer and IPI load from inside it.
//!
//! Every child is one more kernel filter evaluated on each hit of its parent event, so the
//! MSR and port sets are kept small on purpose.

use std::path::Path;

use kvmscope_capture::counters::{system_events, CounterSpec};
use kvmscope_trace::tables::msr_name;
use kvmscope_tracedat::format::EventFormat;

/// Which side of the hypervisor we are looking from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// KVM's own tracepoints on the host.
    Host,
    /// Timer, MSR and IPI events of this machine, when it is itself a guest.
    Guest,
}

/// One drill-down child: a filtered counter of its parent's tracepoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    /// What the filter selects (`HLT`, `0x3f8`, `IA32_TSC_DEADLINE`).
    pub label: String,
    /// Kernel filter expression.
    pub filter: String,
}

/// One counted tracepoint with its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatEvent {
    pub system: String,
    pub name: String,
    pub children: Vec<Child>,
}

/// One counter of the flattened catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// Display name: `kvm_exit`, or `kvm_exit(HLT)` for a child.
    pub name: String,
    /// Index (in the flat list) of the parent of a child.
    pub parent: Option<usize>,
}

/// Everything to count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    pub mode: Mode,
    pub events: Vec<CatEvent>,
}

/// Ports whose accesses are common enough to deserve their own row.
pub const HOT_PORTS: &[(u16, &str)] = &[
    (0x3f8, "COM1 data"),
    (0x3fd, "COM1 line status"),
    (0x2f8, "COM2 data"),
    (0x70, "RTC index"),
    (0x71, "RTC data"),
    (0x60, "i8042 data"),
    (0x64, "i8042 status"),
    (0x80, "POST/delay"),
    (0xcf8, "PCI config address"),
    (0xcfc, "PCI config data"),
    (0x510, "fw_cfg"),
    (0x604, "ACPI PM1a control"),
    (0x608, "ACPI PM timer"),
    (0xb008, "ACPI PM timer (PIIX4)"),
];

/// MSRs that show up hot in guests (timers, IPIs, EOI, context switches, kvmclock).
pub const HOT_MSRS: &[u32] = &[
    0x6e0,      // IA32_TSC_DEADLINE
    0x830,      // X2APIC_ICR
    0x80b,      // X2APIC_EOI
    0x838,      // X2APIC_TMICT
    0x832,      // X2APIC_LVTT
    0x10,       // IA32_TSC
    0x48,       // IA32_SPEC_CTRL
    0x49,       // IA32_PRED_CMD
    0x1b,       // IA32_APIC_BASE
    0xc0000080, // IA32_EFER
    0xc0000100, // FS_BASE
    0xc0000101, // GS_BASE
    0xc0000102, // KERNEL_GS_BASE
    0x4b564d01, // KVM_SYSTEM_TIME_NEW
    0x4b564d02, // KVM_ASYNC_PF_EN
    0x4b564d03, // KVM_STEAL_TIME
    0x4b564d04, // KVM_PV_EOI_EN
];

/// The guest-side events (system, name).
pub const GUEST_EVENTS: &[(&str, &str)] = &[
    ("msr", "write_msr"),
    ("timer", "hrtimer_start"),
    ("timer", "hrtimer_expire_entry"),
    ("irq_vectors", "local_timer_entry"),
    ("irq_vectors", "reschedule_entry"),
    ("irq_vectors", "call_function_entry"),
    ("irq_vectors", "call_function_single_entry"),
    ("ipi", "ipi_send_cpu"),
    ("ipi", "ipi_send_cpumask"),
    ("csd", "csd_function_entry"),
];

/// Functions commonly run through smp_call_function / csd on a guest.
pub const HOT_CSD_FUNCTIONS: &[&str] = &[
    "flush_tlb_func",
    "do_flush_tlb_all",
    "nohz_csd_func",
    "__sysvec_call_function",
    "remote_function",
    "do_sync_core",
    "ipi_mb",
    "__cpa_flush_tlb",
    "aperfmperf_snapshot_khz",
    "generic_exec_single",
    "__flush_smp_call_function_queue",
    "tick_nohz_full_kick_func",
    "irq_work_run",
    "smp_call_on_cpu_callback",
    "trigger_load_balance",
    "rcu_exp_handler",
    "wake_up_process",
    "sched_ttwu_pending",
];

/// Extra drill-down values the user asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extra {
    pub ports: Vec<u16>,
    pub msrs: Vec<u32>,
}

/// Which exit-reason table of kvm_exit's `print fmt` applies on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Intel,
    Amd,
    Arm64,
    Other,
}

impl Vendor {
    /// This machine's vendor, from /proc/cpuinfo (and the build target for arm64).
    pub fn detect() -> Vendor {
        if cfg!(target_arch = "aarch64") {
            return Vendor::Arm64;
        }
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Vendor::from_cpuinfo(&info)
    }

    /// The vendor named by a /proc/cpuinfo text.
    pub fn from_cpuinfo(info: &str) -> Vendor {
        if info.contains("GenuineIntel") {
            Vendor::Intel
        } else if info.contains("AuthenticAMD") || info.contains("HygonGenuine") {
            Vendor::Amd
        } else if info.contains("CPU implementer") {
            Vendor::Arm64
        } else {
            Vendor::Other
        }
    }
}

/// Children of kvm_exit from its format file: one per exit reason of the table that applies
/// to `vendor` (VMX: `isa == 1`, SVM: the other branch), or per exception class on arm64.
pub fn exit_children(fmt: &EventFormat, vendor: Vendor) -> Vec<Child> {
    let field = if fmt.field("esr_ec").is_some() {
        "esr_ec"
    } else {
        "exit_reason"
    };
    let table = fmt
        .symbols
        .iter()
        .filter(|t| t.field.as_deref() == Some(field) && !t.flags)
        .find(|t| match (&t.guard, vendor) {
            (None, _) => true,
            (Some(g), Vendor::Amd) => !(g.field == "isa" && g.value == 1 && g.when_equal),
            (Some(g), _) => g.field == "isa" && g.value == 1 && g.when_equal,
        });
    let Some(table) = table else {
        return Vec::new();
    };
    table
        .entries
        .iter()
        .filter(|(v, _)| *v >= 0)
        .map(|(v, name)| Child {
            label: name.clone(),
            filter: format!("{field} == {v}"),
        })
        .collect()
}

/// Children of kvm_userspace_exit: one per `reason` symbol of its format.
pub fn userspace_exit_children(fmt: &EventFormat) -> Vec<Child> {
    let Some(table) = fmt
        .symbols
        .iter()
        .find(|t| t.field.as_deref() == Some("reason") && !t.flags)
    else {
        return Vec::new();
    };
    table
        .entries
        .iter()
        .filter(|(v, _)| *v >= 0)
        .map(|(v, name)| Child {
            label: name.clone(),
            filter: format!("reason == {v}"),
        })
        .collect()
}

fn msr_children(field: &str, extra: &[u32]) -> Vec<Child> {
    let mut msrs: Vec<u32> = HOT_MSRS.to_vec();
    for m in extra {
        if !msrs.contains(m) {
            msrs.push(*m);
        }
    }
    msrs.iter()
        .map(|&m| Child {
            label: msr_name(m).map_or_else(|| format!("{m:#x}"), str::to_string),
            filter: format!("{field} == {m:#x}"),
        })
        .collect()
}

fn port_children(extra: &[u16]) -> Vec<Child> {
    let mut ports: Vec<u16> = HOT_PORTS.iter().map(|p| p.0).collect();
    for p in extra {
        if !ports.contains(p) {
            ports.push(*p);
        }
    }
    ports
        .iter()
        .map(|&p| Child {
            label: format!("{p:#x}"),
            filter: format!("port == {p:#x}"),
        })
        .collect()
}

fn read_format(tracefs: &Path, system: &str, name: &str) -> Option<EventFormat> {
    let path = tracefs
        .join("events")
        .join(system)
        .join(name)
        .join("format");
    let text = std::fs::read_to_string(&path).ok()?;
    EventFormat::parse(system, &text, &path.display().to_string()).ok()
}

/// True when this kernel has KVM's tracepoints (the kvm module is loaded).
pub fn has_kvm_events(tracefs: &Path) -> bool {
    !system_events(tracefs, "kvm").is_empty()
}

/// The host catalog: every `kvm` tracepoint, with children.
pub fn host(tracefs: &Path, vendor: Vendor, extra: &Extra) -> Catalog {
    let events = system_events(tracefs, "kvm")
        .into_iter()
        .map(|name| {
            let children = match name.as_str() {
                "kvm_exit" => read_format(tracefs, "kvm", &name)
                    .map(|f| exit_children(&f, vendor))
                    .unwrap_or_default(),
                "kvm_userspace_exit" => read_format(tracefs, "kvm", &name)
                    .map(|f| userspace_exit_children(&f))
                    .unwrap_or_default(),
                "kvm_msr" => msr_children("ecx", &extra.msrs),
                "kvm_pio" => port_children(&extra.ports),
                _ => Vec::new(),
            };
            CatEvent {
                system: "kvm".into(),
                name,
                children,
            }
        })
        .collect();
    Catalog {
        mode: Mode::Host,
        events,
    }
}

/// Kernel symbol addresses from /proc/kallsyms for the names asked (text symbols only).
fn kallsyms(names: &[&str]) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = line.split_ascii_whitespace();
        let (Some(addr), Some(kind), Some(name)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if !matches!(kind, "t" | "T") || !names.contains(&name) || it.next().is_some() {
            continue;
        }
        if let Ok(a) = u64::from_str_radix(addr, 16) {
            if a != 0 && !out.iter().any(|(n, _)| n == name) {
                out.push((name.to_string(), a));
            }
        }
    }
    out.sort();
    out
}

/// The guest-side catalog: the events of [`GUEST_EVENTS`] this kernel has, write_msr per MSR
/// and csd_function_entry per function.
pub fn guest(tracefs: &Path, extra: &Extra) -> Catalog {
    let mut events = Vec::new();
    for &(system, name) in GUEST_EVENTS {
        if !tracefs
            .join("events")
            .join(system)
            .join(name)
            .join("id")
            .exists()
        {
            continue;
        }
        let children = match name {
            "write_msr" => msr_children("msr", &extra.msrs),
            "csd_function_entry" => kallsyms(HOT_CSD_FUNCTIONS)
                .into_iter()
                .map(|(n, a)| Child {
                    label: n,
                    filter: format!("func == {a:#x}"),
                })
                .collect(),
            _ => Vec::new(),
        };
        events.push(CatEvent {
            system: system.into(),
            name: name.into(),
            children,
        });
    }
    Catalog {
        mode: Mode::Guest,
        events,
    }
}

impl Catalog {
    /// Keeps only parents whose name matches `keep` (with all their children).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.events.retain(|e| keep(&e.name));
    }

    /// Drops every child (no drill-down counters at all).
    pub fn without_children(mut self) -> Catalog {
        for e in &mut self.events {
            e.children.clear();
        }
        self
    }

    /// The counters, flattened: each parent followed by its children.
    pub fn specs(&self) -> Vec<CounterSpec> {
        let mut out = Vec::new();
        for e in &self.events {
            out.push(CounterSpec::new(&e.system, &e.name));
            for c in &e.children {
                out.push(CounterSpec::filtered(&e.system, &e.name, c.filter.clone()));
            }
        }
        out
    }

    /// The display keys, in the order of [`Catalog::specs`].
    pub fn keys(&self) -> Vec<Key> {
        let mut out = Vec::new();
        for e in &self.events {
            let p = out.len();
            out.push(Key {
                name: e.name.clone(),
                parent: None,
            });
            for c in &e.children {
                out.push(Key {
                    name: format!("{}({})", e.name, c.label),
                    parent: Some(p),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXIT: &str = "name: kvm_exit\nID: 7\nformat:\n\tfield:unsigned int exit_reason;\toffset:8;\tsize:4;\tsigned:0;\n\tfield:u32 isa;\toffset:12;\tsize:4;\tsigned:0;\n\nprint fmt: \"reason %s\", (REC->isa == 1) ? __print_symbolic(REC->exit_reason & 0xffff, { 0, \"EXCEPTION_NMI\" }, { 30, \"IO_INSTRUCTION\" }) : __print_symbolic(REC->exit_reason, { 0x07b, \"IOIO\" }, { 0x078, \"HLT\" })\n";

    #[test]
    fn exit_children_follow_the_vendor() {
        let f = EventFormat::parse("kvm", EXIT, "test").unwrap();
        let intel = exit_children(&f, Vendor::Intel);
        assert_eq!(
            intel,
            vec![
                Child {
                    label: "EXCEPTION_NMI".into(),
                    filter: "exit_reason == 0".into()
                },
                Child {
                    label: "IO_INSTRUCTION".into(),
                    filter: "exit_reason == 30".into()
                }
            ]
        );
        let amd = exit_children(&f, Vendor::Amd);
        assert_eq!(amd[0].label, "IOIO");
        assert_eq!(amd[0].filter, "exit_reason == 123");
    }

    #[test]
    fn keys_follow_specs() {
        let c = Catalog {
            mode: Mode::Host,
            events: vec![CatEvent {
                system: "kvm".into(),
                name: "kvm_pio".into(),
                children: port_children(&[0x1234]),
            }],
        };
        let keys = c.keys();
        assert_eq!(keys.len(), c.specs().len());
        assert_eq!(keys[1].name, "kvm_pio(0x3f8)");
        assert_eq!(keys[1].parent, Some(0));
        assert_eq!(keys.last().unwrap().name, "kvm_pio(0x1234)");
        assert_eq!(c.specs()[1].filter.as_deref(), Some("port == 0x3f8"));
    }

    #[test]
    fn vendor_from_cpuinfo() {
        assert_eq!(
            Vendor::from_cpuinfo("vendor_id\t: GenuineIntel"),
            Vendor::Intel
        );
        assert_eq!(
            Vendor::from_cpuinfo("vendor_id\t: AuthenticAMD"),
            Vendor::Amd
        );
        assert_eq!(
            Vendor::from_cpuinfo("CPU implementer\t: 0x41"),
            Vendor::Arm64
        );
    }
}
