//! Guest RAM: one anonymous mapping, registered as KVM memory slot 0 at guest-physical 0.

use std::io;
use std::ptr::NonNull;

use crate::LabError;

/// Anonymous, private, lazily populated memory that backs the guest's RAM.
#[derive(Debug)]
pub(crate) struct GuestMemory {
    ptr: NonNull<u8>,
    size: usize,
}

// SAFETY: the mapping is plain memory owned by this struct; all accesses go through
// bounds-checked volatile copies, so sharing the pointer between threads is sound (the guest
// itself also writes it concurrently, which is why nothing hands out references into it).
unsafe impl Send for GuestMemory {}
// SAFETY: see `Send`: no `&`/`&mut` into the mapping is ever created, only volatile copies.
unsafe impl Sync for GuestMemory {}

impl GuestMemory {
    /// Maps `size` bytes (rounded up to 4 KiB) of zeroed memory.
    pub(crate) fn new(size: u64) -> Result<Self, LabError> {
        let size = usize::try_from(size.next_multiple_of(4096)).map_err(|_| LabError::Memory {
            size,
            source: io::Error::from(io::ErrorKind::OutOfMemory),
        })?;
        // SAFETY: an anonymous private mapping at an address of the kernel's choice; no existing
        // memory is affected. The result is checked for MAP_FAILED below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(LabError::Memory {
                size: size as u64,
                source: io::Error::last_os_error(),
            });
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| LabError::Memory {
            size: size as u64,
            source: io::Error::from(io::ErrorKind::OutOfMemory),
        })?;
        Ok(GuestMemory { ptr, size })
    }

    /// Asks the host to back `[gpa, gpa + len)` with 4 KiB pages only (MADV_NOHUGEPAGE), so
    /// that each first touch of a page there is one fault for KVM under TDP too, as on a host
    /// without transparent huge pages.
    pub(crate) fn no_huge_pages(&self, gpa: u64, len: u64) -> Result<(), LabError> {
        let off = self.check(gpa, usize::try_from(len).unwrap_or(usize::MAX))?;
        // SAFETY: the range lies inside our own mapping (checked above); MADV_NOHUGEPAGE only
        // changes how the kernel may back it, never its contents or its validity.
        let rc = unsafe {
            libc::madvise(
                self.ptr.as_ptr().add(off).cast(),
                len as usize,
                libc::MADV_NOHUGEPAGE,
            )
        };
        if rc != 0 {
            return Err(LabError::Memory {
                size: len,
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    pub(crate) fn size(&self) -> u64 {
        self.size as u64
    }

    pub(crate) fn host_addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    fn check(&self, gpa: u64, len: usize) -> Result<usize, LabError> {
        let start = usize::try_from(gpa).ok();
        match start {
            Some(s) if s.checked_add(len).is_some_and(|end| end <= self.size) => Ok(s),
            _ => Err(LabError::InvalidSpec(format!(
                "guest-physical range {gpa:#x}+{len:#x} is outside guest memory (size {:#x})",
                self.size
            ))),
        }
    }

    /// Copies `data` into guest memory at `gpa`.
    pub(crate) fn write(&self, gpa: u64, data: &[u8]) -> Result<(), LabError> {
        let start = self.check(gpa, data.len())?;
        // SAFETY: `check` proved start..start+len lies inside the mapping; the source is a
        // valid slice that cannot overlap the mapping (no references into it exist).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(start), data.len());
        }
        Ok(())
    }

    pub(crate) fn write_u64(&self, gpa: u64, v: u64) -> Result<(), LabError> {
        self.write(gpa, &v.to_le_bytes())
    }

    /// Reads a little-endian u64 at `gpa` (a volatile read: the guest may be running).
    pub(crate) fn read_u64(&self, gpa: u64) -> Result<u64, LabError> {
        let start = self.check(gpa, 8)?;
        // SAFETY: start..start+8 is inside the mapping (`check`); a `[u8; 8]` has alignment 1,
        // so any address is aligned for it. Volatile because the guest may write it meanwhile.
        let v = unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(start).cast::<[u8; 8]>()) };
        Ok(u64::from_le_bytes(v))
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: ptr/size are exactly what mmap returned; the VM that referenced this memory
        // is dropped before (field order in `Vm`), and nothing else holds a pointer into it.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.size);
        }
    }
}
