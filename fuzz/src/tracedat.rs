//! trace.dat (ours v6; trace-cmd v6 and v7 with zstd): the metadata reader, then every record
//! of every buffer merged across CPUs, with each record's fields read through its format.
//! Memory must stay bounded whatever sizes the header claims.

use std::ops::ControlFlow;

use kvmscope_tracedat::file::{count_events, for_each_record, TraceDat};

/// One input.
pub fn run(data: &[u8]) {
    let Ok(td) = TraceDat::parse(data) else {
        return;
    };
    let _ = (td.kvmscope_json(), td.cpu_stats(), td.kernel_lost_events());
    let _ = count_events(&td, data);
    let mut n = 0u64;
    let _ = for_each_record(&td, data, |rec, fmt| {
        let _ = (rec.common_flags(), rec.common_preempt_count());
        if let Some(fmt) = fmt {
            for f in &fmt.fields {
                let _ = (f.u64(rec.data), f.i64(rec.data), f.str(rec.data));
                let _ = fmt.symbol(rec.data, &f.name);
            }
        }
        n += 1;
        if n > 100_000 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
}
