//! `perf script` stacks to folded stacks (`stacks::collapse`), with the options taken from
//! the first byte: the one-thread collapse must not panic, and the two-thread one, with
//! blocks small enough to cut the input in many places, must give the same result.

use kvmscope_stacks::{collapse_reader_blocks, folded, Attribution, Options};

fn outcome(data: &[u8], opts: &Options, threads: usize, block: usize) -> Result<String, String> {
    let c = collapse_reader_blocks(data, opts, threads, block).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    c.write_folded(&mut out).map_err(|e| e.to_string())?;
    Ok(format!(
        "{}\n{:?} {} {:?}",
        String::from_utf8_lossy(&out),
        c.unrecognized,
        c.unrecognized_count,
        c.filtered_for,
    ))
}

/// One input.
pub fn run(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let opts = Options {
        pid: flags & 1 != 0,
        tid: flags & 2 != 0,
        kernel: flags & 4 != 0,
        jit: flags & 8 != 0,
        addrs: flags & 16 != 0,
        event_filter: (flags & 32 != 0).then(|| b"cpu-clock".to_vec()),
    };
    let block = 16 + (flags as usize >> 6) * 40;
    let one = outcome(rest, &opts, 1, block);
    let two = outcome(rest, &opts, 2, block);
    assert_eq!(one, two, "parallel collapse differs (block {block})");
    let _ = folded::detect(rest);
    if let Ok(c) = collapse_reader_blocks(rest, &opts, 1, 1 << 20) {
        let stacks = folded::from_collapsed(&c);
        let _ = Attribution::from_stacks(&stacks).to_text();
    }
}
