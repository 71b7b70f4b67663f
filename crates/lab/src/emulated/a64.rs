//! Tiny static arm64 Linux programs for the nested guest, where a busybox shell loop is too
//! slow to make a storm (each iteration of `while ...; do usleep 100; done` costs ~5 ms under
//! nested emulation). Hand-encoded A64 instructions in a one-segment ELF: no cross compiler.

/// `clock_nanosleep(CLOCK_MONOTONIC, 0, {0, nsec}, NULL)` in an endless loop: one hrtimer armed
/// and fired per iteration, each a virtual timer (CNTV) interrupt. The scenario kills it.
pub fn sleep_loop(nsec: u32) -> Vec<u8> {
    const CLOCK_NANOSLEEP: u32 = 115;
    let code = [
        movz(0, 1),               // x0 = CLOCK_MONOTONIC
        movz(1, 0),               // x1 = flags (relative)
        adr(2, 24),               // x2 = &ts (at +24 from here)
        movz(3, 0),               // x3 = NULL (no remainder)
        movz(8, CLOCK_NANOSLEEP), // x8 = syscall number
        SVC,                      // svc #0
        b(-24),                   // back to the start
        NOP,                      // ts is 8-byte aligned after it
    ];
    let mut text: Vec<u8> = code.iter().flat_map(|w| w.to_le_bytes()).collect();
    text.extend_from_slice(&0u64.to_le_bytes()); // tv_sec
    text.extend_from_slice(&u64::from(nsec).to_le_bytes()); // tv_nsec
    static_elf(&text)
}

/// Two processes, pinned to CPU 0 and CPU 1, pass one byte back and forth over two pipes in
/// an endless loop: every read sleeps on an empty pipe, so every write wakes the other CPU
/// remotely (a reschedule or `sched_ttwu_pending` IPI). The scenario kills both.
pub fn ping_pong() -> Vec<u8> {
    const PIPE2: u32 = 59;
    const READ: u32 = 63;
    const WRITE: u32 = 64;
    const SCHED_SETAFFINITY: u32 = 122;
    const CLONE: u32 = 220;
    const SIGCHLD: u32 = 17;
    // Data after the code: fds[4] (0..16), CPU mask {0} (16), CPU mask {1} (24), byte (32).
    let io = |fd_reg: u32, nr: u32| [or(0, fd_reg), add(1, 19, 32), movz(2, 1), movz(8, nr), SVC];
    let pin = |mask_at: u32| {
        [
            movz(0, 0),
            movz(1, 8),
            add(2, 19, mask_at),
            movz(8, SCHED_SETAFFINITY),
            SVC,
        ]
    };
    let mut c: Vec<u32> = Vec::new();
    c.push(0); // adr x19, data: patched below
    c.extend([or(0, 19), movz(1, 0), movz(8, PIPE2), SVC]);
    c.extend([add(0, 19, 8), movz(1, 0), movz(8, PIPE2), SVC]);
    c.extend([
        movz(0, SIGCHLD),
        movz(1, 0),
        movz(2, 0),
        movz(3, 0),
        movz(4, 0),
        movz(8, CLONE),
        SVC,
    ]);
    let cbz_at = c.len();
    c.push(0); // cbz x0, child: patched below
               // One side: pinned to the CPU whose mask is at `mask_at`, then forever the `first` and the
               // `second` syscall, each given as (offset of its fd in fds, syscall number).
    let side = |c: &mut Vec<u32>, mask_at: u32, first: (u32, u32), second: (u32, u32)| {
        c.extend(pin(mask_at));
        c.extend([ldr_w(20, 19, first.0), ldr_w(21, 19, second.0)]);
        let top = c.len();
        c.extend(io(20, first.1));
        c.extend(io(21, second.1));
        c.push(b(4 * (top as i32 - c.len() as i32)));
    };
    // Parent, on CPU 0: write fds[1], read fds[2].
    side(&mut c, 16, (4, WRITE), (8, READ));
    // Child, on CPU 1: read fds[0], write fds[3].
    let child = c.len();
    side(&mut c, 24, (0, READ), (12, WRITE));
    if c.len() % 2 == 1 {
        c.push(NOP); // data 8-byte aligned
    }
    let data = c.len();
    c[0] = adr(19, 4 * data as i32);
    c[cbz_at] = cbz(0, 4 * (child as i32 - cbz_at as i32));
    let mut text: Vec<u8> = c.iter().flat_map(|w| w.to_le_bytes()).collect();
    text.extend_from_slice(&[0; 16]); // fds
    text.extend_from_slice(&1u64.to_le_bytes()); // CPU 0
    text.extend_from_slice(&2u64.to_le_bytes()); // CPU 1
    text.extend_from_slice(&[0; 8]); // the byte passed
    static_elf(&text)
}

/// The hardware events `pmu_storm` opens (`PERF_TYPE_HARDWARE` configs): cycles,
/// instructions, branch-instructions, then cycles three more times (QEMU's emulated PMU counts
/// few event kinds; cycles always works and can sit on any counter).
pub const PMU_STORM_EVENTS: [u64; 6] = [0, 1, 4, 0, 0, 0];
/// `perf_event_attr.size` as `pmu_storm` lays it out (PERF_ATTR_SIZE_VER7).
pub const PERF_ATTR_SIZE: usize = 128;

/// `perf_event_open` of each of [`PMU_STORM_EVENTS`] on this task (pid 0, any CPU, no group),
/// sampling every `period` events (PERF_SAMPLE_IP | PERF_SAMPLE_TID, no ring buffer: the
/// samples are dropped, the overflow interrupts are not), then an endless loop, so that the
/// counters overflow and the kernel handles PMU interrupts and reprograms the counters all the
/// time. A failed open is skipped; before the loop the program writes what each open returned
/// (the descriptor or -errno, little-endian i64s) to its standard output. The scenario kills it.
pub fn pmu_storm(period: u64) -> Vec<u8> {
    const PERF_EVENT_OPEN: u32 = 241;
    const WRITE: u32 = 64;
    // Data after the code: the attrs, then one i64 per open (its return value).
    const RETS: usize = PMU_STORM_EVENTS.len() * PERF_ATTR_SIZE;
    let mut c: Vec<u32> = vec![0]; // adr x19, attrs: patched below
    for i in 0..PMU_STORM_EVENTS.len() {
        c.extend([
            add(0, 19, (i * PERF_ATTR_SIZE) as u32), // x0 = &attr[i]
            movz(1, 0),                              // x1 = pid 0: this task
            movn(2, 0),                              // x2 = cpu -1: any
            movn(3, 0),                              // x3 = group_fd -1: its own group
            movz(4, 0),                              // x4 = flags
            movz(8, PERF_EVENT_OPEN),
            SVC,
            str_x(0, 19, (RETS + 8 * i) as u32), // rets[i] = fd or -errno
        ]);
    }
    // write(1, rets, 8 * n): what each open returned, for the scenario to read
    c.extend([
        movz(0, 1),
        add(1, 19, RETS as u32),
        movz(2, 8 * PMU_STORM_EVENTS.len() as u32),
        movz(8, WRITE),
        SVC,
    ]);
    c.push(b(0)); // spin here
    if c.len() % 2 == 1 {
        c.push(NOP); // attrs 8-byte aligned
    }
    c[0] = adr(19, 4 * c.len() as i32);
    let mut text: Vec<u8> = c.iter().flat_map(|w| w.to_le_bytes()).collect();
    for config in PMU_STORM_EVENTS {
        let mut a = [0u8; PERF_ATTR_SIZE];
        a[0..4].copy_from_slice(&0u32.to_le_bytes()); // type PERF_TYPE_HARDWARE
        a[4..8].copy_from_slice(&(PERF_ATTR_SIZE as u32).to_le_bytes()); // size
        a[8..16].copy_from_slice(&config.to_le_bytes());
        a[16..24].copy_from_slice(&period.to_le_bytes()); // sample_period
        a[24..32].copy_from_slice(&3u64.to_le_bytes()); // sample_type IP | TID
                                                        // read_format 0; flags 0: enabled, user + kernel, not inherited
        text.extend_from_slice(&a);
    }
    text.extend_from_slice(&[0; 8 * PMU_STORM_EVENTS.len()]); // rets
    static_elf(&text)
}

const SVC: u32 = 0xd400_0001;
const NOP: u32 = 0xd503_201f;

/// ORR Xd, XZR, Xm (MOV Xd, Xm).
fn or(rd: u32, rm: u32) -> u32 {
    0xaa00_03e0 | ((rm & 31) << 16) | (rd & 31)
}

/// ADD Xd, Xn, #imm12.
fn add(rd: u32, rn: u32, imm12: u32) -> u32 {
    0x9100_0000 | ((imm12 & 0xfff) << 10) | ((rn & 31) << 5) | (rd & 31)
}

/// LDR Wt, [Xn, #offset] (a multiple of 4).
fn ldr_w(rt: u32, rn: u32, offset: u32) -> u32 {
    0xb940_0000 | (((offset / 4) & 0xfff) << 10) | ((rn & 31) << 5) | (rt & 31)
}

/// STR Xt, [Xn, #offset] (a multiple of 8).
fn str_x(rt: u32, rn: u32, offset: u32) -> u32 {
    0xf900_0000 | (((offset / 8) & 0xfff) << 10) | ((rn & 31) << 5) | (rt & 31)
}

/// CBZ Xt, #offset (bytes from this instruction).
fn cbz(rt: u32, offset: i32) -> u32 {
    0xb400_0000 | (((offset >> 2) as u32 & 0x7_ffff) << 5) | (rt & 31)
}

/// MOVN Xd, #imm16 (Xd = !imm16: `movn(d, 0)` is -1).
fn movn(rd: u32, imm16: u32) -> u32 {
    0x9280_0000 | ((imm16 & 0xffff) << 5) | (rd & 31)
}

/// MOVZ Xd, #imm16.
fn movz(rd: u32, imm16: u32) -> u32 {
    0xd280_0000 | ((imm16 & 0xffff) << 5) | (rd & 31)
}

/// ADR Xd, #offset (bytes from this instruction).
fn adr(rd: u32, offset: i32) -> u32 {
    let imm = offset as u32 & 0x1f_ffff;
    0x1000_0000 | ((imm & 3) << 29) | ((imm >> 2) << 5) | (rd & 31)
}

/// B #offset (bytes from this instruction, a multiple of 4).
fn b(offset: i32) -> u32 {
    0x1400_0000 | ((offset >> 2) as u32 & 0x03ff_ffff)
}

/// Where the program is loaded.
const BASE: u64 = 0x40_0000;

/// A static, non-PIE ELF64 for AArch64 whose one read+write+execute segment holds the headers and
/// `text`, entered at the first byte of `text`.
fn static_elf(text: &[u8]) -> Vec<u8> {
    const EHDR: u64 = 64;
    const PHDR: u64 = 56;
    let size = EHDR + PHDR + text.len() as u64;
    let mut e = Vec::with_capacity(size as usize);
    e.extend_from_slice(b"\x7fELF\x02\x01\x01\0"); // 64-bit, little-endian, version 1, SysV
    e.extend_from_slice(&[0; 8]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
    e.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    e.extend_from_slice(&(BASE + EHDR + PHDR).to_le_bytes()); // e_entry
    e.extend_from_slice(&EHDR.to_le_bytes()); // e_phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    e.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    e.extend_from_slice(&(EHDR as u16).to_le_bytes());
    e.extend_from_slice(&(PHDR as u16).to_le_bytes());
    e.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    e.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    e.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    e.extend_from_slice(&7u32.to_le_bytes()); // PF_R | PF_W | PF_X: the data follows the code
    e.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    e.extend_from_slice(&BASE.to_le_bytes()); // p_vaddr
    e.extend_from_slice(&BASE.to_le_bytes()); // p_paddr
    e.extend_from_slice(&size.to_le_bytes()); // p_filesz
    e.extend_from_slice(&size.to_le_bytes()); // p_memsz
    e.extend_from_slice(&0x1_0000u64.to_le_bytes()); // p_align
    e.extend_from_slice(text);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_instructions_as_the_architecture_manual_does() {
        assert_eq!(movz(0, 1), 0xd280_0020);
        assert_eq!(movz(8, 115), 0xd280_0e68);
        assert_eq!(adr(2, 24), 0x1000_00c2);
        assert_eq!(b(-24), 0x17ff_fffa);
        assert_eq!(or(0, 19), 0xaa13_03e0);
        assert_eq!(add(2, 19, 16), 0x9100_4262);
        assert_eq!(ldr_w(20, 19, 4), 0xb940_0674);
        assert_eq!(cbz(0, 8), 0xb400_0040);
        assert_eq!(movn(2, 0), 0x9280_0002); // mov x2, #-1
        assert_eq!(movn(3, 1), 0x9280_0023); // mov x3, #-2
        assert_eq!(b(0), 0x1400_0000);
        assert_eq!(str_x(0, 19, 768), 0xf901_8260); // str x0, [x19, #768]
    }

    #[test]
    fn the_program_is_a_static_aarch64_executable() {
        let p = sleep_loop(50_000);
        assert_eq!(&p[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([p[18], p[19]]), 183);
        // No interpreter, no libraries: the loader maps it as it is.
        let d = super::super::elf::dynamic(&p).expect("an ELF");
        assert_eq!(d.interp, None);
        assert!(d.needed.is_empty());
        // The timespec's nanoseconds are the last 8 bytes, 8-byte aligned in memory.
        assert_eq!(&p[p.len() - 8..], &50_000u64.to_le_bytes());
        assert_eq!((BASE as usize + p.len() - 16) % 8, 0);
        let q = ping_pong();
        assert!(super::super::elf::dynamic(&q).is_some());
        // Data (fds, two CPU masks, the byte) is 40 bytes at the end, 8-byte aligned.
        assert_eq!((BASE as usize + q.len() - 40) % 8, 0);
        assert_eq!(
            &q[q.len() - 24..q.len() - 8],
            &[1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn pmu_storm_opens_each_event_then_spins() {
        let p = pmu_storm(10_000);
        assert!(super::super::elf::dynamic(&p).is_some());
        let n = PMU_STORM_EVENTS.len();
        let data = &p[p.len() - n * (PERF_ATTR_SIZE + 8)..];
        assert_eq!((BASE as usize + p.len() - data.len()) % 8, 0);
        let (attrs, rets) = data.split_at(n * PERF_ATTR_SIZE);
        assert!(rets.iter().all(|&x| x == 0));
        let word = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
        for (i, a) in attrs.chunks(PERF_ATTR_SIZE).enumerate() {
            assert_eq!(&a[0..8], &[0, 0, 0, 0, 128, 0, 0, 0], "type 0, size 128");
            assert_eq!(word(a, 8), PMU_STORM_EVENTS[i]);
            assert_eq!(word(a, 16), 10_000);
            assert!(a[40..].iter().all(|&x| x == 0), "enabled, no exclusions");
        }
        let code: Vec<u32> = p[120..p.len() - data.len()]
            .chunks(4)
            .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
            .collect();
        // adr x19 to the attrs, then per event: x0 = attr, x1 = 0, x2 = x3 = -1, x4 = 0, x8 =
        // 241, svc, store x0; then write(1, rets, 48) and the loop.
        assert_eq!(code[0], adr(19, 4 * code.len() as i32));
        assert_eq!(code.iter().filter(|&&w| w == SVC).count(), n + 1);
        assert_eq!(code.iter().filter(|&&w| w == movz(8, 241)).count(), n);
        assert_eq!(
            code[1..9],
            [
                add(0, 19, 0),
                movz(1, 0),
                movn(2, 0),
                movn(3, 0),
                movz(4, 0),
                movz(8, 241),
                SVC,
                str_x(0, 19, 768)
            ]
        );
        assert_eq!(code[9], add(0, 19, 128));
        assert_eq!(code[8 * n], str_x(0, 19, 768 + 8 * (n as u32 - 1)));
        assert_eq!(
            code[8 * n + 1..8 * n + 6],
            [movz(0, 1), add(1, 19, 768), movz(2, 48), movz(8, 64), SVC]
        );
        assert_eq!(code[8 * n + 6], b(0));
    }
}
