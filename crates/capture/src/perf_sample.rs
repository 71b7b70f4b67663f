//! System-wide stack sampling through perf_event_open: one cpu-clock event per online CPU
//! with kernel and user callchains, read from each event's mmap ring, symbolised (kernel
//! frames through /proc/kallsyms, user frames through the ELF symbols of the mapped files)
//! and folded into
//! `comm;outer;...;leaf weight` stacks like `stackcollapse-perf.pl --kernel` prints.
//!
//! Samples taken while a CPU runs guest code (misc = guest kernel/user) and samples without
//! a callchain fold to the bare thread name, as the reference collapser does for them.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

pub mod elf_symbols;

use elf_symbols::ElfSymbols;

/// Why sampling failed, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SampleError {
    /// perf_event_open refused.
    #[error("perf_event_open(cpu-clock, cpu {cpu}) failed: {source}; run as root or set /proc/sys/kernel/perf_event_paranoid to -1")]
    Open {
        /// The CPU.
        cpu: u32,
        /// The errno.
        #[source]
        source: std::io::Error,
    },
    /// mmap of the ring buffer failed.
    #[error("mmap of the perf ring buffer for cpu {cpu} failed: {source}; raise /proc/sys/kernel/perf_event_mlock_kb")]
    Mmap {
        /// The CPU.
        cpu: u32,
        /// The errno.
        #[source]
        source: std::io::Error,
    },
    /// A file under /proc or /sys could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// /proc/kallsyms shows no addresses.
    #[error("/proc/kallsyms shows only zero addresses: run as root or set /proc/sys/kernel/kptr_restrict to 0")]
    KallsymsHidden,
}

const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_CPU_CLOCK: u64 = 0;
const SAMPLE_IP: u64 = 1 << 0;
const SAMPLE_TID: u64 = 1 << 1;
const SAMPLE_TIME: u64 = 1 << 2;
const SAMPLE_CALLCHAIN: u64 = 1 << 5;
const SAMPLE_CPU: u64 = 1 << 7;
const SAMPLE_PERIOD: u64 = 1 << 8;
const FLAG_DISABLED: u64 = 1 << 0;
const FLAG_COMM: u64 = 1 << 9;
const FLAG_FREQ: u64 = 1 << 10;
const RECORD_LOST: u32 = 2;
const RECORD_COMM: u32 = 3;
const RECORD_SAMPLE: u32 = 9;
const MISC_CPUMODE_MASK: u16 = 7;
const MISC_GUEST_KERNEL: u16 = 4;
const MISC_GUEST_USER: u16 = 5;
/// Callchain entries at or above this are context markers (PERF_CONTEXT_MAX = -4095).
const CONTEXT_MAX: u64 = (-4095i64) as u64;
const CONTEXT_KERNEL: u64 = (-128i64) as u64;
const IOC_ENABLE: libc::c_ulong = 0x2400;
const IOC_DISABLE: libc::c_ulong = 0x2401;

/// `struct perf_event_attr` up to `config3` (PERF_ATTR_SIZE_VER8 + 8).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_freq: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved_2: u16,
    aux_sample_size: u32,
    reserved_3: u32,
    sig_data: u64,
    config3: u64,
}

/// The head of `struct perf_event_mmap_page` up to `data_size` (offsets from the kernel ABI).
const DATA_HEAD_OFFSET: usize = 1024;
const DATA_TAIL_OFFSET: usize = 1032;
const DATA_OFFSET_OFFSET: usize = 1040;
const DATA_SIZE_OFFSET: usize = 1048;

/// How to sample.
#[derive(Debug, Clone)]
pub struct SampleConfig {
    /// Samples per second per CPU.
    pub frequency: u64,
    /// Ring pages per CPU (a power of two).
    pub ring_pages: usize,
}

impl Default for SampleConfig {
    fn default() -> Self {
        SampleConfig {
            frequency: 999,
            ring_pages: 128,
        }
    }
}

/// One CPU's event: its fd and ring.
struct CpuRing {
    fd: libc::c_int,
    base: *mut u8,
    len: usize,
    page: usize,
}

impl Drop for CpuRing {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what mmap returned for this ring and nothing
        // borrows the mapping past this point; `fd` is our own open perf event fd.
        unsafe {
            libc::munmap(self.base.cast(), self.len);
            libc::close(self.fd);
        }
    }
}

/// What one sampling run saw.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// Folded stacks: `comm;outer;...;leaf` (kernel frames end in `_[k]`) and summed period
    /// in nanoseconds.
    pub stacks: Vec<(String, u64)>,
    /// Samples read.
    pub samples: u64,
    /// Samples taken in guest mode.
    pub guest_samples: u64,
    /// Records the kernel dropped because a ring was full.
    pub lost: u64,
}

/// A raw sample, before symbolisation.
struct RawSample {
    pid: u32,
    tid: u32,
    period: u64,
    guest: bool,
    chain: Vec<u64>,
}

/// Samples every online CPU for `duration` (cpu-clock at `cfg.frequency` Hz) and folds the
/// stacks.
pub fn sample_system(duration: Duration, cfg: &SampleConfig) -> Result<Profile, SampleError> {
    let kallsyms = Kallsyms::load()?;
    let cpus = online_cpus()?;
    let mut rings = Vec::with_capacity(cpus.len());
    for &cpu in &cpus {
        rings.push(open_cpu(cpu, cfg)?);
    }
    for r in &rings {
        // SAFETY: `r.fd` is a valid perf event fd we own; ENABLE takes no argument.
        unsafe { libc::ioctl(r.fd, IOC_ENABLE, 0) };
    }
    let mut raw = Vec::new();
    let mut comms: HashMap<u32, String> = HashMap::new();
    let mut lost = 0u64;
    let mut user = UserMaps::default();
    let start = Instant::now();
    while start.elapsed() < duration {
        std::thread::sleep(Duration::from_millis(20).min(duration.saturating_sub(start.elapsed())));
        for r in &rings {
            drain(r, &mut raw, &mut comms, &mut lost);
        }
        name_new_threads(&raw, &mut comms, &mut user);
    }
    for r in &rings {
        // SAFETY: as above; DISABLE takes no argument.
        unsafe { libc::ioctl(r.fd, IOC_DISABLE, 0) };
    }
    for r in &rings {
        drain(r, &mut raw, &mut comms, &mut lost);
    }
    name_new_threads(&raw, &mut comms, &mut user);
    drop(rings);
    Ok(fold(&raw, &comms, &kallsyms, &mut user, lost))
}

fn online_cpus() -> Result<Vec<u32>, SampleError> {
    let path = "/sys/devices/system/cpu/online";
    let text = std::fs::read_to_string(path).map_err(|source| SampleError::Read {
        path: path.into(),
        source,
    })?;
    Ok(parse_cpu_list(text.trim()))
}

/// `0-3,5,7-8` to CPU numbers.
pub fn parse_cpu_list(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

fn open_cpu(cpu: u32, cfg: &SampleConfig) -> Result<CpuRing, SampleError> {
    let attr = PerfEventAttr {
        type_: PERF_TYPE_SOFTWARE,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: PERF_COUNT_SW_CPU_CLOCK,
        sample_freq: cfg.frequency,
        sample_type: SAMPLE_IP
            | SAMPLE_TID
            | SAMPLE_TIME
            | SAMPLE_CPU
            | SAMPLE_PERIOD
            | SAMPLE_CALLCHAIN,
        flags: FLAG_DISABLED | FLAG_FREQ | FLAG_COMM,
        sample_max_stack: 127,
        ..PerfEventAttr::default()
    };
    // SAFETY: `attr` is a fully initialised perf_event_attr whose `size` matches its layout;
    // pid -1 with a cpu >= 0 is a system-wide per-CPU event; no group fd; no flags.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            -1 as libc::pid_t,
            cpu as libc::c_int,
            -1 as libc::c_int,
            0 as libc::c_ulong,
        )
    } as libc::c_int;
    if fd < 0 {
        return Err(SampleError::Open {
            cpu,
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let len = page * (1 + cfg.ring_pages.next_power_of_two());
    // SAFETY: mapping a fresh region (null hint) of `len` bytes of our own perf fd, shared and
    // read-write as the perf ABI requires for a ring whose tail we write.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        let source = std::io::Error::last_os_error();
        // SAFETY: `fd` is ours and not used after this.
        unsafe { libc::close(fd) };
        return Err(SampleError::Mmap { cpu, source });
    }
    Ok(CpuRing {
        fd,
        base: base.cast(),
        len,
        page,
    })
}

fn read_u64_at(r: &CpuRing, off: usize) -> u64 {
    debug_assert!(off + 8 <= r.len);
    // SAFETY: `off + 8 <= len` for every offset used (all inside the first, metadata page);
    // the page is mapped for the ring's lifetime; a volatile read because the kernel writes it.
    unsafe { std::ptr::read_volatile(r.base.add(off).cast::<u64>()) }
}

/// Reads every complete record in one ring, then releases the space to the kernel.
fn drain(r: &CpuRing, out: &mut Vec<RawSample>, comms: &mut HashMap<u32, String>, lost: &mut u64) {
    let head = read_u64_at(r, DATA_HEAD_OFFSET);
    // Pairs with the kernel's write barrier before it publishes data_head.
    fence(Ordering::Acquire);
    let tail = read_u64_at(r, DATA_TAIL_OFFSET);
    let (mut data_offset, mut data_size) = (
        read_u64_at(r, DATA_OFFSET_OFFSET) as usize,
        read_u64_at(r, DATA_SIZE_OFFSET) as usize,
    );
    if data_size == 0 {
        // Kernels before 4.1 leave these zero: the data pages follow the metadata page.
        data_offset = r.page;
        data_size = r.len - r.page;
    }
    if data_size == 0 || data_offset + data_size > r.len {
        return;
    }
    // SAFETY: data_offset < len (checked above), so the pointer stays inside the mapping.
    let start = unsafe { r.base.add(data_offset) };
    let data = Ring {
        base: start.cast_const(),
        size: data_size,
    };
    let mut pos = tail;
    let mut rec = Vec::new();
    while pos + 8 <= head {
        let at = (pos % data_size as u64) as usize;
        rec.clear();
        data.copy_wrapped(at, 8, &mut rec);
        let ty = u32::from_ne_bytes(rec[0..4].try_into().unwrap_or_default());
        let misc = u16::from_ne_bytes(rec[4..6].try_into().unwrap_or_default());
        let size = u16::from_ne_bytes(rec[6..8].try_into().unwrap_or_default()) as usize;
        if size < 8 || pos + size as u64 > head {
            break;
        }
        rec.clear();
        data.copy_wrapped(at, size, &mut rec);
        match ty {
            RECORD_SAMPLE => out.extend(parse_sample(&rec[8..], misc)),
            RECORD_COMM => {
                if let Some((tid, comm)) = parse_comm(&rec[8..]) {
                    comms.insert(tid, comm);
                }
            }
            RECORD_LOST if rec.len() >= 24 => {
                *lost += u64::from_ne_bytes(rec[16..24].try_into().unwrap_or_default());
            }
            _ => {}
        }
        pos += size as u64;
    }
    fence(Ordering::Release);
    // SAFETY: data_tail is inside the metadata page; we are the only writer; the release
    // fence orders our reads of the records before the kernel may overwrite them.
    unsafe { std::ptr::write_volatile(r.base.add(DATA_TAIL_OFFSET).cast::<u64>(), pos) };
}

/// The data area of a ring: only the bytes between tail and head are read, by copying, never
/// through a reference to memory the kernel may be writing.
struct Ring {
    base: *const u8,
    size: usize,
}

impl Ring {
    /// Appends `len` bytes starting at `at`, wrapping at the end of the area.
    fn copy_wrapped(&self, at: usize, len: usize, out: &mut Vec<u8>) {
        let len = len.min(self.size);
        let at = at % self.size;
        let first = len.min(self.size - at);
        out.reserve(len);
        let old = out.len();
        // SAFETY: `at + first <= size` and `len - first <= size`, so both source ranges lie in
        // the data area, which is mapped for the ring's lifetime; the kernel published these
        // bytes (they are before data_head) and does not reuse them before we advance
        // data_tail; the destination has `len` reserved bytes after `old`.
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.add(at), out.as_mut_ptr().add(old), first);
            std::ptr::copy_nonoverlapping(
                self.base,
                out.as_mut_ptr().add(old + first),
                len - first,
            );
            out.set_len(old + len);
        }
    }
}

fn u64_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(i..i + 8)?.try_into().ok()?))
}
fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// A PERF_RECORD_SAMPLE body for IP|TID|TIME|CPU|PERIOD|CALLCHAIN.
fn parse_sample(b: &[u8], misc: u16) -> Option<RawSample> {
    let _ip = u64_at(b, 0)?;
    let pid = u32_at(b, 8)?;
    let tid = u32_at(b, 12)?;
    let _time = u64_at(b, 16)?;
    let _cpu = u32_at(b, 24)?;
    let period = u64_at(b, 32)?;
    let nr = u64_at(b, 40)? as usize;
    let chain = (0..nr.min(512))
        .map(|k| u64_at(b, 48 + 8 * k))
        .collect::<Option<Vec<u64>>>()?;
    let mode = misc & MISC_CPUMODE_MASK;
    Some(RawSample {
        pid,
        tid,
        period,
        guest: mode == MISC_GUEST_KERNEL || mode == MISC_GUEST_USER,
        chain,
    })
}

/// A PERF_RECORD_COMM body: pid, tid, NUL-terminated name.
fn parse_comm(b: &[u8]) -> Option<(u32, String)> {
    let tid = u32_at(b, 4)?;
    let name = b.get(8..)?;
    let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
    Some((tid, String::from_utf8_lossy(&name[..end]).into_owned()))
}

fn name_new_threads(raw: &[RawSample], comms: &mut HashMap<u32, String>, user: &mut UserMaps) {
    for s in raw.iter().rev().take(4096) {
        user.note_pid(s.pid);
        if s.tid == 0 {
            comms.entry(0).or_insert_with(|| "swapper".into());
            continue;
        }
        if comms.contains_key(&s.tid) {
            continue;
        }
        let path = format!("/proc/{}/task/{}/comm", s.pid, s.tid);
        if let Ok(c) = std::fs::read_to_string(path) {
            comms.insert(s.tid, c.trim_end_matches('\n').to_string());
        }
    }
}

/// Kernel symbols from /proc/kallsyms, sorted by address.
pub struct Kallsyms {
    addrs: Vec<u64>,
    names: Vec<String>,
}

impl std::fmt::Debug for Kallsyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kallsyms({} symbols)", self.addrs.len())
    }
}

impl Kallsyms {
    /// Reads /proc/kallsyms.
    pub fn load() -> Result<Kallsyms, SampleError> {
        let path = "/proc/kallsyms";
        let text = std::fs::read_to_string(path).map_err(|source| SampleError::Read {
            path: path.into(),
            source,
        })?;
        let k = Kallsyms::parse(&text);
        if k.addrs.iter().all(|&a| a == 0) {
            return Err(SampleError::KallsymsHidden);
        }
        Ok(k)
    }

    /// Parses kallsyms text (`address type name [module]`), keeping text symbols.
    pub fn parse(text: &str) -> Kallsyms {
        let mut v: Vec<(u64, &str)> = text
            .lines()
            .filter_map(|l| {
                let mut it = l.split_ascii_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let ty = it.next()?;
                let name = it.next()?;
                matches!(ty, "T" | "t" | "W" | "w").then_some((addr, name))
            })
            .collect();
        v.sort_by_key(|&(a, _)| a);
        Kallsyms {
            addrs: v.iter().map(|&(a, _)| a).collect(),
            names: v.iter().map(|&(_, n)| n.to_string()).collect(),
        }
    }

    /// The symbol containing `addr` (the nearest one at or below it).
    pub fn lookup(&self, addr: u64) -> Option<&str> {
        let i = self.addrs.partition_point(|&a| a <= addr);
        (i > 0).then(|| self.names[i - 1].as_str())
    }
}

/// User-space frames: the function from the mapped file's ELF symbols, else the file name
/// of the mapping (`[libc.so.6]`). Mappings are read from /proc/PID/maps while sampling,
/// when the process is seen first (it may be gone by the end).
#[derive(Default)]
struct UserMaps {
    /// pid -> (start, end, file offset, path)
    maps: HashMap<u32, Vec<(u64, u64, u64, String)>>,
    elves: HashMap<String, Option<ElfSymbols>>,
}

impl UserMaps {
    fn note_pid(&mut self, pid: u32) {
        if pid == 0 || pid == u32::MAX {
            return;
        }
        self.maps.entry(pid).or_insert_with(|| {
            std::fs::read_to_string(format!("/proc/{pid}/maps"))
                .map(|t| parse_maps(&t))
                .unwrap_or_default()
        });
    }

    fn name(&mut self, pid: u32, addr: u64) -> (String, bool) {
        let Some(m) = self
            .maps
            .get(&pid)
            .and_then(|maps| {
                maps.iter()
                    .find(|(lo, hi, _, _)| (*lo..*hi).contains(&addr))
            })
            .cloned()
        else {
            return ("[unknown]".to_string(), false);
        };
        let (lo, _, off, path) = m;
        if path.starts_with('/') {
            let elf = self.elves.entry(path.clone()).or_insert_with(|| {
                let in_root = format!("/proc/{pid}/root{path}");
                ElfSymbols::load(Path::new(&in_root)).or_else(|| ElfSymbols::load(Path::new(&path)))
            });
            if let Some(f) = elf
                .as_ref()
                .and_then(|e| e.lookup_file_offset(addr - lo + off))
            {
                return (f.to_string(), true);
            }
        }
        let base = path.rsplit('/').next().unwrap_or(&path);
        let base = if base.is_empty() { "anon" } else { base };
        (format!("[{base}]"), false)
    }
}

fn parse_maps(text: &str) -> Vec<(u64, u64, u64, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_ascii_whitespace();
            let (lo, hi) = it.next()?.split_once('-')?;
            let _perms = it.next()?;
            let off = u64::from_str_radix(it.next()?, 16).ok()?;
            let path = it.nth(2).unwrap_or("");
            Some((
                u64::from_str_radix(lo, 16).ok()?,
                u64::from_str_radix(hi, 16).ok()?,
                off,
                path.to_string(),
            ))
        })
        .collect()
}

fn fold(
    raw: &[RawSample],
    comms: &HashMap<u32, String>,
    k: &Kallsyms,
    user: &mut UserMaps,
    lost: u64,
) -> Profile {
    let mut folded: BTreeMap<String, u64> = BTreeMap::new();
    let mut guest = 0;
    for s in raw {
        let comm = match comms.get(&s.tid) {
            Some(c) => c.replace(' ', "_"),
            // pid/tid -1: a task past its pid namespace detach, late in exit.
            None if s.tid == u32::MAX => "[exiting]".to_string(),
            None => format!("[{}]", s.tid),
        };
        let mut frames: Vec<String> = Vec::new();
        if s.guest {
            guest += 1;
        } else {
            let mut kernel = true;
            for &ip in &s.chain {
                if ip >= CONTEXT_MAX {
                    kernel = ip == CONTEXT_KERNEL;
                    continue;
                }
                if kernel {
                    frames.push(match k.lookup(ip) {
                        Some(n) => format!("{n}_[k]"),
                        None => "[unknown]_[k]".into(),
                    });
                } else {
                    // Frames without a symbol: consecutive ones of one mapping read as one.
                    let (f, named) = user.name(s.pid, ip);
                    if named || frames.last() != Some(&f) {
                        frames.push(f);
                    }
                }
            }
        }
        let mut key = comm;
        for f in frames.iter().rev() {
            key.push(';');
            key.push_str(&f.replace(';', ":"));
        }
        *folded.entry(key).or_default() += s.period.max(1);
    }
    Profile {
        stacks: folded.into_iter().collect(),
        samples: raw.len() as u64,
        guest_samples: guest,
        lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_and_kallsyms() {
        assert_eq!(parse_cpu_list("0-2,5"), vec![0, 1, 2, 5]);
        let k = Kallsyms::parse(
            "ffffffff81000000 T _text\nffffffff81000100 t foo\nffffffff81000200 D data\nffffffff81000300 T bar [kvm]\n",
        );
        assert_eq!(k.lookup(0xffffffff81000150), Some("foo"));
        assert_eq!(k.lookup(0xffffffff81000250), Some("foo"));
        assert_eq!(k.lookup(0xffffffff81000300), Some("bar"));
        assert_eq!(k.lookup(0x10), None);
        assert_eq!(std::mem::size_of::<PerfEventAttr>(), 136);
    }
}
