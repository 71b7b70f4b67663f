//! Decodes every record of trace.dat files into `Event`s, as `kvmscope report` reads them, and
//! prints the rate: `cargo run --release -p kvmscope-tracedat --example events_count -- FILE...`
//! (docs/PERFORMANCE.md compares it with the reader before the crate moved out of capture).
fn main() {
    for path in std::env::args_os().skip(1) {
        let start = std::time::Instant::now();
        let mut n = 0u64;
        let mut sum = 0u64;
        let s = kvmscope_tracedat::events::for_each_event(path.as_ref(), |ev| {
            n += 1;
            sum = sum.wrapping_add(ev.ts_ns ^ u64::from(ev.tid) ^ ev.name.len() as u64);
        })
        .unwrap();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{n} events {secs:.3} s {:.0} ev/s ({sum:x}, {})",
            n as f64 / secs,
            s.events
        );
    }
}
