//! Collapse throughput on a real `perf script` capture from this project's machine.
//!
//! `cargo bench -p kvmscope-stacks --bench collapse`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kvmscope_stacks::{collapse_reader, collapse_reader_blocks, Options};

fn fixture() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/stacks/kvm-lab-perf-script.txt"
    );
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn bench(c: &mut Criterion) {
    let input = fixture();
    let mut g = c.benchmark_group("collapse");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("perf_script_1_thread", |b| {
        b.iter(|| collapse_reader(input.as_slice(), &Options::default(), 1).unwrap())
    });
    // 64 KiB blocks so that the fixture is really split between the two workers.
    g.bench_function("perf_script_2_threads_64k_blocks", |b| {
        b.iter(|| {
            collapse_reader_blocks(input.as_slice(), &Options::default(), 2, 64 << 10).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
