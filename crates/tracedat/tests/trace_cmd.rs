//! kvmscope reads trace.dat files: its own (v6) and trace-cmd's (v7 with zstd), fixtures in
//! tests/fixtures/tracedat/ (see the README there for how each was made and the counts).
//! A truncated or corrupt file gives an error naming a byte offset, never a panic.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kvmscope_tracedat::file::{
    count_events, BufferPages, CpuPages, FileAt, Merger, Metadata, TraceDat, Version,
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/tracedat")
        .join(name)
}

/// Counts by event name (without the system).
fn counts(td: &TraceDat, bytes: &[u8]) -> BTreeMap<String, u64> {
    let (by_id, _lost) = count_events(td, bytes).unwrap();
    by_id
        .into_iter()
        .map(|(id, n)| {
            (
                td.formats
                    .get(id)
                    .map_or(format!("id {id}"), |f| f.name.clone()),
                n,
            )
        })
        .collect()
}

#[test]
fn our_v6_recording_of_the_lab() {
    let bytes = std::fs::read(fixture("kvmscope-record-lab-v6.dat")).unwrap();
    let td = TraceDat::parse(bytes.as_slice()).unwrap();
    assert_eq!(td.version, 6);
    let c = counts(&td, &bytes);
    assert_eq!(c["kvm_pio"], 100);
    assert_eq!(c["kvm_msr"], 100);
    assert_eq!(c["kvm_mmio"], 100);
    assert_eq!(c["vcpu_match_mmio"], 100);
    assert_eq!(c["kvm_userspace_exit"], 203);
    assert_eq!(c["kvm_emulate_insn"], 611);
    assert_eq!(c.values().sum::<u64>(), 1764);
    // The sidecar: events, lost counts and the system snapshot.
    let side: serde_json::Value = serde_json::from_str(td.kvmscope_json().unwrap()).unwrap();
    assert_eq!(side["format"], "kvmscope-sidecar");
    assert_eq!(side["events_recorded"], 1764);
    assert_eq!(side["lost_events"][0]["lost_in_pages"], 0);
    assert!(side["system"]["kernel_release"]
        .as_str()
        .unwrap()
        .starts_with("6.18"));
    assert_eq!(td.cpu_stats().len(), 2);
    // Thread names come with the file.
    assert!(td.cmdlines.values().any(|c| c.starts_with("kvmscope-vcpu")));
}

#[test]
fn typed_fields_and_symbols_from_a_real_file() {
    let bytes = std::fs::read(fixture("kvmscope-record-lab-v6.dat")).unwrap();
    let td = TraceDat::parse(bytes.as_slice()).unwrap();
    let exit = td
        .formats
        .by_name("kvm", "kvm_userspace_exit")
        .unwrap()
        .clone();
    let pio = td.formats.by_name("kvm", "kvm_pio").unwrap().clone();
    let mut names = BTreeMap::new();
    let mut last_ts = 0;
    let mut m = Merger::new(&td, &td.buffers[0], bytes.as_slice()).unwrap();
    while let Some(r) = m.next_record().unwrap() {
        assert!(r.ts_ns >= last_ts, "records are merged in time order");
        last_ts = r.ts_ns;
        if r.id == exit.id {
            let name = exit.symbol(r.data, "reason").unwrap_or_default();
            *names.entry(name).or_insert(0u64) += 1;
        }
        if r.id == pio.id {
            assert_eq!(pio.u64(r.data, "port"), Some(0x2f8));
            assert_eq!(pio.u64(r.data, "rw"), Some(1));
        }
    }
    // 100 OUTs and 100 MMIO stores exit to the VMM, plus each run's final OUT to the lab's
    // done port: the names come from the kernel's print fmt.
    assert_eq!(names.get("KVM_EXIT_IO"), Some(&(100 + 3)), "{names:?}");
    assert_eq!(names.get("KVM_EXIT_MMIO"), Some(&100), "{names:?}");
}

#[test]
fn trace_cmd_v7_zstd_extract() {
    let bytes = std::fs::read(fixture("trace-cmd-extract-lab-v7-zstd.dat")).unwrap();
    let td = TraceDat::parse(bytes.as_slice()).unwrap();
    assert_eq!(td.version, 7);
    assert_eq!(td.compression.as_deref(), Some("zstd"));
    assert!(
        td.formats.len() > 1000,
        "all formats of the kernel are stored"
    );
    let c = counts(&td, &bytes);
    let want: BTreeMap<String, u64> = [
        ("kvm_mmio", 100),
        ("kvm_msr", 100),
        ("kvm_pio", 100),
        ("kvm_userspace_exit", 203),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(c, want);
}

#[test]
fn truncated_files_fail_with_an_offset_or_read_fewer_records() {
    for name in [
        "kvmscope-record-lab-v6.dat",
        "trace-cmd-extract-lab-v7-zstd.dat",
    ] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let full: u64 = {
            let td = TraceDat::parse(bytes.as_slice()).unwrap();
            counts(&td, &bytes).values().sum()
        };
        let step = bytes.len() / 150;
        for cut in (0..bytes.len()).step_by(step.max(1)) {
            let part = &bytes[..cut];
            match TraceDat::parse(part) {
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.contains("byte offset"), "{name} cut at {cut}: {msg}");
                }
                Ok(td) => match count_events(&td, part) {
                    Err(e) => assert!(
                        e.to_string().contains("byte offset"),
                        "{name} cut at {cut}: {e}"
                    ),
                    Ok((c, _)) => assert!(c.values().sum::<u64>() <= full),
                },
            }
        }
    }
}

#[test]
fn corrupt_bytes_never_panic() {
    // Deterministic corruption sweep over real files (the proptest in tracedat.rs does the
    // same on a synthetic file with random positions).
    for name in [
        "kvmscope-record-lab-v6.dat",
        "trace-cmd-extract-lab-v7-zstd.dat",
    ] {
        let orig = std::fs::read(fixture(name)).unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100 {
            let mut b = orig.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state % b.len() as u64) as usize;
                b[at] = (state >> 32) as u8;
            }
            if let Ok(td) = TraceDat::parse(b.as_slice()) {
                let _ = count_events(&td, b.as_slice());
            }
        }
    }
}

#[test]
fn scratch_env_file() {
    // For ad-hoc checks: KVMSCOPE_TRACEDAT=/path/to/trace.dat cargo test ... -- --nocapture
    let Some(p) = std::env::var_os("KVMSCOPE_TRACEDAT") else {
        return;
    };
    let f = FileAt::open(std::path::Path::new(&p)).unwrap();
    let td = TraceDat::parse(&f).unwrap();
    let (c, lost) = count_events(&td, &f).unwrap();
    eprintln!("v{} {:?} {c:?} lost {lost:?}", td.version, td.compression);
}

/// One event as `trace-cmd report -R` prints it: (pid, cpu, ts in µs, event, raw fields text).
/// (pid, cpu, ts in µs, event name, raw fields text).
type RawLine = (i32, u32, u64, String, String);

fn trace_cmd_raw(path: &std::path::Path) -> Option<Vec<RawLine>> {
    let out = std::process::Command::new("trace-cmd")
        .args(["report", "-R", "-i"])
        .arg(path)
        .output()
        .ok()?;
    assert!(out.status.success(), "trace-cmd report -R failed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut v = Vec::new();
    for line in text.lines() {
        let Some(open) = line.find(" [") else {
            continue;
        };
        let head = line[..open].trim_end();
        let Some(dash) = head.rfind('-') else {
            continue;
        };
        let Ok(pid) = head[dash + 1..].parse::<i32>() else {
            continue;
        };
        let rest = &line[open + 2..];
        let close = rest.find(']').unwrap();
        let cpu: u32 = rest[..close].parse().unwrap();
        let rest = rest[close + 1..].trim_start();
        let colon = rest.find(": ").unwrap();
        let (secs, usecs) = rest[..colon].split_once('.').unwrap();
        let ts_us = secs.parse::<u64>().unwrap() * 1_000_000 + usecs.parse::<u64>().unwrap();
        let rest = &rest[colon + 2..];
        let colon = rest.find(':').unwrap();
        let event = rest[..colon].to_string();
        v.push((pid, cpu, ts_us, event, rest[colon + 1..].trim().to_string()));
    }
    Some(v)
}

/// `name=value` pairs of a raw line, for the fields in `names` (in format order: a value
/// runs up to the next ` name=`).
fn split_raw<'a>(raw: &'a str, names: &[&str]) -> Vec<(String, &'a str)> {
    let mut out = Vec::new();
    let mut pos = 0;
    for (i, n) in names.iter().enumerate() {
        let key = format!("{n}=");
        let Some(at) = raw[pos..].find(&key) else {
            continue;
        };
        let start = pos + at + key.len();
        let end = names[i + 1..]
            .iter()
            .find_map(|m| raw[start..].find(&format!(" {m}=")).map(|e| start + e))
            .unwrap_or(raw.len());
        out.push((n.to_string(), raw[start..end].trim()));
        pos = end;
    }
    out
}

#[test]
fn every_field_of_every_event_matches_trace_cmd_report_raw() {
    if !kvmscope_capture::host::require_tool("trace-cmd", "apt-get install trace-cmd") {
        return;
    }
    for name in [
        "kvmscope-record-lab-v6.dat",
        "trace-cmd-extract-lab-v7-zstd.dat",
    ] {
        same_events_as_trace_cmd(&fixture(name), name);
    }
}

/// Our v6 recording rewritten by our v7 writer (zstd, and uncompressed): trace-cmd report
/// reads every event of it with the same fields as we do, and as in the v6 original.
#[test]
fn our_v7_files_give_trace_cmd_the_same_events() {
    if !kvmscope_capture::host::require_tool("trace-cmd", "apt-get install trace-cmd") {
        return;
    }
    let path = fixture("kvmscope-record-lab-v6.dat");
    let bytes = std::fs::read(&path).unwrap();
    let td = TraceDat::parse(bytes.as_slice()).unwrap();
    let meta = Metadata::of(&td);
    let theirs_v6 = trace_cmd_raw(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for version in [Version::V7Zstd, Version::V7] {
        let b = &td.buffers[0];
        let cpus = b
            .cpus
            .iter()
            .map(|c| CpuPages {
                reader: &bytes[c.offset as usize..(c.offset + c.size) as usize],
                size: c.size,
            })
            .collect();
        let mut buffers = [BufferPages {
            name: String::new(),
            clock: b.clock.clone(),
            cpus,
        }];
        let out = dir.path().join(format!("{version:?}.dat"));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&out).unwrap());
        kvmscope_tracedat::file::write(&mut f, &meta, &mut buffers, version).unwrap();
        drop(f);
        let td7 = TraceDat::parse(std::fs::read(&out).unwrap().as_slice()).unwrap();
        assert_eq!(td7.version, 7);
        same_events_as_trace_cmd(&out, &format!("{version:?}"));
        assert_eq!(trace_cmd_raw(&out).unwrap(), theirs_v6, "{version:?} vs v6");
    }
}

/// Every record of `path` as our reader decodes it equals what `trace-cmd report -R` prints:
/// pid, CPU, time, event and every field.
fn same_events_as_trace_cmd(path: &std::path::Path, name: &str) {
    use kvmscope_tracedat::format::FieldKind;
    {
        let theirs = trace_cmd_raw(path).unwrap();
        let bytes = std::fs::read(path).unwrap();
        let td = TraceDat::parse(bytes.as_slice()).unwrap();
        let mut ours = Vec::new();
        for b in td.data_buffers() {
            let mut m = Merger::new(&td, b, bytes.as_slice()).unwrap();
            while let Some(r) = m.next_record().unwrap() {
                // trace-cmd prints µs rounded to nearest.
                ours.push((
                    r.common_pid,
                    r.cpu,
                    (r.ts_ns + 500) / 1000,
                    r.id,
                    r.data.to_vec(),
                ));
            }
        }
        assert_eq!(ours.len(), theirs.len(), "{name}: event count");
        let mut fields_checked = 0;
        for (o, t) in ours.iter().zip(&theirs) {
            let fmt = td.formats.get(o.3).unwrap();
            assert_eq!(
                (o.0, o.1, o.2, fmt.name.as_str()),
                (t.0, t.1, t.2, t.3.as_str()),
                "{name}"
            );
            let names: Vec<&str> = fmt
                .fields
                .iter()
                .filter(|f| !f.name.starts_with("common_"))
                .map(|f| f.name.as_str())
                .collect();
            for (field, val) in split_raw(&t.4, &names) {
                let f = fmt.field(&field).unwrap();
                let data = &o.4;
                if let Some(arr) = val.strip_prefix("ARRAY[").and_then(|v| v.strip_suffix(']')) {
                    let want: Vec<u8> = arr
                        .split(", ")
                        .map(|h| u8::from_str_radix(h, 16).unwrap())
                        .collect();
                    assert_eq!(
                        f.bytes(data).unwrap(),
                        &want[..],
                        "{name} {}.{field}",
                        fmt.name
                    );
                } else if f.kind == FieldKind::Scalar {
                    // trace-cmd -R prints with the print fmt's conversion (%d, %u, %x,
                    // %llx, 0x%lx): accept the value in any of those spellings.
                    let ours = f.u64(data).unwrap();
                    let signed = f.i64(data).unwrap();
                    let ok = val == ours.to_string()
                        || val == signed.to_string()
                        || (f.size == 4 && val == (ours as u32).to_string())
                        || (f.size == 4 && val == (ours as i32).to_string())
                        || val
                            .strip_prefix("0x")
                            .is_some_and(|h| u64::from_str_radix(h, 16) == Ok(ours))
                        || u64::from_str_radix(val, 16) == Ok(ours)
                        || (f.size == 4 && u64::from_str_radix(val, 16) == Ok(ours & 0xffff_ffff));
                    assert!(
                        ok,
                        "{name} {}.{field}: trace-cmd {val}, ours {ours}",
                        fmt.name
                    );
                } else {
                    assert_eq!(f.str(data).unwrap(), val, "{name} {}.{field}", fmt.name);
                }
                fields_checked += 1;
            }
        }
        assert!(
            fields_checked > 1000,
            "{name}: only {fields_checked} fields compared"
        );
    }
}
