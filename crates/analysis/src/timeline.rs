//! What happened when: exits per reason, exits and KVM events per vCPU thread, events per
//! name and halt wake-ups, counted in time buckets; and exit-handling latency per reason in
//! power-of-two buckets (for histograms). For the HTML report's plots.
//!
//! Memory is bounded whatever the trace's length: at most [`MAX_BUCKETS`] buckets per
//! series. Bucket widths are `2^k / 2^20` seconds (k = 0 is about 954 ns, k = 20 is one
//! second) and bucket boundaries are multiples of the width from time zero, so when the
//! trace outgrows the buckets, neighbouring pairs merge exactly into buckets twice as wide,
//! and a renderer can merge further (to one-second buckets) without losing a count.
//!
//! Latency pairing is the one [`crate::exits`] uses (kvm_exit -> next kvm_entry on the same
//! thread; a second exit restarts the interval), so the histograms hold exactly the samples
//! the exit table reports.

use std::collections::HashMap;

use kvmscope_trace::{Event, EventKind};
use serde::Serialize;

use crate::keys::{IdMap, ReasonKey};

/// Most buckets a series holds.
pub const MAX_BUCKETS: usize = 256;
/// Power-of-two latency buckets: bucket `i` holds `[2^i, 2^(i+1))` ns (bucket 0 also 0 ns).
pub const LATENCY_BUCKETS: usize = 48;

const BASE_SHIFT: u32 = 20;

#[derive(Debug, Default)]
pub struct Timeline {
    /// Bucket width is `2^scale` base units (2^-20 s).
    scale: u32,
    /// Absolute index of bucket 0 (in units of the current width), once an event was seen.
    first: Option<u64>,
    len: usize,
    reasons: HashMap<ReasonKey, Vec<u64>>,
    exit_threads: IdMap<u32, Vec<u64>>,
    kvm_threads: IdMap<u32, Vec<u64>>,
    names: HashMap<Box<str>, (Box<str>, Vec<u64>)>,
    polled: Vec<u64>,
    waited: Vec<u64>,
    open: IdMap<u32, (u64, ReasonKey)>,
    latency: HashMap<ReasonKey, [u64; LATENCY_BUCKETS]>,
}

/// One counted series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub name: String,
    pub total: u64,
    /// Per bucket, `buckets` long.
    pub counts: Vec<u64>,
}

/// One vCPU thread's series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadSeries {
    pub tid: u32,
    pub total: u64,
    pub counts: Vec<u64>,
}

/// Exit-handling latency of one reason in power-of-two buckets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyHistogram {
    pub reason: String,
    pub samples: u64,
    /// Bucket `i` holds `[2^i, 2^(i+1))` ns; trailing empty buckets dropped.
    pub buckets: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineReport {
    /// Bucket width: `2^scale / 2^20` s.
    pub scale: u32,
    pub bucket_ns: f64,
    /// Start of bucket 0, ns on the trace clock.
    pub start_ns: f64,
    /// Absolute index of bucket 0 (`start_ns / bucket_ns`).
    pub first_index: u64,
    pub buckets: usize,
    /// By count, then name.
    pub exits_by_reason: Vec<Series>,
    /// By tid.
    pub exits_by_thread: Vec<ThreadSeries>,
    /// KVM events (any `kvm`/`kvmmmu` event) per thread, by tid: the activity map for hosts
    /// whose KVM prints no kvm_exit (PVM).
    pub kvm_events_by_thread: Vec<ThreadSeries>,
    /// Every event by `system:name`, by count, then name.
    pub events_by_name: Vec<Series>,
    /// Halt wake-ups that polling caught (`polled`) and that slept (`waited`).
    pub halt_wakeups: Vec<Series>,
    /// By samples, then name.
    pub latency: Vec<LatencyHistogram>,
}

fn bump(v: &mut Vec<u64>, i: usize) {
    if v.len() <= i {
        v.resize(i + 1, 0);
    }
    v[i] += 1;
}

impl Timeline {
    pub fn new() -> Self {
        Self::default()
    }

    fn all_series(&mut self) -> impl Iterator<Item = &mut Vec<u64>> {
        self.reasons
            .values_mut()
            .chain(self.exit_threads.values_mut())
            .chain(self.kvm_threads.values_mut())
            .chain(self.names.values_mut().map(|(_, v)| v))
            .chain([&mut self.polled, &mut self.waited])
    }

    /// Doubles the bucket width, merging neighbours.
    fn coarsen(&mut self) {
        let Some(first) = self.first else { return };
        let new_first = first >> 1;
        let odd = (first & 1) as usize;
        for v in self.all_series() {
            *v = merge_pairs(v, odd);
        }
        let last = first + self.len as u64 - 1;
        self.len = ((last >> 1) - new_first + 1) as usize;
        self.first = Some(new_first);
        self.scale += 1;
    }

    /// The bucket of `ts`, making room for it.
    fn slot(&mut self, ts: u64) -> usize {
        let units = ((u128::from(ts)) << BASE_SHIFT) / 1_000_000_000;
        loop {
            let idx = (units >> self.scale) as u64;
            let Some(first) = self.first else {
                self.first = Some(idx);
                self.len = 1;
                return 0;
            };
            let last = first + self.len as u64 - 1;
            let lo = first.min(idx);
            let hi = last.max(idx);
            if hi - lo < MAX_BUCKETS as u64 {
                if idx < first {
                    let shift = (first - idx) as usize;
                    for v in self.all_series() {
                        if !v.is_empty() {
                            v.splice(0..0, std::iter::repeat_n(0, shift));
                        }
                    }
                    self.first = Some(idx);
                    self.len += shift;
                    return 0;
                }
                let i = (idx - first) as usize;
                self.len = self.len.max(i + 1);
                return i;
            }
            self.coarsen();
        }
    }

    pub fn observe(&mut self, ev: &Event<'_>) {
        let i = self.slot(ev.ts_ns);
        match self.names.get_mut(ev.name) {
            Some((_, v)) => bump(v, i),
            None => {
                let mut v = Vec::new();
                bump(&mut v, i);
                let full = if ev.system.is_empty() {
                    ev.name.to_string()
                } else {
                    format!("{}:{}", ev.system, ev.name)
                };
                self.names.insert(ev.name.into(), (full.into(), v));
            }
        }
        if ev.system != "kvm" && ev.system != "kvmmmu" {
            return;
        }
        bump(self.kvm_threads.entry(ev.tid).or_default(), i);
        match &ev.kind {
            EventKind::KvmExit(e) => {
                let key = ReasonKey::from_reason(&e.reason);
                match self.reasons.get_mut(&key) {
                    Some(v) => bump(v, i),
                    None => {
                        let mut v = Vec::new();
                        bump(&mut v, i);
                        self.reasons.insert(key.clone(), v);
                    }
                }
                bump(self.exit_threads.entry(ev.tid).or_default(), i);
                self.open.insert(ev.tid, (ev.ts_ns, key));
            }
            EventKind::KvmEntry { .. } => {
                if let Some((start, key)) = self.open.remove(&ev.tid) {
                    if ev.ts_ns >= start {
                        let d = ev.ts_ns - start;
                        let b = if d == 0 {
                            0
                        } else {
                            (63 - d.leading_zeros() as usize).min(LATENCY_BUCKETS - 1)
                        };
                        self.latency.entry(key).or_insert([0; LATENCY_BUCKETS])[b] += 1;
                    }
                }
            }
            EventKind::VcpuWakeup { waited, .. } => {
                if *waited {
                    bump(&mut self.waited, i);
                } else {
                    bump(&mut self.polled, i);
                }
            }
            _ => {}
        }
    }

    pub fn finish(&self) -> TimelineReport {
        let n = self.len;
        let full = |v: &Vec<u64>| {
            let mut c = v.clone();
            c.resize(n, 0);
            c
        };
        let mut exits_by_reason: Vec<Series> = self
            .reasons
            .iter()
            .map(|(k, v)| Series {
                name: k.name(),
                total: v.iter().sum(),
                counts: full(v),
            })
            .collect();
        sort_series(&mut exits_by_reason);
        let threads = |m: &IdMap<u32, Vec<u64>>| {
            let mut t: Vec<ThreadSeries> = m
                .iter()
                .map(|(&tid, v)| ThreadSeries {
                    tid,
                    total: v.iter().sum(),
                    counts: full(v),
                })
                .collect();
            t.sort_by_key(|t| t.tid);
            t
        };
        let mut events_by_name: Vec<Series> = self
            .names
            .values()
            .map(|(name, v)| Series {
                name: name.to_string(),
                total: v.iter().sum(),
                counts: full(v),
            })
            .collect();
        sort_series(&mut events_by_name);
        let mut halt_wakeups = Vec::new();
        for (name, v) in [("polled", &self.polled), ("waited", &self.waited)] {
            if !v.is_empty() {
                halt_wakeups.push(Series {
                    name: name.into(),
                    total: v.iter().sum(),
                    counts: full(v),
                });
            }
        }
        let mut latency: Vec<LatencyHistogram> = self
            .latency
            .iter()
            .map(|(k, b)| {
                let used = b.iter().rposition(|&c| c > 0).map_or(0, |p| p + 1);
                LatencyHistogram {
                    reason: k.name(),
                    samples: b.iter().sum(),
                    buckets: b[..used].to_vec(),
                }
            })
            .collect();
        latency.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.reason.cmp(&b.reason)));
        let first = self.first.unwrap_or(0);
        let bucket_ns = width_ns(self.scale);
        TimelineReport {
            scale: self.scale,
            bucket_ns,
            start_ns: first as f64 * bucket_ns,
            first_index: first,
            buckets: n,
            exits_by_reason,
            exits_by_thread: threads(&self.exit_threads),
            kvm_events_by_thread: threads(&self.kvm_threads),
            events_by_name,
            halt_wakeups,
            latency,
        }
    }
}

fn width_ns(scale: u32) -> f64 {
    1e9 * (2f64).powi(scale as i32) / f64::from(1u32 << BASE_SHIFT)
}

fn sort_series(v: &mut [Series]) {
    v.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.name.cmp(&b.name)));
}

/// Sums neighbouring pairs; `odd` says bucket 0 is the second of its pair.
fn merge_pairs(v: &[u64], odd: usize) -> Vec<u64> {
    if v.is_empty() {
        return Vec::new();
    }
    let mut out = vec![0; (v.len() + odd).div_ceil(2)];
    for (i, &c) in v.iter().enumerate() {
        out[(i + odd) / 2] += c;
    }
    out
}

impl TimelineReport {
    /// The same counts in buckets at least `min_ns` wide (merged pairwise, exactly).
    pub fn coarsened_to(&self, min_ns: f64) -> TimelineReport {
        let mut r = self.clone();
        while r.bucket_ns < min_ns && r.buckets > 1 {
            let odd = (r.first_index & 1) as usize;
            let m = |s: &mut Vec<u64>| *s = merge_pairs(s, odd);
            r.exits_by_reason.iter_mut().for_each(|s| m(&mut s.counts));
            r.exits_by_thread.iter_mut().for_each(|s| m(&mut s.counts));
            r.kvm_events_by_thread
                .iter_mut()
                .for_each(|s| m(&mut s.counts));
            r.events_by_name.iter_mut().for_each(|s| m(&mut s.counts));
            r.halt_wakeups.iter_mut().for_each(|s| m(&mut s.counts));
            let last = r.first_index + r.buckets as u64 - 1;
            r.first_index >>= 1;
            r.buckets = ((last >> 1) - r.first_index + 1) as usize;
            r.scale += 1;
            r.bucket_ns = width_ns(r.scale);
            r.start_ns = r.first_index as f64 * r.bucket_ns;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvmscope_trace::text::decode_sequential;
    use proptest::prelude::*;

    fn timeline(text: &str) -> TimelineReport {
        let mut t = Timeline::new();
        decode_sequential(text.as_bytes(), |ev| t.observe(ev)).unwrap();
        t.finish()
    }

    const EXIT: &str =
        "kvm_exit: vcpu 0 reason HLT rip 0x1 info1 0x0 info2 0x0 intr_info 0x0 error_code 0x0";
    const ENTRY: &str = "kvm_entry: vcpu 0, rip 0x1";

    #[test]
    fn counts_and_latency_buckets() {
        let r = timeline(&format!(
            "a-1 [000] .... 1.000000: {EXIT}\na-1 [000] .... 1.000010: {ENTRY}\n\
             b-2 [001] .... 1.500000: {EXIT}\nb-2 [001] .... 1.500001: {ENTRY}\n"
        ));
        assert_eq!(r.exits_by_reason.len(), 1);
        assert_eq!(r.exits_by_reason[0].total, 2);
        assert_eq!(r.exits_by_reason[0].counts.len(), r.buckets);
        assert!(r.buckets <= MAX_BUCKETS);
        assert_eq!(
            r.exits_by_thread.iter().map(|t| t.tid).collect::<Vec<_>>(),
            [1, 2]
        );
        let h = &r.latency[0];
        assert_eq!(h.samples, 2);
        // 10 us -> bucket 13 (8192..16384 ns), 1 us -> bucket 9 (512..1024).
        assert_eq!((h.buckets[13], h.buckets[9]), (1, 1));
        assert!(r.start_ns <= 1e9 && r.start_ns + r.bucket_ns * r.buckets as f64 > 1.5e9);
    }

    proptest! {
        #[test]
        fn totals_survive_merging(ts in proptest::collection::vec(0u64..50_000_000_000, 1..300)) {
            let mut t = Timeline::new();
            for &x in &ts {
                let line = format!("a-1 [000] .... {}.{:09}: {EXIT}\n", x / 1_000_000_000, x % 1_000_000_000);
                decode_sequential(line.as_bytes(), |ev| t.observe(ev)).unwrap();
            }
            let r = t.finish();
            prop_assert!(r.buckets <= MAX_BUCKETS);
            prop_assert_eq!(r.exits_by_reason[0].total, ts.len() as u64);
            // Every event lies in its bucket.
            let lo = ts.iter().min().copied().unwrap_or(0) as f64;
            let hi = ts.iter().max().copied().unwrap_or(0) as f64;
            prop_assert!(r.start_ns <= lo + 1.0);
            prop_assert!(r.start_ns + r.bucket_ns * r.buckets as f64 >= hi - 1.0);
            let c = r.coarsened_to(1e9);
            prop_assert!(c.bucket_ns >= 1e9 || c.buckets == 1);
            prop_assert_eq!(c.exits_by_reason[0].counts.iter().sum::<u64>(), ts.len() as u64);
            prop_assert_eq!(c.exits_by_reason[0].counts.len(), c.buckets);
        }
    }
}
