//! Function symbols of ELF files (64-bit little-endian), for naming user-space frames of
//! sampled stacks: `.symtab` when the file has one, else `.dynsym`. Reads only the section
//! headers and the symbol and string tables. Legacy Rust names (`_ZN...E`) are demangled.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

const SHT_SYMTAB: u32 = 2;
const SHT_DYNSYM: u32 = 11;
const PT_LOAD: u32 = 1;
const STT_FUNC: u8 = 2;

/// Function symbols of one file, and how its file offsets map to addresses.
#[derive(Debug, Default)]
pub struct ElfSymbols {
    /// (start address, size, name), sorted by start.
    funcs: Vec<(u64, u64, String)>,
    /// PT_LOAD segments: (file offset, file size, virtual address).
    loads: Vec<(u64, u64, u64)>,
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?))
}

fn read_at(f: &mut File, off: u64, len: u64) -> Option<Vec<u8>> {
    if len > (512 << 20) {
        return None;
    }
    f.seek(SeekFrom::Start(off)).ok()?;
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf).ok()?;
    Some(buf)
}

impl ElfSymbols {
    /// Reads a file's symbols; `None` when it is not a 64-bit little-endian ELF file or
    /// cannot be read.
    pub fn load(path: &Path) -> Option<ElfSymbols> {
        let mut f = File::open(path).ok()?;
        let eh = read_at(&mut f, 0, 64)?;
        if &eh[0..4] != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
            return None;
        }
        let phoff = u64_at(&eh, 32)?;
        let shoff = u64_at(&eh, 40)?;
        let phentsize = u64::from(u16_at(&eh, 54)?);
        let phnum = u64::from(u16_at(&eh, 56)?);
        let shentsize = u64::from(u16_at(&eh, 58)?);
        let shnum = u64::from(u16_at(&eh, 60)?);
        let mut out = ElfSymbols::default();
        let ph = read_at(&mut f, phoff, phentsize * phnum)?;
        for i in 0..phnum as usize {
            let p = &ph[i * phentsize as usize..];
            if u32_at(p, 0)? == PT_LOAD {
                out.loads
                    .push((u64_at(p, 8)?, u64_at(p, 32)?, u64_at(p, 16)?));
            }
        }
        let sh = read_at(&mut f, shoff, shentsize * shnum)?;
        let section = |i: usize| -> Option<(u32, u64, u64, u32, u64)> {
            let s = sh.get(i * shentsize as usize..)?;
            // type, offset, size, link, entsize
            Some((
                u32_at(s, 4)?,
                u64_at(s, 24)?,
                u64_at(s, 32)?,
                u32_at(s, 40)?,
                u64_at(s, 56)?,
            ))
        };
        let mut chosen = None;
        for i in 0..shnum as usize {
            match section(i) {
                Some(s) if s.0 == SHT_SYMTAB => {
                    chosen = Some(s);
                    break;
                }
                Some(s) if s.0 == SHT_DYNSYM => chosen = Some(s),
                _ => {}
            }
        }
        let (_, off, size, link, entsize) = chosen?;
        let (_, str_off, str_size, _, _) = section(link as usize)?;
        let syms = read_at(&mut f, off, size)?;
        let strs = read_at(&mut f, str_off, str_size)?;
        let entsize = if entsize == 0 { 24 } else { entsize as usize };
        for s in syms.chunks_exact(entsize) {
            let name = u32_at(s, 0)? as usize;
            let info = *s.get(4)?;
            let value = u64_at(s, 8)?;
            let sz = u64_at(s, 16)?;
            if info & 0xf != STT_FUNC || value == 0 {
                continue;
            }
            let raw = strs.get(name..)?;
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            let name = String::from_utf8_lossy(&raw[..end]);
            out.funcs.push((value, sz, demangle_legacy(&name)));
        }
        out.funcs.sort_by_key(|f| f.0);
        Some(out)
    }

    /// The function at `file_offset` of the file (as /proc/PID/maps gives it).
    pub fn lookup_file_offset(&self, file_offset: u64) -> Option<&str> {
        let &(p_off, p_filesz, p_vaddr) = self
            .loads
            .iter()
            .find(|&&(o, sz, _)| (o..o + sz).contains(&file_offset))?;
        let _ = p_filesz;
        let addr = file_offset - p_off + p_vaddr;
        let i = self.funcs.partition_point(|f| f.0 <= addr);
        let (start, size, name) = self.funcs.get(i.checked_sub(1)?)?;
        (size == &0 || addr < start + size).then_some(name.as_str())
    }
}

/// `_ZN3std2rt10lang_start17h0123456789abcdefE` to `std::rt::lang_start`; other names as
/// they are.
pub fn demangle_legacy(name: &str) -> String {
    let Some(mut rest) = name.strip_prefix("_ZN") else {
        return name.to_string();
    };
    let mut parts: Vec<&str> = Vec::new();
    while !rest.starts_with('E') {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(len) = rest[..digits].parse::<usize>() else {
            return name.to_string();
        };
        let Some(part) = rest.get(digits..digits + len) else {
            return name.to_string();
        };
        parts.push(part);
        rest = &rest[digits + len..];
    }
    if parts.last().is_some_and(|h| {
        h.len() == 17 && h.starts_with('h') && h[1..].bytes().all(|b| b.is_ascii_hexdigit())
    }) {
        parts.pop();
    }
    parts
        .iter()
        .map(|p| {
            p.replace("$LT$", "<")
                .replace("$GT$", ">")
                .replace("$u20$", " ")
                .replace("..", "::")
        })
        .collect::<Vec<_>>()
        .join("::")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demangles_legacy_rust() {
        assert_eq!(
            demangle_legacy("_ZN3std2rt10lang_start17h0123456789abcdefE"),
            "std::rt::lang_start"
        );
        assert_eq!(demangle_legacy("main"), "main");
        assert_eq!(demangle_legacy("_ZN3bad"), "_ZN3bad");
    }

    #[test]
    fn reads_our_own_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let syms = ElfSymbols::load(&exe).expect("test binary is ELF");
        assert!(!syms.funcs.is_empty());
        assert!(syms.funcs.iter().any(|f| f.2.contains("demangle_legacy")));
    }
}
