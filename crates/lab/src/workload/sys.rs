//! Thin wrappers over the system calls the workloads use, each with its SAFETY argument.

use std::io;
use std::time::Duration;

/// The calling thread's id.
pub fn gettid() -> u32 {
    // SAFETY: gettid takes no arguments, cannot fail and touches no memory.
    let tid = unsafe { libc::gettid() };
    tid as u32
}

/// The CPUs the calling thread may run on.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; all-zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t and the size passed is its size.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the capacity of `set`.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Pins the calling thread to one CPU.
pub fn pin_to(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: cpu_set_t is plain data; all-zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` was checked to be below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; 0 means the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// CLOCK_MONOTONIC now.
pub fn monotonic() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts
}

pub fn add(ts: libc::timespec, d: Duration) -> libc::timespec {
    let mut sec = ts.tv_sec + d.as_secs() as libc::time_t;
    let mut nsec = ts.tv_nsec + d.subsec_nanos() as libc::c_long;
    if nsec >= 1_000_000_000 {
        sec += 1;
        nsec -= 1_000_000_000;
    }
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

pub fn to_timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

/// Sleeps until the absolute CLOCK_MONOTONIC time `until` (one hrtimer per call).
pub fn sleep_until(until: &libc::timespec) -> io::Result<()> {
    loop {
        // SAFETY: `until` points to a valid timespec; the remaining-time pointer may be null
        // with TIMER_ABSTIME.
        let rc = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                until,
                std::ptr::null_mut(),
            )
        };
        match rc {
            0 => return Ok(()),
            libc::EINTR => continue,
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// An owned file descriptor.
pub struct Fd(pub libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the descriptor is owned by this value and closed exactly once.
        unsafe { libc::close(self.0) };
    }
}

/// A periodic CLOCK_MONOTONIC timerfd.
pub fn timerfd_periodic(period: Duration) -> io::Result<Fd> {
    // SAFETY: plain syscall with constant flags.
    let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = Fd(fd);
    let spec = libc::itimerspec {
        it_interval: to_timespec(period),
        it_value: to_timespec(period),
    };
    // SAFETY: `fd` is a timerfd we own; `spec` is valid; the old-value pointer may be null.
    let rc = unsafe { libc::timerfd_settime(fd.0, 0, &spec, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Blocks until the timerfd expires; returns the number of expirations since the last read.
pub fn timerfd_wait(fd: &Fd) -> io::Result<u64> {
    loop {
        let mut n: u64 = 0;
        // SAFETY: reads 8 bytes into `n`, a valid, writable u64.
        let rc = unsafe { libc::read(fd.0, (&mut n as *mut u64).cast(), 8) };
        if rc == 8 {
            return Ok(n);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// An anonymous private mapping, unmapped on drop unless already unmapped.
pub struct Mapping {
    pub addr: *mut libc::c_void,
    pub len: usize,
    mapped: bool,
}

impl Mapping {
    pub fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh anonymous mapping at a kernel-chosen address; no existing memory is
        // affected.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            addr,
            len,
            mapped: true,
        })
    }

    /// Writes one byte to every page, so each has a present PTE (and a TLB entry).
    pub fn touch(&self, page: usize) {
        let mut off = 0;
        while off < self.len {
            // SAFETY: `off < len`, inside the read-write mapping this value owns.
            unsafe { std::ptr::write_volatile(self.addr.cast::<u8>().add(off), 1) };
            off += page;
        }
    }

    pub fn protect(&self, prot: libc::c_int) -> io::Result<()> {
        // SAFETY: changes the protection of the mapping this value owns; no Rust reference
        // into it exists (it is only accessed through raw volatile writes in `touch`).
        let rc = unsafe { libc::mprotect(self.addr, self.len, prot) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn unmap(mut self) -> io::Result<()> {
        self.mapped = false;
        // SAFETY: unmaps the mapping this value owns, once; nothing refers into it.
        let rc = unsafe { libc::munmap(self.addr, self.len) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.mapped {
            // SAFETY: as in `unmap`; reached only when `unmap` was not called.
            unsafe { libc::munmap(self.addr, self.len) };
        }
    }
}

pub fn page_size() -> usize {
    // SAFETY: sysconf with a constant name has no memory effects.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as usize
    } else {
        4096
    }
}

const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

fn membarrier(cmd: libc::c_int) -> io::Result<()> {
    // SAFETY: membarrier takes (cmd, flags, cpu_id) integers and touches no user memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            cmd,
            0 as libc::c_uint,
            0 as libc::c_int,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn membarrier_register() -> io::Result<()> {
    membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED)
}

pub fn membarrier_private_expedited() -> io::Result<()> {
    membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)
}

/// Sets the calling thread's CPU mask.
pub fn set_affinity(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; all-zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
        // SAFETY: `cpu` is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; 0 means the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
