//! Latency statistics: exact count/min/max/mean/standard error (from exact integer sums, so
//! adding a sample is additions only, no division), and a log-linear histogram for
//! percentiles (relative error below 1.6%), in constant memory per key.

use serde::Serialize;

/// Sub-buckets per power of two: 64 gives a worst-case relative error of 1/64.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;

#[derive(Debug, Clone, Default)]
pub struct Latency {
    n: u64,
    min: u64,
    max: u64,
    sum: u128,
    /// Sum of squares (saturates only past 2^128: gaps of days over billions of samples).
    sum_sq: u128,
    buckets: Vec<u64>,
}

#[inline]
fn bucket_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros() - SUB_BITS; // >= 0
    let sub = (v >> exp) - SUB; // 0..SUB
    ((u64::from(exp) + 1) * SUB + sub) as usize
}

/// The lowest value that falls in bucket `b`.
fn bucket_low(b: usize) -> u64 {
    let b = b as u64;
    if b < SUB {
        return b;
    }
    let exp = b / SUB - 1;
    (SUB + b % SUB) << exp
}

impl Latency {
    /// Inlined: it runs per event (pacing takes a gap from nearly every KVM event), and a
    /// call cost as much as the additions.
    #[inline(always)]
    pub fn add(&mut self, v: u64) {
        if self.n == 0 || v < self.min {
            self.min = v;
        }
        self.max = self.max.max(v);
        self.n += 1;
        self.sum += u128::from(v);
        self.sum_sq = self.sum_sq.saturating_add(u128::from(v) * u128::from(v));
        let b = bucket_of(v);
        match self.buckets.get_mut(b) {
            Some(n) => *n += 1,
            None => self.grow(b),
        }
    }

    /// Counts a value in bucket `b`, past the ones allocated so far.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, b: usize) {
        self.buckets.resize(b + 1, 0);
        self.buckets[b] += 1;
    }

    pub fn merge(&mut self, other: &Latency) {
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = other.clone();
            return;
        }
        self.n += other.n;
        self.sum_sq = self.sum_sq.saturating_add(other.sum_sq);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        if other.buckets.len() > self.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    pub fn total(&self) -> u128 {
        self.sum
    }

    /// The value at quantile `q` (0..=1), accurate to the bucket width (< 1.6%); exact at the
    /// extremes.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (b, &c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_low(b).clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// perf's `+- x%`: the standard error of the mean relative to the mean, in percent.
    pub fn rel_stderr_pct(&self) -> f64 {
        if self.n < 2 || self.sum == 0 {
            return 0.0;
        }
        let n = u128::from(self.n);
        // n * sum(x^2) - sum(x)^2 = n (n - 1) variance, exact in integers when it fits.
        let variance = match n
            .checked_mul(self.sum_sq)
            .and_then(|a| self.sum.checked_mul(self.sum).map(|b| a.saturating_sub(b)))
        {
            Some(d) => d as f64 / (n * (n - 1)) as f64,
            None => {
                let (sum, n) = (self.sum as f64, self.n as f64);
                ((self.sum_sq as f64 - sum * sum / n) / (n - 1.0)).max(0.0)
            }
        };
        let mean = self.sum as f64 / self.n as f64;
        100.0 * (variance / self.n as f64).sqrt() / mean
    }

    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            samples: self.n,
            total_ns: self.sum.min(u128::from(u64::MAX)) as u64,
            min_ns: if self.n == 0 { 0 } else { self.min },
            max_ns: self.max,
            mean_ns: if self.n == 0 {
                0.0
            } else {
                self.sum as f64 / self.n as f64
            },
            rel_stderr_pct: self.rel_stderr_pct(),
            p50_ns: self.quantile(0.50),
            p99_ns: self.quantile(0.99),
        }
    }
}

/// Latency figures as reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub total_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    pub mean_ns: f64,
    /// Standard error of the mean relative to the mean (perf kvm stat's `+-`), percent.
    pub rel_stderr_pct: f64,
    pub p50_ns: u64,
    pub p99_ns: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exact_small_values_and_summary() {
        let mut l = Latency::default();
        for v in [1, 2, 3, 4, 100] {
            l.add(v);
        }
        let s = l.summary();
        assert_eq!(
            (s.samples, s.min_ns, s.max_ns, s.total_ns),
            (5, 1, 100, 110)
        );
        assert_eq!(l.quantile(0.5), 3);
        assert_eq!(l.quantile(1.0), 100);
    }

    proptest! {
        #[test]
        fn quantiles_within_bucket_error(mut values in proptest::collection::vec(1u64..10_000_000_000, 1..300), q in 0.0f64..=1.0) {
            let mut l = Latency::default();
            for &v in &values { l.add(v); }
            values.sort_unstable();
            let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
            let exact = values[rank - 1] as f64;
            let got = l.quantile(q) as f64;
            prop_assert!((got - exact).abs() <= exact / 64.0 + 1.0, "q={q} exact={exact} got={got}");
        }

        #[test]
        fn merge_equals_sequential(a in proptest::collection::vec(0u64..1_000_000, 0..50), b in proptest::collection::vec(0u64..1_000_000, 0..50)) {
            let (mut x, mut y, mut all) = (Latency::default(), Latency::default(), Latency::default());
            for &v in &a { x.add(v); all.add(v); }
            for &v in &b { y.add(v); all.add(v); }
            x.merge(&y);
            prop_assert_eq!(x.count(), all.count());
            prop_assert_eq!(x.quantile(0.5), all.quantile(0.5));
            prop_assert!((x.rel_stderr_pct() - all.rel_stderr_pct()).abs() < 1e-6);
        }
    }
}
