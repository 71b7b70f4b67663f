//! Emulated KVM hosts: a stock Debian kernel booted under QEMU's software emulator (TCG),
//! where upstream KVM runs for real: `kvm_amd` on QEMU's emulated AMD SVM (nested paging on
//! or off) and arm64 KVM on an emulated Armv8 with EL2. The lab's guests run inside them, so
//! `kvm_exit`/`kvm_entry` and the rest of the hardware-virtualisation tracepoints fire with
//! real exit reasons, which this project's own machine (PVM) never shows.
//!
//! [`run`] boots one host with an initramfs that carries kvmscope, busybox, the KVM modules
//! and a list of [`Job`]s (shell scripts), runs the jobs in order, and brings each job's
//! directory back through a virtual disk (a tar archive written to `/dev/vda`). Everything
//! downloaded (kernel, busybox, QEMU) is cached under [`default_cache_dir`]; nothing is
//! installed on this machine. The QEMU process dies with the caller (PR_SET_PDEATHSIG) and is
//! killed on every error path, so no emulator is left behind.
//!
//! Timestamps inside are emulated time: the emulated CPU is ~100x slower than this one, so
//! exit kinds, counts and sequences are real, absolute latencies and rates are not.

mod a64;
pub mod arm64;
mod console;
pub mod cpio;
mod elf;
mod packages;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use packages::KernelInfo;

use crate::LabError;
use console::{Console, Said};
use packages::{io_err, mkdir, run_tool};

/// A kind of emulated host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Flavour {
    /// AMD SVM with nested paging (`kvm_amd npt=1`).
    Svm,
    /// AMD SVM with shadow paging (`kvm_amd npt=0`).
    SvmShadow,
    /// arm64 KVM in VHE mode (the kernel at EL2) on QEMU's emulated Armv8 (`-cpu max`,
    /// GICv3).
    Arm64,
    /// arm64 KVM in nVHE mode (`kvm-arm.mode=nvhe`: the kernel at EL1, a small hypervisor at
    /// EL2).
    Arm64Nvhe,
}

impl Flavour {
    /// Every flavour.
    pub const ALL: &'static [Flavour] = &[
        Flavour::Svm,
        Flavour::SvmShadow,
        Flavour::Arm64,
        Flavour::Arm64Nvhe,
    ];

    /// Its name on the command line (`--host svm`).
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Svm => "svm",
            Flavour::SvmShadow => "svm-shadow",
            Flavour::Arm64 => "arm64",
            Flavour::Arm64Nvhe => "arm64-nvhe",
        }
    }

    /// The flavour called `name`.
    pub fn from_name(name: &str) -> Option<Flavour> {
        Flavour::ALL.iter().copied().find(|f| f.name() == name)
    }

    /// One line on what it is.
    pub fn describe(self) -> &'static str {
        match self {
            Flavour::Svm => {
                "upstream kvm_amd with nested paging (npt=1) on QEMU's emulated AMD EPYC"
            }
            Flavour::SvmShadow => {
                "upstream kvm_amd with shadow paging (npt=0) on QEMU's emulated AMD EPYC"
            }
            Flavour::Arm64 => {
                "upstream arm64 KVM, VHE (kernel at EL2), on QEMU's emulated Armv8 (-cpu max, GICv3)"
            }
            Flavour::Arm64Nvhe => {
                "upstream arm64 KVM, nVHE (kvm-arm.mode=nvhe), on QEMU's emulated Armv8 (-cpu max, GICv3)"
            }
        }
    }

    /// An arm64 host: kvmscope (an x86_64 program) does not run inside; its jobs record
    /// with tracefs from the shell ([`arm64`]).
    pub fn is_arm64(self) -> bool {
        self.arch() == Arch::Arm64
    }

    fn arch(self) -> Arch {
        match self {
            Flavour::Svm | Flavour::SvmShadow => Arch::X86_64,
            Flavour::Arm64 | Flavour::Arm64Nvhe => Arch::Arm64,
        }
    }

    /// Kernel command-line words of this flavour.
    fn cmdline(self) -> &'static str {
        match self {
            // nokaslr: the nested guest runs the same kernel without KASLR, so the host's
            // kallsyms names the guest's functions too (see arm64::same_kernel_text)
            Flavour::Arm64 => " nokaslr",
            Flavour::Arm64Nvhe => " nokaslr kvm-arm.mode=nvhe",
            _ => "",
        }
    }

    /// A shell test in the host's init that the kernel runs KVM the way this flavour says
    /// (from the kernel log), with what to say when it does not.
    fn mode_check(self) -> Option<(&'static str, &'static str)> {
        match self {
            Flavour::Arm64 => Some((
                "dmesg | grep -q ' VHE mode initialized'",
                "KVM did not start in VHE mode",
            )),
            Flavour::Arm64Nvhe => Some((
                "dmesg | grep -q 'nVHE mode initialized'",
                "KVM did not start in nVHE mode (kvm-arm.mode=nvhe)",
            )),
            _ => None,
        }
    }

    /// `insmod` parameters per module.
    fn module_params(self, module: &str) -> &'static str {
        match (self, module) {
            (Flavour::Svm, "kvm_amd") => "npt=1",
            (Flavour::SvmShadow, "kvm_amd") => "npt=0",
            _ => "",
        }
    }
}

/// What an emulated host is built from, per architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arch {
    X86_64,
    Arm64,
}

impl Arch {
    fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The kernel metapackage (its first dependency is the kernel).
    fn kernel_metapackage(self) -> &'static str {
        match self {
            // The cloud flavour: a third of the generic one's size, boots in 3 s here, and
            // has KVM, virtio and tracing as modules or built in.
            Arch::X86_64 => "linux-image-cloud-amd64",
            // Debian has no cloud flavour for arm64 with KVM built in: the generic one has
            // CONFIG_KVM=y, virtio-mmio and virtio-blk as modules.
            Arch::Arm64 => "linux-image-arm64",
        }
    }

    /// Modules to load (their dependencies come first by themselves).
    fn modules(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &["kvm_amd", "virtio_blk"],
            Arch::Arm64 => &["virtio_mmio", "virtio_blk"],
        }
    }

    /// QEMU's Debian packages (from bookworm-backports: QEMU 10) for this machine.
    fn qemu_packages(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &[
                "qemu-system-x86",
                "qemu-system-common",
                "qemu-system-data",
                "seabios",
            ],
            // The amd64 build of QEMU's Arm emulators (it has qemu-system-aarch64).
            Arch::Arm64 => &["qemu-system-arm", "qemu-system-common", "qemu-system-data"],
        }
    }

    fn qemu_binary(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Arm64 => "qemu-system-aarch64",
        }
    }

    fn qemu_machine(self) -> Vec<String> {
        match self {
            Arch::X86_64 => ["-accel", "tcg", "-cpu", "EPYC"].map(String::from).to_vec(),
            // virtualization=on gives the emulated CPU EL2; QEMU 10's `max` has FEAT_EVT (7.2's
            // lacked it: KVM then traps every guest CTR_EL0 read).
            Arch::Arm64 => [
                "-accel",
                "tcg",
                "-M",
                "virt,virtualization=on,gic-version=3",
                "-cpu",
                "max",
                "-audio",
                "none",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    fn console(self) -> &'static str {
        match self {
            Arch::X86_64 => "ttyS0",
            Arch::Arm64 => "ttyAMA0",
        }
    }
}

/// How to build and boot a host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Which host.
    pub flavour: Flavour,
    /// Emulated CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Give up on a boot after this long (the host is killed, the error shows its console).
    pub time_limit: Duration,
    /// Where downloads are kept ([`default_cache_dir`]).
    pub cache_dir: PathBuf,
    /// The kvmscope executable to carry in (built for the host's architecture).
    pub kvmscope: PathBuf,
    /// Also carry this machine's `perf` and its libraries (as `/usr/bin/perf`).
    pub perf: bool,
    /// Boots to try again after the emulated kernel crashed or hung (QEMU's emulation of
    /// nested virtualisation is not flawless); each crash is reported.
    pub retries: u32,
}

impl HostConfig {
    /// Defaults: one CPU, 2 GiB, a 10-minute limit, one retry.
    pub fn new(flavour: Flavour, kvmscope: impl Into<PathBuf>) -> Self {
        HostConfig {
            flavour,
            cpus: 1,
            memory_mib: 2048,
            time_limit: Duration::from_secs(600),
            cache_dir: default_cache_dir(),
            kvmscope: kvmscope.into(),
            perf: false,
            retries: 1,
        }
    }
}

/// kvmscope's download cache: `$KVMSCOPE_CACHE`, else `$XDG_CACHE_HOME/kvmscope`, else
/// `~/.cache/kvmscope`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KVMSCOPE_CACHE") {
        return d.into();
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("kvmscope");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".cache/kvmscope"),
        None => std::env::temp_dir().join("kvmscope-cache"),
    }
}

/// One thing to do inside the host: `script` runs with `sh` in its own output directory
/// (`/out/NAME`, brought back as `OUT_DIR/NAME`), stdout and stderr saved beside it.
/// kvmscope is `/bin/kvmscope` there, perf (when carried) `/usr/bin/perf`.
#[derive(Debug, Clone)]
pub struct Job {
    /// Directory name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Shell commands.
    pub script: String,
}

/// How a boot went.
#[derive(Debug, Clone, Serialize)]
pub struct HostRun {
    /// Which host.
    pub flavour: Flavour,
    /// Its kernel.
    pub kernel: KernelInfo,
    /// `qemu-system-* --version`'s first line.
    pub qemu: String,
    /// Emulated CPUs and memory.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// From starting QEMU to init having KVM loaded (last attempt).
    pub boot_secs: f64,
    /// From starting QEMU to its exit (last attempt).
    pub wall_secs: f64,
    /// Boots it took (1 unless the emulated kernel crashed).
    pub attempts: u32,
    /// Why earlier attempts failed (their consoles are saved as `console.attempt-N.log`).
    pub crashes: Vec<String>,
    /// Kernel oopses the last attempt survived.
    pub oopses: u32,
    /// The jobs, in order.
    pub jobs: Vec<JobResult>,
    /// Where the jobs' directories and `console.log` are.
    pub out_dir: PathBuf,
}

/// One job's result.
#[derive(Debug, Clone, Serialize)]
pub struct JobResult {
    /// Its name.
    pub name: String,
    /// Exit status of its script.
    pub status: i32,
    /// Wall time on this machine.
    pub secs: f64,
    /// Its directory (stdout, stderr, status and what it wrote).
    pub dir: PathBuf,
}

/// What [`run`] is doing, for a progress line.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// Fetching or preparing something.
    Preparing(&'a str),
    /// The emulated kernel is booting.
    Booting(Duration),
    /// Job `index` of `total` is running.
    Job {
        /// 0-based.
        index: usize,
        /// Number of jobs.
        total: usize,
        /// Its name.
        name: &'a str,
        /// Since it started.
        elapsed: Duration,
    },
    /// Writing the outputs to the disk.
    Saving,
}

/// Boots the host, runs `jobs` and brings their directories back into `out_dir`.
pub fn run(
    config: &HostConfig,
    jobs: &[Job],
    out_dir: &Path,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<HostRun, LabError> {
    for j in jobs {
        if j.name.is_empty()
            || !j
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            || j.name.starts_with('.')
        {
            return Err(LabError::InvalidSpec(format!(
                "job name {:?}: use letters, digits, '-', '_' and '.'",
                j.name
            )));
        }
    }
    let arch = config.flavour.arch();
    let qemu = qemu(&config.cache_dir, arch, progress)?;
    let host_dir = config.cache_dir.join("hosts").join(arch.debian());
    let kernel = packages::kernel(
        &host_dir,
        arch.debian(),
        arch.kernel_metapackage(),
        arch.modules(),
        &mut |s| progress(Progress::Preparing(s)),
    )?;
    let busybox = packages::busybox(&host_dir, arch.debian())?;
    mkdir(out_dir)?;
    let work = WorkDir::new(out_dir)?;
    progress(Progress::Preparing("building the initramfs"));
    let initrd = work.0.join("initrd.cpio");
    build_initramfs(
        config,
        &kernel,
        &busybox,
        jobs,
        &work.0,
        &initrd,
        &mut |s| progress(Progress::Preparing(s)),
    )?;

    let mut crashes = Vec::new();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let disk = work.0.join("out.img");
        let f = std::fs::File::create(&disk).map_err(|e| io_err("creating", &disk, e))?;
        f.set_len(2 << 30).map_err(|e| io_err("sizing", &disk, e))?;
        drop(f);
        let boot = boot(config, &qemu, &kernel, &initrd, &disk, jobs, progress)?;
        std::fs::write(out_dir.join("console.log"), &boot.console.log)
            .map_err(|e| io_err("writing", &out_dir.join("console.log"), e))?;
        if boot.console.saved {
            progress(Progress::Saving);
            run_tool(
                Command::new("tar")
                    .arg("-xf")
                    .arg(&disk)
                    .arg("-C")
                    .arg(out_dir),
                "reading the emulated host's outputs",
            )?;
            let mut results = Vec::new();
            for (i, j) in jobs.iter().enumerate() {
                let dir = out_dir.join(&j.name);
                let status = std::fs::read_to_string(dir.join("status"))
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(-1);
                results.push(JobResult {
                    name: j.name.clone(),
                    status,
                    secs: boot.job_secs.get(i).copied().unwrap_or(0.0),
                    dir,
                });
            }
            return Ok(HostRun {
                flavour: config.flavour,
                kernel: kernel.info,
                qemu: qemu.version,
                cpus: config.cpus,
                memory_mib: config.memory_mib,
                boot_secs: boot.boot_secs,
                wall_secs: boot.wall_secs,
                attempts: attempt,
                crashes,
                oopses: boot.console.oopses,
                jobs: results,
                out_dir: out_dir.to_path_buf(),
            });
        }
        let flavour = config.flavour.name();
        let tail = boot.console.tail();
        let err = if let Some(what) = &boot.console.failed {
            // Setting the host up failed: trying again would fail the same way.
            return Err(LabError::HostSetup {
                what: format!("the emulated {flavour} host could not start: {what}"),
                detail: tail,
            });
        } else if boot.timed_out {
            LabError::HostHung {
                flavour,
                limit: config.time_limit,
                stage: boot.stage.clone(),
                tail,
            }
        } else if boot.console.panicked || boot.console.oopses > 0 {
            LabError::HostCrashed {
                flavour,
                attempts: attempt,
                stage: boot.stage.clone(),
                tail,
            }
        } else {
            return Err(LabError::HostExited {
                flavour,
                status: boot.status,
                stage: boot.stage,
                tail,
            });
        };
        if attempt > config.retries {
            return Err(err);
        }
        let saved = out_dir.join(format!("console.attempt-{attempt}.log"));
        let _ = std::fs::rename(out_dir.join("console.log"), &saved);
        crashes.push(format!(
            "attempt {attempt}: {}",
            first_line(&err.to_string())
        ));
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// A scratch directory for the initramfs and the disk, removed afterwards.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(near: &Path) -> Result<WorkDir, LabError> {
        let p = near.join(format!(".kvmscope-host-work-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        mkdir(&p)?;
        Ok(WorkDir(p))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A QEMU to run.
#[derive(Debug)]
struct Qemu {
    binary: PathBuf,
    module_dir: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    version: String,
}

/// `KVMSCOPE_QEMU` if set, else QEMU 10 from Debian's bookworm-backports unpacked into the
/// cache (QEMU 7.2's emulated SVM crashed the host kernel in about one boot of ten here; 10 did
/// not). Its shared libraries are those of Debian's own QEMU package.
fn qemu(
    cache: &Path,
    arch: Arch,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Qemu, LabError> {
    if let Some(p) = std::env::var_os("KVMSCOPE_QEMU") {
        let binary = PathBuf::from(p);
        let version = qemu_version(&binary, None)?;
        return Ok(Qemu {
            binary,
            module_dir: None,
            data_dir: None,
            version,
        });
    }
    let dir = cache.join("qemu").join(arch.qemu_binary());
    let root = dir.join("root");
    let binary = root.join("usr/bin").join(arch.qemu_binary());
    {
        mkdir(&dir)?;
        let _lock = packages::Lock::take(&dir.join(".lock"))?;
        if !binary.exists() {
            let apt = packages::Apt::new(&cache.join("qemu"), "amd64");
            progress(Progress::Preparing(
                "fetching Debian's package lists for QEMU",
            ));
            apt.update()?;
            let tmp = dir.join("root.unpack");
            let _ = std::fs::remove_dir_all(&tmp);
            for p in arch.qemu_packages() {
                progress(Progress::Preparing(&format!("downloading {p}")));
                let deb = apt.download(p, &dir.join("debs"))?;
                run_tool(
                    Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp),
                    &format!("unpacking {p}"),
                )?;
            }
            let _ = std::fs::remove_dir_all(&root);
            std::fs::rename(&tmp, &root).map_err(|e| io_err("moving", &tmp, e))?;
        }
    }
    let module_dir = root.join("usr/lib/x86_64-linux-gnu/qemu");
    let missing: Vec<String> = libraries(&binary)?
        .into_iter()
        .filter_map(|l| l.strip_prefix("not found: ").map(str::to_string))
        .collect();
    if !missing.is_empty() {
        return Err(LabError::MissingTool {
            tool: format!(
                "{} (QEMU's libraries {})",
                arch.qemu_binary(),
                missing.join(", ")
            ),
            install: format!(
                "apt-get install --no-install-recommends {}",
                arch.qemu_packages()[0]
            ),
        });
    }
    let version = qemu_version(&binary, Some(&module_dir))?;
    Ok(Qemu {
        binary,
        module_dir: Some(module_dir),
        data_dir: Some(root.join("usr/share/qemu")),
        version,
    })
}

fn qemu_version(binary: &Path, module_dir: Option<&Path>) -> Result<String, LabError> {
    let mut c = Command::new(binary);
    c.arg("--version");
    if let Some(m) = module_dir {
        c.env("QEMU_MODULE_DIR", m);
    }
    let out = run_tool(&mut c, "asking QEMU its version")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("?")
        .to_string())
}

/// The shared libraries `binary` loads, from `ldd` (`not found: NAME` for missing ones).
fn libraries(binary: &Path) -> Result<Vec<String>, LabError> {
    let out = run_tool(Command::new("ldd").arg(binary), "listing shared libraries")?;
    Ok(parse_ldd(&String::from_utf8_lossy(&out.stdout)))
}

/// Paths in `ldd` output: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x..)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x..)`; `not found: NAME` for `NAME => not found`.
fn parse_ldd(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some((name, rest)) = line.split_once("=>") {
            let rest = rest.trim();
            if rest.starts_with("not found") {
                out.push(format!("not found: {}", name.trim()));
            } else if let Some(p) = rest
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/'))
            {
                out.push(p.to_string());
            }
        } else if let Some(p) = line
            .split_whitespace()
            .next()
            .filter(|p| p.starts_with('/'))
        {
            out.push(p.to_string());
        }
    }
    out
}

/// Adds a file to the archive at `at`, creating its parent directories once.
struct Tree {
    w: cpio::CpioWriter<std::io::BufWriter<std::fs::File>>,
    dirs: std::collections::BTreeSet<String>,
}

impl Tree {
    fn parents(&mut self, at: &str) -> std::io::Result<()> {
        let mut path = String::new();
        let parts: Vec<&str> = at.trim_start_matches('/').split('/').collect();
        for p in &parts[..parts.len().saturating_sub(1)] {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(p);
            if self.dirs.insert(path.clone()) {
                self.w.dir(&path)?;
            }
        }
        Ok(())
    }

    fn dir(&mut self, at: &str) -> std::io::Result<()> {
        self.parents(&format!("{at}/x"))
    }

    fn bytes(&mut self, at: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
        self.parents(at)?;
        self.w.file(at, mode, data)
    }

    fn copy(&mut self, from: &Path, at: &str) -> Result<(), LabError> {
        let data = std::fs::read(from).map_err(|e| io_err("reading", from, e))?;
        self.bytes(at, 0o755, &data)
            .map_err(|e| io_err("writing the initramfs entry", Path::new(at), e))
    }
}

fn build_initramfs(
    config: &HostConfig,
    kernel: &packages::Kernel,
    busybox: &Path,
    jobs: &[Job],
    work: &Path,
    to: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), LabError> {
    let f = std::fs::File::create(to).map_err(|e| io_err("creating", to, e))?;
    let mut t = Tree {
        w: cpio::CpioWriter::new(std::io::BufWriter::new(f)),
        dirs: Default::default(),
    };
    let ioe = |e: std::io::Error| io_err("writing", to, e);
    for d in [
        "dev", "proc", "sys", "tmp", "out", "root", "etc", "usr/bin", "usr/sbin", "sbin",
    ] {
        t.dir(d).map_err(ioe)?;
    }
    t.copy(busybox, "bin/busybox")?;
    // the kernel's configuration where a snapshot looks for it (CONFIG_HZ, the tick mode)
    t.copy(
        &kernel.config,
        &format!("boot/config-{}", kernel.info.release),
    )?;
    if config.flavour.is_arm64() {
        let host_dir = config
            .cache_dir
            .join("hosts")
            .join(config.flavour.arch().debian());
        arm64::add_payload(&mut t, &host_dir, kernel, busybox, progress)?;
    } else {
        carry_kvmscope(config, work, &mut t)?;
    }
    for (name, path) in &kernel.modules {
        t.copy(path, &format!("mods/{name}.ko"))?;
    }
    for (i, j) in jobs.iter().enumerate() {
        t.bytes(&format!("jobs/{i}.sh"), 0o644, j.script.as_bytes())
            .map_err(ioe)?;
    }
    let init = init_script(config.flavour, &kernel.modules, jobs);
    t.bytes("init", 0o755, init.as_bytes()).map_err(ioe)?;
    t.w.finish().map_err(ioe)?;
    Ok(())
}

/// kvmscope (stripped when possible) and perf with their shared libraries (x86 hosts).
fn carry_kvmscope(config: &HostConfig, work: &Path, t: &mut Tree) -> Result<(), LabError> {
    // Debug builds carry debug info (100+ MB): strip a copy when `strip` is here.
    let stripped = work.join("kvmscope");
    let carried = match Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&config.kvmscope)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => stripped,
        _ => config.kvmscope.clone(),
    };
    t.copy(&carried, "bin/kvmscope")?;
    let mut libs = libraries(&config.kvmscope)?;
    if config.perf {
        let perf = which("perf").ok_or_else(|| LabError::MissingTool {
            tool: "perf".into(),
            install: "apt-get install linux-perf".into(),
        })?;
        t.copy(&perf, "usr/bin/perf")?;
        libs.extend(libraries(&perf)?);
    }
    libs.sort();
    libs.dedup();
    for l in &libs {
        if let Some(name) = l.strip_prefix("not found: ") {
            return Err(LabError::MissingTool {
                tool: format!("shared library {name}"),
                install: "install the package that has it".into(),
            });
        }
        t.copy(Path::new(l), l.trim_start_matches('/'))?;
    }
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// The host's /init: mounts, KVM modules, each job in its directory, outputs to /dev/vda.
fn init_script(flavour: Flavour, modules: &[(String, PathBuf)], jobs: &[Job]) -> String {
    let m = console::MARK;
    let mut s = format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
fail() {{ echo "{m}fail $*"; dmesg | tail -n 15; poweroff -f; }}
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tracefs nodev /sys/kernel/tracing || fail mounting tracefs
mount -t debugfs nodev /sys/kernel/debug
"#
    );
    for (name, _) in modules {
        let params = flavour.module_params(name);
        s.push_str(&format!(
            "insmod /mods/{name}.ko {params} || fail insmod {name} {params}\n"
        ));
    }
    s.push_str("[ -c /dev/kvm ] || fail no /dev/kvm after loading KVM\n");
    if let Some((test, complaint)) = flavour.mode_check() {
        s.push_str(&format!("{test} || fail '{complaint}'\n"));
    }
    s.push_str(&format!(
        r#"dmesg | grep -E 'kvm \[[0-9]+\]: .*mode initialized|All CPU\(s\) started' > /out/kvm-mode.txt
n=0; while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
[ -b /dev/vda ] || fail no output disk /dev/vda
echo "{m}booted $(cut -d' ' -f1 /proc/uptime)"
job() {{
  mkdir -p "/out/$2"
  echo "{m}job $1 $2"
  (cd "/out/$2" && sh "/jobs/$1.sh") > "/out/$2/stdout" 2> "/out/$2/stderr"
  rc=$?
  echo $rc > "/out/$2/status"
  echo "{m}jobdone $1 $rc"
}}
"#
    ));
    for (i, j) in jobs.iter().enumerate() {
        s.push_str(&format!("job {i} {}\n", j.name));
    }
    s.push_str(&format!(
        r#"uname -r > /out/uname.txt
dmesg > /out/dmesg.txt
(cd /out && tar -cf /dev/vda .) || fail saving the outputs to /dev/vda
sync
echo "{m}saved"
poweroff -f
"#
    ));
    s
}

/// Makes the child get SIGKILL when this process dies, however it dies (even SIGKILL), so an
/// emulated host never outlives the kvmscope that started it.
fn die_with_parent(c: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl, which
    // is async-signal-safe and touches no memory of the parent.
    unsafe {
        c.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// One boot's outcome.
struct Boot {
    console: Console,
    timed_out: bool,
    status: String,
    stage: String,
    boot_secs: f64,
    wall_secs: f64,
    job_secs: Vec<f64>,
}

/// QEMU, killed when this is dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn boot(
    config: &HostConfig,
    qemu: &Qemu,
    kernel: &packages::Kernel,
    initrd: &Path,
    disk: &Path,
    jobs: &[Job],
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Boot, LabError> {
    let arch = config.flavour.arch();
    let mut c = Command::new(&qemu.binary);
    c.args(arch.qemu_machine())
        .arg("-m")
        .arg(config.memory_mib.to_string())
        .arg("-smp")
        .arg(config.cpus.to_string())
        .arg("-kernel")
        .arg(&kernel.image)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        // no_timer_check: on a loaded machine the emulated CPU is slow enough for the boot-time
        // check of the IO-APIC timer to fail ("IO-APIC + timer doesn't work!", a panic); the
        // check tests real hardware wiring, which an emulator does not have to prove.
        .arg(format!(
            "console={} panic=-1 quiet loglevel=4 no_timer_check{}",
            arch.console(),
            config.flavour.cmdline()
        ))
        .args([
            "-nodefaults",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ])
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", disk.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(m) = &qemu.module_dir {
        c.env("QEMU_MODULE_DIR", m);
    }
    if let Some(d) = &qemu.data_dir {
        c.arg("-L").arg(d);
    }
    die_with_parent(&mut c);
    let started = Instant::now();
    let mut child = Running(c.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            LabError::MissingTool {
                tool: qemu.binary.display().to_string(),
                install: format!("apt-get install {}", arch.qemu_packages()[0]),
            }
        } else {
            io_err("starting", &qemu.binary, e)
        }
    })?);
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.0.stdout.take();
    let stderr = child.0.stderr.take();
    let reader = std::thread::spawn(move || {
        if let Some(out) = stdout {
            let mut r = BufReader::new(out);
            let mut buf = Vec::new();
            while matches!(r.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches('\n')
                    .to_string();
                if tx.send(line).is_err() {
                    break;
                }
                buf.clear();
            }
        }
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = std::io::Read::read_to_string(&mut e, &mut text);
        }
        text
    });
    let mut console = Console::new(40);
    let mut boot_secs = 0.0;
    let mut job_secs = vec![0.0; jobs.len()];
    let mut current: Option<(usize, Instant)> = None;
    let mut stage = "booting the kernel".to_string();
    let mut timed_out = false;
    loop {
        let now = started.elapsed();
        if now > config.time_limit {
            timed_out = true;
            let _ = child.0.kill();
            break;
        }
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(line) => match console.line(&line) {
                Some(Said::Booted) => {
                    boot_secs = started.elapsed().as_secs_f64();
                    stage = "starting the first job".into();
                }
                Some(Said::JobStarted(i)) => {
                    current = Some((i, Instant::now()));
                    stage = format!(
                        "job {} of {} ({})",
                        i + 1,
                        jobs.len(),
                        jobs.get(i).map_or("?", |j| j.name.as_str())
                    );
                }
                Some(Said::JobEnded(i, _)) => {
                    if let (Some((ci, t)), Some(slot)) = (current.take(), job_secs.get_mut(i)) {
                        if ci == i {
                            *slot = t.elapsed().as_secs_f64();
                        }
                    }
                    stage = "after the last job, saving the outputs".into();
                }
                Some(Said::Saved) => stage = "powering off".into(),
                _ => {}
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        match current {
            Some((i, t)) => progress(Progress::Job {
                index: i,
                total: jobs.len(),
                name: jobs.get(i).map_or("?", |j| j.name.as_str()),
                elapsed: t.elapsed(),
            }),
            None if !console.booted => progress(Progress::Booting(started.elapsed())),
            None => {}
        }
    }
    let status = child
        .0
        .wait()
        .map(|s| s.to_string())
        .unwrap_or_else(|e| e.to_string());
    let _ = reader.join();
    let errors = err_reader.join().unwrap_or_default();
    let wall_secs = started.elapsed().as_secs_f64();
    // QEMU's own complaints (not the TCG feature warnings) belong in the tail too.
    for l in errors
        .lines()
        .filter(|l| !l.contains("TCG doesn't support"))
    {
        console.line(&format!("qemu: {l}"));
    }
    Ok(Boot {
        console,
        timed_out,
        status,
        stage,
        boot_secs,
        wall_secs,
        job_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\tlibfoo.so.2 => not found\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f77)\n\tstatically linked\n";
        assert_eq!(
            parse_ldd(text),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "not found: libfoo.so.2",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
    }

    #[test]
    fn init_loads_modules_runs_jobs_and_saves() {
        let mods = vec![
            ("kvm".to_string(), PathBuf::new()),
            ("kvm_amd".to_string(), PathBuf::new()),
        ];
        let jobs = [Job {
            name: "pio".into(),
            script: "kvmscope lab run pio".into(),
        }];
        let s = init_script(Flavour::SvmShadow, &mods, &jobs);
        assert!(s.contains("insmod /mods/kvm_amd.ko npt=0 || fail"));
        assert!(s.contains("insmod /mods/kvm.ko  || fail"));
        assert!(s.contains("\njob 0 pio\n"));
        assert!(s.find("job 0 pio").unwrap() < s.find("tar -cf /dev/vda").unwrap());
        assert!(s.ends_with("poweroff -f\n"));
    }

    #[test]
    fn refuses_bad_job_names_before_fetching_anything() {
        let c = HostConfig::new(Flavour::Svm, "/nonexistent");
        for name in ["", "../x", "a b", ".hidden"] {
            let jobs = [Job {
                name: name.into(),
                script: String::new(),
            }];
            let e = run(&c, &jobs, Path::new("/nonexistent-out"), &mut |_| {}).unwrap_err();
            assert!(matches!(e, LabError::InvalidSpec(_)), "{name}: {e}");
        }
    }

    #[test]
    fn flavours_round_trip_their_names() {
        for f in Flavour::ALL {
            assert_eq!(Flavour::from_name(f.name()), Some(*f));
        }
        assert_eq!(Flavour::from_name("vmx"), None);
    }
}
