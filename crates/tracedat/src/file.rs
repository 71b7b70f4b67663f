//! trace-cmd's `trace.dat` files: a writer for version 6 (what `kvmscope record` produces,
//! readable by `trace-cmd report` and KernelShark) and a reader for versions 6 and 7 (v7
//! uncompressed or zstd-compressed, as `trace-cmd extract` writes on current distributions).
//!
//! The reader never loads the trace data into memory: it parses the metadata, then reads
//! each CPU's pages on demand ([`Merger`]) and merges the CPUs by time stamp. Every failure
//! names the byte offset it happened at.
//!
//! kvmscope's own facts about a capture (per-CPU lost events, the system snapshot) are
//! stored as one option, id [`OPTION_KVMSCOPE`], whose data is a NUL-terminated JSON object
//! (documented in the crate README and `docs/`); trace-cmd skips options it does not know.

use std::collections::BTreeMap;

use crate::error::TraceDatError;
use crate::format::{check_header_event, EventFormat, Formats, PageLayout};
use crate::ringbuf::{Missed, Page, Record};
use crate::symbols::Kallsyms;

pub(crate) const MAGIC: &[u8; 10] = b"\x17\x08\x44tracing";

pub use crate::write::{write, write_v6, BufferPages, CpuPages, Metadata, Version};

/// trace-cmd option ids (trace-cmd.dat.v7(5)).
pub mod option {
    pub const DONE: u16 = 0;
    pub const DATE: u16 = 1;
    pub const CPUSTAT: u16 = 2;
    pub const BUFFER: u16 = 3;
    pub const TRACECLOCK: u16 = 4;
    pub const UNAME: u16 = 5;
    pub const HOOK: u16 = 6;
    pub const OFFSET: u16 = 7;
    pub const CPUCOUNT: u16 = 8;
    pub const VERSION: u16 = 9;
    pub const PROCMAPS: u16 = 10;
    pub const TRACEID: u16 = 11;
    pub const HEADER_INFO: u16 = 16;
    pub const FTRACE_EVENTS: u16 = 17;
    pub const EVENT_FORMATS: u16 = 18;
    pub const KALLSYMS: u16 = 19;
    pub const PRINTK: u16 = 20;
    pub const CMDLINES: u16 = 21;
}

/// The option that holds kvmscope's JSON sidecar (`{"kvmscope": {...}}`): chosen far above
/// trace-cmd's ids so it never collides; trace-cmd skips unknown options.
pub const OPTION_KVMSCOPE: u16 = 0x4b53;

/// Random-access input: a file or a byte slice.
pub trait ReadAt {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many (0 at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize>;
    /// Total length in bytes.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        let Some(src) = self.get(start..) else {
            return Ok(0);
        };
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        Ok(n)
    }
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
}

impl ReadAt for Vec<u8> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.as_slice().read_at(buf, offset)
    }
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
}

/// A file with its length taken once at open.
#[derive(Debug)]
pub struct FileAt {
    file: std::fs::File,
    len: u64,
}

impl FileAt {
    pub fn open(path: &std::path::Path) -> Result<FileAt, TraceDatError> {
        let file = std::fs::File::open(path).map_err(|e| TraceDatError::read(path, e))?;
        let len = file
            .metadata()
            .map_err(|e| TraceDatError::read(path, e))?
            .len();
        Ok(FileAt { file, len })
    }
}

impl ReadAt for FileAt {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
    fn len(&self) -> u64 {
        self.len
    }
}

/// A cursor over a [`ReadAt`] that reports the absolute offset of what it failed to read.
struct Cur<'r, R: ReadAt + ?Sized> {
    r: &'r R,
    pos: u64,
    /// Added to `pos` in errors (for decompressed sections: the section's file offset).
    base: u64,
    what: &'static str,
}

impl<'r, R: ReadAt + ?Sized> Cur<'r, R> {
    fn new(r: &'r R, pos: u64, what: &'static str) -> Self {
        Cur {
            r,
            pos,
            base: 0,
            what,
        }
    }

    fn err(&self, message: impl Into<String>) -> TraceDatError {
        TraceDatError::Corrupt {
            what: format!("trace.dat {}", self.what),
            offset: self.base + self.pos,
            message: message.into(),
        }
    }

    fn bytes(&mut self, n: u64) -> Result<Vec<u8>, TraceDatError> {
        let mut v = Vec::new();
        self.bytes_into(n, &mut v)?;
        Ok(v)
    }

    /// [`Cur::bytes`] into `v` (its contents replaced, its allocation reused).
    fn bytes_into(&mut self, n: u64, v: &mut Vec<u8>) -> Result<(), TraceDatError> {
        let avail = self.r.len().saturating_sub(self.pos);
        if n > avail {
            return Err(self.err(format!(
                "needs {n} bytes but only {avail} remain (file truncated?)"
            )));
        }
        v.clear();
        v.resize(n as usize, 0);
        let got = self
            .r
            .read_at(v, self.pos)
            .map_err(|e| self.err(format!("read failed: {e}")))?;
        if got as u64 != n {
            return Err(self.err(format!("short read: {got} of {n} bytes")));
        }
        self.pos += n;
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TraceDatError> {
        let v = self.bytes(N as u64)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&v);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, TraceDatError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, TraceDatError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, TraceDatError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, TraceDatError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A NUL-terminated string of at most `max` bytes.
    fn cstr(&mut self, max: usize) -> Result<String, TraceDatError> {
        let start = self.pos;
        let mut out = Vec::new();
        loop {
            let b = self.u8()?;
            if b == 0 {
                break;
            }
            out.push(b);
            if out.len() > max {
                self.pos = start;
                return Err(self.err(format!("string longer than {max} bytes")));
            }
        }
        String::from_utf8(out).map_err(|_| {
            let mut e = self.err("string is not UTF-8");
            if let TraceDatError::Corrupt { offset, .. } = &mut e {
                *offset = self.base + start;
            }
            e
        })
    }

    fn expect(&mut self, want: &[u8], name: &str) -> Result<(), TraceDatError> {
        let at = self.pos;
        let got = self.bytes(want.len() as u64)?;
        if got != want {
            self.pos = at;
            return Err(self.err(format!("expected {name}")));
        }
        Ok(())
    }

    fn text(&mut self, n: u64) -> Result<String, TraceDatError> {
        let v = self.bytes(n)?;
        Ok(String::from_utf8_lossy(&v).into_owned())
    }
}

/// One CPU's data in a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuData {
    pub cpu: u32,
    pub offset: u64,
    pub size: u64,
}

/// One trace buffer (the top-level one has the name "").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buffer {
    pub name: String,
    pub clock: String,
    pub page_size: u32,
    pub cpus: Vec<CpuData>,
    /// True when the CPU data is in zstd chunks (v7).
    pub compressed: bool,
}

/// The metadata of a trace.dat file.
#[derive(Debug, Clone)]
pub struct TraceDat {
    pub version: u32,
    pub long_size: u8,
    /// The traced host's page size.
    pub page_size: u32,
    /// `Some("zstd")` for compressed v7 files.
    pub compression: Option<String>,
    pub header_page: String,
    pub header_event: String,
    pub layout: PageLayout,
    /// All event formats, including the `ftrace` system's.
    pub formats: Formats,
    pub printk: String,
    /// Size of the stored /proc/kallsyms.
    pub kallsyms_len: u64,
    /// The stored /proc/kallsyms (all of it, or the symbols the pointer fields name).
    pub kallsyms: Kallsyms,
    /// pid → comm.
    pub cmdlines: BTreeMap<i32, String>,
    /// Options other than section pointers and buffers, in file order.
    pub options: Vec<(u16, Vec<u8>)>,
    pub buffers: Vec<Buffer>,
}

impl TraceDat {
    /// Parses the metadata of a trace.dat file.
    pub fn parse<R: ReadAt + ?Sized>(r: &R) -> Result<TraceDat, TraceDatError> {
        let mut c = Cur::new(r, 0, "header");
        let magic = c.bytes(10)?;
        if magic != MAGIC {
            c.pos = 0;
            return Err(c.err("not a trace.dat file (bad magic)"));
        }
        let vpos = c.pos;
        let version = c.cstr(8)?;
        let version: u32 = version.parse().map_err(|_| {
            c.pos = vpos;
            c.err(format!("bad version string {version:?}"))
        })?;
        if !(6..=7).contains(&version) {
            c.pos = vpos;
            return Err(c.err(format!(
                "trace.dat version {version} is not supported (6 and 7 are)"
            )));
        }
        let endian = c.u8()?;
        if endian != 0 {
            c.pos -= 1;
            return Err(c.err("big-endian trace.dat files are not supported"));
        }
        let long_size = c.u8()?;
        let page_size = c.u32()?;
        let mut td = TraceDat {
            version,
            long_size,
            page_size,
            compression: None,
            header_page: String::new(),
            header_event: String::new(),
            layout: PageLayout::DEFAULT_64,
            formats: Formats::new(),
            printk: String::new(),
            kallsyms_len: 0,
            kallsyms: Kallsyms::default(),
            cmdlines: BTreeMap::new(),
            options: Vec::new(),
            buffers: Vec::new(),
        };
        if version == 6 {
            td.parse_v6(&mut c)?;
        } else {
            td.parse_v7(r, &mut c)?;
        }
        Ok(td)
    }

    fn parse_headers<Q: ReadAt + ?Sized>(
        &mut self,
        c: &mut Cur<'_, Q>,
    ) -> Result<(), TraceDatError> {
        c.what = "header info";
        c.expect(b"header_page\0", "\"header_page\"")?;
        let n = c.u64()?;
        let at = c.base + c.pos;
        self.header_page = c.text(n)?;
        self.layout = PageLayout::parse(&self.header_page, &format!("header_page at byte {at}"))?;
        c.expect(b"header_event\0", "\"header_event\"")?;
        let n = c.u64()?;
        let at = c.base + c.pos;
        self.header_event = c.text(n)?;
        check_header_event(&self.header_event, &format!("header_event at byte {at}"))?;
        Ok(())
    }

    fn parse_ftrace<Q: ReadAt + ?Sized>(
        &mut self,
        c: &mut Cur<'_, Q>,
    ) -> Result<(), TraceDatError> {
        c.what = "ftrace event formats";
        let count = c.u32()?;
        for _ in 0..count {
            let n = c.u64()?;
            let at = c.base + c.pos;
            let text = c.text(n)?;
            let f = EventFormat::parse("ftrace", &text, &format!("ftrace format at byte {at}"))?;
            self.formats.insert(f);
        }
        Ok(())
    }

    fn parse_events<Q: ReadAt + ?Sized>(
        &mut self,
        c: &mut Cur<'_, Q>,
    ) -> Result<(), TraceDatError> {
        c.what = "event formats";
        let systems = c.u32()?;
        for _ in 0..systems {
            let system = c.cstr(4096)?;
            let count = c.u32()?;
            for _ in 0..count {
                let n = c.u64()?;
                let at = c.base + c.pos;
                let text = c.text(n)?;
                let f =
                    EventFormat::parse(&system, &text, &format!("{system} format at byte {at}"))?;
                self.formats.insert(f);
            }
        }
        Ok(())
    }

    fn parse_kallsyms<Q: ReadAt + ?Sized>(
        &mut self,
        c: &mut Cur<'_, Q>,
    ) -> Result<(), TraceDatError> {
        c.what = "kallsyms";
        let n = c.u32()? as u64;
        if n > c.r.len().saturating_sub(c.pos) {
            return Err(c.err(format!("kallsyms of {n} bytes runs past the end")));
        }
        let text = c.bytes(n)?;
        self.kallsyms = Kallsyms::parse(&text);
        self.kallsyms_len = n;
        Ok(())
    }

    fn parse_printk<Q: ReadAt + ?Sized>(
        &mut self,
        c: &mut Cur<'_, Q>,
    ) -> Result<(), TraceDatError> {
        c.what = "printk formats";
        let n = c.u32()? as u64;
        self.printk = c.text(n)?;
        Ok(())
    }

    fn parse_cmdlines<Q: ReadAt + ?Sized>(
        &mut self,
        c: &mut Cur<'_, Q>,
    ) -> Result<(), TraceDatError> {
        c.what = "cmdlines";
        let n = c.u64()?;
        let text = c.text(n)?;
        for line in text.lines() {
            if let Some((pid, comm)) = line.trim().split_once(' ') {
                if let Ok(pid) = pid.parse() {
                    self.cmdlines.insert(pid, comm.to_string());
                }
            }
        }
        Ok(())
    }

    fn parse_v6<R: ReadAt + ?Sized>(&mut self, c: &mut Cur<'_, R>) -> Result<(), TraceDatError> {
        self.parse_headers(c)?;
        self.parse_ftrace(c)?;
        self.parse_events(c)?;
        self.parse_kallsyms(c)?;
        self.parse_printk(c)?;
        self.parse_cmdlines(c)?;
        c.what = "cpu count";
        let cpus = c.u32()?;
        if cpus > 65536 {
            c.pos -= 4;
            return Err(c.err(format!("implausible CPU count {cpus}")));
        }
        let mut extra_buffers = Vec::new();
        let mut clock = String::from("local");
        loop {
            c.what = "section marker";
            let at = c.pos;
            let marker = c.bytes(10)?;
            match &marker[..] {
                b"options  \0" => {
                    c.what = "options";
                    loop {
                        let id = c.u16()?;
                        if id == option::DONE {
                            break;
                        }
                        let size = c.u32()? as u64;
                        let data = c.bytes(size)?;
                        match id {
                            option::BUFFER => {
                                let mut o = Cur::new(data.as_slice(), 0, "BUFFER option");
                                o.base = c.pos - size;
                                let off = o.u64()?;
                                let name = o.cstr(4096)?;
                                extra_buffers.push((off, name));
                            }
                            option::TRACECLOCK => {
                                if let Some(cl) = current_clock(&data) {
                                    clock = cl;
                                }
                                self.options.push((id, data));
                            }
                            _ => self.options.push((id, data)),
                        }
                    }
                }
                b"flyrecord\0" => {
                    let cpus = read_fly_cpus(c, cpus)?;
                    self.buffers.push(Buffer {
                        name: String::new(),
                        clock: clock.clone(),
                        page_size: self.layout.page_size() as u32,
                        cpus,
                        compressed: false,
                    });
                    break;
                }
                b"latency  \0" => {
                    c.pos = at;
                    return Err(c.err("latency-tracer (text) trace.dat files are not supported"));
                }
                _ => {
                    c.pos = at;
                    return Err(c.err("expected \"options\", \"flyrecord\" or \"latency\""));
                }
            }
        }
        for (off, name) in extra_buffers {
            let mut b = Cur::new(c.r, off, "buffer flyrecord");
            b.expect(b"flyrecord\0", "\"flyrecord\"")?;
            let cpus = read_fly_cpus(&mut b, cpus)?;
            self.buffers.push(Buffer {
                name,
                clock: clock.clone(),
                page_size: self.layout.page_size() as u32,
                cpus,
                compressed: false,
            });
        }
        Ok(())
    }

    fn parse_v7<R: ReadAt + ?Sized>(
        &mut self,
        r: &R,
        c: &mut Cur<'_, R>,
    ) -> Result<(), TraceDatError> {
        c.what = "compression header";
        let name = c.cstr(64)?;
        let _ver = c.cstr(64)?;
        match name.as_str() {
            "none" => {}
            "zstd" => self.compression = Some(name),
            other => {
                return Err(c.err(format!(
                    "compression {other:?} is not supported (none and zstd are)"
                )))
            }
        }
        let mut next = c.u64()?;
        let mut seen = std::collections::HashSet::new();
        let mut dec = Decompressor::default();
        while next != 0 {
            if !seen.insert(next) {
                return Err(TraceDatError::Corrupt {
                    what: "trace.dat options".into(),
                    offset: next,
                    message: "options sections form a loop".into(),
                });
            }
            let (data, base) = self.read_section(r, next, 0, &mut dec)?;
            let mut o = Cur::new(data.as_slice(), 0, "options");
            o.base = base;
            loop {
                let id = o.u16()?;
                let size = o.u32()? as u64;
                let opt_at = o.pos;
                let opt = o.bytes(size)?;
                let mut oc = Cur::new(opt.as_slice(), 0, "option");
                oc.base = base + opt_at;
                match id {
                    option::DONE => {
                        next = oc.u64().unwrap_or(0);
                        break;
                    }
                    // Sections with the metadata: the option holds the section's offset,
                    // the section's id is the option's.
                    option::HEADER_INFO
                    | option::FTRACE_EVENTS
                    | option::EVENT_FORMATS
                    | option::KALLSYMS
                    | option::PRINTK
                    | option::CMDLINES => {
                        let off = oc.u64()?;
                        let (d, b) = self.read_section(r, off, id, &mut dec)?;
                        let mut s = Cur::new(d.as_slice(), 0, "section");
                        s.base = b;
                        match id {
                            option::HEADER_INFO => self.parse_headers(&mut s)?,
                            option::FTRACE_EVENTS => self.parse_ftrace(&mut s)?,
                            option::EVENT_FORMATS => self.parse_events(&mut s)?,
                            option::KALLSYMS => self.parse_kallsyms(&mut s)?,
                            option::PRINTK => self.parse_printk(&mut s)?,
                            _ => self.parse_cmdlines(&mut s)?,
                        }
                    }
                    option::BUFFER => {
                        let off = oc.u64()?;
                        let name = oc.cstr(4096)?;
                        let clock = oc.cstr(256)?;
                        let page_size = oc.u32()?;
                        let count = oc.u32()?;
                        if count > 65536 {
                            return Err(oc.err(format!("implausible CPU count {count}")));
                        }
                        let mut cpus = Vec::new();
                        for _ in 0..count {
                            cpus.push(CpuData {
                                cpu: oc.u32()?,
                                offset: oc.u64()?,
                                size: oc.u64()?,
                            });
                        }
                        // The section header says whether the data is compressed.
                        let mut h = Cur::new(r, off, "buffer section header");
                        let sid = h.u16()?;
                        let flags = h.u16()?;
                        if sid != 3 {
                            h.pos = off;
                            return Err(h.err(format!(
                                "expected a flyrecord section (id 3), found id {sid}"
                            )));
                        }
                        self.buffers.push(Buffer {
                            name,
                            clock,
                            page_size,
                            cpus,
                            compressed: flags & 1 != 0,
                        });
                    }
                    _ => self.options.push((id, opt)),
                }
            }
        }
        if self.header_page.is_empty() {
            return Err(TraceDatError::Corrupt {
                what: "trace.dat v7".into(),
                offset: c.pos,
                message: "no HEADER_INFO option: the file has no page layout".into(),
            });
        }
        // Checked here: the BUFFER options may come before HEADER_INFO.
        for b in &self.buffers {
            if b.page_size as usize != self.layout.page_size() {
                return Err(TraceDatError::Corrupt {
                    what: format!("trace.dat buffer {:?}", b.name),
                    offset: c.pos,
                    message: format!(
                        "page size {} differs from header_page's {}",
                        b.page_size,
                        self.layout.page_size()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Reads a v7 section at `off` (checking its id unless `want` is 0 for options, which
    /// have id 0), decompressing it when flagged. Returns the data and the offset it starts
    /// at in the file.
    fn read_section<R: ReadAt + ?Sized>(
        &self,
        r: &R,
        off: u64,
        want: u16,
        dec: &mut Decompressor,
    ) -> Result<(Vec<u8>, u64), TraceDatError> {
        let mut c = Cur::new(r, off, "section");
        let id = c.u16()?;
        let flags = c.u16()?;
        let _string_id = c.u32()?;
        let size = c.u64()?;
        if id != want {
            c.pos = off;
            return Err(c.err(format!("expected section id {want}, found {id}")));
        }
        if flags & 1 == 0 {
            let at = c.pos;
            return Ok((c.bytes(size)?, at));
        }
        let comp = c.u32()? as u64;
        let uncomp = c.u32()? as usize;
        let at = c.pos;
        let data = c.bytes(comp)?;
        let out = dec.decompress(&data, uncomp, at)?;
        Ok((out, at))
    }

    /// An option's data by id (the first one).
    pub fn option(&self, id: u16) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, d)| d.as_slice())
    }

    /// The printk formats table: address → string (for `%s` pointer fields).
    pub fn printk_table(&self) -> BTreeMap<u64, String> {
        crate::symbols::parse_printk(&self.printk)
    }

    /// kvmscope's JSON sidecar, when the file was written by kvmscope.
    pub fn kvmscope_json(&self) -> Option<&str> {
        let d = self.option(OPTION_KVMSCOPE)?;
        std::str::from_utf8(d.strip_suffix(&[0]).unwrap_or(d)).ok()
    }

    /// The CPUSTAT options (per-CPU `stats` files as the kernel printed them).
    pub fn cpu_stats(&self) -> Vec<String> {
        self.options
            .iter()
            .filter(|(i, _)| *i == option::CPUSTAT)
            .map(|(_, d)| {
                String::from_utf8_lossy(d)
                    .trim_end_matches('\0')
                    .to_string()
            })
            .collect()
    }

    /// Opens and parses a trace.dat file; read its records with [`Merger::new`]`(&td,
    /// buffer, &file)`.
    pub fn open(path: &std::path::Path) -> Result<(TraceDat, FileAt), TraceDatError> {
        let f = FileAt::open(path)?;
        let td = TraceDat::parse(&f)?;
        Ok((td, f))
    }

    /// Events the kernel counted as lost, per CPU, from the CPUSTAT options (`overrun` +
    /// `dropped events` of each `per_cpu/cpuN/stats`), in option order: trace-cmd and
    /// kvmscope both store them. Empty when the file has none. Pages read by [`Merger`]
    /// also carry loss flags ([`Merger::lost_events`]).
    pub fn kernel_lost_events(&self) -> Vec<u64> {
        self.cpu_stats()
            .iter()
            .map(|s| {
                let st = parse_stats(s);
                st.get("overrun").copied().unwrap_or(0)
                    + st.get("dropped events").copied().unwrap_or(0)
            })
            .collect()
    }

    /// The buffers that hold data.
    pub fn data_buffers(&self) -> impl Iterator<Item = &Buffer> {
        self.buffers
            .iter()
            .filter(|b| b.cpus.iter().any(|c| c.size > 0))
    }
}

fn current_clock(data: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(data).ok()?;
    let start = s.find('[')?;
    let end = s[start..].find(']')?;
    Some(s[start + 1..start + end].to_string())
}

fn read_fly_cpus<R: ReadAt + ?Sized>(
    c: &mut Cur<'_, R>,
    cpus: u32,
) -> Result<Vec<CpuData>, TraceDatError> {
    c.what = "flyrecord CPU table";
    let mut out = Vec::new();
    for cpu in 0..cpus {
        let at = c.pos;
        let offset = c.u64()?;
        let size = c.u64()?;
        if offset.checked_add(size).is_none_or(|end| end > c.r.len()) {
            c.pos = at;
            return Err(c.err(format!(
                "CPU {cpu} data at {offset}+{size} runs past the end of the file ({} bytes)",
                c.r.len()
            )));
        }
        out.push(CpuData { cpu, offset, size });
    }
    Ok(out)
}

/// zstd decompression with a bound on the output size: the C libzstd (through the `zstd`
/// crate), 4-5x faster than the pure-Rust ruzstd on trace-cmd's 40 KiB chunks
/// (docs/PERFORMANCE.md).
#[derive(Default)]
struct Decompressor {
    dec: Option<zstd::bulk::Decompressor<'static>>,
}

impl Decompressor {
    const MAX: usize = 1 << 30;

    fn decompress(
        &mut self,
        data: &[u8],
        uncomp: usize,
        at: u64,
    ) -> Result<Vec<u8>, TraceDatError> {
        let mut out = Vec::new();
        self.decompress_into(data, uncomp, at, &mut out)?;
        Ok(out)
    }

    /// Decompresses `data` (at file offset `at`, for errors), which says it holds `uncomp`
    /// bytes, into `out` (replacing its contents; its allocation is reused). More than
    /// `uncomp` bytes of output is an error.
    fn decompress_into(
        &mut self,
        data: &[u8],
        uncomp: usize,
        at: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), TraceDatError> {
        let corrupt = |message: String| TraceDatError::Corrupt {
            what: "trace.dat zstd block".into(),
            offset: at,
            message,
        };
        if uncomp > Self::MAX {
            return Err(TraceDatError::Corrupt {
                what: "trace.dat compressed block".into(),
                offset: at,
                message: format!("claims {uncomp} uncompressed bytes (limit {})", Self::MAX),
            });
        }
        let dec = match &mut self.dec {
            Some(d) => d,
            None => self.dec.insert(
                zstd::bulk::Decompressor::new()
                    .map_err(|e| corrupt(format!("cannot start zstd: {e}")))?,
            ),
        };
        out.resize(uncomp, 0);
        let n = dec
            .decompress_to_buffer(data, out.as_mut_slice())
            .map_err(|e| corrupt(format!("cannot decompress: {e}")))?;
        out.truncate(n);
        Ok(())
    }
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decompressor")
    }
}

/// `key: value` lines of a per-CPU `stats` file (as in CPUSTAT options).
pub fn parse_stats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .filter_map(|(k, v)| Some((k.trim().to_string(), v.trim().parse().ok()?)))
        .collect()
}

// ---- record reading ------------------------------------------------------------------------

/// Where a CPU cursor gets its pages from.
#[derive(Debug)]
enum Source {
    /// The cursor's `buf` holds bytes read ahead from the file, starting at offset
    /// `ahead_at`: pages are read a block at a time, not with one read per page.
    Raw { next: u64, end: u64, ahead_at: u64 },
    /// The cursor's `buf` holds the chunk being read, decompressed; its next page starts at
    /// `pos`.
    Zstd {
        chunks_left: u32,
        next: u64,
        pos: usize,
    },
}

impl Source {
    fn raw(next: u64, end: u64) -> Source {
        Source::Raw {
            next,
            end,
            ahead_at: 0,
        }
    }
}

/// Bytes of uncompressed CPU data read ahead, shared out among the CPUs (each reads at least
/// a page and at most [`READ_AHEAD_MAX`] at a time): one read per page was 50,000 system
/// calls per 200 MB.
const READ_AHEAD_TOTAL: usize = 1 << 20;
const READ_AHEAD_MAX: usize = 256 << 10;

#[derive(Debug)]
struct CpuCursor {
    cpu: u32,
    source: Source,
    /// The bytes the current page is in (read ahead or decompressed): pages are read in
    /// place, not copied out.
    buf: Vec<u8>,
    page_offset: u64,
    /// (ts, start, end) of the records of the current page (their bytes are
    /// `buf[start..end]`), and the index of the next.
    recs: Vec<(u64, u32, u32)>,
    idx: usize,
    done: bool,
    missed_known: u64,
    missed_unknown_pages: u64,
    pages: u64,
}

/// Per-CPU counts of lost events seen in page headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LostEvents {
    pub cpu: u32,
    /// Sum of the counts the kernel stored.
    pub known: u64,
    /// Pages that say events were lost without saying how many.
    pub unknown_pages: u64,
    pub pages: u64,
}

/// Reads the records of one buffer of a trace.dat file, all CPUs merged by time stamp.
#[derive(Debug)]
pub struct Merger<'r, R: ReadAt + ?Sized> {
    r: &'r R,
    layout: PageLayout,
    cpus: Vec<CpuCursor>,
    dec: Decompressor,
    /// The compressed bytes of the chunk being decompressed (reused).
    zbuf: Vec<u8>,
    /// The CPU whose record was returned last (stepped past on the next call).
    current: Option<usize>,
    /// The CPU whose record comes next, chosen by a peek and not yet returned.
    peeked: Option<usize>,
    /// After a full pick, the earliest head among the other CPUs (time, CPU index), or None
    /// when no other CPU has records: while the picked CPU's next record on its page comes
    /// before it, that record is next without looking at the others (their heads do not move
    /// meanwhile).
    rival: Option<(u64, usize)>,
    /// Bytes each CPU reads ahead of uncompressed data: a whole number of pages, at least one.
    read_ahead: usize,
}

impl<'r, R: ReadAt + ?Sized> Merger<'r, R> {
    /// A merger over `buffer` of `td`, reading from `r`.
    pub fn new(td: &TraceDat, buffer: &Buffer, r: &'r R) -> Result<Merger<'r, R>, TraceDatError> {
        let mut cpus = Vec::new();
        for cd in &buffer.cpus {
            let source = if buffer.compressed {
                if cd.size == 0 {
                    Source::raw(0, 0)
                } else {
                    let mut c = Cur::new(r, cd.offset, "compressed CPU data");
                    let chunks_left = c.u32()?;
                    Source::Zstd {
                        chunks_left,
                        next: c.pos,
                        pos: 0,
                    }
                }
            } else {
                Source::raw(cd.offset, cd.offset.saturating_add(cd.size))
            };
            cpus.push(CpuCursor {
                cpu: cd.cpu,
                source,
                buf: Vec::new(),
                page_offset: 0,
                recs: Vec::new(),
                idx: 0,
                done: false,
                missed_known: 0,
                missed_unknown_pages: 0,
                pages: 0,
            });
        }
        // (`PageLayout::parse` puts the data after the commit field, so a page is at least 4
        // bytes; `max` only keeps the division sound.)
        let page = td.layout.page_size().max(1);
        let share = READ_AHEAD_TOTAL / cpus.len().max(1);
        let read_ahead = share.clamp(page, READ_AHEAD_MAX.max(page)) / page * page;
        Ok(Merger {
            r,
            layout: td.layout,
            cpus,
            dec: Decompressor::default(),
            zbuf: Vec::new(),
            current: None,
            peeked: None,
            rival: None,
            read_ahead,
        })
    }

    /// Steps past the record returned last and picks the CPU whose record comes next.
    #[inline(always)]
    fn advance(&mut self) -> Result<Option<usize>, TraceDatError> {
        if let Some(i) = self.current.take() {
            let c = &mut self.cpus[i];
            c.idx += 1;
            // Ties go to the lower CPU index, as in the full pick below.
            if let Some(&(ts, _, _)) = c.recs.get(c.idx) {
                match self.rival {
                    None => return Ok(Some(i)),
                    Some((rts, r)) if ts < rts || (ts == rts && i < r) => return Ok(Some(i)),
                    Some(_) => {}
                }
            }
        }
        let mut best: Option<(u64, usize)> = None;
        let mut rival: Option<(u64, usize)> = None;
        for i in 0..self.cpus.len() {
            if !self.fill(i)? {
                continue;
            }
            let c = &self.cpus[i];
            let ts = c.recs[c.idx].0;
            if best.is_none_or(|(b, _)| ts < b) {
                rival = best;
                best = Some((ts, i));
            } else if rival.is_none_or(|(r, _)| ts < r) {
                rival = Some((ts, i));
            }
        }
        self.rival = rival;
        Ok(best.map(|b| b.1))
    }

    /// The time stamp of the record [`Merger::next_record`] will return, or None at the end.
    pub fn peek_ts(&mut self) -> Result<Option<u64>, TraceDatError> {
        if self.peeked.is_none() {
            self.peeked = self.advance()?;
        }
        Ok(self.peeked.map(|i| {
            let c = &self.cpus[i];
            c.recs[c.idx].0
        }))
    }

    /// The next record in time order across CPUs, or None at the end.
    #[inline(always)]
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, TraceDatError> {
        let next = match self.peeked.take() {
            Some(i) => Some(i),
            None => self.advance()?,
        };
        let Some(i) = next else {
            return Ok(None);
        };
        self.current = Some(i);
        let c = &self.cpus[i];
        let (ts, start, end) = c.recs[c.idx];
        let data = &c.buf[start as usize..end as usize];
        Ok(Some(Record {
            ts_ns: ts,
            cpu: c.cpu,
            id: u16::from_le_bytes([data[0], data[1]]),
            common_pid: i32::from_le_bytes([data[4], data[5], data[6], data[7]]),
            data,
        }))
    }

    /// Lost-event counts per CPU, from the pages read so far.
    pub fn lost_events(&self) -> Vec<LostEvents> {
        self.cpus
            .iter()
            .map(|c| LostEvents {
                cpu: c.cpu,
                known: c.missed_known,
                unknown_pages: c.missed_unknown_pages,
                pages: c.pages,
            })
            .collect()
    }

    /// Makes sure cursor `i` has a current record; false when it is exhausted.
    #[inline]
    fn fill(&mut self, i: usize) -> Result<bool, TraceDatError> {
        let c = &self.cpus[i];
        if c.idx < c.recs.len() {
            return Ok(true);
        }
        self.refill(i)
    }

    /// [`Merger::fill`] past the end of the current page.
    fn refill(&mut self, i: usize) -> Result<bool, TraceDatError> {
        loop {
            let c = &self.cpus[i];
            if c.idx < c.recs.len() {
                return Ok(true);
            }
            if c.done {
                return Ok(false);
            }
            if !self.load_page(i)? {
                self.cpus[i].done = true;
                return Ok(false);
            }
        }
    }

    fn load_page(&mut self, i: usize) -> Result<bool, TraceDatError> {
        let ps = self.layout.page_size();
        let c = &mut self.cpus[i];
        let buf = &mut c.buf;
        let from = match &mut c.source {
            Source::Raw {
                next,
                end,
                ahead_at,
            } => {
                if *next >= *end {
                    return Ok(false);
                }
                let n = ((*end - *next) as usize).min(ps);
                let held = *ahead_at..*ahead_at + buf.len() as u64;
                if *next < held.start || *next + n as u64 > held.end {
                    let want = ((*end - *next) as usize).min(self.read_ahead);
                    // The read overwrites what it returns and the rest is cut off: only a
                    // longer buffer than the last needs zeroing.
                    buf.resize(want, 0);
                    let got = self
                        .r
                        .read_at(buf, *next)
                        .map_err(|e| TraceDatError::Corrupt {
                            what: format!("trace.dat CPU {} data", c.cpu),
                            offset: *next,
                            message: format!("read failed: {e}"),
                        })?;
                    buf.truncate(got);
                    *ahead_at = *next;
                }
                let from = (*next - *ahead_at) as usize;
                let got = (buf.len() - from).min(n);
                if got < n {
                    return Err(TraceDatError::Corrupt {
                        what: format!("trace.dat CPU {} data", c.cpu),
                        offset: *next + got as u64,
                        message: "file ends inside a page (truncated?)".into(),
                    });
                }
                c.page_offset = *next;
                *next += n as u64;
                from..from + n
            }
            Source::Zstd {
                chunks_left,
                next,
                pos,
            } => {
                if *pos >= buf.len() {
                    if *chunks_left == 0 {
                        return Ok(false);
                    }
                    let mut h = Cur::new(self.r, *next, "compressed chunk");
                    let comp = h.u32()? as u64;
                    let uncomp = h.u32()? as usize;
                    let at = h.pos;
                    h.bytes_into(comp, &mut self.zbuf)?;
                    // The records of the page before are all read (`refill`).
                    self.dec.decompress_into(&self.zbuf, uncomp, at, buf)?;
                    *next = h.pos;
                    *chunks_left -= 1;
                    *pos = 0;
                    // Offsets inside decompressed data are reported as the chunk's offset.
                    c.page_offset = at;
                    if buf.is_empty() {
                        return Ok(true);
                    }
                }
                let n = (buf.len() - *pos).min(ps);
                let from = *pos;
                *pos += n;
                from..from + n
            }
        };
        c.idx = 0;
        c.recs.clear();
        c.pages += 1;
        let page = Page::parse(&self.layout, &c.buf[from], c.cpu, c.page_offset)?;
        match page.missed {
            Missed::None => {}
            Missed::Unknown => c.missed_unknown_pages += 1,
            Missed::Count(n) => c.missed_known += n,
        }
        let base = c.buf.as_ptr() as usize;
        for rec in page.records() {
            let rec = rec?;
            let start = rec.data.as_ptr() as usize - base;
            c.recs
                .push((rec.ts_ns, start as u32, (start + rec.data.len()) as u32));
        }
        Ok(true)
    }
}

/// Reads the records of several buffers of a file (a trace-cmd recording of the top buffer
/// and instances, `-B`), merged by time stamp: the buffers of one recording share a clock
/// unless one was set otherwise ([`Buffer::clock`]). At equal times the earlier buffer
/// comes first.
#[derive(Debug)]
pub struct BufferMerger<'r, R: ReadAt + ?Sized> {
    mergers: Vec<Merger<'r, R>>,
}

impl<'r, R: ReadAt + ?Sized> BufferMerger<'r, R> {
    /// A merger over every data buffer of `td`.
    pub fn new(td: &TraceDat, r: &'r R) -> Result<BufferMerger<'r, R>, TraceDatError> {
        Self::of(td, td.data_buffers(), r)
    }

    /// A merger over the given buffers of `td`.
    pub fn of<'b>(
        td: &TraceDat,
        buffers: impl IntoIterator<Item = &'b Buffer>,
        r: &'r R,
    ) -> Result<BufferMerger<'r, R>, TraceDatError> {
        let mergers = buffers
            .into_iter()
            .map(|b| Merger::new(td, b, r))
            .collect::<Result<_, _>>()?;
        Ok(BufferMerger { mergers })
    }

    /// The next record in time order across buffers and CPUs, with the index of its buffer
    /// (in the order given), or None at the end.
    #[inline(always)]
    pub fn next_record(&mut self) -> Result<Option<(usize, Record<'_>)>, TraceDatError> {
        let i = if self.mergers.len() == 1 {
            0
        } else {
            let mut best: Option<(u64, usize)> = None;
            for (i, m) in self.mergers.iter_mut().enumerate() {
                if let Some(ts) = m.peek_ts()? {
                    if best.is_none_or(|(b, _)| ts < b) {
                        best = Some((ts, i));
                    }
                }
            }
            match best {
                Some((_, i)) => i,
                None => return Ok(None),
            }
        };
        let Some(m) = self.mergers.get_mut(i) else {
            return Ok(None);
        };
        Ok(m.next_record()?.map(|r| (i, r)))
    }

    /// Lost-event counts per buffer and CPU, from the pages read so far.
    pub fn lost_events(&self) -> Vec<LostEvents> {
        self.mergers.iter().flat_map(Merger::lost_events).collect()
    }
}

/// Calls `f` with every record of every data buffer of a file (buffers and CPUs merged in
/// time order) and its format (None for an id the file has no format for). `f` returns
/// `ControlFlow::Break(())` to stop early. Returns the lost-event counts seen in the page
/// headers, per buffer and CPU.
pub fn for_each_record<R: ReadAt + ?Sized>(
    td: &TraceDat,
    r: &R,
    mut f: impl FnMut(&Record<'_>, Option<&EventFormat>) -> std::ops::ControlFlow<()>,
) -> Result<Vec<LostEvents>, TraceDatError> {
    let mut m = BufferMerger::new(td, r)?;
    while let Some((_, rec)) = m.next_record()? {
        if f(&rec, td.formats.get(rec.id)).is_break() {
            break;
        }
    }
    Ok(m.lost_events())
}

/// Counts records per event id over all data buffers of a file (a quick check that a file
/// reads completely). Returns (counts by id, lost events per buffer and CPU).
pub fn count_events<R: ReadAt + ?Sized>(
    td: &TraceDat,
    r: &R,
) -> Result<(BTreeMap<u16, u64>, Vec<LostEvents>), TraceDatError> {
    let mut counts = BTreeMap::new();
    let mut m = BufferMerger::new(td, r)?;
    while let Some((_, rec)) = m.next_record()? {
        *counts.entry(rec.id).or_insert(0) += 1;
    }
    Ok((counts, m.lost_events()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ringbuf::PageBuilder;

    pub(crate) const HEADER_PAGE: &str = "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n\tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;\n";
    pub(crate) const HEADER_EVENT: &str = "# compressed entry header\n\ttype_len    :    5 bits\n\ttime_delta  :   27 bits\n\tarray       :   32 bits\n\n\tpadding     : type == 29\n\ttime_extend : type == 30\n\ttime_stamp : type == 31\n\tdata max type_len  == 28\n";
    const FMT: &str = "name: ev\nID: 500\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\tfield:u32 x;\toffset:8;\tsize:4;\tsigned:0;\n\nprint fmt: \"x=%u\", REC->x\n";

    fn rec(x: u32) -> Vec<u8> {
        let mut p = vec![0u8; 12];
        p[0..2].copy_from_slice(&500u16.to_le_bytes());
        p[4..8].copy_from_slice(&77i32.to_le_bytes());
        p[8..12].copy_from_slice(&x.to_le_bytes());
        p
    }

    /// Three pages per CPU for `ncpu` CPUs; CPU c's records have time stamps `start + c +
    /// k * step`, and `x` = ts - 1000. CPU 1's second page says 5 events were lost.
    fn cpu_pages(ncpu: u64, start: u64, step: u64) -> Vec<Vec<u8>> {
        let l = PageLayout::DEFAULT_64;
        let mut cpu_pages = Vec::new();
        for cpu in 0..ncpu {
            let mut data = Vec::new();
            let mut ts = start + cpu;
            for page in 0..3 {
                let mut b = PageBuilder::new(l, ts);
                let mut n = 0;
                while n < 50 && b.push(ts, &rec((ts - 1000) as u32)) {
                    ts += step;
                    n += 1;
                }
                data.extend(b.finish(if page == 1 && cpu == 1 {
                    Some(Some(5))
                } else {
                    None
                }));
            }
            cpu_pages.push(data);
        }
        cpu_pages
    }

    fn sample_meta() -> Metadata {
        Metadata {
            page_size: 4096,
            header_page: HEADER_PAGE.into(),
            header_event: HEADER_EVENT.into(),
            systems: vec![("test".into(), vec![FMT.into()])],
            cmdlines: "77 worker\n".into(),
            kallsyms: b"ffffffff81000000 T _text\nffffffff81001000 T worker_fn\nffffffff81002000 T _etext\n".to_vec(),
            printk: b"0xffffffff82000000 : \"hello\"\n".to_vec(),
            options: vec![(OPTION_KVMSCOPE, b"{\"a\":1}\0".to_vec())],
            ..Default::default()
        }
    }

    /// A small v6 file: cpu 0 has even timestamps, cpu 1 odd ones.
    pub(crate) fn sample_file() -> Vec<u8> {
        let cpu_pages = cpu_pages(2, 1000, 2);
        let mut cpus: Vec<_> = cpu_pages
            .iter()
            .map(|d| CpuPages {
                reader: d.as_slice(),
                size: d.len() as u64,
            })
            .collect();
        let mut out = Vec::new();
        write_v6(&mut out, &sample_meta(), &mut cpus).unwrap();
        out
    }

    /// A v7 file with two buffers whose records interleave in time: the top buffer's CPUs
    /// at 1000 + 4k (+1), the instance's at 1002 + 4k (+1).
    fn two_buffer_v7(version: Version) -> Vec<u8> {
        let top = cpu_pages(2, 1000, 4);
        let inst = cpu_pages(2, 1002, 4);
        let pages = |v: &[Vec<u8>]| -> Vec<CpuPages<std::io::Cursor<Vec<u8>>>> {
            v.iter()
                .map(|d| CpuPages {
                    reader: std::io::Cursor::new(d.clone()),
                    size: d.len() as u64,
                })
                .collect()
        };
        let mut buffers = vec![
            BufferPages {
                name: String::new(),
                clock: "local".into(),
                cpus: pages(&top),
            },
            BufferPages {
                name: "vm".into(),
                clock: "local".into(),
                cpus: pages(&inst),
            },
        ];
        let mut out = std::io::Cursor::new(Vec::new());
        write(&mut out, &sample_meta(), &mut buffers, version).unwrap();
        out.into_inner()
    }

    #[test]
    fn v7_with_two_buffers_reads_back_merged_by_time() {
        for version in [Version::V7Zstd, Version::V7] {
            let file = two_buffer_v7(version);
            let td = TraceDat::parse(file.as_slice()).unwrap();
            assert_eq!(td.version, 7);
            assert_eq!(
                td.compression.as_deref(),
                (version == Version::V7Zstd).then_some("zstd")
            );
            assert_eq!(td.buffers.len(), 2);
            assert_eq!(td.buffers[1].name, "vm");
            assert_eq!(td.cmdlines.get(&77).map(String::as_str), Some("worker"));
            assert_eq!(td.kvmscope_json(), Some("{\"a\":1}"));
            assert_eq!(td.kallsyms.lookup(0xffffffff81001010), Some("worker_fn"));
            assert_eq!(td.printk_table()[&0xffffffff82000000], "hello");
            let f = td.formats.by_name("test", "ev").unwrap().clone();
            let mut m = BufferMerger::new(&td, file.as_slice()).unwrap();
            let mut last = 0;
            let mut n = 0;
            let mut from = [0u64; 2];
            while let Some((b, r)) = m.next_record().unwrap() {
                assert!(r.ts_ns >= last, "{} after {last}", r.ts_ns);
                assert_eq!(f.u64(r.data, "x"), Some(r.ts_ns - 1000));
                assert_eq!(b, ((r.ts_ns - 1000) / 2 % 2) as usize);
                from[b] += 1;
                last = r.ts_ns;
                n += 1;
            }
            assert_eq!(n, 600);
            assert_eq!(from, [300, 300]);
            let lost = m.lost_events();
            assert_eq!(lost.len(), 4);
            assert_eq!(lost[1].known + lost[3].known, 10);
        }
    }

    #[test]
    fn v6_holds_one_buffer_only() {
        let mut two = vec![
            BufferPages::<&[u8]> {
                name: String::new(),
                clock: "local".into(),
                cpus: Vec::new(),
            },
            BufferPages::<&[u8]> {
                name: "b".into(),
                clock: "local".into(),
                cpus: Vec::new(),
            },
        ];
        let mut out = std::io::Cursor::new(Vec::new());
        assert!(write(&mut out, &sample_meta(), &mut two, Version::V6).is_err());
    }

    #[test]
    fn every_truncation_of_a_v7_file_is_an_error_with_an_offset_or_fewer_records() {
        let file = two_buffer_v7(Version::V7Zstd);
        for cut in (0..file.len()).step_by(61) {
            let part = &file[..cut];
            match TraceDat::parse(part) {
                Err(e) => assert!(e.to_string().contains("offset"), "{e}"),
                Ok(td) => {
                    if let Ok(mut m) = BufferMerger::new(&td, part) {
                        while let Ok(Some(_)) = m.next_record() {}
                    }
                }
            }
        }
    }

    #[test]
    fn write_then_read_v6_merges_by_time() {
        let file = sample_file();
        let td = TraceDat::parse(file.as_slice()).unwrap();
        assert_eq!(td.version, 6);
        assert_eq!(td.cmdlines.get(&77).map(String::as_str), Some("worker"));
        assert_eq!(td.kallsyms.lookup(0xffffffff81001000), Some("worker_fn"));
        assert_eq!(td.printk_table()[&0xffffffff82000000], "hello");
        assert_eq!(td.kvmscope_json(), Some("{\"a\":1}"));
        let f = td.formats.by_name("test", "ev").unwrap();
        assert_eq!(f.id, 500);
        let b = &td.buffers[0];
        assert_eq!(b.cpus[1].offset % 4096, 0);
        let mut m = Merger::new(&td, b, file.as_slice()).unwrap();
        let mut last = 0;
        let mut n = 0;
        while let Some(r) = m.next_record().unwrap() {
            assert!(r.ts_ns >= last);
            assert_eq!(f.u64(r.data, "x"), Some(r.ts_ns - 1000));
            assert_eq!(r.cpu as u64, r.ts_ns % 2);
            last = r.ts_ns;
            n += 1;
        }
        assert_eq!(n, 300);
        let lost = m.lost_events();
        assert_eq!(lost[1].known, 5);
        assert_eq!(lost[0].known, 0);
    }

    #[test]
    fn for_each_record_stops_early_and_gives_formats() {
        let file = sample_file();
        let td = TraceDat::parse(file.as_slice()).unwrap();
        let mut n = 0;
        for_each_record(&td, file.as_slice(), |r, fmt| {
            assert_eq!(fmt.unwrap().name, "ev");
            assert_eq!(r.common_pid, 77);
            n += 1;
            if n == 10 {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert_eq!(n, 10);
    }

    #[test]
    fn every_truncation_is_an_error_with_an_offset_or_fewer_records() {
        let file = sample_file();
        for cut in (0..file.len()).step_by(97) {
            let part = &file[..cut];
            match TraceDat::parse(part) {
                Err(e) => assert!(e.to_string().contains("offset"), "{e}"),
                Ok(td) => {
                    for b in td.data_buffers() {
                        if let Ok(mut m) = Merger::new(&td, b, part) {
                            while let Ok(Some(_)) = m.next_record() {}
                        }
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn reader_never_panics_on_mutations(flips in proptest::collection::vec((0usize..14000, proptest::prelude::any::<u8>()), 1..8)) {
            let mut file = sample_file();
            for (at, v) in flips {
                let at = at % file.len();
                file[at] = v;
            }
            if let Ok(td) = TraceDat::parse(file.as_slice()) {
                let _ = count_events(&td, file.as_slice());
            }
        }
    }
}
