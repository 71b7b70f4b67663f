//! KVM binary statistics (KVM_GET_STATS_FD), read from the VM's and each vCPU's stats fd.
//!
//! The file layout (Documentation/virt/kvm/api.rst, "KVM_GET_STATS_FD"): a 24-byte header
//! (flags, name_size, num_desc, id_offset, desc_offset, data_offset; all u32), an id string,
//! `num_desc` descriptors of 16 bytes + `name_size` bytes of NUL-padded name (flags u32,
//! exponent i16, size u16, offset u32, bucket_size u32), and a data block of u64 values at
//! `data_offset + desc.offset`. The parsing functions here take byte slices and never panic.

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

use serde::Serialize;

/// What kind of quantity a statistic is (bits 0-3 of the descriptor flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StatKind {
    /// Only grows: report the delta.
    Cumulative,
    /// A current value.
    Instant,
    /// The highest value seen.
    Peak,
    /// Linear histogram.
    LinearHist,
    /// Log2 histogram.
    LogHist,
    /// A kind this parser does not know.
    Unknown(u32),
}

/// Unit of a statistic (bits 4-7 of the flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StatUnit {
    /// A plain count.
    None,
    /// Bytes.
    Bytes,
    /// Seconds (scaled by `10^exponent`).
    Seconds,
    /// CPU cycles.
    Cycles,
    /// A boolean.
    Boolean,
    /// A unit this parser does not know.
    Unknown(u32),
}

/// One statistic's descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatDesc {
    /// Name, e.g. `exits` or `halt_wakeup`.
    pub name: String,
    /// Kind.
    pub kind: StatKind,
    /// Unit.
    pub unit: StatUnit,
    /// Power of ten (or two, see flags) that scales the values.
    pub exponent: i16,
    /// Number of u64 values (1 for scalars, buckets for histograms).
    pub size: u16,
    /// Offset of the values in the data block.
    pub offset: u32,
    /// Width of each bucket of a linear histogram (0 otherwise).
    pub bucket_size: u32,
    /// The exponent is a power of two (KVM_STATS_BASE_POW2), not of ten.
    pub base2: bool,
}

/// Why a stats file could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StatsParseError {
    /// Fewer bytes than a structure needs.
    #[error("stats {what} truncated at byte offset {offset}: need {need} bytes, have {have}")]
    Truncated {
        /// Which structure.
        what: &'static str,
        /// Byte offset in the file.
        offset: u64,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// A header value is out of range.
    #[error("stats header field {field} = {value} is out of range")]
    BadHeader {
        /// Field name.
        field: &'static str,
        /// Its value.
        value: u32,
    },
}

/// The stats file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsHeader {
    /// Bytes reserved for each descriptor's name (including NUL).
    pub name_size: u32,
    /// Number of descriptors.
    pub num_desc: u32,
    /// Offset of the id string.
    pub id_offset: u32,
    /// Offset of the descriptors.
    pub desc_offset: u32,
    /// Offset of the data block.
    pub data_offset: u32,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_ne_bytes(a)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        a.copy_from_slice(s);
    }
    u16::from_ne_bytes(a)
}

/// Parses the 24-byte header.
pub fn parse_header(b: &[u8]) -> Result<StatsHeader, StatsParseError> {
    if b.len() < 24 {
        return Err(StatsParseError::Truncated {
            what: "header",
            offset: 0,
            need: 24,
            have: b.len(),
        });
    }
    let h = StatsHeader {
        name_size: u32_at(b, 4),
        num_desc: u32_at(b, 8),
        id_offset: u32_at(b, 12),
        desc_offset: u32_at(b, 16),
        data_offset: u32_at(b, 20),
    };
    if h.name_size == 0 || h.name_size > 4096 {
        return Err(StatsParseError::BadHeader {
            field: "name_size",
            value: h.name_size,
        });
    }
    if h.num_desc > 65536 {
        return Err(StatsParseError::BadHeader {
            field: "num_desc",
            value: h.num_desc,
        });
    }
    Ok(h)
}

/// Size in bytes of the descriptor block.
pub fn descriptors_len(h: &StatsHeader) -> usize {
    h.num_desc as usize * (16 + h.name_size as usize)
}

/// Parses the descriptor block (`b` starts at `desc_offset`).
pub fn parse_descriptors(b: &[u8], h: &StatsHeader) -> Result<Vec<StatDesc>, StatsParseError> {
    let stride = 16 + h.name_size as usize;
    let need = descriptors_len(h);
    if b.len() < need {
        return Err(StatsParseError::Truncated {
            what: "descriptors",
            offset: u64::from(h.desc_offset),
            need,
            have: b.len(),
        });
    }
    let mut out = Vec::with_capacity(h.num_desc as usize);
    for d in b[..need].chunks_exact(stride) {
        let flags = u32_at(d, 0);
        let name_bytes = &d[16..];
        let end = name_bytes
            .iter()
            .position(|c| *c == 0)
            .unwrap_or(name_bytes.len());
        out.push(StatDesc {
            name: String::from_utf8_lossy(&name_bytes[..end]).into_owned(),
            kind: match flags & 0xf {
                0 => StatKind::Cumulative,
                1 => StatKind::Instant,
                2 => StatKind::Peak,
                3 => StatKind::LinearHist,
                4 => StatKind::LogHist,
                k => StatKind::Unknown(k),
            },
            unit: match (flags >> 4) & 0xf {
                0 => StatUnit::None,
                1 => StatUnit::Bytes,
                2 => StatUnit::Seconds,
                3 => StatUnit::Cycles,
                4 => StatUnit::Boolean,
                u => StatUnit::Unknown(u),
            },
            exponent: u16_at(d, 4) as i16,
            size: u16_at(d, 6),
            offset: u32_at(d, 8),
            bucket_size: u32_at(d, 12),
            base2: (flags >> 8) & 0xf == 1,
        });
    }
    Ok(out)
}

/// Size in bytes of the data block the descriptors describe.
pub fn data_len(descs: &[StatDesc]) -> usize {
    descs
        .iter()
        .map(|d| d.offset as usize + 8 * d.size as usize)
        .max()
        .unwrap_or(0)
}

/// Reads each descriptor's values from the data block (`b` starts at `data_offset`).
pub fn parse_data(b: &[u8], descs: &[StatDesc]) -> Result<Vec<Vec<u64>>, StatsParseError> {
    let need = data_len(descs);
    if b.len() < need {
        return Err(StatsParseError::Truncated {
            what: "data",
            offset: 0,
            need,
            have: b.len(),
        });
    }
    Ok(descs
        .iter()
        .map(|d| {
            (0..d.size as usize)
                .map(|k| {
                    let at = d.offset as usize + 8 * k;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(&b[at..at + 8]);
                    u64::from_ne_bytes(a)
                })
                .collect()
        })
        .collect())
}

/// An open stats fd with its parsed schema.
#[derive(Debug)]
pub struct StatsFile {
    file: File,
    id: String,
    header: StatsHeader,
    descs: Vec<StatDesc>,
}

/// One reading of a stats fd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// The kernel's id string, e.g. `kvm-1234` or `kvm-1234/vcpu-0`.
    pub id: String,
    /// Each statistic with its values (one value for scalars).
    pub stats: Vec<(StatDesc, Vec<u64>)>,
}

/// How one statistic changed over a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatDelta {
    /// Statistic name.
    pub name: String,
    /// Kind.
    pub kind: StatKind,
    /// Value before (sum of buckets for histograms).
    pub before: u64,
    /// Value after.
    pub after: u64,
}

impl StatDelta {
    /// `after - before` (negative for a decreasing instant value).
    pub fn delta(&self) -> i128 {
        i128::from(self.after) - i128::from(self.before)
    }
}

impl StatsSnapshot {
    /// The value of a scalar statistic.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.stats
            .iter()
            .find(|(d, _)| d.name == name)
            .map(|(_, v)| v.iter().copied().fold(0u64, u64::wrapping_add))
    }

    /// Every statistic of `self` (before) against `after`, in descriptor order.
    pub fn deltas(&self, after: &StatsSnapshot) -> Vec<StatDelta> {
        self.stats
            .iter()
            .filter_map(|(d, v)| {
                let before = v.iter().copied().fold(0u64, u64::wrapping_add);
                let a = after.get(&d.name)?;
                Some(StatDelta {
                    name: d.name.clone(),
                    kind: d.kind,
                    before,
                    after: a,
                })
            })
            .collect()
    }
}

const KVM_GET_STATS_FD: libc::c_ulong = 0xaece; // _IO(KVMIO, 0xce)

impl StatsFile {
    /// Opens the stats fd of a VM or vCPU fd.
    pub(crate) fn open(fd: std::os::fd::RawFd, what: &str) -> Result<StatsFile, crate::LabError> {
        let err = |source: io::Error| crate::LabError::Stats {
            what: what.to_string(),
            source,
        };
        // SAFETY: `fd` is a live KVM VM or vCPU fd owned by the caller; KVM_GET_STATS_FD takes
        // no argument and returns a new fd or -1.
        let rc = unsafe { libc::ioctl(fd, KVM_GET_STATS_FD as _, 0) };
        if rc < 0 {
            return Err(err(io::Error::last_os_error()));
        }
        // SAFETY: rc is a fresh fd returned by the kernel that nothing else owns.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(rc) });
        StatsFile::from_file(file, what)
    }

    /// Reads the schema of an open stats file (read with `pread` only: a descriptor taken
    /// from another process shares its file offset, which must not move).
    pub fn from_file(file: File, what: &str) -> Result<StatsFile, crate::LabError> {
        let err = |source: io::Error| crate::LabError::Stats {
            what: what.to_string(),
            source,
        };
        let mut hb = [0u8; 24];
        file.read_exact_at(&mut hb, 0).map_err(err)?;
        let parse = |e: StatsParseError| err(io::Error::new(io::ErrorKind::InvalidData, e));
        let header = parse_header(&hb).map_err(parse)?;
        let mut idb = vec![0u8; header.name_size as usize];
        file.read_exact_at(&mut idb, u64::from(header.id_offset))
            .map_err(err)?;
        let end = idb.iter().position(|c| *c == 0).unwrap_or(idb.len());
        let id = String::from_utf8_lossy(&idb[..end]).into_owned();
        let mut db = vec![0u8; descriptors_len(&header)];
        file.read_exact_at(&mut db, u64::from(header.desc_offset))
            .map_err(err)?;
        let descs = parse_descriptors(&db, &header).map_err(parse)?;
        Ok(StatsFile {
            file,
            id,
            header,
            descs,
        })
    }

    /// The kernel's id string (`kvm-1234`, `kvm-1234/vcpu-0`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The descriptors.
    pub fn descriptors(&self) -> &[StatDesc] {
        &self.descs
    }

    /// Reads the current values.
    pub fn read(&self) -> Result<StatsSnapshot, crate::LabError> {
        let err = |source: io::Error| crate::LabError::Stats {
            what: self.id.clone(),
            source,
        };
        let mut b = vec![0u8; data_len(&self.descs)];
        self.file
            .read_exact_at(&mut b, u64::from(self.header.data_offset))
            .map_err(err)?;
        let values = parse_data(&b, &self.descs)
            .map_err(|e| err(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        Ok(StatsSnapshot {
            id: self.id.clone(),
            stats: self.descs.iter().cloned().zip(values).collect(),
        })
    }
}

/// True when a descriptor's link names a KVM stats file: `anon_inode:kvm-vm-stats` or
/// `anon_inode:kvm-vcpu-stats:N` (N is the vCPU id).
pub fn is_stats_link(link: &str) -> bool {
    link == "anon_inode:kvm-vm-stats" || link.starts_with("anon_inode:kvm-vcpu-stats")
}

/// The KVM stats fds another process (a VMM) holds open, duplicated into this process with
/// pidfd_getfd(2) (Linux 5.6+, needs PTRACE_MODE_ATTACH on it: root or the same user under
/// ptrace_scope 0). KVM refuses KVM_GET_STATS_FD from outside the VM's own process, so only
/// stats fds the VMM already opened (QEMU's query-stats, this lab) can be read. Returns
/// (fd number in the VMM, stats file); fds that cannot be taken are skipped.
pub fn foreign_stats_files(pid: i32) -> Vec<(i32, StatsFile)> {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let fds: Vec<i32> = rd
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path())
                .ok()
                .is_some_and(|l| is_stats_link(&l.to_string_lossy()))
        })
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    if fds.is_empty() {
        return Vec::new();
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        return Vec::new();
    }
    // SAFETY: pidfd is a fresh fd from the kernel that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    let mut out = Vec::new();
    for fd in fds {
        use std::os::fd::AsRawFd;
        // SAFETY: pidfd_getfd takes the pidfd (alive for this call), a fd number of that
        // process and flags; it returns a new fd of ours or -1.
        let got = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
        if got < 0 {
            continue;
        }
        // SAFETY: got is a fresh fd from the kernel that nothing else owns.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(got as i32) });
        if let Ok(f) = StatsFile::from_file(file, &format!("pid {pid} fd {fd}")) {
            out.push((fd, f));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        // header, id "kvm-1", two descriptors (name_size 8), data
        let name_size = 8u32;
        let mut b = Vec::new();
        for v in [0u32, name_size, 2, 24, 32, 32 + 2 * 24] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(b"kvm-1\0\0\0");
        for (flags, size, offset, name) in [
            (0u32, 1u16, 0u32, b"exits\0\0\0"),
            (1, 1, 8, b"pages\0\0\0"),
        ] {
            b.extend_from_slice(&flags.to_ne_bytes());
            b.extend_from_slice(&0i16.to_ne_bytes());
            b.extend_from_slice(&size.to_ne_bytes());
            b.extend_from_slice(&offset.to_ne_bytes());
            b.extend_from_slice(&0u32.to_ne_bytes());
            b.extend_from_slice(name);
        }
        b.extend_from_slice(&7u64.to_ne_bytes());
        b.extend_from_slice(&3u64.to_ne_bytes());
        b
    }

    #[test]
    fn parses_a_stats_file() {
        let b = sample();
        let h = parse_header(&b).unwrap();
        assert_eq!(h.num_desc, 2);
        let d = parse_descriptors(&b[h.desc_offset as usize..], &h).unwrap();
        assert_eq!(d[0].name, "exits");
        assert_eq!(d[1].kind, StatKind::Instant);
        let v = parse_data(&b[h.data_offset as usize..], &d).unwrap();
        assert_eq!(v, vec![vec![7], vec![3]]);
    }

    #[test]
    fn never_panics_on_truncated_or_garbage_input() {
        let b = sample();
        for cut in 0..b.len() {
            let s = &b[..cut];
            if let Ok(h) = parse_header(s) {
                let rest = s.get(h.desc_offset as usize..).unwrap_or(&[]);
                if let Ok(d) = parse_descriptors(rest, &h) {
                    let _ = parse_data(s.get(h.data_offset as usize..).unwrap_or(&[]), &d);
                }
            }
        }
        // Pseudo-random garbage (xorshift), deterministic.
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..2000 {
            let mut g = vec![0u8; (x % 300) as usize];
            for byte in g.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *byte = x as u8;
            }
            if let Ok(h) = parse_header(&g) {
                if let Ok(d) = parse_descriptors(g.get(24..).unwrap_or(&[]), &h) {
                    let _ = parse_data(&g, &d);
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            if let Ok(h) = parse_header(&b) {
                let descs = parse_descriptors(b.get(h.desc_offset as usize..).unwrap_or(&[]), &h);
                if let Ok(d) = descs {
                    let _ = parse_data(b.get(h.data_offset as usize..).unwrap_or(&[]), &d);
                }
            }
            let _ = parse_descriptors(&b, &StatsHeader { name_size: 8, num_desc: 3, id_offset: 0, desc_offset: 0, data_offset: 0 });
        }

        #[test]
        fn truncating_a_valid_file_is_an_error_not_a_panic(cut in 0usize..120) {
            let b = sample();
            let s = &b[..cut.min(b.len())];
            if let Ok(h) = parse_header(s) {
                if let Ok(d) = parse_descriptors(s.get(h.desc_offset as usize..).unwrap_or(&[]), &h) {
                    let r = parse_data(s.get(h.data_offset as usize..).unwrap_or(&[]), &d);
                    proptest::prop_assert!(r.is_err() || s.len() == b.len());
                }
            }
        }
    }
}
