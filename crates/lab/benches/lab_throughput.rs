//! Scenario throughput: guest operations (exits, for the exiting scenarios) per second on this
//! host. The time measured is the guest's run only (vCPUs released to last vCPU done), not VM
//! setup, so the numbers compare host kernels, not the lab.
//!
//! `cargo bench -p kvmscope-lab --bench lab_throughput` (results in docs/PERFORMANCE.md).
//! Also the load for the overhead measurements of `top` and `record`:
//! `KVMSCOPE_LAB_BENCH=pio` limits the scenarios.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kvmscope_lab::{Scenario, ScenarioSpec};

fn scenarios() -> Vec<(Scenario, u64)> {
    let all = [
        (Scenario::Pio, 20_000),
        (Scenario::Mmio, 20_000),
        (Scenario::Cpuid, 20_000),
        (Scenario::Msr, 20_000),
        (Scenario::Pagefault, 8_192),
        (Scenario::Cr3, 10_000),
        (Scenario::TimerStorm, 2_000),
        (Scenario::Ipi, 2_000),
    ];
    let only = std::env::var("KVMSCOPE_LAB_BENCH").ok();
    all.into_iter()
        .filter(|(s, _)| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|x| x == s.name()))
        })
        .collect()
}

fn throughput(c: &mut Criterion) {
    if let Err(e) = kvmscope_lab::check_host() {
        eprintln!("lab_throughput skipped: {e}");
        return;
    }
    let mut g = c.benchmark_group("lab");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_millis(500));
    for (scenario, count) in scenarios() {
        let mut spec = ScenarioSpec::new(scenario).count(count);
        if scenario == Scenario::TimerStorm {
            spec.period = Duration::from_micros(30);
        }
        g.throughput(Throughput::Elements(count));
        g.bench_with_input(
            BenchmarkId::new("ops", scenario.name()),
            &spec,
            |b, spec| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        match kvmscope_lab::run(spec) {
                            Ok(o) => total += o.elapsed,
                            Err(e) => panic!("{} failed: {e}", spec.scenario),
                        }
                    }
                    total
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
