//! trace.dat writers: version 6 (trace-cmd.dat.v6(5): one flat header, then each CPU's pages)
//! and version 7 (trace-cmd.dat.v7(5): sections found through options, the metadata and the
//! CPU data optionally zstd-compressed, CPU data in chunks of 10 pages as trace-cmd writes
//! them). Both are read by `trace-cmd report` and by [`crate::file`].

use std::io::{Read, Seek, SeekFrom, Write};

use crate::file::{option, MAGIC};

/// The trace.dat version to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    /// Version 6: what every trace-cmd and KernelShark reads.
    #[default]
    V6,
    /// Version 7 with zstd-compressed sections and CPU data (trace-cmd 3.0 and later).
    V7Zstd,
    /// Version 7 uncompressed.
    V7,
}

impl Version {
    /// `v6`, `v7` (zstd) or `v7-none`.
    pub fn parse(s: &str) -> Option<Version> {
        match s {
            "v6" | "6" => Some(Version::V6),
            "v7" | "7" | "v7-zstd" => Some(Version::V7Zstd),
            "v7-none" => Some(Version::V7),
            _ => None,
        }
    }
}

impl Metadata {
    /// The metadata of a file read with [`crate::file::TraceDat`], to write it again (in
    /// another version): formats, kallsyms (as `ADDR t NAME` lines), printk formats,
    /// cmdlines and options.
    pub fn of(td: &crate::file::TraceDat) -> Metadata {
        let mut systems: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        let mut ftrace_formats = Vec::new();
        for f in td.formats.iter() {
            if f.system == "ftrace" {
                ftrace_formats.push(f.text.clone());
            } else {
                systems
                    .entry(f.system.clone())
                    .or_default()
                    .push(f.text.clone());
            }
        }
        Metadata {
            page_size: td.page_size,
            header_page: td.header_page.clone(),
            header_event: td.header_event.clone(),
            ftrace_formats,
            systems: systems.into_iter().collect(),
            kallsyms: td.kallsyms.to_text(),
            printk: td.printk.clone().into_bytes(),
            cmdlines: td
                .cmdlines
                .iter()
                .map(|(p, c)| format!("{p} {c}\n"))
                .collect(),
            options: td.options.clone(),
        }
    }
}

/// One buffer's CPU data for [`write`]: the top-level buffer has the name `""`.
#[derive(Debug)]
pub struct BufferPages<R> {
    pub name: String,
    /// The clock its time stamps come from (`local`, `global`, ...).
    pub clock: String,
    /// One entry per CPU, in CPU order.
    pub cpus: Vec<CpuPages<R>>,
}

/// Writes `buffers` (the first is the top-level buffer, of any name) as a trace.dat of
/// `version`. Version 6 holds one buffer only: more is an error. Returns the size written.
pub fn write<W: Write + Seek, R: Read>(
    w: &mut W,
    meta: &Metadata,
    buffers: &mut [BufferPages<R>],
    version: Version,
) -> std::io::Result<u64> {
    match version {
        Version::V6 => match buffers {
            [] => write_v6::<W, R>(w, meta, &mut []),
            [one] => write_v6(w, meta, &mut one.cpus),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a version 6 trace.dat written by kvmscope holds one buffer: write version 7",
            )),
        },
        Version::V7Zstd => write_v7(w, meta, buffers, true),
        Version::V7 => write_v7(w, meta, buffers, false),
    }
}

/// Everything a trace.dat holds besides the CPU data.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    /// The host page size (the CPU data is aligned to it).
    pub page_size: u32,
    pub header_page: String,
    pub header_event: String,
    /// `events/ftrace/*/format` texts.
    pub ftrace_formats: Vec<String>,
    /// (system, format texts).
    pub systems: Vec<(String, Vec<String>)>,
    pub kallsyms: Vec<u8>,
    pub printk: Vec<u8>,
    /// `pid comm` lines.
    pub cmdlines: String,
    /// (id, data) options, written in order.
    pub options: Vec<(u16, Vec<u8>)>,
}

/// One CPU's pages for [`write_v6`]: a reader of whole pages and their total size.
#[derive(Debug)]
pub struct CpuPages<R> {
    pub reader: R,
    pub size: u64,
}

/// Writes a version 6 trace.dat: the metadata, then each CPU's pages at page-aligned
/// offsets. Returns the total size written.
pub fn write_v6<W: Write, R: Read>(
    w: &mut W,
    meta: &Metadata,
    cpus: &mut [CpuPages<R>],
) -> std::io::Result<u64> {
    let mut h: Vec<u8> = Vec::new();
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(b"6\0");
    h.push(0); // little endian
    h.push(8); // long size
    h.extend_from_slice(&meta.page_size.to_le_bytes());
    header_info(&mut h, meta);
    ftrace_formats(&mut h, meta)?;
    event_formats(&mut h, meta)?;
    sized_u32(&mut h, &meta.kallsyms, "kallsyms")?;
    sized_u32(&mut h, &meta.printk, "printk formats")?;
    sized_u64(&mut h, meta.cmdlines.as_bytes());
    h.extend_from_slice(&(cpus.len() as u32).to_le_bytes());
    if !meta.options.is_empty() {
        h.extend_from_slice(b"options  \0");
        options(&mut h, &meta.options)?;
        h.extend_from_slice(&option::DONE.to_le_bytes());
    }
    h.extend_from_slice(b"flyrecord\0");
    let align = meta.page_size.max(1) as u64;
    let table_end = h.len() as u64 + 16 * cpus.len() as u64;
    let mut offset = table_end.div_ceil(align) * align;
    let mut offsets = Vec::new();
    for c in cpus.iter() {
        offsets.push(offset);
        h.extend_from_slice(&offset.to_le_bytes());
        h.extend_from_slice(&c.size.to_le_bytes());
        offset = (offset + c.size).div_ceil(align) * align;
    }
    w.write_all(&h)?;
    let mut pos = h.len() as u64;
    let zeros = vec![0u8; align as usize];
    for (c, off) in cpus.iter_mut().zip(offsets) {
        let pad = off - pos;
        w.write_all(&zeros[..pad as usize])?;
        let copied = std::io::copy(&mut (&mut c.reader).take(c.size), w)?;
        if copied != c.size {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("CPU data ended after {copied} of {} bytes", c.size),
            ));
        }
        pos = off + c.size;
    }
    Ok(pos)
}

/// trace-cmd writes CPU data in chunks of this many pages.
const PAGES_IN_CHUNK: u64 = 10;

/// zstd at ruzstd's fastest level (about zstd's level 1, the pure-Rust encoder).
fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

fn too_big(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("{what} is larger than a trace.dat field can say (4 GiB)"),
    )
}

fn u32_len(n: usize, what: &str) -> std::io::Result<u32> {
    u32::try_from(n).map_err(|_| too_big(what))
}

/// A v7 section at the current position: header, then `body` (compressed when asked:
/// compressed size, uncompressed size, data). Returns the section's offset.
fn section<W: Write + Seek>(
    w: &mut W,
    id: u16,
    body: &[u8],
    compress: bool,
) -> std::io::Result<u64> {
    let at = w.stream_position()?;
    let mut h = Vec::with_capacity(24);
    h.extend_from_slice(&id.to_le_bytes());
    h.extend_from_slice(&u16::from(compress).to_le_bytes());
    // No description string (trace-cmd reads -1 as none).
    h.extend_from_slice(&u32::MAX.to_le_bytes());
    if compress {
        let c = zstd(body);
        h.extend_from_slice(&(8 + c.len() as u64).to_le_bytes());
        h.extend_from_slice(&u32_len(c.len(), "a compressed section")?.to_le_bytes());
        h.extend_from_slice(&u32_len(body.len(), "a section")?.to_le_bytes());
        w.write_all(&h)?;
        w.write_all(&c)?;
    } else {
        h.extend_from_slice(&(body.len() as u64).to_le_bytes());
        w.write_all(&h)?;
        w.write_all(body)?;
    }
    Ok(at)
}

fn sized_u64(out: &mut Vec<u8>, text: &[u8]) {
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text);
}

fn sized_u32(out: &mut Vec<u8>, text: &[u8], what: &str) -> std::io::Result<()> {
    out.extend_from_slice(&u32_len(text.len(), what)?.to_le_bytes());
    out.extend_from_slice(text);
    Ok(())
}

// The metadata blocks, laid out alike in v6 (one after the other) and v7 (one section each).

fn header_info(out: &mut Vec<u8>, meta: &Metadata) {
    out.extend_from_slice(b"header_page\0");
    sized_u64(out, meta.header_page.as_bytes());
    out.extend_from_slice(b"header_event\0");
    sized_u64(out, meta.header_event.as_bytes());
}

fn ftrace_formats(out: &mut Vec<u8>, meta: &Metadata) -> std::io::Result<()> {
    out.extend_from_slice(&u32_len(meta.ftrace_formats.len(), "ftrace formats")?.to_le_bytes());
    for f in &meta.ftrace_formats {
        sized_u64(out, f.as_bytes());
    }
    Ok(())
}

fn event_formats(out: &mut Vec<u8>, meta: &Metadata) -> std::io::Result<()> {
    out.extend_from_slice(&u32_len(meta.systems.len(), "systems")?.to_le_bytes());
    for (sys, formats) in &meta.systems {
        out.extend_from_slice(sys.as_bytes());
        out.push(0);
        out.extend_from_slice(&u32_len(formats.len(), "formats")?.to_le_bytes());
        for f in formats {
            sized_u64(out, f.as_bytes());
        }
    }
    Ok(())
}

/// (id, size, data) of each option, without the closing DONE.
fn options(out: &mut Vec<u8>, options: &[(u16, Vec<u8>)]) -> std::io::Result<()> {
    for (id, data) in options {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&u32_len(data.len(), "an option")?.to_le_bytes());
        out.extend_from_slice(data);
    }
    Ok(())
}

fn pad_to<W: Write + Seek>(w: &mut W, align: u64) -> std::io::Result<u64> {
    let pos = w.stream_position()?;
    let to = pos.div_ceil(align) * align;
    if to > pos {
        std::io::copy(&mut std::io::repeat(0).take(to - pos), w)?;
    }
    Ok(to)
}

/// Writes a version 7 trace.dat: the metadata sections, each buffer's flyrecord section
/// (CPU data page-aligned; with `compress`, zstd chunks of 10 pages), then one options
/// section that points at all of them. Returns the size written.
pub fn write_v7<W: Write + Seek, R: Read>(
    w: &mut W,
    meta: &Metadata,
    buffers: &mut [BufferPages<R>],
    compress: bool,
) -> std::io::Result<u64> {
    let start = w.stream_position()?;
    let mut h: Vec<u8> = Vec::new();
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(b"7\0");
    h.push(0); // little endian
    h.push(8); // long size
    h.extend_from_slice(&meta.page_size.to_le_bytes());
    if compress {
        // trace-cmd checks the name only; the version names our encoder.
        h.extend_from_slice(b"zstd\0ruzstd-0.9\0");
    } else {
        h.extend_from_slice(b"none\0\0");
    }
    let options_ptr = start + h.len() as u64;
    h.extend_from_slice(&0u64.to_le_bytes());
    w.write_all(&h)?;

    let mut opts: Vec<(u16, Vec<u8>)> = Vec::new();
    let at = |id: u16, off: u64| (id, off.to_le_bytes().to_vec());

    let mut b = Vec::new();
    header_info(&mut b, meta);
    opts.push(at(option::HEADER_INFO, section(w, 16, &b, compress)?));
    let mut b = Vec::new();
    ftrace_formats(&mut b, meta)?;
    opts.push(at(option::FTRACE_EVENTS, section(w, 17, &b, compress)?));
    let mut b = Vec::new();
    event_formats(&mut b, meta)?;
    opts.push(at(option::EVENT_FORMATS, section(w, 18, &b, compress)?));
    if !meta.kallsyms.is_empty() {
        let mut b = Vec::new();
        sized_u32(&mut b, &meta.kallsyms, "kallsyms")?;
        opts.push(at(option::KALLSYMS, section(w, 19, &b, compress)?));
    }
    if !meta.printk.is_empty() {
        let mut b = Vec::new();
        sized_u32(&mut b, &meta.printk, "printk formats")?;
        opts.push(at(option::PRINTK, section(w, 20, &b, compress)?));
    }
    let mut b = Vec::new();
    sized_u64(&mut b, meta.cmdlines.as_bytes());
    opts.push(at(option::CMDLINES, section(w, 21, &b, compress)?));

    let align = u64::from(meta.page_size.max(1));
    let chunk = (PAGES_IN_CHUNK * align) as usize;
    let mut buf = vec![0u8; chunk];
    for buffer in buffers.iter_mut() {
        let sec = w.stream_position()?;
        let mut sh = Vec::new();
        sh.extend_from_slice(&option::BUFFER.to_le_bytes());
        sh.extend_from_slice(&u16::from(compress).to_le_bytes());
        sh.extend_from_slice(&u32::MAX.to_le_bytes());
        sh.extend_from_slice(&0u64.to_le_bytes()); // size, patched below
        w.write_all(&sh)?;
        let mut table = Vec::new();
        for (cpu, c) in buffer.cpus.iter_mut().enumerate() {
            let off = pad_to(w, align)?;
            let written = if compress {
                let chunks = c.size.div_ceil(chunk as u64);
                w.write_all(&u32_len(chunks as usize, "CPU data")?.to_le_bytes())?;
                let mut written = 4u64;
                let mut left = c.size;
                while left > 0 {
                    let n = left.min(chunk as u64) as usize;
                    c.reader.read_exact(&mut buf[..n])?;
                    let z = zstd(&buf[..n]);
                    w.write_all(&u32_len(z.len(), "a chunk")?.to_le_bytes())?;
                    w.write_all(&(n as u32).to_le_bytes())?;
                    w.write_all(&z)?;
                    written += 8 + z.len() as u64;
                    left -= n as u64;
                }
                written
            } else {
                let copied = std::io::copy(&mut (&mut c.reader).take(c.size), w)?;
                if copied != c.size {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("CPU data ended after {copied} of {} bytes", c.size),
                    ));
                }
                copied
            };
            table.push((cpu as u32, off, if c.size == 0 { 0 } else { written }));
        }
        let end = w.stream_position()?;
        w.seek(SeekFrom::Start(sec + 8))?;
        w.write_all(&(end - sec - 16).to_le_bytes())?;
        w.seek(SeekFrom::Start(end))?;
        let mut o = Vec::new();
        o.extend_from_slice(&sec.to_le_bytes());
        o.extend_from_slice(buffer.name.as_bytes());
        o.push(0);
        o.extend_from_slice(buffer.clock.as_bytes());
        o.push(0);
        o.extend_from_slice(&meta.page_size.to_le_bytes());
        o.extend_from_slice(&(table.len() as u32).to_le_bytes());
        for (cpu, off, size) in table {
            o.extend_from_slice(&cpu.to_le_bytes());
            o.extend_from_slice(&off.to_le_bytes());
            o.extend_from_slice(&size.to_le_bytes());
        }
        opts.push((option::BUFFER, o));
    }

    let mut b = Vec::new();
    options(&mut b, &meta.options)?;
    options(&mut b, &opts)?;
    b.extend_from_slice(&option::DONE.to_le_bytes());
    b.extend_from_slice(&8u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    let options_at = section(w, 0, &b, compress)?;
    let end = w.stream_position()?;
    w.seek(SeekFrom::Start(options_ptr))?;
    w.write_all(&options_at.to_le_bytes())?;
    w.seek(SeekFrom::Start(end))?;
    Ok(end - start)
}
