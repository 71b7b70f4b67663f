//! A trace.dat assembled from a directory of tracefs files copied off a machine where
//! kvmscope itself cannot run (an emulated arm64 host, its nested guest): the per-CPU binary
//! ring-buffer pages (`trace_pipe_raw`), the format files and the few tables trace-cmd wants,
//! written with the same [`tracedat::write_v6`] as the live recorder, so `kvmscope report`,
//! `diagnose` and `trace-cmd report` read the result like any recording.
//!
//! ```text
//! DIR/cpuN.raw                 per_cpu/cpuN/trace_pipe_raw as read (whole pages)
//! DIR/header_page              events/header_page
//! DIR/header_event             events/header_event
//! DIR/events/SYSTEM/EVENT      events/SYSTEM/EVENT/format (ftrace/* for the ftrace formats)
//! DIR/events/SYSTEM.all        or a system's format files concatenated (each starts with
//!                              `name:`; one `cat` instead of one per event)
//! DIR/saved_cmdlines           pid comm            (optional)
//! DIR/saved_tgids              tid tgid            (optional)
//! DIR/task_comms, task_tgids   tid comm / tid tgid of the threads alive at the end
//!                              (optional; fill in what the saved tables lack)
//! DIR/stats.cpuN               per_cpu/cpuN/stats  (optional)
//! DIR/trace_clock, DIR/uname   (optional)
//! DIR/kallsyms                 /proc/kallsyms      (optional: names pointer fields)
//! DIR/printk_formats           tracefs printk_formats (optional)
//! DIR/sysreg_names             `Op0,Op1,CRn,CRm,Op2 NAME` lines (optional, arm64)
//! ```
//!
//! arm64's `kvm:kvm_sys_access` records the register's name as a pointer into the kernel
//! (`const char *name`), which no reader can follow. With `sysreg_names` (the names the
//! kernel printed for each encoding, from a text copy of the same event), every pointer seen
//! with an encoding is written to the file's printk table (`ADDR : "NAME"`), where
//! trace-cmd looks up `%s` pointer fields, so the names come out as the kernel printed them.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::TraceDatError;
use crate::file::parse_stats;
use crate::file::{self as tracedat, option, CpuPages, Metadata};
use crate::format::{check_header_event, EventFormat, PageLayout};
use crate::ringbuf::{Missed, Page};

/// What an assembled file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assembled {
    /// Records per CPU.
    pub events_per_cpu: Vec<u64>,
    /// Records per event id.
    pub by_id: BTreeMap<u16, u64>,
    /// Events the kernel said it lost, per CPU (pages with a count).
    pub lost_per_cpu: Vec<u64>,
    /// Pages that said events were lost without a count, per CPU.
    pub unknown_loss_pages: Vec<u64>,
    /// Register-name pointers of kvm_sys_access given a name (printk table entries).
    pub sysreg_names: usize,
    /// Bytes written.
    pub size: u64,
}

/// Format files concatenated: a new one starts at each `name:` line.
fn split_formats(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.split_inclusive('\n') {
        if line.starts_with("name: ") || out.is_empty() {
            out.push(String::new());
        }
        if let Some(last) = out.last_mut() {
            last.push_str(line);
        }
    }
    out.retain(|f| !f.trim().is_empty());
    out
}

/// `Op0,Op1,CRn,CRm,Op2 NAME` lines; lines that do not parse are skipped.
fn sysreg_names(text: &str) -> BTreeMap<[u8; 5], String> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let Some((enc, name)) = line.trim().split_once(' ') else {
            continue;
        };
        let v: Vec<u8> = enc
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect();
        let name = name.trim();
        if let (Ok(k), false) = (
            <[u8; 5]>::try_from(v),
            name.is_empty() || name.contains('"'),
        ) {
            m.insert(k, name.to_string());
        }
    }
    m
}

fn read(path: &Path) -> Result<Vec<u8>, TraceDatError> {
    std::fs::read(path).map_err(|e| TraceDatError::read(path, e))
}

fn read_text(path: &Path) -> Result<String, TraceDatError> {
    Ok(String::from_utf8_lossy(&read(path)?).into_owned())
}

fn optional_text(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// `cpuN.raw` files by N.
fn cpu_files(dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut v: Vec<(u32, PathBuf)> = sorted_entries(dir)
        .into_iter()
        .filter_map(|p| {
            let n = p
                .file_name()?
                .to_str()?
                .strip_prefix("cpu")?
                .strip_suffix(".raw")?
                .parse()
                .ok()?;
            Some((n, p))
        })
        .collect();
    v.sort();
    v
}

/// Assembles `dir` (laid out as in the module doc) into the trace.dat `out`. `sidecar` adds
/// fields to kvmscope's JSON option (e.g. `system`, a snapshot of the machine).
pub fn assemble_from_dir(
    dir: &Path,
    out: &Path,
    sidecar: Option<serde_json::Value>,
) -> Result<Assembled, TraceDatError> {
    let header_page = read_text(&dir.join("header_page"))?;
    let header_event = read_text(&dir.join("header_event"))?;
    let layout = PageLayout::parse(&header_page, "header_page")?;
    check_header_event(&header_event, "header_event")?;
    let page = layout.page_size();

    let mut systems: Vec<(String, Vec<String>)> = Vec::new();
    let mut sys_access: Option<EventFormat> = None;
    let mut ftrace_formats = Vec::new();
    let mut enabled = Vec::new();
    // (system, format texts) from SYSTEM/EVENT files and SYSTEM.all files
    let mut found: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for entry in sorted_entries(&dir.join("events")) {
        let Some(name) = entry.file_name().and_then(|n| n.to_str()).map(String::from) else {
            continue;
        };
        if entry.is_dir() {
            for f in sorted_entries(&entry) {
                found
                    .entry(name.clone())
                    .or_default()
                    .push((read_text(&f)?, f.display().to_string()));
            }
        } else if let Some(system) = name.strip_suffix(".all") {
            let text = read_text(&entry)?;
            for (i, part) in split_formats(&text).into_iter().enumerate() {
                found
                    .entry(system.to_string())
                    .or_default()
                    .push((part, format!("{} (format {})", entry.display(), i + 1)));
            }
        }
    }
    for (system, formats) in found {
        let mut texts = Vec::new();
        for (text, what) in formats {
            // Only formats kvmscope and trace-cmd can read go in; a bad one is an error so
            // that a truncated copy is noticed.
            let fmt = EventFormat::parse(&system, &text, &what)?;
            if system == "kvm" && fmt.name == "kvm_sys_access" {
                sys_access = Some(fmt.clone());
            }
            if system == "ftrace" {
                ftrace_formats.push(text);
            } else {
                enabled.push(fmt.full_name());
                texts.push(text);
            }
        }
        if system != "ftrace" && !texts.is_empty() {
            systems.push((system, texts));
        }
    }

    let cpus = cpu_files(dir);
    if cpus.is_empty() {
        return Err(TraceDatError::Io {
            context: "no per-CPU ring-buffer files (cpuN.raw) to assemble".into(),
            path: dir.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let ncpu = cpus.iter().map(|c| c.0 + 1).max().unwrap_or(0) as usize;
    let mut data: Vec<Vec<u8>> = vec![Vec::new(); ncpu];
    // (Op0, Op1, CRn, CRm, Op2) -> name pointers seen with it
    let mut sysreg_ptrs: BTreeMap<[u8; 5], std::collections::BTreeSet<u64>> = BTreeMap::new();
    let mut summary = Assembled {
        events_per_cpu: vec![0; ncpu],
        lost_per_cpu: vec![0; ncpu],
        unknown_loss_pages: vec![0; ncpu],
        ..Assembled::default()
    };
    for (cpu, path) in &cpus {
        let mut bytes = read(path)?;
        // A copy cut short mid-page keeps its whole pages.
        bytes.truncate(bytes.len() / page * page);
        let c = *cpu as usize;
        for (i, chunk) in bytes.chunks(page).enumerate() {
            let p = Page::parse(&layout, chunk, *cpu, (i * page) as u64)?;
            match p.missed {
                Missed::None => {}
                Missed::Unknown => summary.unknown_loss_pages[c] += 1,
                Missed::Count(n) => summary.lost_per_cpu[c] += n,
            }
            for r in p.records() {
                let r = r?;
                if let Some(f) = sys_access.as_ref().filter(|f| f.id == r.id) {
                    let enc = ["Op0", "Op1", "CRn", "CRm", "Op2"].map(|n| f.u64(r.data, n));
                    if let (Some(ptr), [Some(a), Some(b), Some(c), Some(d), Some(e)]) =
                        (f.u64(r.data, "name"), enc)
                    {
                        sysreg_ptrs
                            .entry([a, b, c, d, e].map(|v| v as u8))
                            .or_default()
                            .insert(ptr);
                    }
                }
                summary.events_per_cpu[c] += 1;
                *summary.by_id.entry(r.id).or_default() += 1;
            }
        }
        data[c] = bytes;
    }

    let names = sysreg_names(&optional_text(&dir.join("sysreg_names")));
    let mut printk = optional_text(&dir.join("printk_formats"));
    if !printk.is_empty() && !printk.ends_with('\n') {
        printk.push('\n');
    }
    let copied = printk.lines().count();
    for (enc, ptrs) in &sysreg_ptrs {
        if let Some(name) = names.get(enc) {
            for p in ptrs.iter().filter(|p| **p != 0) {
                printk.push_str(&format!("{p:#x} : \"{name}\"\n"));
            }
        }
    }
    summary.sysreg_names = printk.lines().count() - copied;

    let mut comms: BTreeMap<i32, String> = BTreeMap::new();
    for file in ["saved_cmdlines", "task_comms"] {
        for line in optional_text(&dir.join(file)).lines() {
            if let Some((p, c)) = line.split_once(' ') {
                if let Ok(p) = p.parse::<i32>() {
                    if p > 0 && !c.is_empty() {
                        comms.entry(p).or_insert_with(|| c.to_string());
                    }
                }
            }
        }
    }
    let mut cmdlines = String::from("0 <idle>\n");
    for (p, c) in &comms {
        cmdlines.push_str(&format!("{p} {c}\n"));
    }
    let mut tgid_map: BTreeMap<i32, i32> = BTreeMap::new();
    for file in ["saved_tgids", "task_tgids"] {
        for l in optional_text(&dir.join(file)).lines() {
            let Some((t, g)) = l.split_once(' ') else {
                continue;
            };
            if let (Ok(t), Ok(g)) = (t.parse::<i32>(), g.trim().parse::<i32>()) {
                if g > 0 {
                    tgid_map.entry(t).or_insert(g);
                }
            }
        }
    }
    let tgids: Vec<[i32; 2]> = tgid_map.into_iter().map(|(t, g)| [t, g]).collect();

    let mut options = Vec::new();
    let mut cstr = |id: u16, s: &str| {
        let mut d = s.as_bytes().to_vec();
        d.push(0);
        options.push((id, d));
    };
    let clock = optional_text(&dir.join("trace_clock"));
    if !clock.is_empty() {
        cstr(option::TRACECLOCK, &clock);
    }
    let uname = optional_text(&dir.join("uname"));
    if !uname.trim().is_empty() {
        cstr(option::UNAME, uname.trim());
    }
    cstr(
        option::VERSION,
        concat!("kvmscope ", env!("CARGO_PKG_VERSION"), " (assembled)"),
    );
    let mut lost = Vec::new();
    for cpu in 0..ncpu {
        let stats = optional_text(&dir.join(format!("stats.cpu{cpu}")));
        cstr(option::CPUSTAT, &format!("CPU: {cpu}\n{stats}"));
        let s = parse_stats(&stats);
        lost.push(serde_json::json!({
            "cpu": cpu,
            "lost": summary.lost_per_cpu[cpu],
            "lost_in_pages": summary.lost_per_cpu[cpu],
            "pages_with_unknown_loss": summary.unknown_loss_pages[cpu],
            "overrun": s.get("overrun"),
            "dropped_events": s.get("dropped events"),
        }));
    }
    options.push((option::CPUCOUNT, (ncpu as u32).to_le_bytes().to_vec()));
    let mut doc = serde_json::json!({
        "format": "kvmscope-sidecar",
        "format_version": 1,
        "tool": concat!("kvmscope ", env!("CARGO_PKG_VERSION")),
        "assembled_from": "tracefs files copied off the traced machine",
        "events": enabled,
        "lost_events": lost,
        "events_recorded": summary.events_per_cpu.iter().sum::<u64>(),
        "tgids": tgids,
    });
    if let (Some(serde_json::Value::Object(extra)), Some(obj)) = (sidecar, doc.as_object_mut()) {
        for (k, v) in extra {
            obj.insert(k, v);
        }
    }
    let mut json = serde_json::to_vec(&doc).unwrap_or_default();
    json.push(0);
    options.push((tracedat::OPTION_KVMSCOPE, json));

    let meta = Metadata {
        page_size: page as u32,
        header_page,
        header_event,
        ftrace_formats,
        systems,
        kallsyms: std::fs::read(dir.join("kallsyms")).unwrap_or_default(),
        printk: printk.into_bytes(),
        cmdlines,
        options,
    };
    let mut inputs: Vec<CpuPages<&[u8]>> = data
        .iter()
        .map(|d| CpuPages {
            reader: d.as_slice(),
            size: d.len() as u64,
        })
        .collect();
    let tmp = out.with_extension("dat.kvmscope-tmp");
    let result = (|| {
        let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
        let size = tracedat::write_v6(&mut w, &meta, &mut inputs)?;
        w.flush()?;
        std::fs::rename(&tmp, out)?;
        Ok(size)
    })();
    match result {
        Ok(size) => {
            summary.size = size;
            Ok(summary)
        }
        Err(source) => {
            let _ = std::fs::remove_file(&tmp);
            Err(TraceDatError::Io {
                context: "cannot write the trace.dat file".into(),
                path: out.to_path_buf(),
                source,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ringbuf::PageBuilder;

    const HEADER_PAGE: &str = "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n\tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;\n";
    const HEADER_EVENT: &str = "# compressed entry header\n\ttype_len    :    5 bits\n\ttime_delta  :   27 bits\n\tarray       :   32 bits\n\n\tpadding     : type == 29\n\ttime_extend : type == 30\n\ttime_stamp : type == 31\n\tdata max type_len  == 28\n";
    const FMT: &str = "name: ev\nID: 500\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\tfield:u32 x;\toffset:8;\tsize:4;\tsigned:0;\n\nprint fmt: \"x=%u\", REC->x\n";

    fn rec(pid: i32, x: u32) -> Vec<u8> {
        let mut p = vec![0u8; 12];
        p[0..2].copy_from_slice(&500u16.to_le_bytes());
        p[4..8].copy_from_slice(&pid.to_le_bytes());
        p[8..12].copy_from_slice(&x.to_le_bytes());
        p
    }

    fn sample_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(p.join("header_page"), HEADER_PAGE).unwrap();
        std::fs::write(p.join("header_event"), HEADER_EVENT).unwrap();
        std::fs::create_dir_all(p.join("events/test")).unwrap();
        std::fs::write(p.join("events/test/ev"), FMT).unwrap();
        let fmt2 = FMT
            .replace("name: ev", "name: ev2")
            .replace("ID: 500", "ID: 501");
        let fmt3 = FMT
            .replace("name: ev", "name: ev3")
            .replace("ID: 500", "ID: 502");
        std::fs::write(p.join("events/other.all"), format!("{fmt2}{fmt3}")).unwrap();
        for cpu in 0..2u64 {
            let mut data = Vec::new();
            for page in 0..2u64 {
                let mut b = PageBuilder::new(PageLayout::DEFAULT_64, 1000 * (page + 1));
                for i in 0..(10 + cpu) {
                    assert!(b.push(1000 * (page + 1) + i, &rec(77, i as u32)));
                }
                data.extend(b.finish(if cpu == 1 && page == 1 {
                    Some(Some(3))
                } else {
                    None
                }));
            }
            // a cut-off tail is dropped
            data.extend([0u8; 100]);
            std::fs::write(p.join(format!("cpu{cpu}.raw")), data).unwrap();
        }
        std::fs::write(
            p.join("saved_cmdlines"),
            "77 qemu-system-aar\n78 CPU 0/KVM\n",
        )
        .unwrap();
        std::fs::write(p.join("saved_tgids"), "78 77\n").unwrap();
        std::fs::write(p.join("task_tgids"), "78 1\n77 77\n").unwrap();
        std::fs::write(p.join("task_comms"), "77 ignored\n79 worker\n").unwrap();
        std::fs::write(p.join("trace_clock"), "[local] global counter\n").unwrap();
        d
    }

    #[test]
    fn assembles_pages_formats_and_tables() {
        let d = sample_dir();
        let out = d.path().join("trace.dat");
        let s = assemble_from_dir(
            d.path(),
            &out,
            Some(serde_json::json!({"system": {"arch": "aarch64"}})),
        )
        .unwrap();
        assert_eq!(s.events_per_cpu, [20, 22]);
        assert_eq!(s.lost_per_cpu, [0, 3]);
        assert_eq!(s.by_id.get(&500), Some(&42));
        let (td, file) = tracedat::TraceDat::open(&out).unwrap();
        assert_eq!(td.cmdlines.get(&78).map(String::as_str), Some("CPU 0/KVM"));
        let side: serde_json::Value = serde_json::from_str(td.kvmscope_json().unwrap()).unwrap();
        assert_eq!(side["tgids"], serde_json::json!([[77, 77], [78, 77]]));
        assert_eq!(
            td.cmdlines.get(&77).map(String::as_str),
            Some("qemu-system-aar")
        );
        assert_eq!(td.cmdlines.get(&79).map(String::as_str), Some("worker"));
        assert_eq!(side["system"]["arch"], "aarch64");
        assert_eq!(
            side["events"],
            serde_json::json!(["other:ev2", "other:ev3", "test:ev"])
        );
        assert_eq!(td.formats.by_name("other", "ev3").map(|f| f.id), Some(502));
        let (counts, _) = tracedat::count_events(&td, &file).unwrap();
        assert_eq!(counts.values().sum::<u64>(), 42);
    }

    #[test]
    fn reads_register_names() {
        let m = sysreg_names("3,0,12,11,5 SYS_ICC_SGI1R_EL1\n3,3,14,0,1 SYS_CNTPCT_EL0\nbad\n1,2 X\n3,0,0,0,0 \"q\"\n");
        assert_eq!(m.len(), 2);
        assert_eq!(m[&[3, 0, 12, 11, 5]], "SYS_ICC_SGI1R_EL1");
    }

    #[test]
    fn missing_or_bad_inputs_are_errors() {
        let d = sample_dir();
        let out = d.path().join("trace.dat");
        std::fs::write(d.path().join("events/test/bad"), "name: bad\nnonsense").unwrap();
        assert!(assemble_from_dir(d.path(), &out, None).is_err());
        std::fs::remove_file(d.path().join("events/test/bad")).unwrap();
        std::fs::remove_file(d.path().join("cpu0.raw")).unwrap();
        std::fs::remove_file(d.path().join("cpu1.raw")).unwrap();
        let e = assemble_from_dir(d.path(), &out, None).unwrap_err();
        assert!(e.to_string().contains("cpuN.raw"), "{e}");
        assert!(!out.exists());
    }
}
