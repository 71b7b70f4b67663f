//! Where everything lives in guest-physical memory, and the x86 tables the guest needs for
//! 64-bit long mode: GDT, IDT, TSS (with its I/O permission bitmap) and identity-mapped page
//! tables. Guest-virtual == guest-physical everywhere.
//!
//! ```text
//! 0x0000_1000  GDT: null, kernel code 0x08, kernel data 0x10, user code 0x1b, user data 0x23, TSS 0x28
//! 0x0000_2000  IDT: 256 64-bit interrupt gates
//! 0x0000_3000  TSS of vCPU 0 (104 bytes) + I/O bitmap (8 KiB + 0xff); vCPU i's at tss_addr(i)
//! 0x0000_8000  guest code (32 KiB)
//! 0x0001_0000  PML4 roots (up to 64, one page each; all share one PDPT)
//! 0x0005_0000  PDPT, then 4 page directories: 4 GiB identity map with 2 MiB pages
//! 0x0005_6000  TSSs of vCPUs 1.. (12 KiB apart: each vCPU has its own RSP0)
//! 0x0010_0000  stacks: per vCPU 32 KiB (user stack below, kernel stack above)
//! 0x0020_0000  page tables of the 4 KiB region (if any), then the region (2 MiB aligned)
//! 0xd000_0000  MMIO_GPA: mapped by the guest page tables, backed by no memory slot
//! ```

use crate::memory::GuestMemory;
use crate::LabError;

pub(crate) const GDT_BASE: u64 = 0x1000;
pub(crate) const IDT_BASE: u64 = 0x2000;
const TSS_BASE: u64 = 0x3000;
const TSS_MORE: u64 = 0x5_6000;
const TSS_IOMAP_OFFSET: u64 = 104;
/// TSS limit: covers the 104-byte TSS, the 8192-byte bitmap and its trailing 0xff byte.
pub(crate) const TSS_LIMIT: u32 = (TSS_IOMAP_OFFSET + 8192) as u32;
pub(crate) const CODE_BASE: u64 = 0x8000;
pub(crate) const CODE_MAX: usize = 0x8000;
pub(crate) const ROOTS_BASE: u64 = 0x1_0000;
/// Most page-table roots a guest may switch among.
pub const MAX_ROOTS: u32 = 64;
const PDPT_BASE: u64 = 0x5_0000;
const PD_BASE: u64 = 0x5_1000;
pub(crate) const STACKS_BASE: u64 = 0x10_0000;
const STACK_STRIDE: u64 = 0x8000;
/// Most vCPUs one lab VM can have.
pub const MAX_VCPUS: u32 = 32;
pub(crate) const PT_BASE: u64 = 0x20_0000;
/// Guest-physical address that the page tables map but no memory slot backs: stores there
/// exit to userspace as MMIO.
pub const MMIO_GPA: u64 = 0xd000_0000;
/// Largest 4 KiB region (bytes) the lab maps, keeping all RAM below [`MMIO_GPA`].
pub(crate) const MAX_REGION_BYTES: u64 = 2 << 30;

pub(crate) const SEL_KCODE: u16 = 0x08;
pub(crate) const SEL_KDATA: u16 = 0x10;
pub(crate) const SEL_UCODE: u16 = 0x18 | 3;
pub(crate) const SEL_UDATA: u16 = 0x20 | 3;
pub(crate) const SEL_TSS: u16 = 0x28;

const PTE_P: u64 = 1;
const PTE_RW: u64 = 2;
const PTE_US: u64 = 4;
const PTE_PS: u64 = 0x80;

/// Guest-physical address of vCPU `i`'s TSS. Each vCPU loads its own (KVM_SET_SREGS sets the
/// TR base), so interrupts from CPL3 land on that vCPU's kernel stack.
pub(crate) fn tss_addr(vcpu: u32) -> u64 {
    if vcpu == 0 {
        TSS_BASE
    } else {
        TSS_MORE + u64::from(vcpu - 1) * 0x3000
    }
}

/// Guest-physical addresses of a vCPU's stacks (tops).
pub(crate) fn kernel_stack_top(vcpu: u32) -> u64 {
    STACKS_BASE + (u64::from(vcpu) + 1) * STACK_STRIDE
}

pub(crate) fn user_stack_top(vcpu: u32) -> u64 {
    kernel_stack_top(vcpu) - STACK_STRIDE / 2
}

/// Address of page-table root `i` (0-based).
pub(crate) fn root_addr(i: u32) -> u64 {
    ROOTS_BASE + u64::from(i) * 4096
}

/// The 4 KiB-mapped region of a VM: where it starts and how many pages it has.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Region {
    pub start: u64,
    pub pages: u64,
}

/// Plans memory: returns the region placement (if pages > 0) and the total RAM size.
pub(crate) fn plan(region_pages: u64) -> Result<(Option<Region>, u64), LabError> {
    if region_pages == 0 {
        return Ok((None, 4 << 20));
    }
    let bytes = region_pages
        .checked_mul(4096)
        .filter(|b| *b <= MAX_REGION_BYTES)
        .ok_or_else(|| {
            LabError::InvalidSpec(format!(
                "{region_pages} pages of 4 KiB is more than the lab maps ({} pages)",
                MAX_REGION_BYTES / 4096
            ))
        })?;
    let pts = bytes.div_ceil(2 << 20); // one page table per 2 MiB
    let start = (PT_BASE + pts * 4096).next_multiple_of(2 << 20);
    let end = (start + bytes).next_multiple_of(2 << 20);
    Ok((
        Some(Region {
            start,
            pages: region_pages,
        }),
        end,
    ))
}

fn gdt_entry(access: u8, flags: u8) -> u64 {
    // limit 0xfffff, base 0
    0xffff | (u64::from(access) << 40) | (0xf << 48) | (u64::from(flags) << 52)
}

/// Writes the GDT and one TSS per vCPU (RSP0 = its kernel stack; I/O bitmap allowing
/// `ports` at CPL3). The GDT's TSS descriptor names vCPU 0's; the others are only reached
/// through the TR base each vCPU gets from KVM_SET_SREGS (nothing executes LTR).
pub(crate) fn write_tables(mem: &GuestMemory, ports: &[u16], vcpus: u32) -> Result<(), LabError> {
    let mut gdt = [0u64; 7];
    gdt[1] = gdt_entry(0x9b, 0xa); // kernel code: P, DPL0, code exec/read accessed; G, L
    gdt[2] = gdt_entry(0x93, 0xc); // kernel data: P, DPL0, data rw accessed; G, D/B
    gdt[3] = gdt_entry(0xfb, 0xa); // user code: P, DPL3, code; G, L
    gdt[4] = gdt_entry(0xf3, 0xc); // user data: P, DPL3, data; G, D/B
                                   // 64-bit TSS descriptor (16 bytes): type 0xb (busy 64-bit TSS), P.
    let base = tss_addr(0);
    let limit = u64::from(TSS_LIMIT);
    gdt[5] = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x8b << 40)
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    gdt[6] = base >> 32;
    let bytes: Vec<u8> = gdt.iter().flat_map(|e| e.to_le_bytes()).collect();
    mem.write(GDT_BASE, &bytes)?;

    for i in 0..vcpus {
        let mut tss = vec![0u8; TSS_IOMAP_OFFSET as usize + 8192 + 1];
        tss[4..12].copy_from_slice(&kernel_stack_top(i).to_le_bytes()); // RSP0
        tss[102..104].copy_from_slice(&(TSS_IOMAP_OFFSET as u16).to_le_bytes());
        let map = &mut tss[TSS_IOMAP_OFFSET as usize..];
        map.fill(0xff); // every port denied, plus the trailing 0xff byte
        for &p in ports {
            map[usize::from(p / 8)] &= !(1 << (p % 8));
        }
        mem.write(tss_addr(i), &tss)?;
    }
    Ok(())
}

/// Writes one 64-bit interrupt gate (DPL0, kernel code segment) for `vector`.
pub(crate) fn write_idt_gate(mem: &GuestMemory, vector: u8, handler: u64) -> Result<(), LabError> {
    let mut e = [0u8; 16];
    e[0..2].copy_from_slice(&(handler as u16).to_le_bytes());
    e[2..4].copy_from_slice(&SEL_KCODE.to_le_bytes());
    e[5] = 0x8e; // P, DPL0, 64-bit interrupt gate (clears IF)
    e[6..8].copy_from_slice(&((handler >> 16) as u16).to_le_bytes());
    e[8..12].copy_from_slice(&((handler >> 32) as u32).to_le_bytes());
    mem.write(IDT_BASE + u64::from(vector) * 16, &e)
}

/// Identity-maps 0..4 GiB: 2 MiB pages, except the region, which gets 4 KiB PTEs without
/// accessed/dirty bits (as an OS's fresh pages). `roots` PML4 copies share the lower levels.
pub(crate) fn write_page_tables(
    mem: &GuestMemory,
    roots: u32,
    region: Option<Region>,
) -> Result<(), LabError> {
    let flags = PTE_P | PTE_RW | PTE_US;
    for r in 0..roots.max(1) {
        mem.write_u64(root_addr(r), PDPT_BASE | flags)?;
    }
    for i in 0..4u64 {
        mem.write_u64(PDPT_BASE + i * 8, (PD_BASE + i * 4096) | flags)?;
    }
    let mut pd = vec![0u8; 4 * 4096];
    let mut next_pt = PT_BASE;
    for (j, entry) in pd.chunks_exact_mut(8).enumerate() {
        let addr = (j as u64) << 21;
        let in_region = region.is_some_and(|r| {
            let end = r.start + r.pages * 4096;
            addr + (2 << 20) > r.start && addr < end
        });
        let value = if in_region {
            let pt = next_pt;
            next_pt += 4096;
            let mut table = vec![0u8; 4096];
            for (k, pte) in table.chunks_exact_mut(8).enumerate() {
                pte.copy_from_slice(&((addr + ((k as u64) << 12)) | flags).to_le_bytes());
            }
            mem.write(pt, &table)?;
            pt | flags
        } else {
            addr | flags | PTE_PS
        };
        entry.copy_from_slice(&value.to_le_bytes());
    }
    mem.write(PD_BASE, &pd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_do_not_overlap() {
        // TSSs stay clear of the code, the roots, the PDPT/PDs and the stacks.
        assert!(tss_addr(0) + u64::from(TSS_LIMIT) < CODE_BASE);
        assert!(tss_addr(1) >= PD_BASE + 4 * 4096);
        assert!(tss_addr(MAX_VCPUS - 1) + u64::from(TSS_LIMIT) < STACKS_BASE);
        assert!(root_addr(MAX_ROOTS) <= PDPT_BASE);
        assert!(kernel_stack_top(MAX_VCPUS - 1) <= PT_BASE);
    }

    #[test]
    fn region_plan_is_aligned_and_below_mmio() {
        let (r, size) = plan(4096).unwrap();
        let r = r.unwrap();
        assert_eq!(r.start % (2 << 20), 0);
        assert!(r.start >= PT_BASE + 8 * 4096);
        assert!(size >= r.start + 4096 * 4096);
        let (r, size) = plan(MAX_REGION_BYTES / 4096).unwrap();
        assert!(r.is_some() && size <= MMIO_GPA);
        assert!(plan(MAX_REGION_BYTES / 4096 + 1).is_err());
        assert!(plan(0).unwrap().0.is_none());
    }
}
