//! Parallel collapsing: the calling thread reads blocks and cuts them after blank lines; each
//! worker runs its own [`Collapser`] over the blocks it gets; the maps are summed at the end.
//!
//! Why this gives the sequential result: after a blank line the reference script holds no
//! sample state (no process name, empty stack); the only state that crosses it is the event
//! filter, which the reader finds (the first header naming an event) and hands to every
//! worker. A block that could not be cut after a blank line goes to the same worker as the
//! block before it, which continues its state.

use std::io::Read;
use std::sync::mpsc;

use crate::collapse::{fill, first_event, Collapsed, Collapser, Options};
use crate::Error;

struct Job {
    buf: Vec<u8>,
    len: usize,
    seq: u64,
    event: Option<Vec<u8>>,
}

struct WorkerOut {
    collapser: Collapser,
    /// (block seq, lines before it in this worker, lines in it)
    blocks: Vec<(u64, u64, u64)>,
}

pub(crate) fn collapse_parallel<R: Read>(
    mut reader: R,
    opts: &Options,
    threads: usize,
    block: usize,
) -> Result<Collapsed, Error> {
    let (ret_tx, ret_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..threads {
            let (tx, rx) = mpsc::sync_channel::<Job>(1);
            let ret_tx = ret_tx.clone();
            let opts = opts.clone();
            senders.push(tx);
            handles.push(scope.spawn(move || {
                let mut c = Collapser::new(opts);
                let mut blocks = Vec::new();
                for job in rx {
                    if let Some(ev) = &job.event {
                        c.default_filter(ev);
                    }
                    let base = c.lines();
                    c.feed(&job.buf[..job.len]);
                    blocks.push((job.seq, base, c.lines() - base));
                    let _ = ret_tx.send(job.buf);
                }
                WorkerOut {
                    collapser: c,
                    blocks,
                }
            }));
        }
        drop(ret_tx);

        let read_result = read_and_dispatch(&mut reader, &senders, &ret_rx, block);
        drop(senders);
        let outs: Vec<WorkerOut> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect();
        read_result?;

        // Global line numbers: blocks in input order.
        let mut all: Vec<(u64, u64)> = outs
            .iter()
            .flat_map(|o| o.blocks.iter().map(|&(seq, _, n)| (seq, n)))
            .collect();
        all.sort_unstable();
        let mut global_base = vec![0u64; all.len()];
        let mut acc = 0;
        for &(seq, n) in &all {
            if let Some(slot) = global_base.get_mut(seq as usize) {
                *slot = acc;
            }
            acc += n;
        }
        let mut merged: Option<Collapser> = None;
        for mut out in outs {
            let blocks = std::mem::take(&mut out.blocks);
            out.collapser.renumber(|local| {
                let i = blocks.partition_point(|&(_, base, _)| base < local);
                let (seq, base, _) = blocks[i.saturating_sub(1)];
                global_base.get(seq as usize).copied().unwrap_or(0) + (local - base)
            });
            match &mut merged {
                None => merged = Some(out.collapser),
                Some(m) => m.absorb(out.collapser),
            }
        }
        Ok(merged
            .unwrap_or_else(|| Collapser::new(opts.clone()))
            .finish())
    })
}

fn read_and_dispatch<R: Read>(
    reader: &mut R,
    senders: &[mpsc::SyncSender<Job>],
    pool: &mpsc::Receiver<Vec<u8>>,
    block: usize,
) -> Result<(), Error> {
    let get_buf = || -> Vec<u8> {
        let mut b = pool.try_recv().unwrap_or_default();
        b.clear();
        b.reserve(block);
        b
    };
    let mut event: Option<Vec<u8>> = None;
    let mut seq = 0u64;
    let mut worker = 0usize;
    let mut next_fresh = true;
    let mut offset = 0u64;
    let mut buf = get_buf();
    let mut send = |buf: Vec<u8>, fresh: bool, event: &Option<Vec<u8>>| {
        if fresh {
            worker = (worker + 1) % senders.len();
        }
        let len = buf.len();
        let job = Job {
            buf,
            len,
            seq,
            event: event.clone(),
        };
        seq += 1;
        // A worker only stops early by panicking; the join reports that.
        let _ = senders[worker].send(job);
    };
    loop {
        let want = if buf.len() < block {
            block - buf.len()
        } else {
            buf.len()
        };
        let n = fill(reader, &mut buf, want, offset)?;
        if n == 0 {
            if !buf.is_empty() {
                if event.is_none() {
                    event = first_event(&buf).map(<[u8]>::to_vec);
                }
                send(buf, next_fresh, &event);
            }
            return Ok(());
        }
        // Cut after the last blank line, else after the last line.
        let (cut, fresh_after) = match memchr::memmem::rfind(&buf, b"\n\n") {
            Some(i) => (i + 2, true),
            None => match memchr::memrchr(b'\n', &buf) {
                Some(i) => (i + 1, false),
                None => continue, // one line longer than the buffer: grow it
            },
        };
        if event.is_none() {
            event = first_event(&buf[..cut]).map(<[u8]>::to_vec);
        }
        let mut next = get_buf();
        next.extend_from_slice(&buf[cut..]);
        buf.truncate(cut);
        send(buf, next_fresh, &event);
        next_fresh = fresh_after;
        offset += cut as u64;
        buf = next;
    }
}
