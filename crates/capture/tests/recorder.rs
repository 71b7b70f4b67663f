//! The Recorder on the real kernel, without the CLI: guest-side events of this process's own
//! thread (nanosleep arms the TSC-deadline timer: msr:write_msr and hrtimer events), with
//! the default and a larger ring-buffer sub-buffer, as trace.dat v6 and v7 (zstd), read back
//! by our reader and by trace-cmd; the hrtimer function is named from the file's kallsyms.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use kvmscope_capture::recorder::{parse_events, KallsymsMode, RecordOptions, Recorder};
use kvmscope_tracedat::file::{for_each_record, TraceDat, Version};

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

fn record_own_sleeps(
    subbuf_kb: Option<u64>,
    version: Version,
) -> Option<(tempfile::TempDir, u64, u64)> {
    let root = kvmscope_capture::host::require_tracefs()?;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("own.dat");
    let tid = gettid();
    let opts = RecordOptions {
        events: parse_events("timer:hrtimer_start,msr:write_msr").unwrap(),
        filters: vec![(None, format!("common_pid == {tid}"))],
        buffer_kb: Some(1024),
        subbuf_kb,
        kallsyms: KallsymsMode::Referenced,
        version,
    };
    let mut rec = Recorder::start(&root, opts, &out).unwrap();
    let mut live = 0u64;
    for _ in 0..200 {
        std::thread::sleep(Duration::from_micros(200));
        rec.poll_with(|r| {
            assert_eq!(r.common_pid, tid);
            live += 1;
        })
        .unwrap();
    }
    let p = rec.finish(None).unwrap();
    assert_eq!(p.lost_total(), 0);
    Some((dir, p.events, live))
}

fn check(subbuf_kb: Option<u64>, version: Version) {
    let Some((dir, events, live)) = record_own_sleeps(subbuf_kb, version) else {
        return;
    };
    let path = dir.path().join("own.dat");
    let (td, f) = TraceDat::open(&path).unwrap();
    assert_eq!(td.version, if version == Version::V6 { 6 } else { 7 });
    // The file names the timer function nanosleep arms (only the referenced symbols are
    // kept: a handful of lines, not /proc/kallsyms' ~100,000).
    assert!(
        td.kallsyms.len() >= 2 && td.kallsyms.len() < 100,
        "{}",
        td.kallsyms.len()
    );
    let hs = td
        .formats
        .by_name("timer", "hrtimer_start")
        .unwrap()
        .clone();
    let mut functions: BTreeMap<String, u64> = BTreeMap::new();
    for_each_record(&td, &f, |r, _| {
        if r.id == hs.id {
            let a = hs.u64(r.data, "function").unwrap();
            let name = td
                .kallsyms
                .lookup(a)
                .map_or(format!("{a:#x}"), str::to_string);
            *functions.entry(name).or_default() += 1;
        }
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    assert!(
        functions.get("hrtimer_wakeup").copied().unwrap_or(0) >= 200,
        "{functions:?}"
    );
    if let Some(kb) = subbuf_kb {
        assert_eq!(td.layout.page_size(), kb as usize * 1024, "{:?}", td.layout);
        assert_eq!(td.page_size as usize, kb as usize * 1024);
    }
    let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
    for_each_record(&td, &f, |_, fmt| {
        *by_name.entry(fmt.unwrap().name.clone()).or_default() += 1;
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    let total: u64 = by_name.values().sum();
    assert_eq!(total, events);
    assert!(live <= events);
    // 200 sleeps: each arms an hrtimer (and on this machine writes the TSC deadline).
    assert!(
        by_name.get("hrtimer_start").copied().unwrap_or(0) >= 200,
        "{by_name:?}"
    );
    if Command::new("trace-cmd").arg("-h").output().is_ok() {
        let out = Command::new("trace-cmd")
            .args(["report", "-i"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        // trace-cmd names the function from our kallsyms too.
        let named = text
            .lines()
            .filter(|l| l.contains(" hrtimer_start:") && l.contains("function=hrtimer_wakeup"))
            .count() as u64;
        assert_eq!(
            named, functions["hrtimer_wakeup"],
            "trace-cmd's hrtimer_wakeup"
        );
        for (name, n) in &by_name {
            let theirs = text
                .lines()
                .filter(|l| l.contains(&format!(" {name}:")))
                .count() as u64;
            assert_eq!(theirs, *n, "trace-cmd's count of {name}");
        }
    }
}

#[test]
fn own_thread_events_with_default_pages() {
    check(None, Version::V6);
}

#[test]
fn own_thread_events_as_v7_zstd() {
    check(None, Version::V7Zstd);
}

#[test]
fn own_thread_events_with_16k_sub_buffers() {
    let Some(root) = kvmscope_capture::host::require_tracefs() else {
        return;
    };
    // buffer_subbuf_size_kb exists from Linux 6.8 on.
    if !root.join("buffer_subbuf_size_kb").exists() {
        eprintln!("SKIPPED: this kernel has fixed ring-buffer pages");
        return;
    }
    // Some kernels refuse the change (EPERM even for the current size; seen on a 6.18 guest
    // kernel whose earlier boots allowed it): a probe on an instance of our own says which.
    let probe = kvmscope_capture::tracefs::Instance::create(&root, "subbuf-probe").unwrap();
    let refused = std::fs::write(probe.path().join("buffer_subbuf_size_kb"), "16").err();
    probe.remove().unwrap();
    if let Some(e) = refused {
        eprintln!("SKIPPED: this kernel refuses to change the ring-buffer sub-buffer size ({e})");
        return;
    }
    check(Some(16), Version::V6);
}
