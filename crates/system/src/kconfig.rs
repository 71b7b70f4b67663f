//! Kernel configuration lines (`/proc/config.gz`, `/boot/config-*`): `CONFIG_X=y`,
//! `CONFIG_X="str"`, `# CONFIG_X is not set`; and the ones that decide the tick and
//! preemption.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{excerpt, numbered_lines, Error};

const FILE: &str = "kernel config";

/// A parsed kernel configuration (all entries, or only the relevant ones).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelConfig {
    /// Option name without `CONFIG_` to its value: `y`, `m`, `n` (for "is not set"), a
    /// number, or a string without its quotes.
    pub options: BTreeMap<String, String>,
}

/// Tick and preemption facts from a configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickConfig {
    /// `CONFIG_HZ`.
    pub hz: Option<u32>,
    /// `CONFIG_HZ_PERIODIC=y`: the tick never stops.
    pub hz_periodic: bool,
    /// `CONFIG_NO_HZ_IDLE=y`: the tick stops on idle CPUs.
    pub no_hz_idle: bool,
    /// `CONFIG_NO_HZ_FULL=y`: the tick can stop on busy `nohz_full` CPUs.
    pub no_hz_full: bool,
    /// `CONFIG_HIGH_RES_TIMERS=y`.
    pub high_res_timers: bool,
    /// The preemption model: `none`, `voluntary`, `full`, `lazy` or `rt`.
    pub preempt: Option<String>,
    /// `CONFIG_PREEMPT_DYNAMIC=y`: the model can be changed with `preempt=` at boot.
    pub preempt_dynamic: bool,
}

/// True for the options a kvmscope snapshot keeps: tick, timers, preemption, isolation,
/// RCU callbacks offload, KVM and paravirt.
pub fn is_relevant(name: &str) -> bool {
    let name = name.strip_prefix("CONFIG_").unwrap_or(name);
    name == "HZ"
        || name.starts_with("HZ_")
        || name.starts_with("NO_HZ")
        || name.starts_with("PREEMPT")
        || name.starts_with("TICK_")
        || name == "HIGH_RES_TIMERS"
        || name.starts_with("KVM")
        || name == "CPU_ISOLATION"
        || name == "RCU_NOCB_CPU"
        || name == "PARAVIRT"
        || name == "PARAVIRT_CLOCK"
        || name == "HYPERVISOR_GUEST"
        || name == "X86_X2APIC"
        || name == "CONTEXT_TRACKING_USER"
        || name == "VIRT_CPU_ACCOUNTING_GEN"
}

/// Parses configuration text, keeping every option.
pub fn parse(text: &str) -> Result<KernelConfig, Error> {
    parse_filtered(text, |_| true)
}

/// Parses configuration text, keeping the options `keep` accepts (by name without `CONFIG_`).
pub fn parse_filtered(text: &str, keep: impl Fn(&str) -> bool) -> Result<KernelConfig, Error> {
    let mut options = BTreeMap::new();
    for line in numbered_lines(text) {
        let t = line.text.trim();
        if t.is_empty() {
            continue;
        }
        if let Some(c) = t.strip_prefix('#') {
            let c = c.trim();
            if let Some(name) = c
                .strip_prefix("CONFIG_")
                .and_then(|c| c.strip_suffix(" is not set"))
            {
                if keep(name) {
                    options.insert(name.to_string(), "n".to_string());
                }
            }
            continue;
        }
        let (name, value) = t
            .strip_prefix("CONFIG_")
            .and_then(|t| t.split_once('='))
            .ok_or_else(|| {
                line.error(
                    FILE,
                    format!(
                        "expected CONFIG_NAME=value or a # comment, found {}",
                        excerpt(t)
                    ),
                )
            })?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(line.error(FILE, format!("bad option name {}", excerpt(name))));
        }
        let value = match value.strip_prefix('"') {
            Some(v) => v
                .strip_suffix('"')
                .ok_or_else(|| line.error(FILE, format!("unterminated string in {}", excerpt(t))))?
                .replace("\\\"", "\"")
                .replace("\\\\", "\\"),
            None => value.to_string(),
        };
        if keep(name) {
            options.insert(name.to_string(), value);
        }
    }
    Ok(KernelConfig { options })
}

impl KernelConfig {
    /// The value of an option (name with or without `CONFIG_`).
    pub fn get(&self, name: &str) -> Option<&str> {
        let name = name.strip_prefix("CONFIG_").unwrap_or(name);
        self.options.get(name).map(String::as_str)
    }

    /// True when the option is `y`.
    pub fn is_yes(&self, name: &str) -> bool {
        self.get(name) == Some("y")
    }

    /// Tick and preemption facts.
    pub fn tick(&self) -> TickConfig {
        let preempt = if self.is_yes("PREEMPT_RT") {
            Some("rt")
        } else if self.is_yes("PREEMPT_LAZY") {
            Some("lazy")
        } else if self.is_yes("PREEMPT") {
            Some("full")
        } else if self.is_yes("PREEMPT_VOLUNTARY") {
            Some("voluntary")
        } else if self.is_yes("PREEMPT_NONE") {
            Some("none")
        } else {
            None
        };
        TickConfig {
            hz: self.get("HZ").and_then(|v| v.parse().ok()),
            hz_periodic: self.is_yes("HZ_PERIODIC"),
            no_hz_idle: self.is_yes("NO_HZ_IDLE"),
            no_hz_full: self.is_yes("NO_HZ_FULL"),
            high_res_timers: self.is_yes("HIGH_RES_TIMERS"),
            preempt: preempt.map(str::to_string),
            preempt_dynamic: self.is_yes("PREEMPT_DYNAMIC"),
        }
    }
}
