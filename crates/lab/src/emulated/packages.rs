//! Debian packages for the emulated hosts (kernel, busybox), fetched with apt into kvmscope's
//! cache through a private apt state: the system's /etc/apt, its dpkg database and /boot are
//! never touched, and a second run finds everything in the cache without the network.
//!
//! ```text
//! <cache>/hosts/<arch>/apt/            private apt state (lists, archives, sources.list)
//! <cache>/hosts/<arch>/kernel.json     the kernel in use: package, version, release
//! <cache>/hosts/<arch>/<release>/      vmlinuz, config and modules/<name>.ko[.xz] (a .ko beside a
//!                                      .ko.xz once a host used it)
//! <cache>/hosts/<arch>/busybox         a static busybox
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::{Deserialize, Serialize};

use crate::LabError;

/// The Debian suite the packages come from; the kernel from its backports (6.12: tracefs
/// `options/fields` needs 6.6+, `ipi_send_cpu` and `csd:*` need 6.3+).
const SUITE: &str = "bookworm";

/// One kernel of an emulated host, unpacked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelInfo {
    /// The Debian package, e.g. `linux-image-6.12.95+deb12-cloud-amd64-unsigned`.
    pub package: String,
    /// Its version, e.g. `6.12.95-1~bpo12+1`.
    pub version: String,
    /// `uname -r` of the kernel, e.g. `6.12.95+deb12-cloud-amd64`.
    pub release: String,
}

/// A kernel ready to boot: its image and the modules a flavour needs, in load order.
#[derive(Debug, Clone)]
pub(crate) struct Kernel {
    pub info: KernelInfo,
    pub image: PathBuf,
    /// The package's `boot/config-<release>`: snapshots of emulated machines read CONFIG_HZ
    /// and the tick mode from it (Debian kernels have no /proc/config.gz).
    pub config: PathBuf,
    pub modules: Vec<(String, PathBuf)>,
}

/// The tools this module runs, with the package that has each.
const TOOLS: &[(&str, &str)] = &[
    ("apt-get", "apt"),
    ("apt-cache", "apt"),
    ("dpkg-deb", "dpkg"),
    ("xz", "xz-utils"),
];

fn install_hint(tool: &str) -> String {
    let pkg = TOOLS.iter().find(|t| t.0 == tool).map_or(tool, |t| t.1);
    format!("apt-get install {pkg}")
}

/// Runs `cmd`; a missing program or a failure becomes an error naming it.
pub(crate) fn run_tool(cmd: &mut Command, what: &str) -> Result<Output, LabError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            LabError::MissingTool {
                tool: program.clone(),
                install: install_hint(&program),
            }
        } else {
            LabError::HostSetup {
                what: format!("{what}: cannot run {program}"),
                detail: e.to_string(),
            }
        }
    })?;
    if !out.status.success() {
        return Err(LabError::HostSetup {
            what: format!("{what} ({program} exited with {})", out.status),
            detail: tail(&String::from_utf8_lossy(&out.stderr), 12),
        });
    }
    Ok(out)
}

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The Debian mirror: `KVMSCOPE_DEBIAN_MIRROR`, else the first Debian archive this system's
/// apt sources name, else deb.debian.org.
fn mirror() -> String {
    if let Ok(m) = std::env::var("KVMSCOPE_DEBIAN_MIRROR") {
        return m.trim_end_matches('/').to_string();
    }
    let mut text = String::new();
    for f in [
        "/etc/apt/sources.list.d/debian.sources",
        "/etc/apt/sources.list",
    ] {
        text.push_str(&std::fs::read_to_string(f).unwrap_or_default());
        text.push('\n');
    }
    mirror_in(&text).unwrap_or_else(|| "http://deb.debian.org/debian".to_string())
}

/// The first `http(s)://.../debian` archive (not -security) in apt source text of either
/// syntax (`URIs: X` or `deb [opts] X suite`).
fn mirror_in(sources: &str) -> Option<String> {
    sources
        .split_whitespace()
        .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
        .map(|w| w.trim_end_matches('/'))
        .find(|w| w.ends_with("/debian"))
        .map(str::to_string)
}

/// A private apt state for one Debian architecture.
#[derive(Debug)]
pub(crate) struct Apt {
    dir: PathBuf,
    arch: &'static str,
}

impl Apt {
    pub fn new(host_dir: &Path, arch: &'static str) -> Apt {
        Apt {
            dir: host_dir.join("apt"),
            arch,
        }
    }

    fn options(&self) -> Vec<String> {
        let d = self.dir.display();
        [
            format!("Dir::State={d}/state"),
            format!("Dir::Cache={d}/cache"),
            format!("Dir::Etc::SourceList={d}/sources.list"),
            format!("Dir::Etc::SourceParts={d}/sources.list.d"),
            format!("Dir::Etc::Preferences={d}/preferences"),
            format!("Dir::Etc::PreferencesParts={d}/preferences.d"),
            format!("APT::Architecture={}", self.arch),
            format!("APT::Architectures={}", self.arch),
            format!("APT::Default-Release={SUITE}-backports"),
            "APT::Sandbox::User=root".to_string(),
            "Debug::NoLocking=1".to_string(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect()
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.args(self.options());
        c
    }

    /// Writes the sources and fetches the package lists.
    pub fn update(&self) -> Result<(), LabError> {
        let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
        if !Path::new(keyring).exists() {
            return Err(LabError::MissingTool {
                tool: keyring.to_string(),
                install: "apt-get install debian-archive-keyring".to_string(),
            });
        }
        for sub in [
            "state/lists/partial",
            "cache/archives/partial",
            "sources.list.d",
            "preferences.d",
        ] {
            mkdir(&self.dir.join(sub))?;
        }
        let m = mirror();
        let sources = format!(
            "deb [signed-by={keyring}] {m} {SUITE} main\ndeb [signed-by={keyring}] {m} {SUITE}-backports main\n"
        );
        write(&self.dir.join("sources.list"), sources.as_bytes())?;
        write(&self.dir.join("preferences"), b"")?;
        run_tool(
            self.command("apt-get").arg("update").arg("-qq"),
            &format!("fetching Debian's {} package lists from {m}", self.arch),
        )?;
        Ok(())
    }

    /// The candidate record of `package` (`apt-cache show`), None when there is none.
    pub fn show(&self, package: &str) -> Result<Option<String>, LabError> {
        let out = self
            .command("apt-cache")
            .args(["show", "--no-all-versions", package])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| LabError::HostSetup {
                what: "cannot run apt-cache".into(),
                detail: e.to_string(),
            })?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok((out.status.success() && text.contains("Package:")).then_some(text))
    }

    /// Downloads `package` into `dir`; returns the .deb.
    pub fn download(&self, package: &str, dir: &Path) -> Result<PathBuf, LabError> {
        mkdir(dir)?;
        run_tool(
            self.command("apt-get")
                .args(["download", "-qq", package])
                .current_dir(dir),
            &format!("downloading {package} ({})", self.arch),
        )?;
        let prefix = format!("{}_", package.split(':').next().unwrap_or(package));
        std::fs::read_dir(dir)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
            })
            .ok_or_else(|| LabError::HostSetup {
                what: format!(
                    "apt-get download {package} left no .deb in {}",
                    dir.display()
                ),
                detail: String::new(),
            })
    }
}

/// The value of `field` in an apt/dpkg control record.
pub(crate) fn control_field<'a>(record: &'a str, field: &str) -> Option<&'a str> {
    record.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// The first package a metapackage's `Depends:` names (`linux-image-6.12.95+deb12-cloud-amd64
/// (= 6.12.95-1~bpo12+1)` -> `linux-image-6.12.95+deb12-cloud-amd64`).
pub(crate) fn first_dependency(record: &str) -> Option<&str> {
    let deps = control_field(record, "Depends")?;
    deps.split([',', '|'])
        .next()?
        .split_whitespace()
        .next()
        .filter(|p| !p.is_empty())
}

/// The kernel of `metapackage` (e.g. `linux-image-cloud-amd64`) with `wanted` modules and
/// their dependencies, from the cache or fetched. `KVMSCOPE_HOST_KERNEL_PACKAGE` names an
/// exact package instead.
pub(crate) fn kernel(
    host_dir: &Path,
    arch: &'static str,
    metapackage: &str,
    wanted: &[&str],
    progress: &mut dyn FnMut(&str),
) -> Result<Kernel, LabError> {
    mkdir(host_dir)?;
    let _lock = Lock::take(&host_dir.join(".lock"))?;
    let current = host_dir.join("kernel.json");
    let cached: Option<KernelInfo> = std::fs::read(&current)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let wanted_package = std::env::var("KVMSCOPE_HOST_KERNEL_PACKAGE").ok();
    let info = match cached {
        Some(info)
            if host_dir.join(&info.release).join("vmlinuz").exists()
                && host_dir.join(&info.release).join("config").exists()
                && wanted_package.as_ref().is_none_or(|p| *p == info.package) =>
        {
            info
        }
        _ => {
            let apt = Apt::new(host_dir, arch);
            progress(&format!("fetching Debian's {arch} package lists"));
            apt.update()?;
            let package = match wanted_package {
                Some(p) => p,
                None => {
                    let meta = apt.show(metapackage)?.ok_or_else(|| LabError::HostSetup {
                        what: format!("Debian has no package {metapackage} for {arch}"),
                        detail: String::new(),
                    })?;
                    let image = first_dependency(&meta).ok_or_else(|| LabError::HostSetup {
                        what: format!("{metapackage} names no kernel package"),
                        detail: tail(&meta, 8),
                    })?;
                    let unsigned = format!("{image}-unsigned");
                    if apt.show(&unsigned)?.is_some() {
                        unsigned
                    } else {
                        image.to_string()
                    }
                }
            };
            progress(&format!("downloading {package}"));
            let deb = apt.download(&package, &host_dir.join("debs"))?;
            progress(&format!("unpacking {package}"));
            let info = unpack_kernel(&deb, host_dir)?;
            write(
                &current,
                serde_json::to_string_pretty(&info)
                    .unwrap_or_default()
                    .as_bytes(),
            )?;
            info
        }
    };
    let dir = host_dir.join(&info.release);
    let index = module_index(&dir.join("modules"))?;
    let order = load_order(wanted, &index)?;
    Ok(Kernel {
        image: dir.join("vmlinuz"),
        config: dir.join("config"),
        modules: order
            .into_iter()
            .map(|m| {
                let path = unpacked_module(&m, &index[&m].0)?;
                Ok((m, path))
            })
            .collect::<Result<_, LabError>>()?,
        info,
    })
}

/// A static busybox for `arch` from Debian's busybox-static, from the cache or fetched.
pub(crate) fn busybox(host_dir: &Path, arch: &'static str) -> Result<PathBuf, LabError> {
    mkdir(host_dir)?;
    let _lock = Lock::take(&host_dir.join(".lock"))?;
    let path = host_dir.join("busybox");
    if path.exists() {
        return Ok(path);
    }
    let apt = Apt::new(host_dir, arch);
    if !apt.dir.join("sources.list").exists() || apt.show("busybox-static")?.is_none() {
        apt.update()?;
    }
    let deb = apt.download("busybox-static", &host_dir.join("debs"))?;
    let tmp = host_dir.join("busybox.unpack");
    let _ = std::fs::remove_dir_all(&tmp);
    run_tool(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp),
        "unpacking busybox-static",
    )?;
    std::fs::rename(tmp.join("bin/busybox"), &path)
        .map_err(|e| io_err("installing busybox", &path, e))?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(path)
}

/// Debian's arm64 QEMU (`qemu-system-arm:arm64`, the VMM inside an arm64 host) and every
/// package it depends on, resolved by the private apt against an empty dpkg status (so the
/// whole closure, libc included) and unpacked into `<host_dir>/vmm/root`; from the cache when
/// there. Returns the root.
pub(crate) fn guest_vmm(
    host_dir: &Path,
    arch: &'static str,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf, LabError> {
    mkdir(host_dir)?;
    let _lock = Lock::take(&host_dir.join(".lock"))?;
    let dir = host_dir.join("vmm");
    let root = dir.join("root");
    if root.join("usr/bin/qemu-system-aarch64").exists() {
        return Ok(root);
    }
    let apt = Apt::new(host_dir, arch);
    if !apt.dir.join("sources.list").exists() || apt.show("qemu-system-arm")?.is_none() {
        progress(&format!("fetching Debian's {arch} package lists"));
        apt.update()?;
    }
    let debs = dir.join("debs");
    mkdir(&debs.join("partial"))?;
    let status = dir.join("empty-status");
    write(&status, b"")?;
    progress(&format!(
        "downloading qemu-system-arm:{arch} and its dependencies"
    ));
    run_tool(
        apt.command("apt-get")
            .arg("-o")
            .arg(format!("Dir::State::status={}", status.display()))
            .arg("-o")
            .arg(format!("Dir::Cache::archives={}", debs.display()))
            .args([
                "install",
                "--download-only",
                "-y",
                "-qq",
                "--no-install-recommends",
                "qemu-system-arm",
            ]),
        &format!("downloading qemu-system-arm ({arch}) with its dependencies"),
    )?;
    let tmp = dir.join("root.unpack");
    let _ = std::fs::remove_dir_all(&tmp);
    let mut n = 0;
    for e in std::fs::read_dir(&debs)
        .map_err(|e| io_err("reading", &debs, e))?
        .flatten()
    {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "deb") {
            run_tool(
                Command::new("dpkg-deb").arg("-x").arg(&p).arg(&tmp),
                &format!("unpacking {}", p.display()),
            )?;
            n += 1;
        }
    }
    if n == 0 {
        return Err(LabError::HostSetup {
            what: format!("apt left no packages in {}", debs.display()),
            detail: String::new(),
        });
    }
    let _ = std::fs::remove_dir_all(&root);
    std::fs::rename(&tmp, &root).map_err(|e| io_err("moving", &tmp, e))?;
    Ok(root)
}

/// Unpacks a kernel .deb: the image as `vmlinuz`, every module under `modules/` as it came
/// (`name.ko` or `name.ko.xz`).
fn unpack_kernel(deb: &Path, host_dir: &Path) -> Result<KernelInfo, LabError> {
    let fields = run_tool(
        Command::new("dpkg-deb")
            .args(["-f"])
            .arg(deb)
            .args(["Package", "Version"]),
        "reading the kernel package",
    )?;
    let fields = String::from_utf8_lossy(&fields.stdout).into_owned();
    let tmp = host_dir.join("kernel.unpack");
    let _ = std::fs::remove_dir_all(&tmp);
    run_tool(
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(&tmp),
        "unpacking the kernel package",
    )?;
    let boot = tmp.join("boot");
    let image = std::fs::read_dir(&boot)
        .map_err(|e| io_err("reading", &boot, e))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-") || n.starts_with("vmlinux-"))
        })
        .ok_or_else(|| LabError::HostSetup {
            what: format!("{} has no boot/vmlinuz-*", deb.display()),
            detail: String::new(),
        })?;
    let release = image
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split_once('-'))
        .map(|(_, r)| r.to_string())
        .unwrap_or_default();
    let dir = host_dir.join(&release);
    let modules = dir.join("modules");
    let _ = std::fs::remove_dir_all(&dir);
    mkdir(&modules)?;
    std::fs::rename(&image, dir.join("vmlinuz")).map_err(|e| io_err("moving", &image, e))?;
    let config = boot.join(format!("config-{release}"));
    std::fs::rename(&config, dir.join("config")).map_err(|e| io_err("moving", &config, e))?;
    let tree = tmp.join("lib/modules").join(&release).join("kernel");
    let mut files = Vec::new();
    walk(&tree, &mut files);
    for f in files {
        let Some(name) = f.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name
            .strip_suffix(".ko.xz")
            .or_else(|| name.strip_suffix(".ko"))
        else {
            continue;
        };
        // Modules stay compressed: a generic kernel has thousands (~400 MB unpacked) and a
        // host loads a few, decompressed on first use (see `kernel`).
        let ext = if name.ends_with(".xz") { "ko.xz" } else { "ko" };
        let to = modules.join(format!("{}.{ext}", stem.replace('-', "_")));
        std::fs::rename(&f, &to).map_err(|e| io_err("moving", &f, e))?;
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(KernelInfo {
        package: control_field(&fields, "Package").unwrap_or("?").to_string(),
        version: control_field(&fields, "Version").unwrap_or("?").to_string(),
        release,
    })
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Every module under `dir` (`<name>.ko`) with the modules it depends on.
fn module_index(dir: &Path) -> Result<BTreeMap<String, (PathBuf, Vec<String>)>, LabError> {
    let mut index = BTreeMap::new();
    for e in std::fs::read_dir(dir)
        .map_err(|e| io_err("reading", dir, e))?
        .flatten()
    {
        let p = e.path();
        let Some(file) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(name) = file.strip_suffix(".ko") {
            // an unpacked module wins over a compressed one
            index.insert(name.to_string(), (p.clone(), Vec::new()));
        } else if let Some(name) = file.strip_suffix(".ko.xz") {
            index
                .entry(name.to_string())
                .or_insert_with(|| (p.clone(), Vec::new()));
        }
    }
    Ok(index)
}

/// The `depends=` of a module's `.modinfo` (NUL-separated `key=value` strings).
pub(crate) fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    let key = b"\0depends=";
    let Some(at) = memchr_find(ko, key) else {
        return Vec::new();
    };
    let rest = &ko[at + key.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| d.replace('-', "_"))
        .collect()
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `wanted` and everything they depend on, dependencies first.
fn load_order(
    wanted: &[&str],
    index: &BTreeMap<String, (PathBuf, Vec<String>)>,
) -> Result<Vec<String>, LabError> {
    let mut order = Vec::new();
    fn visit(
        m: &str,
        index: &BTreeMap<String, (PathBuf, Vec<String>)>,
        order: &mut Vec<String>,
        depth: usize,
    ) -> Result<(), LabError> {
        if order.iter().any(|o| o == m) {
            return Ok(());
        }
        let Some((path, _)) = index.get(m) else {
            return Err(LabError::HostSetup {
                what: format!("the emulated host's kernel has no module {m}"),
                detail: "it may be built in (then drop it from the list) or missing from this kernel flavour".into(),
            });
        };
        if depth > 32 {
            return Err(LabError::HostSetup {
                what: format!("module dependencies loop at {m}"),
                detail: String::new(),
            });
        }
        let bytes = module_bytes(path)?;
        for d in modinfo_depends(&bytes) {
            visit(&d, index, order, depth + 1)?;
        }
        order.push(m.to_string());
        Ok(())
    }
    for m in wanted {
        visit(&m.replace('-', "_"), index, &mut order, 0)?;
    }
    Ok(order)
}

/// A module's bytes, decompressed when it is a `.ko.xz`.
fn module_bytes(path: &Path) -> Result<Vec<u8>, LabError> {
    if path.extension().is_some_and(|e| e == "xz") {
        Ok(run_tool(
            Command::new("xz").arg("-dc").arg(path),
            "decompressing a module",
        )?
        .stdout)
    } else {
        std::fs::read(path).map_err(|e| io_err("reading", path, e))
    }
}

/// `path` as an uncompressed module: a `.ko.xz` is decompressed once beside it as `name.ko`.
fn unpacked_module(name: &str, path: &Path) -> Result<PathBuf, LabError> {
    if path.extension().is_none_or(|e| e != "xz") {
        return Ok(path.to_path_buf());
    }
    let to = path.with_file_name(format!("{name}.ko"));
    if !to.exists() {
        let bytes = module_bytes(path)?;
        let tmp = path.with_file_name(format!("{name}.ko.tmp"));
        write(&tmp, &bytes)?;
        std::fs::rename(&tmp, &to).map_err(|e| io_err("moving", &tmp, e))?;
    }
    Ok(to)
}

pub(crate) fn mkdir(p: &Path) -> Result<(), LabError> {
    std::fs::create_dir_all(p).map_err(|e| io_err("creating", p, e))
}

pub(crate) fn write(p: &Path, data: &[u8]) -> Result<(), LabError> {
    std::fs::File::create(p)
        .and_then(|mut f| f.write_all(data))
        .map_err(|e| io_err("writing", p, e))
}

pub(crate) fn io_err(what: &str, p: &Path, e: std::io::Error) -> LabError {
    LabError::HostSetup {
        what: format!("{what} {}", p.display()),
        detail: e.to_string(),
    }
}

/// An exclusive lock on a file of the cache, so parallel runs fetch a package once.
pub(crate) struct Lock(std::fs::File);

impl Lock {
    pub(crate) fn take(path: &Path) -> Result<Lock, LabError> {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| io_err("opening", path, e))?;
        // SAFETY: flock on a file descriptor this function owns (kept open in the returned
        // Lock); no memory is passed.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if r != 0 {
            return Err(io_err("locking", path, std::io::Error::last_os_error()));
        }
        Ok(Lock(f))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocks the descriptor this Lock owns; closing it would unlock too.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_mirror_in_both_source_syntaxes() {
        let deb822 = "Types: deb\n# http://snapshot.debian.org/archive/debian/2025\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n\nURIs: http://deb.debian.org/debian-security\n";
        assert_eq!(
            mirror_in(deb822).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let one_line = "deb [arch=amd64] https://mirror.example/debian/ bookworm main\n";
        assert_eq!(
            mirror_in(one_line).as_deref(),
            Some("https://mirror.example/debian")
        );
        assert_eq!(
            mirror_in("deb http://security.debian.org/debian-security x main"),
            None
        );
    }

    #[test]
    fn reads_control_records() {
        let r = "Package: linux-image-cloud-amd64\nVersion: 6.12.95-1~bpo12+1\nDepends: linux-image-6.12.95+deb12-cloud-amd64 (= 6.12.95-1~bpo12+1)\n";
        assert_eq!(control_field(r, "Version"), Some("6.12.95-1~bpo12+1"));
        assert_eq!(
            first_dependency(r),
            Some("linux-image-6.12.95+deb12-cloud-amd64")
        );
        assert_eq!(first_dependency("Depends: a | b, c\n"), Some("a"));
        assert_eq!(first_dependency("Package: x\n"), None);
        assert_eq!(control_field("Packages: y\n", "Package"), None);
    }

    #[test]
    fn reads_module_dependencies() {
        let ko = b"\x7fELF....\0license=GPL\0depends=kvm,irqbypass\0retpoline=Y\0name=kvm_amd\0";
        assert_eq!(modinfo_depends(ko), ["kvm", "irqbypass"]);
        assert!(modinfo_depends(b"\0depends=\0name=irqbypass\0").is_empty());
        assert!(modinfo_depends(b"").is_empty());
    }

    #[test]
    fn orders_modules_dependencies_first() {
        let dir = tempfile::tempdir().unwrap();
        for (m, deps) in [
            ("kvm_amd", "kvm,ccp"),
            ("kvm", "irqbypass"),
            ("irqbypass", ""),
            ("ccp", ""),
        ] {
            std::fs::write(
                dir.path().join(format!("{m}.ko")),
                format!("\0depends={deps}\0"),
            )
            .unwrap();
        }
        let index = module_index(dir.path()).unwrap();
        let order = load_order(&["kvm-amd"], &index).unwrap();
        assert_eq!(order, ["irqbypass", "kvm", "ccp", "kvm_amd"]);
        let err = load_order(&["nosuch"], &index).unwrap_err().to_string();
        assert!(err.contains("no module nosuch"), "{err}");
    }

    #[test]
    fn compressed_modules_are_unpacked_on_first_use() {
        let dir = tempfile::tempdir().unwrap();
        let ko = dir.path().join("virtio_blk.ko");
        std::fs::write(&ko, "\0depends=virtio_mmio\0").unwrap();
        std::fs::write(dir.path().join("virtio_mmio.ko"), "\0depends=\0").unwrap();
        let Ok(st) = Command::new("xz").arg(&ko).status() else {
            eprintln!("SKIPPED: no xz here");
            return;
        };
        assert!(st.success());
        let index = module_index(dir.path()).unwrap();
        let xz = &index["virtio_blk"].0;
        assert!(xz.to_string_lossy().ends_with(".ko.xz"));
        assert_eq!(
            load_order(&["virtio_blk"], &index).unwrap(),
            ["virtio_mmio", "virtio_blk"]
        );
        let p = unpacked_module("virtio_blk", xz).unwrap();
        assert_eq!(p, ko);
        assert_eq!(std::fs::read(&p).unwrap(), b"\0depends=virtio_mmio\0");
        // an unpacked one wins from now on
        assert_eq!(module_index(dir.path()).unwrap()["virtio_blk"].0, ko);
    }
}
