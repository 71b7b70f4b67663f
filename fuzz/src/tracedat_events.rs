//! trace.dat records to `kvmscope_trace::Event` (`capture::events::for_each_event`: the
//! per-format decoding plans, the sidecar's tids, the lost-event summary), and those events
//! through every analysis. The reader takes a path, so each input goes through a file in
//! /dev/shm (or the temporary directory), removed once the input is read.

use std::path::PathBuf;
use std::sync::OnceLock;

use kvmscope_analysis::ReportBuilder;

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = PathBuf::from("/dev/shm");
        let dir = if dir.is_dir() {
            dir
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("kvmscope-fuzz-{}.dat", std::process::id()))
    })
}

/// Removes the scratch file when an input is done, or when it panicked (unwinding), so neither
/// the fuzzer nor the regression tests leave one behind.
struct Remove(&'static PathBuf);

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// One input.
pub fn run(data: &[u8]) {
    let path = scratch();
    let _remove = Remove(path);
    std::fs::write(path, data).expect("cannot write the scratch file");
    let mut builder = ReportBuilder::new();
    let mut n = 0u64;
    let summary = kvmscope_tracedat::events::for_each_event(path, |ev| {
        let _ = ev.field("vcpu");
        n += 1;
        builder.observe(ev);
    });
    if let Ok(s) = summary {
        let _ = (s.lost_total(), s.lost_unknown_pages());
        let _ = kvmscope_diagnose::diagnose(&builder.finish(Vec::new()), None);
    }
}
