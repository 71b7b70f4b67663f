//! KVM module parameters (`/sys/module/kvm*/parameters/*`): `kvm`, `kvm_intel`, `kvm_amd`,
//! `kvm_pvm`, `kvm_arm`...

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{excerpt, numbered_lines, Error};

/// Module name to parameter name to value (trimmed, as sysfs prints it: `Y`, `N`, numbers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvmParams {
    /// `module -> parameter -> value`.
    pub modules: BTreeMap<String, BTreeMap<String, String>>,
}

impl KvmParams {
    /// Records one parameter as read from sysfs.
    pub fn insert(&mut self, module: &str, param: &str, raw: &str) {
        self.modules
            .entry(module.to_string())
            .or_default()
            .insert(param.to_string(), raw.trim().to_string());
    }

    /// The value of `module.param`.
    pub fn get(&self, module: &str, param: &str) -> Option<&str> {
        self.modules.get(module)?.get(param).map(String::as_str)
    }

    /// A boolean parameter (`Y`/`N`/`1`/`0`).
    pub fn get_bool(&self, module: &str, param: &str) -> Option<bool> {
        match self.get(module, param)? {
            "Y" | "y" | "1" => Some(true),
            "N" | "n" | "0" => Some(false),
            _ => None,
        }
    }

    /// Two-dimensional paging: `kvm_intel.ept` or `kvm_amd.npt`; `None` when neither
    /// module is loaded (e.g. `kvm_pvm`, which always uses shadow paging).
    pub fn tdp(&self) -> Option<bool> {
        self.get_bool("kvm_intel", "ept")
            .or_else(|| self.get_bool("kvm_amd", "npt"))
    }

    /// Parses the listing format `module param value` (one per line; what
    /// `for f in /sys/module/kvm*/parameters/*` prints, used for fixtures and sidecars).
    pub fn parse_listing(text: &str) -> Result<KvmParams, Error> {
        let mut out = KvmParams::default();
        for line in numbered_lines(text) {
            let t = line.text.trim();
            if t.is_empty() {
                continue;
            }
            let mut it = t.splitn(3, ' ');
            match (it.next(), it.next(), it.next()) {
                (Some(m), Some(p), v) if !m.is_empty() && !p.is_empty() => {
                    out.insert(m, p, v.unwrap_or(""))
                }
                _ => {
                    return Err(line.error(
                        "KVM module parameter listing",
                        format!("expected \"module parameter value\", found {}", excerpt(t)),
                    ))
                }
            }
        }
        Ok(out)
    }
}
