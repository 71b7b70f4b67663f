//! Just enough ELF to carry a dynamically linked program of another architecture into an
//! initramfs: its interpreter (`PT_INTERP`) and the libraries it names (`DT_NEEDED`), since
//! `ldd` cannot run a foreign binary. 64-bit little-endian only; bad input gives None.

/// What a 64-bit little-endian ELF file asks of the dynamic loader.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Dynamic {
    /// `PT_INTERP`, e.g. `/lib/ld-linux-aarch64.so.1`.
    pub interp: Option<String>,
    /// `DT_NEEDED` names in order.
    pub needed: Vec<String>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn cstr(b: &[u8], at: usize) -> Option<String> {
    let rest = b.get(at..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    String::from_utf8(rest[..end].to_vec()).ok()
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;

/// Parses `elf`; None when it is not a 64-bit little-endian ELF or its tables are cut off.
pub(crate) fn dynamic(elf: &[u8]) -> Option<Dynamic> {
    if elf.get(0..4)? != b"\x7fELF" || *elf.get(4)? != 2 || *elf.get(5)? != 1 {
        return None;
    }
    let phoff = usize::try_from(u64_at(elf, 0x20)?).ok()?;
    let phentsize = u16_at(elf, 0x36)? as usize;
    let phnum = u16_at(elf, 0x38)? as usize;
    if phentsize < 56 {
        return None;
    }
    // (vaddr, offset, filesz) of each PT_LOAD, to map DT_STRTAB's address to the file.
    let mut loads = Vec::new();
    let mut dyn_range = None;
    let mut out = Dynamic::default();
    for i in 0..phnum.min(256) {
        let p = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let kind = u32_at(elf, p)?;
        let offset = u64_at(elf, p + 8)?;
        let vaddr = u64_at(elf, p + 16)?;
        let filesz = u64_at(elf, p + 32)?;
        match kind {
            PT_LOAD => loads.push((vaddr, offset, filesz)),
            PT_DYNAMIC => dyn_range = Some((offset, filesz)),
            PT_INTERP => out.interp = cstr(elf, usize::try_from(offset).ok()?),
            _ => {}
        }
    }
    let Some((off, size)) = dyn_range else {
        return Some(out);
    };
    let (off, size) = (usize::try_from(off).ok()?, usize::try_from(size).ok()?);
    let mut strtab = None;
    let mut needed = Vec::new();
    for e in (off..off.checked_add(size)?).step_by(16) {
        let tag = u64_at(elf, e)?;
        let val = u64_at(elf, e + 8)?;
        match tag {
            DT_NULL => break,
            DT_NEEDED => needed.push(val),
            DT_STRTAB => strtab = Some(val),
            _ => {}
        }
    }
    let addr = strtab?;
    let (vaddr, offset, _) = loads
        .iter()
        .find(|(v, _, sz)| addr >= *v && addr < v.saturating_add(*sz))?;
    let base = usize::try_from(addr - vaddr + offset).ok()?;
    for n in needed {
        out.needed
            .push(cstr(elf, base.checked_add(usize::try_from(n).ok()?)?)?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF: one PT_LOAD at vaddr 0x1000 (file 0), PT_INTERP, PT_DYNAMIC with two
    /// DT_NEEDED.
    fn sample() -> Vec<u8> {
        let mut b = vec![0u8; 0x400];
        b[0..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&3u16.to_le_bytes());
        let ph = |b: &mut Vec<u8>, i: usize, kind: u32, off: u64, vaddr: u64, sz: u64| {
            let p = 0x40 + i * 56;
            b[p..p + 4].copy_from_slice(&kind.to_le_bytes());
            b[p + 8..p + 16].copy_from_slice(&off.to_le_bytes());
            b[p + 16..p + 24].copy_from_slice(&vaddr.to_le_bytes());
            b[p + 32..p + 40].copy_from_slice(&sz.to_le_bytes());
        };
        ph(&mut b, 0, PT_LOAD, 0, 0x1000, 0x400);
        ph(&mut b, 1, PT_INTERP, 0x200, 0x1200, 12);
        ph(&mut b, 2, PT_DYNAMIC, 0x300, 0x1300, 64);
        b[0x200..0x20c].copy_from_slice(b"/lib/ld.so.1");
        // strings at 0x280 (vaddr 0x1280)
        b[0x281..0x28a].copy_from_slice(b"libc.so.6");
        b[0x28b..0x294].copy_from_slice(b"libz.so.1");
        let d = |b: &mut Vec<u8>, i: usize, tag: u64, val: u64| {
            let p = 0x300 + i * 16;
            b[p..p + 8].copy_from_slice(&tag.to_le_bytes());
            b[p + 8..p + 16].copy_from_slice(&val.to_le_bytes());
        };
        d(&mut b, 0, DT_NEEDED, 1);
        d(&mut b, 1, DT_NEEDED, 11);
        d(&mut b, 2, DT_STRTAB, 0x1280);
        d(&mut b, 3, DT_NULL, 0);
        b
    }

    #[test]
    fn reads_interpreter_and_needed() {
        let d = dynamic(&sample()).unwrap();
        assert_eq!(d.interp.as_deref(), Some("/lib/ld.so.1"));
        assert_eq!(d.needed, ["libc.so.6", "libz.so.1"]);
    }

    #[test]
    fn never_panics_on_cut_or_foreign_files() {
        let s = sample();
        for cut in 0..s.len() {
            let _ = dynamic(&s[..cut]);
        }
        assert_eq!(dynamic(b"#!/bin/sh\n"), None);
        let mut be = s.clone();
        be[5] = 2;
        assert_eq!(dynamic(&be), None);
    }
}
