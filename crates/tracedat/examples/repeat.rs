//! Repeats the recorded pages of a trace.dat to about SIZE_MB MB, for benchmarks:
//! `cargo run --release -q -p kvmscope-tracedat --example repeat -- IN OUT SIZE_MB`.
//!
//! IN is a version 6 trace.dat with one buffer (what `kvmscope record` and `trace-cmd record`
//! write). OUT is a version 6 trace.dat with the same headers, formats, kallsyms, printk
//! formats, cmdlines and options, and each CPU's ring-buffer pages repeated: copy k has every
//! page time stamp (and every absolute TIME_STAMP record) moved by k times (the trace's time
//! span + 1 s), so time keeps increasing on every CPU and across CPUs. The options (CPU
//! stats, kvmscope's sidecar) still describe one copy. Prints a summary on stderr.

use std::error::Error;
use std::io::{Read, Write};

use kvmscope_tracedat::file::{write_v6, CpuPages, Metadata, TraceDat};
use kvmscope_tracedat::format::PageLayout;
use kvmscope_tracedat::ringbuf::{shift_page, Page};

/// The pause between two copies, in ns.
const GAP_NS: u64 = 1_000_000_000;

/// What is repeated: the metadata and each CPU's pages, and the times of their records.
struct Unit {
    meta: Metadata,
    layout: PageLayout,
    /// Each CPU's pages, in CPU order, as stored in the file.
    cpus: Vec<Vec<u8>>,
    events: u64,
    first_ns: u64,
    last_ns: u64,
    /// TIME_STAMP records in the pages (shifted with them).
    abs_stamps: usize,
}

impl Unit {
    /// Reads a v6 trace.dat held in memory; every page is decoded (an error names its offset).
    fn read(bytes: &[u8]) -> Result<Unit, Box<dyn Error>> {
        let td = TraceDat::parse(bytes)?;
        if td.version != 6 {
            return Err(format!(
                "trace.dat version {} given: repeat reads version 6 (trace-cmd convert --file-version 6)",
                td.version
            )
            .into());
        }
        if td.buffers.iter().any(|b| b.compressed) {
            return Err("the CPU data is compressed: give an uncompressed version 6 file".into());
        }
        let mut data = td.data_buffers();
        let buffer = data
            .next()
            .ok_or("the file holds no CPU data: nothing to repeat")?;
        if data.next().is_some() {
            return Err("the file holds several buffers: repeat writes version 6 (one)".into());
        }
        let layout = td.layout;
        let ps = layout.page_size();
        let mut unit = Unit {
            meta: Metadata::of(&td),
            layout,
            cpus: Vec::new(),
            events: 0,
            first_ns: u64::MAX,
            last_ns: 0,
            abs_stamps: 0,
        };
        for c in &buffer.cpus {
            let pages = usize::try_from(c.offset)
                .ok()
                .and_then(|o| bytes.get(o..o.checked_add(usize::try_from(c.size).ok()?)?))
                .ok_or_else(|| {
                    format!(
                        "CPU {} data at {}+{} runs past the file's end",
                        c.cpu, c.offset, c.size
                    )
                })?;
            if pages.len() % ps != 0 {
                return Err(format!(
                    "CPU {} data ({} bytes at offset {}) is not whole pages of {ps} bytes",
                    c.cpu, c.size, c.offset
                )
                .into());
            }
            for (i, page) in pages.chunks(ps).enumerate() {
                let at = c.offset + (i * ps) as u64;
                let p = Page::parse(&layout, page, c.cpu, at)?;
                for r in p.records() {
                    let ts = r?.ts_ns;
                    unit.events += 1;
                    unit.first_ns = unit.first_ns.min(ts);
                    unit.last_ns = unit.last_ns.max(ts);
                }
                // Count the absolute stamps the way the copies will shift them.
                unit.abs_stamps += shift_page(&layout, &mut page.to_vec(), c.cpu, at, 0)?;
            }
            unit.cpus.push(pages.to_vec());
        }
        if unit.events == 0 {
            return Err("the file's pages hold no events: nothing to repeat".into());
        }
        Ok(unit)
    }

    /// How far each copy is moved from the one before: the time span + 1 s.
    fn shift_ns(&self) -> u64 {
        (self.last_ns - self.first_ns).saturating_add(GAP_NS)
    }

    /// Bytes of CPU data of one copy.
    fn data_bytes(&self) -> u64 {
        self.cpus.iter().map(|c| c.len() as u64).sum()
    }

    /// Writes `copies` copies as a v6 trace.dat. Returns the size written.
    fn write<W: Write>(&self, copies: u64, w: &mut W) -> Result<u64, Box<dyn Error>> {
        let shift = self.shift_ns();
        // The last copy's shift must fit; each page is checked as it is written.
        shift
            .checked_mul(copies.saturating_sub(1))
            .ok_or("the copies' times do not fit in 64 bits: ask for fewer")?;
        let mut cpus: Vec<CpuPages<Copies<'_>>> = self
            .cpus
            .iter()
            .enumerate()
            .map(|(i, pages)| CpuPages {
                size: pages.len() as u64 * copies,
                reader: Copies {
                    unit: pages,
                    layout: self.layout,
                    cpu: i as u32,
                    shift,
                    copies,
                    next: 0,
                    buf: Vec::new(),
                    pos: 0,
                },
            })
            .collect();
        Ok(write_v6(w, &self.meta, &mut cpus)?)
    }
}

/// One CPU's pages, `copies` times, copy k shifted by k * `shift`.
struct Copies<'a> {
    unit: &'a [u8],
    layout: PageLayout,
    cpu: u32,
    shift: u64,
    copies: u64,
    /// The copy to make when `buf` is used up.
    next: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for Copies<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.buf.len() {
            if self.next == self.copies || self.unit.is_empty() {
                return Ok(0);
            }
            let by = self.shift.saturating_mul(self.next);
            self.buf.clear();
            self.buf.extend_from_slice(self.unit);
            let ps = self.layout.page_size();
            for (i, page) in self.buf.chunks_mut(ps).enumerate() {
                shift_page(&self.layout, page, self.cpu, (i * ps) as u64, by)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            }
            self.next += 1;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Copies to reach about `size_mb` MB of CPU data (at least one).
fn copies_for(data_bytes: u64, size_mb: u64) -> u64 {
    size_mb
        .saturating_mul(1_000_000)
        .div_ceil(data_bytes.max(1))
        .max(1)
}

fn run(input: &str, output: &str, size_mb: u64) -> Result<(), Box<dyn Error>> {
    let bytes = std::fs::read(input).map_err(|e| format!("cannot read {input}: {e}"))?;
    let unit = Unit::read(&bytes).map_err(|e| format!("{input}: {e}"))?;
    let copies = copies_for(unit.data_bytes(), size_mb);
    let file = std::fs::File::create(output).map_err(|e| format!("cannot create {output}: {e}"))?;
    let mut w = std::io::BufWriter::new(file);
    let written = unit
        .write(copies, &mut w)
        .and_then(|n| w.flush().map(|()| n).map_err(Into::into));
    let size = match written {
        Ok(n) => n,
        Err(e) => {
            drop(w);
            let _ = std::fs::remove_file(output);
            return Err(format!("writing {output}: {e}").into());
        }
    };
    eprintln!(
        "{output}: {copies} copies of {input} ({} events, {} absolute time stamps, span {:.3} s, \
         each copy {:.3} s later), {size} bytes, {} events",
        unit.events,
        unit.abs_stamps,
        (unit.last_ns - unit.first_ns) as f64 / 1e9,
        unit.shift_ns() as f64 / 1e9,
        unit.events * copies
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, size_mb] = &args[..] else {
        return Err("usage: repeat IN.dat OUT.dat SIZE_MB".into());
    };
    let size_mb: u64 = size_mb
        .parse()
        .map_err(|_| format!("SIZE_MB: {size_mb:?} is not a whole number"))?;
    run(input, output, size_mb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvmscope_tracedat::file::count_events;

    fn fixture() -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/tracedat/kvmscope-record-lab-v6.dat");
        std::fs::read(p).unwrap()
    }

    #[test]
    fn three_copies_of_the_lab_recording() {
        let input = fixture();
        let unit = Unit::read(&input).unwrap();
        assert_eq!(unit.events, 1764);
        let mut out = Vec::new();
        unit.write(3, &mut out).unwrap();

        let td_in = TraceDat::parse(input.as_slice()).unwrap();
        let td = TraceDat::parse(out.as_slice()).unwrap();
        assert_eq!(td.version, 6);
        assert_eq!(td.cmdlines, td_in.cmdlines);
        assert_eq!(td.options, td_in.options);
        assert_eq!(td.kallsyms_len, td_in.kallsyms_len);
        assert_eq!(td.formats.iter().count(), td_in.formats.iter().count());
        let (by_id_in, _) = count_events(&td_in, input.as_slice()).unwrap();
        let (by_id, _) = count_events(&td, out.as_slice()).unwrap();
        assert_eq!(by_id.len(), by_id_in.len());
        for (id, n) in &by_id_in {
            assert_eq!(by_id[id], 3 * n, "event id {id}");
        }

        // Per CPU, in file order, time never goes back; copy k is k * shift later.
        let shift = unit.shift_ns();
        let buf = td.data_buffers().next().unwrap();
        let ps = td.layout.page_size();
        let mut all = Vec::new();
        for c in &buf.cpus {
            let pages = &out[c.offset as usize..(c.offset + c.size) as usize];
            let mut last = 0;
            for (i, page) in pages.chunks(ps).enumerate() {
                let p = Page::parse(&td.layout, page, c.cpu, c.offset + (i * ps) as u64).unwrap();
                for r in p.records() {
                    let ts = r.unwrap().ts_ns;
                    assert!(ts >= last, "cpu {} goes back: {ts} after {last}", c.cpu);
                    last = ts;
                    all.push(ts);
                }
            }
        }
        all.sort_unstable();
        assert_eq!(all.len() as u64, 3 * unit.events);
        assert_eq!(all[0], unit.first_ns);
        assert_eq!(*all.last().unwrap(), unit.last_ns + 2 * shift);
        let n = unit.events as usize;
        for k in 1..3 {
            // Each copy starts a second after the previous one ends.
            assert_eq!(all[k * n] - all[k * n - 1], GAP_NS);
        }
        // The merged reader agrees: records come in time order.
        let mut m = kvmscope_tracedat::Merger::new(&td, buf, out.as_slice()).unwrap();
        let mut prev = 0;
        let mut count = 0;
        while let Some(r) = m.next_record().unwrap() {
            assert!(r.ts_ns >= prev);
            prev = r.ts_ns;
            count += 1;
        }
        assert_eq!(count, 3 * unit.events);
    }

    #[test]
    fn refuses_bad_inputs_with_errors() {
        let input = fixture();
        assert!(Unit::read(&input[..input.len() / 2]).is_err());
        assert!(Unit::read(b"not a trace.dat").is_err());
        let mut bad = input.clone();
        // Corrupt the first page's commit of every CPU.
        let td = TraceDat::parse(input.as_slice()).unwrap();
        for c in &td.data_buffers().next().unwrap().cpus {
            if c.size > 0 {
                let at = c.offset as usize + td.layout.commit_offset;
                bad[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
            }
        }
        assert!(Unit::read(&bad).is_err());
        assert_eq!(copies_for(0, 0), 1);
        assert_eq!(copies_for(184_320, 1), 6);
    }
}
