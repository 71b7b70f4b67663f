//! `kvmscope exporter` against the real kernel and a real Prometheus server: a lab guest in
//! this test process does N port writes while the exporter counts this process's vCPU
//! threads and a private Prometheus (loopback, temporary config and storage, 1 s scrapes)
//! scrapes it. The exporter's series for the port reads N; Prometheus's query of the series'
//! rise gives N; `promtool check metrics` accepts a scrape; SIGTERM leaves no tracefs
//! instance and closes every perf counter.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kvmscope_lab::{run_with, Scenario, ScenarioSpec};

/// The guest's port: none of the exporter's built-in hot ports, named with `--port`.
const PORT: u16 = 0x1234;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    // HTTP/1.0: no chunked transfer coding in the answer.
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The values of an instant query, one per series.
fn query(prom: &str, q: &str) -> Vec<f64> {
    let Some((200, body)) = http_get(prom, &format!("/api/v1/query?query={}", urlencode(q))) else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(&body).expect("prometheus json");
    assert_eq!(v["status"], "success", "{body}");
    v["data"]["result"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["value"][1].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Starts the exporter on this process's VM; returns it with its address.
fn start_exporter(pid: u32) -> (Killed, String, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvmscope"))
        .args([
            "exporter",
            "--listen",
            "127.0.0.1:0",
            "--pid",
            &pid.to_string(),
            "--port",
            &format!("{PORT:#x}"),
            "--rescan",
            "200ms",
            "--diagnose-every",
            "1s",
            "--diagnose-window",
            "500ms",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kvmscope exporter");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = Vec::new();
    let addr = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(rest) = l.split("serving http://").nth(1) {
                    let a = rest.trim_end_matches("/metrics").to_string();
                    seen.push(l);
                    break a;
                }
                seen.push(l);
            }
            _ => {
                let _ = child.wait();
                panic!("exporter ended before serving: {seen:?}");
            }
        }
    };
    assert!(
        seen.iter().any(|l| l.contains("counting 1 VM(s)")),
        "{seen:?}"
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    (Killed(child), addr, rx)
}

fn start_prometheus(dir: &Path, target: &str) -> (Killed, String) {
    let port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: kvmscope\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .expect("write prometheus.yml");
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).expect("log file"))
        .spawn()
        .expect("spawn prometheus");
    let p = Killed(child);
    wait_for("prometheus to be ready", Duration::from_secs(30), || {
        http_get(&addr, "/-/ready").is_some_and(|(s, _)| s == 200)
    });
    (p, addr)
}

fn series_value(scrape: &str, needle: &str) -> Option<u64> {
    scrape
        .lines()
        .find(|l| l.starts_with("kvmscope_pio_total{") && l.contains(needle))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn perf_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().contains("perf_event"))
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn prometheus_sees_exactly_the_guests_port_writes() {
    if !kvmscope_capture::host::require_kvm() {
        return;
    }
    let Some(tracefs) = kvmscope_capture::host::require_tracefs() else {
        return;
    };
    if !kvmscope_capture::host::require_tool(
        "prometheus",
        "apt-get install --no-install-recommends prometheus",
    ) || !kvmscope_capture::host::require_tool(
        "promtool",
        "apt-get install --no-install-recommends prometheus",
    ) {
        return;
    }
    const N: u64 = 2_000;
    let me = std::process::id();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spec = ScenarioSpec::new(Scenario::Pio).count(N);
    spec.port = PORT;
    let port = format!("port=\"{PORT:#x}\"");
    let series = format!("kvmscope_pio_total{{pid=\"{me}\",port=\"{PORT:#x}\"}}");
    let mut running = None;
    let outcome = run_with(&spec, |_threads| {
        // The vCPU thread exists and has not run: the exporter attaches, Prometheus scrapes
        // the series at zero, then the guest starts.
        let (exporter, addr, lines) = start_exporter(me);
        let (_, first) = http_get(&addr, "/metrics").expect("first scrape");
        assert_eq!(series_value(&first, &port), Some(0), "{first}");
        // The lab holds its VM's and vCPU's binary stats fds open: KVM's own statistics,
        // halt-polling histograms as Prometheus histograms, are exported with their units.
        assert!(
            first.contains("kvmscope_exporter_kvm_stats_files 2\n"),
            "{first}"
        );
        assert!(
            first.contains("# TYPE kvmscope_kvm_vcpu_halt_poll_success_seconds histogram\n"),
            "{first}"
        );
        promtool_check(&first);
        let (prom, prom_addr) = start_prometheus(dir.path(), &addr);
        wait_for(
            "prometheus to scrape the series at 0",
            Duration::from_secs(30),
            || query(&prom_addr, &series) == vec![0.0],
        );
        running = Some((exporter, addr, lines, prom, prom_addr));
    })
    .expect("lab run");
    assert_eq!(outcome.ops, N);
    let (mut exporter, addr, lines, _prom, prom_addr) = running.expect("exporter started");

    // The exporter itself: exactly N on the guest's port.
    let (status, scrape) = http_get(&addr, "/metrics").expect("scrape");
    assert_eq!(status, 200);
    assert_eq!(series_value(&scrape, &port), Some(N), "{scrape}");
    assert!(
        scrape.contains("kvmscope_exporter_scrape_duration_seconds "),
        "{scrape}"
    );
    assert!(
        scrape.contains("kvmscope_exporter_lost_events_total "),
        "{scrape}"
    );

    promtool_check(&scrape);

    // Prometheus: the series rose from 0 by exactly N.
    wait_for("prometheus to scrape N", Duration::from_secs(30), || {
        query(&prom_addr, &series) == vec![N as f64]
    });
    let rise = query(
        &prom_addr,
        &format!("max_over_time({series}[10m]) - min_over_time({series}[10m])"),
    );
    assert_eq!(rise, vec![N as f64]);
    assert_eq!(
        query(&prom_addr, &format!("min_over_time({series}[10m])")),
        vec![0.0]
    );

    // SIGTERM: a clean exit, no instance of the exporter's left, every counter closed.
    let pid = exporter.0.id();
    let held = perf_fds(pid);
    assert!(held > 0, "the exporter holds its counters");
    // Let a rolling diagnosis be under way (it records through a private instance).
    std::thread::sleep(Duration::from_millis(700));
    kvmscope_capture::guard::signal_process(pid, libc_sigterm()).expect("SIGTERM");
    let status = exporter.0.wait().expect("exporter exits");
    assert!(status.success(), "exporter after SIGTERM: {status:?}");
    let said: Vec<String> = lines.iter().collect();
    let last = said
        .iter()
        .find(|l| l.contains("stopped (signal 15)"))
        .unwrap_or_else(|| panic!("no stop line in {said:?}"));
    assert!(last.contains("0 tracefs instance(s) left"), "{last}");
    // Every perf counter it held was closed before it exited.
    assert!(
        last.contains(&format!("closed {held} counters")),
        "{held} perf fds: {last}"
    );
    let leftover: Vec<String> = std::fs::read_dir(tracefs.join("instances"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| kvmscope_capture::tracefs::owner_pid(n) == i32::try_from(pid).ok())
        .collect();
    assert!(leftover.is_empty(), "instances left: {leftover:?}");
}

/// The reference parser accepts the exposition.
fn promtool_check(scrape: &str) {
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(scrape.as_bytes())
        .expect("feed promtool");
    let out = check.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn libc_sigterm() -> i32 {
    15
}
