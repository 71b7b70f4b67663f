//! Rewrites a version 6 trace.dat as version 6 or 7 (zstd or none) and prints the write speed:
//! `cargo run --release -p kvmscope-tracedat --example tracedat_rewrite -- IN OUT v7`.
//! (docs/PERFORMANCE.md: the zstd encoder's speed.) Only uncompressed inputs: the CPU data
//! is copied as it is in the file.

use std::time::Instant;

use kvmscope_tracedat::file::{write, BufferPages, CpuPages, FileAt, Metadata, TraceDat, Version};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, version] = &args[..] else {
        return Err("usage: tracedat_rewrite IN OUT v6|v7|v7-none".into());
    };
    let version = Version::parse(version).ok_or("version: v6, v7 or v7-none")?;
    let f = FileAt::open(input.as_ref())?;
    let td = TraceDat::parse(&f)?;
    if td.buffers.iter().any(|b| b.compressed) {
        return Err("the input's CPU data is compressed: give an uncompressed file".into());
    }
    let bytes = std::fs::read(input)?;
    let meta = Metadata::of(&td);
    let mut buffers: Vec<BufferPages<&[u8]>> = td
        .data_buffers()
        .map(|b| BufferPages {
            name: b.name.clone(),
            clock: b.clock.clone(),
            cpus: b
                .cpus
                .iter()
                .map(|c| CpuPages {
                    reader: bytes
                        .get(c.offset as usize..(c.offset + c.size) as usize)
                        .unwrap_or(&[]),
                    size: c.size,
                })
                .collect(),
        })
        .collect();
    let data: u64 = buffers.iter().flat_map(|b| &b.cpus).map(|c| c.size).sum();
    let start = Instant::now();
    let mut w = std::io::BufWriter::new(std::fs::File::create(output)?);
    let size = write(&mut w, &meta, &mut buffers, version)?;
    drop(w);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{output}\t{size} bytes from {data} bytes of CPU data\t{secs:.3} s\t{:.0} MB/s",
        data as f64 / secs / 1e6
    );
    Ok(())
}
