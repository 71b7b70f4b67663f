//! Decode + report throughput per input kind, on real captures: bytes/s (`Throughput::Bytes`)
//! and events/s (`Throughput::Elements`, the `.../events` benchmarks) of the same work.
//!
//! Inputs: the corpus of `bench/corpus.sh` (PVM lab, emulated SVM and arm64 hosts: ftrace
//! text with flags, `trace-cmd report` text, `perf script` text, trace.dat v6 and v7 zstd) in
//! `$CORPUS_DIR` (default `~/.cache/kvmscope/corpus`), the first 16 MB of each text file. Without
//! a corpus, the committed fixtures stand in for the kinds they cover (PVM lab ftrace text and
//! perf script, the public VMX excerpt, the trace.dat fixtures), repeated to 16 MB.
//! `bench/report.sh` compares the whole command with awk and trace-cmd.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kvmscope_analysis::ReportBuilder;

const TEXT_BYTES: usize = 16 << 20;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("CORPUS_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/kvmscope/corpus"))
        })?;
    dir.join("pvm-ftrace.txt").exists().then_some(dir)
}

/// The first `TEXT_BYTES` of a file, cut after its last complete line.
fn head(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut v = Vec::with_capacity(TEXT_BYTES);
    std::fs::File::open(path)
        .unwrap()
        .take(TEXT_BYTES as u64)
        .read_to_end(&mut v)
        .unwrap();
    let end = v
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(v.len(), |i| i + 1);
    v.truncate(end);
    v
}

fn repeated(paths: &[PathBuf]) -> Vec<u8> {
    let mut one = Vec::new();
    for p in paths {
        one.extend(std::fs::read(p).unwrap());
    }
    let mut all = Vec::with_capacity(TEXT_BYTES + one.len());
    while all.len() < TEXT_BYTES {
        all.extend_from_slice(&one);
    }
    all
}

/// Text inputs (kind, bytes) and trace.dat files (kind, path).
type Inputs = (Vec<(String, Vec<u8>)>, Vec<(String, PathBuf)>);

fn inputs() -> Inputs {
    if let Some(dir) = corpus() {
        let mut text = Vec::new();
        let mut dat = Vec::new();
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        names.sort();
        for p in names {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            match p.extension().and_then(|e| e.to_str()) {
                Some("txt") => text.push((stem, head(&p))),
                Some("dat") => dat.push((stem, p)),
                _ => {}
            }
        }
        return (text, dat);
    }
    let f = fixtures();
    let host: Vec<PathBuf> = [
        "pio",
        "mmio",
        "msr-tsc-deadline",
        "cpuid",
        "hlt",
        "timer-storm",
        "ipi",
        "pagefault",
        "cr3-6-roots",
    ]
    .iter()
    .map(|n| f.join(format!("host/pvm-{n}.txt")))
    .collect();
    let text = vec![
        ("pvm-ftrace".to_string(), repeated(&host)),
        (
            "pvm-perf-script".to_string(),
            repeated(&[f.join("host/perf-script-pio.perfscript")]),
        ),
        (
            "vmx-ftrace".to_string(),
            repeated(&[f.join("public/vmx-new-nested-cr0wp.txt")]),
        ),
    ];
    let dat = vec![
        (
            "pvm-v6".to_string(),
            f.join("tracedat/kvmscope-record-lab-v6.dat"),
        ),
        (
            "pvm-v7-zstd".to_string(),
            f.join("tracedat/trace-cmd-extract-lab-v7-zstd.dat"),
        ),
        (
            "svm-v6".to_string(),
            f.join("tracedat/svm-emulated-pio.dat"),
        ),
    ];
    (text, dat)
}

fn report_text(input: &[u8], parallel: bool) -> u64 {
    let mut r = ReportBuilder::new();
    let stats = if parallel {
        kvmscope_trace::text::decode(input, |ev| r.observe(ev))
    } else {
        kvmscope_trace::text::decode_sequential(input, |ev| r.observe(ev))
    }
    .unwrap();
    std::hint::black_box(r.finish(Vec::new()));
    stats.events
}

fn report_dat(path: &Path) -> u64 {
    let mut r = ReportBuilder::new();
    let mut events = 0;
    kvmscope_tracedat::events::for_each_event(path, |ev| {
        events += 1;
        r.observe(ev)
    })
    .unwrap();
    std::hint::black_box(r.finish(Vec::new()));
    events
}

fn bench(c: &mut Criterion) {
    let (text, dat) = inputs();
    for (kind, input) in &text {
        let events = report_text(input, false);
        println!(
            "{kind}: {:.1} MB, {events} events ({:.0} bytes/event)",
            input.len() as f64 / 1e6,
            input.len() as f64 / events.max(1) as f64
        );
        let mut g = c.benchmark_group(format!("report/{kind}"));
        g.sample_size(10);
        g.warm_up_time(std::time::Duration::from_secs(1));
        g.measurement_time(std::time::Duration::from_secs(3));
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function("parallel", |b| b.iter(|| report_text(input, true)));
        g.bench_function("sequential", |b| b.iter(|| report_text(input, false)));
        g.throughput(Throughput::Elements(events));
        g.bench_function(BenchmarkId::new("parallel", "events"), |b| {
            b.iter(|| report_text(input, true))
        });
        g.finish();
    }
    for (kind, path) in &dat {
        let events = report_dat(path);
        let bytes = std::fs::metadata(path).unwrap().len();
        println!(
            "{kind}: {:.1} MB trace.dat, {events} events",
            bytes as f64 / 1e6
        );
        let mut g = c.benchmark_group(format!("report/{kind}"));
        g.sample_size(10);
        g.warm_up_time(std::time::Duration::from_secs(1));
        g.measurement_time(std::time::Duration::from_secs(3));
        g.throughput(Throughput::Bytes(bytes));
        g.bench_function("tracedat", |b| b.iter(|| report_dat(path)));
        g.throughput(Throughput::Elements(events));
        g.bench_function(BenchmarkId::new("tracedat", "events"), |b| {
            b.iter(|| report_dat(path))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
