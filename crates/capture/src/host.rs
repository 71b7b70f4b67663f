//! What this host offers: /dev/kvm, tracefs (mounted here if it is not), and the skip-or-fail
//! policy for tests that need them.
//!
//! A test that needs the kernel calls [`require_kvm`] / [`require_tracefs`] first. Where the
//! thing is missing the test is skipped with a printed reason, unless `KVMSCOPE_REQUIRE_KVM=1`
//! (set by `.ci/run`), in which case it fails: hardware tests never pass silently.

use std::path::{Path, PathBuf};

/// The usual tracefs mount point.
pub const TRACEFS: &str = "/sys/kernel/tracing";
/// The old location, under debugfs.
pub const TRACEFS_DEBUGFS: &str = "/sys/kernel/debug/tracing";

/// Why a kernel facility cannot be used, with what the user can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailable {
    #[error("/dev/kvm does not exist: load the KVM module (`modprobe kvm_intel` or `modprobe kvm_amd`) or enable nested virtualisation for this VM")]
    NoKvm,
    #[error("cannot open /dev/kvm: {0}; run as root or add yourself to the `kvm` group")]
    KvmAccess(#[source] std::io::Error),
    #[error("tracefs is not mounted and mounting it failed ({0}): run `mount -t tracefs nodev /sys/kernel/tracing` as root")]
    TracefsMount(#[source] std::io::Error),
    #[error("tracefs at {0} has no `instances` directory: the kernel is too old for private tracing instances (needs 3.16+)")]
    NoInstances(PathBuf),
}

/// Checks that /dev/kvm exists and can be opened read-write.
pub fn kvm() -> Result<(), Unavailable> {
    let path = Path::new("/dev/kvm");
    if !path.exists() {
        return Err(Unavailable::NoKvm);
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map(drop)
        .map_err(Unavailable::KvmAccess)
}

/// Returns the tracefs root, mounting tracefs at [`TRACEFS`] first when it is not mounted
/// (as trace-cmd does). Fails with a message that says how to fix it.
pub fn tracefs() -> Result<PathBuf, Unavailable> {
    for dir in [TRACEFS, TRACEFS_DEBUGFS] {
        let dir = Path::new(dir);
        if dir.join("trace").exists() {
            return instances_ok(dir);
        }
    }
    mount_tracefs(Path::new(TRACEFS)).map_err(Unavailable::TracefsMount)?;
    instances_ok(Path::new(TRACEFS))
}

fn instances_ok(dir: &Path) -> Result<PathBuf, Unavailable> {
    if dir.join("instances").is_dir() {
        Ok(dir.to_path_buf())
    } else {
        Err(Unavailable::NoInstances(dir.to_path_buf()))
    }
}

fn mount_tracefs(target: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let target = CString::new(target.as_os_str().as_bytes())?;
    let fstype = c"tracefs";
    let source = c"nodev";
    // SAFETY: all three pointers are valid NUL-terminated strings that outlive the call; a null
    // `data` pointer is allowed by mount(2) and means "no options".
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        let err = std::io::Error::last_os_error();
        // Another process mounted it between our check and our mount.
        if err.raw_os_error() == Some(libc::EBUSY) && target_has_trace(&target) {
            return Ok(());
        }
        Err(err)
    }
}

fn target_has_trace(target: &std::ffi::CStr) -> bool {
    Path::new(target.to_str().unwrap_or_default())
        .join("trace")
        .exists()
}

/// True when the environment asks hardware tests to fail instead of skipping.
pub fn required_by_env() -> bool {
    std::env::var_os("KVMSCOPE_REQUIRE_KVM").is_some_and(|v| v == "1")
}

fn skip_or_fail(what: &str, why: &dyn std::fmt::Display) -> bool {
    if required_by_env() {
        panic!("{what} is required (KVMSCOPE_REQUIRE_KVM=1) but unavailable: {why}");
    }
    eprintln!("SKIPPED: {what} unavailable: {why}");
    false
}

/// For tests that compare with a peer tool (trace-cmd, perf, tmux): true when `program` can be
/// started; otherwise prints why and how to install it and returns false, or panics under
/// `KVMSCOPE_REQUIRE_KVM=1` (CI installs the peers in `.ci/run`).
pub fn require_tool(program: &str, install: &str) -> bool {
    let found = std::process::Command::new(program)
        .arg("--help")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        skip_or_fail(
            program,
            &format!("not installed (install it with `{install}`)"),
        );
    }
    found
}

/// For tests: true when /dev/kvm is usable; otherwise prints why and returns false, or panics
/// under `KVMSCOPE_REQUIRE_KVM=1`.
pub fn require_kvm() -> bool {
    match kvm() {
        Ok(()) => true,
        Err(e) => skip_or_fail("/dev/kvm", &e),
    }
}

/// For tests: the tracefs root when usable; otherwise prints why and returns None, or panics
/// under `KVMSCOPE_REQUIRE_KVM=1`.
pub fn require_tracefs() -> Option<PathBuf> {
    match tracefs() {
        Ok(p) => Some(p),
        Err(e) => {
            skip_or_fail("tracefs", &e);
            None
        }
    }
}
