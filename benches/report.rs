//! Decode + report throughput on real captures (tests/fixtures): the nine lab captures from
//! this machine concatenated and repeated to ~16 MB of ftrace text, the public VMX trace
//! repeated likewise, and a trace.dat recording. Bytes/s is what docs/PERFORMANCE.md quotes;
//! `bench/report.sh` compares the whole command with the peers.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kvmscope_analysis::ReportBuilder;

fn fixture_text(names: &[&str], target: usize) -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut one = Vec::new();
    for n in names {
        one.extend(std::fs::read(root.join(n)).unwrap());
    }
    let mut all = Vec::with_capacity(target + one.len());
    while all.len() < target {
        all.extend_from_slice(&one);
    }
    all
}

fn bench(c: &mut Criterion) {
    let host = fixture_text(
        &[
            "host/pvm-pio.txt",
            "host/pvm-mmio.txt",
            "host/pvm-msr-tsc-deadline.txt",
            "host/pvm-cpuid.txt",
            "host/pvm-hlt.txt",
            "host/pvm-timer-storm.txt",
            "host/pvm-ipi.txt",
            "host/pvm-pagefault.txt",
            "host/pvm-cr3-6-roots.txt",
        ],
        16 << 20,
    );
    let vmx = fixture_text(&["public/vmx-new-nested-cr0wp.txt"], 16 << 20);
    let mut g = c.benchmark_group("report");
    g.sample_size(10);
    for (name, input) in [("pvm-lab-ftrace", &host), ("vmx-ftrace", &vmx)] {
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(format!("{name}/parallel"), |b| {
            b.iter(|| {
                let mut r = ReportBuilder::new();
                kvmscope_trace::text::decode(&input[..], |ev| r.observe(ev)).unwrap();
                r.finish(Vec::new())
            })
        });
        g.bench_function(format!("{name}/sequential"), |b| {
            b.iter(|| {
                let mut r = ReportBuilder::new();
                kvmscope_trace::text::decode_sequential(&input[..], |ev| r.observe(ev)).unwrap();
                r.finish(Vec::new())
            })
        });
    }
    let dat = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tracedat/kvmscope-record-lab-v6.dat");
    let mut events = 0;
    kvmscope_tracedat::events::for_each_event(&dat, |_| events += 1).unwrap();
    g.throughput(Throughput::Elements(events));
    g.bench_function("tracedat-v6/events", |b| {
        b.iter(|| {
            let mut r = ReportBuilder::new();
            kvmscope_tracedat::events::for_each_event(&dat, |ev| r.observe(ev)).unwrap();
            r.finish(Vec::new())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
