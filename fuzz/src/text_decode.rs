//! Text traces (ftrace, trace-cmd report, perf script) through `kvmscope_trace::text`: the
//! sequential decoder must not panic, and the two-thread decoder (with a batch size taken
//! from the input, so small inputs cross many batch boundaries) must give the same events,
//! in the same order, and the same statistics or the same error (the events a refused input
//! gave before its error may differ).

fn snapshot(bytes: &[u8], batch: Option<usize>) -> Result<(Vec<String>, String), String> {
    let mut seen = Vec::new();
    let mut push = |ev: &kvmscope_trace::Event<'_>| {
        let _ = ev.field("vcpu");
        seen.push(format!("{ev:?}"));
    };
    let stats = match batch {
        Some(b) => kvmscope_trace::text::decode_parallel_with_batch(bytes, &mut push, b),
        None => kvmscope_trace::text::decode_sequential(bytes, &mut push),
    };
    match stats {
        Ok(s) => {
            let _ = s.lost_total();
            Ok((seen, format!("{s:?}")))
        }
        // Binary input is refused as each read finds it, so how many events came out before
        // the error depends on the read size (the campaign's text_decode crash: 2 events in
        // 257-byte reads, none in one read): the error must agree, the events before it need
        // not (every caller discards them on the error).
        Err(e) => Err(e.to_string()),
    }
}

/// One input.
pub fn run(data: &[u8]) {
    let batch = 1 + data.first().copied().unwrap_or(0) as usize * 8;
    let seq = snapshot(data, None);
    let par = snapshot(data, Some(batch));
    assert_eq!(seq, par, "two-thread decoder differs (batch {batch})");
}
