//! Counts the events of trace.dat files (all buffers, CPUs merged by time) and prints the
//! rate: `cargo run --release -p kvmscope-tracedat --example tracedat_count -- [--tids 1,2] FILE...`.
//! With `--tids`, also counts the events of those threads. With `--events`, decodes every
//! record into a `kvmscope_trace::Event` (what `kvmscope report` reads) instead. bench/record.sh uses it to
//! compare reading speed with `trace-cmd report`.

use std::time::Instant;

use kvmscope_tracedat::file::{FileAt, Merger, TraceDat};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let mut tids: Vec<i32> = Vec::new();
    if args.first().is_some_and(|a| a == "--tids") && args.len() > 1 {
        tids = args[1]
            .to_string_lossy()
            .split(',')
            .filter_map(|t| t.trim().parse().ok())
            .collect();
        args.drain(..2);
    }
    let decode = args.first().is_some_and(|a| a == "--events");
    if decode {
        args.remove(0);
    }
    for path in args {
        if decode {
            let start = Instant::now();
            let mut checksum = 0u64;
            let s = kvmscope_tracedat::events::for_each_event(path.as_ref(), |ev| {
                checksum = checksum.wrapping_add(ev.ts_ns ^ ev.tid as u64);
            })?;
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{}	{} events decoded	{secs:.3} s	{:.0} events/s	(checksum {checksum:x})",
                std::path::Path::new(&path).display(),
                s.events,
                s.events as f64 / secs
            );
            continue;
        }
        let mut of_tids = 0u64;
        let start = Instant::now();
        let f = FileAt::open(path.as_ref())?;
        let td = TraceDat::parse(&f)?;
        let mut events = 0u64;
        let mut checksum = 0u64;
        for b in td.data_buffers() {
            let mut m = Merger::new(&td, b, &f)?;
            while let Some(r) = m.next_record()? {
                events += 1;
                if tids.contains(&r.common_pid) {
                    of_tids += 1;
                }
                checksum = checksum.wrapping_add(r.ts_ns ^ r.id as u64);
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{}\t{events} events\t{secs:.3} s\t{:.0} events/s\t(checksum {checksum:x})",
            std::path::Path::new(&path).display(),
            events as f64 / secs
        );
        if !tids.is_empty() {
            println!("events of tids {tids:?}: {of_tids}");
        }
    }
    Ok(())
}
