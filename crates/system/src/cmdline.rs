//! `/proc/cmdline`: kernel parameters in order, and the ones that decide timers, ticks,
//! isolation and idle.

use serde::{Deserialize, Serialize};

use crate::cpulist;
use crate::error::Error;

/// One `key` or `key=value` parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Param {
    /// The name (`nohz_full`, `intel_idle.max_cstate`).
    pub key: String,
    /// The value after the first `=`, quotes removed; `None` for a bare flag.
    pub value: Option<String>,
}

/// A parsed kernel command line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cmdline {
    /// The whole line, trimmed.
    pub raw: String,
    /// Kernel parameters, in order (everything before a lone `--`).
    pub params: Vec<Param>,
    /// Arguments after `--`, which go to init.
    pub init_args: Vec<String>,
}

/// The `isolcpus=` parameter: flags (`domain`, `managed_irq`, `nohz`) and CPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolCpus {
    /// Flags before the CPU list; empty means the default (`domain`).
    pub flags: Vec<String>,
    /// The isolated CPUs.
    pub cpus: Vec<u32>,
}

/// The parameters that matter for timers, ticks, isolation and idle, typed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimingParams {
    /// `nohz=on|off` (`Some(false)` is field report 003's cause).
    pub nohz: Option<bool>,
    /// `nohz_full=` CPUs.
    pub nohz_full: Option<Vec<u32>>,
    /// `isolcpus=`.
    pub isolcpus: Option<IsolCpus>,
    /// `rcu_nocbs=` CPUs (`Some(empty)` for a bare `rcu_nocbs`).
    pub rcu_nocbs: Option<Vec<u32>>,
    /// `irqaffinity=` CPUs.
    pub irqaffinity: Option<Vec<u32>>,
    /// `idle=` (`poll`, `halt`, `nomwait`).
    pub idle: Option<String>,
    /// `clocksource=`.
    pub clocksource: Option<String>,
    /// `tsc=` (`reliable`, `nowatchdog`, ...).
    pub tsc: Option<String>,
    /// `highres=on|off`.
    pub highres: Option<bool>,
    /// `skew_tick=`.
    pub skew_tick: Option<String>,
    /// `intel_idle.max_cstate=` / `processor.max_cstate=`.
    pub max_cstate: Option<String>,
    /// `mitigations=`.
    pub mitigations: Option<String>,
    /// `preempt=` (PREEMPT_DYNAMIC kernels).
    pub preempt: Option<String>,
}

fn on_off(v: Option<&str>) -> Option<bool> {
    match v?.trim().to_ascii_lowercase().as_str() {
        "on" | "1" | "y" | "yes" | "" => Some(true),
        "off" | "0" | "n" | "no" => Some(false),
        _ => None,
    }
}

/// Splits a command line into words, honouring double quotes as the kernel does.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut any = false;
    for c in text.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                any = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// Parses `/proc/cmdline`. Never fails: every word is a parameter.
pub fn parse(text: &str) -> Cmdline {
    let raw = text.trim().to_string();
    let mut params = Vec::new();
    let mut init_args = Vec::new();
    let mut after_dashes = false;
    for w in words(&raw) {
        if after_dashes {
            init_args.push(w);
        } else if w == "--" {
            after_dashes = true;
        } else {
            let (key, value) = match w.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (w, None),
            };
            params.push(Param { key, value });
        }
    }
    Cmdline {
        raw,
        params,
        init_args,
    }
}

impl Cmdline {
    /// The last value given for `key` (the kernel takes the last one); `Some(None)` for a
    /// bare flag, `None` when absent. Dashes and underscores are equivalent in names.
    pub fn get(&self, key: &str) -> Option<Option<&str>> {
        let norm = |s: &str| s.replace('-', "_");
        let key = norm(key);
        self.params
            .iter()
            .rev()
            .find(|p| norm(&p.key) == key)
            .map(|p| p.value.as_deref())
    }

    /// True when the parameter is present.
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The timing, tick and isolation parameters, typed. CPU lists that do not parse are
    /// errors (the kernel would ignore or reject them; the user should know).
    pub fn timing(&self) -> Result<TimingParams, Error> {
        let s = |k: &str| self.get(k).flatten().map(str::to_string);
        let list = |file: &'static str, k: &str| -> Result<Option<Vec<u32>>, Error> {
            match self.get(k) {
                None => Ok(None),
                Some(None) => Ok(Some(Vec::new())),
                Some(Some(v)) => cpulist::parse(file, v).map(Some),
            }
        };
        let isolcpus = match self.get("isolcpus") {
            None => None,
            Some(v) => {
                let v = v.unwrap_or("");
                let mut flags = Vec::new();
                let mut rest = v;
                // Flags come first, comma separated, and start with a letter.
                loop {
                    let (head, tail) = rest.split_once(',').unwrap_or((rest, ""));
                    if head.starts_with(|c: char| c.is_ascii_alphabetic()) {
                        flags.push(head.to_string());
                        rest = tail;
                        if tail.is_empty() {
                            break;
                        }
                    } else {
                        break;
                    }
                }
                Some(IsolCpus {
                    flags,
                    cpus: cpulist::parse("isolcpus=", rest)?,
                })
            }
        };
        Ok(TimingParams {
            nohz: self.get("nohz").and_then(on_off),
            nohz_full: list("nohz_full=", "nohz_full")?,
            isolcpus,
            rcu_nocbs: list("rcu_nocbs=", "rcu_nocbs")?,
            irqaffinity: list("irqaffinity=", "irqaffinity")?,
            idle: s("idle"),
            clocksource: s("clocksource"),
            tsc: s("tsc"),
            highres: self.get("highres").and_then(on_off),
            skew_tick: s("skew_tick"),
            max_cstate: s("intel_idle.max_cstate").or_else(|| s("processor.max_cstate")),
            mitigations: s("mitigations"),
            preempt: s("preempt"),
        })
    }
}
