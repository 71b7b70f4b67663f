//! `/proc/timer_list`: per CPU the active hrtimers (function, expiry), the tick state
//! (`tick_stopped`, nohz mode, idle counters), and per CPU the tick device (clock event
//! device, its mode and event handler).
//!
//! The format changed over the years (`Timer List Version` v0.6 ... v0.10): older kernels
//! print the start site and task of each timer, `.nohz_mode` and `.idle_tick`; newer ones
//! print `.nohz`, `.highres` and `.last_tick`. All are accepted; fields are kept by name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{excerpt, numbered_lines, Error, Line};

const FILE: &str = "/proc/timer_list";

/// A parsed `/proc/timer_list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerList {
    /// `Timer List Version:` (e.g. `v0.10`).
    pub version: Option<String>,
    /// `now at N nsecs` (CLOCK_MONOTONIC when the file was read).
    pub now_ns: Option<u64>,
    /// One entry per `cpu: N` section.
    pub cpus: Vec<CpuTimers>,
    /// The broadcast device (if listed) and one tick device per CPU.
    pub tick_devices: Vec<TickDevice>,
}

/// The hrtimer and tick state of one CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuTimers {
    /// CPU number.
    pub cpu: u32,
    /// Active hrtimers of all clock bases, in file order.
    pub timers: Vec<ActiveTimer>,
    /// The numeric per-CPU fields (`expires_next`, `nr_events`, `tick_stopped`,
    /// `nohz_mode` or `nohz`/`highres`, `idle_calls`, ...), by name without the dot.
    pub fields: BTreeMap<String, u64>,
    /// `jiffies:` at the end of the section.
    pub jiffies: Option<u64>,
}

/// One active hrtimer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveTimer {
    /// Clock base index (0 = MONOTONIC, 1 = REALTIME, 2 = BOOTTIME, 3 = TAI; +4 for soft).
    pub clock: u32,
    /// The callback, e.g. `tick_nohz_handler`, `hrtimer_wakeup`, `apic_timer_fn`.
    pub function: String,
    /// `S:` state bits (1 = enqueued).
    pub state: u8,
    /// Start site (older kernels only), e.g. `hrtimer_start_range_ns`.
    pub start_site: Option<String>,
    /// Task that started it (older kernels only), e.g. `cron/1200` gives `cron` and 1200.
    pub comm: Option<String>,
    /// Pid of that task (older kernels only).
    pub pid: Option<u32>,
    /// Soft expiry (earliest), ns on the base's clock.
    pub soft_expires_ns: u64,
    /// Hard expiry, ns on the base's clock.
    pub expires_ns: u64,
}

/// A tick device: a CPU's clock event device (or the broadcast device).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickDevice {
    /// `Tick Device: mode:` 0 = periodic, 1 = oneshot.
    pub tick_mode: u32,
    /// The CPU, or `None` for the broadcast device.
    pub cpu: Option<u32>,
    /// The clock event device (`lapic-deadline`, `arch_sys_timer`, ...); `None` for `<NULL>`.
    pub device: Option<String>,
    /// The remaining `name: value` fields (`mode`, `next_event`, `event_handler`,
    /// `set_next_event`, `retries`, `max_delta_ns`, ...), values trimmed, ` nsecs` removed.
    pub fields: BTreeMap<String, String>,
    /// `Wakeup Device:` (per-CPU devices on newer kernels); `None` for `<NULL>` or absent.
    pub wakeup_device: Option<String>,
    /// Broadcast device only: CPUs in `tick_broadcast_mask`.
    pub broadcast_mask: Option<Vec<u32>>,
    /// Broadcast device only: CPUs in `tick_broadcast_oneshot_mask`.
    pub broadcast_oneshot_mask: Option<Vec<u32>>,
}

/// How the tick is run on a CPU, from `.nohz_mode` (old) or `.nohz`/`.highres` (new).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NohzMode {
    /// The tick is never stopped (`nohz=off`, or no NO_HZ).
    Inactive,
    /// NO_HZ with low-resolution timers.
    LowRes,
    /// NO_HZ with high-resolution timers.
    HighRes,
}

impl CpuTimers {
    /// `.tick_stopped`.
    pub fn tick_stopped(&self) -> Option<bool> {
        self.fields.get("tick_stopped").map(|&v| v != 0)
    }

    /// The nohz mode of this CPU.
    pub fn nohz_mode(&self) -> Option<NohzMode> {
        if let Some(&m) = self.fields.get("nohz_mode") {
            return Some(match m {
                0 => NohzMode::Inactive,
                1 => NohzMode::LowRes,
                _ => NohzMode::HighRes,
            });
        }
        let nohz = *self.fields.get("nohz")?;
        if nohz == 0 {
            return Some(NohzMode::Inactive);
        }
        Some(match self.fields.get("highres") {
            Some(0) => NohzMode::LowRes,
            _ => NohzMode::HighRes,
        })
    }

    /// Active timers per function name.
    pub fn functions(&self) -> BTreeMap<&str, usize> {
        let mut m = BTreeMap::new();
        for t in &self.timers {
            *m.entry(t.function.as_str()).or_default() += 1;
        }
        m
    }
}

impl TickDevice {
    /// The clock event device's state (`mode:` 1 shutdown, 2 periodic, 3 oneshot,
    /// 4 oneshot stopped on kernels >= 4.3).
    pub fn device_mode(&self) -> Option<u32> {
        self.fields.get("mode")?.parse().ok()
    }

    /// The event handler (`hrtimer_interrupt` in high-resolution mode,
    /// `tick_handle_periodic` when periodic, `tick_nohz_handler` in low-res nohz).
    pub fn event_handler(&self) -> Option<&str> {
        self.fields.get("event_handler").map(String::as_str)
    }
}

impl TimerList {
    /// The tick device of a CPU.
    pub fn tick_device(&self, cpu: u32) -> Option<&TickDevice> {
        self.tick_devices.iter().find(|d| d.cpu == Some(cpu))
    }

    /// The section of a CPU.
    pub fn cpu(&self, cpu: u32) -> Option<&CpuTimers> {
        self.cpus.iter().find(|c| c.cpu == cpu)
    }
}

fn parse_num<T: std::str::FromStr>(line: &Line<'_>, what: &str, s: &str) -> Result<T, Error> {
    let s = s.trim();
    let s = s.strip_suffix("nsecs").unwrap_or(s).trim();
    s.parse().map_err(|_| {
        line.error(
            FILE,
            format!("{what}: expected a number, found {}", excerpt(s)),
        )
    })
}

/// Parses a `%*pb` bitmap (`0`, `00000003`, `00000000,00000003`) into CPU numbers.
pub fn parse_hex_mask(s: &str) -> Option<Vec<u32>> {
    let s = s.trim();
    if s.is_empty() {
        return Some(Vec::new());
    }
    let digits: String = s.chars().filter(|&c| c != ',').collect();
    let mut cpus = Vec::new();
    for (i, c) in digits.chars().rev().enumerate() {
        let v = c.to_digit(16)?;
        for bit in 0..4 {
            if v & (1 << bit) != 0 {
                cpus.push(u32::try_from(i * 4 + bit).ok()?);
            }
        }
    }
    Some(cpus)
}

enum Section {
    Start,
    Cpu,
    Tick,
}

/// Parses the text of `/proc/timer_list` (whole or an excerpt: every part is optional).
pub fn parse(text: &str) -> Result<TimerList, Error> {
    let mut out = TimerList::default();
    let mut section = Section::Start;
    let mut clock: u32 = 0;
    let mut in_base_header = false;
    let mut pending: Option<(Line<'_>, ActiveTimer)> = None;

    for line in numbered_lines(text) {
        let t = line.text.trim();
        if t.is_empty() {
            continue;
        }
        if let Some((first, mut timer)) = pending.take() {
            let rest = t.strip_prefix("# expires at").ok_or_else(|| {
                first.error(
                    FILE,
                    format!(
                        "timer line is not followed by \"# expires at ...\" (next line {} is {})",
                        line.number,
                        excerpt(t)
                    ),
                )
            })?;
            let range = rest.split_whitespace().next().unwrap_or("");
            let (soft, hard) = range.split_once('-').ok_or_else(|| {
                line.error(
                    FILE,
                    format!("expected \"SOFT-HARD nsecs\", found {}", excerpt(rest)),
                )
            })?;
            timer.soft_expires_ns = parse_num(&line, "soft expiry", soft)?;
            timer.expires_ns = parse_num(&line, "expiry", hard)?;
            let cpu = out
                .cpus
                .last_mut()
                .ok_or_else(|| line.error(FILE, "timer outside of a \"cpu: N\" section"))?;
            cpu.timers.push(timer);
            continue;
        }
        if let Some(v) = t.strip_prefix("Timer List Version:") {
            out.version = Some(v.trim().to_string());
        } else if t.starts_with("HRTIMER_MAX_CLOCK_BASES:") {
            // The count of clock bases; the bases themselves follow.
        } else if let Some(v) = t.strip_prefix("now at ") {
            out.now_ns = Some(parse_num(&line, "now", v)?);
        } else if let Some(v) = t.strip_prefix("cpu:") {
            section = Section::Cpu;
            in_base_header = false;
            out.cpus.push(CpuTimers {
                cpu: parse_num(&line, "cpu", v)?,
                ..CpuTimers::default()
            });
        } else if let Some(v) = t.strip_prefix("clock ").and_then(|v| v.strip_suffix(':')) {
            clock = parse_num(&line, "clock base", v)?;
            in_base_header = true;
        } else if t == "active timers:" || t == "active jiffie timers:" {
            in_base_header = false;
        } else if let Some(rest) = t.strip_prefix('#') {
            if rest.trim_start().starts_with("expires at") {
                return Err(
                    line.error(FILE, "\"# expires at\" line without a timer line before it")
                );
            }
            let timer = parse_timer_line(&line, rest, clock)?;
            if out.cpus.is_empty() {
                return Err(line.error(FILE, "timer outside of a \"cpu: N\" section"));
            }
            pending = Some((line, timer));
        } else if let Some(field) = t.strip_prefix('.') {
            let (key, value) = field.split_once(':').ok_or_else(|| {
                line.error(
                    FILE,
                    format!("expected \".name: value\", found {}", excerpt(t)),
                )
            })?;
            let key = key.trim();
            if in_base_header
                || matches!(
                    key,
                    "base" | "index" | "resolution" | "get_time" | "offset" | "first"
                )
            {
                continue;
            }
            let cpu = out.cpus.last_mut().ok_or_else(|| {
                line.error(
                    FILE,
                    format!("field .{key} outside of a \"cpu: N\" section"),
                )
            })?;
            let v = value.trim();
            let v = v.strip_suffix("nsecs").unwrap_or(v).trim();
            match v.parse::<u64>() {
                Ok(n) => {
                    cpu.fields.insert(key.to_string(), n);
                }
                Err(_) if is_known_numeric(key) => {
                    return Err(line.error(
                        FILE,
                        format!(".{key}: expected a number, found {}", excerpt(v)),
                    ))
                }
                // An unknown field of a future kernel with a non-numeric value.
                Err(_) => {}
            }
        } else if let Some(v) = t.strip_prefix("jiffies:") {
            let j = parse_num(&line, "jiffies", v)?;
            if let (Section::Cpu, Some(cpu)) = (&section, out.cpus.last_mut()) {
                cpu.jiffies = Some(j);
            }
        } else if let Some(v) = t.strip_prefix("Tick Device: mode:") {
            section = Section::Tick;
            out.tick_devices.push(TickDevice {
                tick_mode: parse_num(&line, "tick device mode", v)?,
                ..TickDevice::default()
            });
        } else if matches!(section, Section::Tick) {
            let dev = out
                .tick_devices
                .last_mut()
                .ok_or_else(|| line.error(FILE, "no tick device"))?;
            parse_tick_line(&line, t, dev)?;
        } else if let Some(v) = t
            .strip_prefix("Per CPU device:")
            .or_else(|| t.strip_prefix("Broadcast device").map(|_| ""))
        {
            // An excerpt that starts inside a tick device.
            let mut dev = TickDevice::default();
            if !v.is_empty() {
                dev.cpu = Some(parse_num(&line, "per-CPU device", v)?);
            }
            out.tick_devices.push(dev);
            section = Section::Tick;
        } else {
            return Err(line.error(FILE, format!("unrecognised line {}", excerpt(t))));
        }
    }
    if let Some((first, _)) = pending {
        return Err(first.error(
            FILE,
            "the file ends after a timer line, before its \"# expires at\" line",
        ));
    }
    Ok(out)
}

fn is_known_numeric(key: &str) -> bool {
    matches!(
        key,
        "expires_next"
            | "hres_active"
            | "nr_events"
            | "nr_retries"
            | "nr_hangs"
            | "nohz_mode"
            | "nohz"
            | "highres"
            | "tick_stopped"
            | "idle_calls"
            | "idle_sleeps"
            | "last_tick"
            | "idle_tick"
    )
}

/// ` #3: <ffff...>, hrtimer_wakeup, S:01[, start_site, comm/pid]`
fn parse_timer_line(line: &Line<'_>, rest: &str, clock: u32) -> Result<ActiveTimer, Error> {
    let (_index, rest) = rest.split_once(':').ok_or_else(|| {
        line.error(
            FILE,
            format!(
                "expected \"#N: <addr>, function, S:xx\", found {}",
                excerpt(line.text.trim())
            ),
        )
    })?;
    let parts: Vec<&str> = rest.split(", ").map(str::trim).collect();
    if parts.len() < 3 {
        return Err(line.error(
            FILE,
            format!(
                "expected \"#N: <addr>, function, S:xx\", found {}",
                excerpt(line.text.trim())
            ),
        ));
    }
    let function = parts[1].to_string();
    let state = parts[2]
        .strip_prefix("S:")
        .and_then(|s| u8::from_str_radix(s.trim(), 16).ok())
        .ok_or_else(|| {
            line.error(
                FILE,
                format!("expected timer state \"S:xx\", found {}", excerpt(parts[2])),
            )
        })?;
    let start_site = parts.get(3).map(|s| s.to_string());
    let (comm, pid) = match parts.get(4) {
        Some(task) => match task.rsplit_once('/') {
            Some((comm, pid)) => (Some(comm.to_string()), pid.parse().ok()),
            None => (Some(task.to_string()), None),
        },
        None => (None, None),
    };
    Ok(ActiveTimer {
        clock,
        function,
        state,
        start_site,
        comm,
        pid,
        soft_expires_ns: 0,
        expires_ns: 0,
    })
}

fn parse_tick_line(line: &Line<'_>, t: &str, dev: &mut TickDevice) -> Result<(), Error> {
    if t == "Broadcast device" {
        dev.cpu = None;
        return Ok(());
    }
    let (key, value) = t.split_once(':').ok_or_else(|| {
        line.error(
            FILE,
            format!(
                "expected \"name: value\" in a tick device, found {}",
                excerpt(t)
            ),
        )
    })?;
    let key = key.trim();
    let value = value.trim();
    let named = |v: &str| (v != "<NULL>").then(|| v.to_string());
    match key {
        "Per CPU device" => dev.cpu = Some(parse_num(line, "per-CPU device", value)?),
        "Clock Event Device" => dev.device = named(value),
        "Wakeup Device" => dev.wakeup_device = named(value),
        "tick_broadcast_mask" => {
            dev.broadcast_mask = Some(parse_hex_mask(value).ok_or_else(|| {
                line.error(
                    FILE,
                    format!("tick_broadcast_mask: bad hex mask {}", excerpt(value)),
                )
            })?)
        }
        "tick_broadcast_oneshot_mask" => {
            dev.broadcast_oneshot_mask = Some(parse_hex_mask(value).ok_or_else(|| {
                line.error(
                    FILE,
                    format!(
                        "tick_broadcast_oneshot_mask: bad hex mask {}",
                        excerpt(value)
                    ),
                )
            })?)
        }
        _ => {
            let v = value.strip_suffix("nsecs").unwrap_or(value).trim();
            if matches!(
                key,
                "mode"
                    | "retries"
                    | "next_event"
                    | "shift"
                    | "mult"
                    | "min_delta_ns"
                    | "max_delta_ns"
            ) {
                parse_num::<i128>(line, key, v)?;
            }
            dev.fields.insert(key.to_string(), v.to_string());
        }
    }
    Ok(())
}

/// One CPU's tick and timers in a line: what a report or a diagnosis rule needs from
/// `/proc/timer_list` (field report 004 read `tick_stopped` and the active timers of the
/// isolated CPUs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuTickSummary {
    /// CPU number.
    pub cpu: u32,
    /// Clock event device of the CPU's tick device (`lapic-deadline`, `arch_sys_timer`).
    pub clock_event_device: Option<String>,
    /// Tick device mode: `periodic` or `oneshot`.
    pub tick_mode: Option<String>,
    /// The device's event handler (`hrtimer_interrupt` in high-resolution mode).
    pub event_handler: Option<String>,
    /// NO_HZ mode of the CPU.
    pub nohz_mode: Option<NohzMode>,
    /// Whether the tick was stopped when the file was read.
    pub tick_stopped: Option<bool>,
    /// Number of active hrtimers.
    pub active_timers: usize,
    /// Active hrtimers per function.
    pub functions: BTreeMap<String, usize>,
}

impl TimerList {
    /// One summary per CPU (CPUs from the hrtimer sections and the tick devices), by CPU.
    pub fn summary(&self) -> Vec<CpuTickSummary> {
        let mut cpus: Vec<u32> = self
            .cpus
            .iter()
            .map(|c| c.cpu)
            .chain(self.tick_devices.iter().filter_map(|d| d.cpu))
            .collect();
        cpus.sort_unstable();
        cpus.dedup();
        cpus.into_iter()
            .map(|cpu| {
                let section = self.cpu(cpu);
                let dev = self.tick_device(cpu);
                CpuTickSummary {
                    cpu,
                    clock_event_device: dev.and_then(|d| d.device.clone()),
                    tick_mode: dev.map(|d| {
                        if d.tick_mode == 0 {
                            "periodic"
                        } else {
                            "oneshot"
                        }
                        .to_string()
                    }),
                    event_handler: dev.and_then(|d| d.event_handler().map(str::to_string)),
                    nohz_mode: section.and_then(CpuTimers::nohz_mode),
                    tick_stopped: section.and_then(CpuTimers::tick_stopped),
                    active_timers: section.map_or(0, |s| s.timers.len()),
                    functions: section
                        .map(|s| {
                            s.functions()
                                .into_iter()
                                .map(|(f, n)| (f.to_string(), n))
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            })
            .collect()
    }
}
